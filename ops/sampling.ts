// Sampling on the GPU: for each of B sequences, one workgroup turns a row of logits into the next
// token id, in the order the host reference (models/common.ts sampleLogits / filteredProbs) uses:
//   1. temperature: z = logits / temperature (temperature 0 = greedy: the first index of the max logit);
//   2. top-k: keep the k tokens first in the order (z descending, index ascending);
//   3. softmax over the kept tokens, then top-p: the smallest prefix of that order whose mass reaches p,
//      renormalised;
//   4. the draw: u in [0, 1), walk the tokens in index order subtracting p_i, pick the first with u < 0.
// `probs` receives the distribution of step 3 (one-hot for greedy): the kernel's scratch, and what the
// tests compare against filteredProbs. `order` is u32 scratch (order[rank] = token).
//
// The draw's u is counter-based, u = sampleUniform(seed, sequence, n): a pure function of the seed, the
// sequence index (sample i of --num-samples) and the draw index n (the n-th generated character), so a
// sample never depends on how many others run beside it or how the run was chunked. seed and n come
// from the u32 `state` tensor [seed, n] (written by the host once per chunk of steps); a dispatch adds
// its `step` uniform (0 .. chunk-1) to n, so the uniform buffers repeat from chunk to chunk.
//
// Ranking costs O(V²/64) per sequence (V is a character vocabulary); the prefix walk and the draw are
// sequential in one invocation, exactly in the host's order.
//
// Both kernel families share this kernel (a 64-invocation workgroup per sequence, coalesced row
// reads, tree reductions for the max and the kept mass): it is GPU-shaped already, and one kernel
// means the families draw identically from the same logits. The logits themselves come from the
// family's kernels and may differ by float rounding, so a seed's text is fixed per family and
// adapter; each family's draws are tested against the host reference.

import { f32, isCpuAdapter, LLVMPIPE_LOOP_LIMIT, type Runtime } from "./runtime.ts";
import type { Tensor } from "./tensor.ts";
import { HASH_WGSL, pcgHash } from "./hash.ts";

const WG = 64;

/**
 * Whether this kernel draws exactly at vocabulary size V on `rt`'s adapter: its ranking loops about
 * ⌈V/64⌉·V times per invocation, past llvmpipe's loop limit (runtime.ts) from V ≈ 2000 on, where the
 * rank would be cut short (greedy draws only take a max: always exact). Callers sample on the host
 * otherwise, until a sampler for large vocabularies replaces this one.
 */
export function gpuSamplingExact(rt: Runtime, V: number, greedy: boolean): boolean {
  return greedy || !isCpuAdapter(rt.adapter.info) || Math.ceil(V / WG) * V + 4 * V <= LLVMPIPE_LOOP_LIMIT;
}

export interface SampleParams {
  temperature: number; // 0 = greedy
  topK: number; // 0 = off
  topP: number; // 1 = off
}

const SAMPLE_WGSL = /* wgsl */ `${HASH_WGSL}
struct P { V: u32, rowStride: u32, rowOffset: u32, topK: u32, greedy: u32, seq0: u32, step: u32,
           temperature: f32, topP: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> probs: array<f32>;
@group(0) @binding(3) var<storage, read_write> order: array<u32>;
@group(0) @binding(4) var<storage, read_write> ids: array<u32>;
@group(0) @binding(5) var<storage, read> state: array<u32>;

const WG: u32 = ${WG}u;
const NONE: u32 = 0xffffffffu;
var<workgroup> redV: array<f32, ${WG}>;
var<workgroup> redI: array<u32, ${WG}>;
var<workgroup> cut: u32;
var<workgroup> kept: f32;

fn sample_uniform(seed: u32, seq: u32, n: u32) -> f32 {
  return f32(pcg_hash(n ^ pcg_hash(seq ^ pcg_hash(seed))) >> 8u) * (1.0 / 16777216.0);
}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wg.x;
  let V = p.V;
  let row = (b * p.rowStride + p.rowOffset) * V;
  let o = b * V;
  // 1. z = logits / temperature into probs (as scratch), and its max: the first index wins ties.
  var bv = -3.4028234e38; // -f32 max (Tint rejects 3.4028235e38 as out of range)
  var bi = NONE;
  for (var i = lid; i < V; i += WG) {
    let x = logits[row + i];
    let z = select(x / p.temperature, x, p.greedy != 0u);
    probs[o + i] = z;
    if (bi == NONE || z > bv) { bv = z; bi = i; }
  }
  redV[lid] = bv;
  redI[lid] = bi;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      let v2 = redV[lid + s];
      let i2 = redI[lid + s];
      let i1 = redI[lid];
      if (i2 != NONE && (i1 == NONE || v2 > redV[lid] || (v2 == redV[lid] && i2 < i1))) {
        redV[lid] = v2;
        redI[lid] = i2;
      }
    }
    workgroupBarrier();
  }
  let zmax = redV[0];
  let best = redI[0];
  workgroupBarrier(); // every invocation has read redV[0] before step 3 reuses redV
  if (p.greedy != 0u) {
    for (var i = lid; i < V; i += WG) { probs[o + i] = select(0.0, 1.0, i == best); }
    if (lid == 0u) { ids[b] = best; }
    return;
  }
  storageBarrier(); // z is in probs, written by every invocation, before the ranking reads all of it
  // 2. rank of every token in the order (z descending, index ascending): order[rank] = token.
  for (var i = lid; i < V; i += WG) {
    let zi = probs[o + i];
    var r = 0u;
    for (var j = 0u; j < V; j++) {
      let zj = probs[o + j];
      r += select(0u, 1u, zj > zi || (zj == zi && j < i));
    }
    order[o + r] = i;
  }
  storageBarrier(); // order, written by every invocation, before step 3 reads it
  // 3. unnormalised softmax over the top-k (each token is visited by exactly one invocation) ...
  var part = 0.0;
  for (var r = lid; r < V; r += WG) {
    let i = order[o + r];
    let e = select(0.0, exp(probs[o + i] - zmax), r < p.topK);
    probs[o + i] = e;
    part += e;
  }
  storageBarrier(); // the exponentials (token order[r] by the invocation of rank r) before the division
  redV[lid] = part;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { redV[lid] += redV[lid + s]; }
    workgroupBarrier();
  }
  let total = redV[0];
  for (var i = lid; i < V; i += WG) { probs[o + i] = probs[o + i] / total; }
  storageBarrier();
  // ... then top-p: the smallest prefix of the order whose mass reaches topP, renormalised.
  if (p.topP < 1.0) {
    if (lid == 0u) {
      var mass = 0.0;
      var r = 0u;
      for (; r < p.topK; r++) {
        mass += probs[o + order[o + r]];
        if (mass >= p.topP) { break; }
      }
      let c = min(r, p.topK - 1u);
      var t = 0.0;
      for (var q = 0u; q <= c; q++) { t += probs[o + order[o + q]]; }
      cut = c;
      kept = t;
    }
    workgroupBarrier(); // cut and kept
    storageBarrier(); // invocation 0's reads of probs before the others write it
    let c = cut;
    let t = kept;
    for (var r = lid; r < V; r += WG) {
      let i = order[o + r];
      probs[o + i] = select(0.0, probs[o + i] / t, r <= c);
    }
    storageBarrier();
  }
  // 4. the draw, in index order (the host reference's walk).
  if (lid == 0u) {
    var u = sample_uniform(state[0], p.seq0 + b, state[1] + p.step);
    var pick = NONE;
    var last = 0u;
    for (var i = 0u; i < V; i++) {
      let pi = probs[o + i];
      if (pi <= 0.0) { continue; }
      last = i;
      u -= pi;
      if (u < 0.0) { pick = i; break; }
    }
    ids[b] = select(pick, last, pick == NONE);
  }
}`;

/** TS mirror of the kernel's draw: u in [0, 1) (24 bits) for draw n of sequence `seq` under `seed`. */
export function sampleUniform(seed: number, seq: number, n: number): number {
  return (pcgHash((n ^ pcgHash((seq ^ pcgHash(seed >>> 0)) >>> 0)) >>> 0) >>> 8) / 16777216;
}

export interface SampleArgs extends SampleParams {
  B: number; // sequences (one workgroup each)
  V: number;
  rowStride?: number; // sequence b reads logits row b·rowStride + rowOffset (default 1, 0)
  rowOffset?: number;
  seq0?: number; // sequence b draws from stream seq0 + b (default 0)
  step?: number; // added to state[1] for the draw index (default 0)
}

/**
 * Record one sampling dispatch: ids[b] = the token drawn from logits row b·rowStride + rowOffset.
 * probs [B·V] receives the filtered distribution, order [B·V] (u32) is scratch, state = [seed, n, ..].
 */
export function sampleTokens(
  rt: Runtime,
  logits: Tensor,
  probs: Tensor,
  order: Tensor,
  ids: Tensor,
  state: Tensor,
  a: SampleArgs,
): void {
  const { B, V, rowStride = 1, rowOffset = 0, seq0 = 0, step = 0 } = a;
  if (!Number.isInteger(V) || V < 1 || !Number.isInteger(B) || B < 1) {
    throw new Error(`sampleTokens: bad shape B=${B} V=${V}`);
  }
  if (!(a.temperature >= 0) || !(a.topP > 0 && a.topP <= 1) || !(a.topK >= 0)) {
    throw new Error("sampleTokens: temperature must be >= 0, top-p in (0, 1], top-k >= 0");
  }
  if (logits.size < ((B - 1) * rowStride + rowOffset + 1) * V) {
    throw new Error("sampleTokens: logits too small");
  }
  if (probs.size < B * V || order.size < B * V || ids.size < B) {
    throw new Error("sampleTokens: output too small");
  }
  if (order.dtype !== "u32" || ids.dtype !== "u32" || state.dtype !== "u32" || state.size < 2) {
    throw new Error("sampleTokens: order, ids and state must be u32 (state = [seed, n])");
  }
  const topK = a.topK > 0 ? Math.min(a.topK, V) : V;
  const greedy = a.temperature === 0 ? 1 : 0;
  rt.dispatch(
    "sample",
    SAMPLE_WGSL,
    { logits, probs, order, ids, state },
    [V, rowStride, rowOffset, topK, greedy, seq0, step, f32(greedy ? 1 : a.temperature), f32(a.topP)],
    [B],
  );
}
