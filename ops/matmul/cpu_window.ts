// The CPU family's default matmul: operands read through 64 KiB uniform-buffer windows.
//
// On Mesa's llvmpipe/lavapipe (the software adapters this project runs on without a GPU) every
// storage-buffer or workgroup-memory access compiles to a scalar loop over the SIMD lanes with a
// bounds check and a branch per lane (~7 ns per lane and value on 2 cores), while a uniform-buffer
// access is a plain gather (~0.4 ns). So the operands are read through uniform buffers: each dispatch
// binds up to maxUniformBuffersPerShaderStage - 1 windows of 64 KiB of A and B, and the planner
// (cpu_plan.ts) tiles the problem so that every block of rows/columns/k it hands a workgroup lies in
// one window. Operands are copied (copyBufferToBuffer, memcpy speed) into a small per-runtime staging
// area right before each dispatch, unless their buffer already has UNIFORM usage, in which case the
// windows are bound in place. Long K (weight gradients, K = tokens) is split over several windows
// inside one dispatch (accumulated in registers) and, past that, over dispatches that accumulate into
// C. Each invocation owns a TM x TN register tile; the TN columns are interleaved across the WX lanes
// of a workgroup so lanes read neighbouring addresses. Only C (and bias, rowSums) remain storage
// accesses: one per output element. (8 invocations per workgroup: a CPU-family kernel, where one
// workgroup is one SIMD batch of llvmpipe.)
//
// Steady state allocates nothing: the staging buffers are created once per runtime and bind groups /
// uniform parameter buffers are cached by the runtime (window offsets repeat from step to step).

import type { Epilogue, MatmulProblem } from "../matmul.ts";
import { type BufferView, f32, groups, type Param, type Runtime } from "../runtime.ts";
import { activation, activationLib, matmulLabel, variantCode } from "./common.ts";
import {
  ALIGN,
  type DispatchPlan,
  type PairLimits,
  pairLimits,
  type PairMap,
  type Plan,
  WINDOW,
  windowPlan,
  type WindowTile,
  type WinRef,
} from "./cpu_plan.ts";

const UNIFORM_USAGE = 0x40;

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
  /**
   * Normalise A's rows: op(A)[i, k] -> (A[i, k] - mean_i) * rstd_i over the row's K values (biased
   * variance, + eps), a LayerNorm without its affine (which the caller folds into B and the bias).
   * One pass: the product runs on d = A[i, k] - A[i, 0] (the row's first value: shifted sums, so
   * neither the variance nor the product cancels when |mean| >> std), which also sums d and d² for
   * the statistics; the epilogue takes mean(d) · cs[j] off (cs = B's column sums Σ_k B[k, j], a
   * binding) and scales by rstd. Needs every block to hold the whole K (no split) and A stored [M, K].
   */
  normA: boolean;
}

/**
 * The window kernel: `np` pairs of (A window, B window); a workgroup accumulates over every pair whose
 * [mLo, mHi) x [nLo, nHi) block contains its tile, reading kc steps of k from the pair's windows.
 */
export function windowWGSL({ np, map, bias, ep, rowSums, loadC, tile, normA }: WindowKernelSpec): string {
  const { tm, tn, wx } = tile;
  const na = map === "cols" ? 1 : np, nb = map === "rows" ? 1 : np;
  const R = [...Array(tm).keys()], Cs = [...Array(tn).keys()];
  const L: string[] = [];
  for (const r of R) for (const c of Cs) L.push(`  var c${r}_${c} = 0.0;`);
  if (rowSums) { for (const r of R) L.push(`  var s${r} = 0.0;`); }
  if (normA) { for (const r of R) L.push(`  var md${r} = 0.0;`, `  var rs${r} = 1.0;`); }
  for (let w = 0; w < np; w++) {
    const aw = `A${map === "cols" ? 0 : w}`, bw = `B${map === "rows" ? 0 : w}`;
    L.push(`  {`);
    L.push(`    let q = p.pairs[${w}];`);
    L.push(`    if (row0 >= q.mLo && row0 < q.mHi && col0 >= q.nLo && col0 < q.nHi) {`);
    for (const r of R) L.push(`      let a${r} = q.aOff + (min(row0 + ${r}u, q.mHi - 1u) - q.mLo) * p.sAi;`);
    for (const c of Cs) {
      L.push(`      let b${c} = q.bOff + (min(colL + ${c * wx}u, q.nHi - 1u) - q.nLo) * p.sBj;`);
    }
    if (normA) {
      for (const r of R) {
        L.push(
          `      let x0${r} = ${aw}[a${r} >> 2u][a${r} & 3u];`,
          `      var s1${r} = 0.0;`,
          `      var s2${r} = 0.0;`,
        );
      }
    }
    L.push(`      for (var k = 0u; k < q.kc; k++) {`);
    L.push(`        let ka = k * p.sAk;`, `        let kb = k * p.sBk;`);
    for (const r of R) {
      L.push(
        `        let ia${r} = a${r} + ka;`,
        `        let va${r} = ${aw}[ia${r} >> 2u][ia${r} & 3u]${normA ? ` - x0${r}` : ""};`,
      );
      if (rowSums) L.push(`        s${r} += va${r};`);
      if (normA) L.push(`        s1${r} += va${r};`, `        s2${r} = fma(va${r}, va${r}, s2${r});`);
    }
    for (const c of Cs) {
      L.push(`        let ib${c} = b${c} + kb;`, `        let vb${c} = ${bw}[ib${c} >> 2u][ib${c} & 3u];`);
    }
    for (const r of R) for (const c of Cs) L.push(`        c${r}_${c} = fma(va${r}, vb${c}, c${r}_${c});`);
    L.push(`      }`);
    if (normA) {
      for (const r of R) {
        L.push(`      md${r} = s1${r} / f32(q.kc);`);
        L.push(`      rs${r} = inverseSqrt(max(s2${r} / f32(q.kc) - md${r} * md${r}, 0.0) + p.eps);`);
      }
    }
    L.push(`    }`, `  }`);
  }
  // The store runs as a loop over a private copy of the accumulators (a `var`: dynamically indexing a
  // `let` array copies it per access): unrolled, its TM x TN storage accesses (each a per-lane scalar
  // loop on llvmpipe) took 4x longer to compile and ran slower. Whether C is read and the bias added
  // is decided at compile time: a storage access under a false uniform condition still costs its loop.
  L.push(`  var acc = array<f32, ${tm * tn}>(${R.flatMap((r) => Cs.map((c) => `c${r}_${c}`)).join(", ")});`);
  if (normA) {
    L.push(`  var rsd = array<f32, ${tm}>(${R.map((r) => `rs${r}`).join(", ")});`);
    L.push(`  var mdv = array<f32, ${tm}>(${R.map((r) => `md${r}`).join(", ")});`);
    const js = Cs.map((c) => `cs[min(colL + ${c * wx}u, p.N - 1u)]`);
    L.push(`  var csj = array<f32, ${tn}>(${js.join(", ")});`);
  }
  if (bias) {
    const js = Cs.map((c) => `bias[min(colL + ${c * wx}u, p.N - 1u)]`);
    L.push(`  var bj = array<f32, ${tn}>(${js.join(", ")});`);
  }
  L.push(`  for (var e = 0u; e < ${tm * tn}u; e++) {`);
  L.push(`    let i = row0 + e / ${tn}u;`, `    let j = colL + (e % ${tn}u) * ${wx}u;`);
  L.push(`    if (i < p.M && j < p.N) {`);
  L.push(`      let o = p.cOff + i * p.N + j;`);
  const scaled = normA ? `(acc[e] - mdv[e / ${tn}u] * csj[e % ${tn}u]) * rsd[e / ${tn}u]` : "acc[e]";
  L.push(`      var v = p.alpha * ${scaled}${loadC ? " + C[o]" : ""}${bias ? ` + bj[e % ${tn}u]` : ""};`);
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
  if (normA) decl.push(`@group(0) @binding(${slot++}) var<storage, read> cs: array<f32>;`);
  return /* wgsl */ `
struct Pair { mLo: u32, mHi: u32, nLo: u32, nHi: u32, kc: u32, aOff: u32, bOff: u32, pad: u32 }
struct P {
  M: u32, N: u32, sAi: u32, sAk: u32, sBk: u32, sBj: u32, rowBase: u32, colBase: u32,
  alpha: f32, cOff: u32, eps: f32, pad1: u32,
  pairs: array<Pair, ${np}>,
}
alias Win = array<vec4<f32>, ${WINDOW / 4}>;
@group(0) @binding(0) var<uniform> p: P;
${decl.join("\n")}

${activationLib(ep)}
@compute @workgroup_size(${wx}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let row0 = p.rowBase + wg.y * ${tm}u;
  let col0 = p.colBase + wg.x * ${wx * tn}u;
  let colL = col0 + lid.x;
${L.join("\n")}
}`;
}

/**
 * Per-runtime staging areas (UNIFORM | COPY_DST) the operands' windows are copied into; also COPY_SRC,
 * so that a captured dispatch (Runtime.startCapture, the race check) can copy what it binds.
 */
const staging = new WeakMap<Runtime, { a: GPUBuffer; b: GPUBuffer; size: number }>();

function stagingFor(rt: Runtime, lim: PairLimits): { a: GPUBuffer; b: GPUBuffer; size: number } {
  let s = staging.get(rt);
  if (!s) {
    const size = stagingSize(lim);
    s = {
      a: rt.createBuffer(size, UNIFORM_USAGE | 0x08 | 0x04, "matmul-staging-a"),
      b: rt.createBuffer(size, UNIFORM_USAGE | 0x08 | 0x04, "matmul-staging-b"),
      size,
    };
    staging.set(rt, s);
  }
  return s;
}

/** Bytes of a staging area: a dispatch's windows are at most `single` consecutive blocks, their span plus one window. */
function stagingSize(lim: PairLimits): number {
  return (Math.max(lim.single, lim.k) + 1) * WINDOW * 4;
}

/** Can bindWindows bind `wins` of `src` (in place, or staged within `stageSize` bytes)? */
function windowsBindable(src: BufferView, wins: WinRef[], direct: number | null, stageSize: number): boolean {
  const bytes = WINDOW * 4;
  if (direct !== null && wins.every((w) => src.offset + w.start * 4 + bytes <= src.buffer.size)) return true;
  const lo = Math.min(...wins.map((w) => w.start)), hi = Math.max(...wins.map((w) => w.end));
  const from = Math.max(lo, 0);
  return (from - lo) * 4 + (hi - from) * 4 <= stageSize &&
    (Math.max(...wins.map((w) => w.start)) - lo) * 4 + bytes <= stageSize;
}

/** Can `view` be bound as uniform windows in place (UNIFORM usage)? Its float offset modulo ALIGN. */
function directBase(view: BufferView): number | null {
  if (!(view.buffer.usage & UNIFORM_USAGE) || view.offset % 4 !== 0) return null;
  return (view.offset / 4) % ALIGN;
}

/**
 * Record the product through the window kernel; false (nothing recorded) when some batch entry has
 * no plan or the plans need more than `maxDispatches` dispatches in all.
 */
export function matmulWindow(rt: Runtime, p: MatmulProblem, maxDispatches = Infinity): boolean {
  const { A, B, M, N, K, transA, transB } = p;
  if (K === 0) return false;
  const lim = pairLimits(rt.device.limits.maxUniformBuffersPerShaderStage);
  // Plan every batch before recording anything, so a product that cannot be tiled falls back whole.
  const jobs: {
    b: number;
    aView: BufferView;
    bView: BufferView;
    da: number | null;
    db: number | null;
    plan: Plan;
    tile: WindowTile;
  }[] = [];
  let total = 0;
  for (let b = 0; b < p.batch; b++) {
    const aRel = b * M * K, bRel = b * K * N; // this batch's first float in A / B
    const aView = { buffer: A.buffer, offset: A.offset + aRel * 4, byteLength: M * K * 4 };
    const bView = { buffer: B.buffer, offset: B.offset + bRel * 4, byteLength: K * N * 4 };
    const da = directBase(aView), db = directBase(bView);
    const found = windowPlan(M, N, K, transA, transB, lim, da ?? 0, db ?? 0, p.accumulate);
    if (!found) return false;
    // Normalised rows need each block to see all of K at once.
    if (p.norm && found.plan.dispatches.some((d) => d.pairs.some((q) => q && q.kc !== K))) {
      return false;
    }
    total += found.plan.dispatches.length;
    if (total > maxDispatches) return false;
    // A staged operand's windows must fit the staging area (a strided K block over a long M may not).
    const size = stagingSize(lim);
    const bindable = (d: DispatchPlan) =>
      windowsBindable(aView, d.aWins, da, size) && windowsBindable(bView, d.bWins, db, size);
    if (!found.plan.dispatches.every(bindable)) return false;
    jobs.push({ b, aView, bView, da, db, ...found });
  }
  const st = stagingFor(rt, lim);
  const label = matmulLabel(p);
  for (const { b, aView, bView, da, db, plan, tile } of jobs) {
    const rowSums = p.rowSums;
    for (const d of plan.dispatches) {
      // Bias and epilogue apply once the whole K has been summed (the last dispatch of a split K).
      const bias = d.fin ? p.bias : null;
      const code = variantCode("window", {
        np: plan.np,
        map: plan.map,
        bias: !!bias,
        ep: d.fin ? p.epilogue : "none",
        rowSums: !!rowSums,
        loadC: d.loadC,
        tile,
        normA: !!p.norm,
      }, windowWGSL);
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
        f32(p.alpha),
        b * M * N,
        f32(p.norm?.eps ?? 0),
        0,
      ];
      for (let w = 0; w < plan.np; w++) {
        const q = d.pairs[w];
        if (q) params.push(q.mLo, q.mHi, q.nLo, q.nHi, q.kc, d.aOff[w], d.bOff[w], 0);
        else params.push(0, 0, 0, 0, 0, 0, 0, 0); // empty block: no tile matches
      }
      // A dispatch with fewer pairs than the kernel's binds its first window in the unused slots.
      const na = plan.map === "cols" ? 1 : plan.np, nb = plan.map === "rows" ? 1 : plan.np;
      const views: Record<string, BufferView> = { C: p.C };
      for (let i = 0; i < na; i++) views[`A${i}`] = aBind[i] ?? aBind[0];
      for (let i = 0; i < nb; i++) views[`B${i}`] = bBind[i] ?? bBind[0];
      if (bias) views.bias = bias;
      if (rowSums) views.rs = rowSums;
      if (p.norm) views.cs = p.norm.colSums;
      rt.dispatch(label, code, views, params, [
        groups(d.colEnd - d.colBase, tile.wx * tile.tn),
        groups(d.rowEnd - d.rowBase, tile.tm),
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
  // matmulWindow checked windowsBindable before recording anything.
  if (!windowsBindable(src, wins, direct, stageSize)) {
    throw new Error("matmul: window span exceeds the staging area");
  }
  rt.copy(
    { buffer: src.buffer, offset: src.offset + from * 4, byteLength: (hi - from) * 4 },
    { buffer: stage, offset: (from - lo) * 4, byteLength: (hi - from) * 4 },
  );
  return wins.map((w) => ({ buffer: stage, offset: (w.start - lo) * 4, byteLength: bytes }));
}
