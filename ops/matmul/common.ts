// What every matmul kernel shares: the epilogue's WGSL and the dispatch label.

import type { Epilogue, MatmulProblem } from "../matmul.ts";

/** WGSL expression of `ep` applied to the f32 `v` (after alpha and the bias). */
export function activation(ep: Epilogue): string {
  return ep === "relu" ? "max(v, 0.0)" : ep === "leaky_relu" ? "select(0.01 * v, v, v > 0.0)" : "v";
}

/** "matmul NT 2048x192x64": the label of a product's dispatches (the bench groups kernels by it). */
export function matmulLabel({ M, N, K, transA, transB }: MatmulProblem): string {
  return `matmul ${transA ? "T" : "N"}${transB ? "T" : "N"} ${M}x${N}x${K}`;
}
