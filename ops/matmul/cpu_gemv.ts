// The CPU family's small-M product y = x · Wᵀ (x [M, K] with M <= GEMV_MAX_M, W stored [N, K]): the
// decoder's Linears at one position per sequence, and its LM head.
//
// On llvmpipe a uniform-buffer load is a real gather while a storage load is a per-lane scalar loop
// (see cpu_window.ts), so W is read through 64 KiB uniform windows, each holding as many whole rows
// of W as fit (21 at K = 768), and x through one more window. An invocation owns TN rows of W (j,
// j + 8, ...: the 8 lanes of a workgroup take neighbouring rows) and all M rows of x: per k step it
// gathers TN values of W (vec4s when K and the offsets allow it) and reads M values of x at an
// address every lane shares (a broadcast), for TN·M FMAs. A workgroup covers one window (or G
// workgroups do, for short rows); a dispatch binds up to maxUniformBuffersPerShaderStage - 2
// windows, so GPT-2's head [50257, 768] takes ~240 dispatches instead of the window kernel's
// capped plan or the storage kernel's 16-row tiles (15 of the 16 rows wasted at M = 1).
//
// Epilogues as the window kernel: alpha, the normalisation of x's rows (a LayerNorm without its
// affine: `norm`, see cpu_window.ts's normA, the statistics recomputed per workgroup from the x
// window: shifted by each row's first value), bias, C += (accumulate), activation. Operands whose
// buffers lack UNIFORM usage (or room for a whole window) are copied into a per-runtime staging area
// first.

import type { Epilogue, MatmulProblem } from "../matmul.ts";
import { type BufferView, f32, type Param, type Runtime } from "../runtime.ts";
import { activation, activationLib, matmulLabel, variantCode } from "./common.ts";
import { ALIGN, WINDOW } from "./cpu_plan.ts";

/** The most rows of x (C) the small-M path takes. */
export const GEMV_MAX_M = 4;
const WX = 8;
const MAX_TN = 4;
const UNIFORM_USAGE = 0x40;
const WINDOW_BYTES = WINDOW * 4;

/** What one GEMV variant is specialised for. */
interface GemvSpec {
  /** W windows per dispatch. */
  np: number;
  /** Rows of x. */
  m: number;
  /** Rows of W per invocation. */
  tn: number;
  /** vec4 loads (K and every offset a multiple of 4). */
  vec: boolean;
  bias: boolean;
  ep: Epilogue;
  loadC: boolean;
  norm: boolean;
}

/** The GEMV kernel's WGSL. */
export function gemvWGSL({ np, m, tn, vec, bias, ep, loadC, norm }: GemvSpec): string {
  const Ms = [...Array(m).keys()], Cs = [...Array(tn).keys()];
  const L: string[] = [];
  for (const c of Cs) L.push(`  let r${c} = q.off + (min(jb + ${c * WX}u, q.hi - 1u) - q.lo) * p.K;`);
  for (const r of Ms) L.push(`  let x${r} = p.xOff + ${r}u * p.K;`);
  if (norm) {
    // Statistics of x's rows, shifted by their first value (every lane reads the same addresses).
    for (const r of Ms) {
      L.push(`  let f${r} = X[x${r} >> 2u][x${r} & 3u];`, `  var s1${r} = 0.0;`, `  var s2${r} = 0.0;`);
    }
    L.push(`  for (var k = 0u; k < p.K; k++) {`);
    for (const r of Ms) {
      L.push(`    let ix${r} = x${r} + k;`, `    let d${r} = X[ix${r} >> 2u][ix${r} & 3u] - f${r};`);
      L.push(`    s1${r} += d${r};`, `    s2${r} = fma(d${r}, d${r}, s2${r});`);
    }
    L.push(`  }`);
    for (const r of Ms) {
      L.push(`  let md${r} = s1${r} / f32(p.K);`);
      L.push(`  let rs${r} = inverseSqrt(max(s2${r} / f32(p.K) - md${r} * md${r}, 0.0) + p.eps);`);
    }
  }
  const zero = vec ? "vec4<f32>(0.0)" : "0.0";
  for (const r of Ms) for (const c of Cs) L.push(`  var a${r}_${c} = ${zero};`);
  for (let w = 0; w < np; w++) {
    L.push(`  if (win == ${w}u) {`);
    if (vec) {
      L.push(`    for (var k = 0u; k < p.K / 4u; k++) {`);
      for (const r of Ms) {
        L.push(`      let v${r} = X[(x${r} >> 2u) + k]${norm ? ` - vec4<f32>(f${r})` : ""};`);
      }
      for (const c of Cs) L.push(`      let w${c} = W${w}[(r${c} >> 2u) + k];`);
    } else {
      L.push(`    for (var k = 0u; k < p.K; k++) {`);
      for (const r of Ms) {
        L.push(`      let ix${r} = x${r} + k;`);
        L.push(`      let v${r} = X[ix${r} >> 2u][ix${r} & 3u]${norm ? ` - f${r}` : ""};`);
      }
      for (const c of Cs) {
        L.push(`      let iw${c} = r${c} + k;`, `      let w${c} = W${w}[iw${c} >> 2u][iw${c} & 3u];`);
      }
    }
    for (const r of Ms) for (const c of Cs) L.push(`      a${r}_${c} = fma(v${r}, w${c}, a${r}_${c});`);
    L.push(`    }`, `  }`);
  }
  // One store per (row of x, row of W) the invocation owns; lanes past the window's rows store nothing.
  for (const c of Cs) {
    L.push(`  {`, `    let j = jb + ${c * WX}u;`, `    if (j < q.hi) {`);
    if (bias) L.push(`      let bj = bias[j];`);
    if (norm) L.push(`      let cj = cs[j];`);
    for (const r of Ms) {
      const s = vec ? `dot(a${r}_${c}, vec4<f32>(1.0))` : `a${r}_${c}`;
      const scaled = norm ? `(${s} - md${r} * cj) * rs${r}` : s;
      L.push(`      {`, `        let o = p.cOff + ${r}u * p.N + j;`);
      L.push(`        var v = p.alpha * ${scaled}${loadC ? " + C[o]" : ""}${bias ? " + bj" : ""};`);
      if (ep !== "none") L.push(`        v = ${activation(ep)};`);
      L.push(`        C[o] = v;`, `      }`);
    }
    L.push(`    }`, `  }`);
  }
  const decl: string[] = [];
  for (let w = 0; w < np; w++) decl.push(`@group(0) @binding(${2 + w}) var<uniform> W${w}: Win;`);
  let slot = 2 + np;
  decl.push(`@group(0) @binding(${slot++}) var<storage, read_write> C: array<f32>;`);
  if (bias) decl.push(`@group(0) @binding(${slot++}) var<storage, read> bias: array<f32>;`);
  if (norm) decl.push(`@group(0) @binding(${slot++}) var<storage, read> cs: array<f32>;`);
  return /* wgsl */ `
struct Rows { lo: u32, hi: u32, off: u32, pad: u32 }
struct P {
  N: u32, K: u32, xOff: u32, cOff: u32, alpha: f32, eps: f32, G: u32, pad: u32,
  wins: array<Rows, ${np}>,
}
alias Win = array<vec4<f32>, ${WINDOW / 4}>;
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<uniform> X: Win;
${decl.join("\n")}

${activationLib(ep)}
@compute @workgroup_size(${WX}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let win = wg.x / p.G;
  let q = p.wins[win];
  let jb = q.lo + (wg.x % p.G) * ${WX * tn}u + lid.x;
${L.join("\n")}
}`;
}

/** Whether the small-M path takes `p` (see the top of this file). */
export function gemvApplies(p: MatmulProblem): boolean {
  return p.M <= GEMV_MAX_M && p.batch === 1 && !p.transA && p.transB && !p.rowSums &&
    p.M * p.K + ALIGN <= WINDOW && p.K > 0;
}

/** A window of W: rows [lo, hi), its first float relative to W's (may be negative: aligned down). */
interface RowWindow {
  lo: number;
  hi: number;
  start: number;
}

const plans = new Map<string, RowWindow[]>();

/** W's rows in windows of whole rows; `base`: W's float offset modulo ALIGN where they are bound. */
function rowWindows(N: number, K: number, base: number): RowWindow[] {
  const key = `${N}x${K}|${base}`;
  let out = plans.get(key);
  if (!out) {
    out = [];
    for (let lo = 0; lo < N;) {
      const start = Math.floor((base + lo * K) / ALIGN) * ALIGN - base;
      const hi = Math.min(N, Math.floor((start + WINDOW) / K));
      out.push({ lo, hi, start });
      lo = hi;
    }
    plans.set(key, out);
  }
  return out;
}

const staging = new WeakMap<Runtime, { x: GPUBuffer; w: GPUBuffer }>();
function stagingFor(rt: Runtime, np: number): { x: GPUBuffer; w: GPUBuffer } {
  let s = staging.get(rt);
  if (!s) {
    const usage = UNIFORM_USAGE | 0x08 | 0x04; // COPY_DST, COPY_SRC (a captured dispatch copies what it binds)
    s = {
      x: rt.createBuffer(WINDOW_BYTES, usage, "gemv-staging-x"),
      w: rt.createBuffer((np + 1) * WINDOW_BYTES, usage, "gemv-staging-w"),
    };
    staging.set(rt, s);
  }
  return s;
}

/** The float offset modulo ALIGN of `v` when it can be bound as uniform windows in place, else null. */
function directBase(v: BufferView): number | null {
  return v.buffer.usage & UNIFORM_USAGE && v.offset % 4 === 0 ? (v.offset / 4) % ALIGN : null;
}

/** Does a window starting `start` floats after the view's start fit in its buffer? */
const fits = (v: BufferView, start: number) => v.offset + start * 4 + WINDOW_BYTES <= v.buffer.size;

/**
 * Record `p` through the GEMV kernel; false (nothing recorded) when it does not apply
 * (gemvApplies).
 */
export function matmulGemv(rt: Runtime, p: MatmulProblem): boolean {
  if (!gemvApplies(p)) return false;
  const { M, N, K } = p;
  const np = rt.device.limits.maxUniformBuffersPerShaderStage - 2;
  if (np < 1) return false;
  const st = stagingFor(rt, np);
  // x: its window in place, or a copy at the staging area's start.
  const xv: BufferView = p.A;
  const xb = directBase(xv);
  let xBind: BufferView, xOff: number;
  if (xb !== null && fits(xv, -xb)) {
    xBind = { buffer: xv.buffer, offset: xv.offset - xb * 4, byteLength: WINDOW_BYTES };
    xOff = xb;
  } else {
    rt.copy(
      { buffer: xv.buffer, offset: xv.offset, byteLength: M * K * 4 },
      { buffer: st.x, offset: 0, byteLength: M * K * 4 },
    );
    xBind = { buffer: st.x, offset: 0, byteLength: WINDOW_BYTES };
    xOff = 0;
  }
  // W: windows in place when every one fits its buffer, else each dispatch's span staged.
  const wv: BufferView = p.B;
  const wb = directBase(wv);
  const direct = wb !== null && rowWindows(N, K, wb).every((w) => fits(wv, w.start));
  const wins = rowWindows(N, K, direct ? wb! : 0);
  const maxRows = wins.reduce((m, w) => Math.max(m, w.hi - w.lo), 0);
  const tn = Math.min(MAX_TN, Math.ceil(maxRows / WX));
  const G = Math.ceil(maxRows / (WX * tn));
  const vec = K % 4 === 0 && xOff % 4 === 0 && wins.every((w) => (w.lo * K - w.start) % 4 === 0);
  const code = variantCode("gemv", {
    np,
    m: M,
    tn,
    vec,
    bias: !!p.bias,
    ep: p.epilogue,
    loadC: p.accumulate,
    norm: !!p.norm,
  }, gemvWGSL);
  const label = matmulLabel(p);
  for (let d0 = 0; d0 < wins.length; d0 += np) {
    const ws = wins.slice(d0, d0 + np);
    let binds: BufferView[];
    if (direct) {
      binds = ws.map((w) => ({
        buffer: wv.buffer,
        offset: wv.offset + w.start * 4,
        byteLength: WINDOW_BYTES,
      }));
    } else {
      // Staged: the rows of these windows, copied so that each window keeps its alignment.
      const from = ws[0].start, to = ws[ws.length - 1].hi * K;
      rt.copy(
        { buffer: wv.buffer, offset: wv.offset + from * 4, byteLength: (to - from) * 4 },
        { buffer: st.w, offset: 0, byteLength: (to - from) * 4 },
      );
      binds = ws.map((w) => ({ buffer: st.w, offset: (w.start - from) * 4, byteLength: WINDOW_BYTES }));
    }
    const params: Param[] = [N, K, xOff, 0, f32(p.alpha), f32(p.norm?.eps ?? 0), G, 0];
    for (let w = 0; w < np; w++) {
      const q = ws[w] ?? ws[0];
      params.push(q.lo, q.hi, q.lo * K - q.start, 0);
    }
    const views: Record<string, BufferView> = { X: xBind, C: p.C };
    for (let w = 0; w < np; w++) views[`W${w}`] = binds[w] ?? binds[0];
    if (p.bias) views.bias = p.bias;
    if (p.norm) views.cs = p.norm.colSums;
    rt.dispatch(label, code, views, params, [ws.length * G]);
  }
  return true;
}

/** Dispatches matmulGemv records for an N x K weight bound from the staging area (the tests' check). */
export function gemvDispatches(rt: Runtime, N: number, K: number): number {
  return Math.ceil(rowWindows(N, K, 0).length / (rt.device.limits.maxUniformBuffersPerShaderStage - 2));
}
