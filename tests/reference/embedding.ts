// Float64 references for the embedding family, written plainly.

/** out[i,:] = table[idx[i],:] for table [V, C]. */
export function embeddingRef(idx: ArrayLike<number>, table: ArrayLike<number>, C: number): Float64Array {
  const n = idx.length;
  const out = new Float64Array(n * C);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < C; c++) out[i * C + c] = table[idx[i] * C + c];
  }
  return out;
}

/** dtable[v,:] = Σ_{i: idx[i]=v} dout[i,:] for dtable [V, C]. */
export function embeddingGradRef(
  idx: ArrayLike<number>,
  dout: ArrayLike<number>,
  V: number,
  C: number,
): Float64Array {
  const dtable = new Float64Array(V * C);
  for (let i = 0; i < idx.length; i++) {
    for (let c = 0; c < C; c++) dtable[idx[i] * C + c] += dout[i * C + c];
  }
  return dtable;
}
