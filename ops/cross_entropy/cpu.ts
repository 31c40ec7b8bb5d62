// Cross-entropy, CPU family (the semantics are in ../cross_entropy.ts): one invocation owns one row
// (V is small, ~65, and may exceed any workgroup size): a max pass, an exp-sum pass, then a pass
// writing the loss terms and the gradient, all max-subtracted so ±large logits stay finite. No
// barriers, no workgroup memory: on llvmpipe the SIMD lanes are different rows.

import { f32, grid1d, type Runtime } from "../runtime.ts";
import { type CrossEntropyViews, NAN_BITS, type RowRange } from "./mean.ts";

const CE_WG = 64;

function ceWGSL(probs: boolean, grad: boolean): string {
  const targetDecl = probs
    ? "@group(0) @binding(2) var<storage, read> T: array<f32>;"
    : "@group(0) @binding(2) var<storage, read> T: array<u32>;";
  const gradDecl = grad ? "@group(0) @binding(4) var<storage, read_write> D: array<f32>;" : "";
  // Loss and (optionally) gradient once the row's max m and exp-sum s are known.
  const body = probs
    ? /* wgsl */ `
  var st = 0.0;
  var loss = 0.0;
  for (var c = 0u; c < p.V; c++) {
    let t = T[tbase + c];
    st += t;
    loss += t * (logS + (m - X[base + c]));
  }
  R[tr] = loss;
  ${
      grad
        ? `for (var c = 0u; c < p.V; c++) {
    let sm = exp(X[base + c] - m) / s;
    D[base + c] = (sm * st - T[tbase + c]) / p.nf;
  }`
        : ""
    }`
    : /* wgsl */ `
  let y = T[tr];
  if (y >= p.V) {
    let nan = bitcast<f32>(p.nanBits);
    R[tr] = nan;
    ${grad ? "for (var c = 0u; c < p.V; c++) { D[base + c] = nan; }" : ""}
    return;
  }
  R[tr] = logS + (m - X[base + y]);
  ${
      grad
        ? `for (var c = 0u; c < p.V; c++) {
    let sm = exp(X[base + c] - m) / s;
    D[base + c] = (sm - select(0.0, 1.0, c == y)) / p.nf;
  }`
        : ""
    }`;
  return /* wgsl */ `
struct P { N: u32, V: u32, stride: u32, nanBits: u32, row0: u32, nf: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
${targetDecl}
@group(0) @binding(3) var<storage, read_write> R: array<f32>;
${gradDecl}

@compute @workgroup_size(${CE_WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let r = g.x + g.y * p.stride;
  if (r >= p.N) { return; }
  let base = r * p.V;
  let tr = p.row0 + r; // the row in the whole batch's targets and row losses
  ${probs ? "let tbase = tr * p.V;" : ""}
  var m = X[base];
  for (var c = 1u; c < p.V; c++) { m = max(m, X[base + c]); }
  var s = 0.0;
  for (var c = 0u; c < p.V; c++) { s += exp(X[base + c] - m); }
  let logS = log(s);
${body}
}`;
}

/** The CPU family's per-row losses (and dlogits when bound). */
export function crossEntropyCpu(
  rt: Runtime,
  views: CrossEntropyViews,
  probs: boolean,
  N: number,
  V: number,
  rows: RowRange = { row0: 0, total: N },
): void {
  const { workgroups, stride } = grid1d(rt, N, CE_WG);
  rt.dispatch(
    probs ? "cross_entropy_probs" : "cross_entropy",
    ceWGSL(probs, !!views.D),
    views,
    [N, V, stride, NAN_BITS, rows.row0, f32(rows.total)],
    workgroups,
  );
}
