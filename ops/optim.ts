// Optimizers over flat buffers (the whole ParamStore.params / .grads tensors): zeroing the
// gradients, plain SGD and AdamW, one elementwise dispatch each.
//
// AdamW is PyTorch's torch.optim.AdamW update, element for element:
//   p *= 1 − lr·wd;  m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²
//   p −= lr · (m / (1−β1^t)) / (sqrt(v / (1−β2^t)) + eps)
// The step t comes from the u32 step-state tensor [seed, step, 0, 0] (see hash.ts), so the uniform
// never changes between steps. 1−β^t is computed without cancellation: the host passes 1−β
// (rounded once from float64), the kernel forms t·log(1−q) by its series and 1−e^L by the expm1
// series while |L| is small (a plain f32 1 - pow(β, t) is off by ~5e-5 relative near t = 1).

import { f32, groups, type Runtime } from "./runtime.ts";
import type { Tensor } from "./tensor.ts";

const WG = 256;
const ADAMW_PER_THREAD = 8;

/** Workgroup grid for `count` 1-D items: [x, y] with x <= 32768, item = gid.x + gid.y * stride. */
function grid1d(count: number, wg: number): { wgs: [number, number]; stride: number } {
  const total = groups(count, wg);
  const x = Math.max(1, Math.min(total, 32768));
  return { wgs: [total === 0 ? 0 : x, Math.ceil(total / x)], stride: x * wg };
}

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
struct U { n: u32, stride: u32, lr: f32 }
@group(0) @binding(0) var<uniform> u: U;
@group(0) @binding(1) var<storage, read_write> P: array<f32>;
@group(0) @binding(2) var<storage, read> G: array<f32>;

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = g.x + g.y * u.stride;
  if (i >= u.n) { return; }
  P[i] = P[i] - u.lr * G[i];
}`;

const ADAMW = /* wgsl */ `
struct U { n: u32, threads: u32, stride: u32, lr: f32, b1: f32, b2: f32, q1: f32, q2: f32, eps: f32, decay: f32 }
@group(0) @binding(0) var<uniform> u: U;
@group(0) @binding(1) var<storage, read_write> P: array<f32>;
@group(0) @binding(2) var<storage, read> G: array<f32>;
@group(0) @binding(3) var<storage, read_write> M: array<f32>;
@group(0) @binding(4) var<storage, read_write> V: array<f32>;
@group(0) @binding(5) var<storage, read> S: array<u32>;

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
    P[i] = P[i] * u.decay - u.lr * (m / bc1) / (sqrt(v / bc2) + u.eps);
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
  const { wgs, stride } = grid1d(grads.size, WG);
  rt.dispatch("zero_grads", ZERO, [grads], [grads.size, stride], wgs);
}

/** p -= lr·g (torch.optim.SGD without momentum or weight decay). */
export function sgdStep(rt: Runtime, params: Tensor, grads: Tensor, lr: number): void {
  sameSize("sgdStep", params, grads);
  distinct("sgdStep", params, grads);
  const { wgs, stride } = grid1d(params.size, WG);
  rt.dispatch("sgd_step", SGD, [params, grads], [params.size, stride, f32(lr)], wgs);
}

/** AdamW hyperparameters (torch.optim.AdamW's names). */
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
 * the caller before step 1); state is the u32 step state [seed, step, 0, 0] with step = t >= 1.
 */
export function adamwStep(
  rt: Runtime,
  params: Tensor,
  grads: Tensor,
  m: Tensor,
  v: Tensor,
  state: Tensor,
  cfg: AdamWConfig,
): void {
  sameSize("adamwStep", params, grads, m, v);
  distinct("adamwStep", params, grads, m, v, state);
  if (state.dtype !== "u32" || state.size < 2) throw new Error("adamwStep: state must be the u32 step state");
  for (const b of [cfg.beta1, cfg.beta2]) {
    if (!(b >= 0 && b < 1)) throw new Error(`adamwStep: beta must be in [0, 1), got ${b}`);
  }
  const threads = Math.ceil(params.size / ADAMW_PER_THREAD);
  const { wgs, stride } = grid1d(threads, WG);
  rt.dispatch("adamw_step", ADAMW, [params, grads, m, v, state], [
    params.size,
    threads,
    stride,
    f32(cfg.lr),
    f32(cfg.beta1),
    f32(cfg.beta2),
    f32(1 - cfg.beta1),
    f32(1 - cfg.beta2),
    f32(cfg.eps),
    f32(1 - cfg.lr * cfg.weightDecay),
  ], wgs);
}
