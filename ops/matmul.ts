// Matmul family: C[b] = op(A[b]) · op(B[b]) (+ bias) (+ C) with optional ReLU / LeakyReLU epilogue,
// both operands optionally transposed, and a batch dimension. Linear forward and both halves of its
// backward are this one kernel; the bias gradient is `sumRows` (column reduction).
//
// Each invocation owns a TM×TN block of C held in registers (llvmpipe/lavapipe execute lanes as SIMD
// and issue loads per lane, so large register tiles amortise loads best); a workgroup is WG×WG of them.

import { f32, groups, type Runtime } from "./runtime.ts";
import type { Tensor } from "./tensor.ts";

export type Epilogue = "none" | "relu" | "leaky_relu";

export interface MatmulOpts {
  transA?: boolean; // A is stored [K, M] instead of [M, K]
  transB?: boolean; // B is stored [N, K] instead of [K, N]
  bias?: Tensor | null; // [N], broadcast over rows
  accumulate?: boolean; // C += result (bias/epilogue not allowed with accumulate)
  epilogue?: Epilogue;
  batch?: number; // number of independent products; A, B, C are packed [batch, ...]
  alpha?: number;
  tile?: MatmulTile;
}

export const DEFAULT_TILE: MatmulTile = { tm: 16, tn: 16, wgx: 4, wgy: 8 };

export interface MatmulTile {
  tm: number; // rows of C per invocation
  tn: number; // columns of C per invocation (multiple of 4: accumulators are vec4 along a row)
  wgx: number; // invocations per workgroup along columns
  wgy: number; // ... and along rows
}

function matmulWGSL(
  transA: boolean,
  transB: boolean,
  bias: boolean,
  acc: boolean,
  ep: Epilogue,
  { tm, tn, wgx, wgy }: MatmulTile,
): string {
  if (tn % 4 !== 0) throw new Error("matmul tile: tn must be a multiple of 4");
  const q = tn / 4;
  const R = [...Array(tm).keys()], Q = [...Array(q).keys()], Cs = [...Array(tn).keys()];
  const act = ep === "relu" ? "max(v, 0.0)" : ep === "leaky_relu" ? "select(0.01 * v, v, v > 0.0)" : "v";
  // The body is generated fully unrolled so the accumulators stay in registers. Row/column indices
  // are clamped for the loads (edge tiles compute duplicates) and masked at the store.
  const lines: string[] = [];
  for (const r of R) lines.push(`  let i${r} = min(row0 + ${r}u, p.M - 1u);`);
  for (const c of Cs) lines.push(`  let j${c} = min(col0 + ${c}u, p.N - 1u);`);
  // Per-row / per-column base offsets, so the k loop only adds k (times a stride).
  for (const r of R) lines.push(`  let a${r}b = aBase + ${transA ? `i${r}` : `i${r} * p.K`};`);
  for (const c of Cs) lines.push(`  let b${c}b = bBase + ${transB ? `j${c} * p.K` : `j${c}`};`);
  for (const r of R) for (const qq of Q) lines.push(`  var c${r}_${qq} = vec4<f32>(0.0);`);
  lines.push(`  for (var k = 0u; k < p.K; k++) {`);
  const aStride = transA ? "k * p.M" : "k";
  const bStride = transB ? "k" : "k * p.N";
  lines.push(`    let ak = ${aStride};`, `    let bk = ${bStride};`);
  for (const r of R) lines.push(`    let a${r} = vec4<f32>(A[a${r}b + ak]);`);
  for (const qq of Q) {
    const e = [0, 1, 2, 3].map((d) => `B[b${4 * qq + d}b + bk]`).join(", ");
    lines.push(`    let b${qq} = vec4<f32>(${e});`);
  }
  for (const r of R) for (const qq of Q) lines.push(`    c${r}_${qq} = fma(a${r}, b${qq}, c${r}_${qq});`);
  lines.push(`  }`);
  for (const r of R) {
    lines.push(`  if (row0 + ${r}u < p.M) {`);
    for (const c of Cs) {
      lines.push(`    if (col0 + ${c}u < p.N) {`);
      lines.push(`      var v = p.alpha * c${r}_${Math.floor(c / 4)}[${c % 4}]${bias ? ` + bias[col0 + ${c}u]` : ""};`);
      lines.push(`      v = ${act};`);
      lines.push(`      let o = cBase + (row0 + ${r}u) * p.N + col0 + ${c}u;`);
      lines.push(`      C[o] = ${acc ? "C[o] + v" : "v"};`);
      lines.push(`    }`);
    }
    lines.push(`  }`);
  }
  return /* wgsl */ `
struct P { M: u32, N: u32, K: u32, alpha: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read_write> C: array<f32>;
${bias ? "@group(0) @binding(4) var<storage, read> bias: array<f32>;" : ""}

@compute @workgroup_size(${wgx}, ${wgy}, 1)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let b = g.z;
  let row0 = g.y * ${tm}u;
  let col0 = g.x * ${tn}u;
  if (row0 >= p.M || col0 >= p.N) { return; }
  let aBase = b * p.M * p.K;
  let bBase = b * p.K * p.N;
  let cBase = b * p.M * p.N;
${lines.join("\n")}
}`;
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
  const batch = o.batch ?? 1;
  const ep = o.epilogue ?? "none";
  if (A.size < batch * M * K || B.size < batch * K * N || C.size < batch * M * N) {
    throw new Error(`matmul: operand too small for [${batch}] ${M}x${K} @ ${K}x${N}`);
  }
  if (o.accumulate && (o.bias || ep !== "none")) throw new Error("matmul: accumulate excludes bias/epilogue");
  if (o.bias && o.bias.size !== N) throw new Error(`matmul: bias has ${o.bias.size} values, want ${N}`);
  const tile = o.tile ?? DEFAULT_TILE;
  const code = matmulWGSL(!!o.transA, !!o.transB, !!o.bias, !!o.accumulate, ep, tile);
  const views = o.bias ? [A, B, C, o.bias] : [A, B, C];
  rt.dispatch(
    `matmul ${o.transA ? "T" : "N"}${o.transB ? "T" : "N"} ${M}x${N}x${K}`,
    code,
    views,
    [M, N, K, f32(o.alpha ?? 1)],
    [groups(N, tile.tn * tile.wgx), groups(M, tile.tm * tile.wgy), batch],
  );
}

const SUM_ROWS_WG = 64;
const SUM_ROWS = /* wgsl */ `
struct P { M: u32, N: u32, acc: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@compute @workgroup_size(${SUM_ROWS_WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let j = g.x;
  if (j >= p.N) { return; }
  var s = 0.0;
  for (var i = 0u; i < p.M; i++) { s += X[i * p.N + j]; }
  if (p.acc != 0u) { s += Y[j]; }
  Y[j] = s;
}`;

/** Y[j] (+)= Σ_i X[i, j]: the bias gradient of a Linear layer (X is [M, N]). */
export function sumRows(rt: Runtime, X: Tensor, Y: Tensor, M: number, N: number, accumulate = false): void {
  if (X.size < M * N || Y.size < N) throw new Error("sumRows: operand too small");
  rt.dispatch("sum_rows", SUM_ROWS, [X, Y], [M, N, accumulate ? 1 : 0], [groups(N, SUM_ROWS_WG)]);
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
  matmul(rt, dy, x, W.grad, out, inp, n, { transA: true });
  if (b) sumRows(rt, dy, b.grad!, n, out);
  if (dx) matmul(rt, dy, W, dx, n, inp, out, { accumulate: accumulateDx });
}
