// Sampling on the GPU: for each of B sequences, one workgroup turns a row of logits into the next
// token id, with the host reference's semantics (models/common.ts sampleLogits / filteredProbs):
//   1. temperature: z = logits / temperature (temperature 0 = greedy: the first index of the max logit);
//   2. top-k: keep the k tokens first in the order (z descending, index ascending);
//   3. softmax over the kept tokens, then top-p: the smallest prefix of that order whose mass reaches p,
//      renormalised;
//   4. the draw: u in [0, 1), walk the tokens in index order subtracting p_i, pick the first with u < 0
//      (the last kept token if rounding leaves u >= 0).
// `probs` receives the distribution of step 3 (one-hot for greedy): the kernel's scratch, and what the
// tests compare against filteredProbs.
//
// The draw's u is counter-based, u = sampleUniform(seed, sequence, n): a pure function of the seed, the
// sequence index (sample i of --num-samples) and the draw index n (the n-th generated token), so a
// sample never depends on how many others run beside it or how the run was chunked. seed and n come
// from the u32 `state` tensor [seed, n] (written by the host once per chunk of steps); a dispatch adds
// its `step` uniform (0 .. chunk-1) to n, so the uniform buffers repeat from chunk to chunk.
//
// Work is O(V) per sequence, so it serves GPT-2's 50257 tokens as well as a character vocabulary:
// greedy is one max-reduce pass; top-k and top-p about 20 passes over the row. The kernel never sorts. A prefix of the order (z descending, index
// ascending) is "every token whose key is above a threshold key, plus the first m tokens, in index
// order, of the ties at the threshold", where key is z's f32 bit pattern mapped to a u32 of the same
// order. Tokens with equal z have equal probabilities, so:
//   * top-k: a search on the key for the k-th largest: 8 passes, each counting the tokens at or above
//     16 pivots that split the remaining key interval (so 4 bits a pass, 32 bits in 8); keep the keys
//     above it and the first k - (count above) of its ties;
//   * top-p: the same search on the (unnormalised) probability mass of the top-k set instead of the
//     count: the largest key whose mass at or above reaches p·(top-k mass); of its ties keep the fewest
//     m whose mass reaches it (m = ⌈(p·total − mass above) / e⌉, as each tie adds the same e);
//   * the kept set's ties are ranked in index order by contiguous chunks per invocation and a
//     scan of the chunks' tie counts, and the draw's walk in index order is a scan of the chunks' sums
//     and a walk inside the one chunk where u falls.
// The sums are in a fixed order (two-level serial reductions, serial scans), never float atomics: same
// logits and seed → same id. The kept set, its probabilities and the walk's order are those of the
// O(V²) ranking kernel this replaces: at V = 65 the same seed draws the same ids (all of 2 × 10240
// draws compared, both families), except where a rounding of the sums (the kept mass at the top-p cut,
// the cumulative mass at u) would land on the other side of a bound.
//
// Both kernel families share this kernel, in two shapes (workgroupSize: 128 invocations a sequence in
// the gpu family, with coalesced row reads in the search passes; 8 or 32 in the cpu family, where
// barriers are dear). The shape changes only the order of float sums, so the families keep the same
// tokens and draw the same ids but where a sum's rounding crosses a bound. The logits themselves come
// from the family's kernels and may differ by float rounding, so a seed's text is fixed per family and
// adapter; each family's draws are tested against the host reference.

import { f32, isCpuAdapter, LLVMPIPE_LOOP_LIMIT, type Runtime } from "./runtime.ts";
import type { Tensor } from "./tensor.ts";
import { HASH_WGSL, pcgHash } from "./hash.ts";

/** Strided or chunked passes over the row, per invocation, in the longest (top-k and top-p) case. */
const PASSES = 21;
/** An invocation's loop iterations at vocabulary V, workgroup size wg (the passes, the serial scans). */
const loops = (V: number, wg: number) => PASSES * Math.ceil(V / wg) + 2048;

/**
 * Invocations per workgroup (one workgroup per sequence): 128 in the gpu family. In the cpu family the
 * fewest of 8, 32 and 128 whose loops stay under llvmpipe's loop limit (runtime.ts) at V: a CPU adapter
 * runs a workgroup as SIMD batches of 8 invocations that take turns at every barrier, and a filtered
 * draw has about 60 barriers (measured on lavapipe, 4000 sequences at V = 9: 2.0 s with 32
 * invocations, 0.37 s with 8). The shape changes only the order of the float sums.
 */
function workgroupSize(rt: Runtime, V: number): number {
  if (rt.kernels === "gpu") return 128;
  return [8, 32].find((wg) => loops(V, wg) <= LLVMPIPE_LOOP_LIMIT) ?? 128;
}

/**
 * Whether this kernel draws exactly at vocabulary size V on `rt`'s adapter: each invocation loops
 * about 21·⌈V/workgroup size⌉ times, which must stay under llvmpipe's loop limit (runtime.ts), so V up
 * to about 390,000 (128 invocations). Callers sample on the host otherwise.
 */
export function gpuSamplingExact(rt: Runtime, V: number, greedy: boolean): boolean {
  return greedy || !isCpuAdapter(rt.adapter.info) || loops(V, workgroupSize(rt, V)) <= LLVMPIPE_LOOP_LIMIT;
}

export interface SampleParams {
  temperature: number; // 0 = greedy
  topK: number; // 0 = off
  topP: number; // 1 = off
}

const sampleWgsl = (WG: number) =>
  /* wgsl */ `${HASH_WGSL}
struct P { V: u32, rowStride: u32, rowOffset: u32, topK: u32, greedy: u32, seq0: u32, step: u32,
           temperature: f32, topP: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> probs: array<f32>;
@group(0) @binding(3) var<storage, read_write> ids: array<u32>;
@group(0) @binding(4) var<storage, read> state: array<u32>;

const WG: u32 = ${WG}u;
const GROUPS: u32 = ${Math.min(16, WG)}u;
const NONE: u32 = 0xffffffffu;
// The 16 pivot sums of a search round, 4 vec4s per invocation (whole vec4s written), then reduced.
var<workgroup> red: array<vec4<f32>, ${4 * WG}>;
var<workgroup> redV: array<f32, ${WG}>;
var<workgroup> redI: array<u32, ${WG}>;
var<workgroup> scanTotal: f32;
var<workgroup> scanCount: u32;
var<workgroup> scanLast: u32;

fn sample_uniform(seed: u32, seq: u32, n: u32) -> f32 {
  return f32(pcg_hash(n ^ pcg_hash(seq ^ pcg_hash(seed))) >> 8u) * (1.0 / 16777216.0);
}

// z's f32 bits as a u32 of the same order (-0 as +0, so that they tie as on the host), and back.
fn key_of(z: f32) -> u32 {
  let b = select(bitcast<u32>(z), 0u, bitcast<u32>(z) == 0x80000000u);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}
fn z_of(k: u32) -> f32 {
  return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}

// The 16 sums of the 4 vec4s of every invocation into red[0..3], in two serial levels (GROUPS
// invocations each sum WG/GROUPS entries, then invocation 0 sums theirs): three barriers, where a tree
// takes log2(WG) + 1, and barriers are what a workgroup pays most for on CPU adapters. Starts with a
// barrier, so that the previous reduction's results have been read everywhere before they are
// overwritten.
fn reduce16(lid: u32, a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>) {
  workgroupBarrier();
  red[4u * lid] = a0;
  red[4u * lid + 1u] = a1;
  red[4u * lid + 2u] = a2;
  red[4u * lid + 3u] = a3;
  workgroupBarrier();
  if (lid < GROUPS) {
    var s0 = red[4u * lid];
    var s1 = red[4u * lid + 1u];
    var s2 = red[4u * lid + 2u];
    var s3 = red[4u * lid + 3u];
    for (var j = lid + GROUPS; j < WG; j += GROUPS) {
      s0 += red[4u * j];
      s1 += red[4u * j + 1u];
      s2 += red[4u * j + 2u];
      s3 += red[4u * j + 3u];
    }
    red[4u * lid] = s0;
    red[4u * lid + 1u] = s1;
    red[4u * lid + 2u] = s2;
    red[4u * lid + 3u] = s3;
  }
  workgroupBarrier();
  if (lid == 0u) {
    var s0 = red[0];
    var s1 = red[1];
    var s2 = red[2];
    var s3 = red[3];
    for (var j = 1u; j < GROUPS; j++) {
      s0 += red[4u * j];
      s1 += red[4u * j + 1u];
      s2 += red[4u * j + 2u];
      s3 += red[4u * j + 3u];
    }
    red[0] = s0;
    red[1] = s1;
    red[2] = s2;
    red[3] = s3;
  }
  workgroupBarrier();
}

// A threshold key and the measure (count or mass) of the tokens above it.
struct Cut { key: u32, above: f32 }

// The largest key K in [lo, hi] whose measure F(K) (tokens with key >= K counted, or their
// exp(z - zmax) summed) reaches goal, given F(lo) >= goal > F(hi + 1) = 0. Each round measures 16
// pivots splitting (lo, hi] into equal steps and keeps the step where F crosses the goal: the
// interval shrinks 16-fold, from 2^32 keys to one in 8 passes. F is monotone in K as computed (nested
// sets of non-negative terms summed in one order), so the crossing is well defined.
fn search(lid: u32, row: u32, zmax: f32, lo0: u32, hi0: u32, goal: f32, mass: bool) -> Cut {
  var lo = lo0;
  var hi = hi0;
  var above = 0.0;
  for (var it = 0u; it < 8u; it++) {
    let w = hi - lo;
    let st = w / 16u + 1u;
    let valid = w / st; // pivots lo + j·st for j = 1..valid lie in (lo, hi]; the others are ignored
    // The pivots as scalars: a vec4<u32> of keys would be just as fast (the lanes of a SIMD batch are
    // invocations, not components) but the race check's interpreter holds vector components as floats.
    let q1 = lo + st;
    let q2 = q1 + st;
    let q3 = q2 + st;
    let q4 = q3 + st;
    let q5 = q4 + st;
    let q6 = q5 + st;
    let q7 = q6 + st;
    let q8 = q7 + st;
    let q9 = q8 + st;
    let q10 = q9 + st;
    let q11 = q10 + st;
    let q12 = q11 + st;
    let q13 = q12 + st;
    let q14 = q13 + st;
    let q15 = q14 + st;
    let q16 = q15 + st;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var i = lid; i < p.V; i += WG) {
      let z = logits[row + i] / p.temperature;
      let k = key_of(z);
      let x = select(1.0, exp(z - zmax), mass);
      a0 += vec4<f32>(select(0.0, x, k >= q1), select(0.0, x, k >= q2), select(0.0, x, k >= q3), select(0.0, x, k >= q4));
      a1 += vec4<f32>(select(0.0, x, k >= q5), select(0.0, x, k >= q6), select(0.0, x, k >= q7), select(0.0, x, k >= q8));
      a2 += vec4<f32>(select(0.0, x, k >= q9), select(0.0, x, k >= q10), select(0.0, x, k >= q11), select(0.0, x, k >= q12));
      a3 += vec4<f32>(select(0.0, x, k >= q13), select(0.0, x, k >= q14), select(0.0, x, k >= q15), select(0.0, x, k >= q16));
    }
    reduce16(lid, a0, a1, a2, a3);
    let t = vec4<f32>(goal);
    let j0 = vec4<u32>(1u, 2u, 3u, 4u);
    let ok = vec4<u32>(1u);
    let none = vec4<u32>(0u);
    // J = the valid pivots that reach the goal (a prefix of them, F being monotone).
    let c = select(none, ok, (red[0] >= t) & (j0 <= vec4<u32>(valid))) +
      select(none, ok, (red[1] >= t) & (j0 + 4u <= vec4<u32>(valid))) +
      select(none, ok, (red[2] >= t) & (j0 + 8u <= vec4<u32>(valid))) +
      select(none, ok, (red[3] >= t) & (j0 + 12u <= vec4<u32>(valid)));
    let J = c.x + c.y + c.z + c.w;
    if (J < valid) {
      hi = lo + (J + 1u) * st - 1u;
      above = red[J >> 2u][J & 3u];
    }
    lo += J * st;
  }
  return Cut(lo, above);
}

// The sum of every invocation's x (two serial levels, as reduce16), read by all.
fn reduce_sum(lid: u32, x: f32) -> f32 {
  workgroupBarrier();
  redV[lid] = x;
  workgroupBarrier();
  if (lid < GROUPS) {
    var t = redV[lid];
    for (var j = lid + GROUPS; j < WG; j += GROUPS) { t += redV[j]; }
    redV[lid] = t;
  }
  workgroupBarrier();
  if (lid == 0u) {
    var t = redV[0];
    for (var j = 1u; j < GROUPS; j++) { t += redV[j]; }
    redV[0] = t;
  }
  workgroupBarrier();
  return redV[0];
}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wg.x;
  let V = p.V;
  let row = (b * p.rowStride + p.rowOffset) * V;
  let o = b * V;
  // 1. the max of z (greedy: temperature is 1, z the logits): the first index wins ties.
  var bv = -3.4028234e38; // -f32 max (Tint rejects 3.4028235e38 as out of range)
  var bi = NONE;
  for (var i = lid; i < V; i += WG) {
    let z = logits[row + i] / p.temperature;
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
  if (p.greedy != 0u) {
    for (var i = lid; i < V; i += WG) { probs[o + i] = select(0.0, 1.0, i == best); }
    if (lid == 0u) { ids[b] = best; }
    return;
  }
  let keymax = key_of(zmax);
  // 2. top-k: keep the keys above kk and the first \`need\` ties at kk (off: kk = 0, below every
  // finite z's key, need = 0).
  var kk = 0u;
  var need = 0u;
  if (p.topK < V) {
    let c = search(lid, row, zmax, 0u, keymax, f32(p.topK), false);
    kk = c.key;
    need = p.topK - u32(c.above);
  }
  // 3. the top-k set's mass: the keys above kk, plus \`need\` ties of equal e.
  var part = 0.0;
  for (var i = lid; i < V; i += WG) {
    let z = logits[row + i] / p.temperature;
    part += select(0.0, exp(z - zmax), key_of(z) > kk);
  }
  let total = reduce_sum(lid, part) + select(0.0, f32(need) * exp(z_of(kk) - zmax), need > 0u);
  // ... and top-p: the threshold key kf of the cut, and m, the ties at kf it keeps (then at most the
  // ties there are; at kf = kk at most \`need\`).
  var kf = kk;
  var m = need;
  if (p.topP < 1.0) {
    let goal = p.topP * total;
    let c = search(lid, row, zmax, kk, keymax, goal, true);
    let e = exp(z_of(c.key) - zmax);
    let mt = u32(clamp(ceil((goal - c.above) / e), 1.0, 16777216.0));
    m = select(mt, min(mt, need), c.key == kk);
    kf = c.key;
  }
  // 4. the kept set in index order: each invocation a contiguous chunk; a serial scan of the chunks'
  // tie counts ranks the ties at kf.
  let chunk = (V + WG - 1u) / WG;
  let i0 = min(lid * chunk, V);
  let i1 = min(i0 + chunk, V);
  var ties = 0u;
  for (var i = i0; i < i1; i++) {
    ties += select(0u, 1u, key_of(logits[row + i] / p.temperature) == kf);
  }
  workgroupBarrier(); // redV/redI read by all (steps 1 and 3) before they are rewritten
  redI[lid] = ties;
  workgroupBarrier();
  if (lid == 0u) {
    var s = 0u;
    for (var j = 0u; j < WG; j++) {
      let t = redI[j];
      redI[j] = s;
      s += t;
    }
    scanCount = s;
  }
  workgroupBarrier();
  var rank = redI[lid];
  let keepTies = min(m, scanCount);
  // Unnormalised kept probabilities into probs, summed in index order per chunk.
  var sum = 0.0;
  var last = 0u; // 1 + the last kept index, 0 = none
  for (var i = i0; i < i1; i++) {
    let z = logits[row + i] / p.temperature;
    let k = key_of(z);
    var keep = k > kf;
    if (k == kf) {
      keep = rank < keepTies;
      rank++;
    }
    let e = select(0.0, exp(z - zmax), keep);
    probs[o + i] = e;
    sum += e;
    if (keep) { last = i + 1u; }
  }
  workgroupBarrier(); // every invocation has read redI[lid] and scanCount
  redV[lid] = sum;
  redI[lid] = last;
  workgroupBarrier();
  if (lid == 0u) {
    var s = 0.0;
    var l = 0u;
    for (var j = 0u; j < WG; j++) {
      let t = redV[j];
      redV[j] = s;
      s += t;
      l = max(l, redI[j]);
    }
    scanTotal = s;
    scanLast = l;
  }
  workgroupBarrier();
  // 5. normalise, and the draw: the cumulative kept mass first exceeds u·total inside the chunk whose
  // prefix is at most u·total and whose own sum takes it past (r = u·total − prefix < sum; the walk
  // below adds the same terms in the same order as \`sum\`, so it crosses inside the chunk).
  let t = scanTotal;
  let ut = sample_uniform(state[0], p.seq0 + b, state[1] + p.step) * t;
  let before = redV[lid];
  let mine = ut >= before && ut - before < sum;
  let r = ut - before;
  var acc = 0.0;
  var pick = NONE;
  for (var i = i0; i < i1; i++) {
    let e = probs[o + i];
    probs[o + i] = e / t;
    acc += e;
    if (mine && pick == NONE && e > 0.0 && acc > r) { pick = i; }
  }
  // One chunk claims the draw; if rounding leaves none (or two), the lowest pick, else the last kept.
  workgroupBarrier(); // every invocation has read redV[lid], scanTotal and scanLast
  redI[lid] = pick;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { redI[lid] = min(redI[lid], redI[lid + s]); }
    workgroupBarrier();
  }
  if (lid == 0u) { ids[b] = select(redI[0], max(scanLast, 1u) - 1u, redI[0] == NONE); }
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
  /** Invocations per sequence, one of SAMPLE_WORKGROUP_SIZES (default: the family's shape for V). */
  workgroupSize?: number;
}

/**
 * The kernel's workgroup shapes (see workgroupSize). The race check forces each one at a small V, where
 * the detector's interpreter is quick: the code is the same at every V but for the shape.
 */
export const SAMPLE_WORKGROUP_SIZES: readonly number[] = [8, 32, 128];

/**
 * Record one sampling dispatch: ids[b] = the token drawn from logits row b·rowStride + rowOffset.
 * probs [B·V] receives the filtered distribution (the kernel's scratch), state = [seed, n, ..] (u32).
 */
export function sampleTokens(
  rt: Runtime,
  logits: Tensor,
  probs: Tensor,
  ids: Tensor,
  state: Tensor,
  a: SampleArgs,
): void {
  const { B, V, rowStride = 1, rowOffset = 0, seq0 = 0, step = 0, workgroupSize: wg = workgroupSize(rt, V) } =
    a;
  if (!Number.isInteger(V) || V < 1 || !Number.isInteger(B) || B < 1) {
    throw new Error(`sampleTokens: bad shape B=${B} V=${V}`);
  }
  if (!SAMPLE_WORKGROUP_SIZES.includes(wg)) throw new Error(`sampleTokens: workgroup size ${wg}`);
  if (!(a.temperature >= 0) || !(a.topP > 0 && a.topP <= 1) || !(a.topK >= 0)) {
    throw new Error("sampleTokens: temperature must be >= 0, top-p in (0, 1], top-k >= 0");
  }
  if (logits.size < ((B - 1) * rowStride + rowOffset + 1) * V) {
    throw new Error("sampleTokens: logits too small");
  }
  if (probs.size < B * V || ids.size < B) {
    throw new Error("sampleTokens: output too small");
  }
  if (ids.dtype !== "u32" || state.dtype !== "u32" || state.size < 2) {
    throw new Error("sampleTokens: ids and state must be u32 (state = [seed, n])");
  }
  const topK = a.topK > 0 ? Math.min(a.topK, V) : V;
  const greedy = a.temperature === 0 ? 1 : 0;
  rt.dispatch(
    "sample",
    sampleWgsl(wg),
    { logits, probs, ids, state },
    [V, rowStride, rowOffset, topK, greedy, seq0, step, f32(greedy ? 1 : a.temperature), f32(a.topP)],
    [B],
  );
}
