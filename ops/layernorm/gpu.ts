// LayerNorm, GPU family (the semantics and the formulas are in ../layernorm.ts): a workgroup per row,
// shaped for real GPUs.
// - forward: one workgroup of `wg` invocations per row; invocation l holds columns l, l + wg, ...
//   (K = ⌈C / wg⌉ of them, in registers), so consecutive invocations load consecutive columns
//   (coalesced). Mean, then the sum of squared deviations from the registers (an exact two-pass),
//   by workgroup-memory tree reductions (../workgroup_reduce.ts).
// - backward: a workgroup walks `rpw` consecutive rows the same way (dy and x of its columns in
//   registers, the two row sums Σg and Σg·xhat by one tree reduction of pairs, then dx), and keeps each
//   column's dw/db sums over its rows in registers; it writes them as one partial row [2C] and
//   ./partials.ts adds the partial rows up per column in a fixed order, split over 4 lanes per
//   column. Two coalesced stages, no float atomics, bit-reproducible.
// At nanoGPT's shakespeare-char size (C = 384, rows = 64·256 = 16384): forward 16384 workgroups of
// 128; backward 256 workgroups of 128 (64 rows each), then ⌈768 / 64⌉ = 12 workgroups of 256.

import { f32, grid1d, type Runtime } from "../runtime.ts";
import type { Tensor } from "../tensor.ts";
import { workgroupReduceWGSL } from "../workgroup_reduce.ts";
import {
  BACKWARD_BINDINGS,
  FORWARD_BINDINGS,
  type LayernormBackwardViews,
  type LayernormForwardViews,
  LN_EPS,
  partials,
  sumPartials,
} from "./partials.ts";
import { cachedWGSL } from "../wgsl_cache.ts";

/** Invocations per row: 64 for narrow rows (C <= 64), else 128 (C = 384: 3 columns each). */
export const rowWG = (C: number): number => (C <= 64 ? 64 : 128);
/** The backward's workgroups (partial rows) at most: enough to fill a GPU, few enough to sum. */
const MAX_GROUPS = 256;
/** Outputs per workgroup and lanes per output of the partial-row sum. */
const SUM_COLS = 64, SUM_LANES = 4;

/** `for` over the invocation's K columns c = l + k·wg (c < C), running `body`. */
const eachCol = (wg: number, K: number, body: string) => `
  for (var k = 0u; k < ${K}u; k++) {
    let c = l + k * ${wg}u;
    if (c < p.C) {${body}
    }
  }`;

/**
 * The statements normalising one row with a workgroup of `wg` (see the top): x[k] = `load` (an
 * expression of the column c) for the invocation's K columns, then `mean` and `rs` (rstd) by tree
 * reductions, then `store` (statements of c, k, x[k], mean, rs) per column. Needs p.C, p.eps, l and
 * workgroupReduceWGSL(wg) in the module; the decode path's fused LayerNorms share it.
 */
export function layernormRowWGSL(wg: number, K: number, load: string, store: string): string {
  return `  let invC = 1.0 / f32(p.C);
  var x: array<f32, ${K}>;
  var s = 0.0;${eachCol(wg, K, ` x[k] = ${load}; s += x[k];`)}
  let mean = wg_sum(l, s) * invC;
  var q = 0.0;${eachCol(wg, K, " let d = x[k] - mean; q = fma(d, d, q);")}
  let rs = inverseSqrt(wg_sum(l, q) * invC + p.eps);${eachCol(wg, K, ` ${store}`)}`;
}

function forwardWGSL(wg: number, K: number): string {
  return /* wgsl */ `
struct P { rows: u32, C: u32, stride: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: P;
${FORWARD_BINDINGS}
const K = ${K}u;
${workgroupReduceWGSL(wg)}

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  let row = wid.x + wid.y * p.stride;
  if (row >= p.rows) { return; }
  let o = row * p.C;
${layernormRowWGSL(wg, K, "X[o + c]", "Y[o + c] = fma((x[k] - mean) * rs, W[c], B[c]);")}
  if (l == 0u) {
    Mean[row] = mean;
    Rstd[row] = rs;
  }
}`;
}

function backwardWGSL(wg: number, K: number): string {
  return /* wgsl */ `
struct P { rows: u32, C: u32, acc: u32, rpw: u32, stride: u32 }
@group(0) @binding(0) var<uniform> p: P;
${BACKWARD_BINDINGS}
const K = ${K}u;
${workgroupReduceWGSL(wg)}

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  let grp = wid.x + wid.y * p.stride;
  let r0 = grp * p.rpw;
  if (r0 >= p.rows) { return; }
  let r1 = min(r0 + p.rpw, p.rows);
  let invC = 1.0 / f32(p.C);
  var w: array<f32, K>;
  var dy: array<f32, K>;
  var xh: array<f32, K>;
  var dw: array<f32, K>;
  var db: array<f32, K>;${eachCol(wg, K, " w[k] = W[c];")}
  for (var row = r0; row < r1; row++) {
    let o = row * p.C;
    let m = Mean[row];
    let rs = Rstd[row];
    var sg = 0.0;
    var sgx = 0.0;${
    eachCol(
      wg,
      K,
      `
      dy[k] = DY[o + c];
      xh[k] = (X[o + c] - m) * rs;
      let g = dy[k] * w[k];
      sg += g;
      sgx = fma(g, xh[k], sgx);`,
    )
  }
    let sums = wg_sum2(l, vec2<f32>(sg, sgx)) * invC;
    let mg = sums.x;
    let mgx = sums.y;${
    eachCol(
      wg,
      K,
      `
      var v = rs * (dy[k] * w[k] - mg - xh[k] * mgx);
      if (p.acc != 0u) { v += DX[o + c]; }
      DX[o + c] = v;
      dw[k] = fma(dy[k], xh[k], dw[k]);
      db[k] += dy[k];`,
    )
  }
  }
  let pw = grp * 2u * p.C;${eachCol(wg, K, " Part[pw + c] = dw[k]; Part[pw + p.C + c] = db[k];")}
}`;
}

function kernel(kind: "fwd" | "bwd", C: number): string {
  const wg = rowWG(C), K = Math.ceil(C / wg);
  return cachedWGSL(
    `layernorm/gpu/${kind}/${wg}/${K}`,
    () => kind === "fwd" ? forwardWGSL(wg, K) : backwardWGSL(wg, K),
  );
}

/** The GPU family's forward: a workgroup per row. */
export function layernormForwardGpu(
  rt: Runtime,
  views: LayernormForwardViews,
  rows: number,
  C: number,
): void {
  const { workgroups, stride } = grid1d(rt, rows, 1);
  rt.dispatch("layernorm_fwd", kernel("fwd", C), views, [rows, C, stride, f32(LN_EPS)], workgroups);
}

/** The GPU family's backward: dx (+= when acc) and per-workgroup dw/db partial rows, then their sums. */
export function layernormBackwardGpu(
  rt: Runtime,
  views: LayernormBackwardViews,
  dw: Tensor,
  db: Tensor,
  rows: number,
  C: number,
  acc: boolean,
): void {
  const rpw = Math.max(1, Math.ceil(rows / MAX_GROUPS)), G = Math.ceil(rows / rpw);
  const part = partials(rt, G * 2 * C);
  const { workgroups, stride } = grid1d(rt, G, 1);
  rt.dispatch("layernorm_bwd_dx", kernel("bwd", C), { ...views, Part: part }, [
    rows,
    C,
    acc ? 1 : 0,
    rpw,
    stride,
  ], workgroups);
  sumPartials(rt, part, dw, db, G, C, SUM_COLS, SUM_LANES);
}
