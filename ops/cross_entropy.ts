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
import { dispatchMean } from "./cross_entropy/mean.ts";

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
  const views = { X: logits, T: targets, R: rowLoss, ...(dlogits ? { D: dlogits } : {}) };
  // The CPU family's invocation walks its row three times: past llvmpipe's loop limit (a BPE
  // vocabulary) it would stop early, so the row is split over a workgroup as in the GPU family.
  if (rt.kernels === "gpu" || 3 * V > LLVMPIPE_LOOP_LIMIT) crossEntropyGpu(rt, views, probs, N, V);
  else crossEntropyCpu(rt, views, probs, N, V);
  meanReduce(rt, rowLoss, loss, N);
}
