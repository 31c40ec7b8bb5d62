// GPT: token + position embeddings, n_layer pre-LayerNorm transformer blocks (causal multi-head
// self-attention with dropout, projection, 4x MLP, residuals), final LayerNorm, linear head.
//
// Written in the llm.c style: every activation of a step lives in a buffer allocated once (per batch
// shape), `forward` records the forward kernels, `backward` records each layer's backward in reverse,
// right beside it, and the whole step is one command buffer. The head and the loss are fused and
// chunked (ops/head.ts): a training forward also runs the head's backward, a chunk of rows at a time,
// so no N × V logits exist, and `backward` starts at the final LayerNorm. Parameters live in a few flat
// buffers (shards under the binding limit); the Q, K and V projections of all heads are fused into one
// [3C, C] weight (exported per head).
//
// The architecture options are a few branches, as in nanoGPT's model.py (`gptArch` gives the
// defaults, which are the course's model):
//   activation   relu (the course) | gelu (GPT-2's tanh form) | gelu_erf (exact, nanoGPT's nn.GELU())
//   bias         biases in the Linears and LayerNorms (nanoGPT's bias=False: none)
//   qkvBias      a bias on the fused Q/K/V projection (GPT-2's c_attn; the course's heads have none)
//   tiedHead     lm_head is the token embedding, without a bias (else its own Linear, biased iff bias)
//   embdDropout  dropout on the embedding sum too (nanoGPT's transformer.drop)
//   init         pytorch (the layers' defaults) | gpt2 (nanoGPT's _init_weights: N(0, 0.02), residual
//                projections N(0, 0.02/√(2·n_layer)), zero biases)

import type { Runtime } from "../ops/runtime.ts";
import { type ParamSpec, ParamStore, Tensor } from "../ops/tensor.ts";
import { linearBackward, linearForward } from "../ops/matmul.ts";
import { layernormBackward, layernormForward } from "../ops/layernorm.ts";
import { attentionBackward, attentionForward } from "../ops/attention.ts";
import { geluBackward, geluForward, reluBackward } from "../ops/activation.ts";
import { dropoutBackward, dropoutForward, residualDropout } from "../ops/dropout.ts";
import { embeddingBackward, embeddingForward } from "../ops/embedding.ts";
import {
  HEAD_CHUNK_BYTES,
  type HeadGrads,
  headLogits,
  headLoss,
  type HeadOperands,
  headRows,
} from "../ops/head.ts";
import { Rng } from "../lib/rng.ts";
import { embeddingInit, type GenerateOptions, linearInit, sampleLogits } from "./common.ts";
import { type DecodeOptions, GPTDecoder } from "./gpt_decode.ts";

/** The MLP's activation: ReLU, GPT-2's tanh GELU, or the exact (erf) GELU. */
export type Activation = "relu" | "gelu" | "gelu_erf";
/** The activations a GPTConfig may name. */
export const ACTIVATIONS: readonly Activation[] = ["relu", "gelu", "gelu_erf"];
/** How the parameters are initialised. */
export type GPTInit = "pytorch" | "gpt2";

/** The GPT's shape, dropout and architecture options (absent options: the course's model). */
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
  /** The MLP's activation (default "relu"). */
  activation?: Activation;
  /** Biases in the Linear layers and LayerNorms (default true). */
  bias?: boolean;
  /** A bias on the fused Q/K/V projection (default false; needs `bias`). */
  qkvBias?: boolean;
  /** lm_head is the token embedding, with no head bias (default false). */
  tiedHead?: boolean;
  /** Dropout also on the embedding sum (default false). */
  embdDropout?: boolean;
  /** Initialisation (default "pytorch"). */
  init?: GPTInit;
}

/** The architecture options of a config with the defaults filled in. */
export type GPTArch = Required<
  Pick<GPTConfig, "activation" | "bias" | "qkvBias" | "tiedHead" | "embdDropout" | "init">
>;

/** The course's model: the defaults of every architecture option. */
export const COURSE_ARCH: GPTArch = {
  activation: "relu",
  bias: true,
  qkvBias: false,
  tiedHead: false,
  embdDropout: false,
  init: "pytorch",
};

/** nanoGPT's model.py as train.py configures it (bias=False; nn.GELU() is the exact form). */
export const NANOGPT_ARCH: GPTArch = {
  activation: "gelu_erf",
  bias: false,
  qkvBias: false,
  tiedHead: true,
  embdDropout: true,
  init: "gpt2",
};

/** GPT-2 as Hugging Face stores it (every Linear biased, c_attn too; tied head; tanh GELU). */
export const GPT2_ARCH: GPTArch = {
  activation: "gelu",
  bias: true,
  qkvBias: true,
  tiedHead: true,
  embdDropout: true,
  init: "gpt2",
};

/** The architecture options of `cfg`, defaults filled in. */
export function gptArch(cfg: GPTConfig): GPTArch {
  return {
    activation: cfg.activation ?? COURSE_ARCH.activation,
    bias: cfg.bias ?? COURSE_ARCH.bias,
    qkvBias: cfg.qkvBias ?? COURSE_ARCH.qkvBias,
    tiedHead: cfg.tiedHead ?? COURSE_ARCH.tiedHead,
    embdDropout: cfg.embdDropout ?? COURSE_ARCH.embdDropout,
    init: cfg.init ?? COURSE_ARCH.init,
  };
}

/** Why the architecture options of `cfg` are invalid, or null when they are fine. */
export function archProblem(cfg: GPTConfig): string | null {
  const a = cfg as unknown as Record<string, unknown>;
  if (a.activation !== undefined && !ACTIVATIONS.includes(a.activation as Activation)) {
    return `activation must be one of ${ACTIVATIONS.join(", ")}`;
  }
  for (const k of ["bias", "qkvBias", "tiedHead", "embdDropout"]) {
    if (a[k] !== undefined && typeof a[k] !== "boolean") return `${k} must be true or false`;
  }
  if (a.init !== undefined && a.init !== "pytorch" && a.init !== "gpt2") {
    return "init must be pytorch or gpt2";
  }
  if (cfg.qkvBias && cfg.bias === false) return "qkvBias needs bias";
  return null;
}

/** The course's reference config (vocabulary size from the data). */
export const GPT_REFERENCE: Omit<GPTConfig, "vocabSize"> = {
  nEmbd: 64,
  nHead: 4,
  nLayer: 4,
  blockSize: 32,
  dropout: 0.1,
};

/**
 * Internal parameter list, in a fixed order, with initial values: PyTorch's layer defaults (the
 * course's model; the random draws are in this order, a discarded bias included, so a seed gives the
 * same model as before the options existed) or nanoGPT's `_init_weights` (init "gpt2").
 */
export function gptParamSpecs(cfg: GPTConfig, rng: Rng): ParamSpec[] {
  const { vocabSize: V, nEmbd: C, blockSize: T, nLayer: L } = cfg;
  const a = gptArch(cfg);
  const specs: ParamSpec[] = [];
  const add = (name: string, shape: number[], init: Float32Array) => specs.push({ name, shape, init });
  const gpt2 = a.init === "gpt2";
  const embedding = (n: number) => (gpt2 ? rng.normalArray(n * C, 0.02) : embeddingInit(rng, n, C));
  const linear = (name: string, out: number, inp: number, bias: boolean, std = 0.02) => {
    const l = gpt2
      ? { weight: rng.normalArray(out * inp, std), bias: new Float32Array(out) }
      : linearInit(rng, out, inp); // draws the bias even when the layer has none (the course's qkv)
    add(name + ".weight", [out, inp], l.weight);
    if (bias) add(name + ".bias", [out], l.bias);
  };
  const layernorm = (name: string) => {
    add(name + ".weight", [C], new Float32Array(C).fill(1));
    if (a.bias) add(name + ".bias", [C], new Float32Array(C));
  };
  const residual = 0.02 / Math.sqrt(2 * L); // GPT-2's scaled init of the projections into the residual
  add("token_embedding.weight", [V, C], embedding(V));
  add("position_embedding.weight", [T, C], embedding(T));
  for (let i = 0; i < L; i++) {
    const p = `blocks.${i}.`;
    layernorm(p + "ln1");
    // The heads' key/query/value projections fused: rows [Q; K; V] (the course: each Linear(C, hs, bias=False)).
    linear(p + "attn.qkv", 3 * C, C, a.qkvBias);
    linear(p + "attn.proj", C, C, a.bias, residual);
    layernorm(p + "ln2");
    linear(p + "mlp.fc", 4 * C, C, a.bias);
    linear(p + "mlp.proj", C, 4 * C, a.bias, residual);
  }
  layernorm("ln_f");
  if (!a.tiedHead) linear("lm_head", V, C, a.bias);
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
    const m = /^blocks\.(\d+)\.attn\.qkv\.(weight|bias)$/.exec(spec.name);
    if (!m) {
      out.set(spec.name, { shape: [...spec.shape], data });
      continue;
    }
    const cols = m[2] === "weight" ? C : 1; // a weight row has C values, a bias row one
    ["query", "key", "value"].forEach((kind, part) => {
      for (let h = 0; h < cfg.nHead; h++) {
        const rows = data.subarray((part * C + h * hs) * cols, (part * C + (h + 1) * hs) * cols);
        const shape = m[2] === "weight" ? [hs, C] : [hs];
        out.set(`blocks.${m[1]}.attn.heads.${h}.${kind}.${m[2]}`, { shape, data: rows.slice() });
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
    const m = /^blocks\.(\d+)\.attn\.qkv\.(weight|bias)$/.exec(spec.name);
    if (!m) {
      out.set(spec.name, sd.get(spec.name)!.data);
      continue;
    }
    const cols = m[2] === "weight" ? C : 1;
    const fused = new Float32Array(3 * C * cols);
    ["query", "key", "value"].forEach((kind, part) => {
      for (let h = 0; h < cfg.nHead; h++) {
        fused.set(sd.get(`blocks.${m[1]}.attn.heads.${h}.${kind}.${m[2]}`)!.data, (part * C + h * hs) * cols);
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
  /** Attention softmax statistics [B, H, T]: each query row's log-sum-exp of its scores. */
  lse: Tensor;
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
  /** The MLP's pre-activation fc(xn2) [N, 4C] (GELU's backward reads it); null with ReLU (fused). */
  pre: Tensor | null;
  /** act(fc) output [N, 4C]. */
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
  /** Rows of one chunk of the fused head and loss (ops/head.ts): all N when N·V fits its budget. */
  readonly headRows: number;
  /** One chunk's logits [headRows, V] (the fused head's scratch). */
  readonly headLogits: Tensor;
  /** One chunk's gradient of the mean loss w.r.t. its logits [headRows, V]. */
  readonly headDlogits: Tensor;
  /** Every row's logits [N, V], only when allocated with `{ logits: true }` (the decoder's step, tests). */
  readonly fullLogits: Tensor | null;
  /** Per-row cross-entropy [N]. */
  readonly rowLoss: Tensor;
  /** Mean cross-entropy (a scalar). */
  readonly loss: Tensor;
  // backward scratch, shared by all layers
  /** Backward scratch: gradient of the residual stream. */
  readonly dres: Tensor;
  /** Backward scratch: gradient of a LayerNorm output (the head's forward leaves d xf here). */
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
  /** Backward scratch: attention's D_t = datt_t · att_t per (b, h, t) [B, H, T]. */
  readonly delta: Tensor;

  /** Every row's logits [N, V]; throws unless allocated with `{ logits: true }`. */
  get logits(): Tensor {
    if (!this.fullLogits) throw new Error("GPTActivations: no full logits (allocate with { logits: true })");
    return this.fullLogits;
  }

  /**
   * Allocate every buffer for a [B, T] batch. `make` may supply an f32 activation tensor (the decoder
   * gives the matmul operands UNIFORM usage); otherwise, or when it returns undefined, Tensor.empty.
   * `opts.logits` also allocates every row's logits (fullLogits); `opts.headRows` forces the head's
   * chunk size (tests), else ops/head.ts headRows picks it under the binding limit.
   */
  constructor(
    rt: Runtime,
    cfg: GPTConfig,
    readonly B: number,
    readonly T: number,
    make?: (shape: number[], name: string) => Tensor | undefined,
    opts: { logits?: boolean; headRows?: number } = {},
  ) {
    const { nEmbd: C, vocabSize: V, nHead: H } = cfg;
    const relu = gptArch(cfg).activation === "relu";
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
        lse: f([B * H * T], "lse"),
        att: f([N, C], "att"),
        proj: f([N, C], "proj"),
        res2,
        xn2: f([N, C], "xn2"),
        mean2: f([N], "mean2"),
        rstd2: f([N], "rstd2"),
        pre: relu ? null : f([N, 4 * C], "pre"),
        h: f([N, 4 * C], "h"),
        mlp: f([N, C], "mlp"),
      });
      res = f([N, C], `res${l + 1}`);
    }
    this.out = res;
    this.xf = f([N, C], "xf");
    this.meanf = f([N], "meanf");
    this.rstdf = f([N], "rstdf");
    // rt.device is absent on models/memory.ts's counting runtime: the default budget is under any limit.
    const budget = Math.min(HEAD_CHUNK_BYTES, rt.device?.limits.maxStorageBufferBindingSize ?? Infinity);
    const R = this.headRows = headRows(N, V, C, { rows: opts.headRows, budget });
    this.headLogits = f([R, V], "head.logits");
    this.headDlogits = f([R, V], "head.dlogits");
    this.fullLogits = opts.logits ? f([N, V], "logits") : null;
    this.rowLoss = f([N], "rowLoss");
    this.loss = f([1], "loss");
    this.dres = f([N, C], "dres");
    this.dxn = f([N, C], "dxn");
    this.dbranch = f([N, C], "dbranch");
    this.datt = f([N, C], "datt");
    this.dqkv = f([N, 3 * C], "dqkv");
    this.dh = f([N, 4 * C], "dh");
    this.dh2 = f([N, 4 * C], "dh2");
    this.delta = f([B * H * T], "delta");
  }
}

/** The GPT: embeddings, pre-LayerNorm blocks (causal attention, 4x MLP), final LayerNorm, linear head. */
export class GPT {
  /** All parameters (and gradients), in shards under the binding cap (ops/tensor.ts). */
  readonly params: ParamStore;
  /** The architecture options, defaults filled in. */
  readonly arch: GPTArch;
  private genActs: GPTActivations | null = null;
  private decoders = new Map<number, GPTDecoder>();
  private genState: Tensor | null = null;

  /** Initialise the parameters (PyTorch's defaults or nanoGPT's, per cfg.init) from `seed`. */
  constructor(readonly rt: Runtime, readonly cfg: GPTConfig, seed = 1337) {
    if (cfg.nEmbd % cfg.nHead !== 0) throw new Error("n_embd must be divisible by n_head");
    const bad = archProblem(cfg);
    if (bad) throw new Error(`GPTConfig: ${bad}`);
    this.arch = gptArch(cfg);
    this.params = new ParamStore(rt, gptParamSpecs(cfg, new Rng(seed)));
  }

  /** The parameter named `name`. */
  private p(name: string): Tensor {
    return this.params.get(name);
  }

  /** The bias named `name`, or null when the model has none (bias / qkvBias off). */
  private b(name: string): Tensor | null {
    return this.params.find(name);
  }

  /** The head's weight [V, C]: the token embedding when tied. */
  private headWeight(): Tensor {
    return this.p(this.arch.tiedHead ? "token_embedding.weight" : "lm_head.weight");
  }

  /**
   * Record the forward pass of acts.idx (and the loss if `withLoss`: mean cross-entropy against
   * acts.targets, through the fused, chunked head of ops/head.ts). `train` enables dropout, keyed by
   * `state`; with the loss it also runs the head's backward (into acts.dxn and the head's parameter
   * gradients), so backward() starts at the final LayerNorm. acts.fullLogits, when allocated, receives
   * every row's logits.
   */
  forward(
    acts: GPTActivations,
    state: Tensor,
    train: boolean,
    withLoss = true,
  ): void {
    const { rt, cfg, arch } = this;
    const { B, T, N } = acts;
    const { nEmbd: C, nHead: H, nLayer: L, dropout: p } = cfg;
    const x0 = acts.layers[0]?.res ?? acts.out;
    embeddingForward(rt, acts.idx, this.p("token_embedding.weight"), x0);
    embeddingForward(rt, acts.pos, this.p("position_embedding.weight"), x0, true);
    if (arch.embdDropout) dropoutForward(rt, x0, x0, p, state, 3 * L, train); // x = drop(tok + pos)
    acts.layers.forEach((a, l) => {
      const w = (n: string) => this.p(`blocks.${l}.${n}`);
      const b = (n: string) => this.b(`blocks.${l}.${n}`);
      const next = acts.layers[l + 1]?.res ?? acts.out;
      // x = x + dropout(proj(attention(ln1(x))))
      layernormForward(rt, a.res, w("ln1.weight"), b("ln1.bias"), a.xn1, a.mean1, a.rstd1, N, C);
      linearForward(rt, a.xn1, w("attn.qkv.weight"), b("attn.qkv.bias"), a.qkv, N);
      attentionForward(rt, a.qkv, a.att, a.lse, B, T, C, H, p, state, 3 * l, train);
      linearForward(rt, a.att, w("attn.proj.weight"), b("attn.proj.bias"), a.proj, N);
      residualDropout(rt, a.res, a.proj, a.res2, p, state, 3 * l + 1, train);
      // x = x + dropout(mlp(ln2(x))), mlp = proj(act(fc))
      layernormForward(rt, a.res2, w("ln2.weight"), b("ln2.bias"), a.xn2, a.mean2, a.rstd2, N, C);
      if (arch.activation === "relu") {
        linearForward(rt, a.xn2, w("mlp.fc.weight"), b("mlp.fc.bias"), a.h, N, "relu");
      } else {
        linearForward(rt, a.xn2, w("mlp.fc.weight"), b("mlp.fc.bias"), a.pre!, N);
        geluForward(rt, a.pre!, a.h, arch.activation);
      }
      linearForward(rt, a.h, w("mlp.proj.weight"), b("mlp.proj.bias"), a.mlp, N);
      residualDropout(rt, a.res2, a.mlp, next, p, state, 3 * l + 2, train);
    });
    layernormForward(
      rt,
      acts.out,
      this.p("ln_f.weight"),
      this.b("ln_f.bias"),
      acts.xf,
      acts.meanf,
      acts.rstdf,
      N,
      C,
    );
    // The head and the loss a chunk of rows at a time (ops/head.ts); training: the head's backward too.
    const head = this.head(acts);
    if (acts.fullLogits) headLogits(rt, head, acts.fullLogits);
    if (!withLoss) return;
    const { targets, rowLoss, loss, headLogits: logits, headRows: rows } = acts;
    headLoss(rt, head, { targets, rowLoss, loss, logits, rows }, train ? this.headGrads(acts) : null);
  }

  /** The head's operands over acts' rows. */
  private head(acts: GPTActivations): HeadOperands {
    return { xf: acts.xf, W: this.headWeight(), bias: this.b("lm_head.bias"), N: acts.N };
  }

  /** Where the head's backward goes: d xf into acts.dxn (backward's start), the head's gradients. */
  private headGrads(acts: GPTActivations): HeadGrads {
    const db = this.b("lm_head.bias")?.grad ?? null;
    return { dlogits: acts.headDlogits, dxf: acts.dxn, dW: this.headWeight().grad!, db };
  }

  /** Record logits [rows, V] of rows [row0, row0 + rows) of acts.xf into `out` (after a forward). */
  logits(acts: GPTActivations, out: Tensor, row0 = 0, rows = acts.N): void {
    headLogits(this.rt, this.head(acts), out, row0, rows);
  }

  /**
   * Record the backward pass (after a training forward with the loss, which ran the head's backward);
   * parameter gradients are overwritten.
   */
  backward(acts: GPTActivations, state: Tensor): void {
    const { rt, cfg, arch } = this;
    const { B, T, N } = acts;
    const { nEmbd: C, nHead: H, nLayer: L, dropout: p } = cfg;
    // The forward's fused head left d xf in acts.dxn and wrote the head's gradients (a tied head: the
    // token embedding's, which the embedding's own backward adds to below).
    layernormBackward(
      rt,
      acts.dxn,
      acts.out,
      this.p("ln_f.weight"),
      this.b("ln_f.bias"),
      acts.meanf,
      acts.rstdf,
      acts.dres,
      N,
      C,
    );
    for (let l = acts.layers.length - 1; l >= 0; l--) {
      const a = acts.layers[l];
      const w = (n: string) => this.p(`blocks.${l}.${n}`);
      const b = (n: string) => this.b(`blocks.${l}.${n}`);
      // MLP sub-block: dres flows straight through the residual and into the branch.
      dropoutBackward(rt, acts.dres, acts.dbranch, p, state, 3 * l + 2, true);
      linearBackward(rt, acts.dbranch, a.h, w("mlp.proj.weight"), acts.dh, N, false, b("mlp.proj.bias"));
      if (arch.activation === "relu") reluBackward(rt, acts.dh, a.h, acts.dh2);
      else geluBackward(rt, acts.dh, a.pre!, acts.dh2, arch.activation);
      linearBackward(rt, acts.dh2, a.xn2, w("mlp.fc.weight"), acts.dxn, N, false, b("mlp.fc.bias"));
      layernormBackward(
        rt,
        acts.dxn,
        a.res2,
        w("ln2.weight"),
        b("ln2.bias"),
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
        b("attn.proj.bias"),
      );
      attentionBackward(
        rt,
        acts.datt,
        a.qkv,
        a.att,
        a.lse,
        acts.dqkv,
        acts.delta,
        B,
        T,
        C,
        H,
        p,
        state,
        3 * l,
        true,
      );
      linearBackward(rt, acts.dqkv, a.xn1, w("attn.qkv.weight"), acts.dxn, N, false, b("attn.qkv.bias"));
      layernormBackward(
        rt,
        acts.dxn,
        a.res,
        w("ln1.weight"),
        b("ln1.bias"),
        a.mean1,
        a.rstd1,
        acts.dres,
        N,
        C,
        true,
      );
    }
    if (arch.embdDropout) dropoutBackward(rt, acts.dres, acts.dres, p, state, 3 * L, true);
    embeddingBackward(rt, acts.idx, acts.dres, this.p("token_embedding.weight").grad!, arch.tiedHead);
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
      // The logits of the head's chunk holding the last position (chunks start on aligned rows).
      const last = ctx.length - 1, R = acts.headRows, row0 = Math.floor(last / R) * R;
      this.logits(acts, acts.headLogits, row0, Math.min(R, acts.N - row0));
      const row = await rt.read({
        buffer: acts.headLogits.buffer,
        offset: acts.headLogits.offset + (last - row0) * V * 4,
        byteLength: V * 4,
      });
      const id = sampleLogits(row, rng, opts);
      ids.push(id);
      opts.onToken?.(id);
    }
    return ids.slice(start.length ? start.length : 1);
  }
}
