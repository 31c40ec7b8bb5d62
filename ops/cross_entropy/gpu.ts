// Cross-entropy, GPU family (the semantics are in ../cross_entropy.ts): one workgroup per row of
// logits. Invocation l takes columns l, l + wg, ... (consecutive invocations read consecutive
// logits: coalesced); the row max and the exp-sum (and, for probability targets, Σt and the loss
// terms) are workgroup-memory tree reductions (../workgroup_reduce.ts); then every invocation
// writes the gradient of its columns. 64 invocations for V <= 128 (a character vocabulary: V = 65
// leaves none idle for long), 256 beyond. At nanoGPT's shakespeare-char size (N = 64·256 = 16384,
// V = 65): 16384 workgroups of 64.

import { f32, grid1d, type Runtime } from "../runtime.ts";
import { workgroupReduceWGSL } from "../workgroup_reduce.ts";
import { type CrossEntropyViews, NAN_BITS, type RowRange } from "./mean.ts";
import { cachedWGSL } from "../wgsl_cache.ts";

const rowWG = (V: number) => (V <= 128 ? 64 : 256);

function ceWGSL(probs: boolean, grad: boolean, wg: number): string {
  const each = (body: string) => `for (var c = l; c < p.V; c += ${wg}u) { ${body} }`;
  const body = probs
    ? /* wgsl */ `
  var st = 0.0;
  var loss = 0.0;
  ${each("let t = T[tbase + c]; st += t; loss += t * (logS + (m - X[base + c]));")}
  let sums = wg_sum2(l, vec2<f32>(st, loss));
  st = sums.x;
  loss = sums.y;
  if (l == 0u) { R[tr] = loss; }
  ${grad ? each("D[base + c] = (exp(X[base + c] - m) / s * st - T[tbase + c]) / p.nf;") : ""}`
    : /* wgsl */ `
  let y = T[tr];
  if (y >= p.V) {
    let nan = bitcast<f32>(p.nanBits);
    if (l == 0u) { R[tr] = nan; }
    ${grad ? each("D[base + c] = nan;") : ""}
    return;
  }
  if (l == 0u) { R[tr] = logS + (m - X[base + y]); }
  ${grad ? each("D[base + c] = (exp(X[base + c] - m) / s - select(0.0, 1.0, c == y)) / p.nf;") : ""}`;
  return /* wgsl */ `
struct P { N: u32, V: u32, stride: u32, nanBits: u32, row0: u32, nf: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> T: array<${probs ? "f32" : "u32"}>;
@group(0) @binding(3) var<storage, read_write> R: array<f32>;
${grad ? "@group(0) @binding(4) var<storage, read_write> D: array<f32>;" : ""}
${workgroupReduceWGSL(wg)}

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  let r = wid.x + wid.y * p.stride;
  if (r >= p.N) { return; }
  let base = r * p.V;
  let tr = p.row0 + r; // the row in the whole batch's targets and row losses
  ${probs ? "let tbase = tr * p.V;" : ""}
  var m = -3.4028234e38; // -f32 max (Tint rejects 3.4028235e38 as out of range)
  ${each("m = max(m, X[base + c]);")}
  m = wg_max(l, m);
  var s = 0.0;
  ${each("s += exp(X[base + c] - m);")}
  s = wg_sum(l, s);
  let logS = log(s);
${body}
}`;
}

/** The GPU family's per-row losses (and dlogits when bound): a workgroup per row. */
export function crossEntropyGpu(
  rt: Runtime,
  views: CrossEntropyViews,
  probs: boolean,
  N: number,
  V: number,
  rows: RowRange = { row0: 0, total: N },
): void {
  const wg = rowWG(V), grad = !!views.D;
  const code = cachedWGSL(`cross_entropy/gpu/${probs}/${grad}/${wg}`, () => ceWGSL(probs, grad, wg));
  const { workgroups, stride } = grid1d(rt, N, 1);
  rt.dispatch(
    probs ? "cross_entropy_probs" : "cross_entropy",
    code,
    views,
    [N, V, stride, NAN_BITS, rows.row0, f32(rows.total)],
    workgroups,
  );
}
