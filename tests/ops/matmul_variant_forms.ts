// The products every gpu-family matmul variant is checked on (tests/ops/matmul_variants.test.ts),
// and `dispatchEveryVariant`, which records every variant on each of them at a small size: for checks
// that look at each kernel the runtime dispatches (the race check), so that no variant goes unseen.
//
// Five forms cover between them each transpose pair; vec4 and scalar loads of each operand in each
// layout (contiguous dimension a multiple of 4 or not); batch; alpha; bias with each activation
// epilogue (relu, leaky_relu, both GELUs, none); accumulate; the fused bias gradient (row sums) with
// and without accumulate.

import {
  DEFAULT_VARIANT,
  type Epilogue,
  matmul,
  MATMUL_VARIANTS,
  type MatmulVariant,
} from "../../ops/matmul.ts";
import { inferBackend } from "../../lib/backend.ts";
import type { Runtime } from "../../ops/runtime.ts";
import { Tensor } from "../../ops/tensor.ts";

/** One product form. */
export interface Form {
  name: string;
  M: number;
  N: number;
  K: number;
  batch: number;
  transA: boolean;
  transB: boolean;
  alpha: number;
  bias: boolean;
  epilogue: Epilogue;
  accumulate: boolean;
  rowSums: boolean;
}

const form = (f: Partial<Form> & Pick<Form, "name" | "M" | "N" | "K">): Form => ({
  batch: 1,
  transA: false,
  transB: false,
  alpha: 1,
  bias: false,
  epilogue: "none",
  accumulate: false,
  rowSums: false,
  ...f,
});

/** Loads: NN A k-major vec4, B x-major vec4; NT both k-major scalar; TN A x-major vec4, B x-major
 * scalar; TT A x-major scalar, B k-major vec4. */
export const FORMS: Form[] = [
  form({
    name: "NN batch 2, alpha, bias + relu",
    M: 131,
    N: 68,
    K: 36,
    batch: 2,
    alpha: -0.75,
    bias: true,
    epilogue: "relu",
  }),
  form({
    name: "NT bias + leaky_relu",
    M: 67,
    N: 133,
    K: 37,
    transB: true,
    bias: true,
    epilogue: "leaky_relu",
  }),
  form({
    name: "TN row sums (the weight gradient), bias + gelu",
    M: 132,
    N: 65,
    K: 70,
    transA: true,
    rowSums: true,
    bias: true,
    epilogue: "gelu",
  }),
  form({
    name: "TT accumulate, alpha, row sums accumulated",
    M: 65,
    N: 67,
    K: 40,
    transA: true,
    transB: true,
    alpha: 0.5,
    accumulate: true,
    rowSums: true,
  }),
  form({ name: "NN unaligned, bias + gelu_erf", M: 66, N: 67, K: 35, bias: true, epilogue: "gelu_erf" }),
];

/**
 * Record every variant of MATMUL_VARIANTS on every form, small: M, N <= 8 and batch 1 (one workgroup
 * per product: a batch is only an offset, the same kernel) and K two K tiles of the variant, the second
 * partial, with the form's K mod 4 (so each operand keeps its vec4 or scalar loads); split-K variants
 * get two chunks or more. Outputs in scratch tensors. The race detector interprets every invocation of
 * a workgroup, so the kernels' cheapest instances.
 */
export function dispatchEveryVariant(
  rt: Runtime,
  variants: readonly MatmulVariant[] = MATMUL_VARIANTS,
): void {
  for (const f of FORMS) {
    const M = Math.min(f.M, f.M % 2 ? 5 : 8), N = Math.min(f.N, f.N % 2 ? 7 : 8);
    const t = (n: number) => Tensor.from(rt, new Float32Array(n).fill(0.25));
    const bias = t(N);
    for (const variant of variants) {
      const K = variant.bk + 4 + (f.K % 4);
      matmul(rt, t(M * K), t(K * N), t(M * N), M, N, K, {
        transA: f.transA,
        transB: f.transB,
        alpha: f.alpha,
        bias: f.bias ? bias : null,
        epilogue: f.epilogue,
        accumulate: f.accumulate,
        rowSums: f.rowSums ? t(M) : null,
        kernel: "tiled",
        variant,
      });
    }
  }
}

/** The large variant GL and the page check: 128-row tiles, 8 x 4 per invocation, K tile 16. */
export const LARGE = "128x64 k16 8x4 v4";

/** The variants this adapter's tests check: all, or where compiles are slow today's kernel and LARGE. */
export function variantsToCheck(rt: Runtime): MatmulVariant[] {
  if (!slowCompiles(rt)) return [...MATMUL_VARIANTS];
  return [DEFAULT_VARIANT, MATMUL_VARIANTS.find((v) => v.name === LARGE)!];
}

/**
 * True where large workgroup arrays compile very slowly: wgpu's GL backend (Mesa's GLSL compiler takes
 * up to minutes per kernel) and the page (SwiftShader). Tests there run today's kernel, one large
 * variant, and tune only among variants with small arrays (GL_MAX_ARRAY_VEC4).
 */
export function slowCompiles(rt: Runtime): boolean {
  if (!navigator.userAgent.startsWith("Deno/")) return true;
  return Deno.env.get("DENO_WEBGPU_BACKEND") === "gl" ||
    inferBackend(rt.adapter.info, rt.adapter.features, Deno.build.os).startsWith("gl");
}
