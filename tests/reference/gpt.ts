// A plain float64 GPT (no dropout): forward, loss and the gradient of every parameter, written
// independently of the WGSL path (per-head loops, textbook formulas) to check the whole model.

import type { GPTConfig } from "../../models/gpt.ts";

type P = Map<string, Float64Array>;
const F = (n: number) => new Float64Array(n);

function linear(
  x: Float64Array,
  W: Float64Array,
  b: Float64Array | null,
  n: number,
  out: number,
  inp: number,
) {
  const y = F(n * out);
  for (let i = 0; i < n; i++) {
    for (let o = 0; o < out; o++) {
      let s = b ? b[o] : 0;
      for (let k = 0; k < inp; k++) s += x[i * inp + k] * W[o * inp + k];
      y[i * out + o] = s;
    }
  }
  return y;
}

function linearBack(dy: Float64Array, x: Float64Array, W: Float64Array, n: number, out: number, inp: number) {
  const dx = F(n * inp), dW = F(out * inp), db = F(out);
  for (let i = 0; i < n; i++) {
    for (let o = 0; o < out; o++) {
      const g = dy[i * out + o];
      db[o] += g;
      for (let k = 0; k < inp; k++) {
        dx[i * inp + k] += g * W[o * inp + k];
        dW[o * inp + k] += g * x[i * inp + k];
      }
    }
  }
  return { dx, dW, db };
}

function layernorm(x: Float64Array, w: Float64Array, b: Float64Array, n: number, C: number) {
  const y = F(n * C), xhat = F(n * C), rstd = F(n);
  for (let i = 0; i < n; i++) {
    let m = 0;
    for (let c = 0; c < C; c++) m += x[i * C + c];
    m /= C;
    let v = 0;
    for (let c = 0; c < C; c++) v += (x[i * C + c] - m) ** 2;
    v /= C;
    rstd[i] = 1 / Math.sqrt(v + 1e-5);
    for (let c = 0; c < C; c++) {
      xhat[i * C + c] = (x[i * C + c] - m) * rstd[i];
      y[i * C + c] = xhat[i * C + c] * w[c] + b[c];
    }
  }
  return { y, xhat, rstd };
}

function layernormBack(
  dy: Float64Array,
  xhat: Float64Array,
  rstd: Float64Array,
  w: Float64Array,
  n: number,
  C: number,
) {
  const dx = F(n * C), dw = F(C), db = F(C);
  for (let i = 0; i < n; i++) {
    let a = 0, bsum = 0;
    for (let c = 0; c < C; c++) {
      const g = dy[i * C + c] * w[c];
      a += g;
      bsum += g * xhat[i * C + c];
      dw[c] += dy[i * C + c] * xhat[i * C + c];
      db[c] += dy[i * C + c];
    }
    for (let c = 0; c < C; c++) {
      const g = dy[i * C + c] * w[c];
      dx[i * C + c] = rstd[i] * (g - a / C - xhat[i * C + c] * bsum / C);
    }
  }
  return { dx, dw, db };
}

export interface GPTRefResult {
  loss: number;
  logits: Float64Array;
  grads: P;
}

/** Forward + backward of the GPT on idx/targets [B*T] with parameters keyed by internal names. */
export function gptReference(
  cfg: GPTConfig,
  params: P,
  idx: ArrayLike<number>,
  targets: ArrayLike<number>,
  B: number,
  T: number,
): GPTRefResult {
  const { nEmbd: C, nHead: H, vocabSize: V, nLayer: L } = cfg;
  const hs = C / H, N = B * T, scale = 1 / Math.sqrt(hs);
  const p = (n: string) => params.get(n)!;
  const grads: P = new Map([...params].map(([k, v]) => [k, F(v.length)]));
  const g = (n: string) => grads.get(n)!;
  const addTo = (dst: Float64Array, src: Float64Array) => src.forEach((v, i) => (dst[i] += v));

  let x = F(N * C);
  for (let i = 0; i < N; i++) {
    for (let c = 0; c < C; c++) {
      x[i * C + c] = p("token_embedding.weight")[idx[i] * C + c] +
        p("position_embedding.weight")[(i % T) * C + c];
    }
  }
  const saved: Record<string, unknown>[] = [];
  for (let l = 0; l < L; l++) {
    const w = (n: string) => p(`blocks.${l}.${n}`);
    const ln1 = layernorm(x, w("ln1.weight"), w("ln1.bias"), N, C);
    const qkv = linear(ln1.y, w("attn.qkv.weight"), null, N, 3 * C, C);
    const att = F(N * C);
    const P = F(B * H * T * T);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        for (let t = 0; t < T; t++) {
          const q = (d: number) => qkv[(b * T + t) * 3 * C + h * hs + d];
          const s: number[] = [];
          for (let j = 0; j <= t; j++) {
            let d = 0;
            for (let e = 0; e < hs; e++) d += q(e) * qkv[(b * T + j) * 3 * C + C + h * hs + e];
            s.push(d * scale);
          }
          const m = Math.max(...s);
          const ex = s.map((v) => Math.exp(v - m));
          const z = ex.reduce((a, v) => a + v, 0);
          for (let j = 0; j <= t; j++) P[((b * H + h) * T + t) * T + j] = ex[j] / z;
          for (let e = 0; e < hs; e++) {
            let o = 0;
            for (let j = 0; j <= t; j++) {
              o += P[((b * H + h) * T + t) * T + j] * qkv[(b * T + j) * 3 * C + 2 * C + h * hs + e];
            }
            att[(b * T + t) * C + h * hs + e] = o;
          }
        }
      }
    }
    const proj = linear(att, w("attn.proj.weight"), w("attn.proj.bias"), N, C, C);
    const x2 = x.map((v, i) => v + proj[i]);
    const ln2 = layernorm(x2, w("ln2.weight"), w("ln2.bias"), N, C);
    const hpre = linear(ln2.y, w("mlp.fc.weight"), w("mlp.fc.bias"), N, 4 * C, C);
    const hh = hpre.map((v) => Math.max(v, 0));
    const mlp = linear(hh, w("mlp.proj.weight"), w("mlp.proj.bias"), N, C, 4 * C);
    saved.push({ ln1, qkv, att, P, ln2, hh });
    x = x2.map((v, i) => v + mlp[i]);
  }
  const lnf = layernorm(x, p("ln_f.weight"), p("ln_f.bias"), N, C);
  const logits = linear(lnf.y, p("lm_head.weight"), p("lm_head.bias"), N, V, C);
  let loss = 0;
  const dlogits = F(N * V);
  for (let i = 0; i < N; i++) {
    const row = logits.subarray(i * V, (i + 1) * V);
    const m = Math.max(...row);
    const z = row.reduce((a, v) => a + Math.exp(v - m), 0);
    loss += -(row[targets[i]] - m - Math.log(z));
    for (let v = 0; v < V; v++) {
      dlogits[i * V + v] = (Math.exp(row[v] - m) / z - (v === targets[i] ? 1 : 0)) / N;
    }
  }
  loss /= N;

  // Backward.
  const head = linearBack(dlogits, lnf.y, p("lm_head.weight"), N, V, C);
  addTo(g("lm_head.weight"), head.dW);
  addTo(g("lm_head.bias"), head.db);
  const lf = layernormBack(head.dx, lnf.xhat, lnf.rstd, p("ln_f.weight"), N, C);
  addTo(g("ln_f.weight"), lf.dw);
  addTo(g("ln_f.bias"), lf.db);
  const dx = lf.dx;
  for (let l = L - 1; l >= 0; l--) {
    const w = (n: string) => p(`blocks.${l}.${n}`);
    const gw = (n: string) => g(`blocks.${l}.${n}`);
    const s = saved[l] as {
      ln1: ReturnType<typeof layernorm>;
      qkv: Float64Array;
      att: Float64Array;
      P: Float64Array;
      ln2: ReturnType<typeof layernorm>;
      hh: Float64Array;
    };
    const mp = linearBack(dx, s.hh, w("mlp.proj.weight"), N, C, 4 * C);
    addTo(gw("mlp.proj.weight"), mp.dW);
    addTo(gw("mlp.proj.bias"), mp.db);
    const dh = mp.dx.map((v, i) => (s.hh[i] > 0 ? v : 0));
    const fc = linearBack(dh, s.ln2.y, w("mlp.fc.weight"), N, 4 * C, C);
    addTo(gw("mlp.fc.weight"), fc.dW);
    addTo(gw("mlp.fc.bias"), fc.db);
    const l2 = layernormBack(fc.dx, s.ln2.xhat, s.ln2.rstd, w("ln2.weight"), N, C);
    addTo(gw("ln2.weight"), l2.dw);
    addTo(gw("ln2.bias"), l2.db);
    addTo(dx, l2.dx);
    const pr = linearBack(dx, s.att, w("attn.proj.weight"), N, C, C);
    addTo(gw("attn.proj.weight"), pr.dW);
    addTo(gw("attn.proj.bias"), pr.db);
    const datt = pr.dx;
    const dqkv = F(N * 3 * C);
    const qkv = s.qkv;
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        for (let t = 0; t < T; t++) {
          const prow = (j: number) => s.P[((b * H + h) * T + t) * T + j];
          const dP: number[] = [];
          for (let j = 0; j <= t; j++) {
            let d = 0;
            for (let e = 0; e < hs; e++) {
              d += datt[(b * T + t) * C + h * hs + e] * qkv[(b * T + j) * 3 * C + 2 * C + h * hs + e];
              dqkv[(b * T + j) * 3 * C + 2 * C + h * hs + e] += prow(j) * datt[(b * T + t) * C + h * hs + e];
            }
            dP.push(d);
          }
          const dot = dP.reduce((a, v, j) => a + v * prow(j), 0);
          for (let j = 0; j <= t; j++) {
            const dS = prow(j) * (dP[j] - dot) * scale;
            for (let e = 0; e < hs; e++) {
              dqkv[(b * T + t) * 3 * C + h * hs + e] += dS * qkv[(b * T + j) * 3 * C + C + h * hs + e];
              dqkv[(b * T + j) * 3 * C + C + h * hs + e] += dS * qkv[(b * T + t) * 3 * C + h * hs + e];
            }
          }
        }
      }
    }
    const qk = linearBack(dqkv, s.ln1.y, w("attn.qkv.weight"), N, 3 * C, C);
    addTo(gw("attn.qkv.weight"), qk.dW);
    const l1 = layernormBack(qk.dx, s.ln1.xhat, s.ln1.rstd, w("ln1.weight"), N, C);
    addTo(gw("ln1.weight"), l1.dw);
    addTo(gw("ln1.bias"), l1.db);
    addTo(dx, l1.dx);
  }
  for (let i = 0; i < N; i++) {
    for (let c = 0; c < C; c++) {
      g("token_embedding.weight")[idx[i] * C + c] += dx[i * C + c];
      g("position_embedding.weight")[(i % T) * C + c] += dx[i * C + c];
    }
  }
  return { loss, logits, grads };
}
