// GPU-family attention kernels, shaped for real GPUs: a workgroup of 64 invocations per (b, h,
// block of 4 query rows) with the key loop spread across it, workgroup-memory reductions for the
// softmax statistics, coalesced loads (consecutive invocations read consecutive floats of a row).
// See ops/attention.ts for the math and layouts shared with the CPU family.
//
// Row kernels (forward, backward dq) own rows t0 .. t0+3 of one (b, h) per workgroup (vec4: one
// component per row, so every k / v value loaded serves 4 rows); keys go in tiles of 64, one per
// invocation. The invocation of key j keeps its per-key values (score, exp, dP, dS) in the rows'
// own probs / dscores elements, which only it reads back, so nothing is sized by T.
//   dots  s_j = a · x_j (a = q or dout of the 4 rows, in workgroup memory): the tile's rows are
//         staged through workgroup memory 4 columns (a vec4) at a time, read row-contiguously.
//   sums  acc = Σ_j w_j x_j (w = dropout(P) or dS): the invocations form G groups of L = min(hs, 64)
//         lanes; lane d reads column d of the group's rows (one contiguous run per row), and the
//         groups' partial sums are added in group order at the end.
// Forward:  s -> probs, m = max, e = exp(s - m) -> probs, l = Σ e, P = e / l -> probs,
//           out = Σ P mask v, zeros right of the diagonal.
// Backward, 2 kernels, deterministic and atomic-free:
//   rows:  dP_j = (dout_t · v_j) mask_j -> dscores, D = Σ P dP, dS = P (dP − D) -> dscores,
//          dq_t = scale Σ_j dS_j k_j
//   keys:  a workgroup per (b, h, block of KB keys), queries t >= j staged in tiles (dS and P·mask
//          read row-contiguously from dscores / probs): dk_j = scale Σ_t dS q_t, dv_j = Σ_t P mask dout_t,
//          each invocation owning KPT keys of one or two columns.

import { f32, grid1d, type Runtime } from "../runtime.ts";
import {
  type AttnBackwardTensors,
  type AttnForwardTensors,
  type AttnShape,
  BACKWARD_KEYS_BINDINGS,
  BACKWARD_ROWS_BINDINGS,
  FORWARD_BINDINGS,
  KEEP_WGSL,
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

/**
 * WGSL shared by the row kernels (forward and backward dq): `a` is the buffer va loads from
 * (`a_row` its row stride), `dst` the buffer store_acc writes.
 */
function rowsWGSL(hs: number, a: string, aRow: string, dst: string): string {
  return /* wgsl */ `${header(hs)}
var<workgroup> va: array<vec4<f32>, HS>;   // column d of the 4 rows' q (forward) or dout (backward)
var<workgroup> xt: array<f32, 4 * WG>;     // columns d0 .. d0 + 3 of a tile of rows, row k at 4k ..
var<workgroup> ws: array<vec4<f32>, WG>;   // per-key weights of a tile, per row
var<workgroup> red: array<vec4<f32>, WG>;
var<private> acc: array<vec4<f32>, NCOL>;
${reduce("wg_max", (a, b) => `max(${a}, ${b})`)}
${reduce("wg_sum", (a, b) => `${a} + ${b}`)}

// Whether query row t (padding when t >= T) sees key j.
fn sees(j: u32, t: u32, T: u32) -> bool { return j <= t && t < T; }

// va[d][r] = ${a}[o + min(t0 + r, T - 1) a_row + d] (padding rows repeat row T - 1). An invocation
// writes whole vec4s: a store to one component is a read-modify-write of the vector on some
// backends (HLSL), which races with the invocations storing its other components.
fn load_rows(lid: u32, o: u32, a_row: u32, t0: u32, T: u32) {
  for (var d = lid; d < HS; d += WG) {
    va[d] = vec4<f32>(
      ${a}[o + min(t0, T - 1u) * a_row + d],
      ${a}[o + min(t0 + 1u, T - 1u) * a_row + d],
      ${a}[o + min(t0 + 2u, T - 1u) * a_row + d],
      ${a}[o + min(t0 + 3u, T - 1u) * a_row + d]
    );
  }
  workgroupBarrier();
}

// va · x_{j0 + lid} per row (0 past key n - 1): rows x_j at qkv[xo + j * C3 ..], staged 4
// columns at a time (4 consecutive invocations read 4 consecutive columns of a row; each stores one
// f32, and reads its own row's 4 back as a vec4).
fn tile_dots(lid: u32, j0: u32, n: u32, xo: u32, C3: u32) -> vec4<f32> {
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
    for (var dd = 0u; dd < min(4u, HS - d0); dd++) { s = fma(va[d0 + dd], vec4<f32>(x[dd]), s); }
    workgroupBarrier();
  }
  return s;
}

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
  let pB = bh * T * T;             // probs / dscores of (b, h); row t at pB + t T
  let key = drop_key(state[0], state[1], p.stream);
  let ks = 1.0 / (1.0 - p.drop);
  load_rows(lid, ${a === "qkv" ? "qkvB" : "oB"}, ${aRow}, t0, T);`;
}

function forwardWGSL(hs: number): string {
  return /* wgsl */ `
${FORWARD_BINDINGS}
${rowsWGSL(hs, "qkv", "C3", "out")}
  // Scores (scaled) -> probs, and their max (-f32 max: Tint rejects 3.4028235e38).
  var mloc = vec4<f32>(-3.4028234e38);
  for (var j0 = 0u; j0 < n; j0 += WG) {
    let s = tile_dots(lid, j0, n, qkvB + p.C, C3) * p.scale;
    let j = j0 + lid;
    for (var r = 0u; r < 4u; r++) {
      if (sees(j, tr[r], T)) {
        probs[pB + tr[r] * T + j] = s[r];
        mloc[r] = max(mloc[r], s[r]);
      }
    }
  }
  let m = wg_max(lid, mloc);
  var lloc = vec4<f32>();
  for (var r = 0u; r < 4u; r++) {
    for (var j = lid; sees(j, tr[r], T); j += WG) {
      let i = pB + tr[r] * T + j;
      let e = exp(probs[i] - m[r]);
      probs[i] = e;
      lloc[r] += e;
    }
  }
  let l = wg_sum(lid, lloc);
  // P = e / l -> probs (0 right of the diagonal); out = Σ_j dropout(P_j) v_j.
  for (var j0 = 0u; j0 < n; j0 += WG) {
    let j = j0 + lid;
    var w = vec4<f32>();
    for (var r = 0u; r < 4u; r++) {
      let i = pB + tr[r] * T + j;
      if (sees(j, tr[r], T)) {
        let pj = probs[i] / l[r];
        probs[i] = pj;
        w[r] = pj * keep(i, key, p.drop, ks);
      } else if (j < n && tr[r] < T) {
        probs[i] = 0.0;
      }
    }
    ws[lid] = w;
    workgroupBarrier();
    tile_acc(lid, j0, n, qkvB + 2u * p.C, C3);
    workgroupBarrier();
  }
  for (var r = 0u; r < 4u; r++) {
    if (tr[r] < T) {
      for (var j = n + lid; j < T; j += WG) { probs[pB + tr[r] * T + j] = 0.0; }
    }
  }
  store_acc(lid, oB, p.C, tr, T, 1.0);
}`;
}

function backwardRowsWGSL(hs: number): string {
  return /* wgsl */ `
${BACKWARD_ROWS_BINDINGS}
${rowsWGSL(hs, "dout", "p.C", "dqkv")}
  // dP_j = (dout_t · v_j) mask_j -> dscores, D = Σ_j P_j dP_j.
  var dloc = vec4<f32>();
  for (var j0 = 0u; j0 < n; j0 += WG) {
    let dp = tile_dots(lid, j0, n, qkvB + 2u * p.C, C3);
    let j = j0 + lid;
    for (var r = 0u; r < 4u; r++) {
      if (sees(j, tr[r], T)) {
        let i = pB + tr[r] * T + j;
        let dpm = dp[r] * keep(i, key, p.drop, ks);
        dscores[i] = dpm;
        dloc[r] = fma(probs[i], dpm, dloc[r]);
      }
    }
  }
  let D = wg_sum(lid, dloc);
  // dS_j = P_j (dP_j - D) -> dscores (the key kernel reads it); dq_t = scale Σ_j dS_j k_j.
  for (var j0 = 0u; j0 < n; j0 += WG) {
    let j = j0 + lid;
    var ds = vec4<f32>();
    for (var r = 0u; r < 4u; r++) {
      if (sees(j, tr[r], T)) {
        let i = pB + tr[r] * T + j;
        ds[r] = probs[i] * (dscores[i] - D[r]);
        dscores[i] = ds[r];
      }
    }
    ws[lid] = ds;
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
  let key = drop_key(state[0], state[1], p.stream);
  let ks = 1.0 / (1.0 - p.drop);
  // This invocation: column group g owns keys jb + g + kk G (kk < KPT), lane dl columns dl + c L.
  let g = lid / L;
  let dl = lid % L;
  var dk: array<f32, KPT * NCOL>;
  var dv: array<f32, KPT * NCOL>;
  for (var t0 = jb; t0 < T; t0 += QT) {
    for (var e = lid; e < QT * KB; e += WG) {
      let t = t0 + e / KB;
      let j = jb + e % KB;
      var s = 0.0;
      var w = 0.0;
      if (t < T && j <= t) {
        let i = pBase + t * T + j;
        s = dscores[i];
        w = probs[i] * keep(i, key, p.drop, ks);
      }
      sd[e] = s;
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
    { ...t, state: s.state },
    params(s),
    perGroup(rt, s.B * s.H * Math.ceil(s.T / keysPerWorkgroup(s.hs))),
  );
}
