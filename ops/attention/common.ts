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
  /** Per query row (b, h, t) at (b*H + h)*T + t: the log-sum-exp of its scaled scores. */
  lse: Tensor;
}

/** The tensors of a backward launch, named as the kernels bind them. */
export interface AttnBackwardTensors {
  dout: Tensor;
  qkv: Tensor;
  /** The forward's output (D_t = dout_t · out_t). */
  out: Tensor;
  lse: Tensor;
  dqkv: Tensor;
  /** Scratch [B*H*T]: the row kernel writes D_t, the key kernel reads it. */
  delta: Tensor;
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
/** Forward: qkv in; out and the rows' log-sum-exp out; the step state. */
export const FORWARD_BINDINGS = bindings([
  "read> qkv: array<f32>",
  "read_write> out: array<f32>",
  "read_write> lse: array<f32>",
  "read> state: array<u32>",
]);
/** Backward, per query row: D_t -> delta, dq. */
export const BACKWARD_ROWS_BINDINGS = bindings([
  "read> dout: array<f32>",
  "read> qkv: array<f32>",
  "read> out: array<f32>",
  "read> lse: array<f32>",
  "read_write> dqkv: array<f32>",
  "read_write> delta: array<f32>",
  "read> state: array<u32>",
]);
/** Backward, per key row: dk and dv (reads D_t from delta). */
export const BACKWARD_KEYS_BINDINGS = bindings([
  "read> dout: array<f32>",
  "read> qkv: array<f32>",
  "read> lse: array<f32>",
  "read> delta: array<f32>",
  "read_write> dqkv: array<f32>",
  "read> state: array<u32>",
]);

/** The key kernel's tensors: the backward's, less the forward output. */
export function keyTensors(t: AttnBackwardTensors): Omit<AttnBackwardTensors, "out"> {
  const { out: _, ...rest } = t;
  return rest;
}

function bindings(decls: string[]): string {
  return decls.map((d, i) => `@group(0) @binding(${i + 1}) var<storage, ${d};`).join("\n");
}
