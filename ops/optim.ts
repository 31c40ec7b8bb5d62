// Optimizers over flat buffers (a ParamStore shard's params / grads, or a window of one): zeroing the
// gradients, plain SGD and AdamW, one elementwise dispatch each, and global-norm gradient clipping
// (torch.nn.utils.clip_grad_norm_) over any number of gradient buffers, in 2 + 2·buffers dispatches
// that never wait for the host.
//
// AdamW is PyTorch's torch.optim.AdamW update, element for element:
//   p *= 1 − lr·wd;  m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²
//   p −= lr · (m / (1−β1^t)) / (sqrt(v / (1−β2^t)) + eps)
// Per-step values never go into a uniform (uniforms are cached by content, so a changing value would
// allocate one per step): the step t comes from the u32 step-state tensor [seed, step, 0, 0] (see
// hash.ts), and lr and the decay factor 1 − lr·wd from the f32 "hyper" tensor [lr, 1 − lr·wd] the
// host writes each step (both computed in float64, rounded once). Weight decay may be restricted to
// some parameters by a bit mask (bit i of word i/32: element i decays). 1−β^t is computed without cancellation: the host passes 1−β
// (rounded once from float64), the kernel forms t·log(1−q) by its series and 1−e^L by the expm1
// series while |L| is small (a plain f32 1 - pow(β, t) is off by ~5e-5 relative near t = 1).
//
// Both kernel families share these kernels: they are GPU-shaped already (256 invocations per
// workgroup, consecutive invocations on consecutive elements, so every access is coalesced; the
// norm's two reductions are workgroup-memory trees, ./workgroup_reduce.ts), and lavapipe runs
// them as fast as any llvmpipe-specific shape would.

import { f32, grid1d, type Runtime } from "./runtime.ts";
import { Tensor } from "./tensor.ts";
import { workgroupReduceWGSL } from "./workgroup_reduce.ts";

const WG = 256;
const ADAMW_PER_THREAD = 8;

const ZERO = /* wgsl */ `
struct U { n: u32, stride: u32 }
@group(0) @binding(0) var<uniform> u: U;
@group(0) @binding(1) var<storage, read_write> G: array<f32>;

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = g.x + g.y * u.stride;
  if (i >= u.n) { return; }
  G[i] = 0.0;
}`;

const SGD = /* wgsl */ `
struct U { n: u32, stride: u32 }
@group(0) @binding(0) var<uniform> u: U;
@group(0) @binding(1) var<storage, read_write> P: array<f32>;
@group(0) @binding(2) var<storage, read> G: array<f32>;
@group(0) @binding(3) var<storage, read> H: array<f32>;

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = g.x + g.y * u.stride;
  if (i >= u.n) { return; }
  P[i] = P[i] - H[0] * G[i];
}`;

/** The AdamW kernel; with `masked`, only elements whose bit is set in D decay. */
const adamwWGSL = (masked: boolean) => /* wgsl */ `
struct U { n: u32, threads: u32, stride: u32, b1: f32, b2: f32, q1: f32, q2: f32, eps: f32 }
@group(0) @binding(0) var<uniform> u: U;
@group(0) @binding(1) var<storage, read_write> P: array<f32>;
@group(0) @binding(2) var<storage, read> G: array<f32>;
@group(0) @binding(3) var<storage, read_write> M: array<f32>;
@group(0) @binding(4) var<storage, read_write> V: array<f32>;
@group(0) @binding(5) var<storage, read> S: array<u32>;
@group(0) @binding(6) var<storage, read> H: array<f32>;
${masked ? "@group(0) @binding(7) var<storage, read> D: array<u32>;" : ""}

// 1 - b^t for b = 1 - q (q given accurately), t >= 1, to a few f32 ulps.
fn one_minus_pow(b: f32, q: f32, t: f32) -> f32 {
  var L: f32;
  if (q < 0.5) {
    // log(1 - q) = -(q + q²/2 + q³/3 + ...), converging at least like 2^-k.
    var term = q;
    var s = 0.0;
    var k = 1.0;
    loop {
      let d = term / k;
      s += d;
      if (d <= s * 1e-9 || k >= 64.0) { break; }
      term *= q;
      k += 1.0;
    }
    L = -t * s;
  } else {
    L = t * log(b);
  }
  if (L > -0.5) {
    // 1 - e^L = -(L + L²/2! + L³/3! + ...)
    var term = L;
    var s = 0.0;
    var k = 1.0;
    loop {
      s += term;
      if (abs(term) <= abs(s) * 1e-9 || k >= 32.0) { break; }
      k += 1.0;
      term *= L / k;
    }
    return -s;
  }
  return 1.0 - exp(L);
}

// Each invocation updates ${ADAMW_PER_THREAD} elements (strided by the thread count, so neighbours stay
// neighbours) to amortise the bias corrections.
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let tid = g.x + g.y * u.stride;
  if (tid >= u.threads) { return; }
  let t = f32(S[1]);
  let lr = H[0];
  let hdecay = H[1];
  let bc1 = one_minus_pow(u.b1, u.q1, t);
  let bc2 = one_minus_pow(u.b2, u.q2, t);
  for (var k = 0u; k < ${ADAMW_PER_THREAD}u; k++) {
    let i = tid + k * u.threads;
    if (i >= u.n) { break; }
    let gr = G[i];
    let m = u.b1 * M[i] + u.q1 * gr;
    let v = u.b2 * V[i] + u.q2 * gr * gr;
    M[i] = m;
    V[i] = v;
    let decay = ${masked ? "select(1.0, hdecay, ((D[i >> 5u] >> (i & 31u)) & 1u) != 0u)" : "hdecay"};
    P[i] = P[i] * decay - lr * (m / bc1) / (sqrt(v / bc2) + u.eps);
  }
}`;

function sameSize(what: string, ref: Tensor, ...others: Tensor[]): void {
  for (const o of others) {
    if (o.size !== ref.size) {
      throw new Error(`${what}: ${o.name || "operand"} has ${o.size} values, want ${ref.size}`);
    }
  }
}

/** A buffer bound read_write can't be bound again in the same dispatch. */
function distinct(what: string, ...all: Tensor[]): void {
  for (let a = 0; a < all.length; a++) {
    for (let b = a + 1; b < all.length; b++) {
      if (all[a].buffer === all[b].buffer) throw new Error(`${what}: operands must be distinct buffers`);
    }
  }
}

/** grads[:] = 0. */
export function zeroGrads(rt: Runtime, grads: Tensor): void {
  const { workgroups, stride } = grid1d(rt, grads.size, WG);
  rt.dispatch("zero_grads", ZERO, { G: grads }, [grads.size, stride], workgroups);
}

/** The f32 hyper tensor's contents for one step: [lr, 1 − lr·wd], each rounded once from float64. */
export function hyperValues(lr: number, weightDecay: number): Float32Array {
  return Float32Array.of(lr, 1 - lr * weightDecay);
}

function checkHyper(what: string, hyper: Tensor): void {
  if (hyper.dtype !== "f32" || hyper.size < 2) {
    throw new Error(`${what}: hyper must be the f32 [lr, decay] tensor`);
  }
}

/** p -= lr·g (torch.optim.SGD without momentum or weight decay); lr = hyper[0]. */
export function sgdStep(rt: Runtime, params: Tensor, grads: Tensor, hyper: Tensor): void {
  sameSize("sgdStep", params, grads);
  distinct("sgdStep", params, grads, hyper);
  checkHyper("sgdStep", hyper);
  const { workgroups, stride } = grid1d(rt, params.size, WG);
  rt.dispatch("sgd_step", SGD, { P: params, G: grads, H: hyper }, [params.size, stride], workgroups);
}

/** AdamW's constants (lr and weight decay reach the kernel through the hyper tensor, per step). */
export interface AdamWConfig {
  /** Learning rate. */
  lr: number;
  /** First-moment decay. */
  beta1: number;
  /** Second-moment decay. */
  beta2: number;
  /** Added to the square root of the second moment. */
  eps: number;
  /** Decoupled weight decay. */
  weightDecay: number;
}

/** torch.optim.AdamW's defaults. */
export const ADAMW_DEFAULTS: AdamWConfig = {
  lr: 1e-3,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0.01,
};

/**
 * One AdamW step over flat buffers: params, grads, m, v all the same size (m, v zero-initialised by
 * the caller before step 1); state is the u32 step state [seed, step, 0, 0] with step = t >= 1; hyper
 * is [lr, 1 − lr·wd] (see hyperValues). `decayMask` (u32, one bit per element) limits the decay to
 * the elements whose bit is set; without it every element decays.
 */
export function adamwStep(
  rt: Runtime,
  params: Tensor,
  grads: Tensor,
  m: Tensor,
  v: Tensor,
  state: Tensor,
  hyper: Tensor,
  cfg: Pick<AdamWConfig, "beta1" | "beta2" | "eps">,
  decayMask: Tensor | null = null,
): void {
  sameSize("adamwStep", params, grads, m, v);
  distinct("adamwStep", params, grads, m, v, state, hyper, ...(decayMask ? [decayMask] : []));
  if (state.dtype !== "u32" || state.size < 2) throw new Error("adamwStep: state must be the u32 step state");
  checkHyper("adamwStep", hyper);
  if (decayMask && (decayMask.dtype !== "u32" || decayMask.size < Math.ceil(params.size / 32))) {
    throw new Error(`adamwStep: decayMask needs ${Math.ceil(params.size / 32)} u32 words`);
  }
  for (const b of [cfg.beta1, cfg.beta2]) {
    if (!(b >= 0 && b < 1)) throw new Error(`adamwStep: beta must be in [0, 1), got ${b}`);
  }
  const threads = Math.ceil(params.size / ADAMW_PER_THREAD);
  const { workgroups, stride } = grid1d(rt, threads, WG);
  const views = {
    P: params,
    G: grads,
    M: m,
    V: v,
    S: state,
    H: hyper,
    ...(decayMask ? { D: decayMask } : {}),
  };
  rt.dispatch("adamw_step", adamwWGSL(!!decayMask), views, [
    params.size,
    threads,
    stride,
    f32(cfg.beta1),
    f32(cfg.beta2),
    f32(1 - cfg.beta1),
    f32(1 - cfg.beta2),
    f32(cfg.eps),
  ], workgroups);
}

/** The decay mask for adamwStep: bit i set for each element i of the flat buffer inside one of `ranges` ([start, end)). */
export function decayMaskWords(n: number, ranges: readonly [number, number][]): Uint32Array {
  const words = new Uint32Array(Math.max(1, Math.ceil(n / 32)));
  for (const [start, end] of ranges) {
    for (let i = start; i < end; i++) words[i >>> 5] |= 1 << (i & 31);
  }
  return words;
}

// ---------------------------------------------------------------- gradient clipping

const NORM_WG = 256;
/** Most workgroups of partial sums (the final reduction is one workgroup over these). */
const NORM_PARTS = 1024;

// Pass 1: workgroup w sums g² over the elements i ≡ thread (mod total threads), then a tree in
// workgroup memory; the fixed order makes the norm bit-reproducible.
const SUMSQ = /* wgsl */ `
struct U { n: u32, threads: u32, base: u32 }
@group(0) @binding(0) var<uniform> u: U;
@group(0) @binding(1) var<storage, read> G: array<f32>;
@group(0) @binding(2) var<storage, read_write> Part: array<f32>;
${workgroupReduceWGSL(NORM_WG)}

@compute @workgroup_size(${NORM_WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(local_invocation_index) l: u32,
        @builtin(workgroup_id) w: vec3<u32>) {
  var s = 0.0;
  for (var i = g.x; i < u.n; i += u.threads) { s += G[i] * G[i]; }
  s = wg_sum(l, s);
  if (l == 0u) { Part[u.base + w.x] = s; }
}`;

// Pass 2 (one workgroup): C = [norm, scale] with torch's clip_coef = max_norm / (norm + 1e-6),
// clamped to 1.
const CLIP_COEF = /* wgsl */ `
struct U { parts: u32, maxNorm: f32 }
@group(0) @binding(0) var<uniform> u: U;
@group(0) @binding(1) var<storage, read> Part: array<f32>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
${workgroupReduceWGSL(NORM_WG)}

@compute @workgroup_size(${NORM_WG})
fn main(@builtin(local_invocation_index) l: u32) {
  var s = 0.0;
  for (var i = l; i < u.parts; i += ${NORM_WG}u) { s += Part[i]; }
  s = wg_sum(l, s);
  if (l == 0u) {
    let norm = sqrt(s);
    C[0] = norm;
    C[1] = min(1.0, u.maxNorm / (norm + 1e-6));
  }
}`;

// Pass 3: g *= scale.
const SCALE_BY = /* wgsl */ `
struct U { n: u32, stride: u32 }
@group(0) @binding(0) var<uniform> u: U;
@group(0) @binding(1) var<storage, read_write> G: array<f32>;
@group(0) @binding(2) var<storage, read> C: array<f32>;

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = g.x + g.y * u.stride;
  if (i >= u.n) { return; }
  G[i] = G[i] * C[1];
}`;

/** Partial sums the first pass writes for a gradient buffer of n values. */
const partsOf = (n: number) => Math.max(1, Math.min(NORM_PARTS, Math.ceil(n / (NORM_WG * 8))));

/** Scratch for clipGradNorm: the partial sums and C = [norm, scale] (read C to log the norm). */
export class ClipBuffers {
  /** How many partial sums the first pass writes (over all gradient buffers). */
  readonly parts: number;
  /** The partial sums of squares. */
  readonly partials: Tensor;
  /** [norm, scale] after clipGradNorm. */
  readonly coef: Tensor;
  /** Scratch for clipping gradient buffers of `sizes` values (one number: one buffer). */
  constructor(rt: Runtime, readonly sizes: number | readonly number[]) {
    const list = typeof sizes === "number" ? [sizes] : sizes;
    this.parts = list.reduce((a, n) => a + partsOf(n), 0);
    this.partials = Tensor.empty(rt, [this.parts], "f32", "clip-partials");
    this.coef = Tensor.empty(rt, [2], "f32", "clip-coef");
  }
}

/**
 * torch.nn.utils.clip_grad_norm_(grads, maxNorm) on the GPU: the global L2 norm over every gradient
 * buffer (norm = sqrt(Σ g²), summed in a fixed order: deterministic), then g *= min(1, maxNorm /
 * (norm + 1e-6)). `grads` are the buffers (or windows) `buf` was sized for. Nothing is read back.
 */
export function clipGradNorm(
  rt: Runtime,
  grads: Tensor | readonly Tensor[],
  maxNorm: number,
  buf: ClipBuffers,
): void {
  if (!(maxNorm > 0)) throw new Error(`clipGradNorm: maxNorm must be > 0, got ${maxNorm}`);
  const list = grads instanceof Tensor ? [grads] : grads;
  const sizes = typeof buf.sizes === "number" ? [buf.sizes] : buf.sizes;
  if (list.length !== sizes.length || list.some((g, i) => g.size !== sizes[i])) {
    throw new Error("clipGradNorm: the gradients differ from what the ClipBuffers were sized for");
  }
  let base = 0;
  for (const g of list) {
    distinct("clipGradNorm", g, buf.partials, buf.coef);
    const parts = partsOf(g.size);
    rt.dispatch("grad_sumsq", SUMSQ, { G: g, Part: buf.partials }, [g.size, parts * NORM_WG, base], [parts]);
    base += parts;
  }
  rt.dispatch("grad_clip_coef", CLIP_COEF, { Part: buf.partials, C: buf.coef }, [buf.parts, f32(maxNorm)], [
    1,
  ]);
  for (const g of list) {
    const { workgroups, stride } = grid1d(rt, g.size, WG);
    rt.dispatch("grad_clip_scale", SCALE_BY, { G: g, C: buf.coef }, [g.size, stride], workgroups);
  }
}
