// The GPU family's matmul: C[b] = alpha · op(A[b]) · op(B[b]) (+ bias) (+ C), epilogue, tiled through
// workgroup memory, one dispatch per product (batch in z), or two with split-K. One generator makes
// every variant of ops/matmul/variants.ts; the tuner (ops/matmul/tune.ts) picks one per shape class.
//
// A workgroup of (bn/rn) x (bm/rm) invocations computes a bm x bn tile of C. K is walked in steps of
// bk: the workgroup stages the bm x bk slice of op(A) and the bk x bn slice of op(B) in workgroup
// memory, then each invocation accumulates its rm x rn register micro-tile from vec4 reads, four k
// steps per read of a k-major tile. Invocation (lx, ly) owns the rows 4·(ly + i·wy) + r (vec4 groups
// strided by the workgroup's height) and the columns 4·(lx + q·wx) + c, or lx + wx·j where B is
// staged k-major: neighbouring invocations read neighbouring vec4 of workgroup memory and store
// neighbouring floats of C. Every output sums its k products in ascending k in one fma chain, so
// every variant without split-K rounds exactly as today's kernel does.
//
// Staging. Today's kernel (`v4` false, 64 x 64, bk 8, 4 x 4 only) stages both operands x-major with
// part of the workgroup: 32 invocations each load a 4 x 4 block of a k-major operand and store its
// transpose, or 128 invocations one vec4 (or 4 floats) along x. A `v4` variant stages each operand in
// its own layout (k-major for A [M, K] and B [N, K], x-major for A [K, M] and B [K, N]): every
// invocation copies whole vec4s, consecutive invocations consecutive addresses (coalesced loads, no
// transposes). Operands whose contiguous dimension is not a multiple of 4 are read as 4 floats per
// vec4. Loads past M, N or the chunk's K read nothing and stage zeros (indices are clamped as well);
// stores are masked. Workgroup memory is written as whole vec4s only (a component store is a
// read-modify-write of the vector, a race between invocations on some backends).
//
// Double buffering (`db`): two K-tile buffers; each step loads the next tile into registers, computes
// from the current one, stores the registers into the other buffer and meets ONE barrier. A buffer is
// written only in the step after the barrier that ended the reads of it. Barriers sit in loops whose
// bounds are uniform (parameters and workgroup_id only).
//
// Split-K (`split` > 1): z runs over batch x split; chunk s of K, [s·kc, (s+1)·kc) with kc a multiple
// of bk, is summed into a scratch layer (ops/matmul/split.ts), and a second dispatch adds the layers
// in a fixed order (deterministic, no atomics) and applies alpha, C, the bias and the epilogue.
//
// The bias gradient of a Linear (`rowSums`, Σ_k op(A)[i, k]) is reduced inside the same kernel: every
// invocation sums the op(A) values it already reads, and the invocations of the first column of tiles
// (lx == 0 of workgroup x 0) store them (split-K: one partial row sum per chunk). No extra dispatch.
//
// The staged tiles are vec4 arrays: naga's GLSL backend zero-initialises workgroup memory with one
// array constructor per variable, which Mesa compiles in time growing with its element count (two
// 1040-float arrays took minutes per pipeline on llvmpipe GL; 2 x 136 vec4 take seconds).

import type { MatmulProblem } from "../matmul.ts";
import { f32, groups, type Runtime } from "../runtime.ts";
import { activation, activationLib, dispatchProduct, matmulLabel, variantCode } from "./common.ts";
import {
  DEFAULT_VARIANT,
  type MatmulVariant,
  variantUnfit,
  workgroupArrays,
  workgroupBytes,
} from "./variants.ts";
import { reduceSplit, splitScratch } from "./split.ts";

/** Workgroup memory today's kernel declares, in bytes. */
export const GPU_MATMUL_WORKGROUP_BYTES = workgroupBytes(DEFAULT_VARIANT, false, false);

/** What one generated kernel is specialised for: the variant's shape and the product's form. */
interface TiledSpec {
  bm: number;
  bn: number;
  bk: number;
  rm: number;
  rn: number;
  v4: boolean;
  db: boolean;
  /** Write raw chunk sums to `part` (split-K); bias, accumulate and epilogue are then the reduction's. */
  split: boolean;
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

/** One operand's staging: its WGSL name, tile extent, layouts and where its tile starts. */
interface Operand {
  X: "A" | "B";
  /** Workgroup array. */
  S: string;
  /** Tile extent along m (A) or n (B). */
  xt: number;
  /** k is the operand's contiguous dimension (A [M, K], B [N, K]). */
  kMajor: boolean;
  /** Staged k-major (v4 and kMajor): rows of bk/4 + 1 vec4; else x-major, rows of `row` vec4. */
  stagedK: boolean;
  /** vec4 per staged row. */
  row: number;
  vec: boolean;
  /** m or n extent, and the tile's first m or n. */
  ext: string;
  x0: string;
}

function operand(s: TiledSpec, X: "A" | "B"): Operand {
  const kMajor = X === "A" ? !s.transA : s.transB;
  const xt = X === "A" ? s.bm : s.bn;
  const stagedK = s.v4 && kMajor;
  return {
    X,
    S: X === "A" ? "As" : "Bs",
    xt,
    kMajor,
    stagedK,
    row: stagedK ? s.bk / 4 + 1 : s.v4 ? xt / 4 : xt / 4 + 1,
    vec: X === "A" ? s.vecA : s.vecB,
    ext: X === "A" ? "p.M" : "p.N",
    x0: X === "A" ? "m0" : "n0",
  };
}

/** vec4 one buffer of an operand's staged tile holds. */
const tileVec4 = (s: TiledSpec, o: Operand) => (o.stagedK ? o.xt : s.bk) * o.row;

/** Global index (in floats) of element (x, k) of the operand, x relative to the tile, k absolute. */
function at(o: Operand, x: string, k: string): string {
  const base = `${o.X.toLowerCase()}Base`;
  return o.kMajor
    ? `${base} + (${o.x0} + ${x}) * p.K + ${k}`
    : `${base} + (${k}) * ${o.ext} + ${o.x0} + ${x}`;
}

const inside = (o: Operand, x: string, k: string) => `${o.x0} + ${x} < ${o.ext} && ${k} < kEnd`;

/** One float of the operand, zero outside (and the index clamped: no out-of-bounds read at all). */
const scalar = (o: Operand, x: string, k: string) =>
  `select(0.0, ${o.X}[min(${at(o, x, k)}, arrayLength(&${o.X}) - 1u)], ${inside(o, x, k)})`;

/**
 * Today's staging (64 x 64, bk 8, 256 invocations), both operands x-major at S[kk * row + x / 4]:
 * a k-major operand is loaded as 4 x 4 blocks by 32 invocations and stored transposed, an x-major one
 * by 128 invocations, one vec4 (or 4 floats) along x each.
 */
function stagePart(o: Operand, k0: string): string[] {
  const R = o.row;
  const quad = (kk: string) =>
    `vec4<f32>(${[0, 1, 2, 3].map((c) => scalar(o, `4u * q + ${c}u`, `${k0} + ${kk}`)).join(", ")})`;
  if (o.vec && o.kMajor) {
    const L = [`if (t < 32u) {`, `  let q = t / 2u;`, `  let kb = (t % 2u) * 4u;`];
    for (let r = 0; r < 4; r++) {
      const x = `4u * q + ${r}u`;
      L.push(`  var v${r} = vec4<f32>(0.0);`);
      L.push(`  if (${inside(o, x, `${k0} + kb`)}) { v${r} = ${o.X}[(${at(o, x, `${k0} + kb`)}) / 4u]; }`);
    }
    for (let c = 0; c < 4; c++) {
      L.push(`  ${o.S}[(kb + ${c}u) * ${R}u + q] = vec4<f32>(v0[${c}], v1[${c}], v2[${c}], v3[${c}]);`);
    }
    return [...L, `}`];
  }
  if (o.vec) {
    return [
      `if (t < 128u) {`,
      `  let q = t % 16u;`,
      `  let kk = t / 16u;`,
      `  var v = vec4<f32>(0.0);`,
      `  if (${inside(o, "4u * q", `${k0} + kk`)}) { v = ${o.X}[(${at(o, "4u * q", `${k0} + kk`)}) / 4u]; }`,
      `  ${o.S}[kk * ${R}u + q] = v;`,
      `}`,
    ];
  }
  const [q, kk] = o.kMajor ? ["t / 8u", "t % 8u"] : ["t % 16u", "t / 16u"];
  return [
    `if (t < 128u) {`,
    `  let q = ${q};`,
    `  let kk = ${kk};`,
    `  ${o.S}[kk * ${R}u + q] = ${quad("kk")};`,
    `}`,
  ];
}

/**
 * v4 staging: the tile's vec4 (along the operand's contiguous dimension) spread over all `nt`
 * invocations, item t + i·nt; `load` fills the registers l<A|B><i> from the tile at k0, `store` writes
 * them to the buffer at vec4 offset `off`.
 */
function stageV4(
  s: TiledSpec,
  o: Operand,
  nt: number,
): { decl: string[]; load: (k0: string) => string[]; store: (off: string) => string[] } {
  const perRow = o.kMajor ? s.bk / 4 : o.xt / 4;
  const items = (o.kMajor ? o.xt : s.bk) * perRow;
  const per = Math.ceil(items / nt);
  const reg = (i: number) => `l${o.X}${i}`;
  // Each item in its own block (its row / column lets), guarded where nt does not divide the items.
  const guard = (i: number, body: string[]) => [
    (i + 1) * nt > items ? `if (t + ${i * nt}u < ${items}u) {` : `{`,
    ...body.map((l) => "  " + l),
    `}`,
  ];
  // Item it: staged row it / perRow, vec4 it % perRow of it.
  const pos = (
    i: number,
  ) => [
    `let r${o.X}${i} = (t + ${i * nt}u) / ${perRow}u;`,
    `let c${o.X}${i} = (t + ${i * nt}u) % ${perRow}u;`,
  ];
  const load = (k0: string) => {
    const L: string[] = [];
    for (let i = 0; i < per; i++) {
      const r = `r${o.X}${i}`, c = `c${o.X}${i}`;
      // kMajor: x = row, k = k0 + 4c; x-major: k = k0 + row, x = 4c.
      const [x, k] = o.kMajor ? [r, `${k0} + 4u * ${c}`] : [`4u * ${c}`, `${k0} + ${r}`];
      const body = [...pos(i)];
      if (o.vec) {
        body.push(`${reg(i)} = vec4<f32>(0.0);`);
        body.push(`if (${inside(o, x, k)}) { ${reg(i)} = ${o.X}[(${at(o, x, k)}) / 4u]; }`);
      } else {
        const el = (e: number) => (o.kMajor ? scalar(o, x, `${k} + ${e}u`) : scalar(o, `${x} + ${e}u`, k));
        body.push(`${reg(i)} = vec4<f32>(${[0, 1, 2, 3].map(el).join(", ")});`);
      }
      L.push(...guard(i, body));
    }
    return L;
  };
  const store = (off: string) => {
    const L: string[] = [];
    for (let i = 0; i < per; i++) {
      L.push(...guard(i, [...pos(i), `${o.S}[${off}(r${o.X}${i} * ${o.row}u + c${o.X}${i})] = ${reg(i)};`]));
    }
    return L;
  };
  return { decl: Array.from({ length: per }, (_, i) => `var ${reg(i)} = vec4<f32>(0.0);`), load, store };
}

/**
 * The multiply-accumulate of one staged K tile from buffer offsets `ao` / `bo` ("" or "cur * N + "):
 * four k steps per iteration, each accumulator c<r>_<q> (row r, column vec4 q) in ascending k.
 */
function computeTile(
  s: TiledSpec,
  a: Operand,
  b: Operand,
  wx: number,
  wy: number,
  ao: string,
  bo: string,
): string[] {
  const L: string[] = [`for (var kq = 0u; kq < ${s.bk / 4}u; kq++) {`];
  const rowVec = (i: number) => (i ? `ly + ${i * wy}u` : "ly");
  const colVec = (q: number) => (q ? `lx + ${q * wx}u` : "lx");
  // A: a(r, k) for micro-tile row r and k step k.
  let aval: (r: number, k: number) => string;
  let agroup: (i: number, k: number) => string;
  if (a.stagedK) {
    for (let r = 0; r < s.rm; r++) {
      L.push(`  let ar${r} = As[${ao}(4u * (${rowVec(r >> 2)}) + ${r & 3}u) * ${a.row}u + kq];`);
    }
    aval = (r, k) => `ar${r}[${k}]`;
    agroup = (i, k) => `vec4<f32>(${[0, 1, 2, 3].map((c) => aval(4 * i + c, k)).join(", ")})`;
  } else {
    for (let k = 0; k < 4; k++) {
      for (let i = 0; i < s.rm / 4; i++) {
        L.push(`  let ak${k}_${i} = As[${ao}(4u * kq + ${k}u) * ${a.row}u + ${rowVec(i)}];`);
      }
    }
    aval = (r, k) => `ak${k}_${r >> 2}[${r & 3}]`;
    agroup = (i, k) => `ak${k}_${i}`;
  }
  // B: b(q, k), the vec4 of columns q at k step k.
  let bval: (q: number, k: number) => string;
  if (b.stagedK) {
    for (let j = 0; j < s.rn; j++) L.push(`  let bc${j} = Bs[${bo}(lx + ${j * wx}u) * ${b.row}u + kq];`);
    bval = (q, k) => `vec4<f32>(${[0, 1, 2, 3].map((c) => `bc${4 * q + c}[${k}]`).join(", ")})`;
  } else {
    for (let k = 0; k < 4; k++) {
      for (let q = 0; q < s.rn / 4; q++) {
        L.push(`  let bk${k}_${q} = Bs[${bo}(4u * kq + ${k}u) * ${b.row}u + ${colVec(q)}];`);
      }
    }
    bval = (q, k) => `bk${k}_${q}`;
  }
  for (let k = 0; k < 4; k++) {
    for (let r = 0; r < s.rm; r++) {
      for (let q = 0; q < s.rn / 4; q++) {
        L.push(`  c${r}_${q} = fma(vec4<f32>(${aval(r, k)}), ${bval(q, k)}, c${r}_${q});`);
      }
    }
    if (s.rowSums) { for (let i = 0; i < s.rm / 4; i++) L.push(`  rsum${i} += ${agroup(i, k)};`); }
  }
  return [...L, `}`];
}

/** The tiled kernel's WGSL for one variant and form. */
export function tiledWGSL(s: TiledSpec): string {
  if (!s.v4 && (s.bm !== 64 || s.bn !== 64 || s.bk !== 8 || s.rm !== 4 || s.rn !== 4 || s.db)) {
    throw new Error("matmul: today's staging is for 64x64 k8 4x4 tiles only");
  }
  const [wx, wy] = [s.bn / s.rn, s.bm / s.rm];
  const nt = wx * wy;
  const a = operand(s, "A"), b = operand(s, "B");
  const sa = tileVec4(s, a), sb = tileVec4(s, b);
  const bufs = s.db ? 2 : 1;
  // The limits check (variants.ts) sizes the same arrays: the two must agree.
  const [wa, wb] = workgroupArrays(s, a.kMajor, b.kMajor);
  if (wa !== bufs * sa || wb !== bufs * sb) throw new Error("matmul: workgroup array sizes disagree");
  const ind = (lines: string[], n = 2) => lines.map((l) => " ".repeat(n) + l);
  const L: string[] = [];
  if (!s.v4) {
    L.push(`for (var k0 = kStart; k0 < kEnd; k0 += ${s.bk}u) {`);
    L.push(...ind(stagePart(a, "k0")), ...ind(stagePart(b, "k0")), `  workgroupBarrier();`);
    L.push(...ind(computeTile(s, a, b, wx, wy, "", "")), `  workgroupBarrier();`, `}`);
  } else {
    const ga = stageV4(s, a, nt), gb = stageV4(s, b, nt);
    L.push(...ga.decl, ...gb.decl);
    if (!s.db) {
      L.push(`for (var k0 = kStart; k0 < kEnd; k0 += ${s.bk}u) {`);
      L.push(...ind([...ga.load("k0"), ...gb.load("k0"), ...ga.store(""), ...gb.store("")]));
      L.push(
        `  workgroupBarrier();`,
        ...ind(computeTile(s, a, b, wx, wy, "", "")),
        `  workgroupBarrier();`,
        `}`,
      );
    } else {
      L.push(...ga.load("kStart"), ...gb.load("kStart"), ...ga.store(""), ...gb.store(""));
      L.push(`workgroupBarrier();`, `var cur = 0u;`);
      L.push(`for (var k0 = kStart; k0 < kEnd; k0 += ${s.bk}u) {`, `  let nk = k0 + ${s.bk}u;`);
      L.push(`  if (nk < kEnd) {`, ...ind([...ga.load("nk"), ...gb.load("nk")], 4), `  }`);
      L.push(...ind(computeTile(s, a, b, wx, wy, `cur * ${sa}u + `, `cur * ${sb}u + `)));
      L.push(`  if (nk < kEnd) {`);
      L.push(
        ...ind([...ga.store(`(1u - cur) * ${sa}u + `), ...gb.store(`(1u - cur) * ${sb}u + `)], 4),
        `  }`,
      );
      L.push(`  workgroupBarrier();`, `  cur = 1u - cur;`, `}`);
    }
  }
  // Store: row 4·(ly + i·wy) + r of the tile, column vec4 q (component c).
  const col = (q: number, c: number) =>
    b.stagedK ? `n0 + lx + ${wx * (4 * q + c)}u` : `n0 + 4u * (lx${q ? ` + ${q * wx}u` : ""}) + ${c}u`;
  for (let r = 0; r < s.rm; r++) {
    L.push(`let i${r} = m0 + 4u * (ly${r >> 2 ? ` + ${(r >> 2) * wy}u` : ""}) + ${r & 3}u;`);
    L.push(`if (i${r} < p.M) {`);
    for (let q = 0; q < s.rn / 4; q++) {
      for (let c = 0; c < 4; c++) {
        L.push(`  let j${r}_${q}_${c} = ${col(q, c)};`, `  if (j${r}_${q}_${c} < p.N) {`);
        const j = `j${r}_${q}_${c}`;
        if (s.split) {
          L.push(`    part[cBase + i${r} * p.N + ${j}] = c${r}_${q}[${c}];`);
        } else {
          L.push(`    let o = cBase + i${r} * p.N + ${j};`);
          L.push(
            `    var v = p.alpha * c${r}_${q}[${c}]${s.acc ? " + C[o]" : ""}${
              s.bias ? ` + bias[${j}]` : ""
            };`,
          );
          if (s.ep !== "none") L.push(`    v = ${activation(s.ep)};`);
          L.push(`    C[o] = v;`);
        }
        L.push(`  }`);
      }
    }
    L.push(`}`);
  }
  if (s.rowSums) {
    L.push(`if (wg.x == 0u && lx == 0u) {`);
    for (let r = 0; r < s.rm; r++) {
      const sum = `rsum${r >> 2}[${r & 3}]`;
      L.push(
        s.split
          ? `  if (i${r} < p.M) { part[p.ns * p.nb * p.M * p.N + (wg.z / p.nb) * p.M + i${r}] = ${sum}; }`
          : `  if (i${r} < p.M) { rs[i${r}] = ${s.acc ? `rs[i${r}] + ` : ""}${sum}; }`,
      );
    }
    L.push(`}`);
  }
  const arr = (v: boolean) => (v ? "array<vec4<f32>>" : "array<f32>");
  const acc: string[] = [];
  for (let r = 0; r < s.rm; r++) {
    for (let q = 0; q < s.rn / 4; q++) acc.push(`var c${r}_${q} = vec4<f32>(0.0);`);
  }
  if (s.rowSums) { for (let i = 0; i < s.rm / 4; i++) acc.push(`var rsum${i} = vec4<f32>(0.0);`); }
  const head = s.split
    ? [
      `let bz = wg.z % p.nb;`,
      `let kStart = min(p.K, (wg.z / p.nb) * p.kc);`,
      `let kEnd = min(p.K, kStart + p.kc);`,
      `let cBase = wg.z * p.M * p.N;`,
    ]
    : [`let bz = wg.z;`, `let kStart = 0u;`, `let kEnd = p.K;`, `let cBase = bz * p.M * p.N;`];
  return /* wgsl */ `
struct P { M: u32, N: u32, K: u32, alpha: f32${s.split ? ", kc: u32, nb: u32, ns: u32" : ""} }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> A: ${arr(s.vecA)};
@group(0) @binding(2) var<storage, read> B: ${arr(s.vecB)};
${
    s.split
      ? "@group(0) @binding(3) var<storage, read_write> part: array<f32>;"
      : "@group(0) @binding(3) var<storage, read_write> C: array<f32>;"
  }
${s.bias && !s.split ? "@group(0) @binding(4) var<storage, read> bias: array<f32>;" : ""}
${s.rowSums && !s.split ? "@group(0) @binding(5) var<storage, read_write> rs: array<f32>;" : ""}
var<workgroup> As: array<vec4<f32>, ${bufs * sa}>;
var<workgroup> Bs: array<vec4<f32>, ${bufs * sb}>;

${activationLib(s.ep)}
@compute @workgroup_size(${wx}, ${wy}, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let lx = lid.x;
  let ly = lid.y;
  let t = ly * ${wx}u + lx;
  let m0 = wg.y * ${s.bm}u;
  let n0 = wg.x * ${s.bn}u;
${ind(head).join("\n")}
  let aBase = bz * p.M * p.K;
  let bBase = bz * p.K * p.N;
${ind(acc).join("\n")}
${ind(L).join("\n")}
}`;
}

/** The kernel spec of product `p` under variant `v`. */
function specOf(p: MatmulProblem, v: MatmulVariant): TiledSpec {
  const split = v.split > 1;
  return {
    bm: v.bm,
    bn: v.bn,
    bk: v.bk,
    rm: v.rm,
    rn: v.rn,
    v4: v.v4,
    db: v.db,
    split,
    transA: p.transA,
    transB: p.transB,
    // vec4 loads need the contiguous dimension (and so every row and batch start) a multiple of 4
    // floats; storage bindings start 256-byte aligned.
    vecA: (p.transA ? p.M : p.K) % 4 === 0,
    vecB: (p.transB ? p.K : p.N) % 4 === 0,
    bias: !split && !!p.bias,
    acc: !split && p.accumulate,
    ep: split ? "none" : p.epilogue,
    rowSums: !!p.rowSums,
  };
}

/** The WGSL variant `v` runs for product `p` (the main kernel, with split-K). */
export function variantWGSL(p: MatmulProblem, v: MatmulVariant): string {
  return variantCode("tiled", specOf(p, v), tiledWGSL);
}

/** Record the product with variant `v` (default: today's kernel): one dispatch, two with split-K. */
export function matmulTiled(rt: Runtime, p: MatmulProblem, v: MatmulVariant = DEFAULT_VARIANT): void {
  const unfit = variantUnfit(v, p, rt.device.limits);
  if (unfit) throw new Error(`matmul: variant ${v.name} needs ${unfit}, more than this device allows`);
  const code = variantWGSL(p, v);
  const x = groups(p.N, v.bn), y = groups(p.M, v.bm);
  if (v.split === 1) {
    dispatchProduct(rt, p, code, x, y);
    return;
  }
  // Chunks of K: a multiple of bk, so every chunk starts on a K tile (and on a vec4).
  const kc = Math.max(v.bk, Math.ceil(p.K / v.split / v.bk) * v.bk);
  const part = splitScratch(rt, p, v);
  const params = [p.M, p.N, p.K, f32(p.alpha), kc, p.batch, v.split];
  rt.dispatch(matmulLabel(p), code, { A: p.A, B: p.B, part }, params, [x, y, p.batch * v.split]);
  reduceSplit(rt, p, part, v.split);
}
