// Kernels of incremental decoding (models/gpt_decode.ts), one position per sequence at a time:
//
// * attentionDecode: causal self-attention of the one query at position t of each sequence against
//   the KV cache. The cache is the [B*T, 3C] qkv buffer of a full forward pass (ops/attention.ts's
//   layout: row (b, j) = [q | k | v]); the new position's row is appended to it (row t) first, then
//   out[b, h*hs ..] = softmax(q kᵀ · hs^-½ over keys j <= t) · v, with the same two passes as the
//   training kernel (online max and sum, then P·v). One invocation per (b, h).
// * appendTokens: after a draw, push each sequence's new id into its context window (ctx [B, T], the
//   token ids a full forward pass reads): at index len while the window has room, else shift the
//   window left by one and put it last. Also stores it in the history [B, cap] at `slot` (what the
//   host reads back, a chunk at a time) and its position in the window in pos [B] (what the next
//   incremental step's position embedding gathers).
// * addLayernorm / embedLayernorm (below): the eval-mode residual add (or the two embedding gathers)
//   fused with the LayerNorm that follows, so a decode pass has fewer dispatches: at B = 1 most
//   kernels cost lavapipe's per-dispatch floor, whatever their size.

import { f32, groups, type Runtime } from "./runtime.ts";
import { Tensor } from "./tensor.ts";
import { MAX_HS } from "./attention.ts";
import { LN_EPS } from "./layernorm.ts";

const WG = 64;

function attentionDecodeWGSL(hs: number): string {
  return /* wgsl */ `
struct P { B: u32, T: u32, C: u32, H: u32, t: u32, append: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> cache: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
const HS: u32 = ${hs}u;

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let bh = g.x;
  if (bh >= p.B * p.H) { return; }
  let b = bh / p.H;
  let h = bh % p.H;
  let C = p.C;
  let C3 = 3u * C;
  let base = b * p.T * C3 + h * HS; // q of (b, 0), head h; + C for k, + 2C for v
  let row = base + p.t * C3;
  var q: array<f32, HS>;
  if (p.append != 0u) {
    let s = b * C3 + h * HS;
    for (var d = 0u; d < HS; d++) {
      q[d] = src[s + d];
      cache[row + d] = q[d];
      cache[row + C + d] = src[s + C + d];
      cache[row + 2u * C + d] = src[s + 2u * C + d];
    }
  } else {
    for (var d = 0u; d < HS; d++) { q[d] = cache[row + d]; }
  }
  // Pass 1: online row max m and l = sum exp(s - m) of the scaled scores.
  var m = -3.4028234e38; // -f32 max (Tint rejects 3.4028235e38 as out of range)
  var l = 0.0;
  for (var j = 0u; j <= p.t; j++) {
    let ko = base + j * C3 + C;
    var s = 0.0;
    for (var d = 0u; d < HS; d++) { s = fma(q[d], cache[ko + d], s); }
    s = s * p.scale;
    let mn = max(m, s);
    l = fma(l, exp(m - mn), exp(s - mn));
    m = mn;
  }
  // Pass 2: out = P · v.
  let inv = 1.0 / l;
  var acc: array<f32, HS>;
  for (var j = 0u; j <= p.t; j++) {
    let ko = base + j * C3 + C;
    var s = 0.0;
    for (var d = 0u; d < HS; d++) { s = fma(q[d], cache[ko + d], s); }
    let w = exp(s * p.scale - m) * inv;
    for (var d = 0u; d < HS; d++) { acc[d] = fma(w, cache[ko + C + d], acc[d]); }
  }
  let o = b * C + h * HS;
  for (var d = 0u; d < HS; d++) { out[o + d] = acc[d]; }
}`;
}

const attnCache = new Map<number, string>();

/**
 * Attention of the query at position t (0-based, < T) of each of B sequences over positions 0..t.
 * cache: [B*T, 3C] qkv rows (positions < t filled). With `row` ([B, 3C], the new position's qkv) it
 * is first written into cache row t; with row = null, row t of the cache is already there (the last
 * position of a full pass). out: [B, C].
 */
export function attentionDecode(
  rt: Runtime,
  row: Tensor | null,
  cache: Tensor,
  out: Tensor,
  B: number,
  T: number,
  C: number,
  H: number,
  t: number,
): void {
  if (C % H !== 0) throw new Error(`attentionDecode: C=${C} is not divisible by H=${H}`);
  const hs = C / H;
  if (hs > MAX_HS) throw new Error(`attentionDecode: head size ${hs} exceeds ${MAX_HS}`);
  if (!Number.isInteger(t) || t < 0 || t >= T) throw new Error(`attentionDecode: t=${t} outside [0, ${T})`);
  if (cache.size < B * T * 3 * C || out.size < B * C || (row && row.size < B * 3 * C)) {
    throw new Error("attentionDecode: tensor too small");
  }
  let code = attnCache.get(hs);
  if (!code) attnCache.set(hs, code = attentionDecodeWGSL(hs));
  // Without a new row `src` is not read, but must be bound: to a small placeholder (binding the
  // cache there too would be a read/read_write aliasing error).
  rt.dispatch(
    "attention_decode",
    code,
    { src: row ?? dummy(rt), cache, out },
    [B, T, C, H, t, row ? 1 : 0, f32(1 / Math.sqrt(hs))],
    [groups(B * H, WG)],
  );
}

const dummies = new WeakMap<Runtime, Tensor>();
function dummy(rt: Runtime): Tensor {
  let d = dummies.get(rt);
  if (!d) {
    d = Tensor.empty(rt, [4], "f32", "attention-decode-placeholder");
    dummies.set(rt, d);
  }
  return d;
}

const APPEND_WGSL = /* wgsl */ `
struct P { T: u32, len: u32, cap: u32, slot: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> ctx: array<u32>;
@group(0) @binding(3) var<storage, read_write> hist: array<u32>;
@group(0) @binding(4) var<storage, read_write> pos: array<u32>;
const WG: u32 = ${WG}u;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wg.x;
  let T = p.T;
  let w = b * T;
  let id = ids[b];
  if (p.len >= T) {
    // Shift left by one, WG entries at a time: all reads of a block happen before its writes.
    for (var c = 0u; c < T; c += WG) {
      let j = c + lid;
      var v = 0u;
      if (j + 1u < T) { v = ctx[w + j + 1u]; }
      storageBarrier();
      if (j + 1u < T) { ctx[w + j] = v; }
      storageBarrier();
    }
  }
  if (lid == 0u) {
    let at = min(p.len, T - 1u);
    ctx[w + at] = id;
    pos[b] = at;
    hist[b * p.cap + p.slot] = id;
  }
}`;

/**
 * After a draw: ids [B] -> context windows ctx [B*T] (len = ids already in each window: append at
 * len if len < T, else shift left and put it at T-1), history hist [B*cap] at `slot`, and pos [B]
 * (the new id's position in its window).
 */
export function appendTokens(
  rt: Runtime,
  ids: Tensor,
  ctx: Tensor,
  hist: Tensor,
  pos: Tensor,
  B: number,
  T: number,
  len: number,
  cap: number,
  slot: number,
): void {
  for (const t of [ids, ctx, hist, pos]) {
    if (t.dtype !== "u32") throw new Error("appendTokens: u32 tensors only");
  }
  if (ids.size < B || pos.size < B || ctx.size < B * T || hist.size < B * cap) {
    throw new Error("appendTokens: tensor too small");
  }
  if (!(len >= 0 && len <= T && slot >= 0 && slot < cap)) {
    throw new Error("appendTokens: len/slot out of range");
  }
  rt.dispatch("append_tokens", APPEND_WGSL, { ids, ctx, hist, pos }, [T, len, cap, slot], [B]);
}

// ---------------------------------------------------------------- residual add + LayerNorm (decoding)
//
// addLayernorm: the residual update of eval mode (dropout off) and the next LayerNorm in one kernel,
// for the decode path (no backward, so no mean/rstd are saved): out[m] = res[m·rStride + rOff] + y[m],
// xn[m] = LayerNorm(out[m])·w + b (ops/layernorm.ts's semantics: biased variance, eps 1e-5, Welford's
// one-pass mean and variance). One invocation per row. rStride/rOff pick each sequence's last row
// out of a [B·T, C] window buffer (the last layer of a window pass needs only that row).
// embedLayernorm: the same with the token and position embedding gathers as the two summands
// (out[m] = tok[ids[m]] + pos[positions[m]], then the first block's LayerNorm); an id or position
// outside its table gives a NaN row, as embeddingForward does.

const ADD_LN_WG = 32;
// An out-of-range id's NaN, passed as a uniform word: WGSL rejects a NaN constant expression (Tint
// errors on bitcast<f32>(0x7fc00000u); naga accepts it), as in ops/embedding.ts.
const NAN_BITS = 0x7fc00000;

// L = 4: rows read and written as vec4 (C % 4 == 0, 16-byte aligned views): on lavapipe each storage
// access is a per-lane loop, so a vec4 access costs about what a scalar one does.
function addLayernormWGSL(embed: boolean, L: 1 | 4): string {
  const ty = L === 4 ? "vec4<f32>" : "f32";
  const inputs = embed
    ? `@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> positions: array<u32>;
@group(0) @binding(3) var<storage, read> tok: array<${ty}>;
@group(0) @binding(4) var<storage, read> pos: array<${ty}>;`
    : `@group(0) @binding(1) var<storage, read> res: array<${ty}>;
@group(0) @binding(2) var<storage, read> y: array<${ty}>;`;
  const n = embed ? 5 : 3;
  const rows = embed
    ? `let it = ids[m];
  let ip = positions[m];
  let valid = it < p.V && ip < p.T;
  let to = min(it, p.V - 1u) * CL;
  let po = min(ip, p.T - 1u) * CL;`
    : "let ro = (m * p.rStride + p.rOff) * CL;";
  const x = embed
    ? `select(${ty}(bitcast<f32>(p.nanBits)), tok[to + c] + pos[po + c], valid)`
    : "res[ro + c] + y[o + c]";
  const comps = L === 4 ? ["xv.x", "xv.y", "xv.z", "xv.w"] : ["xv"];
  const welford = comps.map((v, j) =>
    `    {
      let x = ${v};
      let d = x - mean;
      mean = fma(d, 1.0 / f32(c * ${L}u + ${j + 1}u), mean);
      q = fma(d, x - mean, q);
    }`
  ).join("\n");
  return /* wgsl */ `
struct P { rows: u32, C: u32, rStride: u32, rOff: u32, V: u32, T: u32, eps: f32, nanBits: u32 }
@group(0) @binding(0) var<uniform> p: P;
${inputs}
@group(0) @binding(${n}) var<storage, read> w: array<${ty}>;
@group(0) @binding(${n + 1}) var<storage, read> b: array<${ty}>;
@group(0) @binding(${n + 2}) var<storage, read_write> out: array<${ty}>;
@group(0) @binding(${n + 3}) var<storage, read_write> xn: array<${ty}>;

@compute @workgroup_size(${ADD_LN_WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let m = g.x;
  if (m >= p.rows) { return; }
  let CL = p.C / ${L}u;
  let o = m * CL;
  ${rows}
  var mean = 0.0;
  var q = 0.0;
  for (var c = 0u; c < CL; c++) {
    let xv = ${x};
    out[o + c] = xv;
${welford}
  }
  let rs = inverseSqrt(q / f32(p.C) + p.eps);
  for (var c = 0u; c < CL; c++) {
    xn[o + c] = fma((out[o + c] - ${ty}(mean)) * rs, w[c], b[c]);
  }
}`;
}

const lnCode = new Map<string, string>();
function addLayernormCode(embed: boolean, C: number, views: Tensor[]): string {
  const L = C % 4 === 0 && views.every((t) => t.offset % 16 === 0) ? 4 : 1;
  const key = `${embed}${L}`;
  let code = lnCode.get(key);
  if (!code) lnCode.set(key, code = addLayernormWGSL(embed, L));
  return code;
}

/** w, b [C]; out and xn [rows, C], in buffers of their own (not an input's, not each other's). */
function checkLayernormArgs(
  label: string,
  inputs: Tensor[],
  [w, b, out, xn]: Tensor[],
  rows: number,
  C: number,
) {
  if (w.size !== C || b.size !== C) throw new Error(`${label}: w/b must have ${C} values`);
  if (out.size < rows * C || xn.size < rows * C) throw new Error(`${label}: out/xn too small`);
  for (const t of [out, xn]) {
    for (const r of [...inputs, w, b]) {
      if (t.buffer === r.buffer) throw new Error(`${label}: an output shares a buffer with an input`);
    }
  }
  if (out.buffer === xn.buffer) throw new Error(`${label}: out and xn share a buffer`);
}

/**
 * out [rows, C] = res rows (row m is res row m·rStride + rOff) + y [rows, C]; xn = LayerNorm(out)·w + b.
 */
export function addLayernorm(
  rt: Runtime,
  res: Tensor,
  y: Tensor,
  w: Tensor,
  b: Tensor,
  out: Tensor,
  xn: Tensor,
  rows: number,
  C: number,
  rStride = 1,
  rOff = 0,
): void {
  checkLayernormArgs("addLayernorm", [res, y], [w, b, out, xn], rows, C);
  if (y.size < rows * C) throw new Error("addLayernorm: y too small");
  if (rows > 0 && res.size < ((rows - 1) * rStride + rOff + 1) * C) {
    throw new Error("addLayernorm: res too small");
  }
  rt.dispatch(
    "add_layernorm",
    addLayernormCode(false, C, [res, y, w, b, out, xn]),
    { res, y, w, b, out, xn },
    [
      rows,
      C,
      rStride,
      rOff,
      0,
      0,
      f32(LN_EPS),
      NAN_BITS,
    ],
    [
      groups(rows, ADD_LN_WG),
    ],
  );
}

/**
 * out [rows, C] = tok[ids[m]] + pos[positions[m]] (tok [V, C], pos [T, C]); xn = LayerNorm(out)·w + b.
 */
export function embedLayernorm(
  rt: Runtime,
  ids: Tensor,
  positions: Tensor,
  tok: Tensor,
  pos: Tensor,
  w: Tensor,
  b: Tensor,
  out: Tensor,
  xn: Tensor,
  rows: number,
): void {
  const [V, C] = tok.shape, T = pos.shape[0];
  if (tok.shape.length !== 2 || pos.shape.length !== 2 || pos.shape[1] !== C) {
    throw new Error(`embedLayernorm: tables [${tok.shape}] and [${pos.shape}] must be [V, C] and [T, C]`);
  }
  if (ids.dtype !== "u32" || positions.dtype !== "u32" || ids.size < rows || positions.size < rows) {
    throw new Error("embedLayernorm: ids/positions must be u32 with a value per row");
  }
  checkLayernormArgs("embedLayernorm", [ids, positions, tok, pos], [w, b, out, xn], rows, C);
  const views = { ids, positions, tok, pos, w, b, out, xn };
  rt.dispatch("embed_layernorm", addLayernormCode(true, C, [tok, pos, w, b, out, xn]), views, [
    rows,
    C,
    0,
    0,
    V,
    T,
    f32(LN_EPS),
    NAN_BITS,
  ], [groups(rows, ADD_LN_WG)]);
}
