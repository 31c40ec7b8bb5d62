// Attention family: the fused core of multi-head causal self-attention, between the QKV projection
// and the output projection (both plain matmuls elsewhere). Per batch b and head h (hs = C/H):
//   S = q kᵀ · hs^-½ (causal: query t sees keys j <= t),  P = softmax(S),  out = dropout(P) · v
// GPT-style dropout acts on the attention probabilities; its keep-scale for probs element `idx` is
// `dropout_scale(seed, step, stream, idx, p)` (ops/hash.ts), so backward recomputes the same mask.
//
// Layouts: qkv [B*T, 3C], row (b,t) = [q | k | v], head h at columns h*hs.. of each part;
// out [B*T, C] (heads concatenated); probs [B*H*T*T], P before dropout at ((b*H+h)*T + t)*T + j,
// zero above the diagonal.
//
// Every kernel gives one invocation R consecutive rows of one (b,h) (R = attentionRows(hs), 1..4),
// so each k/v/q/dout row it loads serves R rows held in registers; hs and R are baked into the WGSL.
// Forward, per R query rows: q in registers; scores written into the rows' own probs entries with
// the row max; exp(s − max) and the sums in place; then normalise and accumulate dropout(P)·v.
// No limit on T (loops over keys, nothing sized by T); hs <= MAX_HS.
// Backward, deterministic and atomic-free, in two kernels:
//   query rows t:  dP_j = (dout_t·v_j)·mask_j,  dS_j = P_j (dP_j − Σ_k P_k dP_k) -> dscores,
//                  dq_t = scale Σ_j dS_j k_j
//   key rows j:    dk_j = scale Σ_{t>=j} dS[t,j] q_t,  dv_j = Σ_{t>=j} P[t,j] mask[t,j] dout_t

import { f32, groups, type Runtime } from "./runtime.ts";
import type { Tensor } from "./tensor.ts";
import { HASH_WGSL } from "./hash.ts";

const WG = 64;
/** Largest head size the kernels accept (hs values live in per-invocation register arrays). */
export const MAX_HS = 128;

// Uniforms shared by all three kernels. NG = ceil(T / R): row groups per (b, h).
const PARAMS = /* wgsl */ `
struct P { B: u32, T: u32, C: u32, H: u32, NG: u32, stream: u32, p: f32, scale: f32 }
@group(0) @binding(0) var<uniform> prm: P;`;

// Each invocation owns R consecutive rows r0 = t0 .. t0+R-1 (queries, or keys in the key kernel) of
// one (b, h); n of them exist (the last group may be short). Loads of k/v/q/dout rows are shared by
// the R rows held in registers, which is what makes the loops cheap on SIMD-over-lanes devices.
const ROWS = /* wgsl */ `
  let gid = g.x;
  if (gid >= prm.B * prm.H * prm.NG) { return; }
  let T = prm.T;
  let C = prm.C;
  let t0 = (gid % prm.NG) * R;
  let bh = gid / prm.NG;
  let h = bh % prm.H;
  let b = bh / prm.H;
  let C3 = 3u * C;
  let n = min(R, T - t0);          // rows this invocation owns
  let tEnd = t0 + n;               // exclusive
  let qkvB = b * T * C3 + h * HS;  // q of (b, 0) for head h; + C for k, + 2C for v
  let oB = b * T * C + h * HS;     // out / dout of (b, 0) for head h
  let pBase = bh * T * T;          // probs / dscores of head (b, h)
  let seed = state[0];
  let step = state[1];`;

function header(hs: number, r: number): string {
  return `${HASH_WGSL}
const HS: u32 = ${hs}u;
const R: u32 = ${r}u;
${PARAMS}`;
}

function forwardWGSL(hs: number, r: number): string {
  return /* wgsl */ `${header(hs, r)}
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> probs: array<f32>;
@group(0) @binding(4) var<storage, read> state: array<u32>;

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
${ROWS}
  var qv: array<array<f32, HS>, R>;
  var acc: array<array<f32, HS>, R>;
  var m: array<f32, R>;
  var inv: array<f32, R>;
  for (var r = 0u; r < R; r++) {
    let qo = qkvB + min(t0 + r, T - 1u) * C3;
    for (var d = 0u; d < HS; d++) {
      qv[r][d] = qkv[qo + d];
      acc[r][d] = 0.0;
    }
    m[r] = -3.4028235e38;
  }
  // Scaled scores, parked in the rows of probs, and each row's max.
  for (var j = 0u; j < tEnd; j++) {
    let ko = qkvB + j * C3 + C;
    var s: array<f32, R>;
    for (var r = 0u; r < R; r++) { s[r] = 0.0; }
    for (var d = 0u; d < HS; d++) {
      let kd = qkv[ko + d];
      for (var r = 0u; r < R; r++) { s[r] = fma(qv[r][d], kd, s[r]); }
    }
    for (var r = max(j, t0) - t0; r < n; r++) {
      let sv = s[r] * prm.scale;
      probs[pBase + (t0 + r) * T + j] = sv;
      m[r] = max(m[r], sv);
    }
  }
  // exp(s - max) in place, row sums; zeros above the diagonal.
  for (var r = 0u; r < n; r++) {
    let t = t0 + r;
    let ro = pBase + t * T;
    var sum = 0.0;
    for (var j = 0u; j <= t; j++) {
      let e = exp(probs[ro + j] - m[r]);
      probs[ro + j] = e;
      sum += e;
    }
    inv[r] = 1.0 / sum;
    for (var j = t + 1u; j < T; j++) { probs[ro + j] = 0.0; }
  }
  // Normalise, and out = dropout(P) · v.
  for (var j = 0u; j < tEnd; j++) {
    var w: array<f32, R>;
    for (var r = 0u; r < R; r++) { w[r] = 0.0; }
    var any = false;
    for (var r = max(j, t0) - t0; r < n; r++) {
      let idx = pBase + (t0 + r) * T + j;
      let pj = probs[idx] * inv[r];
      probs[idx] = pj;
      w[r] = pj * dropout_scale(seed, step, prm.stream, idx, prm.p);
      any = any || w[r] != 0.0;
    }
    if (any) {
      let vo = qkvB + j * C3 + 2u * C;
      for (var d = 0u; d < HS; d++) {
        let vd = qkv[vo + d];
        for (var r = 0u; r < R; r++) { acc[r][d] = fma(w[r], vd, acc[r][d]); }
      }
    }
  }
  for (var r = 0u; r < n; r++) {
    let oo = oB + (t0 + r) * C;
    for (var d = 0u; d < HS; d++) { out[oo + d] = acc[r][d]; }
  }
}`;
}

function backwardRowsWGSL(hs: number, r: number): string {
  return /* wgsl */ `${header(hs, r)}
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> qkv: array<f32>;
@group(0) @binding(3) var<storage, read> probs: array<f32>;
@group(0) @binding(4) var<storage, read_write> dqkv: array<f32>;
@group(0) @binding(5) var<storage, read_write> dscores: array<f32>;
@group(0) @binding(6) var<storage, read> state: array<u32>;

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
${ROWS}
  var go: array<array<f32, HS>, R>;
  var acc: array<array<f32, HS>, R>;
  var pdp: array<f32, R>;
  for (var r = 0u; r < R; r++) {
    let oo = oB + min(t0 + r, T - 1u) * C;
    for (var d = 0u; d < HS; d++) {
      go[r][d] = dout[oo + d];
      acc[r][d] = 0.0;
    }
    pdp[r] = 0.0;
  }
  // dP_j = (dout_t · v_j) · mask_j, parked in dscores; Σ_j P_j dP_j per row.
  for (var j = 0u; j < tEnd; j++) {
    let vo = qkvB + j * C3 + 2u * C;
    var dp: array<f32, R>;
    for (var r = 0u; r < R; r++) { dp[r] = 0.0; }
    for (var d = 0u; d < HS; d++) {
      let vd = qkv[vo + d];
      for (var r = 0u; r < R; r++) { dp[r] = fma(go[r][d], vd, dp[r]); }
    }
    for (var r = max(j, t0) - t0; r < n; r++) {
      let idx = pBase + (t0 + r) * T + j;
      let v = dp[r] * dropout_scale(seed, step, prm.stream, idx, prm.p);
      dscores[idx] = v;
      pdp[r] = fma(probs[idx], v, pdp[r]);
    }
  }
  // dS_j = P_j (dP_j − Σ P dP) -> dscores; dq_t = scale Σ_j dS_j k_j.
  for (var j = 0u; j < tEnd; j++) {
    var ds: array<f32, R>;
    for (var r = 0u; r < R; r++) { ds[r] = 0.0; }
    for (var r = max(j, t0) - t0; r < n; r++) {
      let idx = pBase + (t0 + r) * T + j;
      ds[r] = probs[idx] * (dscores[idx] - pdp[r]);
      dscores[idx] = ds[r];
    }
    let ko = qkvB + j * C3 + C;
    for (var d = 0u; d < HS; d++) {
      let kd = qkv[ko + d];
      for (var r = 0u; r < R; r++) { acc[r][d] = fma(ds[r], kd, acc[r][d]); }
    }
  }
  for (var r = 0u; r < n; r++) {
    let qo = qkvB + (t0 + r) * C3;
    for (var d = 0u; d < HS; d++) { dqkv[qo + d] = prm.scale * acc[r][d]; }
  }
}`;
}

function backwardKeysWGSL(hs: number, r: number): string {
  return /* wgsl */ `${header(hs, r)}
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> qkv: array<f32>;
@group(0) @binding(3) var<storage, read> probs: array<f32>;
@group(0) @binding(4) var<storage, read> dscores: array<f32>;
@group(0) @binding(5) var<storage, read_write> dqkv: array<f32>;
@group(0) @binding(6) var<storage, read> state: array<u32>;

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
${ROWS}
  // Here the R rows are KEYS j = t0 + r; loop over the queries i >= t0 that see any of them.
  var dk: array<array<f32, HS>, R>;
  var dv: array<array<f32, HS>, R>;
  for (var r = 0u; r < R; r++) {
    for (var d = 0u; d < HS; d++) {
      dk[r][d] = 0.0;
      dv[r][d] = 0.0;
    }
  }
  for (var i = t0; i < T; i++) {
    var ds: array<f32, R>;
    var w: array<f32, R>;
    for (var r = 0u; r < R; r++) {
      ds[r] = 0.0;
      w[r] = 0.0;
    }
    for (var r = 0u; r < min(n, i - t0 + 1u); r++) {
      let idx = pBase + i * T + t0 + r;
      ds[r] = dscores[idx];
      w[r] = probs[idx] * dropout_scale(seed, step, prm.stream, idx, prm.p);
    }
    let qo = qkvB + i * C3;
    let oo = oB + i * C;
    for (var d = 0u; d < HS; d++) {
      let qd = qkv[qo + d];
      let od = dout[oo + d];
      for (var r = 0u; r < R; r++) {
        dk[r][d] = fma(ds[r], qd, dk[r][d]);
        dv[r][d] = fma(w[r], od, dv[r][d]);
      }
    }
  }
  for (var r = 0u; r < n; r++) {
    let ko = qkvB + (t0 + r) * C3 + C;
    for (var d = 0u; d < HS; d++) {
      dqkv[ko + d] = prm.scale * dk[r][d];
      dqkv[ko + C + d] = dv[r][d];
    }
  }
}`;
}

/**
 * Rows per invocation. More rows share more loads (R = 4 runs about 2x faster than R = 1 on
 * lavapipe), but the kernels keep 2·R·hs floats in fully unrolled registers and their compile time
 * grows steeply with R·hs, so R·hs is held to about 128.
 */
export function attentionRows(hs: number): number {
  return Math.max(1, Math.min(4, Math.floor(128 / hs)));
}

const cache = new Map<string, string>();
function kernel(kind: "fwd" | "bwd_rows" | "bwd_keys", hs: number, r: number): string {
  const key = `${kind}/${hs}/${r}`;
  let code = cache.get(key);
  if (code === undefined) {
    const gen = kind === "fwd" ? forwardWGSL : kind === "bwd_rows" ? backwardRowsWGSL : backwardKeysWGSL;
    code = gen(hs, r);
    cache.set(key, code);
  }
  return code;
}

function check(
  name: string,
  B: number,
  T: number,
  C: number,
  H: number,
  p: number,
  state: Tensor,
  stream: number,
  sizes: [Tensor, number, string][],
): number {
  for (const [k, v] of Object.entries({ B, T, C, H })) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`${name}: ${k} must be a positive integer, got ${v}`);
  }
  if (C % H !== 0) throw new Error(`${name}: C=${C} is not divisible by H=${H}`);
  const hs = C / H;
  if (hs > MAX_HS) throw new Error(`${name}: head size ${hs} exceeds the supported maximum ${MAX_HS}`);
  if (!(p >= 0 && p < 1)) throw new Error(`${name}: dropout p must be in [0, 1), got ${p}`);
  if (!Number.isInteger(stream) || stream < 0 || stream > 0xffffffff) {
    throw new Error(`${name}: stream must be a u32, got ${stream}`);
  }
  if (state.dtype !== "u32" || state.size < 2) {
    throw new Error(`${name}: state must be the u32 step-state tensor`);
  }
  for (const [t, want, what] of sizes) {
    if (t.size < want) throw new Error(`${name}: ${what} has ${t.size} values, needs ${want}`);
  }
  return hs;
}

/**
 * Causal multi-head self-attention core. qkv [B*T, 3C] -> out [B*T, C]; probs [B*H*T*T] receives
 * the softmax probabilities before dropout (zero above the diagonal), saved for the backward pass.
 * Dropout with rate p on the probabilities when `train` (mask from state = [seed, step, ..], stream).
 */
export function attentionForward(
  rt: Runtime,
  qkv: Tensor,
  out: Tensor,
  probs: Tensor,
  B: number,
  T: number,
  C: number,
  H: number,
  p: number,
  state: Tensor,
  stream: number,
  train: boolean,
): void {
  const hs = check("attentionForward", B, T, C, H, p, state, stream, [
    [qkv, B * T * 3 * C, "qkv"],
    [out, B * T * C, "out"],
    [probs, B * H * T * T, "probs"],
  ]);
  const R = attentionRows(hs), NG = Math.ceil(T / R);
  rt.dispatch(
    "attention_fwd",
    kernel("fwd", hs, R),
    [qkv, out, probs, state],
    [B, T, C, H, NG, stream, f32(train ? p : 0), f32(1 / Math.sqrt(hs))],
    [groups(B * H * NG, WG)],
  );
}

/**
 * Backward of `attentionForward` given dout [B*T, C]: dqkv [B*T, 3C] is overwritten with
 * [dq | dk | dv]. dscores [B*H*T*T] is scratch (it ends up holding dS on and below the diagonal).
 * p, state, stream and train must be those of the forward pass (the dropout mask is recomputed).
 */
export function attentionBackward(
  rt: Runtime,
  dout: Tensor,
  qkv: Tensor,
  probs: Tensor,
  dqkv: Tensor,
  dscores: Tensor,
  B: number,
  T: number,
  C: number,
  H: number,
  p: number,
  state: Tensor,
  stream: number,
  train: boolean,
): void {
  const hs = check("attentionBackward", B, T, C, H, p, state, stream, [
    [dout, B * T * C, "dout"],
    [qkv, B * T * 3 * C, "qkv"],
    [probs, B * H * T * T, "probs"],
    [dqkv, B * T * 3 * C, "dqkv"],
    [dscores, B * H * T * T, "dscores"],
  ]);
  const R = attentionRows(hs), NG = Math.ceil(T / R);
  const params = [B, T, C, H, NG, stream, f32(train ? p : 0), f32(1 / Math.sqrt(hs))];
  const wgs: [number] = [groups(B * H * NG, WG)];
  rt.dispatch(
    "attention_bwd_rows",
    kernel("bwd_rows", hs, R),
    [dout, qkv, probs, dqkv, dscores, state],
    params,
    wgs,
  );
  rt.dispatch(
    "attention_bwd_keys",
    kernel("bwd_keys", hs, R),
    [dout, qkv, probs, dscores, dqkv, state],
    params,
    wgs,
  );
}
