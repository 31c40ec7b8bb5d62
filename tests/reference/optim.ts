// Float64 references for the optimizers: PyTorch's update formulas, written plainly.

import type { AdamWConfig } from "../../ops/optim.ts";

/** torch.optim.SGD (no momentum): p - lr·g. */
export function sgdRef(p: ArrayLike<number>, g: ArrayLike<number>, lr: number): Float64Array {
  return Float64Array.from(p, (x, i) => x - lr * g[i]);
}

/** Optimizer state carried between steps in float64. */
export interface AdamWState {
  p: Float64Array;
  m: Float64Array;
  v: Float64Array;
}

/**
 * One torch.optim.AdamW step at step t (1-based), in place on `s`; `decays(i)` false exempts element i
 * from weight decay (a parameter group with weight_decay 0).
 */
export function adamwRef(
  s: AdamWState,
  g: ArrayLike<number>,
  t: number,
  cfg: AdamWConfig,
  decays: (i: number) => boolean = () => true,
): void {
  const { lr, beta1, beta2, eps, weightDecay } = cfg;
  const bc1 = 1 - Math.pow(beta1, t);
  const bc2 = 1 - Math.pow(beta2, t);
  for (let i = 0; i < s.p.length; i++) {
    if (decays(i)) s.p[i] *= 1 - lr * weightDecay;
    s.m[i] = beta1 * s.m[i] + (1 - beta1) * g[i];
    s.v[i] = beta2 * s.v[i] + (1 - beta2) * g[i] * g[i];
    const mhat = s.m[i] / bc1;
    const vhat = s.v[i] / bc2;
    s.p[i] -= lr * mhat / (Math.sqrt(vhat) + eps);
  }
}

/** torch.nn.utils.clip_grad_norm_ in float64: the norm, the scale min(1, max/(norm + 1e-6)), the grads. */
export function clipRef(
  g: ArrayLike<number>,
  maxNorm: number,
): { norm: number; scale: number; grads: Float64Array } {
  let ss = 0;
  for (let i = 0; i < g.length; i++) ss += g[i] * g[i];
  const norm = Math.sqrt(ss);
  const scale = Math.min(1, maxNorm / (norm + 1e-6));
  return { norm, scale, grads: Float64Array.from(g, (x) => x * scale) };
}
