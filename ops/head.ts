// The language-model head and its loss, fused and chunked: logits = xf · Wᵀ (+ b), the mean
// cross-entropy against the targets and, when training, the head's whole backward, computed a chunk
// of R rows at a time so that only R × V logits (and R × V dlogits) ever exist, never N × V
// (1.6 GB each at batch 8, block 1024, GPT-2's V = 50257). Per chunk of rows [r0, r0 + R):
//
//   logits  = xf[r0:r0+R] · Wᵀ + b                      linearForward                 1 product
//   rowLoss[r0:r0+R], dlogits = (softmax − onehot) / N   crossEntropyRows (N: the batch) 1 dispatch
//   dW (+)= dlogitsᵀ · xf[r0:r0+R], db (+)= Σ_rows dlogits   the fused bias gradient       1 product
//   dxf[r0:r0+R] = dlogits · W                                                          1 product
//
// then one meanReduce of the N row losses. The first chunk overwrites dW and db and the later ones
// add to them (linearBackward's semantics: parameter gradients are overwritten by each backward), so
// a tied head's dW is the token embedding's gradient, which its embedding backward then adds to.
// With one chunk (a character vocabulary: nanoGPT's shakespeare-char has N·V·4 = 4 MiB) the
// products and kernels are exactly those of linearForward + crossEntropy + linearBackward, so the
// results are bit-identical to the unfused head. The products are ops/matmul.ts's, so the kernel
// family (`rt.kernels`) is theirs; there is no kernel of its own.
//
// Chunks start on rows whose xf view is 256-byte aligned (minStorageBufferOffsetAlignment): R is a
// multiple of headRowAlign(C) rows.

import type { Runtime } from "./runtime.ts";
import { Tensor } from "./tensor.ts";
import { linearForward, matmul } from "./matmul.ts";
import { crossEntropyRows, meanReduce } from "./cross_entropy.ts";

/** Default bytes of one chunk's logits (and of its dlogits): R · V · 4 at most. */
export const HEAD_CHUNK_BYTES = 32 * 2 ** 20;

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** Rows a chunk's start must be a multiple of, so that its [R, C] view of xf is 256-byte aligned. */
export function headRowAlign(C: number): number {
  return 64 / gcd(C, 64);
}

/**
 * Rows per chunk for N rows of width C over a vocabulary of V: all N when N · V · 4 fits `budget`
 * bytes, else the largest multiple of headRowAlign(C) that fits, evened out over the chunks that
 * makes (N = 1024 in chunks of at most 166 rows: 7 chunks of 147). `rows` forces a chunk size
 * (rounded up to the alignment; tests), `budget` defaults to HEAD_CHUNK_BYTES; pass the binding
 * limit when it is lower.
 */
export function headRows(
  N: number,
  V: number,
  C: number,
  o: { rows?: number; budget?: number } = {},
): number {
  const a = headRowAlign(C);
  const up = (r: number) => Math.ceil(r / a) * a;
  if (o.rows !== undefined) {
    if (!(Number.isInteger(o.rows) && o.rows >= 1)) throw new Error(`headRows: bad rows ${o.rows}`);
    return Math.min(N, up(o.rows));
  }
  const fit = Math.floor((o.budget ?? HEAD_CHUNK_BYTES) / (V * 4));
  if (fit >= N) return N;
  const max = Math.max(a, Math.floor(fit / a) * a);
  const chunks = Math.ceil(N / max);
  return Math.min(max, up(Math.ceil(N / chunks)));
}

/** The head's operands: the final LayerNorm's output, the head's weight (and bias), the targets. */
export interface HeadOperands {
  /** Input rows [N, C] (the final LayerNorm's output). */
  xf: Tensor;
  /** Head weight [V, C] (a tied head: the token embedding). */
  W: Tensor;
  /** Head bias [V], or null. */
  bias: Tensor | null;
  /** Rows of xf. */
  N: number;
}

/** Where the loss goes, and the chunk scratch. */
export interface HeadLoss {
  /** Next-token ids u32 [N]. */
  targets: Tensor;
  /** Per-row cross-entropy [N]. */
  rowLoss: Tensor;
  /** Mean cross-entropy (one value; not in rowLoss's buffer). */
  loss: Tensor;
  /** One chunk's logits [R, V] (scratch). */
  logits: Tensor;
  /** Rows per chunk (headRows). */
  rows: number;
}

/** The head's backward, fused into the loss: where the gradients go. */
export interface HeadGrads {
  /** One chunk's dlogits [R, V] (scratch). */
  dlogits: Tensor;
  /** Gradient of xf [N, C] (overwritten). */
  dxf: Tensor;
  /** Gradient of W [V, C] (overwritten). */
  dW: Tensor;
  /** Gradient of the bias [V] (overwritten), or null when there is no bias. */
  db: Tensor | null;
}

/** Rows [r0, r0 + rows) of a [N, w] tensor `t`, as a view (r0 · w · 4 bytes in). */
function rowsOf(t: Tensor, r0: number, rows: number, w: number): Tensor {
  return new Tensor(t.rt, t.buffer, t.offset + r0 * w * 4, [rows, w], t.dtype, t.name);
}

function check(h: HeadOperands, R: number, scratch: Tensor[]): { V: number; C: number } {
  const [V, C] = h.W.shape;
  if (h.xf.size < h.N * C) throw new Error(`head: xf has ${h.xf.size} values, want ${h.N * C}`);
  if (!(Number.isInteger(R) && R >= 1) || (R < h.N && R % headRowAlign(C) !== 0)) {
    throw new Error(`head: ${R} rows per chunk is not a multiple of ${headRowAlign(C)}`);
  }
  for (const s of scratch) {
    if (s.size < Math.min(R, h.N) * V) {
      throw new Error(`head: ${s.name || "scratch"} holds fewer than R·V values`);
    }
  }
  return { V, C };
}

/**
 * Record the fused head and loss: loss[0] = mean over the N rows of cross-entropy(xf · Wᵀ + b,
 * targets), rowLoss the per-row values; with `grads`, also the head's backward (see the top of the
 * file): dxf, dW and db overwritten. Logits exist one chunk at a time, in `l.logits`.
 */
export function headLoss(rt: Runtime, h: HeadOperands, l: HeadLoss, grads: HeadGrads | null): void {
  const R = l.rows, N = h.N;
  const { V, C } = check(h, R, grads ? [l.logits, grads.dlogits] : [l.logits]);
  if (grads && grads.dxf.size < N * C) {
    throw new Error(`head: dxf has ${grads.dxf.size} values, want ${N * C}`);
  }
  for (let r0 = 0; r0 < N; r0 += R) {
    const n = Math.min(R, N - r0);
    const x = rowsOf(h.xf, r0, n, C), logits = rowsOf(l.logits, 0, n, V);
    linearForward(rt, x, h.W, h.bias, logits, n);
    const d = grads ? rowsOf(grads.dlogits, 0, n, V) : null;
    crossEntropyRows(rt, logits, l.targets, d, l.rowLoss, r0, n, N, V);
    if (!grads || !d) continue;
    // linearBackward's two products, the first chunk overwriting dW (and db), the later ones adding.
    matmul(rt, d, x, grads.dW, V, C, n, { transA: true, rowSums: grads.db, accumulate: r0 > 0 });
    matmul(rt, d, h.W, rowsOf(grads.dxf, r0, n, C), n, C, V);
  }
  meanReduce(rt, l.rowLoss, l.loss, N);
}

/**
 * Record logits [rows, V] = xf[row0 : row0 + rows] · Wᵀ + b into `out` (row0 a multiple of
 * headRowAlign(C)): the rows a caller wants to see (sampling from the last position, tests).
 */
export function headLogits(rt: Runtime, h: HeadOperands, out: Tensor, row0 = 0, rows = h.N): void {
  const [V, C] = h.W.shape;
  if (row0 % headRowAlign(C) !== 0 || row0 < 0 || row0 + rows > h.N) {
    throw new Error(`headLogits: rows [${row0}, ${row0 + rows}) (start a multiple of ${headRowAlign(C)})`);
  }
  if (out.size < rows * V) throw new Error(`headLogits: out has ${out.size} values, want ${rows * V}`);
  linearForward(rt, rowsOf(h.xf, row0, rows, C), h.W, h.bias, rowsOf(out, 0, rows, V), rows);
}
