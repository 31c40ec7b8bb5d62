// Decoding kernels, CPU family (the semantics are in ../decode.ts): shaped for llvmpipe/lavapipe,
// where a SIMD lane per (sequence, head) or per row is cheapest.
// * attentionDecode: one invocation per (b, h), the two passes of the training kernel (online max
//   and sum, then P·v) over keys j <= t, the query and the output in registers.
// * addLayernorm / embedLayernorm: one invocation per row, Welford's one-pass mean and variance,
//   rows read and written as vec4 where C % 4 == 0 and the views are 16-byte aligned.

import { f32, groups, type Runtime } from "../runtime.ts";
import { LN_EPS } from "../layernorm.ts";
import { type AttentionDecodeArgs, HEAD_ROWS, type LayernormDecodeArgs, NAN_BITS } from "./shared.ts";
import { cachedWGSL } from "../wgsl_cache.ts";

const WG = 64;
const ADD_LN_WG = 32;

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
${HEAD_ROWS}
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

/** The CPU family's attentionDecode: one invocation per (b, h). */
export function attentionDecodeCpu(rt: Runtime, a: AttentionDecodeArgs): void {
  const { B, T, C, H, t, hs } = a;
  const code = cachedWGSL(`decode/cpu/attention/${hs}`, () => attentionDecodeWGSL(hs));
  rt.dispatch("attention_decode", code, a.views, [B, T, C, H, t, a.append ? 1 : 0, f32(1 / Math.sqrt(hs))], [
    groups(B * H, WG),
  ]);
}

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

function addLayernormCode(embed: boolean, C: number, aligned: boolean): string {
  const L = C % 4 === 0 && aligned ? 4 : 1;
  return cachedWGSL(`decode/cpu/layernorm/${embed}/${L}`, () => addLayernormWGSL(embed, L));
}

/** The CPU family's addLayernorm / embedLayernorm (embed: the views hold ids, positions, tok, pos). */
export function layernormDecodeCpu(rt: Runtime, a: LayernormDecodeArgs): void {
  const { embed, rows, C } = a;
  rt.dispatch(
    embed ? "embed_layernorm" : "add_layernorm",
    addLayernormCode(embed, C, a.aligned),
    a.views,
    [rows, C, a.rStride, a.rOff, a.V, a.T, f32(LN_EPS), NAN_BITS],
    [groups(rows, ADD_LN_WG)],
  );
}
