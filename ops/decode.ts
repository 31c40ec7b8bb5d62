// Kernels of incremental decoding (models/gpt_decode.ts), one position per sequence at a time:
//
// * attentionDecode: causal self-attention of the one query at position t of each sequence against
//   the KV cache. The cache is the [B*T, 3C] qkv buffer of a full forward pass (ops/attention.ts's
//   layout: row (b, j) = [q | k | v]); the new position's row is appended to it (row t) first, then
//   out[b, h*hs ..] = softmax(q kᵀ · hs^-½ over keys j <= t) · v, with the same two passes as the
//   training kernel (online max and sum, then P·v).
// * appendTokens: after a draw, push each sequence's new id into its context window (ctx [B, T], the
//   token ids a full forward pass reads): at index len while the window has room, else shift the
//   window left by one and put it last. Also stores it in the history [B, cap] at `slot` (what the
//   host reads back, a chunk at a time) and its position in the window in pos [B] (what the next
//   incremental step's position embedding gathers).
// * addLayernorm / embedLayernorm: the eval-mode residual add (or the two embedding gathers) fused
//   with the LayerNorm that follows (ops/layernorm.ts's semantics: biased variance, eps 1e-5; no
//   mean/rstd saved, there is no backward), so a decode pass has fewer dispatches: at B = 1 most
//   kernels cost lavapipe's per-dispatch floor, whatever their size. addLayernorm: out[m] =
//   res[m·rStride + rOff] + y[m], xn[m] = LayerNorm(out[m])·w + b; rStride/rOff pick each
//   sequence's last row out of a [B·T, C] window buffer (the last layer of a window pass needs only
//   that row). embedLayernorm: out[m] = tok[ids[m]] + pos[positions[m]], then the first block's
//   LayerNorm; an id or position outside its table gives a NaN row, as embeddingForward does.
//
// This file checks the arguments and picks the kernel family (`rt.kernels`): ./decode/gpu.ts (a
// workgroup per (sequence, head) or per row) or ./decode/cpu.ts (an invocation per (sequence, head)
// or per row, llvmpipe-shaped). appendTokens' kernel (./decode/append.ts, a workgroup of 64 per
// sequence, coalesced) is GPU-shaped already and shared by both families.

import type { Runtime } from "./runtime.ts";
import { Tensor } from "./tensor.ts";
import { MAX_HS } from "./attention.ts";
import { APPEND_WGSL } from "./decode/append.ts";
import { attentionDecodeCpu, layernormDecodeCpu } from "./decode/cpu.ts";
import { attentionDecodeGpu, layernormDecodeGpu } from "./decode/gpu.ts";
import type { LayernormDecodeArgs } from "./decode/shared.ts";

/**
 * Attention of the query at position t (0-based, < T) of each of B sequences over positions 0..t.
 * cache: [B*T, 3C] qkv rows (positions < t filled). With `row` ([B, 3C], the new position's qkv) it
 * is first written into cache row t; with row = null, row t of the cache is already there (the last
 * position of a full pass). out: [B, C].
 */
export function attentionDecode(
  rt: Runtime,
  row: Tensor | null,
  cache: Tensor,
  out: Tensor,
  B: number,
  T: number,
  C: number,
  H: number,
  t: number,
): void {
  if (C % H !== 0) throw new Error(`attentionDecode: C=${C} is not divisible by H=${H}`);
  const hs = C / H;
  if (hs > MAX_HS) throw new Error(`attentionDecode: head size ${hs} exceeds ${MAX_HS}`);
  if (!Number.isInteger(t) || t < 0 || t >= T) throw new Error(`attentionDecode: t=${t} outside [0, ${T})`);
  if (cache.size < B * T * 3 * C || out.size < B * C || (row && row.size < B * 3 * C)) {
    throw new Error("attentionDecode: tensor too small");
  }
  // Without a new row `src` is not read, but must be bound: to a small placeholder (binding the
  // cache there too would be a read/read_write aliasing error).
  const a = { views: { src: row ?? dummy(rt), cache, out }, B, T, C, H, t, hs, append: !!row };
  if (rt.kernels === "gpu") attentionDecodeGpu(rt, a);
  else attentionDecodeCpu(rt, a);
}

const dummies = new WeakMap<Runtime, Tensor>();
function dummy(rt: Runtime): Tensor {
  let d = dummies.get(rt);
  if (!d) {
    d = Tensor.empty(rt, [4], "f32", "attention-decode-placeholder");
    dummies.set(rt, d);
  }
  return d;
}

/**
 * After a draw: ids [B] -> context windows ctx [B*T] (len = ids already in each window: append at
 * len if len < T, else shift left and put it at T-1), history hist [B*cap] at `slot`, and pos [B]
 * (the new id's position in its window).
 */
export function appendTokens(
  rt: Runtime,
  ids: Tensor,
  ctx: Tensor,
  hist: Tensor,
  pos: Tensor,
  B: number,
  T: number,
  len: number,
  cap: number,
  slot: number,
): void {
  for (const t of [ids, ctx, hist, pos]) {
    if (t.dtype !== "u32") throw new Error("appendTokens: u32 tensors only");
  }
  if (ids.size < B || pos.size < B || ctx.size < B * T || hist.size < B * cap) {
    throw new Error("appendTokens: tensor too small");
  }
  if (!(len >= 0 && len <= T && slot >= 0 && slot < cap)) {
    throw new Error("appendTokens: len/slot out of range");
  }
  rt.dispatch("append_tokens", APPEND_WGSL, { ids, ctx, hist, pos }, [T, len, cap, slot], [B]);
}

/** w, b [C]; out and xn [rows, C], in buffers of their own (not an input's, not each other's). */
function checkLayernormArgs(
  label: string,
  inputs: Tensor[],
  [w, b, out, xn]: Tensor[],
  rows: number,
  C: number,
) {
  if (w.size !== C || b.size !== C) throw new Error(`${label}: w/b must have ${C} values`);
  if (out.size < rows * C || xn.size < rows * C) throw new Error(`${label}: out/xn too small`);
  for (const t of [out, xn]) {
    for (const r of [...inputs, w, b]) {
      if (t.buffer === r.buffer) throw new Error(`${label}: an output shares a buffer with an input`);
    }
  }
  if (out.buffer === xn.buffer) throw new Error(`${label}: out and xn share a buffer`);
}

/**
 * out [rows, C] = res rows (row m is res row m·rStride + rOff) + y [rows, C]; xn = LayerNorm(out)·w + b.
 */
export function addLayernorm(
  rt: Runtime,
  res: Tensor,
  y: Tensor,
  w: Tensor,
  b: Tensor,
  out: Tensor,
  xn: Tensor,
  rows: number,
  C: number,
  rStride = 1,
  rOff = 0,
): void {
  checkLayernormArgs("addLayernorm", [res, y], [w, b, out, xn], rows, C);
  if (y.size < rows * C) throw new Error("addLayernorm: y too small");
  if (rows > 0 && res.size < ((rows - 1) * rStride + rOff + 1) * C) {
    throw new Error("addLayernorm: res too small");
  }
  const views = { res, y, w, b, out, xn };
  layernormDecode(rt, { embed: false, views, rows, C, rStride, rOff, V: 0, T: 0, aligned: aligned(views) });
}

/**
 * out [rows, C] = tok[ids[m]] + pos[positions[m]] (tok [V, C], pos [T, C]); xn = LayerNorm(out)·w + b.
 */
export function embedLayernorm(
  rt: Runtime,
  ids: Tensor,
  positions: Tensor,
  tok: Tensor,
  pos: Tensor,
  w: Tensor,
  b: Tensor,
  out: Tensor,
  xn: Tensor,
  rows: number,
): void {
  const [V, C] = tok.shape, T = pos.shape[0];
  if (tok.shape.length !== 2 || pos.shape.length !== 2 || pos.shape[1] !== C) {
    throw new Error(`embedLayernorm: tables [${tok.shape}] and [${pos.shape}] must be [V, C] and [T, C]`);
  }
  if (ids.dtype !== "u32" || positions.dtype !== "u32" || ids.size < rows || positions.size < rows) {
    throw new Error("embedLayernorm: ids/positions must be u32 with a value per row");
  }
  checkLayernormArgs("embedLayernorm", [ids, positions, tok, pos], [w, b, out, xn], rows, C);
  const views = { ids, positions, tok, pos, w, b, out, xn };
  const aligned16 = aligned({ tok, pos, w, b, out, xn });
  layernormDecode(rt, { embed: true, views, rows, C, rStride: 0, rOff: 0, V, T, aligned: aligned16 });
}

/** Whether every view starts at a 16-byte offset. */
const aligned = (views: Record<string, Tensor>) => Object.values(views).every((t) => t.offset % 16 === 0);

function layernormDecode(rt: Runtime, a: LayernormDecodeArgs): void {
  if (rt.kernels === "gpu") layernormDecodeGpu(rt, a);
  else layernormDecodeCpu(rt, a);
}
