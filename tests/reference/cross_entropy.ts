// Float64 references for the cross-entropy family, written plainly.

/** Targets as the ops take them: class indices (u32 [N]) or class probabilities (f32 [N, V]). */
export type Targets = Uint32Array | ArrayLike<number>;

/**
 * Per-row losses, their mean, and d(mean)/d(logits) for logits [N, V]. Class indices >= V give a
 * NaN row. Probability targets: row loss = -Σ_c t_c log softmax(x)_c (PyTorch semantics).
 */
export function crossEntropyRef(logits: ArrayLike<number>, targets: Targets, N: number, V: number) {
  const probs = !(targets instanceof Uint32Array);
  const rowLoss = new Float64Array(N);
  const dlogits = new Float64Array(N * V);
  for (let r = 0; r < N; r++) {
    let m = -Infinity;
    for (let c = 0; c < V; c++) m = Math.max(m, logits[r * V + c]);
    let s = 0;
    for (let c = 0; c < V; c++) s += Math.exp(logits[r * V + c] - m);
    const lse = m + Math.log(s);
    const t = (c: number) => probs ? targets[r * V + c] : (c === targets[r] ? 1 : 0);
    if (!probs && targets[r] >= V) {
      rowLoss[r] = NaN;
      for (let c = 0; c < V; c++) dlogits[r * V + c] = NaN;
      continue;
    }
    let st = 0, loss = 0;
    for (let c = 0; c < V; c++) {
      st += t(c);
      loss += t(c) * (lse - logits[r * V + c]);
    }
    rowLoss[r] = loss;
    for (let c = 0; c < V; c++) {
      const sm = Math.exp(logits[r * V + c] - lse);
      dlogits[r * V + c] = (sm * st - t(c)) / N;
    }
  }
  let sum = 0;
  for (let r = 0; r < N; r++) sum += rowLoss[r];
  return { rowLoss, loss: sum / N, dlogits };
}

/** The mean cross-entropy alone (for finite differences). */
export function crossEntropyLossRef(
  logits: ArrayLike<number>,
  targets: Targets,
  N: number,
  V: number,
): number {
  return crossEntropyRef(logits, targets, N, V).loss;
}
