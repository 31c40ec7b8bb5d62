// LayerNorm family (PyTorch semantics over the last axis, biased variance, eps = 1e-5):
//   y = (x - mean) · rstd · w + b,   rstd = 1 / sqrt(var + eps),   x, y [rows, C], w, b [C].
// The forward saves mean and rstd [rows] for the backward:
//   xhat = (x - mean) · rstd,  g = dy · w
//   dx = rstd · (g - mean_C(g) - xhat · mean_C(g · xhat))
//   dw = Σ_rows dy · xhat,  db = Σ_rows dy
//
// Row kernels (forward, dx) use one invocation per row looping over C: no barriers, and on
// llvmpipe/lavapipe the SIMD lanes are simply different rows. The variance is two-pass (sum of
// squared deviations), not E[x²] - mean². The parameter gradients are a column reduction done
// deterministically: a 16×16 workgroup owns 16 columns, 16 lanes stride over the rows, and a fixed
// tree in workgroup memory sums the lanes (no atomics, same order every run).

import { assertNoAlias } from "./elementwise.ts";
import { f32, groups, type Runtime } from "./runtime.ts";
import type { Tensor } from "./tensor.ts";

export const LN_EPS = 1e-5;
const ROW_WG = 64;
const COL = 16; // columns per workgroup of the parameter-gradient reduction
const LANES = 16; // row lanes per column (power of two: tree reduction)

const FORWARD = /* wgsl */ `
struct P { rows: u32, C: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> W: array<f32>;
@group(0) @binding(3) var<storage, read> B: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;
@group(0) @binding(5) var<storage, read_write> Mean: array<f32>;
@group(0) @binding(6) var<storage, read_write> Rstd: array<f32>;

@compute @workgroup_size(${ROW_WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let r = g.x;
  if (r >= p.rows) { return; }
  let base = r * p.C;
  let invC = 1.0 / f32(p.C);
  var s = 0.0;
  for (var c = 0u; c < p.C; c++) { s += X[base + c]; }
  let m = s * invC;
  var v = 0.0;
  for (var c = 0u; c < p.C; c++) {
    let d = X[base + c] - m;
    v = fma(d, d, v);
  }
  let rs = inverseSqrt(v * invC + p.eps);
  for (var c = 0u; c < p.C; c++) {
    Y[base + c] = fma((X[base + c] - m) * rs, W[c], B[c]);
  }
  Mean[r] = m;
  Rstd[r] = rs;
}`;

const BACKWARD_DX = /* wgsl */ `
struct P { rows: u32, C: u32, acc: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> DY: array<f32>;
@group(0) @binding(2) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read> W: array<f32>;
@group(0) @binding(4) var<storage, read> Mean: array<f32>;
@group(0) @binding(5) var<storage, read> Rstd: array<f32>;
@group(0) @binding(6) var<storage, read_write> DX: array<f32>;

@compute @workgroup_size(${ROW_WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let r = g.x;
  if (r >= p.rows) { return; }
  let base = r * p.C;
  let m = Mean[r];
  let rs = Rstd[r];
  var sg = 0.0;
  var sgx = 0.0;
  for (var c = 0u; c < p.C; c++) {
    let xh = (X[base + c] - m) * rs;
    let gg = DY[base + c] * W[c];
    sg += gg;
    sgx = fma(gg, xh, sgx);
  }
  let invC = 1.0 / f32(p.C);
  let mg = sg * invC;
  let mgx = sgx * invC;
  for (var c = 0u; c < p.C; c++) {
    let o = base + c;
    let xh = (X[o] - m) * rs;
    var v = rs * (DY[o] * W[c] - mg - xh * mgx);
    if (p.acc != 0u) { v += DX[o]; }
    DX[o] = v;
  }
}`;

const BACKWARD_PARAMS = /* wgsl */ `
struct P { rows: u32, C: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> DY: array<f32>;
@group(0) @binding(2) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read> Mean: array<f32>;
@group(0) @binding(4) var<storage, read> Rstd: array<f32>;
@group(0) @binding(5) var<storage, read_write> DW: array<f32>;
@group(0) @binding(6) var<storage, read_write> DB: array<f32>;
var<workgroup> sw: array<f32, ${COL * LANES}>;
var<workgroup> sb: array<f32, ${COL * LANES}>;

@compute @workgroup_size(${COL}, ${LANES}, 1)
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
  let j = g.x;
  var aw = 0.0;
  var ab = 0.0;
  if (j < p.C) {
    for (var r = l.y; r < p.rows; r += ${LANES}u) {
      let o = r * p.C + j;
      let d = DY[o];
      aw = fma(d, (X[o] - Mean[r]) * Rstd[r], aw);
      ab += d;
    }
  }
  let k = l.y * ${COL}u + l.x;
  sw[k] = aw;
  sb[k] = ab;
  for (var s = ${LANES / 2}u; s > 0u; s = s >> 1u) {
    workgroupBarrier();
    if (l.y < s) {
      sw[k] += sw[k + s * ${COL}u];
      sb[k] += sb[k + s * ${COL}u];
    }
  }
  if (l.y == 0u && j < p.C) {
    DW[j] = sw[k];
    DB[j] = sb[k];
  }
}`;

function checkShapes(
  label: string,
  rows: number,
  C: number,
  big: Tensor[],
  perRow: Tensor[],
  w: Tensor,
): void {
  if (!Number.isInteger(rows) || !Number.isInteger(C) || rows < 0 || C < 1) {
    throw new Error(`${label}: bad shape rows=${rows} C=${C}`);
  }
  for (const t of big) {
    if (t.size < rows * C) throw new Error(`${label}: tensor too small for [${rows}, ${C}]`);
  }
  for (const t of perRow) {
    if (t.size < rows) throw new Error(`${label}: mean/rstd too small for ${rows} rows`);
  }
  if (w.size !== C) throw new Error(`${label}: weight has ${w.size} values, want ${C}`);
}

function noAlias(label: string, written: Tensor[], read: Tensor[]): void {
  for (const w of written) assertNoAlias(label, w, read);
}

/** y = LayerNorm(x)·w + b over the last axis; saves mean and rstd [rows] for the backward. */
export function layernormForward(
  rt: Runtime,
  x: Tensor,
  w: Tensor,
  b: Tensor,
  y: Tensor,
  mean: Tensor,
  rstd: Tensor,
  rows: number,
  C: number,
): void {
  checkShapes("layernormForward", rows, C, [x, y], [mean, rstd], w);
  if (b.size !== C) throw new Error(`layernormForward: bias has ${b.size} values, want ${C}`);
  noAlias("layernormForward", [y, mean, rstd], [x, w, b]);
  rt.dispatch("layernorm_fwd", FORWARD, [x, w, b, y, mean, rstd], [rows, C, f32(LN_EPS)], [
    groups(rows, ROW_WG),
  ]);
}

/**
 * Backward given dy: overwrites w.grad and b.grad, and dx (or dx += when `accumulateDx`, for
 * residual streams). mean/rstd are the forward's saved statistics.
 */
export function layernormBackward(
  rt: Runtime,
  dy: Tensor,
  x: Tensor,
  w: Tensor,
  bias: Tensor,
  mean: Tensor,
  rstd: Tensor,
  dx: Tensor,
  rows: number,
  C: number,
  accumulateDx = false,
): void {
  checkShapes("layernormBackward", rows, C, [dy, x, dx], [mean, rstd], w);
  const dw = w.grad, db = bias.grad;
  if (!dw || !db) throw new Error("layernormBackward: w and b need .grad tensors");
  if (bias.size !== C || dw.size !== C || db.size !== C) {
    throw new Error(`layernormBackward: w/b grads must be [${C}]`);
  }
  noAlias("layernormBackward", [dx], [dy, x, w, mean, rstd]);
  noAlias("layernormBackward", [dw, db], [dy, x, mean, rstd]);
  rt.dispatch("layernorm_bwd_dx", BACKWARD_DX, [dy, x, w, mean, rstd, dx], [rows, C, accumulateDx ? 1 : 0], [
    groups(rows, ROW_WG),
  ]);
  rt.dispatch("layernorm_bwd_dwdb", BACKWARD_PARAMS, [dy, x, mean, rstd, dw, db], [rows, C], [
    groups(C, COL),
  ]);
}
