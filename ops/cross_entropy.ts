// Cross-entropy family: fused log-softmax + cross-entropy over the rows of logits [N, V] with mean
// reduction (PyTorch F.cross_entropy, reduction='mean'), its gradient in the same kernel, and the
// deterministic mean reduction that turns the per-row losses into the scalar loss.
//
// Targets are either class indices (u32 [N]) or class probabilities (f32 [N, V], one-hot or soft):
//   row loss r = Σ_c t_c · (logsumexp(x) − x_c)            (indices: t is the one-hot row)
//   dlogits    = (softmax(x) · Σ_c t_c − t) / N
// One invocation owns one row (V is small, ~65, and may exceed any workgroup size): a max pass, an
// exp-sum pass, then a pass writing the loss terms and the gradient, all max-subtracted so ±large
// logits stay finite. An index >= V is invalid input: that row's loss and gradient are written as NaN
// so the mean (and the training run) shows it instead of silently training on garbage.

import { grid1d, type Runtime } from "./runtime.ts";
import type { Tensor } from "./tensor.ts";

const CE_WG = 64;
const MEAN_WG = 256;
const NAN_BITS = 0x7fc00000; // passed as a uniform word: a NaN constant would be folded/rejected by WGSL

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
    let t = T[base + c];
    st += t;
    loss += t * (logS + (m - X[base + c]));
  }
  R[r] = loss;
  ${
      grad
        ? `for (var c = 0u; c < p.V; c++) {
    let sm = exp(X[base + c] - m) / s;
    D[base + c] = (sm * st - T[base + c]) / nf;
  }`
        : ""
    }`
    : /* wgsl */ `
  let y = T[r];
  if (y >= p.V) {
    let nan = bitcast<f32>(p.nanBits);
    R[r] = nan;
    ${grad ? "for (var c = 0u; c < p.V; c++) { D[base + c] = nan; }" : ""}
    return;
  }
  R[r] = logS + (m - X[base + y]);
  ${
      grad
        ? `for (var c = 0u; c < p.V; c++) {
    let sm = exp(X[base + c] - m) / s;
    D[base + c] = (sm - select(0.0, 1.0, c == y)) / nf;
  }`
        : ""
    }`;
  return /* wgsl */ `
struct P { N: u32, V: u32, stride: u32, nanBits: u32 }
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
  let nf = f32(p.N);
  var m = X[base];
  for (var c = 1u; c < p.V; c++) { m = max(m, X[base + c]); }
  var s = 0.0;
  for (var c = 0u; c < p.V; c++) { s += exp(X[base + c] - m); }
  let logS = log(s);
${body}
}`;
}

const MEAN = /* wgsl */ `
struct P { n: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
var<workgroup> part: array<f32, ${MEAN_WG}>;

@compute @workgroup_size(${MEAN_WG})
fn main(@builtin(local_invocation_index) l: u32) {
  var s = 0.0;
  for (var i = l; i < p.n; i += ${MEAN_WG}u) { s += X[i]; }
  part[l] = s;
  workgroupBarrier();
  for (var w = ${MEAN_WG / 2}u; w > 0u; w >>= 1u) {
    if (l < w) { part[l] += part[l + w]; }
    workgroupBarrier();
  }
  if (l == 0u) { Y[0] = part[0] / f32(p.n); }
}`;

/**
 * out[0] = mean of x[0..n): one workgroup of 256 threads, strided partial sums then a fixed tree in
 * workgroup memory, so the result is bit-reproducible. `out` may be a view at any 256-aligned offset
 * but must not share a buffer with `x`.
 */
export function meanReduce(rt: Runtime, x: Tensor, out: Tensor, n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new Error(`meanReduce: need n >= 1, got ${n}`);
  if (x.size < n) throw new Error(`meanReduce: x has ${x.size} values, want ${n}`);
  if (out.size < 1) throw new Error("meanReduce: out is empty");
  if (x.buffer === out.buffer) throw new Error("meanReduce: x and out must be different buffers");
  rt.dispatch("mean_reduce", MEAN, { X: x, Y: out }, [n], [1]);
}

/**
 * Fused log-softmax + cross-entropy, mean over N rows. logits [N, V]; targets u32 [N] (class
 * indices) or f32 [N, V] (class probabilities); rowLoss [N] receives the per-row losses (scratch);
 * loss[0] the mean; dlogits [N, V] (when given) is overwritten with d(mean loss)/d(logits).
 * rowLoss and dlogits must not share a buffer with the other operands; loss must not share rowLoss's.
 */
export function crossEntropy(
  rt: Runtime,
  logits: Tensor,
  targets: Tensor,
  dlogits: Tensor | null,
  rowLoss: Tensor,
  loss: Tensor,
  N: number,
  V: number,
): void {
  if (!Number.isInteger(N) || !Number.isInteger(V) || N < 1 || V < 1) {
    throw new Error(`crossEntropy: bad shape N=${N} V=${V}`);
  }
  const probs = targets.dtype === "f32";
  if (logits.size < N * V) throw new Error(`crossEntropy: logits has ${logits.size} values, want ${N * V}`);
  if (targets.size < (probs ? N * V : N)) {
    throw new Error(`crossEntropy: targets has ${targets.size} values, want ${probs ? N * V : N}`);
  }
  if (rowLoss.size < N) throw new Error(`crossEntropy: rowLoss has ${rowLoss.size} values, want ${N}`);
  if (dlogits && dlogits.size < N * V) {
    throw new Error(`crossEntropy: dlogits has ${dlogits.size} values, want ${N * V}`);
  }
  const writable = dlogits ? [rowLoss, dlogits] : [rowLoss];
  for (const w of writable) {
    for (const o of [logits, targets, rowLoss, dlogits]) {
      if (o && o !== w && o.buffer === w.buffer) {
        throw new Error("crossEntropy: rowLoss/dlogits must not share a buffer with another operand");
      }
    }
  }
  const { workgroups, stride } = grid1d(rt, N, CE_WG);
  const views = { X: logits, T: targets, R: rowLoss, ...(dlogits ? { D: dlogits } : {}) };
  rt.dispatch(
    probs ? "cross_entropy_probs" : "cross_entropy",
    ceWGSL(probs, !!dlogits),
    views,
    [N, V, stride, NAN_BITS],
    workgroups,
  );
  meanReduce(rt, rowLoss, loss, N);
}
