// Float64 references for the attention family, written plainly per (batch, head, query, key).
// Dropout uses the TS mirror of the kernels' hash, with p rounded to f32 exactly as the kernels see it.

import { dropoutScale } from "../../ops/hash.ts";

export interface AttnCfg {
  B: number;
  T: number;
  C: number;
  H: number;
  p: number;
  seed: number;
  step: number;
  stream: number;
  train: boolean;
}

/** Keep-scale of probs element idx (1 when not training or p = 0). */
export function attnMask(cfg: AttnCfg, idx: number): number {
  const p = cfg.train ? Math.fround(cfg.p) : 0;
  return dropoutScale(cfg.seed, cfg.step, cfg.stream, idx, p);
}

/**
 * Forward: out [B*T, C], probs [B*H*T*T] (softmax before dropout, zero above the diagonal) and lse
 * [B*H*T] (each query row's log-sum-exp of its scaled scores).
 */
export function attentionRef(
  qkv: ArrayLike<number>,
  cfg: AttnCfg,
): { out: Float64Array; probs: Float64Array; lse: Float64Array } {
  const { B, T, C, H } = cfg;
  const hs = C / H, scale = 1 / Math.sqrt(hs), C3 = 3 * C;
  const out = new Float64Array(B * T * C);
  const probs = new Float64Array(B * H * T * T);
  const lse = new Float64Array(B * H * T);
  const q = (b: number, t: number, h: number, d: number) => qkv[(b * T + t) * C3 + h * hs + d];
  const k = (b: number, t: number, h: number, d: number) => qkv[(b * T + t) * C3 + C + h * hs + d];
  const v = (b: number, t: number, h: number, d: number) => qkv[(b * T + t) * C3 + 2 * C + h * hs + d];
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < T; t++) {
        const r0 = ((b * H + h) * T + t) * T;
        const s = new Float64Array(t + 1);
        let m = -Infinity;
        for (let j = 0; j <= t; j++) {
          let acc = 0;
          for (let d = 0; d < hs; d++) acc += q(b, t, h, d) * k(b, j, h, d);
          s[j] = acc * scale;
          m = Math.max(m, s[j]);
        }
        let sum = 0;
        for (let j = 0; j <= t; j++) sum += Math.exp(s[j] - m);
        lse[(b * H + h) * T + t] = m + Math.log(sum);
        for (let j = 0; j <= t; j++) {
          const pj = Math.exp(s[j] - m) / sum;
          probs[r0 + j] = pj;
          const w = pj * attnMask(cfg, r0 + j);
          for (let d = 0; d < hs; d++) out[(b * T + t) * C + h * hs + d] += w * v(b, j, h, d);
        }
      }
    }
  }
  return { out, probs, lse };
}

/** Analytic gradient of L = Σ dout·out with respect to qkv, packed [dq | dk | dv] like qkv. */
export function attentionGradRef(
  dout: ArrayLike<number>,
  qkv: ArrayLike<number>,
  cfg: AttnCfg,
): Float64Array {
  const { B, T, C, H } = cfg;
  const hs = C / H, scale = 1 / Math.sqrt(hs), C3 = 3 * C;
  const { probs } = attentionRef(qkv, cfg);
  const dqkv = new Float64Array(B * T * C3);
  const at = (b: number, t: number, part: number, h: number, d: number) =>
    (b * T + t) * C3 + part * C + h * hs + d;
  const go = (b: number, t: number, h: number, d: number) => dout[(b * T + t) * C + h * hs + d];
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < T; t++) {
        const r0 = ((b * H + h) * T + t) * T;
        // out_t = Σ_j P_j mask_j v_j  =>  dv_j += P_j mask_j dout_t,  dP_j = mask_j (dout_t · v_j)
        const dP = new Float64Array(t + 1);
        let pdp = 0;
        for (let j = 0; j <= t; j++) {
          const mk = attnMask(cfg, r0 + j);
          let g = 0;
          for (let d = 0; d < hs; d++) {
            g += go(b, t, h, d) * qkv[at(b, j, 2, h, d)];
            dqkv[at(b, j, 2, h, d)] += probs[r0 + j] * mk * go(b, t, h, d);
          }
          dP[j] = g * mk;
          pdp += probs[r0 + j] * dP[j];
        }
        // softmax: dS_j = P_j (dP_j - Σ_k P_k dP_k); S_j = scale q_t·k_j
        for (let j = 0; j <= t; j++) {
          const dS = probs[r0 + j] * (dP[j] - pdp);
          for (let d = 0; d < hs; d++) {
            dqkv[at(b, t, 0, h, d)] += scale * dS * qkv[at(b, j, 1, h, d)];
            dqkv[at(b, j, 1, h, d)] += scale * dS * qkv[at(b, t, 0, h, d)];
          }
        }
      }
    }
  }
  return dqkv;
}
