// CPU-family attention kernels, shaped for CPU fallback adapters (llvmpipe, lavapipe, SwiftShader):
// see ops/attention.ts for the math and layouts shared with the GPU family.
//
// Every kernel gives one invocation R consecutive rows of one (b,h) (R = attentionRows(hs), up to
// 16), so each k/v/q/dout row it loads serves R rows held in registers; hs and R are baked into
// the generated WGSL. Consecutive invocations are different (b,h) with the same rows, so the SIMD
// lanes of llvmpipe (where every per-lane load is a costly gather and arithmetic is cheap) run the
// same causal trip counts. Nothing is sized by T; hs <= MAX_HS. B*H*ceil(T/R) invocations, 64 per
// workgroup.
// Forward, per R query rows (q in registers), two passes over the keys j <= t:
//   1. online softmax statistics: row max m and l = Σ exp(s − m) -> lse_t = m + log l;
//   2. scores again, P = exp(s − m) / l, out += dropout(P) · v (P is never stored).
// Backward, deterministic and atomic-free, in two kernels, P = exp(s − lse) recomputed per element:
//   query rows t:  D_t = dout_t · out_t -> delta (= Σ_j P_j dP_j), then per key j <= t:
//                  dP_j = (dout_t·v_j)·mask_j, dS_j = P_j (dP_j − D_t), dq_t = scale Σ_j dS_j k_j
//   key rows j:    (k_j, v_j in registers) per query t >= j: P = exp(q_t·k_j scale − lse_t),
//                  dP = (dout_t·v_j)·mask, dS = P (dP − D_t), dk_j = scale Σ_t dS q_t,
//                  dv_j = Σ_t P mask dout_t

import { f32, groups, type Param, type Runtime } from "../runtime.ts";
import {
  type AttnBackwardTensors,
  type AttnForwardTensors,
  type AttnShape,
  BACKWARD_KEYS_BINDINGS,
  BACKWARD_ROWS_BINDINGS,
  FORWARD_BINDINGS,
  KEEP_WGSL,
  keyTensors,
} from "./common.ts";
import { cachedWGSL } from "../wgsl_cache.ts";

const WG = 64;

// Uniforms shared by all three kernels. NG = ceil(T / R): row groups per (b, h). hs, nc (chunks of
// the per-key column loops) and zero (0) repeat baked-in values at run time, as bounds of loops that
// must stay loops: unrolled, they would multiply the code's memory-access sites.
const PARAMS = /* wgsl */ `
struct P { B: u32, T: u32, C: u32, H: u32, NG: u32, stream: u32, p: f32, scale: f32, hs: u32, nc: u32, zero: u32 }
@group(0) @binding(0) var<uniform> prm: P;`;

// Each invocation owns R consecutive rows t0 .. t0+R-1 (queries, or keys in the key kernel) of one
// (b, h); n of them exist (the last group may be short). Consecutive invocations are different
// (b, h) with the same t0.
const ROWS = /* wgsl */ `
  let BH = prm.B * prm.H;
  let gid = g.x;
  if (gid >= BH * prm.NG) { return; }
  let T = prm.T;
  let C = prm.C;
  let bh = gid % BH;
  let t0 = (gid / BH) * R;
  let h = bh % prm.H;
  let b = bh / prm.H;
  let C3 = 3u * C;
  let n = min(R, T - t0);          // rows this invocation owns
  let tEnd = t0 + n;               // exclusive
  let qkvB = b * T * C3 + h * HS;  // q of (b, 0) for head h; + C for k, + 2C for v
  let oB = b * T * C + h * HS;     // out / dout of (b, 0) for head h
  let pBase = bh * T * T;          // (virtual) probs of head (b, h): the dropout mask's index
  let key = drop_key(state[0], state[1], prm.stream);
  let ks = 1.0 / (1.0 - prm.p);`;

function header(hs: number, r: number): string {
  return `${KEEP_WGSL}
const HS: u32 = ${hs}u;
const R: u32 = ${r}u;
${PARAMS}`;
}

// Code generation. Per-row vectors are named scalars (q0_3 = row 0, column 3), never indexable
// arrays, which these drivers would keep in memory. Compile time on llvmpipe grows with the number
// of memory-access sites in the code (each is a per-lane loop, several ms to compile, more the more
// values are live) and with the number of registers, so loops over keys are real loops, the
// one-time row loads/stores loop over columns, and large heads loop over column chunks.
const seq = (n: number) => Array.from({ length: n }, (_, i) => i);
const each = (n: number, f: (i: number) => string, sep = "\n") => seq(n).map(f).join(sep);
/**
 * Row r of the group, clamped: tr{r} = min(t0 + r, T - 1). Rows past the end of a short last group
 * alias row T - 1 and repeat its computation exactly, so their stores write the same values to the
 * same places and no store needs a guard (guarded stores cost compile time).
 */
const rowIdx = (R: number) => each(R, (r) => `  let tr${r} = min(t0 + ${r}u, T - 1u);`);
/**
 * Declare name{r}_{d} for all rows, loaded from buf[base(r) + d]: a loop over chunks of lc columns
 * with lc loads per row, routed to the registers by a switch on the chunk (far cheaper to compile
 * than R·hs load sites; the chunk index is the same in all lanes, so only one case runs). The
 * switch is kept to at most 32 cases (GL's llvmpipe miscompiles a 128-case one).
 */
function loadRows(R: number, hs: number, name: string, buf: string, base: (r: number) => string): string {
  const lc = Math.ceil(hs / 32), nc = Math.ceil(hs / lc);
  const col = (i: number) => (hs % lc === 0 ? `cb + ${i}u` : `min(cb + ${i}u, ${hs - 1}u)`);
  return `${each(R, (r) => each(hs, (d) => `  var ${name}${r}_${d} = 0.0;`))}
  for (var c = 0u; c < ${nc}u + prm.zero; c++) {
    let cb = c * ${lc}u;
${each(R, (r) => each(lc, (i) => `    let x${r}_${i} = ${buf}[${base(r)} + ${col(i)}];`))}
    switch c {
${
    each(nc, (c) =>
      `      case ${c}u: { ${
        each(R, (r) =>
          each(Math.min(lc, hs - c * lc), (i) =>
            `${name}${r}_${c * lc + i} = x${r}_${i};`, " "), " ")
      } }`)
  }
      default: {}
    }
  }`;
}
/**
 * Store expr(name{r}_{d}) to buf[base(r) + d]: a loop over d with one store per row, the value
 * picked by a select chain (compiles faster than a switch here).
 */
function storeRows(
  R: number,
  hs: number,
  name: string,
  buf: string,
  base: (r: number) => string,
  expr = (v: string) => v,
): string {
  return `  for (var d = 0u; d < prm.hs; d++) {
${
    each(R, (r) =>
      `    var y${r} = ${name}${r}_0;
${each(hs - 1, (d) => `    y${r} = select(y${r}, ${name}${r}_${d + 1}, d == ${d + 1}u);`)}
    ${buf}[${base(r)} + d] = ${expr(`y${r}`)};`)
  }
  }`;
}
/**
 * For each column d < hs: load x = buf[base + d] and run body(d, x). Small heads are unrolled
 * (hs load sites); larger ones loop over chunks of dc columns (dc load sites) with a switch on the
 * chunk picking the registers: the chunk index is the same in all lanes, so only one case runs.
 */
function columns(
  hs: number,
  dc: number,
  buf: string,
  base: string,
  body: (d: number, x: string) => string,
): string {
  if (dc >= hs) return each(hs, (d) => `    { let x = ${buf}[${base} + ${d}u]; ${body(d, "x")} }`);
  const col = (i: number) => (hs % dc === 0 ? `cb + ${i}u` : `min(cb + ${i}u, ${hs - 1}u)`);
  return `    for (var c = 0u; c < prm.nc; c++) {
      let cb = c * ${dc}u;
${each(dc, (i) => `      let x${i} = ${buf}[${base} + ${col(i)}];`)}
      switch c {
${
    each(Math.ceil(hs / dc), (c) =>
      `        case ${c}u: {
${each(Math.min(dc, hs - c * dc), (i) => `          ${body(c * dc + i, `x${i}`)}`)}
        }`)
  }
        default: {}
      }
    }`;
}

function forwardWGSL(hs: number, R: number, dc: number): string {
  return /* wgsl */ `${header(hs, R)}
${FORWARD_BINDINGS}

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
${ROWS}
${rowIdx(R)}
${loadRows(R, hs, "q", "qkv", (r) => `qkvB + tr${r} * C3`)}
${each(R, (r) => `  var m${r} = -3.4028234e38;\n  var l${r} = 0.0;`)}
  // (-f32 max: Tint rejects 3.4028235e38 as above the f32 range, naga rounds it.)
  // Pass 1: online row max m and l = Σ exp(s - m) of the scaled scores.
  for (var j = 0u; j < tEnd; j++) {
    let ko = qkvB + j * C3 + C;
${each(R, (r) => `    var s${r} = 0.0;`)}
${columns(hs, dc, "qkv", "ko", (d, x) => each(R, (r) => `s${r} = fma(q${r}_${d}, ${x}, s${r});`, " "))}
${
    each(R, (r) =>
      `    {
      let ok = j <= tr${r};
      let s = s${r} * prm.scale;
      let mn = select(m${r}, max(m${r}, s), ok);
      l${r} = fma(l${r}, exp(m${r} - mn), select(0.0, exp(s - mn), ok));
      m${r} = mn;
    }`)
  }
  }
${each(R, (r) => `  lse[bh * T + tr${r}] = m${r} + log(l${r});`)}
  // Pass 2: scores again, P = exp(s - m) / l, out = dropout(P) · v.
${each(R, (r) => `  let inv${r} = 1.0 / l${r};\n${each(hs, (d) => `  var acc${r}_${d} = 0.0;`)}`)}
  for (var j = 0u; j < tEnd; j++) {
    let ko = qkvB + j * C3 + C;
${each(R, (r) => `    var s${r} = 0.0;`)}
${columns(hs, dc, "qkv", "ko", (d, x) => each(R, (r) => `s${r} = fma(q${r}_${d}, ${x}, s${r});`, " "))}
${
    each(R, (r) =>
      `    var w${r} = 0.0;
    {
      let pj = select(0.0, exp(s${r} * prm.scale - m${r}) * inv${r}, j <= tr${r});
      w${r} = pj * keep(pBase + tr${r} * T + j, key, prm.p, ks);
    }`)
  }
${
    columns(hs, dc, "qkv", "ko + C", (d, x) =>
      each(R, (r) =>
        `acc${r}_${d} = fma(w${r}, ${x}, acc${r}_${d});`, " "))
  }
  }
${storeRows(R, hs, "acc", "out", (r) => `oB + tr${r} * C`)}
}`;
}

function backwardRowsWGSL(hs: number, R: number, dc: number): string {
  return /* wgsl */ `${header(hs, R)}
${BACKWARD_ROWS_BINDINGS}

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
${ROWS}
${rowIdx(R)}
${loadRows(R, hs, "go", "dout", (r) => `oB + tr${r} * C`)}
${loadRows(R, hs, "o", "out", (r) => `oB + tr${r} * C`)}
  // D_t = dout_t · out_t (= Σ_j P_j dP_j, as out_t = Σ_j P_j mask_j v_j) -> delta, for the key kernel.
${
    each(R, (r) =>
      `  var D${r} = 0.0;
${each(hs, (d) => `  D${r} = fma(go${r}_${d}, o${r}_${d}, D${r});`)}
  delta[bh * T + tr${r}] = D${r};
  let L${r} = lse[bh * T + tr${r}];`)
  }
${loadRows(R, hs, "q", "qkv", (r) => `qkvB + tr${r} * C3`)}
  // Per key j: P_j = exp(s_j - lse), dS_j = P_j (dP_j − D_t), dq_t = scale Σ_j dS_j k_j.
${each(R, (r) => each(hs, (d) => `  var dq${r}_${d} = 0.0;`))}
  // k_j stays in registers (kx) between its two uses: a load is a per-lane gather on llvmpipe.
${each(hs, (d) => `  var kx${d} = 0.0;`)}
  for (var j = 0u; j < tEnd; j++) {
    let ko = qkvB + j * C3 + C;
${each(R, (r) => `    var s${r} = 0.0;\n    var dp${r} = 0.0;`)}
${
    columns(hs, dc, "qkv", "ko", (d, x) =>
      `kx${d} = ${x}; ${
        each(R, (r) => `s${r} = fma(q${r}_${d}, ${x}, s${r});`, " ")
      }`)
  }
${columns(hs, dc, "qkv", "ko + C", (d, x) => each(R, (r) => `dp${r} = fma(go${r}_${d}, ${x}, dp${r});`, " "))}
${
    each(R, (r) =>
      `    var ds${r} = 0.0;
    {
      let pj = exp(s${r} * prm.scale - L${r});
      let dp = dp${r} * keep(pBase + tr${r} * T + j, key, prm.p, ks);
      ds${r} = select(0.0, pj * (dp - D${r}), j <= tr${r});
    }`)
  }
${each(hs, (d) => `    ${each(R, (r) => `dq${r}_${d} = fma(ds${r}, kx${d}, dq${r}_${d});`, " ")}`)}
  }
${storeRows(R, hs, "dq", "dqkv", (r) => `qkvB + tr${r} * C3`, (v) => `prm.scale * ${v}`)}
}`;
}

function backwardKeysWGSL(hs: number, R: number, dc: number): string {
  return /* wgsl */ `${header(hs, R)}
${BACKWARD_KEYS_BINDINGS}

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
${ROWS}
${rowIdx(R)}
  // Here the R rows are KEYS j = t0 + r (k_j, v_j in registers); loop over the queries i >= t0.
${loadRows(R, hs, "k", "qkv", (r) => `qkvB + tr${r} * C3 + C`)}
${loadRows(R, hs, "v", "qkv", (r) => `qkvB + tr${r} * C3 + 2u * C`)}
${each(R, (r) => each(hs, (d) => `  var dk${r}_${d} = 0.0;\n  var dv${r}_${d} = 0.0;`))}
  // q_i and dout_i stay in registers (qx, gx) between their two uses.
${each(hs, (d) => `  var qx${d} = 0.0;\n  var gx${d} = 0.0;`)}
  for (var i = t0; i < T; i++) {
    let qo = qkvB + i * C3;
    let oo = oB + i * C;
    let Li = lse[bh * T + i];
    let Di = delta[bh * T + i];
${each(R, (r) => `    var s${r} = 0.0;\n    var dp${r} = 0.0;`)}
${
    columns(hs, dc, "qkv", "qo", (d, x) =>
      `qx${d} = ${x}; ${
        each(R, (r) => `s${r} = fma(${x}, k${r}_${d}, s${r});`, " ")
      }`)
  }
${
    columns(hs, dc, "dout", "oo", (d, x) =>
      `gx${d} = ${x}; ${
        each(R, (r) => `dp${r} = fma(${x}, v${r}_${d}, dp${r});`, " ")
      }`)
  }
${
    each(R, (r) =>
      `    var w${r} = 0.0;
    var ds${r} = 0.0;
    {
      let P = select(0.0, exp(s${r} * prm.scale - Li), tr${r} <= i);
      let mk = keep(pBase + i * T + tr${r}, key, prm.p, ks);
      w${r} = P * mk;
      ds${r} = P * (dp${r} * mk - Di);
    }`)
  }
${each(hs, (d) => `    ${each(R, (r) => `dv${r}_${d} = fma(w${r}, gx${d}, dv${r}_${d});`, " ")}`)}
${each(hs, (d) => `    ${each(R, (r) => `dk${r}_${d} = fma(ds${r}, qx${d}, dk${r}_${d});`, " ")}`)}
  }
${storeRows(R, hs, "dk", "dqkv", (r) => `qkvB + tr${r} * C3 + C`, (v) => `prm.scale * ${v}`)}
${storeRows(R, hs, "dv", "dqkv", (r) => `qkvB + tr${r} * C3 + 2u * C`)}
}`;
}

type Kind = "fwd" | "bwd_rows" | "bwd_keys";
/**
 * Rows per invocation: R·hs <= 256 registers per row set (3 sets, 4 in the key kernel), R <= 16.
 * R = 16 runs about 1.4x faster than R = 8 at hs = 16 on lavapipe; compile time grows faster
 * than R (about 0.5 s per kernel at R = 8, 1.3 s at R = 16, uncached).
 */
export function attentionRows(hs: number): number {
  return Math.max(1, Math.min(16, Math.floor(256 / hs)));
}

/** Columns per unrolled chunk of the per-key loops: hs itself up to 32, else 16. */
function attentionChunk(hs: number): number {
  return hs <= 32 ? hs : 16;
}

function kernel(kind: Kind, hs: number, r: number): string {
  const gen = kind === "fwd" ? forwardWGSL : kind === "bwd_rows" ? backwardRowsWGSL : backwardKeysWGSL;
  return cachedWGSL(`attention/cpu/${kind}/${hs}/${r}`, () => gen(hs, r, attentionChunk(hs)));
}

/** The uniforms and grid of every CPU-family kernel for one launch. */
function launch(s: AttnShape): { params: Param[]; wgs: [number] } {
  const R = attentionRows(s.hs), NG = Math.ceil(s.T / R), nc = Math.ceil(s.hs / attentionChunk(s.hs));
  return {
    params: [s.B, s.T, s.C, s.H, NG, s.stream, f32(s.p), f32(1 / Math.sqrt(s.hs)), s.hs, nc, 0],
    wgs: [groups(s.B * s.H * NG, WG)],
  };
}

/** Forward (see ops/attention.ts attentionForward): 1 dispatch. */
export function forwardCpu(rt: Runtime, t: AttnForwardTensors, s: AttnShape): void {
  const { params, wgs } = launch(s);
  rt.dispatch(
    "attention_fwd",
    kernel("fwd", s.hs, attentionRows(s.hs)),
    { ...t, state: s.state },
    params,
    wgs,
  );
}

/** Backward (see ops/attention.ts attentionBackward): 2 dispatches. */
export function backwardCpu(rt: Runtime, t: AttnBackwardTensors, s: AttnShape): void {
  const { params, wgs } = launch(s), R = attentionRows(s.hs);
  rt.dispatch(
    "attention_bwd_rows",
    kernel("bwd_rows", s.hs, R),
    { ...t, state: s.state },
    params,
    wgs,
  );
  rt.dispatch(
    "attention_bwd_keys",
    kernel("bwd_keys", s.hs, R),
    { ...keyTensors(t), state: s.state },
    params,
    wgs,
  );
}
