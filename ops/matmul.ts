// Matmul family: C[b] = alpha · op(A[b]) · op(B[b]) (+ bias) (+ C) with optional ReLU / LeakyReLU /
// GELU epilogue, both operands optionally transposed, and a batch dimension. Linear forward and both
// halves of its backward are this one op; the bias gradient is reduced inside the weight-gradient
// product (`rowSums`), with `sumRows` (column sums) as the stand-alone form.
//
// This file checks arguments and picks the kernel from the runtime's family (`rt.kernels`):
//
// * gpu: `matmul/gpu.ts`, output tiles staged through workgroup memory, one dispatch per product (two
//   with split-K). Which variant (`matmul/variants.ts`: tile, K tile, micro-tile, staging, double
//   buffering, split-K) runs is the autotuner's choice per shape class (`matmul/tune.ts`; --tune),
//   today's 64 x 64 kernel without one.
// * cpu (llvmpipe / lavapipe / SwiftShader): `matmul/cpu_window.ts`, operands in 64 KiB uniform
//   windows (fast gathers on llvmpipe), when its plan (`matmul/cpu_plan.ts`) takes at most
//   MAX_WINDOW_DISPATCHES dispatches; else `matmul/cpu_storage.ts`, one dispatch with storage reads.
//   Small-M x · Wᵀ (the decoder's one position per sequence, M <= GEMV_MAX_M) goes to
//   `matmul/cpu_gemv.ts` instead: W's rows in uniform windows, no dispatch cap.
//
// A product that binds a tensor past the runtime's binding cap (rt.maxBindingBytes; GPT-2's head
// weight) runs as products of blocks that each fit (`matmul/chunk.ts`).
//
// `MatmulOpts.kernel` forces one kernel for one call (the bench's A/B, tests), `MatmulOpts.variant`
// one gpu-family variant.

import type { Runtime } from "./runtime.ts";
import type { Tensor } from "./tensor.ts";
import { matmulTiled } from "./matmul/gpu.ts";
import { type MatmulVariant, variantByName } from "./matmul/variants.ts";
import { chooseVariant } from "./matmul/tune.ts";
import { MAX_WINDOW_DISPATCHES } from "./matmul/cpu_plan.ts";
export {
  DEFAULT_VARIANT,
  MATMUL_VARIANTS,
  type MatmulVariant,
  shapeClass,
  SPLIT_SCRATCH_BYTES,
} from "./matmul/variants.ts";
export {
  adapterKey,
  MatmulTuner,
  matmulTuner,
  setMatmulTuner,
  TUNE_MODES,
  type TunedCandidate,
  type TuneMode,
  type TuneResult,
  type TunerOptions,
  type TuneStore,
} from "./matmul/tune.ts";
import { matmulWindow } from "./matmul/cpu_window.ts";
import { matmulStorage } from "./matmul/cpu_storage.ts";
import { gemvApplies, matmulGemv } from "./matmul/cpu_gemv.ts";
import { columnSums } from "./matmul/reduce.ts";
import { matmulChunked, needsChunks } from "./matmul/chunk.ts";

export {
  cpuDispatches,
  MAX_WINDOW_DISPATCHES,
  type ProductShape,
  WINDOW,
  windowDispatches,
} from "./matmul/cpu_plan.ts";

/** Applied to each element of C after the bias ("gelu": GPT-2's tanh form; "gelu_erf": exact). */
export type Epilogue = "none" | "relu" | "leaky_relu" | "gelu" | "gelu_erf";
/**
 * One matmul kernel: "tiled" (the gpu family's), "window" (the cpu family's uniform windows; falls
 * back to "storage" when it cannot tile the product), "storage" (the cpu family's one-dispatch kernel),
 * "gemv" (the cpu family's small-M x · Wᵀ; falls back to "window" where it does not apply).
 */
export type MatmulKernel = "tiled" | "window" | "storage" | "gemv";

/** Options of `matmul`. */
export interface MatmulOpts {
  /** A is stored [K, M] instead of [M, K]. */
  transA?: boolean;
  /** B is stored [N, K] instead of [K, N]. */
  transB?: boolean;
  /** [N], broadcast over rows. */
  bias?: Tensor | null;
  /** C += result (bias/epilogue not allowed with accumulate) */
  accumulate?: boolean;
  /** Activation applied after the bias (default none). */
  epilogue?: Epilogue;
  /** Number of independent products; A, B, C are packed [batch, ...]. */
  batch?: number;
  /** Scale of the product (default 1). */
  alpha?: number;
  // Also write Σ_k op(A)[i, k] into rowSums[i] (added to it with `accumulate`; not scaled by alpha):
  // the bias gradient of a Linear, fused into its weight-gradient product. Needs batch 1.
  /** Also write Σ_k op(A)[i, k] into rowSums[i] (see above). */
  rowSums?: Tensor | null;
  /** Force one kernel (default: the runtime family's choice, see the top of this file). */
  kernel?: MatmulKernel;
  /** Force one gpu-family variant, by name or value (default: the tuner's choice, else today's). */
  variant?: string | MatmulVariant;
}

/** A checked product, as every kernel receives it. */
export interface MatmulProblem {
  /** Left operand, [M, K] per batch entry ([K, M] with transA). */
  A: Tensor;
  /** Right operand, [K, N] per batch entry ([N, K] with transB). */
  B: Tensor;
  /** Output, [M, N] per batch entry. */
  C: Tensor;
  /** Rows of C. */
  M: number;
  /** Columns of C. */
  N: number;
  /** Inner dimension. */
  K: number;
  /** Independent products packed one after another. */
  batch: number;
  /** A is stored [K, M]. */
  transA: boolean;
  /** B is stored [N, K]. */
  transB: boolean;
  /** Scale of the product. */
  alpha: number;
  /** [N] added to every row, or null. */
  bias: Tensor | null;
  /** Activation after the bias. */
  epilogue: Epilogue;
  /** C += the result. */
  accumulate: boolean;
  /** Also Σ_k op(A)[i, k] into rowSums[i] (the bias gradient), or null. */
  rowSums: Tensor | null;
  /**
   * Normalise A's rows over K first (only `linearWindow`): eps, and B's column sums Σ_k op(B)[k, j]
   * [N]; null: A as it is.
   */
  norm: { eps: number; colSums: Tensor } | null;
}

/**
 * The checked product every kernel receives; null when it is empty (nothing to record). `label` names
 * the caller in errors; `accumulateBias` lets accumulate carry a bias (linearWindow's epilogue does).
 */
function checkedProblem(
  label: string,
  A: Tensor,
  B: Tensor,
  C: Tensor,
  M: number,
  N: number,
  K: number,
  o: MatmulOpts & { norm?: MatmulProblem["norm"] },
  accumulateBias = false,
): MatmulProblem | null {
  const batch = o.batch ?? 1;
  const ep = o.epilogue ?? "none";
  if (A.size < batch * M * K || B.size < batch * K * N || C.size < batch * M * N) {
    throw new Error(`${label}: operand too small for [${batch}] ${M}x${K} @ ${K}x${N}`);
  }
  if (o.accumulate && ((o.bias && !accumulateBias) || ep !== "none")) {
    throw new Error(`${label}: accumulate excludes ${accumulateBias ? "an epilogue" : "bias/epilogue"}`);
  }
  if (o.bias && o.bias.size !== N) throw new Error(`${label}: bias has ${o.bias.size} values, want ${N}`);
  if (o.rowSums && (batch !== 1 || o.rowSums.size < M)) {
    throw new Error(`${label}: rowSums needs batch 1 and M values`);
  }
  if (o.norm && o.norm.colSums.size < N) throw new Error(`${label}: colSums needs ${N} values`);
  if (M === 0 || N === 0 || batch === 0) return null;
  return {
    A,
    B,
    C,
    M,
    N,
    K,
    batch,
    transA: !!o.transA,
    transB: !!o.transB,
    alpha: o.alpha ?? 1,
    bias: o.bias ?? null,
    epilogue: ep,
    accumulate: !!o.accumulate,
    rowSums: o.rowSums ?? null,
    norm: o.norm ?? null,
  };
}

/**
 * C = op(A)·op(B). Shapes (per batch): op(A) is [M,K], op(B) is [K,N], C is [M,N].
 * M, N, K are given explicitly so any packed layout works.
 */
export function matmul(
  rt: Runtime,
  A: Tensor,
  B: Tensor,
  C: Tensor,
  M: number,
  N: number,
  K: number,
  o: MatmulOpts = {},
): void {
  const p = checkedProblem("matmul", A, B, C, M, N, K, o);
  if (!p) return;
  // The GEMV kernel binds 64 KiB windows of W only: it takes a W past the binding cap unchunked.
  if (kernelOf(rt, p, o) === "gemv" && matmulGemv(rt, p)) return;
  if (needsChunks(rt, p)) return matmulChunked(rt, p, (q) => runProduct(rt, q, o));
  runProduct(rt, p, o);
}

/** The kernel `o` forces, or the runtime family's choice (null: the window kernel's, see above). */
function kernelOf(rt: Runtime, p: MatmulProblem, o: MatmulOpts): MatmulKernel | null {
  return o.kernel ?? (rt.kernels === "gpu" ? "tiled" : gemvApplies(p) ? "gemv" : null);
}

/** Record one checked product with the kernel `o` or the runtime's family picks. */
function runProduct(rt: Runtime, p: MatmulProblem, o: MatmulOpts): void {
  const kernel = kernelOf(rt, p, o);
  if (kernel === "tiled") matmulTiled(rt, p, o.variant ? variantOf(o.variant) : chooseVariant(rt, p));
  else if (kernel === "storage") matmulStorage(rt, p);
  else if (kernel === "gemv" && matmulGemv(rt, p)) return;
  else if (!matmulWindow(rt, p, kernel === "window" ? Infinity : MAX_WINDOW_DISPATCHES)) matmulStorage(rt, p);
}

function variantOf(v: string | MatmulVariant): MatmulVariant {
  if (typeof v !== "string") return v;
  const found = variantByName(v);
  if (!found) throw new Error(`matmul: no variant "${v}"`);
  return found;
}

/** Y[j] (+)= Σ_i X[i, j]: the bias gradient of a Linear layer (X is [M, N]). */
export function sumRows(rt: Runtime, X: Tensor, Y: Tensor, M: number, N: number, accumulate = false): void {
  if (X.size < M * N || Y.size < N) throw new Error("sumRows: operand too small");
  columnSums(rt, X, Y, M, N, accumulate);
}

// ---------------------------------------------------------------- Linear (PyTorch layout: W is [out, in])

/** y = act(x · Wᵀ + b); x [n, in], W [out, in], y [n, out]. */
export function linearForward(
  rt: Runtime,
  x: Tensor,
  W: Tensor,
  b: Tensor | null,
  y: Tensor,
  n: number,
  epilogue: Epilogue = "none",
): void {
  const [out, inp] = W.shape;
  matmul(rt, x, W, y, n, out, inp, { transB: true, bias: b, epilogue });
}

/**
 * Backward of y = x · Wᵀ + b given dy: dW = dyᵀ · x, db = Σ_rows dy, dx (+)= dy · W.
 * Parameter gradients are overwritten (each parameter is used once per step); dx is overwritten
 * unless `accumulateDx` (residual streams sum gradients from two paths).
 */
export function linearBackward(
  rt: Runtime,
  dy: Tensor,
  x: Tensor,
  W: Tensor,
  dx: Tensor | null,
  n: number,
  accumulateDx = false,
  b: Tensor | null = null,
): void {
  const [out, inp] = W.shape;
  if (!W.grad) throw new Error("linearBackward: W has no grad");
  // dW = dyᵀ·x with the bias gradient (column sums of dy) reduced in the same pass.
  matmul(rt, dy, x, W.grad, out, inp, n, { transA: true, rowSums: b ? b.grad! : null });
  if (dx) matmul(rt, dy, W, dx, n, inp, out, { accumulate: accumulateDx });
}

/**
 * y = act(norm(x) · Wᵀ + b), or with `accumulate` y += norm(x) · Wᵀ + b (the bias included, unlike
 * `matmul`'s accumulate), through the CPU family's window kernel alone (or its GEMV kernel at small
 * n): x [n, in], W [out, in].
 * `norm` normalises each row of x over its `in` values first: a LayerNorm without its affine, which
 * the caller folds into W and b (colSums [out] = Σ_k W[j, k], which the kernel needs). Returns false,
 * having recorded nothing, when the window kernel cannot take the product in one pass over K (the
 * caller composes it from other ops then). The decoder's eval-mode fusions (ops/decode.ts) are built
 * on it.
 */
export function linearWindow(
  rt: Runtime,
  x: Tensor,
  W: Tensor,
  b: Tensor | null,
  y: Tensor,
  n: number,
  o: { epilogue?: Epilogue; accumulate?: boolean; norm?: { eps: number; colSums: Tensor } } = {},
): boolean {
  const [N, K] = W.shape;
  const p = checkedProblem("linearWindow", x, W, y, n, N, K, { ...o, transB: true, bias: b }, true);
  return !p || matmulGemv(rt, p) || matmulWindow(rt, p, MAX_WINDOW_DISPATCHES);
}
