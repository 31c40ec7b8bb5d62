// GPU-family attention kernels, shaped for real GPUs: a workgroup of 64 invocations per (b, h,
// block of 4 query rows) with the key loop spread across it, workgroup-memory reductions for the
// softmax statistics, coalesced loads (consecutive invocations read consecutive floats of a row).
// Flash-style: nothing is sized by T x T; P_tj = exp(s_tj − lse_t) is recomputed per tile.
// See ops/attention.ts for the math and layouts shared with the CPU family.
//
// Row kernels (forward, backward dq) own rows t0 .. t0+3 of one (b, h) per workgroup (vec4: one
// component per row, so every k / v value loaded serves 4 rows); keys go in tiles of 64, one per
// invocation, and only tiles at or left of the diagonal are visited.
//   dots  s_j = a · x_j (a = q or dout of the 4 rows, in workgroup memory): the tile's rows are
//         staged through workgroup memory 4 columns (a vec4) at a time, read row-contiguously.
//   sums  acc = Σ_j w_j x_j (w = dropout(P) or dS): the invocations form G groups of L = min(hs, 64)
//         lanes; lane d reads column d of the group's rows (one contiguous run per row), and the
//         groups' partial sums are added in group order at the end.
// Forward, two passes over the key tiles:
//   1. each invocation keeps an online max and Σ exp over its keys; the workgroup combines them
//      (fixed-order tree reductions) into m and l per row, lse = m + log l -> lse;
//   2. scores again, P = exp(s − m) / l, out = Σ P mask v.
// Backward, 2 kernels, deterministic and atomic-free:
//   rows:  D = dout_t · out_t -> delta; per tile P = exp(s − lse), dP = (dout_t · v_j) mask,
//          dS = P (dP − D), dq_t = scale Σ_j dS_j k_j
//   keys:  a workgroup per (b, h, block of KB keys), queries t >= j in tiles of QT: dS and P·mask of
//          the tile recomputed into workgroup memory (one (t, j) pair per invocation at a time, two
//          dots of hs), then dk_j = scale Σ_t dS q_t, dv_j = Σ_t P mask dout_t, each invocation
//          owning KPT keys of one or two columns.

import { f32, grid1d, type Runtime } from "../runtime.ts";
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

/** Invocations per workgroup: keys (or queries) per tile. */
const WG = 64;
/** Query rows per workgroup of the row kernels (the components of a vec4). */
const QB = 4;

/** The column split of a head of size hs over a workgroup (see the file comment). */
function lanes(hs: number) {
  const L = Math.min(hs, WG), G = Math.floor(WG / L), ncol = Math.ceil(hs / L);
  // Keys per invocation in the key kernel: 16 accumulator pairs at most; KB = G·KPT keys per workgroup.
  const kpt = ncol === 1 ? Math.max(1, Math.floor(16 / G)) : 8;
  const KB = G * kpt;
  // Queries per staged tile: 2 x 256 floats of dS and P·mask. Workgroup memory is kept small
  // everywhere: on GL, llvmpipe's compile time grows steeply with it (this kernel: 145 s at
  // 2 x 1024 floats, 11 s at 2 x 256, uncached).
  const QT = Math.floor(256 / KB);
  return { L, G, ncol, kpt, KB, QT };
}

function header(hs: number): string {
  const { L, G, ncol } = lanes(hs);
  return /* wgsl */ `${KEEP_WGSL}
const HS: u32 = ${hs}u;
const WG: u32 = ${WG}u;
const L: u32 = ${L}u;       // lanes per column group: min(HS, WG)
const G: u32 = ${G}u;       // column groups per workgroup
const NCOL: u32 = ${ncol}u; // columns per lane
struct Params { B: u32, T: u32, C: u32, H: u32, stream: u32, drop: f32, scale: f32 }
@group(0) @binding(0) var<uniform> p: Params;`;
}

// The entry point of every kernel: a workgroup of 64 per item, item = wid.x + wid.y * nwg.x
// (grid1d's grid; uniform within the workgroup, so its kernels may return early and use barriers).
const MAIN = /* wgsl */ `@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {`;

// A workgroup-memory tree reduction over the 64 invocations, per row (fixed order: deterministic).
const reduce = (name: string, op: (a: string, b: string) => string) => /* wgsl */ `
fn ${name}(lid: u32, x: vec4<f32>) -> vec4<f32> {
  red[lid] = x;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] = ${op("red[lid]", "red[lid + s]")}; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}`;

/** A per-row vector of the 4 rows held in workgroup memory: [array, buffer, offset, row stride]. */
type Staged = [string, string, string, string];

/** WGSL shared by the row kernels (forward and backward dq): `staged` arrays, `dst` the buffer store_acc writes. */
function rowsWGSL(hs: number, staged: Staged[], dst: string): string {
  return /* wgsl */ `${header(hs)}
${staged.map(([a]) => `var<workgroup> ${a}: array<vec4<f32>, HS>;  // column d of the 4 rows`).join("\n")}
var<workgroup> xt: array<f32, 4 * WG>;     // columns d0 .. d0 + 3 of a tile of rows, row k at 4k ..
var<workgroup> ws: array<vec4<f32>, WG>;   // per-key weights of a tile, per row
var<workgroup> red: array<vec4<f32>, WG>;
var<private> acc: array<vec4<f32>, NCOL>;
${reduce("wg_max", (a, b) => `max(${a}, ${b})`)}
${reduce("wg_sum", (a, b) => `${a} + ${b}`)}

// Whether query row t (padding when t >= T) sees key j.
fn sees(j: u32, t: u32, T: u32) -> bool { return j <= t && t < T; }
fn sees4(j: u32, tr: vec4<u32>, T: u32) -> vec4<bool> {
  return vec4<bool>(sees(j, tr.x, T), sees(j, tr.y, T), sees(j, tr.z, T), sees(j, tr.w, T));
}
// The dropout keep-scales of key j for the 4 rows (row t at pB + t T + j of the virtual probs).
fn keep4(pB: u32, j: u32, tr: vec4<u32>, T: u32, key: u32) -> vec4<f32> {
  let ks = 1.0 / (1.0 - p.drop);
  return vec4<f32>(
    keep(pB + tr.x * T + j, key, p.drop, ks),
    keep(pB + tr.y * T + j, key, p.drop, ks),
    keep(pB + tr.z * T + j, key, p.drop, ks),
    keep(pB + tr.w * T + j, key, p.drop, ks)
  );
}
${staged.map(([a, buf]) => stagedWGSL(a, buf)).join("\n")}

// acc[c] += Σ_k ws[k] x_{j0 + k}[lid % L + c L] over the keys k < n - j0 of this invocation's group.
fn tile_acc(lid: u32, j0: u32, n: u32, xo: u32, C3: u32) {
  let g = lid / L;
  let dl = lid % L;
  if (g < G) {
    for (var k = g; k < min(WG, n - j0); k += G) {
      let w = ws[k];
      let ro = xo + (j0 + k) * C3 + dl;
      for (var c = 0u; c < NCOL; c++) {
        if (dl + c * L < HS) { acc[c] = fma(w, vec4<f32>(qkv[ro + c * L]), acc[c]); }
      }
    }
  }
}

// ${dst}[o + tr[r] row + d] = scale Σ_groups acc[.][r] (d < HS, rows tr[r] < T), groups added in order.
fn store_acc(lid: u32, o: u32, row: u32, tr: vec4<u32>, T: u32, scale: f32) {
  for (var c = 0u; c < NCOL; c++) {
    red[lid] = select(vec4<f32>(), acc[c], lid < G * L);
    workgroupBarrier();
    let d = lid + c * L;
    if (lid < L && d < HS) {
      var s = vec4<f32>();
      for (var g = 0u; g < G; g++) { s += red[g * L + lid]; }
      for (var r = 0u; r < 4u; r++) {
        if (tr[r] < T) { ${dst}[o + tr[r] * row + d] = scale * s[r]; }
      }
    }
    workgroupBarrier();
  }
}

// One workgroup per (b, h, block of 4 rows) (grid1d: blk = wid.x + wid.y * nwg.x, uniform in it).
${MAIN}
  let T = p.T;
  let NQ = (T + 3u) / 4u;
  let blk = wid.x + wid.y * nwg.x;  // (b * H + h) * NQ + row block
  if (blk >= p.B * p.H * NQ) { return; }
  let C3 = 3u * p.C;
  let bh = blk / NQ;
  let t0 = (blk % NQ) * 4u;
  let h = bh % p.H;
  let b = bh / p.H;
  let qkvB = b * T * C3 + h * HS;  // q of (b, 0) for head h; + C for k, + 2C for v
  let oB = b * T * p.C + h * HS;   // out / dout of (b, 0) for head h
  let tr = vec4<u32>(t0, t0 + 1u, t0 + 2u, t0 + 3u);  // the rows (>= T: padding)
  let n = min(t0 + 4u, T);         // keys the block sees
  let pB = bh * T * T;             // the virtual probs of (b, h) (the dropout mask's index)
  let sB = bh * T;                 // lse / delta of (b, h); row t at sB + t
  let key = drop_key(state[0], state[1], p.stream);
${staged.map(([a, , o, row]) => `  load_${a}(lid, ${o}, ${row}, t0, T);`).join("\n")}
  workgroupBarrier();`;
}

/**
 * WGSL of one staged per-row vector: load_<a> fills it (rows past T repeat row T - 1) and dots_<a>
 * gives a · x_j for the 64 keys of a tile.
 */
function stagedWGSL(a: string, buf: string): string {
  return /* wgsl */ `
// ${a}[d][r] = ${buf}[o + min(t0 + r, T - 1) a_row + d]. An invocation writes whole vec4s: a store
// to one component is a read-modify-write of the vector on some backends (HLSL), which races with
// the invocations storing its other components.
fn load_${a}(lid: u32, o: u32, a_row: u32, t0: u32, T: u32) {
  for (var d = lid; d < HS; d += WG) {
    ${a}[d] = vec4<f32>(
      ${buf}[o + min(t0, T - 1u) * a_row + d],
      ${buf}[o + min(t0 + 1u, T - 1u) * a_row + d],
      ${buf}[o + min(t0 + 2u, T - 1u) * a_row + d],
      ${buf}[o + min(t0 + 3u, T - 1u) * a_row + d]
    );
  }
}

// ${a} · x_{j0 + lid} per row (0 past key n - 1): rows x_j at qkv[xo + j * C3 ..], staged 4
// columns at a time (4 consecutive invocations read 4 consecutive columns of a row; each stores one
// f32, and reads its own row's 4 back as a vec4).
fn dots_${a}(lid: u32, j0: u32, n: u32, xo: u32, C3: u32) -> vec4<f32> {
  var s = vec4<f32>();
  for (var d0 = 0u; d0 < HS; d0 += 4u) {
    for (var e = lid; e < WG * 4u; e += WG) {
      let k = e / 4u;
      let d = d0 + e % 4u;
      var x = 0.0;
      if (j0 + k < n && d < HS) { x = qkv[xo + (j0 + k) * C3 + d]; }
      xt[e] = x;
    }
    workgroupBarrier();
    let x = vec4<f32>(xt[4u * lid], xt[4u * lid + 1u], xt[4u * lid + 2u], xt[4u * lid + 3u]);
    for (var dd = 0u; dd < min(4u, HS - d0); dd++) { s = fma(${a}[d0 + dd], vec4<f32>(x[dd]), s); }
    workgroupBarrier();
  }
  return s;
}`;
}

function forwardWGSL(hs: number): string {
  return /* wgsl */ `
${FORWARD_BINDINGS}
${rowsWGSL(hs, [["vq", "qkv", "qkvB", "C3"]], "out")}
  // Pass 1: online max and Σ exp of the scaled scores over this invocation's keys, per row
  // (-f32 max: Tint rejects 3.4028235e38), then combined over the workgroup.
  var mloc = vec4<f32>(-3.4028234e38);
  var lloc = vec4<f32>();
  for (var j0 = 0u; j0 < n; j0 += WG) {
    let s = dots_vq(lid, j0, n, qkvB + p.C, C3) * p.scale;
    let ok = sees4(j0 + lid, tr, T);
    let mn = select(mloc, max(mloc, s), ok);
    lloc = select(lloc, fma(lloc, exp(mloc - mn), exp(s - mn)), ok);
    mloc = mn;
  }
  let m = wg_max(lid, mloc);
  let l = wg_sum(lid, lloc * exp(mloc - m));
  if (lid == 0u) {
    for (var r = 0u; r < 4u; r++) {
      if (tr[r] < T) { lse[sB + tr[r]] = m[r] + log(l[r]); }
    }
  }
  // Pass 2: P = exp(s - m) / l; out = Σ_j dropout(P_j) v_j.
  let inv = 1.0 / l;
  for (var j0 = 0u; j0 < n; j0 += WG) {
    let s = dots_vq(lid, j0, n, qkvB + p.C, C3) * p.scale;
    let j = j0 + lid;
    ws[lid] = select(vec4<f32>(), exp(s - m) * inv * keep4(pB, j, tr, T, key), sees4(j, tr, T));
    workgroupBarrier();
    tile_acc(lid, j0, n, qkvB + 2u * p.C, C3);
    workgroupBarrier();
  }
  store_acc(lid, oB, p.C, tr, T, 1.0);
}`;
}

function backwardRowsWGSL(hs: number): string {
  return /* wgsl */ `
${BACKWARD_ROWS_BINDINGS}
${rowsWGSL(hs, [["vq", "qkv", "qkvB", "C3"], ["vg", "dout", "oB", "p.C"]], "dqkv")}
  // D = dout_t · out_t (= Σ_j P_j dP_j) -> delta, for the key kernel.
  var dloc = vec4<f32>();
  for (var d = lid; d < HS; d += WG) {
    let o = vec4<f32>(
      out[oB + min(t0, T - 1u) * p.C + d],
      out[oB + min(t0 + 1u, T - 1u) * p.C + d],
      out[oB + min(t0 + 2u, T - 1u) * p.C + d],
      out[oB + min(t0 + 3u, T - 1u) * p.C + d]
    );
    dloc = fma(vg[d], o, dloc);
  }
  let D = wg_sum(lid, dloc);
  if (lid == 0u) {
    for (var r = 0u; r < 4u; r++) {
      if (tr[r] < T) { delta[sB + tr[r]] = D[r]; }
    }
  }
  let ls = vec4<f32>(
    lse[sB + min(t0, T - 1u)],
    lse[sB + min(t0 + 1u, T - 1u)],
    lse[sB + min(t0 + 2u, T - 1u)],
    lse[sB + min(t0 + 3u, T - 1u)]
  );
  // Per tile: P = exp(s - lse), dS_j = P_j (dP_j mask_j - D); dq_t = scale Σ_j dS_j k_j.
  for (var j0 = 0u; j0 < n; j0 += WG) {
    let s = dots_vq(lid, j0, n, qkvB + p.C, C3) * p.scale;
    let dp = dots_vg(lid, j0, n, qkvB + 2u * p.C, C3);
    let j = j0 + lid;
    let ds = exp(s - ls) * fma(dp, keep4(pB, j, tr, T, key), -D);
    ws[lid] = select(vec4<f32>(), ds, sees4(j, tr, T));
    workgroupBarrier();
    tile_acc(lid, j0, n, qkvB + p.C, C3);
    workgroupBarrier();
  }
  store_acc(lid, qkvB, C3, tr, T, p.scale);
}`;
}

function backwardKeysWGSL(hs: number): string {
  const { kpt, KB, QT } = lanes(hs);
  return /* wgsl */ `${header(hs)}
const KPT: u32 = ${kpt}u;  // keys per invocation
const KB: u32 = ${KB}u;    // keys per workgroup: G * KPT
const QT: u32 = ${QT}u;    // queries per staged tile
${BACKWARD_KEYS_BINDINGS}
var<workgroup> sd: array<f32, QT * KB>;  // dS[t0 + q][jb + k] at q * KB + k
var<workgroup> sw: array<f32, QT * KB>;  // P mask, likewise

${MAIN}
  let T = p.T;
  let NB = (T + KB - 1u) / KB;
  let blk = wid.x + wid.y * nwg.x;  // (b * H + h) * NB + key block
  if (blk >= p.B * p.H * NB) { return; }
  let C3 = 3u * p.C;
  let bh = blk / NB;
  let jb = (blk % NB) * KB;
  let h = bh % p.H;
  let b = bh / p.H;
  let qkvB = b * T * C3 + h * HS;
  let oB = b * T * p.C + h * HS;
  let pBase = bh * T * T;
  let sB = bh * T;
  let key = drop_key(state[0], state[1], p.stream);
  let ks = 1.0 / (1.0 - p.drop);
  // This invocation: column group g owns keys jb + g + kk G (kk < KPT), lane dl columns dl + c L.
  let g = lid / L;
  let dl = lid % L;
  var dk: array<f32, KPT * NCOL>;
  var dv: array<f32, KPT * NCOL>;
  for (var t0 = jb; t0 < T; t0 += QT) {
    // dS and P mask of the tile's (query, key) pairs, recomputed: s = q_t · k_j, dP = dout_t · v_j.
    for (var e = lid; e < QT * KB; e += WG) {
      let t = t0 + e / KB;
      let j = jb + e % KB;
      var ds = 0.0;
      var w = 0.0;
      if (t < T && j <= t) {
        let qo = qkvB + t * C3;
        let ko = qkvB + j * C3 + p.C;
        let go = oB + t * p.C;
        var s = 0.0;
        var dp = 0.0;
        for (var d = 0u; d < HS; d++) {
          s = fma(qkv[qo + d], qkv[ko + d], s);
          dp = fma(dout[go + d], qkv[ko + p.C + d], dp);
        }
        let P = exp(s * p.scale - lse[sB + t]);
        let mk = keep(pBase + t * T + j, key, p.drop, ks);
        ds = P * fma(dp, mk, -delta[sB + t]);
        w = P * mk;
      }
      sd[e] = ds;
      sw[e] = w;
    }
    workgroupBarrier();
    if (g < G) {
      for (var q = 0u; q < min(QT, T - t0); q++) {
        let t = t0 + q;
        for (var c = 0u; c < NCOL; c++) {
          let d = dl + c * L;
          if (d < HS) {
            let qv = qkv[qkvB + t * C3 + d];
            let gv = dout[oB + t * p.C + d];
            for (var kk = 0u; kk < KPT; kk++) {
              let e = q * KB + g + kk * G;
              dk[kk * NCOL + c] = fma(sd[e], qv, dk[kk * NCOL + c]);
              dv[kk * NCOL + c] = fma(sw[e], gv, dv[kk * NCOL + c]);
            }
          }
        }
      }
    }
    workgroupBarrier();
  }
  if (g < G) {
    for (var kk = 0u; kk < KPT; kk++) {
      let j = jb + g + kk * G;
      for (var c = 0u; c < NCOL; c++) {
        let d = dl + c * L;
        if (j < T && d < HS) {
          dqkv[qkvB + j * C3 + p.C + d] = p.scale * dk[kk * NCOL + c];
          dqkv[qkvB + j * C3 + 2u * p.C + d] = dv[kk * NCOL + c];
        }
      }
    }
  }
}`;
}

/** Keys per workgroup of the backward key kernel (its grid is B·H·⌈T / KB⌉ workgroups). */
export function keysPerWorkgroup(hs: number): number {
  return lanes(hs).KB;
}

const params = (s: AttnShape) => [s.B, s.T, s.C, s.H, s.stream, f32(s.p), f32(1 / Math.sqrt(s.hs))];
/** One workgroup per item (row block, key block): grid1d's workgroups for `n` items of WG invocations. */
const perGroup = (rt: Runtime, n: number) => grid1d(rt, n * WG, WG).workgroups;
/** Row blocks of the row kernels. */
const rowBlocks = (s: AttnShape) => s.B * s.H * Math.ceil(s.T / QB);

/** Forward (see ops/attention.ts attentionForward): 1 dispatch, B·H·⌈T/4⌉ workgroups of 64. */
export function forwardGpu(rt: Runtime, t: AttnForwardTensors, s: AttnShape): void {
  rt.dispatch(
    "attention_fwd",
    cachedWGSL(`attention/gpu/fwd/${s.hs}`, () => forwardWGSL(s.hs)),
    { ...t, state: s.state },
    params(s),
    perGroup(rt, rowBlocks(s)),
  );
}

/** Backward (see ops/attention.ts attentionBackward): 2 dispatches, B·H·⌈T/4⌉ and B·H·⌈T/KB⌉ workgroups of 64. */
export function backwardGpu(rt: Runtime, t: AttnBackwardTensors, s: AttnShape): void {
  rt.dispatch(
    "attention_bwd_rows",
    cachedWGSL(`attention/gpu/bwd_rows/${s.hs}`, () => backwardRowsWGSL(s.hs)),
    { ...t, state: s.state },
    params(s),
    perGroup(rt, rowBlocks(s)),
  );
  rt.dispatch(
    "attention_bwd_keys",
    cachedWGSL(`attention/gpu/bwd_keys/${s.hs}`, () => backwardKeysWGSL(s.hs)),
    { ...keyTensors(t), state: s.state },
    params(s),
    perGroup(rt, s.B * s.H * Math.ceil(s.T / keysPerWorkgroup(s.hs))),
  );
}
