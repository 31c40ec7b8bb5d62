// Matmul family: C[b] = op(A[b]) · op(B[b]) (+ bias) (+ C) with optional ReLU / LeakyReLU epilogue,
// both operands optionally transposed, and a batch dimension. Linear forward and both halves of its
// backward are this one kernel; the bias gradient is reduced inside the weight-gradient product
// (`rowSums`), with `sumRows` (column reduction) as the stand-alone form.
//
// Two kernels compute it:
//
// * "window" (the default). On Mesa's llvmpipe/lavapipe (the software adapters this project runs on
//   without a GPU) every storage-buffer or workgroup-memory access compiles to a scalar loop over the
//   SIMD lanes with a bounds check and a branch per lane (~7 ns per lane and value on 2 cores), while a
//   uniform-buffer access is a plain gather (~0.4 ns). So the operands are read through uniform
//   buffers: each dispatch binds up to maxUniformBuffersPerShaderStage - 1 windows of 64 KiB
//   (maxUniformBufferBindingSize) of A and B and the host tiles the problem so that every block of
//   rows/columns/k it hands a workgroup lies in one window. Operands are copied (copyBufferToBuffer,
//   memcpy speed) into a small per-runtime staging area right before each dispatch, unless their
//   buffer already has UNIFORM usage, in which case the windows are bound in place. Long K (weight gradients, K = tokens) is split over several
//   windows inside one dispatch (accumulated in registers) and, past that, over dispatches that
//   accumulate into C. Each invocation owns a TM x TN register tile; the TN columns are interleaved
//   across the WX lanes of a workgroup so lanes read neighbouring addresses. Only C (and bias,
//   rowSums) remain storage accesses: one per output element.
// * "storage": the original kernel reading A and B as storage buffers (kept as a reference point for
//   benchmarks and as an option for adapters where it is faster).
//
// Steady state allocates nothing: the staging buffers are created once per runtime and bind groups /
// uniform parameter buffers are cached by the runtime (window offsets repeat from step to step).

import { type BufferView, f32, groups, type Param, type Runtime } from "./runtime.ts";
import type { Tensor } from "./tensor.ts";

/** Applied to each element of C after the bias. */
export type Epilogue = "none" | "relu" | "leaky_relu";
/** Which matmul kernel: operands in uniform-buffer windows, or in storage buffers. */
export type MatmulKernel = "window" | "storage";

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
  /** Default: the runtime's choice (see setMatmulKernel), else "window". */
  kernel?: MatmulKernel;
  /** Storage kernel tile. */
  tile?: MatmulTile;
  /** Window kernel tile (default DEFAULT_WINDOW_TILE) */
  windowTile?: WindowTile;
}

/** Register tile of the storage kernel. */
export interface MatmulTile {
  /** Rows of C per invocation. */
  tm: number;
  /** Columns of C per invocation (multiple of 4: accumulators are vec4 along a row) */
  tn: number;
  /** Invocations per workgroup along columns. */
  wgx: number;
  /** ... and along rows. */
  wgy: number;
}

/** The storage kernel's default tile. */
export const DEFAULT_TILE: MatmulTile = { tm: 16, tn: 16, wgx: 4, wgy: 8 };

/** Register tile of the window kernel: TM rows x TN columns per invocation, WX invocations per workgroup. */
export interface WindowTile {
  /** Rows of C per invocation. */
  tm: number;
  /** Columns of C per invocation. */
  tn: number;
  /** Invocations per workgroup. */
  wx: number;
}

/** The window kernel's default tile. */
export const DEFAULT_WINDOW_TILE: WindowTile = { tm: 8, tn: 8, wx: 8 };

/**
 * Window tiles to try for N columns, best first. Narrow products get narrow tiles (a workgroup spans
 * WX·TN columns, and lanes past N only repeat the last one). With B stored [N, K] a block of columns
 * spans (columns - 1)·K floats of B, so past K ≈ 260 the 64 columns of the default tile no longer fit
 * one window: narrower tiles are tried before giving up for the storage kernel.
 */
function windowTiles(N: number): WindowTile[] {
  const { tm, tn, wx } = DEFAULT_WINDOW_TILE;
  let w = tn;
  while (w > 1 && wx * (w / 2) >= N) w /= 2;
  const out: WindowTile[] = [];
  for (; w >= 1; w = w >> 1) out.push({ tm, tn: w, wx });
  return out;
}

// ---------------------------------------------------------------- storage kernel

function storageWGSL(
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
      lines.push(
        `      var v = p.alpha * c${r}_${Math.floor(c / 4)}[${c % 4}]${bias ? ` + bias[col0 + ${c}u]` : ""};`,
      );
      lines.push(`      v = ${activation(ep)};`);
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

function activation(ep: Epilogue): string {
  return ep === "relu" ? "max(v, 0.0)" : ep === "leaky_relu" ? "select(0.01 * v, v, v > 0.0)" : "v";
}

function matmulStorage(
  rt: Runtime,
  A: Tensor,
  B: Tensor,
  C: Tensor,
  M: number,
  N: number,
  K: number,
  o: MatmulOpts,
  batch: number,
  ep: Epilogue,
): void {
  const tile = o.tile ?? DEFAULT_TILE;
  const code = storageWGSL(!!o.transA, !!o.transB, !!o.bias, !!o.accumulate, ep, tile);
  const views = { A, B, C, ...(o.bias ? { bias: o.bias } : {}) };
  rt.dispatch(
    `matmul ${o.transA ? "T" : "N"}${o.transB ? "T" : "N"} ${M}x${N}x${K}`,
    code,
    views,
    [M, N, K, f32(o.alpha ?? 1)],
    [groups(N, tile.tn * tile.wgx), groups(M, tile.tm * tile.wgy), batch],
  );
}

// ---------------------------------------------------------------- window kernel

/** Floats in one uniform-buffer window (64 KiB, the WebGPU default maxUniformBufferBindingSize). */
export const WINDOW = 16384;
const ALIGN = 64; // floats: 256 bytes, minUniformBufferOffsetAlignment
const UNIFORM_USAGE = 0x40;

/** How the pairs of one dispatch map onto its A and B window bindings. */
export type PairMap = "rows" | "cols" | "k"; // distinct A windows / distinct B windows / both

interface Pair {
  mLo: number;
  mHi: number;
  nLo: number;
  nHi: number;
  k0: number;
  kc: number;
}

interface Blocks {
  Mr: number;
  Nr: number;
  Kr: number;
}

/** How many pairs (window bindings) one dispatch may hold, for this device. */
function pairLimits(rt: Runtime): { single: number; k: number } {
  const ubos = rt.device.limits.maxUniformBuffersPerShaderStage - 1; // binding 0 is the params
  return { single: Math.max(1, Math.min(14, ubos - 1)), k: Math.max(1, Math.min(7, Math.floor(ubos / 2))) };
}

/** What one window-kernel variant is specialised for. */
export interface WindowKernelSpec {
  /** Pairs per dispatch. */
  np: number;
  /** How (A, B) window pairs map to bindings. */
  map: PairMap;
  /** Add a bias row. */
  bias: boolean;
  /** The epilogue. */
  ep: Epilogue;
  /** Also reduce Σ_k op(A)[i, k] (the bias gradient of a Linear, fused into dW) */
  rowSums: boolean;
  /** Add the existing C (accumulate, or a later dispatch of a split K) */
  loadC: boolean;
  /** The register tile. */
  tile: WindowTile;
}

/**
 * The window kernel: `np` pairs of (A window, B window); a workgroup accumulates over every pair whose
 * [mLo, mHi) x [nLo, nHi) block contains its tile, reading kc steps of k from the pair's windows.
 */
export function windowWGSL({ np, map, bias, ep, rowSums, loadC, tile }: WindowKernelSpec): string {
  const { tm, tn, wx } = tile;
  const na = map === "cols" ? 1 : np, nb = map === "rows" ? 1 : np;
  const R = [...Array(tm).keys()], Cs = [...Array(tn).keys()];
  const L: string[] = [];
  for (const r of R) for (const c of Cs) L.push(`  var c${r}_${c} = 0.0;`);
  if (rowSums) { for (const r of R) L.push(`  var s${r} = 0.0;`); }
  for (let w = 0; w < np; w++) {
    const aw = `A${map === "cols" ? 0 : w}`, bw = `B${map === "rows" ? 0 : w}`;
    L.push(`  {`);
    L.push(`    let q = p.pairs[${w}];`);
    L.push(`    if (row0 >= q.mLo && row0 < q.mHi && col0 >= q.nLo && col0 < q.nHi) {`);
    for (const r of R) L.push(`      let a${r} = q.aOff + (min(row0 + ${r}u, q.mHi - 1u) - q.mLo) * p.sAi;`);
    for (const c of Cs) {
      L.push(`      let b${c} = q.bOff + (min(colL + ${c * wx}u, q.nHi - 1u) - q.nLo) * p.sBj;`);
    }
    L.push(`      for (var k = 0u; k < q.kc; k++) {`);
    L.push(`        let ka = k * p.sAk;`, `        let kb = k * p.sBk;`);
    for (const r of R) {
      L.push(`        let ia${r} = a${r} + ka;`, `        let va${r} = ${aw}[ia${r} >> 2u][ia${r} & 3u];`);
      if (rowSums) L.push(`        s${r} += va${r};`);
    }
    for (const c of Cs) {
      L.push(`        let ib${c} = b${c} + kb;`, `        let vb${c} = ${bw}[ib${c} >> 2u][ib${c} & 3u];`);
    }
    for (const r of R) for (const c of Cs) L.push(`        c${r}_${c} = fma(va${r}, vb${c}, c${r}_${c});`);
    L.push(`      }`, `    }`, `  }`);
  }
  // The store runs as a loop over a private copy of the accumulators (a `var`: dynamically indexing a
  // `let` array copies it per access): unrolled, its TM x TN storage accesses (each a per-lane scalar
  // loop on llvmpipe) took 4x longer to compile and ran slower. Whether C is read and the bias added
  // is decided at compile time: a storage access under a false uniform condition still costs its loop.
  L.push(`  var acc = array<f32, ${tm * tn}>(${R.flatMap((r) => Cs.map((c) => `c${r}_${c}`)).join(", ")});`);
  if (bias) {
    const js = Cs.map((c) => `bias[min(colL + ${c * wx}u, p.N - 1u)]`);
    L.push(`  var bj = array<f32, ${tn}>(${js.join(", ")});`);
  }
  L.push(`  for (var e = 0u; e < ${tm * tn}u; e++) {`);
  L.push(`    let i = row0 + e / ${tn}u;`, `    let j = colL + (e % ${tn}u) * ${wx}u;`);
  L.push(`    if (i < p.M && j < p.N) {`);
  L.push(`      let o = p.cOff + i * p.N + j;`);
  L.push(`      var v = p.alpha * acc[e]${loadC ? " + C[o]" : ""}${bias ? ` + bj[e % ${tn}u]` : ""};`);
  if (ep !== "none") L.push(`      v = ${activation(ep)};`);
  L.push(`      C[o] = v;`, `    }`, `  }`);
  if (rowSums) {
    // Every lane of every column tile holds the same sums; the first lane of column tile 0 stores.
    L.push(`  if (col0 == 0u && lid.x == 0u) {`);
    for (const r of R) {
      L.push(`    if (row0 + ${r}u < p.M) {`);
      L.push(`      let o = row0 + ${r}u;`);
      L.push(`      rs[o] = ${loadC ? "rs[o] + " : ""}s${r};`);
      L.push(`    }`);
    }
    L.push(`  }`);
  }
  const decl: string[] = [];
  for (let i = 0; i < na; i++) decl.push(`@group(0) @binding(${1 + i}) var<uniform> A${i}: Win;`);
  for (let i = 0; i < nb; i++) decl.push(`@group(0) @binding(${1 + na + i}) var<uniform> B${i}: Win;`);
  let slot = 1 + na + nb;
  decl.push(`@group(0) @binding(${slot++}) var<storage, read_write> C: array<f32>;`);
  if (bias) decl.push(`@group(0) @binding(${slot++}) var<storage, read> bias: array<f32>;`);
  if (rowSums) decl.push(`@group(0) @binding(${slot++}) var<storage, read_write> rs: array<f32>;`);
  return /* wgsl */ `
struct Pair { mLo: u32, mHi: u32, nLo: u32, nHi: u32, kc: u32, aOff: u32, bOff: u32, pad: u32 }
struct P {
  M: u32, N: u32, sAi: u32, sAk: u32, sBk: u32, sBj: u32, rowBase: u32, colBase: u32,
  alpha: f32, cOff: u32, pad0: u32, pad1: u32,
  pairs: array<Pair, ${np}>,
}
alias Win = array<vec4<f32>, ${WINDOW / 4}>;
@group(0) @binding(0) var<uniform> p: P;
${decl.join("\n")}

@compute @workgroup_size(${wx}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let row0 = p.rowBase + wg.y * ${tm}u;
  let col0 = p.colBase + wg.x * ${wx * tn}u;
  let colL = col0 + lid.x;
${L.join("\n")}
}`;
}

const codeCache = new Map<string, string>();
function windowCode(spec: WindowKernelSpec): string {
  const { tile: t, ...rest } = spec;
  const key = JSON.stringify(rest) + `${t.tm},${t.tn},${t.wx}`;
  let code = codeCache.get(key);
  if (code === undefined) codeCache.set(key, code = windowWGSL(spec));
  return code;
}

/** Floats of A (or B) that a block touches, relative to the operand's start. */
function spanA(transA: boolean, M: number, K: number, mLo: number, mHi: number, k0: number, kc: number) {
  return transA
    ? { start: k0 * M + mLo, end: (k0 + kc - 1) * M + mHi }
    : { start: mLo * K + k0, end: (mHi - 1) * K + k0 + kc };
}
function spanB(transB: boolean, N: number, K: number, nLo: number, nHi: number, k0: number, kc: number) {
  return transB
    ? { start: nLo * K + k0, end: (nHi - 1) * K + k0 + kc }
    : { start: k0 * N + nLo, end: (k0 + kc - 1) * N + nHi };
}

/**
 * Choose block sizes (rows Mr, columns Nr, depth Kr) so each block's A and B footprints fit a window
 * (`room` floats), minimising dispatches, then pairs. Null if even one workgroup tile cannot fit.
 */
function chooseBlocks(
  M: number,
  N: number,
  K: number,
  transA: boolean,
  transB: boolean,
  t: WindowTile,
  room: number,
  lim: { single: number; k: number },
): Blocks | null {
  const TNw = t.wx * t.tn;
  let best: Blocks | null = null, bestCost = Infinity;
  let prevKr = -1;
  for (let nk = 1; nk <= K; nk++) {
    const Kr = Math.ceil(K / nk);
    if (Kr === prevKr) continue;
    prevKr = Kr;
    if (Kr > room) continue;
    let Mr = transA ? room - (Kr - 1) * M : Math.floor((room - Kr) / K) + 1;
    let Nr = transB ? Math.floor((room - Kr) / K) + 1 : room - (Kr - 1) * N;
    if (Mr >= M) Mr = M;
    else Mr = Math.floor(Mr / t.tm) * t.tm;
    if (Nr >= N) Nr = N;
    else Nr = Math.floor(Nr / TNw) * TNw;
    if (Mr < 1 || Nr < 1) continue;
    const nM = Math.ceil(M / Mr), nN = Math.ceil(N / Nr), nK = Math.ceil(K / Kr);
    let dispatches: number;
    if (nK > 1) dispatches = nM * nN * Math.ceil(nK / lim.k);
    else if (nN === 1) dispatches = Math.ceil(nM / lim.single);
    else if (nM === 1) dispatches = Math.ceil(nN / lim.single);
    else dispatches = nN * Math.ceil(nM / lim.single);
    // A dispatch costs ~0.1 ms on lavapipe; a split K also re-reads and re-writes C per dispatch.
    const cost = dispatches * (nK > 1 ? 2 : 1) * 1e6 + nM * nN * nK;
    if (cost < bestCost) {
      bestCost = cost;
      best = { Mr, Nr, Kr };
    }
    if (nM * nN === 1) break; // smaller k blocks only add pairs from here on
  }
  return best;
}

interface WinRef {
  start: number; // aligned first float of the window (relative to the operand start)
  end: number; // one past the last float used
}

interface DispatchPlan {
  map: PairMap;
  rowBase: number;
  rowEnd: number;
  colBase: number;
  colEnd: number;
  loadC: boolean;
  fin: boolean;
  pairs: (Pair & { a: number; b: number })[]; // a, b: index into aWins / bWins
  aWins: WinRef[];
  bWins: WinRef[];
  aOff: number[]; // per pair: first float of its block relative to its A window
  bOff: number[];
}

interface Plan {
  np: number;
  map: PairMap;
  dispatches: DispatchPlan[];
}

const alignDown = (x: number, base: number) => Math.floor((x + base) / ALIGN) * ALIGN - base;

/**
 * Tile one product into dispatches of window pairs. `aBase`/`bBase` are the operands' float offsets
 * modulo ALIGN in the buffers their windows will be bound from (0 for the staging area).
 */
function planWindows(
  M: number,
  N: number,
  K: number,
  transA: boolean,
  transB: boolean,
  t: WindowTile,
  lim: { single: number; k: number },
  aBase: number,
  bBase: number,
  accumulate: boolean,
): Plan | null {
  for (const slack of [0, ALIGN - 1]) {
    const blocks = chooseBlocks(M, N, K, transA, transB, t, WINDOW - slack, lim);
    if (!blocks) continue;
    const plan = buildPlan(M, N, K, transA, transB, blocks, lim, aBase, bBase, accumulate);
    if (plan) return plan;
  }
  return null;
}

function buildPlan(
  M: number,
  N: number,
  K: number,
  transA: boolean,
  transB: boolean,
  { Mr, Nr, Kr }: Blocks,
  lim: { single: number; k: number },
  aBase: number,
  bBase: number,
  accumulate: boolean,
): Plan | null {
  const nM = Math.ceil(M / Mr), nN = Math.ceil(N / Nr), nK = Math.ceil(K / Kr);
  const block = (mb: number, nb: number, kb: number): Pair => ({
    mLo: mb * Mr,
    mHi: Math.min(M, (mb + 1) * Mr),
    nLo: nb * Nr,
    nHi: Math.min(N, (nb + 1) * Nr),
    k0: kb * Kr,
    kc: Math.min(K, (kb + 1) * Kr) - kb * Kr,
  });
  // Group blocks into dispatches: a run of row blocks (one column block), a run of column blocks
  // (one row block), or a run of k blocks of one output block.
  const groupsOf: { map: PairMap; pairs: Pair[]; first: boolean; last: boolean }[] = [];
  if (nK > 1) {
    for (let mb = 0; mb < nM; mb++) {
      for (let nb = 0; nb < nN; nb++) {
        for (let k0 = 0; k0 < nK; k0 += lim.k) {
          const ps: Pair[] = [];
          for (let kb = k0; kb < Math.min(nK, k0 + lim.k); kb++) ps.push(block(mb, nb, kb));
          groupsOf.push({ map: "k", pairs: ps, first: k0 === 0, last: k0 + lim.k >= nK });
        }
      }
    }
  } else if (nM === 1 && nN > 1) {
    for (let n0 = 0; n0 < nN; n0 += lim.single) {
      const ps: Pair[] = [];
      for (let nb = n0; nb < Math.min(nN, n0 + lim.single); nb++) ps.push(block(0, nb, 0));
      groupsOf.push({ map: "cols", pairs: ps, first: true, last: true });
    }
  } else {
    for (let nb = 0; nb < nN; nb++) {
      for (let m0 = 0; m0 < nM; m0 += lim.single) {
        const ps: Pair[] = [];
        for (let mb = m0; mb < Math.min(nM, m0 + lim.single); mb++) ps.push(block(mb, nb, 0));
        groupsOf.push({ map: "rows", pairs: ps, first: true, last: true });
      }
    }
  }
  const map = groupsOf[0].map;
  const np = Math.max(...groupsOf.map((g) => g.pairs.length));
  const dispatches: DispatchPlan[] = [];
  for (const g of groupsOf) {
    const aWins: WinRef[] = [], bWins: WinRef[] = [];
    const pairs: DispatchPlan["pairs"] = [];
    const aOff: number[] = [], bOff: number[] = [];
    for (const [w, q] of g.pairs.entries()) {
      const sa = spanA(transA, M, K, q.mLo, q.mHi, q.k0, q.kc);
      const sb = spanB(transB, N, K, q.nLo, q.nHi, q.k0, q.kc);
      const ai = map === "cols" ? 0 : w, bi = map === "rows" ? 0 : w;
      if (!aWins[ai]) aWins[ai] = { start: alignDown(sa.start, aBase), end: sa.end };
      if (!bWins[bi]) bWins[bi] = { start: alignDown(sb.start, bBase), end: sb.end };
      const aw = aWins[ai], bw = bWins[bi];
      aw.end = Math.max(aw.end, sa.end);
      bw.end = Math.max(bw.end, sb.end);
      if (sa.start < aw.start || sb.start < bw.start) return null;
      if (aw.end - aw.start > WINDOW || bw.end - bw.start > WINDOW) return null;
      pairs.push({ ...q, a: ai, b: bi });
      aOff.push(sa.start - aw.start);
      bOff.push(sb.start - bw.start);
    }
    const ps = g.pairs;
    dispatches.push({
      map,
      rowBase: Math.min(...ps.map((q) => q.mLo)),
      rowEnd: Math.max(...ps.map((q) => q.mHi)),
      colBase: Math.min(...ps.map((q) => q.nLo)),
      colEnd: Math.max(...ps.map((q) => q.nHi)),
      loadC: accumulate || !g.first,
      fin: g.last,
      pairs,
      aWins,
      bWins,
      aOff,
      bOff,
    });
  }
  return { np, map, dispatches };
}

/** Per-runtime staging areas (UNIFORM | COPY_DST) the operands' windows are copied into. */
const staging = new WeakMap<Runtime, { a: GPUBuffer; b: GPUBuffer; size: number }>();

function stagingFor(rt: Runtime): { a: GPUBuffer; b: GPUBuffer; size: number } {
  let s = staging.get(rt);
  if (!s) {
    const lim = pairLimits(rt);
    // A dispatch's windows are at most `single` consecutive blocks: their span plus one window.
    const size = (Math.max(lim.single, lim.k) + 1) * WINDOW * 4;
    s = {
      a: rt.createBuffer(size, UNIFORM_USAGE | 0x08, "matmul-staging-a"),
      b: rt.createBuffer(size, UNIFORM_USAGE | 0x08, "matmul-staging-b"),
      size,
    };
    staging.set(rt, s);
  }
  return s;
}

const planCache = new Map<string, Plan | null>();

/** Can `view` be bound as uniform windows in place (UNIFORM usage, room for every window)? */
function directBase(view: BufferView): number | null {
  if (!(view.buffer.usage & UNIFORM_USAGE) || view.offset % 4 !== 0) return null;
  return (view.offset / 4) % ALIGN;
}

const kernelChoice = new WeakMap<Runtime, MatmulKernel>();

function shapeKey(M: number, N: number, K: number, transA: boolean, transB: boolean): string {
  return `${transA ? "T" : "N"}${transB ? "T" : "N"} ${M}x${N}x${K}`;
}

/** Default kernel for every matmul on this runtime (when MatmulOpts.kernel is not given). */
export function setMatmulKernel(rt: Runtime, kernel: MatmulKernel): void {
  kernelChoice.set(rt, kernel);
}

function matmulWindow(
  rt: Runtime,
  A: Tensor,
  B: Tensor,
  C: Tensor,
  M: number,
  N: number,
  K: number,
  o: MatmulOpts,
  batch: number,
  ep: Epilogue,
): boolean {
  const transA = !!o.transA, transB = !!o.transB;
  const key = shapeKey(M, N, K, transA, transB);
  const lim = pairLimits(rt);
  const st = stagingFor(rt);
  const label = `matmul ${key}`;
  // Plan every batch before recording anything, so a product that cannot be tiled falls back whole.
  const jobs: {
    b: number;
    aView: BufferView;
    bView: BufferView;
    da: number | null;
    db: number | null;
    plan: Plan;
    t: WindowTile;
  }[] = [];
  for (let b = 0; b < batch; b++) {
    const aRel = b * M * K, bRel = b * K * N; // this batch's first float in A / B
    const aView = { buffer: A.buffer, offset: A.offset + aRel * 4, byteLength: M * K * 4 };
    const bView = { buffer: B.buffer, offset: B.offset + bRel * 4, byteLength: K * N * 4 };
    const da = directBase(aView), db = directBase(bView);
    let found: { plan: Plan; t: WindowTile } | null = null;
    for (const t of o.windowTile ? [o.windowTile] : windowTiles(N)) {
      const pk = `${key}|${t.tm},${t.tn},${t.wx}|${lim.single},${lim.k}|${da ?? "s"},${db ?? "s"}|${!!o
        .accumulate}`;
      let plan = planCache.get(pk);
      if (plan === undefined) {
        plan = planWindows(M, N, K, transA, transB, t, lim, da ?? 0, db ?? 0, !!o.accumulate);
        planCache.set(pk, plan);
      }
      if (plan) {
        found = { plan, t };
        break;
      }
    }
    if (!found) return false;
    jobs.push({ b, aView, bView, da, db, ...found });
  }
  for (const { b, aView, bView, da, db, plan, t } of jobs) {
    const rowSums = o.rowSums ?? null;
    for (const d of plan.dispatches) {
      // Bias and epilogue apply once the whole K has been summed (the last dispatch of a split K).
      const bias = d.fin ? o.bias ?? null : null;
      const code = windowCode({
        np: plan.np,
        map: plan.map,
        bias: !!bias,
        ep: d.fin ? ep : "none",
        rowSums: !!rowSums,
        loadC: d.loadC,
        tile: t,
      });
      const aBind = bindWindows(rt, aView, d.aWins, da, st.a, st.size);
      const bBind = bindWindows(rt, bView, d.bWins, db, st.b, st.size);
      const params: Param[] = [
        M,
        N,
        transA ? 1 : K,
        transA ? M : 1,
        transB ? 1 : N,
        transB ? K : 1,
        d.rowBase,
        d.colBase,
        f32(o.alpha ?? 1),
        b * M * N,
        0,
        0,
      ];
      for (let w = 0; w < plan.np; w++) {
        const q = d.pairs[w];
        if (q) params.push(q.mLo, q.mHi, q.nLo, q.nHi, q.kc, d.aOff[w], d.bOff[w], 0);
        else params.push(0, 0, 0, 0, 0, 0, 0, 0); // empty block: no tile matches
      }
      // A dispatch with fewer pairs than the kernel's binds its first window in the unused slots.
      const na = plan.map === "cols" ? 1 : plan.np, nb = plan.map === "rows" ? 1 : plan.np;
      const views: Record<string, BufferView> = { C };
      for (let i = 0; i < na; i++) views[`A${i}`] = aBind[i] ?? aBind[0];
      for (let i = 0; i < nb; i++) views[`B${i}`] = bBind[i] ?? bBind[0];
      if (bias) views.bias = bias;
      if (rowSums) views.rs = rowSums;
      rt.dispatch(label, code, views, params, [
        groups(d.colEnd - d.colBase, t.wx * t.tn),
        groups(d.rowEnd - d.rowBase, t.tm),
      ]);
    }
  }
  return true;
}

/**
 * The views to bind for one dispatch's windows: in place when the operand's buffer allows it, else
 * after copying the windows' span into the staging buffer.
 */
function bindWindows(
  rt: Runtime,
  src: BufferView,
  wins: WinRef[],
  direct: number | null,
  stage: GPUBuffer,
  stageSize: number,
): BufferView[] {
  const lo = Math.min(...wins.map((w) => w.start));
  const hi = Math.max(...wins.map((w) => w.end));
  const bytes = WINDOW * 4;
  if (direct !== null && wins.every((w) => src.offset + w.start * 4 + bytes <= src.buffer.size)) {
    return wins.map((w) => ({ buffer: src.buffer, offset: src.offset + w.start * 4, byteLength: bytes }));
  }
  // Staging: copy the used floats [max(lo, 0), hi) so that window starts keep their alignment.
  const from = Math.max(lo, 0);
  if (
    (from - lo) * 4 + (hi - from) * 4 > stageSize ||
    (Math.max(...wins.map((w) => w.start)) - lo) * 4 + bytes > stageSize
  ) {
    throw new Error("matmul: window span exceeds the staging area");
  }
  rt.copy(
    { buffer: src.buffer, offset: src.offset + from * 4, byteLength: (hi - from) * 4 },
    { buffer: stage, offset: (from - lo) * 4, byteLength: (hi - from) * 4 },
  );
  return wins.map((w) => ({ buffer: stage, offset: (w.start - lo) * 4, byteLength: bytes }));
}

// ---------------------------------------------------------------- entry point

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
  if (o.rowSums && (batch !== 1 || o.rowSums.size < M)) {
    throw new Error("matmul: rowSums needs batch 1 and M values");
  }
  if (M === 0 || N === 0 || batch === 0) return;
  const kernel = o.kernel ?? kernelChoice.get(rt) ?? "window";
  if (kernel === "window" && K > 0 && matmulWindow(rt, A, B, C, M, N, K, o, batch, ep)) return;
  matmulStorage(rt, A, B, C, M, N, K, o, batch, ep);
  if (o.rowSums) {
    if (o.transA) sumRows(rt, A, o.rowSums, K, M, !!o.accumulate); // A is [K, M]
    else rowSumsOf(rt, A, o.rowSums, M, K, !!o.accumulate);
  }
}

const SUM_ROWS_WG = 64;
// Y[j] (+)= Σ_i X[j·sOut + i·sIn] for j < n, i < len: one strided reduction serves both axes.
const AXIS_SUM = /* wgsl */ `
struct P { n: u32, len: u32, sOut: u32, sIn: u32, acc: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@compute @workgroup_size(${SUM_ROWS_WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let j = g.x;
  if (j >= p.n) { return; }
  var s = 0.0;
  for (var i = 0u; i < p.len; i++) { s += X[j * p.sOut + i * p.sIn]; }
  if (p.acc != 0u) { s += Y[j]; }
  Y[j] = s;
}`;

/** Y[i] (+)= Σ_k X[i, k] (X is [M, K]). */
function rowSumsOf(rt: Runtime, X: Tensor, Y: Tensor, M: number, K: number, accumulate: boolean): void {
  rt.dispatch("row_sums", AXIS_SUM, { X, Y }, [M, K, K, 1, accumulate ? 1 : 0], [groups(M, SUM_ROWS_WG)]);
}

/** Y[j] (+)= Σ_i X[i, j]: the bias gradient of a Linear layer (X is [M, N]). */
export function sumRows(rt: Runtime, X: Tensor, Y: Tensor, M: number, N: number, accumulate = false): void {
  if (X.size < M * N || Y.size < N) throw new Error("sumRows: operand too small");
  rt.dispatch("sum_rows", AXIS_SUM, { X, Y }, [N, M, 1, N, accumulate ? 1 : 0], [groups(N, SUM_ROWS_WG)]);
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
