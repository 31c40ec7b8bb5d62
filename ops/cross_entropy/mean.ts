// What both cross-entropy families share: the bindings, the NaN bits, and `meanReduce`'s kernel.
//
// meanReduce is one workgroup of 256 for both families: invocation l sums x[l], x[l + 256], ...
// (consecutive invocations read consecutive values: coalesced), then a fixed tree in workgroup
// memory. At nanoGPT's shakespeare-char size (N = 64·256 = 16384 row losses, 64 KiB) that is 64
// coalesced loads per invocation: one dispatch, microseconds, and bit-reproducible; a multi-stage
// version would only add a dispatch per step, so it stays one stage in both families.

import type { Runtime } from "../runtime.ts";
import type { Tensor } from "../tensor.ts";
import { workgroupReduceWGSL } from "../workgroup_reduce.ts";

/** A NaN passed as a uniform word: a NaN constant would be folded/rejected by WGSL. */
export const NAN_BITS = 0x7fc00000;

/** The per-row kernels' bindings: logits, targets, row losses and (optionally) dlogits. */
export type CrossEntropyViews = { X: Tensor; T: Tensor; R: Tensor; D?: Tensor };

/**
 * Where the rows of X (and D) sit in a batch of `total` rows: X's row r is the batch's row row0 + r,
 * whose target and row loss are T's and R's, and dlogits are divided by `total` (the mean over the
 * whole batch). A chunked head (../head.ts) passes each chunk's; a plain call { 0, N }.
 */
export type RowRange = { row0: number; total: number };

const MEAN_WG = 256;
const MEAN = /* wgsl */ `
struct P { n: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
${workgroupReduceWGSL(MEAN_WG)}

@compute @workgroup_size(${MEAN_WG})
fn main(@builtin(local_invocation_index) l: u32) {
  var s = 0.0;
  for (var i = l; i < p.n; i += ${MEAN_WG}u) { s += X[i]; }
  s = wg_sum(l, s);
  if (l == 0u) { Y[0] = s / f32(p.n); }
}`;

/** out[0] = mean of x[0..n) (see the comment at the top). */
export function dispatchMean(rt: Runtime, x: Tensor, out: Tensor, n: number): void {
  rt.dispatch("mean_reduce", MEAN, { X: x, Y: out }, [n], [1]);
}
