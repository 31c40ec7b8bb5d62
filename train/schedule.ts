// The learning-rate schedule: nanoGPT's get_lr (linear warm-up, then cosine decay to min_lr), in
// float64 on the host. `it` is the zero-based index of the optimizer update (training step s, counted
// from 1, is it = s - 1). The optimizer receives the value as f32 through its hyper tensor each step.

export interface LrSchedule {
  /** Peak learning rate (nanoGPT's learning_rate). */
  lr: number;
  /** Updates of linear warm-up (0: none). */
  warmupIters: number;
  /** The update at which the cosine reaches minLr; 0 means no decay (constant lr after warm-up). */
  lrDecayIters: number;
  minLr: number;
}

/** The learning rate of update `it` (0-based). With no warm-up and no decay it is exactly `lr`. */
export function lrAt(it: number, s: LrSchedule): number {
  if (it < s.warmupIters) return (s.lr * (it + 1)) / (s.warmupIters + 1);
  if (s.lrDecayIters <= 0) return s.lr;
  if (it > s.lrDecayIters) return s.minLr;
  const ratio = (it - s.warmupIters) / (s.lrDecayIters - s.warmupIters);
  const coeff = 0.5 * (1 + Math.cos(Math.PI * ratio));
  return s.minLr + coeff * (s.lr - s.minLr);
}

/** The learning rate of training step `step` (1-based): lrAt(step - 1). */
export function lrForStep(step: number, s: LrSchedule): number {
  return lrAt(step - 1, s);
}
