// Column sums of a matrix: the stand-alone bias gradient (`sumRows`). Both kernel families
// use this one kernel: 64 invocations per workgroup, one column per invocation, so neighbouring
// invocations read neighbouring floats of each row of X [M, N] (coalesced). The
// bias gradient inside a Linear's backward does not come here: it is fused into the weight-gradient
// product (`rowSums`).

import { groups, type Runtime } from "../runtime.ts";
import type { Tensor } from "../tensor.ts";

const SUM_WG = 64;
// Y[j] (+)= Σ_i X[i·n + j] for j < n, i < rows.
const COLUMN_SUMS = /* wgsl */ `
struct P { n: u32, rows: u32, acc: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@compute @workgroup_size(${SUM_WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let j = g.x;
  if (j >= p.n) { return; }
  var s = 0.0;
  for (var i = 0u; i < p.rows; i++) { s += X[i * p.n + j]; }
  if (p.acc != 0u) { s += Y[j]; }
  Y[j] = s;
}`;

/** Y[j] (+)= Σ_i X[i, j] (X is [M, N]). */
export function columnSums(
  rt: Runtime,
  X: Tensor,
  Y: Tensor,
  M: number,
  N: number,
  accumulate: boolean,
): void {
  rt.dispatch("sum_rows", COLUMN_SUMS, { X, Y }, [N, M, accumulate ? 1 : 0], [groups(N, SUM_WG)]);
}
