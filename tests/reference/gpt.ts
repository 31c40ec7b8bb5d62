// A float64 GPT composed of the per-op float64 references: forward, loss and the gradient of every
// parameter, written independently of the WGSL path. With `dropout`, training-mode dropout is applied
// exactly where models/gpt.ts applies it, with the same masks (ops/hash.ts `dropoutScale` of the step
// state's seed and step, p rounded to f32 as the kernels see it):
//   block l, attention weights:    stream 3l,     element ((b·H + h)·T + t)·T + j of probs
//   block l, attention projection: stream 3l + 1, element i·C + c of proj   (x += dropout(proj))
//   block l, MLP output:           stream 3l + 2, element i·C + c of mlp    (x += dropout(mlp))
//   embeddings (embdDropout):      stream 3L,     element i·C + c of tok + pos
// Without it the model runs as in eval mode (no dropout), whatever cfg.dropout says.
// The architecture options (models/gpt.ts) are branches here too: the MLP's activation (ReLU, tanh
// GELU, erf GELU from the float64 definitions), absent biases (as zeros, with no gradient), the head
// tied to the token embedding (its gradient the sum of both uses), dropout on the embedding sum.

import { gptArch, type GPTConfig } from "../../models/gpt.ts";
import { linearGradRef, linearRef } from "./matmul.ts";
import { layernormGradRef, layernormRef } from "./layernorm.ts";
import { attentionGradRef, attentionRef, type AttnCfg } from "./attention.ts";
import { embeddingGradRef, embeddingRef } from "./embedding.ts";
import { crossEntropyRef } from "./cross_entropy.ts";
import { dropoutRef, dropoutScales, geluGradRef, geluRef, reluGradRef, reluRef } from "./elementwise.ts";

type P = Map<string, Float64Array>;

/** The step state the GPU's dropout reads: [seed, step, 0, 0]. */
export interface GPTRefDropout {
  seed: number;
  step: number;
}

export interface GPTRefOptions {
  /** Training-mode dropout (p = cfg.dropout) with the masks of this step state; omitted: none. */
  dropout?: GPTRefDropout;
  /** Compute the parameter gradients (default true; false: forward and loss only). */
  grads?: boolean;
}

export interface GPTRefResult {
  loss: number;
  logits: Float64Array;
  /** Gradient of the mean loss per parameter (empty when opts.grads is false). */
  grads: P;
}

const add = (a: Float64Array, b: Float64Array) => a.map((v, i) => v + b[i]);

/** Forward (+ backward) of the GPT on idx/targets [B*T] with parameters keyed by internal names. */
export function gptReference(
  cfg: GPTConfig,
  params: P,
  idx: ArrayLike<number>,
  targets: ArrayLike<number>,
  B: number,
  T: number,
  opts: GPTRefOptions = {},
): GPTRefResult {
  const { nEmbd: C, nHead: H, vocabSize: V, nLayer: L } = cfg;
  const arch = gptArch(cfg);
  const N = B * T, drop = opts.dropout;
  const p = (n: string) => params.get(n)!;
  const has = (n: string) => params.has(n);
  const bias = (n: string) => params.get(n) ?? null; // an absent Linear bias
  const lnBias = (n: string) => params.get(n) ?? new Float64Array(C); // an absent LayerNorm bias: zeros
  const headW = arch.tiedHead ? "token_embedding.weight" : "lm_head.weight";
  const act = (x: Float64Array) => (arch.activation === "relu" ? reluRef(x) : geluRef(x, arch.activation));
  const pos = Uint32Array.from({ length: N }, (_, i) => i % T);
  const attnCfg = (l: number): AttnCfg => ({
    B,
    T,
    C,
    H,
    p: cfg.dropout,
    seed: drop?.seed ?? 0,
    step: drop?.step ?? 0,
    stream: 3 * l,
    train: !!drop,
  });
  const mask = (stream: number) =>
    dropoutScales(N * C, cfg.dropout, drop?.seed ?? 0, drop?.step ?? 0, stream, !!drop);

  const mEmb = mask(3 * L);
  let x: Float64Array = add(
    embeddingRef(idx, p("token_embedding.weight"), C),
    embeddingRef(pos, p("position_embedding.weight"), C),
  );
  if (arch.embdDropout) x = dropoutRef(x, mEmb);
  const saved = [];
  for (let l = 0; l < L; l++) {
    const w = (n: string) => p(`blocks.${l}.${n}`);
    const b = (n: string) => bias(`blocks.${l}.${n}`);
    const ln1 = layernormRef(x, w("ln1.weight"), lnBias(`blocks.${l}.ln1.bias`), N, C);
    const qkv = linearRef(ln1.y, w("attn.qkv.weight"), b("attn.qkv.bias"), N, 3 * C, C);
    const att = attentionRef(qkv, attnCfg(l)).out;
    const proj = linearRef(att, w("attn.proj.weight"), b("attn.proj.bias"), N, C, C);
    const m1 = mask(3 * l + 1), m2 = mask(3 * l + 2);
    const x2 = add(x, dropoutRef(proj, m1));
    const ln2 = layernormRef(x2, w("ln2.weight"), lnBias(`blocks.${l}.ln2.bias`), N, C);
    const pre = linearRef(ln2.y, w("mlp.fc.weight"), b("mlp.fc.bias"), N, 4 * C, C);
    const h = act(pre);
    const mlp = linearRef(h, w("mlp.proj.weight"), b("mlp.proj.bias"), N, C, 4 * C);
    saved.push({ x, ln1, qkv, att, m1, x2, ln2, pre, h, m2 });
    x = add(x2, dropoutRef(mlp, m2));
  }
  const lnf = layernormRef(x, p("ln_f.weight"), lnBias("ln_f.bias"), N, C);
  const logits = linearRef(lnf.y, p(headW), bias("lm_head.bias"), N, V, C);
  const ce = crossEntropyRef(logits, Uint32Array.from(targets), N, V);
  const grads: P = new Map();
  if (opts.grads === false) return { loss: ce.loss, logits, grads };

  // Backward, in the reverse order of the forward.
  const set = (n: string, g: Float64Array) => {
    if (has(n)) grads.set(n, g); // an absent bias has no gradient
  };
  const head = linearGradRef(ce.dlogits, lnf.y, p(headW), N, V, C);
  if (!arch.tiedHead) set("lm_head.weight", head.dW);
  set("lm_head.bias", head.db);
  const lf = layernormGradRef(head.dx, x, p("ln_f.weight"), N, C);
  set("ln_f.weight", lf.dw);
  set("ln_f.bias", lf.db);
  let dx: Float64Array = lf.dx;
  for (let l = L - 1; l >= 0; l--) {
    const w = (n: string) => p(`blocks.${l}.${n}`);
    const g = (n: string, v: Float64Array) => set(`blocks.${l}.${n}`, v);
    const s = saved[l];
    // x = x2 + dropout(mlp): dx2 = dx (+ the MLP branch), dmlp = dropout(dx).
    const mp = linearGradRef(dropoutRef(dx, s.m2), s.h, w("mlp.proj.weight"), N, C, 4 * C);
    g("mlp.proj.weight", mp.dW);
    g("mlp.proj.bias", mp.db);
    const dpre = arch.activation === "relu"
      ? reluGradRef(mp.dx, s.h)
      : geluGradRef(mp.dx, s.pre, arch.activation);
    const fc = linearGradRef(dpre, s.ln2.y, w("mlp.fc.weight"), N, 4 * C, C);
    g("mlp.fc.weight", fc.dW);
    g("mlp.fc.bias", fc.db);
    const l2 = layernormGradRef(fc.dx, s.x2, w("ln2.weight"), N, C);
    g("ln2.weight", l2.dw);
    g("ln2.bias", l2.db);
    dx = add(dx, l2.dx);
    // x2 = x + dropout(proj(attention(ln1(x)))).
    const pr = linearGradRef(dropoutRef(dx, s.m1), s.att, w("attn.proj.weight"), N, C, C);
    g("attn.proj.weight", pr.dW);
    g("attn.proj.bias", pr.db);
    const dqkv = attentionGradRef(pr.dx, s.qkv, attnCfg(l));
    const qk = linearGradRef(dqkv, s.ln1.y, w("attn.qkv.weight"), N, 3 * C, C);
    g("attn.qkv.weight", qk.dW);
    g("attn.qkv.bias", qk.db);
    const l1 = layernormGradRef(qk.dx, s.x, w("ln1.weight"), N, C);
    g("ln1.weight", l1.dw);
    g("ln1.bias", l1.db);
    dx = add(dx, l1.dx);
  }
  if (arch.embdDropout) dx = dropoutRef(dx, mEmb);
  const dtok = embeddingGradRef(idx, dx, V, C);
  set("token_embedding.weight", arch.tiedHead ? add(dtok, head.dW) : dtok);
  set("position_embedding.weight", embeddingGradRef(pos, dx, cfg.blockSize, C));
  return { loss: ce.loss, logits, grads };
}
