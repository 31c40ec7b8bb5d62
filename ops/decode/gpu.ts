// Decoding kernels, GPU family (the semantics are in ../decode.ts): a workgroup per (sequence, head)
// or per row, as the training kernels of the GPU family.
// * attentionDecode: one workgroup of 64 per (b, h). The query goes to workgroup memory (every
//   invocation reads the same address: a broadcast). Pass 1: invocation l scores keys l, l + 64, ...
//   with an online max and sum, combined by tree reductions. Pass 2: tiles of 64 keys; invocation l
//   puts the weight of key j0 + l in workgroup memory, then invocation l accumulates output
//   dimensions l, l + 64, ... over the tile's keys (consecutive invocations read consecutive v
//   values: coalesced). Weights are recomputed from the same scores as pass 1.
// * addLayernorm / embedLayernorm: one workgroup per row (../layernorm/gpu.ts' row body: coalesced
//   columns, exact two-pass mean and variance by tree reductions).
// At nanoGPT's shakespeare-char size (C = 384, H = 6, hs = 64), sampling B sequences: attention B·6
// workgroups of 64; the LayerNorms B workgroups of 128 (B·T of them for a window pass).

import { f32, grid1d, type Runtime } from "../runtime.ts";
import { workgroupReduceWGSL } from "../workgroup_reduce.ts";
import { LN_EPS } from "../layernorm.ts";
import { layernormRowWGSL, rowWG } from "../layernorm/gpu.ts";
import { type AttentionDecodeArgs, HEAD_ROWS, type LayernormDecodeArgs, NAN_BITS } from "./shared.ts";
import { cachedWGSL } from "../wgsl_cache.ts";

const ATT_WG = 64;

function attentionDecodeWGSL(hs: number): string {
  const D = Math.ceil(hs / ATT_WG);
  const eachD = (body: string) =>
    `for (var k = 0u; k < ${D}u; k++) { let d = l + k * ${ATT_WG}u; if (d < HS) { ${body} } }`;
  return /* wgsl */ `
struct P { B: u32, T: u32, C: u32, H: u32, t: u32, append: u32, scale: f32, stride: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> cache: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
const HS: u32 = ${hs}u;
const WG: u32 = ${ATT_WG}u;
var<workgroup> qs: array<f32, HS>;
var<workgroup> pw: array<f32, WG>;
${workgroupReduceWGSL(ATT_WG)}

fn score(ko: u32) -> f32 {
  var s = 0.0;
  for (var d = 0u; d < HS; d++) { s = fma(qs[d], cache[ko + d], s); }
  return s;
}

@compute @workgroup_size(${ATT_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  let bh = wid.x + wid.y * p.stride;
  if (bh >= p.B * p.H) { return; }
${HEAD_ROWS}
  if (p.append != 0u) {
    let s = b * C3 + h * HS;
    for (var d = l; d < HS; d += WG) {
      let q = src[s + d];
      qs[d] = q;
      cache[row + d] = q;
      cache[row + C + d] = src[s + C + d];
      cache[row + 2u * C + d] = src[s + 2u * C + d];
    }
  } else {
    for (var d = l; d < HS; d += WG) { qs[d] = cache[row + d]; }
  }
  storageBarrier();
  workgroupBarrier();
  // Pass 1: online max m and l = sum exp(s - m) of the scaled scores, per invocation, then combined.
  var m = -3.4028234e38; // -f32 max (Tint rejects 3.4028235e38 as out of range)
  var sum = 0.0;
  for (var j = l; j <= p.t; j += WG) {
    let s = score(base + j * C3 + C) * p.scale;
    let mn = max(m, s);
    sum = fma(sum, exp(m - mn), exp(s - mn));
    m = mn;
  }
  let mx = wg_max(l, m);
  let inv = 1.0 / wg_sum(l, sum * exp(m - mx));
  // Pass 2: out = P · v, a tile of WG keys at a time.
  var acc: array<f32, ${D}>;
  for (var j0 = 0u; j0 <= p.t; j0 += WG) {
    let j = j0 + l;
    var w = 0.0;
    if (j <= p.t) { w = exp(score(base + j * C3 + C) * p.scale - mx) * inv; }
    pw[l] = w;
    workgroupBarrier();
    let n = min(WG, p.t + 1u - j0);
    for (var i = 0u; i < n; i++) {
      let vo = base + (j0 + i) * C3 + 2u * C;
      let wi = pw[i];
      ${eachD("acc[k] = fma(wi, cache[vo + d], acc[k]);")}
    }
    workgroupBarrier();
  }
  let o = b * C + h * HS;
  ${eachD("out[o + d] = acc[k];")}
}`;
}

/** The GPU family's attentionDecode: a workgroup per (b, h). */
export function attentionDecodeGpu(rt: Runtime, a: AttentionDecodeArgs): void {
  const { B, T, C, H, t, hs } = a;
  const code = cachedWGSL(`decode/gpu/attention/${hs}`, () => attentionDecodeWGSL(hs));
  const { workgroups, stride } = grid1d(rt, B * H, 1);
  rt.dispatch(
    "attention_decode",
    code,
    a.views,
    [B, T, C, H, t, a.append ? 1 : 0, f32(1 / Math.sqrt(hs)), stride],
    workgroups,
  );
}

function layernormDecodeWGSL(embed: boolean, wg: number, K: number): string {
  const inputs = embed
    ? `@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> positions: array<u32>;
@group(0) @binding(3) var<storage, read> tok: array<f32>;
@group(0) @binding(4) var<storage, read> pos: array<f32>;`
    : `@group(0) @binding(1) var<storage, read> res: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;`;
  const n = embed ? 5 : 3;
  const rows = embed
    ? `let it = ids[m];
  let ip = positions[m];
  let valid = it < p.V && ip < p.T;
  let to = min(it, p.V - 1u) * p.C;
  let po = min(ip, p.T - 1u) * p.C;
  let nan = bitcast<f32>(p.nanBits);`
    : "let ro = (m * p.rStride + p.rOff) * p.C;";
  const load = embed ? "select(nan, tok[to + c] + pos[po + c], valid)" : "res[ro + c] + y[o + c]";
  return /* wgsl */ `
struct P { rows: u32, C: u32, rStride: u32, rOff: u32, V: u32, T: u32, eps: f32, nanBits: u32, stride: u32 }
@group(0) @binding(0) var<uniform> p: P;
${inputs}
@group(0) @binding(${n}) var<storage, read> w: array<f32>;
@group(0) @binding(${n + 1}) var<storage, read> b: array<f32>;
@group(0) @binding(${n + 2}) var<storage, read_write> out: array<f32>;
@group(0) @binding(${n + 3}) var<storage, read_write> xn: array<f32>;
${workgroupReduceWGSL(wg)}

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  let m = wid.x + wid.y * p.stride;
  if (m >= p.rows) { return; }
  let o = m * p.C;
  ${rows}
${layernormRowWGSL(wg, K, load, "out[o + c] = x[k]; xn[o + c] = fma((x[k] - mean) * rs, w[c], b[c]);")}
}`;
}

/** The GPU family's addLayernorm / embedLayernorm: a workgroup per row. */
export function layernormDecodeGpu(rt: Runtime, a: LayernormDecodeArgs): void {
  const { embed, rows, C } = a;
  const wg = rowWG(C), K = Math.ceil(C / wg);
  const code = cachedWGSL(
    `decode/gpu/layernorm/${embed}/${wg}/${K}`,
    () => layernormDecodeWGSL(embed, wg, K),
  );
  const { workgroups, stride } = grid1d(rt, rows, 1);
  rt.dispatch(
    embed ? "embed_layernorm" : "add_layernorm",
    code,
    a.views,
    [rows, C, a.rStride, a.rOff, a.V, a.T, f32(LN_EPS), NAN_BITS, stride],
    workgroups,
  );
}
