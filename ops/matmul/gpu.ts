// The GPU family's matmul: C[b] = alpha · op(A[b]) · op(B[b]) (+ bias) (+ C), epilogue, in ONE
// dispatch per product (batch in z), tiled through workgroup memory.
//
// A workgroup of 16 x 16 = 256 invocations computes a 64 x 64 tile of C. The k dimension is walked in
// steps of BK = 8: the workgroup stages the 64 x 8 slice of op(A) and the 8 x 64 slice of op(B) in
// workgroup memory (scalar loads, or vec4 loads where the layout allows), then each invocation
// accumulates its 4 x 4 register micro-tile, rows 4·ly + r and columns 4·lx + c, from two vec4
// workgroup-memory reads per 16 FMAs. Loads are coalesced:
// consecutive invocations read consecutive addresses along the operand's contiguous dimension (k for
// A [M, K] and B [N, K], m or n for the transposed layouts). Edge tiles zero-fill their loads past M,
// N or K and mask their stores. A staged row of 64 floats is padded to 17 vec4 so that the
// stores of the k-major layouts (consecutive invocations, consecutive k rows) spread over the banks.
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
import { groups, type Runtime } from "../runtime.ts";
import { activation, activationLib, dispatchProduct, variantCode } from "./common.ts";

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
 * [N, K] B); `ext` is its m or n extent, `x0` the tile's first m or n. Every invocation writes whole
 * vec4s (Tint lowers a store to one vec4 component into a read-modify-write of the vector on some
 * backends, a race between invocations writing neighbouring components).
 */
function stage(X: "A" | "B", S: string, kMajor: boolean, vec: boolean, ext: string, x0: string): string[] {
  const base = `${X.toLowerCase()}Base`;
  const at = (x: string, kk: string) =>
    kMajor ? `${base} + (${x0} + ${x}) * p.K + k0 + ${kk}` : `${base} + (k0 + ${kk}) * ${ext} + ${x0} + ${x}`;
  const inside = (x: string, kk: string) => `${x0} + ${x} < ${ext} && k0 + ${kk} < p.K`;
  const scalar = (x: string, kk: string) =>
    `select(0.0, ${X}[min(${at(x, kk)}, arrayLength(&${X}) - 1u)], ${inside(x, kk)})`;
  const quad = (kk: string) =>
    `vec4<f32>(${[0, 1, 2, 3].map((c) => scalar(`4u * q + ${c}u`, kk)).join(", ")})`;
  if (vec && kMajor) {
    // 32 invocations each load a 4 x 4 block (4 rows of x, one vec4 of k each: the contiguous
    // dimension is a multiple of 4, so a vec4 is wholly inside the operand or outside) and store
    // its transpose: 4 vec4 of x, one per k.
    const L = [`  if (t < 32u) {`, `    let q = t / 2u;`, `    let kb = (t % 2u) * 4u;`];
    for (let r = 0; r < 4; r++) {
      const x = `4u * q + ${r}u`;
      L.push(`    var v${r} = vec4<f32>(0.0);`);
      L.push(`    if (${inside(x, "kb")}) { v${r} = ${X}[(${at(x, "kb")}) / 4u]; }`);
    }
    for (let c = 0; c < 4; c++) {
      L.push(`    ${S}[(kb + ${c}u) * ${ROW4}u + q] = vec4<f32>(v0[${c}], v1[${c}], v2[${c}], v3[${c}]);`);
    }
    L.push(`  }`);
    return L;
  }
  if (vec) {
    // 128 invocations each load one vec4 along x (wholly inside or outside, as above).
    return [
      `  if (t < 128u) {`,
      `    let q = t % 16u;`,
      `    let kk = t / 16u;`,
      `    var v = vec4<f32>(0.0);`,
      `    if (${inside("4u * q", "kk")}) { v = ${X}[(${at("4u * q", "kk")}) / 4u]; }`,
      `    ${S}[kk * ${ROW4}u + q] = v;`,
      `  }`,
    ];
  }
  // 128 invocations each load 4 floats of x at one k; consecutive invocations walk the contiguous
  // dimension (k when kMajor, else x).
  const [q, kk] = kMajor ? ["t / 8u", "t % 8u"] : ["t % 16u", "t / 16u"];
  return [
    `  if (t < 128u) {`,
    `    let q = ${q};`,
    `    let kk = ${kk};`,
    `    ${S}[kk * ${ROW4}u + q] = ${quad("kk")};`,
    `  }`,
  ];
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

${activationLib(s.ep)}
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
  dispatchProduct(rt, p, variantCode("tiled", spec, tiledWGSL), groups(p.N, TILE), groups(p.M, TILE));
}
