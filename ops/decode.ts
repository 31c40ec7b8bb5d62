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
// * layernormLinear / residualLinear: the CPU family's fusions of a Linear with what surrounds it in
//   eval mode, in one window-matmul dispatch each (ops/matmul.ts linearWindow): LayerNorm(x) · Wᵀ + b
//   with the LayerNorm's affine folded into the weights (foldLayernorm: W' = W·diag(γ), b' = b + W·β)
//   and the rows normalised as the kernel reads them; res += x · Wᵀ + b (the residual add) in the
//   product's epilogue. On lavapipe every dispatch costs about 0.1 ms in a decode pass whatever its
//   size, and these take a window pass from 30 dispatches to 24. The GPU family (and any product the
//   window kernel cannot take in one pass over K) composes them from layernormForward, linearForward
//   and addInto.
//
// This file checks the arguments and picks the kernel family (`rt.kernels`): ./decode/gpu.ts (a
// workgroup per (sequence, head) or per row) or ./decode/cpu.ts (an invocation per (sequence, head)
// or per row, llvmpipe-shaped). appendTokens' kernel (./decode/append.ts, a workgroup of 64 per
// sequence, coalesced) is GPU-shaped already and shared by both families.

import type { Runtime } from "./runtime.ts";
import { Tensor } from "./tensor.ts";
import { MAX_HS } from "./attention.ts";
import { APPEND_WGSL } from "./decode/append.ts";
import { FOLD_WGSL } from "./decode/fold.ts";
import { type Epilogue, linearForward, linearWindow } from "./matmul.ts";
import { layernormForward, LN_EPS } from "./layernorm.ts";
import { addInto } from "./elementwise.ts";
import { embeddingForward } from "./embedding.ts";
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
  if (tok.byteLength > rt.maxBindingBytes) {
    // A table past the binding cap (GPT-2's): the windowed gathers, then the LayerNorm.
    const view = (t: Tensor) => new Tensor(rt, t.buffer, t.offset, [rows], "u32", t.name);
    embeddingForward(rt, view(ids), tok, out);
    embeddingForward(rt, view(positions), pos, out, true);
    const stats = lnScratch(rt, rows);
    layernormForward(rt, out, w, b, xn, stats.mean, stats.rstd, rows, C);
    return;
  }
  const views = { ids, positions, tok, pos, w, b, out, xn };
  const aligned16 = aligned({ tok, pos, w, b, out, xn });
  layernormDecode(rt, { embed: true, views, rows, C, rStride: 0, rOff: 0, V, T, aligned: aligned16 });
}

/** Per-runtime scratch for the statistics embedLayernorm's composed path writes (and nobody reads). */
const lnScratches = new WeakMap<Runtime, { mean: Tensor; rstd: Tensor }>();
function lnScratch(rt: Runtime, rows: number): { mean: Tensor; rstd: Tensor } {
  let s = lnScratches.get(rt);
  if (!s || s.mean.size < rows) {
    s = {
      mean: Tensor.empty(rt, [rows], "f32", "ln-mean"),
      rstd: Tensor.empty(rt, [rows], "f32", "ln-rstd"),
    };
    lnScratches.set(rt, s);
  }
  return s;
}

/** Whether every view starts at a 16-byte offset. */
const aligned = (views: Record<string, Tensor>) => Object.values(views).every((t) => t.offset % 16 === 0);

function layernormDecode(rt: Runtime, a: LayernormDecodeArgs): void {
  if (rt.kernels === "gpu") layernormDecodeGpu(rt, a);
  else layernormDecodeCpu(rt, a);
}

/** A Linear: W [out, in] and its bias [out] (or none). */
export interface LinearWeights {
  /** [out, in]. */
  W: Tensor;
  /** [out], or null. */
  bias: Tensor | null;
}

/** A Linear with a LayerNorm's affine folded in (foldLayernorm), and its weights' row sums. */
export interface FoldedLinear {
  /** Wf = W·diag(γ) [out, in]. */
  W: Tensor;
  /** bf = bias + W·β [out]. */
  bias: Tensor;
  /** Σ_k Wf[j, k] [out] (the window kernel's one-pass normalisation needs them). */
  colSums: Tensor;
}

/**
 * Fold a LayerNorm's affine (γ, β [in]) into the Linear after it: Wf = W·diag(γ), bf = bias + W·β
 * (bias null: 0), so that LayerNorm(x)·Wᵀ + bias = norm(x)·Wfᵀ + bf with norm(x) = (x − mean)·rstd;
 * also colSums = Σ_k Wf[j, k]. The outputs must not share a buffer with the inputs.
 */
export function foldLayernorm(
  rt: Runtime,
  gamma: Tensor,
  beta: Tensor,
  lin: LinearWeights,
  out: FoldedLinear,
): void {
  const [N, K] = lin.W.shape;
  if (gamma.size !== K || beta.size !== K) throw new Error(`foldLayernorm: γ/β must have ${K} values`);
  if (out.W.size < N * K || out.bias.size < N || out.colSums.size < N || (lin.bias && lin.bias.size !== N)) {
    throw new Error("foldLayernorm: output too small");
  }
  // A weight past the binding cap (GPT-2's tied head) is folded a block of 64·r rows at a time.
  const fit = Math.floor(rt.maxBindingBytes / (4 * K) / 64) * 64;
  const rows = N * K * 4 <= rt.maxBindingBytes ? N : fit;
  if (rows < 1) throw new Error(`foldLayernorm: 64 rows of ${K} floats exceed the binding cap`);
  const part = (t: Tensor, n0: number, n: number, width = 1) =>
    rows === N ? t : new Tensor(rt, t.buffer, t.offset + 4 * n0 * width, [n * width], "f32", t.name);
  for (let n0 = 0; n0 < N; n0 += rows) {
    const n = Math.min(rows, N - n0);
    const views = {
      W: part(lin.W, n0, n, K),
      gamma,
      beta,
      bias: lin.bias ? part(lin.bias, n0, n) : dummy(rt),
      Wf: part(out.W, n0, n, K),
      bf: part(out.bias, n0, n),
      cs: part(out.colSums, n0, n),
    };
    rt.dispatch("fold_layernorm", FOLD_WGSL, views, [n, K, lin.bias ? 1 : 0], [Math.ceil(n / 64)]);
  }
}

/** What layernormLinear's composed path (GPU family, or no window plan) writes: LayerNorm's output and statistics. */
export interface LayernormScratch {
  /** [rows, in]. */
  xn: Tensor;
  /** [rows]. */
  mean: Tensor;
  /** [rows]. */
  rstd: Tensor;
}

/**
 * y [rows, out] = act(LayerNorm(x)·γ + β) · Wᵀ + bias) for x [rows, in] (eval: LayerNorm with eps
 * 1e-5, biased variance). `folded` is `lin` with the affine folded in (foldLayernorm): the CPU family
 * normalises x's rows inside its window matmul (one dispatch, `scratch` untouched); otherwise (or
 * with `folded` null: no folded copy to read) layernormForward into `scratch` and linearForward
 * from it.
 */
export function layernormLinear(
  rt: Runtime,
  x: Tensor,
  ln: { w: Tensor; b: Tensor },
  lin: LinearWeights,
  folded: FoldedLinear | null,
  y: Tensor,
  rows: number,
  epilogue: Epilogue,
  scratch: LayernormScratch,
): void {
  const C = lin.W.shape[1];
  if (
    rt.kernels === "cpu" && folded &&
    linearWindow(rt, x, folded.W, folded.bias, y, rows, {
      epilogue,
      norm: { eps: LN_EPS, colSums: folded.colSums },
    })
  ) {
    return;
  }
  layernormForward(rt, x, ln.w, ln.b, scratch.xn, scratch.mean, scratch.rstd, rows, C);
  linearForward(rt, scratch.xn, lin.W, lin.bias, y, rows, epilogue);
}

/**
 * res [rows, out] += x [rows, in] · Wᵀ + bias: a residual add after a Linear (eval: no dropout). The
 * CPU family adds in the window matmul's epilogue (one dispatch, `scratch` untouched); otherwise
 * linearForward into `scratch` [rows, out] and addInto.
 */
export function residualLinear(
  rt: Runtime,
  x: Tensor,
  lin: LinearWeights,
  res: Tensor,
  rows: number,
  scratch: Tensor,
): void {
  const N = lin.W.shape[0];
  if (res.size < rows * N || scratch.size < rows * N) {
    throw new Error("residualLinear: res/scratch too small");
  }
  if (rt.kernels === "cpu" && linearWindow(rt, x, lin.W, lin.bias, res, rows, { accumulate: true })) return;
  linearForward(rt, x, lin.W, lin.bias, scratch, rows);
  const view = (
    t: Tensor,
  ) => (t.size === rows * N ? t : new Tensor(rt, t.buffer, t.offset, [rows, N], "f32", t.name));
  addInto(rt, view(res), view(scratch));
}
