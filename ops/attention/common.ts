// What both attention kernel families share: the problem a dispatch solves and the dropout keep-scale.

import { HASH_WGSL } from "../hash.ts";
import type { Tensor } from "../tensor.ts";

/** One attention launch, checked by ops/attention.ts: hs = C / H, p the dropout rate in effect (0 in eval). */
export interface AttnShape {
  B: number;
  T: number;
  C: number;
  H: number;
  hs: number;
  p: number;
  stream: number;
  /** The u32 step state [seed, step, ..] (ops/hash.ts). */
  state: Tensor;
}

/** The tensors of a forward launch, named as the kernels bind them. */
export interface AttnForwardTensors {
  qkv: Tensor;
  out: Tensor;
  probs: Tensor;
}

/** The tensors of a backward launch, named as the kernels bind them. */
export interface AttnBackwardTensors {
  dout: Tensor;
  qkv: Tensor;
  probs: Tensor;
  dqkv: Tensor;
  dscores: Tensor;
}

/**
 * WGSL: the hash plus the dropout keep-scale with the per-dispatch part of the hash hoisted:
 * keep(idx, key, p, ks) equals dropout_scale(seed, step, stream, idx, p) for
 * key = drop_key(seed, step, stream), ks = 1 / (1 - p) (p = 0 gives 1, as u >= 0 always).
 */
export const KEEP_WGSL = /* wgsl */ `${HASH_WGSL}
fn drop_key(seed: u32, step: u32, stream: u32) -> u32 {
  return pcg_hash(stream ^ pcg_hash(step ^ pcg_hash(seed)));
}
fn keep(idx: u32, key: u32, p: f32, ks: f32) -> f32 {
  let u = f32(pcg_hash(idx ^ key) >> 8u) * (1.0 / 16777216.0);
  return select(0.0, ks, u >= p);
}`;

// The storage bindings of the three kernels, the same in both families (the dispatch binds them by
// these names: AttnForwardTensors and AttnBackwardTensors).
/** Forward: qkv in; out and probs (pre-dropout) out; the step state. */
export const FORWARD_BINDINGS = bindings([
  "read> qkv: array<f32>",
  "read_write> out: array<f32>",
  "read_write> probs: array<f32>",
  "read> state: array<u32>",
]);
/** Backward, per query row: dq (and D_t in dscores). */
export const BACKWARD_ROWS_BINDINGS = bindings([
  "read> dout: array<f32>",
  "read> qkv: array<f32>",
  "read> probs: array<f32>",
  "read_write> dqkv: array<f32>",
  "read_write> dscores: array<f32>",
  "read> state: array<u32>",
]);
/** Backward, per key row: dk and dv. */
export const BACKWARD_KEYS_BINDINGS = bindings([
  "read> dout: array<f32>",
  "read> qkv: array<f32>",
  "read> probs: array<f32>",
  "read> dscores: array<f32>",
  "read_write> dqkv: array<f32>",
  "read> state: array<u32>",
]);

function bindings(decls: string[]): string {
  return decls.map((d, i) => `@group(0) @binding(${i + 1}) var<storage, ${d};`).join("\n");
}
