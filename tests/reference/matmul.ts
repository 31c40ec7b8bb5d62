// Float64 references for the matmul family, written plainly.

/** C[b] = op(A[b]) · op(B[b]); op(A) is [M,K], op(B) is [K,N]. */
export function matmulRef(
  A: ArrayLike<number>,
  B: ArrayLike<number>,
  M: number,
  N: number,
  K: number,
  transA = false,
  transB = false,
  batch = 1,
): Float64Array {
  const C = new Float64Array(batch * M * N);
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) {
          const a = transA ? A[b * M * K + k * M + i] : A[b * M * K + i * K + k];
          const w = transB ? B[b * K * N + j * K + k] : B[b * K * N + k * N + j];
          s += a * w;
        }
        C[b * M * N + i * N + j] = s;
      }
    }
  }
  return C;
}

/** Linear y = x·Wᵀ + b (W is [out, in]) with its gradients for upstream dy. */
export function linearRef(
  x: ArrayLike<number>,
  W: ArrayLike<number>,
  b: ArrayLike<number> | null,
  n: number,
  out: number,
  inp: number,
) {
  const y = matmulRef(x, W, n, out, inp, false, true);
  if (b) { for (let i = 0; i < n; i++) for (let j = 0; j < out; j++) y[i * out + j] += b[j]; }
  return y;
}

export function linearGradRef(
  dy: ArrayLike<number>,
  x: ArrayLike<number>,
  W: ArrayLike<number>,
  n: number,
  out: number,
  inp: number,
) {
  const dW = matmulRef(dy, x, out, inp, n, true, false);
  const dx = matmulRef(dy, W, n, inp, out, false, false);
  const db = new Float64Array(out);
  for (let i = 0; i < n; i++) for (let j = 0; j < out; j++) db[j] += dy[i * out + j];
  return { dW, dx, db };
}

/** Σ_k op(A)[i, k] for i < M (op(A) is [M, K]; A is stored [K, M] when transA). */
export function rowSumsRef(A: ArrayLike<number>, M: number, K: number, transA = false): Float64Array {
  const s = new Float64Array(M);
  for (let i = 0; i < M; i++) for (let k = 0; k < K; k++) s[i] += transA ? A[k * M + i] : A[i * K + k];
  return s;
}
