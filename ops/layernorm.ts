// LayerNorm family (PyTorch semantics over the last axis, biased variance, eps = 1e-5):
//   y = (x - mean) · rstd · w + b,   rstd = 1 / sqrt(var + eps),   x, y [rows, C], w, b [C].
// The forward saves mean and rstd [rows] for the backward:
//   xhat = (x - mean) · rstd,  g = dy · w
//   dx = rstd · (g - mean_C(g) - xhat · mean_C(g · xhat))
//   dw = Σ_rows dy · xhat,  db = Σ_rows dy
//
// This file checks the arguments and picks the kernel family (`rt.kernels`):
// - ./layernorm/gpu.ts: a workgroup per row, coalesced loads, workgroup-memory reductions;
// - ./layernorm/cpu.ts: llvmpipe-shaped, a row per SIMD lane, no barriers.
// Both write dw/db as per-workgroup partial rows summed per column by ./layernorm/partials.ts
// (deterministic, no atomics).
//
// Without a bias (b = null, nanoGPT's bias=False) the same kernels run with a zero bias (`zeroBias`:
// fma(xhat, w, 0) is exactly xhat·w) and the backward writes db into a scratch nobody reads.

import { assertNoAlias } from "./elementwise.ts";
import type { Runtime } from "./runtime.ts";
import { Tensor } from "./tensor.ts";
import { layernormBackwardCpu, layernormForwardCpu } from "./layernorm/cpu.ts";
import { layernormBackwardGpu, layernormForwardGpu } from "./layernorm/gpu.ts";

export { LN_EPS } from "./layernorm/partials.ts";

/** Per runtime: a zero-filled bias (never written) and a scratch for an absent bias's gradient. */
const absent = new WeakMap<Runtime, { zero: Tensor; grad: Tensor }>();

function absentBias(rt: Runtime, C: number): { zero: Tensor; grad: Tensor } {
  let a = absent.get(rt);
  if (!a || a.zero.size < C) {
    const n = Math.max(C, 1024);
    a = {
      zero: Tensor.empty(rt, [n], "f32", "zero-bias"),
      grad: Tensor.empty(rt, [n], "f32", "absent-bias-grad"),
    };
    absent.set(rt, a);
  }
  return a;
}

/** A [C] view of zeros: the bias of a LayerNorm that has none (also for the decoder's fused LayerNorms). */
export function zeroBias(rt: Runtime, C: number): Tensor {
  return new Tensor(rt, absentBias(rt, C).zero.buffer, 0, [C], "f32", "zero-bias");
}

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

/** y = LayerNorm(x)·w + b over the last axis (b null: no bias); saves mean and rstd [rows] for the backward. */
export function layernormForward(
  rt: Runtime,
  x: Tensor,
  w: Tensor,
  bias: Tensor | null,
  y: Tensor,
  mean: Tensor,
  rstd: Tensor,
  rows: number,
  C: number,
): void {
  checkShapes("layernormForward", rows, C, [x, y], [mean, rstd], w);
  const b = bias ?? zeroBias(rt, C);
  if (b.size !== C) throw new Error(`layernormForward: bias has ${b.size} values, want ${C}`);
  noAlias("layernormForward", [y, mean, rstd], [x, w, b]);
  const views = { X: x, W: w, B: b, Y: y, Mean: mean, Rstd: rstd };
  if (rt.kernels === "gpu") layernormForwardGpu(rt, views, rows, C);
  else layernormForwardCpu(rt, views, rows, C);
}

/**
 * Backward given dy: overwrites w.grad and b.grad (b null: no bias, its gradient is dropped), and dx
 * (or dx += when `accumulateDx`, for residual streams). mean/rstd are the forward's saved statistics.
 */
export function layernormBackward(
  rt: Runtime,
  dy: Tensor,
  x: Tensor,
  w: Tensor,
  b: Tensor | null,
  mean: Tensor,
  rstd: Tensor,
  dx: Tensor,
  rows: number,
  C: number,
  accumulateDx = false,
): void {
  checkShapes("layernormBackward", rows, C, [dy, x, dx], [mean, rstd], w);
  const bias = b ?? zeroBias(rt, C);
  const dw = w.grad,
    db = b ? b.grad : new Tensor(rt, absentBias(rt, C).grad.buffer, 0, [C], "f32", "absent-bias-grad");
  if (!dw || !db) throw new Error("layernormBackward: w and b need .grad tensors");
  if (bias.size !== C || dw.size !== C || db.size !== C) {
    throw new Error(`layernormBackward: w/b grads must be [${C}]`);
  }
  noAlias("layernormBackward", [dx], [dy, x, w, mean, rstd]);
  noAlias("layernormBackward", [dw, db], [dy, x, mean, rstd]);
  const views = { DY: dy, X: x, W: w, Mean: mean, Rstd: rstd, DX: dx };
  if (rt.kernels === "gpu") layernormBackwardGpu(rt, views, dw, db, rows, C, accumulateDx);
  else layernormBackwardCpu(rt, views, dw, db, rows, C, accumulateDx);
}
