// Cross-entropy family: fused log-softmax + cross-entropy over the rows of logits [N, V] with mean
// reduction (PyTorch F.cross_entropy, reduction='mean'), its gradient in the same kernel, and the
// deterministic mean reduction that turns the per-row losses into the scalar loss.
//
// Targets are either class indices (u32 [N]) or class probabilities (f32 [N, V], one-hot or soft):
//   row loss r = Σ_c t_c · (logsumexp(x) − x_c)            (indices: t is the one-hot row)
//   dlogits    = (softmax(x) · Σ_c t_c − t) / N
// Every pass is max-subtracted so ±large logits stay finite. An index >= V is invalid input: that
// row's loss and gradient are written as NaN so the mean (and the training run) shows it instead of
// silently training on garbage.
//
// This file checks the arguments and picks the kernel family (`rt.kernels`):
// - ./cross_entropy/gpu.ts: a workgroup per row, coalesced, workgroup reductions for max and sum-exp;
// - ./cross_entropy/cpu.ts: llvmpipe-shaped, a row per invocation.
// meanReduce (./cross_entropy/mean.ts) is one 256-invocation workgroup, shared by both families.

import type { Runtime } from "./runtime.ts";
import type { Tensor } from "./tensor.ts";
import { LLVMPIPE_LOOP_LIMIT } from "./runtime.ts";
import { crossEntropyCpu } from "./cross_entropy/cpu.ts";
import { crossEntropyGpu } from "./cross_entropy/gpu.ts";
import { type CrossEntropyViews, dispatchMean, type RowRange } from "./cross_entropy/mean.ts";

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
  dispatchMean(rt, x, out, n);
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
  rowKernel(rt, { X: logits, T: targets, R: rowLoss, ...(dlogits ? { D: dlogits } : {}) }, probs, N, V, {
    row0: 0,
    total: N,
  });
  meanReduce(rt, rowLoss, loss, N);
}

/**
 * The per-row part of crossEntropy for `rows` rows of a batch of `total` (class-index targets; no
 * mean): logits and dlogits are the chunk's [rows, V], whose row r is the batch's row row0 + r;
 * targets and rowLoss are the whole batch's [total]; dlogits is d(mean over all `total` rows)/d(logits).
 * The chunked head (ops/head.ts) calls it once per chunk and meanReduce once after.
 */
export function crossEntropyRows(
  rt: Runtime,
  logits: Tensor,
  targets: Tensor,
  dlogits: Tensor | null,
  rowLoss: Tensor,
  row0: number,
  rows: number,
  total: number,
  V: number,
): void {
  if (!Number.isInteger(row0) || !Number.isInteger(rows) || row0 < 0 || rows < 1 || row0 + rows > total) {
    throw new Error(`crossEntropyRows: bad rows [${row0}, ${row0 + rows}) of ${total}`);
  }
  if (targets.dtype !== "u32") throw new Error("crossEntropyRows: targets must be class indices (u32)");
  if (logits.size < rows * V || (dlogits && dlogits.size < rows * V)) {
    throw new Error(`crossEntropyRows: logits/dlogits need ${rows * V} values`);
  }
  if (targets.size < total || rowLoss.size < total) {
    throw new Error(`crossEntropyRows: targets/rowLoss need ${total} values`);
  }
  for (const w of dlogits ? [rowLoss, dlogits] : [rowLoss]) {
    for (const o of [logits, targets, rowLoss, dlogits]) {
      if (o && o !== w && o.buffer === w.buffer) {
        throw new Error("crossEntropyRows: rowLoss/dlogits must not share a buffer with another operand");
      }
    }
  }
  const views = { X: logits, T: targets, R: rowLoss, ...(dlogits ? { D: dlogits } : {}) };
  rowKernel(rt, views, false, rows, V, { row0, total });
}

/** The family's per-row kernel over `n` rows of X. */
function rowKernel(rt: Runtime, views: CrossEntropyViews, probs: boolean, n: number, V: number, r: RowRange) {
  // The CPU family's invocation walks its row three times: past llvmpipe's loop limit (a BPE
  // vocabulary) it would stop early, so the row is split over a workgroup as in the GPU family.
  if (rt.kernels === "gpu" || 3 * V > LLVMPIPE_LOOP_LIMIT) crossEntropyGpu(rt, views, probs, n, V, r);
  else crossEntropyCpu(rt, views, probs, n, V, r);
}
