// GPT: token + position embeddings, n_layer pre-LayerNorm transformer blocks (causal multi-head
// self-attention with dropout, projection, 4x MLP with ReLU, residuals), final LayerNorm, linear head.
//
// Written in the llm.c style: every activation of a step lives in a buffer allocated once (per batch
// shape), `forward` records the forward kernels, `backward` records each layer's backward in reverse,
// right beside it, and the whole step is one command buffer. Parameters live in one flat buffer; the
// Q, K and V projections of all heads are fused into one [3C, C] weight (exported per head).

import type { Runtime } from "../ops/runtime.ts";
import { type ParamSpec, ParamStore, Tensor } from "../ops/tensor.ts";
import { linearBackward, linearForward } from "../ops/matmul.ts";
import { layernormBackward, layernormForward } from "../ops/layernorm.ts";
import { attentionBackward, attentionForward } from "../ops/attention.ts";
import { reluBackward } from "../ops/activation.ts";
import { dropoutBackward, residualDropout } from "../ops/dropout.ts";
import { embeddingBackward, embeddingForward } from "../ops/embedding.ts";
import { crossEntropy } from "../ops/cross_entropy.ts";
import { Rng } from "../lib/rng.ts";
import { embeddingInit, type GenerateOptions, linearInit, sampleLogits } from "./common.ts";
import { type DecodeOptions, GPTDecoder } from "./gpt_decode.ts";

/** The GPT's shape and dropout. */
export interface GPTConfig {
  /** Vocabulary size V. */
  vocabSize: number;
  /** Embedding width C. */
  nEmbd: number;
  /** Attention heads (divides nEmbd). */
  nHead: number;
  /** Transformer blocks. */
  nLayer: number;
  /** Context length T. */
  blockSize: number;
  /** Dropout probability on attention weights, attention projection and MLP output. */
  dropout: number;
}

/** The course's reference config (vocabulary size from the data). */
export const GPT_REFERENCE: Omit<GPTConfig, "vocabSize"> = {
  nEmbd: 64,
  nHead: 4,
  nLayer: 4,
  blockSize: 32,
  dropout: 0.1,
};

/** Internal parameter list, in a fixed order, with PyTorch-default initial values. */
export function gptParamSpecs(cfg: GPTConfig, rng: Rng): ParamSpec[] {
  const { vocabSize: V, nEmbd: C, blockSize: T } = cfg;
  const specs: ParamSpec[] = [];
  const add = (name: string, shape: number[], init: Float32Array) => specs.push({ name, shape, init });
  add("token_embedding.weight", [V, C], embeddingInit(rng, V, C));
  add("position_embedding.weight", [T, C], embeddingInit(rng, T, C));
  for (let i = 0; i < cfg.nLayer; i++) {
    const p = `blocks.${i}.`;
    add(p + "ln1.weight", [C], new Float32Array(C).fill(1));
    add(p + "ln1.bias", [C], new Float32Array(C));
    // Per-head key/query/value Linear(C, hs, bias=False) each U(±1/√C): fused rows [Q; K; V].
    add(p + "attn.qkv.weight", [3 * C, C], linearInit(rng, 3 * C, C).weight);
    const proj = linearInit(rng, C, C);
    add(p + "attn.proj.weight", [C, C], proj.weight);
    add(p + "attn.proj.bias", [C], proj.bias);
    add(p + "ln2.weight", [C], new Float32Array(C).fill(1));
    add(p + "ln2.bias", [C], new Float32Array(C));
    const fc = linearInit(rng, 4 * C, C);
    add(p + "mlp.fc.weight", [4 * C, C], fc.weight);
    add(p + "mlp.fc.bias", [4 * C], fc.bias);
    const pr = linearInit(rng, C, 4 * C);
    add(p + "mlp.proj.weight", [C, 4 * C], pr.weight);
    add(p + "mlp.proj.bias", [C], pr.bias);
  }
  add("ln_f.weight", [C], new Float32Array(C).fill(1));
  add("ln_f.bias", [C], new Float32Array(C));
  const head = linearInit(rng, V, C);
  add("lm_head.weight", [V, C], head.weight);
  add("lm_head.bias", [V], head.bias);
  return specs;
}

/** Internal tensors -> the PyTorch-compatible state dict (per-head key/query/value weights). */
export function gptExport(
  cfg: GPTConfig,
  internal: Map<string, Float32Array>,
): Map<string, { shape: number[]; data: Float32Array }> {
  const C = cfg.nEmbd, hs = C / cfg.nHead;
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const spec of gptParamSpecs(cfg, new Rng(0))) {
    const data = internal.get(spec.name)!;
    const m = /^blocks\.(\d+)\.attn\.qkv\.weight$/.exec(spec.name);
    if (!m) {
      out.set(spec.name, { shape: [...spec.shape], data });
      continue;
    }
    ["query", "key", "value"].forEach((kind, part) => {
      for (let h = 0; h < cfg.nHead; h++) {
        const rows = data.subarray((part * C + h * hs) * C, (part * C + (h + 1) * hs) * C);
        out.set(`blocks.${m[1]}.attn.heads.${h}.${kind}.weight`, { shape: [hs, C], data: rows.slice() });
      }
    });
  }
  return out;
}

/** The inverse of gptExport; missing names or wrong shapes throw with the offending name. */
export function gptImport(
  cfg: GPTConfig,
  sd: Map<string, { shape: number[]; data: Float32Array }>,
): Map<string, Float32Array> {
  const C = cfg.nEmbd, hs = C / cfg.nHead;
  const want = gptExport(cfg, new Map(gptParamSpecs(cfg, new Rng(0)).map((s) => [s.name, s.init])));
  for (const [name, t] of want) {
    const got = sd.get(name);
    if (!got) throw new Error(`tensor ${name} is missing`);
    if (got.shape.join(",") !== t.shape.join(",")) {
      throw new Error(`tensor ${name} has shape [${got.shape}], expected [${t.shape}]`);
    }
  }
  for (const name of sd.keys()) if (!want.has(name)) throw new Error(`unexpected tensor ${name}`);
  const out = new Map<string, Float32Array>();
  for (const spec of gptParamSpecs(cfg, new Rng(0))) {
    const m = /^blocks\.(\d+)\.attn\.qkv\.weight$/.exec(spec.name);
    if (!m) {
      out.set(spec.name, sd.get(spec.name)!.data);
      continue;
    }
    const fused = new Float32Array(3 * C * C);
    ["query", "key", "value"].forEach((kind, part) => {
      for (let h = 0; h < cfg.nHead; h++) {
        fused.set(sd.get(`blocks.${m[1]}.attn.heads.${h}.${kind}.weight`)!.data, (part * C + h * hs) * C);
      }
    });
    out.set(spec.name, fused);
  }
  return out;
}

/** One block's saved activations (what its backward reads). */
export interface LayerActs {
  /** Block input (residual stream before attention). */
  res: Tensor;
  /** ln1 output. */
  xn1: Tensor;
  /** ln1 row means. */
  mean1: Tensor;
  /** ln1 row reciprocal standard deviations. */
  rstd1: Tensor;
  /** Fused Q/K/V [N, 3C]. */
  qkv: Tensor;
  /** Attention probabilities [B, H, T, T] (before dropout). */
  probs: Tensor;
  /** Attention output (heads concatenated) [N, C]. */
  att: Tensor;
  /** Attention projection output [N, C]. */
  proj: Tensor;
  /** Residual stream after attention (input of the MLP sub-block). */
  res2: Tensor;
  /** ln2 output. */
  xn2: Tensor;
  /** ln2 row means. */
  mean2: Tensor;
  /** ln2 row reciprocal standard deviations. */
  rstd2: Tensor;
  /** ReLU(fc) output [N, 4C]. */
  h: Tensor;
  /** MLP output [N, C]. */
  mlp: Tensor;
}

/** Every buffer one forward/backward pass of a [B, T] batch needs, allocated once. */
export class GPTActivations {
  /** Rows of the batch: B * T. */
  readonly N: number;
  /** Token ids [B*T] (u32). */
  readonly idx: Tensor;
  /** Position ids [B*T] (u32). */
  readonly pos: Tensor;
  /** Next-token ids [B*T] (u32). */
  readonly targets: Tensor;
  /** Per-block activations. */
  readonly layers: LayerActs[] = [];
  /** Residual stream after the last block. */
  readonly out: Tensor;
  /** Output of the final LayerNorm [N, C]. */
  readonly xf: Tensor;
  /** Final LayerNorm row means. */
  readonly meanf: Tensor;
  /** Final LayerNorm row reciprocal standard deviations. */
  readonly rstdf: Tensor;
  /** Logits [N, V]. */
  readonly logits: Tensor;
  /** Gradient of the mean loss w.r.t. the logits. */
  readonly dlogits: Tensor;
  /** Per-row cross-entropy [N]. */
  readonly rowLoss: Tensor;
  /** Mean cross-entropy (a scalar). */
  readonly loss: Tensor;
  // backward scratch, shared by all layers
  /** Backward scratch: gradient of the residual stream. */
  readonly dres: Tensor;
  /** Backward scratch: gradient of a LayerNorm output. */
  readonly dxn: Tensor;
  /** Backward scratch: gradient of a branch output before dropout. */
  readonly dbranch: Tensor;
  /** Backward scratch: gradient of the attention output. */
  readonly datt: Tensor;
  /** Backward scratch: gradient of the fused Q/K/V. */
  readonly dqkv: Tensor;
  /** Backward scratch: gradient of the MLP hidden activations. */
  readonly dh: Tensor;
  /** Backward scratch: gradient of the MLP pre-activations. */
  readonly dh2: Tensor;
  /** Backward scratch: gradient of the attention scores. */
  readonly dscores: Tensor;

  /**
   * Allocate every buffer for a [B, T] batch. `make` may supply an f32 activation tensor (the decoder
   * gives the matmul operands UNIFORM usage); otherwise, or when it returns undefined, Tensor.empty.
   */
  constructor(
    rt: Runtime,
    cfg: GPTConfig,
    readonly B: number,
    readonly T: number,
    make?: (shape: number[], name: string) => Tensor | undefined,
  ) {
    const { nEmbd: C, vocabSize: V, nHead: H } = cfg;
    const N = this.N = B * T;
    const f = (shape: number[], name: string) => make?.(shape, name) ?? Tensor.empty(rt, shape, "f32", name);
    this.idx = Tensor.empty(rt, [N], "u32", "idx");
    this.targets = Tensor.empty(rt, [N], "u32", "targets");
    this.pos = Tensor.from(rt, Uint32Array.from({ length: N }, (_, i) => i % T), [N], "positions");
    let res = f([N, C], "res0");
    for (let l = 0; l < cfg.nLayer; l++) {
      const res2 = f([N, C], `res${l}.2`);
      this.layers.push({
        res,
        xn1: f([N, C], "xn1"),
        mean1: f([N], "mean1"),
        rstd1: f([N], "rstd1"),
        qkv: f([N, 3 * C], "qkv"),
        probs: f([B * H * T * T], "probs"),
        att: f([N, C], "att"),
        proj: f([N, C], "proj"),
        res2,
        xn2: f([N, C], "xn2"),
        mean2: f([N], "mean2"),
        rstd2: f([N], "rstd2"),
        h: f([N, 4 * C], "h"),
        mlp: f([N, C], "mlp"),
      });
      res = f([N, C], `res${l + 1}`);
    }
    this.out = res;
    this.xf = f([N, C], "xf");
    this.meanf = f([N], "meanf");
    this.rstdf = f([N], "rstdf");
    this.logits = f([N, V], "logits");
    this.dlogits = f([N, V], "dlogits");
    this.rowLoss = f([N], "rowLoss");
    this.loss = f([1], "loss");
    this.dres = f([N, C], "dres");
    this.dxn = f([N, C], "dxn");
    this.dbranch = f([N, C], "dbranch");
    this.datt = f([N, C], "datt");
    this.dqkv = f([N, 3 * C], "dqkv");
    this.dh = f([N, 4 * C], "dh");
    this.dh2 = f([N, 4 * C], "dh2");
    this.dscores = f([B * H * T * T], "dscores");
  }
}

/** The GPT: embeddings, pre-LayerNorm blocks (causal attention, 4x MLP), final LayerNorm, linear head. */
export class GPT {
  /** All parameters (and gradients) in one flat buffer. */
  readonly params: ParamStore;
  private genActs: GPTActivations | null = null;
  private decoders = new Map<number, GPTDecoder>();
  private genState: Tensor | null = null;

  /** Initialise the parameters like PyTorch's defaults from `seed`. */
  constructor(readonly rt: Runtime, readonly cfg: GPTConfig, seed = 1337) {
    if (cfg.nEmbd % cfg.nHead !== 0) throw new Error("n_embd must be divisible by n_head");
    this.params = new ParamStore(rt, gptParamSpecs(cfg, new Rng(seed)));
  }

  /** The parameter named `name`. */
  private p(name: string): Tensor {
    return this.params.get(name);
  }

  /**
   * Record the forward pass of acts.idx (and the loss if `withLoss`: mean cross-entropy against
   * acts.targets, with dlogits prepared for backward). `train` enables dropout, keyed by `state`.
   */
  forward(
    acts: GPTActivations,
    state: Tensor,
    train: boolean,
    withLoss = true,
  ): void {
    const { rt, cfg } = this;
    const { B, T, N } = acts;
    const { nEmbd: C, nHead: H, vocabSize: V, dropout: p } = cfg;
    embeddingForward(rt, acts.idx, this.p("token_embedding.weight"), acts.layers[0]?.res ?? acts.out);
    embeddingForward(
      rt,
      acts.pos,
      this.p("position_embedding.weight"),
      acts.layers[0]?.res ?? acts.out,
      true,
    );
    acts.layers.forEach((a, l) => {
      const w = (n: string) => this.p(`blocks.${l}.${n}`);
      const next = acts.layers[l + 1]?.res ?? acts.out;
      // x = x + dropout(proj(attention(ln1(x))))
      layernormForward(rt, a.res, w("ln1.weight"), w("ln1.bias"), a.xn1, a.mean1, a.rstd1, N, C);
      linearForward(rt, a.xn1, w("attn.qkv.weight"), null, a.qkv, N);
      attentionForward(rt, a.qkv, a.att, a.probs, B, T, C, H, p, state, 3 * l, train);
      linearForward(rt, a.att, w("attn.proj.weight"), w("attn.proj.bias"), a.proj, N);
      residualDropout(rt, a.res, a.proj, a.res2, p, state, 3 * l + 1, train);
      // x = x + dropout(mlp(ln2(x)))
      layernormForward(rt, a.res2, w("ln2.weight"), w("ln2.bias"), a.xn2, a.mean2, a.rstd2, N, C);
      linearForward(rt, a.xn2, w("mlp.fc.weight"), w("mlp.fc.bias"), a.h, N, "relu");
      linearForward(rt, a.h, w("mlp.proj.weight"), w("mlp.proj.bias"), a.mlp, N);
      residualDropout(rt, a.res2, a.mlp, next, p, state, 3 * l + 2, train);
    });
    layernormForward(
      rt,
      acts.out,
      this.p("ln_f.weight"),
      this.p("ln_f.bias"),
      acts.xf,
      acts.meanf,
      acts.rstdf,
      N,
      C,
    );
    linearForward(rt, acts.xf, this.p("lm_head.weight"), this.p("lm_head.bias"), acts.logits, N);
    if (withLoss) {
      crossEntropy(rt, acts.logits, acts.targets, train ? acts.dlogits : null, acts.rowLoss, acts.loss, N, V);
    }
  }

  /** Record the backward pass (after a training forward); parameter gradients are overwritten. */
  backward(acts: GPTActivations, state: Tensor): void {
    const { rt, cfg } = this;
    const { B, T, N } = acts;
    const { nEmbd: C, nHead: H, dropout: p } = cfg;
    linearBackward(
      rt,
      acts.dlogits,
      acts.xf,
      this.p("lm_head.weight"),
      acts.dxn,
      N,
      false,
      this.p("lm_head.bias"),
    );
    layernormBackward(
      rt,
      acts.dxn,
      acts.out,
      this.p("ln_f.weight"),
      this.p("ln_f.bias"),
      acts.meanf,
      acts.rstdf,
      acts.dres,
      N,
      C,
    );
    for (let l = acts.layers.length - 1; l >= 0; l--) {
      const a = acts.layers[l];
      const w = (n: string) => this.p(`blocks.${l}.${n}`);
      // MLP sub-block: dres flows straight through the residual and into the branch.
      dropoutBackward(rt, acts.dres, acts.dbranch, p, state, 3 * l + 2, true);
      linearBackward(rt, acts.dbranch, a.h, w("mlp.proj.weight"), acts.dh, N, false, w("mlp.proj.bias"));
      reluBackward(rt, acts.dh, a.h, acts.dh2);
      linearBackward(rt, acts.dh2, a.xn2, w("mlp.fc.weight"), acts.dxn, N, false, w("mlp.fc.bias"));
      layernormBackward(
        rt,
        acts.dxn,
        a.res2,
        w("ln2.weight"),
        w("ln2.bias"),
        a.mean2,
        a.rstd2,
        acts.dres,
        N,
        C,
        true,
      );
      // Attention sub-block.
      dropoutBackward(rt, acts.dres, acts.dbranch, p, state, 3 * l + 1, true);
      linearBackward(
        rt,
        acts.dbranch,
        a.att,
        w("attn.proj.weight"),
        acts.datt,
        N,
        false,
        w("attn.proj.bias"),
      );
      attentionBackward(
        rt,
        acts.datt,
        a.qkv,
        a.probs,
        acts.dqkv,
        acts.dscores,
        B,
        T,
        C,
        H,
        p,
        state,
        3 * l,
        true,
      );
      linearBackward(rt, acts.dqkv, a.xn1, w("attn.qkv.weight"), acts.dxn, N);
      layernormBackward(
        rt,
        acts.dxn,
        a.res,
        w("ln1.weight"),
        w("ln1.bias"),
        a.mean1,
        a.rstd1,
        acts.dres,
        N,
        C,
        true,
      );
    }
    embeddingBackward(rt, acts.idx, acts.dres, this.p("token_embedding.weight").grad!);
    embeddingBackward(rt, acts.pos, acts.dres, this.p("position_embedding.weight").grad!);
  }

  /**
   * Generate `maxNewTokens` ids after `start` (context cropped to the last block_size ids), calling
   * `onToken` as they arrive: the KV-cache decoder with GPU sampling (models/gpt_decode.ts).
   */
  async generate(start: number[], maxNewTokens: number, opts: DecodeOptions = {}): Promise<number[]> {
    return (await this.decoder(1).generate(start, maxNewTokens, opts))[0];
  }

  /** N samples of the same prompt decoded as one batch; sample i is reproducible from (seed, i). */
  generateBatch(
    start: number[],
    maxNewTokens: number,
    n: number,
    opts: DecodeOptions = {},
  ): Promise<number[][]> {
    return this.decoder(n).generate(start, maxNewTokens, opts);
  }

  /** The decoder for `batch` sequences (its buffers are allocated once per batch size). */
  decoder(batch: number): GPTDecoder {
    let d = this.decoders.get(batch);
    if (!d) this.decoders.set(batch, d = new GPTDecoder(this, batch));
    return d;
  }

  /**
   * The slow reference path (today's decoding before the KV cache, kept for tests and the bench):
   * a full forward over the context cropped to the last block_size ids and one readback of a logits
   * row per token, sampled on the host with an Rng seeded by `seed`.
   */
  async generateRecompute(
    start: number[],
    maxNewTokens: number,
    opts: GenerateOptions = {},
  ): Promise<number[]> {
    const { rt, cfg } = this;
    const T = cfg.blockSize, V = cfg.vocabSize;
    this.genActs ??= new GPTActivations(rt, cfg, 1, T);
    const acts = this.genActs;
    const state = this.genState ??= Tensor.from(rt, new Uint32Array(4), [4], "gen-state"); // eval: no dropout
    const rng = new Rng(opts.seed ?? 0);
    const ids = start.length ? [...start] : [0];
    const idxHost = new Uint32Array(T);
    for (let n = 0; n < maxNewTokens; n++) {
      const ctx = ids.slice(-T);
      idxHost.fill(0);
      idxHost.set(ctx);
      acts.idx.write(idxHost); // causal attention: the zero padding after ctx cannot affect its rows
      this.forward(acts, state, false, false);
      const row = await rt.read({
        buffer: acts.logits.buffer,
        offset: (ctx.length - 1) * V * 4,
        byteLength: V * 4,
      });
      const id = sampleLogits(row, rng, opts);
      ids.push(id);
      opts.onToken?.(id);
    }
    return ids.slice(start.length ? start.length : 1);
  }
}
