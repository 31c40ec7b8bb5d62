// Attention family: the fused core of multi-head causal self-attention, between the QKV projection
// and the output projection (both plain matmuls elsewhere). Per batch b and head h (hs = C/H):
//   S = q kᵀ · hs^-½ (causal: query t sees keys j <= t),  P = softmax(S),  out = dropout(P) · v
// GPT-style dropout acts on the attention probabilities; its keep-scale for probs element `idx` is
// `dropout_scale(seed, step, stream, idx, p)` (ops/hash.ts), so backward recomputes the same mask.
//
// Layouts: qkv [B*T, 3C], row (b,t) = [q | k | v], head h at columns h*hs.. of each part;
// out [B*T, C] (heads concatenated). Flash-style: no T x T buffer exists. The forward saves per query
// row only lse [B*H*T], the log-sum-exp of its scaled scores at (b*H+h)*T + t, so P_tj =
// exp(s_tj - lse_t) is recomputed wherever it is needed (the dropout mask is indexed by the element
// ((b*H+h)*T + t)*T + j of the virtual [B, H, T, T] probabilities, as before). The backward uses
// D_t = dout_t · out_t (= Σ_j P_j dP_j, dropout included), written to the scratch delta [B*H*T].
//
// This file checks the arguments and picks the kernel family (rt.kernels):
//   ops/attention/gpu.ts  a workgroup of 64 per (b, h, 4 query rows), keys spread over it (real GPUs);
//   ops/attention/cpu.ts  one invocation per R query rows of a (b, h) (CPU fallback adapters).
// Both: 1 dispatch forward, 2 backward, deterministic (no atomics), memory O(B·H·T), causal (no work
// above the diagonal).

import type { Runtime } from "./runtime.ts";
import type { Tensor } from "./tensor.ts";
import type { AttnShape } from "./attention/common.ts";
import { backwardCpu, forwardCpu } from "./attention/cpu.ts";
import { backwardGpu, forwardGpu } from "./attention/gpu.ts";

export { attentionRows } from "./attention/cpu.ts";

/** Largest head size the kernels accept (the CPU family holds hs values per row in registers). */
export const MAX_HS = 128;

function check(
  name: string,
  B: number,
  T: number,
  C: number,
  H: number,
  p: number,
  state: Tensor,
  stream: number,
  train: boolean,
  sizes: [Tensor, number, string][],
): AttnShape {
  for (const [k, v] of Object.entries({ B, T, C, H })) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`${name}: ${k} must be a positive integer, got ${v}`);
  }
  if (C % H !== 0) throw new Error(`${name}: C=${C} is not divisible by H=${H}`);
  const hs = C / H;
  if (hs > MAX_HS) throw new Error(`${name}: head size ${hs} exceeds the supported maximum ${MAX_HS}`);
  if (!(p >= 0 && p < 1)) throw new Error(`${name}: dropout p must be in [0, 1), got ${p}`);
  if (!Number.isInteger(stream) || stream < 0 || stream > 0xffffffff) {
    throw new Error(`${name}: stream must be a u32, got ${stream}`);
  }
  if (state.dtype !== "u32" || state.size < 2) {
    throw new Error(`${name}: state must be the u32 step-state tensor`);
  }
  for (const [t, want, what] of sizes) {
    if (t.size < want) throw new Error(`${name}: ${what} has ${t.size} values, needs ${want}`);
  }
  return { B, T, C, H, hs, p: train ? p : 0, stream, state };
}

/**
 * Causal multi-head self-attention core. qkv [B*T, 3C] -> out [B*T, C]; lse [B*H*T] receives each
 * query row's log-sum-exp of its scaled scores, all the backward pass needs besides qkv and out.
 * Dropout with rate p on the probabilities when `train` (mask from state = [seed, step, ..], stream).
 */
export function attentionForward(
  rt: Runtime,
  qkv: Tensor,
  out: Tensor,
  lse: Tensor,
  B: number,
  T: number,
  C: number,
  H: number,
  p: number,
  state: Tensor,
  stream: number,
  train: boolean,
): void {
  const s = check("attentionForward", B, T, C, H, p, state, stream, train, [
    [qkv, B * T * 3 * C, "qkv"],
    [out, B * T * C, "out"],
    [lse, B * H * T, "lse"],
  ]);
  if (rt.kernels === "gpu") forwardGpu(rt, { qkv, out, lse }, s);
  else forwardCpu(rt, { qkv, out, lse }, s);
}

/**
 * Backward of `attentionForward` given dout [B*T, C], from the forward's qkv, out and lse: dqkv
 * [B*T, 3C] is overwritten with [dq | dk | dv]. delta [B*H*T] is scratch (afterwards it holds
 * D_t = dout_t · out_t per query row). p, state, stream and train must be those of the forward
 * pass (the dropout mask is recomputed).
 */
export function attentionBackward(
  rt: Runtime,
  dout: Tensor,
  qkv: Tensor,
  out: Tensor,
  lse: Tensor,
  dqkv: Tensor,
  delta: Tensor,
  B: number,
  T: number,
  C: number,
  H: number,
  p: number,
  state: Tensor,
  stream: number,
  train: boolean,
): void {
  const s = check("attentionBackward", B, T, C, H, p, state, stream, train, [
    [dout, B * T * C, "dout"],
    [qkv, B * T * 3 * C, "qkv"],
    [out, B * T * C, "out"],
    [lse, B * H * T, "lse"],
    [dqkv, B * T * 3 * C, "dqkv"],
    [delta, B * H * T, "delta"],
  ]);
  if (rt.kernels === "gpu") backwardGpu(rt, { dout, qkv, out, lse, dqkv, delta }, s);
  else backwardCpu(rt, { dout, qkv, out, lse, dqkv, delta }, s);
}
