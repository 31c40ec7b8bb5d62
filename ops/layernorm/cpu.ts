// LayerNorm, CPU family: kernels shaped for llvmpipe/lavapipe (the semantics and the formulas are
// in ../layernorm.ts). Every per-lane load or store is a costly gather/scatter there while arithmetic
// is SIMD-cheap, so the kernels minimise memory accesses per element; SIMD lanes are different rows,
// no barriers, no workgroup memory.
// - C <= REG_MAX: kernels generated for the given C. An invocation takes RS rows one after another
//   with the row in registers (x read once; the variance is an exact two-pass over the registers);
//   w, b and the invocation's dw/db sums stay in registers across its rows.
// - larger C: generic kernels; an invocation walks the columns of RR rows together (w/b loads shared),
//   the forward using Welford's one-pass mean/variance, dx reading x and dy twice.
// dw/db: the dx kernel writes each invocation's per-column partial sums to a scratch buffer, and
// ./partials.ts adds them up per column in a fixed order (deterministic, no atomics).

import { f32, groups, type Runtime } from "../runtime.ts";
import type { Tensor } from "../tensor.ts";
import {
  BACKWARD_BINDINGS,
  FORWARD_BINDINGS,
  type LayernormBackwardViews,
  type LayernormForwardViews,
  LN_EPS,
  partials,
  sumPartials,
} from "./partials.ts";
import { cachedWGSL } from "../wgsl_cache.ts";

const WG = 32;
/** Rows per invocation of the generic kernels: they walk their columns together. */
const RR = 8;
/** Invocations per workgroup of the dw/db column sums (few columns: more, smaller workgroups). */
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
${FORWARD_BINDINGS}

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
${BACKWARD_BINDINGS}

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
${FORWARD_BINDINGS}

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
${BACKWARD_BINDINGS}

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

function regKernel(kind: "fwd" | "dx", C: number): string {
  return cachedWGSL(`layernorm/cpu/${kind}/${C}`, () => kind === "fwd" ? forwardReg(C) : backwardDxReg(C));
}

/** The CPU family's forward: y, mean, rstd of `rows` rows of C. */
export function layernormForwardCpu(
  rt: Runtime,
  views: LayernormForwardViews,
  rows: number,
  C: number,
): void {
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

/** The CPU family's backward: dx (+= when acc), then dw, db from the per-invocation partial sums. */
export function layernormBackwardCpu(
  rt: Runtime,
  views: LayernormBackwardViews,
  dw: Tensor,
  db: Tensor,
  rows: number,
  C: number,
  acc: boolean,
): void {
  const reg = C <= REG_MAX;
  const G = Math.ceil(rows / (reg ? RS : RR)), part = partials(rt, G * 2 * C);
  const v = { ...views, Part: part }, a = acc ? 1 : 0;
  if (reg) rt.dispatch("layernorm_bwd_dx", regKernel("dx", C), v, [rows, C, a, 0], [groups(G, WG)]);
  else rt.dispatch("layernorm_bwd_dx", BACKWARD_DX, v, [rows, C, a], [groups(G, WG)]);
  sumPartials(rt, part, dw, db, G, C, RED_WG);
}
