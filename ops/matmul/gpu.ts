// The GPU family's matmul: C[b] = alpha · op(A[b]) · op(B[b]) (+ bias) (+ C), epilogue, in ONE
// dispatch per product (batch in z), tiled through workgroup memory.
//
// A workgroup of 16 x 16 = 256 invocations computes a 64 x 64 tile of C. The k dimension is walked in
// steps of BK = 8: the workgroup stages the 64 x 8 slice of op(A) and the 8 x 64 slice of op(B) in
// workgroup memory (2 floats of each per invocation, or one vec4 per two invocations where the
// layout allows), then each invocation accumulates its 4 x 4 register micro-tile, rows 4·ly + r and
// columns 4·lx + c, from two vec4 workgroup-memory reads per 16 FMAs. Loads are coalesced:
// consecutive invocations read consecutive addresses along the operand's contiguous dimension (k for
// A [M, K] and B [N, K], m or n for the transposed layouts). Edge tiles zero-fill their loads past M,
// N or K and mask their stores. A staged row of 64 floats is padded to 17 vec4 so that the
// transposing stores of the k-major layouts spread over the banks.
//
// The staged slices are vec4 arrays: naga's GLSL backend zero-initialises workgroup memory with one
// array constructor per variable, which Mesa compiles in time growing with its element count (two
// 1040-float arrays took minutes per pipeline on llvmpipe GL; 2 x 136 vec4 take seconds).
//
// The bias gradient of a Linear (`rowSums`, Σ_k op(A)[i, k]) is reduced inside the same kernel: every
// invocation sums the op(A) values it already reads, and the invocations of the first column of
// tiles (lx == 0 of workgroup x 0) store them. No extra dispatch.
//
// Workgroup memory: 2 · 8 · 17 vec4 = 4352 bytes, within WebGPU's default 16 KiB.

import type { MatmulProblem } from "../matmul.ts";
import { f32, groups, type Runtime } from "../runtime.ts";
import { activation, matmulLabel } from "./common.ts";

/** Output tile per workgroup (square), k step, vec4 per padded staged row, invocations per side. */
const TILE = 64, BK = 8, ROW4 = TILE / 4 + 1, WG = 16;
/** Workgroup memory the kernel declares, in bytes. */
export const GPU_MATMUL_WORKGROUP_BYTES = 2 * BK * ROW4 * 16;

/** What one tiled-kernel variant is specialised for. */
interface TiledSpec {
  transA: boolean;
  transB: boolean;
  /** Read A / B as vec4 (their contiguous dimension is a multiple of 4). */
  vecA: boolean;
  vecB: boolean;
  bias: boolean;
  acc: boolean;
  ep: MatmulProblem["epilogue"];
  rowSums: boolean;
}

/**
 * WGSL that stages one operand's BK x 64 slice into workgroup memory `S`: element (kk, x), x along m
 * or n, at S[kk * ROW4 + x / 4][x % 4]. `kMajor`: k is the operand's contiguous dimension ([M, K] A,
 * [N, K] B); `ext` is its m or n extent, `x0` the tile's first m or n.
 */
function stage(X: "A" | "B", S: string, kMajor: boolean, vec: boolean, ext: string, x0: string): string[] {
  const base = `${X.toLowerCase()}Base`;
  const load = (x: string, kk: string) =>
    kMajor ? `${base} + (${x0} + ${x}) * p.K + k0 + ${kk}` : `${base} + (k0 + ${kk}) * ${ext} + ${x0} + ${x}`;
  const inside = (x: string, kk: string) => `${x0} + ${x} < ${ext} && k0 + ${kk} < p.K`;
  if (vec) {
    // 128 vec4 per slice, one per invocation t < 128. The contiguous dimension is a multiple of 4,
    // so a vec4 is wholly inside the operand or wholly outside.
    const [x, kk] = kMajor ? ["t / 2u", "(t % 2u) * 4u"] : ["(t % 16u) * 4u", "t / 16u"];
    const L = [
      `  if (t < 128u) {`,
      `    let x = ${x};`,
      `    let kk = ${kk};`,
      `    var v = vec4<f32>(0.0);`,
      `    if (${inside("x", "kk")}) { v = ${X}[(${load("x", "kk")}) / 4u]; }`,
    ];
    if (kMajor) {
      for (let c = 0; c < 4; c++) L.push(`    ${S}[(kk + ${c}u) * ${ROW4}u + x / 4u][x % 4u] = v[${c}];`);
    } else {
      L.push(`    ${S}[kk * ${ROW4}u + x / 4u] = v;`);
    }
    L.push(`  }`);
    return L;
  }
  const L: string[] = [];
  for (let i = 0; i < 2; i++) {
    // Element e = t + 256·i of the slice; consecutive t walk the contiguous dimension.
    const [x, kk] = kMajor
      ? [`(t + ${256 * i}u) / ${BK}u`, `t % ${BK}u`]
      : [`t % ${TILE}u`, `(t + ${256 * i}u) / ${TILE}u`];
    L.push(
      `  {`,
      `    let x = ${x};`,
      `    let kk = ${kk};`,
      `    var v = 0.0;`,
      `    if (${inside("x", "kk")}) { v = ${X}[${load("x", "kk")}]; }`,
      `    ${S}[kk * ${ROW4}u + x / 4u][x % 4u] = v;`,
      `  }`,
    );
  }
  return L;
}

/** The tiled kernel's WGSL for one variant. */
export function tiledWGSL(s: TiledSpec): string {
  const R = [0, 1, 2, 3];
  const L: string[] = [];
  L.push(`  for (var k0 = 0u; k0 < p.K; k0 += ${BK}u) {`);
  L.push(...stage("A", "As", !s.transA, s.vecA, "p.M", "m0").map((l) => "  " + l));
  L.push(...stage("B", "Bs", s.transB, s.vecB, "p.N", "n0").map((l) => "  " + l));
  L.push(`    workgroupBarrier();`);
  L.push(`    for (var kk = 0u; kk < ${BK}u; kk++) {`);
  L.push(`      let a = As[kk * ${ROW4}u + ly];`, `      let b = Bs[kk * ${ROW4}u + lx];`);
  for (const r of R) L.push(`      c${r} = fma(vec4<f32>(a[${r}]), b, c${r});`);
  if (s.rowSums) L.push(`      rsum += a;`);
  L.push(`    }`, `    workgroupBarrier();`, `  }`);
  // Store: rows 4·ly + r, columns 4·lx + c; a row of 16 invocations writes 64 consecutive floats.
  for (const r of R) {
    L.push(`  let i${r} = m0 + 4u * ly + ${r}u;`);
    L.push(`  if (i${r} < p.M) {`);
    for (const c of R) {
      L.push(`    if (j${c} < p.N) {`);
      L.push(`      let o = cBase + i${r} * p.N + j${c};`);
      L.push(
        `      var v = p.alpha * c${r}[${c}]${s.acc ? " + C[o]" : ""}${s.bias ? ` + bias[j${c}]` : ""};`,
      );
      if (s.ep !== "none") L.push(`      v = ${activation(s.ep)};`);
      L.push(`      C[o] = v;`, `    }`);
    }
    L.push(`  }`);
  }
  if (s.rowSums) {
    L.push(`  if (wg.x == 0u && lx == 0u) {`);
    for (const r of R) {
      L.push(`    if (i${r} < p.M) { rs[i${r}] = ${s.acc ? `rs[i${r}] + ` : ""}rsum[${r}]; }`);
    }
    L.push(`  }`);
  }
  const arr = (v: boolean) => (v ? "array<vec4<f32>>" : "array<f32>");
  return /* wgsl */ `
struct P { M: u32, N: u32, K: u32, alpha: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> A: ${arr(s.vecA)};
@group(0) @binding(2) var<storage, read> B: ${arr(s.vecB)};
@group(0) @binding(3) var<storage, read_write> C: array<f32>;
${s.bias ? "@group(0) @binding(4) var<storage, read> bias: array<f32>;" : ""}
${s.rowSums ? "@group(0) @binding(5) var<storage, read_write> rs: array<f32>;" : ""}
var<workgroup> As: array<vec4<f32>, ${BK * ROW4}>;
var<workgroup> Bs: array<vec4<f32>, ${BK * ROW4}>;

@compute @workgroup_size(${WG}, ${WG}, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let lx = lid.x;
  let ly = lid.y;
  let t = ly * ${WG}u + lx;
  let m0 = wg.y * ${TILE}u;
  let n0 = wg.x * ${TILE}u;
  let aBase = wg.z * p.M * p.K;
  let bBase = wg.z * p.K * p.N;
  let cBase = wg.z * p.M * p.N;
${R.map((c) => `  let j${c} = n0 + 4u * lx + ${c}u;`).join("\n")}
${R.map((r) => `  var c${r} = vec4<f32>(0.0);`).join("\n")}
${s.rowSums ? "  var rsum = vec4<f32>(0.0);" : ""}
${L.join("\n")}
}`;
}

const codeCache = new Map<string, string>();

/** Record the product as one tiled dispatch. */
export function matmulTiled(rt: Runtime, p: MatmulProblem): void {
  const have = rt.device.limits.maxComputeWorkgroupStorageSize;
  if (GPU_MATMUL_WORKGROUP_BYTES > have) {
    throw new Error(
      `matmul: the tiled kernel needs ${GPU_MATMUL_WORKGROUP_BYTES} bytes of workgroup memory, the device allows ${have}`,
    );
  }
  // vec4 loads need the contiguous dimension (and so every row and batch start) a multiple of 4 floats;
  // storage bindings start 256-byte aligned.
  const spec: TiledSpec = {
    transA: p.transA,
    transB: p.transB,
    vecA: (p.transA ? p.M : p.K) % 4 === 0,
    vecB: (p.transB ? p.K : p.N) % 4 === 0,
    bias: !!p.bias,
    acc: p.accumulate,
    ep: p.epilogue,
    rowSums: !!p.rowSums,
  };
  const key = JSON.stringify(spec);
  let code = codeCache.get(key);
  if (code === undefined) codeCache.set(key, code = tiledWGSL(spec));
  const views = {
    A: p.A,
    B: p.B,
    C: p.C,
    ...(p.bias ? { bias: p.bias } : {}),
    ...(p.rowSums ? { rs: p.rowSums } : {}),
  };
  rt.dispatch(matmulLabel(p), code, views, [p.M, p.N, p.K, f32(p.alpha)], [
    groups(p.N, TILE),
    groups(p.M, TILE),
    p.batch,
  ]);
}
