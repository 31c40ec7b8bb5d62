// The gpu family's matmul variants: what each one is (output tile, K tile, micro-tile per
// invocation, staging, double buffering, split-K), the closed list the autotuner picks from, what a
// variant needs from the adapter, and the shape class a product is tuned under.
//
// The list is curated, not the full cross product: each value of each dimension appears in at least
// one variant, and every variant fits WebGPU's default 256 invocations per workgroup and lavapipe's
// 32 KiB of workgroup memory in every layout (so every one is tested on lavapipe). The first entry is
// today's kernel, the one `--tune off` runs.

import type { MatmulProblem } from "../matmul.ts";

/** One matmul variant of the gpu family (see ops/matmul/gpu.ts for the kernel it generates). */
export interface MatmulVariant {
  /** "64x64 k8 4x4", "128x128 k8 8x8 v4 db", "64x64 k16 4x4 v4 s8": what the fields below say. */
  readonly name: string;
  /** Output rows per workgroup. */
  readonly bm: number;
  /** Output columns per workgroup. */
  readonly bn: number;
  /** K tile: the k values staged in workgroup memory per step. */
  readonly bk: number;
  /** Output rows per invocation. */
  readonly rm: number;
  /** Output columns per invocation. */
  readonly rn: number;
  /** Every invocation stages whole vec4s, in the operand's own layout ("v4"); else today's staging. */
  readonly v4: boolean;
  /** Two K-tile buffers: the next tile is loaded while the current one is used, one barrier a step. */
  readonly db: boolean;
  /** K split into this many chunks, one workgroup layer each, summed in a fixed order (1: none). */
  readonly split: number;
}

function variant(tile: string, bk: number, micro: string, flags: string[] = [], split = 1): MatmulVariant {
  const [bm, bn] = tile.split("x").map(Number), [rm, rn] = micro.split("x").map(Number);
  const name = [tile, `k${bk}`, micro, ...flags, ...(split > 1 ? [`s${split}`] : [])].join(" ");
  return { name, bm, bn, bk, rm, rn, v4: flags.includes("v4"), db: flags.includes("db"), split };
}

/** Today's kernel: 64 x 64 tiles, K tile 8, 4 x 4 per invocation, staged by part of the workgroup. */
export const DEFAULT_VARIANT: MatmulVariant = variant("64x64", 8, "4x4");

/** Every variant: the tile variants, then the split-K ones (the tuner offers those for long K). */
export const MATMUL_VARIANTS: readonly MatmulVariant[] = [
  DEFAULT_VARIANT,
  variant("64x64", 8, "4x4", ["v4"]),
  variant("64x64", 16, "4x4", ["v4", "db"]),
  variant("64x64", 32, "4x4", ["v4"]),
  variant("64x64", 16, "8x8", ["v4"]),
  variant("128x64", 16, "8x4", ["v4"]),
  variant("128x64", 16, "8x4", ["v4", "db"]),
  variant("64x128", 16, "4x8", ["v4"]),
  variant("64x128", 8, "4x8", ["v4", "db"]),
  variant("128x128", 8, "8x8", ["v4", "db"]),
  variant("128x128", 16, "8x8", ["v4"]),
  ...[2, 4, 8, 16].map((s) => variant("64x64", 8, "4x4", ["v4"], s)),
  ...[4, 16].map((s) => variant("128x128", 8, "8x8", ["v4", "db"], s)),
];

/** The variant named `name`, or undefined. */
export function variantByName(name: string): MatmulVariant | undefined {
  return MATMUL_VARIANTS.find((v) => v.name === name);
}

/** Invocations per workgroup along x (columns) and y (rows). */
export function workgroupShape(v: MatmulVariant): [number, number] {
  return [v.bn / v.rn, v.bm / v.rm];
}

/**
 * vec4 of each workgroup array (As, Bs) of a variant, for operands staged k-major (k contiguous: A
 * [M, K], B [N, K]) or not: a v4 variant keeps a k-major tile in rows of bk/4 + 1 vec4 (one of
 * padding), an x-major one in rows of tile/4 vec4; today's kernel both x-major in rows of 17 vec4.
 * Doubled with double buffering.
 */
export function workgroupArrays(
  v: Pick<MatmulVariant, "bm" | "bn" | "bk" | "v4" | "db">,
  aKMajor: boolean,
  bKMajor: boolean,
): [number, number] {
  const tile = (x: number, kMajor: boolean) =>
    (!v.v4 ? v.bk * (x / 4 + 1) : kMajor ? x * (v.bk / 4 + 1) : v.bk * (x / 4)) * (v.db ? 2 : 1);
  return [tile(v.bm, aKMajor), tile(v.bn, bKMajor)];
}

/** Workgroup memory of a variant in one layout, in bytes (see workgroupArrays). */
export function workgroupBytes(v: MatmulVariant, aKMajor: boolean, bKMajor: boolean): number {
  const [a, b] = workgroupArrays(v, aKMajor, bKMajor);
  return 16 * (a + b);
}

/** Split-K partial sums go to one scratch buffer per runtime of at most this many bytes. */
export const SPLIT_SCRATCH_BYTES = 16 << 20;

/** Floats of split-K scratch `v` needs for `p`: every chunk's C, then every chunk's row sums. */
export function splitScratchFloats(v: MatmulVariant, p: Pick<MatmulProblem, "M" | "N" | "batch">): number {
  return v.split * (p.batch * p.M * p.N + p.M);
}

/** The adapter limits a variant is checked against. */
export type VariantLimits = Pick<
  GPUSupportedLimits,
  | "maxComputeWorkgroupStorageSize"
  | "maxComputeInvocationsPerWorkgroup"
  | "maxComputeWorkgroupSizeX"
  | "maxComputeWorkgroupSizeY"
  | "maxComputeWorkgroupsPerDimension"
  | "maxStorageBufferBindingSize"
>;

/** Why `v` cannot run `p` on a device with `limits`, or null when it can. */
export function variantUnfit(
  v: MatmulVariant,
  p: Pick<MatmulProblem, "M" | "N" | "K" | "batch" | "transA" | "transB">,
  limits: VariantLimits,
): string | null {
  const [wx, wy] = workgroupShape(v);
  const bytes = workgroupBytes(v, !p.transA, p.transB);
  if (wx * wy > limits.maxComputeInvocationsPerWorkgroup) return `${wx * wy} invocations per workgroup`;
  if (wx > limits.maxComputeWorkgroupSizeX || wy > limits.maxComputeWorkgroupSizeY) {
    return `workgroup ${wx}x${wy}`;
  }
  if (bytes > limits.maxComputeWorkgroupStorageSize) return `${bytes} bytes of workgroup memory`;
  const grid = Math.max(Math.ceil(p.N / v.bn), Math.ceil(p.M / v.bm), p.batch * v.split);
  if (grid > limits.maxComputeWorkgroupsPerDimension) return `${grid} workgroups along one dimension`;
  const scratch = 4 * splitScratchFloats(v, p);
  if (v.split > 1 && scratch > Math.min(SPLIT_SCRATCH_BYTES, limits.maxStorageBufferBindingSize)) {
    return `${scratch} bytes of split-K scratch`;
  }
  return null;
}

/** K at which the tuner starts to offer split-K variants, and the least K per chunk it offers. */
export const SPLIT_MIN_K = 1024, SPLIT_MIN_CHUNK = 256;

/**
 * The variants the tuner times for `p`: those the adapter can run, less tiles twice as tall (wide) as
 * the product where a 64 tile covers it, and split-K only for long K (chunks of at least
 * SPLIT_MIN_CHUNK) where the unsplit grid has fewer than 1024 workgroups. `maxArrayVec4` drops
 * variants with a larger workgroup array (GL: Mesa's GLSL compiler takes minutes over big ones).
 */
export function candidates(
  p: Pick<MatmulProblem, "M" | "N" | "K" | "batch" | "transA" | "transB">,
  limits: VariantLimits,
  maxArrayVec4 = Infinity,
): MatmulVariant[] {
  return MATMUL_VARIANTS.filter((v) => {
    if (variantUnfit(v, p, limits)) return false;
    if (Math.max(...workgroupArrays(v, !p.transA, p.transB)) > maxArrayVec4) return false;
    if ((v.bm > 64 && p.M <= 64) || (v.bn > 64 && p.N <= 64)) return false;
    if (v.split === 1) return true;
    const tiles = Math.ceil(p.M / v.bm) * Math.ceil(p.N / v.bn) * p.batch;
    return p.K >= SPLIT_MIN_K && p.K / v.split >= SPLIT_MIN_CHUNK && tiles < 1024;
  });
}

/**
 * On wgpu's GL backend (and in the page's tests) the tuner times only variants whose workgroup arrays
 * hold at most this many vec4: naga's GLSL zero-initialises each array with one constructor, which
 * Mesa's GLSL compiler takes seconds to minutes over (today's 136: about a second on llvmpipe; 512:
 * a minute).
 */
export const GL_MAX_ARRAY_VEC4 = 192;

/** Smallest power of two >= n (n >= 1). */
function pow2(n: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(1, n)));
}

/**
 * The shape class a product is tuned under: its transposes, M, N and K rounded up to powers of two,
 * batched or not, which operands take vec4 loads, and whether it reduces row sums. Products of one
 * class share the tuned variant (the first one met is timed). Bias, alpha, epilogue and accumulate
 * only change the last store and are not part of it.
 */
export function shapeClass(
  p: Pick<MatmulProblem, "M" | "N" | "K" | "batch" | "transA" | "transB"> & { rowSums?: unknown },
): string {
  const vecA = (p.transA ? p.M : p.K) % 4 === 0, vecB = (p.transB ? p.K : p.N) % 4 === 0;
  return `${p.transA ? "T" : "N"}${p.transB ? "T" : "N"} ${pow2(p.M)}x${pow2(p.N)}x${pow2(p.K)}` +
    `${p.batch > 1 ? " batched" : ""}${vecA ? " a4" : ""}${vecB ? " b4" : ""}${p.rowSums ? " rowsums" : ""}`;
}
