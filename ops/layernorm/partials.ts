// What both LayerNorm families share: eps, the views their kernels bind, the per-runtime scratch
// for the dw/db partial sums, and the kernel that adds those partials up per column.

import { groups, type Runtime } from "../runtime.ts";
import { Tensor } from "../tensor.ts";
import { cachedWGSL } from "../wgsl_cache.ts";

/** LayerNorm epsilon (PyTorch's default). */
export const LN_EPS = 1e-5;

/** The forward's bindings. */
export type LayernormForwardViews = {
  X: Tensor;
  W: Tensor;
  B: Tensor;
  Y: Tensor;
  Mean: Tensor;
  Rstd: Tensor;
};
/** The backward dx kernel's bindings (besides the partial sums). */
export type LayernormBackwardViews = {
  DY: Tensor;
  X: Tensor;
  W: Tensor;
  Mean: Tensor;
  Rstd: Tensor;
  DX: Tensor;
};

/** The forward kernels' storage bindings (both families; the uniform `p` is binding 0). */
export const FORWARD_BINDINGS = `
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> W: array<f32>;
@group(0) @binding(3) var<storage, read> B: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;
@group(0) @binding(5) var<storage, read_write> Mean: array<f32>;
@group(0) @binding(6) var<storage, read_write> Rstd: array<f32>;`;
/** The backward dx kernels' storage bindings, the partial rows [G, 2C] last. */
export const BACKWARD_BINDINGS = `
@group(0) @binding(1) var<storage, read> DY: array<f32>;
@group(0) @binding(2) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read> W: array<f32>;
@group(0) @binding(4) var<storage, read> Mean: array<f32>;
@group(0) @binding(5) var<storage, read> Rstd: array<f32>;
@group(0) @binding(6) var<storage, read_write> DX: array<f32>;
@group(0) @binding(7) var<storage, read_write> Part: array<f32>;`;

/** Per-runtime scratch for the dw/db partial sums, grown on demand. */
const scratch = new WeakMap<Runtime, Tensor>();
export function partials(rt: Runtime, n: number): Tensor {
  let t = scratch.get(rt);
  if (!t || t.size < n) {
    t = Tensor.empty(rt, [Math.max(n, 1024)], "f32", "layernorm partials");
    scratch.set(rt, t);
  }
  return t;
}

// dw[c] = Σ_g Part[g, c], db[c] = Σ_g Part[g, C + c] over the G partial rows [G, 2C], in a fixed
// order (deterministic, no atomics). A workgroup owns `cols` consecutive outputs (consecutive
// invocations read consecutive columns of a partial row: coalesced) and `lanes` invocations per
// output: lane i sums the partial rows i, i + lanes, ..., then lane 0 adds the lanes up in order.
// The CPU family runs lanes = 1 (one invocation walks all G rows), the GPU family splits the walk.
function sumPartialsWGSL(cols: number, lanes: number): string {
  const wg = cols * lanes;
  const combine = lanes === 1 ? "" : `
  red[l] = s;
  workgroupBarrier();
  if (lane != 0u) { return; }
  for (var i = 1u; i < ${lanes}u; i++) { s += red[l + i * ${cols}u]; }`;
  return /* wgsl */ `
struct P { G: u32, C: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> Part: array<f32>;
@group(0) @binding(2) var<storage, read_write> DW: array<f32>;
@group(0) @binding(3) var<storage, read_write> DB: array<f32>;
${lanes === 1 ? "" : `var<workgroup> red: array<f32, ${wg}>;`}

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  let lane = l / ${cols}u;
  let j = wid.x * ${cols}u + l % ${cols}u;
  let C2 = 2u * p.C;
  var s = 0.0;
  if (j < C2) {
    for (var k = lane; k < p.G; k += ${lanes}u) { s += Part[k * C2 + j]; }
  }${combine}
  if (j >= C2 || lane != 0u) { return; }
  if (j < p.C) { DW[j] = s; } else { DB[j - p.C] = s; }
}`;
}

/**
 * dw, db [C] = column sums of the G partial rows [G, 2C] in `part`: `cols` outputs per workgroup,
 * `lanes` invocations each (see sumPartialsWGSL).
 */
export function sumPartials(
  rt: Runtime,
  part: Tensor,
  dw: Tensor,
  db: Tensor,
  G: number,
  C: number,
  cols: number,
  lanes = 1,
): void {
  const code = cachedWGSL(`layernorm/sum/${cols}x${lanes}`, () => sumPartialsWGSL(cols, lanes));
  rt.dispatch("layernorm_bwd_dwdb", code, { Part: part, DW: dw, DB: db }, [G, C], [groups(2 * C, cols)]);
}
