// What every matmul kernel shares: the epilogue's WGSL, the dispatch label, the per-variant code
// cache, and the launch of the one-dispatch kernels (tiled and storage).

import type { Epilogue, MatmulProblem } from "../matmul.ts";
import { f32, type Runtime } from "../runtime.ts";
import { cachedWGSL } from "../wgsl_cache.ts";
import { GELU_WGSL } from "../activation/gelu.ts";

/** WGSL expression of `ep` applied to the f32 `v` (after alpha and the bias). */
export function activation(ep: Epilogue): string {
  if (ep === "gelu" || ep === "gelu_erf") return `${ep}(v)`;
  return ep === "relu" ? "max(v, 0.0)" : ep === "leaky_relu" ? "select(0.01 * v, v, v > 0.0)" : "v";
}

/** The WGSL functions `activation(ep)` calls (GELU's), to paste into the kernel's module; else "". */
export function activationLib(ep: Epilogue): string {
  return ep === "gelu" || ep === "gelu_erf" ? GELU_WGSL : "";
}

/** "matmul NT 2048x192x64": the label of a product's dispatches (the bench groups kernels by it). */
export function matmulLabel({ M, N, K, transA, transB }: MatmulProblem): string {
  return `matmul ${transA ? "T" : "N"}${transB ? "T" : "N"} ${M}x${N}x${K}`;
}

/** The WGSL of one variant of the kernel `name`, generated once per `spec` (ops/wgsl_cache.ts). */
export function variantCode<S>(name: string, spec: S, generate: (spec: S) => string): string {
  return cachedWGSL(`matmul/${name}/${JSON.stringify(spec)}`, () => generate(spec));
}

/**
 * Launch a one-dispatch product kernel: it binds A, B, C (and bias, rs when the product has them) and
 * takes the params { M, N, K, alpha }; the batch is the grid's z.
 */
export function dispatchProduct(rt: Runtime, p: MatmulProblem, code: string, x: number, y: number): void {
  const views = {
    A: p.A,
    B: p.B,
    C: p.C,
    ...(p.bias ? { bias: p.bias } : {}),
    ...(p.rowSums ? { rs: p.rowSums } : {}),
  };
  rt.dispatch(matmulLabel(p), code, views, [p.M, p.N, p.K, f32(p.alpha)], [x, y, p.batch]);
}
