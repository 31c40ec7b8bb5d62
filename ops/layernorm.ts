// LayerNorm family (PyTorch semantics over the last axis, biased variance, eps = 1e-5):
//   y = (x - mean) · rstd · w + b,   rstd = 1 / sqrt(var + eps),   x, y [rows, C], w, b [C].
// The forward saves mean and rstd [rows] for the backward:
//   xhat = (x - mean) · rstd,  g = dy · w
//   dx = rstd · (g - mean_C(g) - xhat · mean_C(g · xhat))
//   dw = Σ_rows dy · xhat,  db = Σ_rows dy
//
// On llvmpipe/lavapipe every per-lane load or store is a costly gather/scatter while arithmetic is
// SIMD-cheap, so the kernels minimise memory accesses per element; SIMD lanes are different rows,
// no barriers, no workgroup memory.
// - C <= REG_MAX: kernels generated for the given C. An invocation takes RS rows one after another
//   with the row in registers (x read once; the variance is an exact two-pass over the registers);
//   w, b and the invocation's dw/db sums stay in registers across its rows.
// - larger C: generic kernels; an invocation walks the columns of RR rows together (w/b loads shared),
//   the forward using Welford's one-pass mean/variance, dx reading x and dy twice.
// dw/db: the dx kernel writes each invocation's per-column partial sums to a scratch buffer, and a
// small kernel adds them up per column in a fixed order (deterministic, no atomics).

import { assertNoAlias } from "./elementwise.ts";
import { f32, groups, type Runtime } from "./runtime.ts";
import { Tensor } from "./tensor.ts";

/** LayerNorm epsilon (PyTorch's default). */
export const LN_EPS = 1e-5;
const WG = 32;
/** Rows per invocation of the generic kernels: they walk their columns together. */
const RR = 8;
const RED_WG = 16;

const seq = (n: number) => Array.from({ length: n }, (_, i) => i);
const each = (f: (r: number) => string, sep = "\n") => seq(RR).map(f).join(sep);
/** Rows of the group, clamped to the last row (short last group): row{r}, offset o{r}. */
const ROWS = `
  let r0 = g.x * ${RR}u;
  if (r0 >= p.rows) { return; }
${each((r) => `  let row${r} = min(r0 + ${r}u, p.rows - 1u);\n  let o${r} = row${r} * p.C;`)}`;

const FORWARD = /* wgsl */ `
struct P { rows: u32, C: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> W: array<f32>;
@group(0) @binding(3) var<storage, read> B: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;
@group(0) @binding(5) var<storage, read_write> Mean: array<f32>;
@group(0) @binding(6) var<storage, read_write> Rstd: array<f32>;

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
${ROWS}
  // Welford: mean and the sum of squared deviations in one pass.
${each((r) => `  var m${r} = 0.0;\n  var q${r} = 0.0;`)}
  for (var c = 0u; c < p.C; c++) {
    let inv = 1.0 / f32(c + 1u);
${
  each((r) =>
    `    { let x = X[o${r} + c]; let d = x - m${r}; m${r} = fma(d, inv, m${r}); q${r} = fma(d, x - m${r}, q${r}); }`
  )
}
  }
  let invC = 1.0 / f32(p.C);
${each((r) => `  let rs${r} = inverseSqrt(q${r} * invC + p.eps);`)}
  for (var c = 0u; c < p.C; c++) {
    let w = W[c];
    let b = B[c];
${each((r) => `    Y[o${r} + c] = fma((X[o${r} + c] - m${r}) * rs${r}, w, b);`)}
  }
${each((r) => `  Mean[row${r}] = m${r};\n  Rstd[row${r}] = rs${r};`)}
}`;

// dx for the group's rows, plus the group's partial sums of dw and db per column, written to
// Part[group, 0..C) and Part[group, C..2C); a second kernel adds the groups up in a fixed order.
const BACKWARD_DX = /* wgsl */ `
struct P { rows: u32, C: u32, acc: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> DY: array<f32>;
@group(0) @binding(2) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read> W: array<f32>;
@group(0) @binding(4) var<storage, read> Mean: array<f32>;
@group(0) @binding(5) var<storage, read> Rstd: array<f32>;
@group(0) @binding(6) var<storage, read_write> DX: array<f32>;
@group(0) @binding(7) var<storage, read_write> Part: array<f32>;

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
${ROWS}
${
  each((r) =>
    `  let m${r} = Mean[row${r}];
  let rs${r} = Rstd[row${r}];
  let live${r} = ${r === 0 ? "1.0" : `select(0.0, 1.0, r0 + ${r}u < p.rows)`};
  var sg${r} = 0.0;
  var sgx${r} = 0.0;`
  )
}
  for (var c = 0u; c < p.C; c++) {
    let w = W[c];
${
  each((r) =>
    `    { let gg = DY[o${r} + c] * w; sg${r} += gg; sgx${r} = fma(gg, (X[o${r} + c] - m${r}) * rs${r}, sgx${r}); }`
  )
}
  }
  let invC = 1.0 / f32(p.C);
${each((r) => `  let mg${r} = sg${r} * invC;\n  let mgx${r} = sgx${r} * invC;`)}
  let pw = g.x * 2u * p.C;
  for (var c = 0u; c < p.C; c++) {
    let w = W[c];
    var sw = 0.0;
    var sb = 0.0;
${
  each((r) =>
    `    {
      let dy = DY[o${r} + c];
      let xh = (X[o${r} + c] - m${r}) * rs${r};
      var v = rs${r} * (dy * w - mg${r} - xh * mgx${r});
      if (p.acc != 0u) { v += DX[o${r} + c]; }
      ${r === 0 ? "" : `if (r0 + ${r}u < p.rows) { `}DX[o${r} + c] = v;${r === 0 ? "" : " }"}
      sw = fma(dy * live${r}, xh, sw);
      sb = fma(dy, live${r}, sb);
    }`
  )
}
    Part[pw + c] = sw;
    Part[pw + p.C + c] = sb;
  }
}`;

// dw[c] = Σ_groups Part[group, c], db[c] = Σ_groups Part[group, C + c]: one invocation per output,
// groups in order (deterministic, no atomics).
const BACKWARD_PARAMS = /* wgsl */ `
struct P { G: u32, C: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> Part: array<f32>;
@group(0) @binding(2) var<storage, read_write> DW: array<f32>;
@group(0) @binding(3) var<storage, read_write> DB: array<f32>;

@compute @workgroup_size(${RED_WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let j = g.x;
  let C2 = 2u * p.C;
  if (j >= C2) { return; }
  var s = 0.0;
  for (var k = 0u; k < p.G; k++) { s += Part[k * C2 + j]; }
  if (j < p.C) { DW[j] = s; } else { DB[j - p.C] = s; }
}`;

// Register kernels, generated for one C (C <= REG_MAX): each invocation takes RS consecutive rows
// one after another with the row (x, and dy) in registers, so every element is loaded once; w and
// b are loaded once per invocation, and the dw/db sums of its rows stay in registers too. Rows
// move through loops over chunks of LC columns, a switch on the chunk (the same in all lanes, so
// one case runs) routing values to and from registers: few memory-access sites, which dominate
// compile time on llvmpipe (C = 64: about 0.4 s forward, 0.8 s backward, uncached).
const REG_MAX = 128;
const RS = 8;
const LC = 8;

const cols = (C: number, f: (c: number) => string, sep = "\n") => seq(C).map(f).join(sep);
function regLoad(C: number, loads: [reg: string, buf: string, base: string][]): string {
  const lc = Math.min(C, LC), nc = Math.ceil(C / lc);
  const idx = (i: number) => (C % lc === 0 ? `cb + ${i}u` : `min(cb + ${i}u, ${C - 1}u)`);
  return `  for (var c = 0u; c < ${nc}u + p.zero; c++) {
    let cb = c * ${lc}u;
${
    loads.map(([reg, buf, base]) => cols(lc, (i) => `    let ${reg}_l${i} = ${buf}[${base} + ${idx(i)}];`))
      .join("\n")
  }
    switch c {
${
    cols(nc, (k) =>
      `      case ${k}u: { ${
        loads.map(([reg]) =>
          cols(Math.min(lc, C - k * lc), (i) =>
            `${reg}${k * lc + i} = ${reg}_l${i};`, " ")
        )
          .join(" ")
      } }`)
  }
      default: {}
    }
  }`;
}
function regStore(C: number, buf: string, base: string, val: (c: number) => string, acc = ""): string {
  const lc = Math.min(C, LC), nc = Math.ceil(C / lc);
  const idx = (i: number) => (C % lc === 0 ? `cb + ${i}u` : `min(cb + ${i}u, ${C - 1}u)`);
  return `  for (var c = 0u; c < ${nc}u + p.zero; c++) {
    let cb = c * ${lc}u;
${cols(lc, (i) => `    var t${i} = 0.0;`)}
    switch c {
${
    cols(nc, (k) =>
      `      case ${k}u: { ${cols(lc, (i) => `t${i} = ${val(Math.min(k * lc + i, C - 1))};`, " ")} }`)
  }
      default: {}
    }
${acc ? `    if (${acc}) {\n${cols(lc, (i) => `      t${i} += ${buf}[${base} + ${idx(i)}];`)}\n    }` : ""}
${cols(lc, (i) => `    ${buf}[${base} + ${idx(i)}] = t${i};`)}
  }`;
}
const sum = (C: number, term: (c: number) => string) => cols(C, term, " + ");
/** 1 / C as a WGSL float literal. */
const invC = (C: number) => (1 / C).toPrecision(9);

function forwardReg(C: number): string {
  return /* wgsl */ `
struct P { rows: u32, C: u32, eps: f32, zero: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> W: array<f32>;
@group(0) @binding(3) var<storage, read> B: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;
@group(0) @binding(5) var<storage, read_write> Mean: array<f32>;
@group(0) @binding(6) var<storage, read_write> Rstd: array<f32>;

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let r0 = g.x * ${RS}u;
  if (r0 >= p.rows) { return; }
${cols(C, (c) => `  var w${c} = 0.0;\n  var b${c} = 0.0;\n  var x${c} = 0.0;`)}
${regLoad(C, [["w", "W", "0u"], ["b", "B", "0u"]])}
  for (var k = 0u; k < ${RS}u; k++) {
    let row = r0 + k;
    if (row >= p.rows) { break; }
    let o = row * ${C}u;
${regLoad(C, [["x", "X", "o"]])}
    let m = (${sum(C, (c) => `x${c}`)}) * ${invC(C)};
    var v = 0.0;
${cols(C, (c) => `    { let d = x${c} - m; v = fma(d, d, v); }`)}
    let rs = inverseSqrt(v * ${invC(C)} + p.eps);
${regStore(C, "Y", "o", (c) => `fma((x${c} - m) * rs, w${c}, b${c})`)}
    Mean[row] = m;
    Rstd[row] = rs;
  }
}`;
}

function backwardDxReg(C: number): string {
  return /* wgsl */ `
struct P { rows: u32, C: u32, acc: u32, zero: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> DY: array<f32>;
@group(0) @binding(2) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read> W: array<f32>;
@group(0) @binding(4) var<storage, read> Mean: array<f32>;
@group(0) @binding(5) var<storage, read> Rstd: array<f32>;
@group(0) @binding(6) var<storage, read_write> DX: array<f32>;
@group(0) @binding(7) var<storage, read_write> Part: array<f32>;

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let r0 = g.x * ${RS}u;
  if (r0 >= p.rows) { return; }
${
    cols(C, (c) =>
      `  var w${c} = 0.0;\n  var x${c} = 0.0;\n  var dy${c} = 0.0;\n  var dw${c} = 0.0;\n  var db${c} = 0.0;`)
  }
${regLoad(C, [["w", "W", "0u"]])}
  for (var k = 0u; k < ${RS}u; k++) {
    let row = r0 + k;
    if (row >= p.rows) { break; }
    let o = row * ${C}u;
${regLoad(C, [["x", "X", "o"], ["dy", "DY", "o"]])}
    let m = Mean[row];
    let rs = Rstd[row];
${cols(C, (c) => `    let xh${c} = (x${c} - m) * rs;\n    let g${c} = dy${c} * w${c};`)}
    let mg = (${sum(C, (c) => `g${c}`)}) * ${invC(C)};
    var sgx = 0.0;
${cols(C, (c) => `    sgx = fma(g${c}, xh${c}, sgx);`)}
    let mgx = sgx * ${invC(C)};
${regStore(C, "DX", "o", (c) => `rs * (g${c} - mg - xh${c} * mgx)`, "p.acc != 0u")}
${cols(C, (c) => `    dw${c} = fma(dy${c}, xh${c}, dw${c});\n    db${c} += dy${c};`)}
  }
  let pw = g.x * ${2 * C}u;
${regStore(C, "Part", "pw", (c) => `dw${c}`)}
${regStore(C, "Part", `pw + ${C}u`, (c) => `db${c}`)}
}`;
}

const regCache = new Map<string, string>();
function regKernel(kind: "fwd" | "dx", C: number): string {
  const key = `${kind}/${C}`;
  let code = regCache.get(key);
  if (code === undefined) {
    code = kind === "fwd" ? forwardReg(C) : backwardDxReg(C);
    regCache.set(key, code);
  }
  return code;
}

/** Per-runtime scratch for the dw/db partial sums, grown on demand. */
const scratch = new WeakMap<Runtime, Tensor>();
function partials(rt: Runtime, n: number): Tensor {
  let t = scratch.get(rt);
  if (!t || t.size < n) {
    t = Tensor.empty(rt, [Math.max(n, 1024)], "f32", "layernorm partials");
    scratch.set(rt, t);
  }
  return t;
}

function checkShapes(
  label: string,
  rows: number,
  C: number,
  big: Tensor[],
  perRow: Tensor[],
  w: Tensor,
): void {
  if (!Number.isInteger(rows) || !Number.isInteger(C) || rows < 0 || C < 1) {
    throw new Error(`${label}: bad shape rows=${rows} C=${C}`);
  }
  for (const t of big) {
    if (t.size < rows * C) throw new Error(`${label}: tensor too small for [${rows}, ${C}]`);
  }
  for (const t of perRow) {
    if (t.size < rows) throw new Error(`${label}: mean/rstd too small for ${rows} rows`);
  }
  if (w.size !== C) throw new Error(`${label}: weight has ${w.size} values, want ${C}`);
}

function noAlias(label: string, written: Tensor[], read: Tensor[]): void {
  for (const w of written) assertNoAlias(label, w, read);
}

/** y = LayerNorm(x)·w + b over the last axis; saves mean and rstd [rows] for the backward. */
export function layernormForward(
  rt: Runtime,
  x: Tensor,
  w: Tensor,
  b: Tensor,
  y: Tensor,
  mean: Tensor,
  rstd: Tensor,
  rows: number,
  C: number,
): void {
  checkShapes("layernormForward", rows, C, [x, y], [mean, rstd], w);
  if (b.size !== C) throw new Error(`layernormForward: bias has ${b.size} values, want ${C}`);
  noAlias("layernormForward", [y, mean, rstd], [x, w, b]);
  const views = { X: x, W: w, B: b, Y: y, Mean: mean, Rstd: rstd };
  if (C <= REG_MAX) {
    rt.dispatch("layernorm_fwd", regKernel("fwd", C), views, [rows, C, f32(LN_EPS), 0], [
      groups(Math.ceil(rows / RS), WG),
    ]);
    return;
  }
  rt.dispatch("layernorm_fwd", FORWARD, views, [rows, C, f32(LN_EPS)], [
    groups(Math.ceil(rows / RR), WG),
  ]);
}

/**
 * Backward given dy: overwrites w.grad and b.grad, and dx (or dx += when `accumulateDx`, for
 * residual streams). mean/rstd are the forward's saved statistics.
 */
export function layernormBackward(
  rt: Runtime,
  dy: Tensor,
  x: Tensor,
  w: Tensor,
  bias: Tensor,
  mean: Tensor,
  rstd: Tensor,
  dx: Tensor,
  rows: number,
  C: number,
  accumulateDx = false,
): void {
  checkShapes("layernormBackward", rows, C, [dy, x, dx], [mean, rstd], w);
  const dw = w.grad, db = bias.grad;
  if (!dw || !db) throw new Error("layernormBackward: w and b need .grad tensors");
  if (bias.size !== C || dw.size !== C || db.size !== C) {
    throw new Error(`layernormBackward: w/b grads must be [${C}]`);
  }
  noAlias("layernormBackward", [dx], [dy, x, w, mean, rstd]);
  noAlias("layernormBackward", [dw, db], [dy, x, mean, rstd]);
  const reg = C <= REG_MAX;
  const G = Math.ceil(rows / (reg ? RS : RR)), part = partials(rt, G * 2 * C);
  const views = { DY: dy, X: x, W: w, Mean: mean, Rstd: rstd, DX: dx, Part: part },
    acc = accumulateDx ? 1 : 0;
  if (reg) rt.dispatch("layernorm_bwd_dx", regKernel("dx", C), views, [rows, C, acc, 0], [groups(G, WG)]);
  else rt.dispatch("layernorm_bwd_dx", BACKWARD_DX, views, [rows, C, acc], [groups(G, WG)]);
  rt.dispatch("layernorm_bwd_dwdb", BACKWARD_PARAMS, { Part: part, DW: dw, DB: db }, [G, C], [
    groups(2 * C, RED_WG),
  ]);
}
