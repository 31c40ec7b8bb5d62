// Split-K for the gpu family's matmul: the scratch buffer the chunks' partial sums go to, and the
// second dispatch that adds them up. A weight-gradient product (K = B·T, M x N = the weight) launches
// only (M/64)·(N/64) workgroups unsplit (12 to 144 at nanoGPT's shakespeare-char sizes, while a large
// GPU has 100 or more compute units) and sums up to 65536 products in one f32 chain; split into S
// chunks it launches S times as many, each chain S times shorter.
//
// Layout of the scratch: S layers of batch·M·N chunk sums (layer s = chunk s of K), then S layers of
// M row sums when the product reduces them (the fused bias gradient). The reduction adds the layers
// in order s = 0, 1, ..., S-1 for every element: a fixed order, so results are deterministic (no
// atomics), then applies alpha, C (accumulate), the bias and the epilogue exactly as the one-dispatch
// kernel does.

import type { MatmulProblem } from "../matmul.ts";
import { f32, grid1d, type Runtime } from "../runtime.ts";
import { Tensor } from "../tensor.ts";
import { activation, activationLib, matmulLabel, variantCode } from "./common.ts";
import { type MatmulVariant, SPLIT_SCRATCH_BYTES, splitScratchFloats } from "./variants.ts";

const REDUCE_WG = 256;

/** One scratch buffer per device, made on the first split-K product at its full size (never regrown). */
const scratch = new WeakMap<Runtime, GPUBuffer>();

/** The scratch view the chunks of `p` under `v` write (variantUnfit checked that it fits). */
export function splitScratch(rt: Runtime, p: MatmulProblem, v: MatmulVariant): Tensor {
  let buf = scratch.get(rt);
  if (!buf) {
    const bytes = Math.min(SPLIT_SCRATCH_BYTES, rt.device.limits.maxStorageBufferBindingSize);
    buf = rt.createBuffer(bytes, undefined, "matmul split-K scratch");
    scratch.set(rt, buf);
  }
  return new Tensor(rt, buf, 0, [splitScratchFloats(v, p)]);
}

interface ReduceSpec {
  bias: boolean;
  acc: boolean;
  ep: MatmulProblem["epilogue"];
  rowSums: boolean;
}

function reduceWGSL(s: ReduceSpec): string {
  return /* wgsl */ `
struct P { total: u32, M: u32, N: u32, ns: u32, alpha: f32, stride: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
${s.bias ? "@group(0) @binding(3) var<storage, read> bias: array<f32>;" : ""}
${s.rowSums ? "@group(0) @binding(4) var<storage, read_write> rs: array<f32>;" : ""}

${activationLib(s.ep)}
@compute @workgroup_size(${REDUCE_WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let idx = g.x + g.y * p.stride;
  if (idx < p.total) {
    var c = part[idx];
    for (var s = 1u; s < p.ns; s++) { c += part[s * p.total + idx]; }
    var v = p.alpha * c${s.acc ? " + C[idx]" : ""}${s.bias ? " + bias[idx % p.N]" : ""};
    ${s.ep !== "none" ? `v = ${activation(s.ep)};` : ""}
    C[idx] = v;
  }${
    s.rowSums
      ? ` else if (idx < p.total + p.M) {
    let i = idx - p.total;
    let base = p.ns * p.total;
    var r = part[base + i];
    for (var s = 1u; s < p.ns; s++) { r += part[base + s * p.M + i]; }
    rs[i] = ${s.acc ? "rs[i] + " : ""}r;
  }`
      : ""
  }
}`;
}

/** Record the fixed-order sum of the `ns` chunk layers of `part` into C (and rowSums). */
export function reduceSplit(rt: Runtime, p: MatmulProblem, part: Tensor, ns: number): void {
  const spec: ReduceSpec = { bias: !!p.bias, acc: p.accumulate, ep: p.epilogue, rowSums: !!p.rowSums };
  const total = p.batch * p.M * p.N;
  const { workgroups, stride } = grid1d(rt, total + (p.rowSums ? p.M : 0), REDUCE_WG);
  const views = {
    part,
    C: p.C,
    ...(p.bias ? { bias: p.bias } : {}),
    ...(p.rowSums ? { rs: p.rowSums } : {}),
  };
  const code = variantCode("split_reduce", spec, reduceWGSL);
  rt.dispatch(
    `${matmulLabel(p)} reduce`,
    code,
    views,
    [total, p.M, p.N, ns, f32(p.alpha), stride],
    workgroups,
  );
}
