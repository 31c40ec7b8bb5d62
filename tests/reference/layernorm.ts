// Float64 reference for LayerNorm over the last axis (PyTorch semantics, biased variance).

export const EPS = 1e-5;

/** y = (x - mean)·rstd·w + b per row of [rows, C]; also returns mean and rstd [rows]. */
export function layernormRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  b: ArrayLike<number>,
  rows: number,
  C: number,
  eps = EPS,
) {
  const y = new Float64Array(rows * C), mean = new Float64Array(rows), rstd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < C; c++) s += x[r * C + c];
    const m = s / C;
    let v = 0;
    for (let c = 0; c < C; c++) v += (x[r * C + c] - m) ** 2;
    const rs = 1 / Math.sqrt(v / C + eps);
    for (let c = 0; c < C; c++) y[r * C + c] = (x[r * C + c] - m) * rs * w[c] + b[c];
    mean[r] = m;
    rstd[r] = rs;
  }
  return { y, mean, rstd };
}

/** Gradients of L = Σ dy·y with respect to x, w and b. */
export function layernormGradRef(
  dy: ArrayLike<number>,
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  rows: number,
  C: number,
  eps = EPS,
) {
  const { mean, rstd } = layernormRef(x, w, new Float64Array(C), rows, C, eps);
  const dx = new Float64Array(rows * C), dw = new Float64Array(C), db = new Float64Array(C);
  for (let r = 0; r < rows; r++) {
    const xh = (c: number) => (x[r * C + c] - mean[r]) * rstd[r];
    let mg = 0, mgx = 0;
    for (let c = 0; c < C; c++) {
      const g = dy[r * C + c] * w[c];
      mg += g / C;
      mgx += (g * xh(c)) / C;
      dw[c] += dy[r * C + c] * xh(c);
      db[c] += dy[r * C + c];
    }
    for (let c = 0; c < C; c++) dx[r * C + c] = rstd[r] * (dy[r * C + c] * w[c] - mg - xh(c) * mgx);
  }
  return { dx, dw, db };
}
