// The CPU family's matmul for products the window kernel (cpu_window.ts) would need many dispatches
// for: A and B read as storage buffers, the whole product (every batch entry) in ONE dispatch.
//
// On llvmpipe every storage load is a per-lane scalar loop, so what matters is the FMAs per load: an
// invocation owns a TM x TN register tile and loads TM values of A and TN of B per k step for TM·TN
// FMAs. The accumulators are vec4 along a row. The body is generated fully unrolled so they stay in
// registers; row/column indices are clamped for the loads (edge tiles compute duplicates) and masked
// at the store. The store is a loop over a private copy of the accumulators: unrolled, its TM·TN
// storage accesses (each a per-lane loop on llvmpipe) compile slowly (see cpu_window.ts). The bias
// gradient (`rowSums`) is summed from the same A loads and stored by the first column of tiles.
// (wgx·wgy = 32 invocations: a CPU-family kernel, 4 SIMD batches of llvmpipe per workgroup.)

import type { MatmulProblem } from "../matmul.ts";
import { groups, type Runtime } from "../runtime.ts";
import { activation, activationLib, dispatchProduct, variantCode } from "./common.ts";

/** Register tile of the storage kernel. */
export interface StorageTile {
  /** Rows of C per invocation. */
  tm: number;
  /** Columns of C per invocation (multiple of 4: accumulators are vec4 along a row). */
  tn: number;
  /** Invocations per workgroup along columns. */
  wgx: number;
  /** ... and along rows. */
  wgy: number;
}

/**
 * The storage kernel's tile. 16 x 16 spills on llvmpipe too (an invocation is one SIMD lane, so 256
 * accumulators are 256 vector registers), but the spills are L1 traffic while every storage load is
 * a per-lane loop: measured on lavapipe (2 shared cores), 16 x 16 ran 1.3-1.8x faster than 8 x 8 on
 * 1024x384x384 NT, 1024x384x1536 NN and 384x384x1024 TN (0.87-1.03 vs 0.53-0.79 GFLOP/s).
 */
export const STORAGE_TILE: StorageTile = { tm: 16, tn: 16, wgx: 4, wgy: 8 };

/** What one storage-kernel variant is specialised for. */
interface StorageSpec {
  transA: boolean;
  transB: boolean;
  bias: boolean;
  /** Add the existing C. */
  acc: boolean;
  ep: MatmulProblem["epilogue"];
  rowSums: boolean;
  tile: StorageTile;
}

/** The storage kernel's WGSL for one variant. */
export function storageWGSL({ transA, transB, bias, acc, ep, rowSums, tile }: StorageSpec): string {
  const { tm, tn, wgx, wgy } = tile;
  if (tn % 4 !== 0) throw new Error("matmul storage tile: tn must be a multiple of 4");
  const q = tn / 4;
  const R = [...Array(tm).keys()], Q = [...Array(q).keys()], Cs = [...Array(tn).keys()];
  const L: string[] = [];
  for (const r of R) L.push(`  let i${r} = min(row0 + ${r}u, p.M - 1u);`);
  for (const c of Cs) L.push(`  let j${c} = min(col0 + ${c}u, p.N - 1u);`);
  // Per-row / per-column base offsets, so the k loop only adds k (times a stride).
  for (const r of R) L.push(`  let a${r}b = aBase + ${transA ? `i${r}` : `i${r} * p.K`};`);
  for (const c of Cs) L.push(`  let b${c}b = bBase + ${transB ? `j${c} * p.K` : `j${c}`};`);
  for (const r of R) for (const qq of Q) L.push(`  var c${r}_${qq} = vec4<f32>(0.0);`);
  if (rowSums) { for (const r of R) L.push(`  var s${r} = 0.0;`); }
  L.push(`  for (var k = 0u; k < p.K; k++) {`);
  L.push(`    let ak = ${transA ? "k * p.M" : "k"};`, `    let bk = ${transB ? "k" : "k * p.N"};`);
  for (const r of R) {
    L.push(`    let a${r} = A[a${r}b + ak];`);
    if (rowSums) L.push(`    s${r} += a${r};`);
  }
  for (const qq of Q) {
    const e = [0, 1, 2, 3].map((d) => `B[b${4 * qq + d}b + bk]`).join(", ");
    L.push(`    let b${qq} = vec4<f32>(${e});`);
  }
  for (const r of R) {
    for (const qq of Q) L.push(`    c${r}_${qq} = fma(vec4<f32>(a${r}), b${qq}, c${r}_${qq});`);
  }
  L.push(`  }`);
  const accs = R.flatMap((r) => Cs.map((c) => `c${r}_${Math.floor(c / 4)}[${c % 4}]`));
  L.push(`  var acc = array<f32, ${tm * tn}>(${accs.join(", ")});`);
  if (bias) L.push(`  var bj = array<f32, ${tn}>(${Cs.map((c) => `bias[j${c}]`).join(", ")});`);
  L.push(`  for (var e = 0u; e < ${tm * tn}u; e++) {`);
  L.push(`    let i = row0 + e / ${tn}u;`, `    let j = col0 + e % ${tn}u;`);
  L.push(`    if (i < p.M && j < p.N) {`);
  L.push(`      let o = cBase + i * p.N + j;`);
  L.push(`      var v = p.alpha * acc[e]${acc ? " + C[o]" : ""}${bias ? ` + bj[e % ${tn}u]` : ""};`);
  if (ep !== "none") L.push(`      v = ${activation(ep)};`);
  L.push(`      C[o] = v;`, `    }`, `  }`);
  if (rowSums) {
    L.push(`  if (col0 == 0u) {`);
    for (const r of R) {
      L.push(`    if (row0 + ${r}u < p.M) { rs[row0 + ${r}u] = ${acc ? `rs[row0 + ${r}u] + ` : ""}s${r}; }`);
    }
    L.push(`  }`);
  }
  return /* wgsl */ `
struct P { M: u32, N: u32, K: u32, alpha: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read_write> C: array<f32>;
${bias ? "@group(0) @binding(4) var<storage, read> bias: array<f32>;" : ""}
${rowSums ? "@group(0) @binding(5) var<storage, read_write> rs: array<f32>;" : ""}

${activationLib(ep)}
@compute @workgroup_size(${wgx}, ${wgy}, 1)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let b = g.z;
  let row0 = g.y * ${tm}u;
  let col0 = g.x * ${tn}u;
  if (row0 >= p.M || col0 >= p.N) { return; }
  let aBase = b * p.M * p.K;
  let bBase = b * p.K * p.N;
  let cBase = b * p.M * p.N;
${L.join("\n")}
}`;
}

/** Record the product as one storage-kernel dispatch (batch in z). */
export function matmulStorage(rt: Runtime, p: MatmulProblem, tile: StorageTile = STORAGE_TILE): void {
  const spec: StorageSpec = {
    transA: p.transA,
    transB: p.transB,
    bias: !!p.bias,
    acc: p.accumulate,
    ep: p.epilogue,
    rowSums: !!p.rowSums,
    tile,
  };
  dispatchProduct(
    rt,
    p,
    variantCode("storage", spec, storageWGSL),
    groups(p.N, tile.tn * tile.wgx),
    groups(p.M, tile.tm * tile.wgy),
  );
}
