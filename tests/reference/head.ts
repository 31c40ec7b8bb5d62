// Float64 reference of the fused head and loss (ops/head.ts), written plainly: the unfused
// composition of a Linear, the mean cross-entropy over all N rows, and the Linear's gradients.

import { crossEntropyRef } from "./cross_entropy.ts";
import { linearGradRef, linearRef } from "./matmul.ts";

/**
 * logits = x · Wᵀ + b (x [N, C], W [V, C], b [V] or null), row losses, their mean, and the gradients
 * of the mean w.r.t. x, W and b.
 */
export function headRef(
  x: ArrayLike<number>,
  W: ArrayLike<number>,
  b: ArrayLike<number> | null,
  targets: Uint32Array,
  N: number,
  C: number,
  V: number,
) {
  const logits = linearRef(x, W, b, N, V, C);
  const { rowLoss, loss, dlogits } = crossEntropyRef(logits, targets, N, V);
  const { dW, dx, db } = linearGradRef(dlogits, x, W, N, V, C);
  return { logits, rowLoss, loss, dx, dW, db };
}
