// The seed notebook's two bigram MLPs, composed from the same WGSL ops as the GPT.
//   BigramOneHotMLP:    one-hot(V) -> Linear(V, 8) -> LeakyReLU -> Linear(8, V)
//   BigramEmbeddingMLP: id -> Embedding(V, 5) -> Linear(5, 8) -> LeakyReLU -> Linear(8, V)
// Both train full-batch on every consecutive character pair; the one-hot model against class-index
// targets (as the seed), the embedding model against one-hot probability targets (as the seed).

import type { Runtime } from "../ops/runtime.ts";
import { type ParamSpec, ParamStore, Tensor } from "../ops/tensor.ts";
import { linearBackward, linearForward } from "../ops/matmul.ts";
import { leakyReluBackward } from "../ops/activation.ts";
import { embeddingBackward, embeddingForward } from "../ops/embedding.ts";
import { crossEntropy } from "../ops/cross_entropy.ts";
import { Rng } from "../lib/rng.ts";
import { embeddingInit, type GenerateOptions, linearInit, sampleLogits } from "./common.ts";

/** The two bigram MLPs of the seed notebook. */
export type BigramKind = "bigram-onehot" | "bigram-embedding";
/** A bigram MLP's sizes. */
export interface BigramConfig {
  /** Vocabulary size V. */
  vocabSize: number;
  /** Hidden width (8 in the seed). */
  hidden: number;
  /** Embedding width (5 in the seed; embedding model only). */
  embd: number;
}
export const BIGRAM_REFERENCE = { hidden: 8, embd: 5 };

export function bigramParamSpecs(kind: BigramKind, cfg: BigramConfig, rng: Rng): ParamSpec[] {
  const { vocabSize: V, hidden: Hd, embd: E } = cfg;
  const specs: ParamSpec[] = [];
  const inp = kind === "bigram-onehot" ? V : E;
  if (kind === "bigram-embedding") {
    specs.push({ name: "token_embedding.weight", shape: [V, E], init: embeddingInit(rng, V, E) });
  }
  const fc1 = linearInit(rng, Hd, inp), fc2 = linearInit(rng, V, Hd);
  specs.push({ name: "fc1.weight", shape: [Hd, inp], init: fc1.weight });
  specs.push({ name: "fc1.bias", shape: [Hd], init: fc1.bias });
  specs.push({ name: "fc2.weight", shape: [V, Hd], init: fc2.weight });
  specs.push({ name: "fc2.bias", shape: [V], init: fc2.bias });
  return specs;
}

/** Buffers for a batch of n inputs, allocated once. */
export class BigramActivations {
  /** One-hot [n, V] f32, or ids [n] u32. */
  readonly input: Tensor;
  /** Class ids [n] u32 (one-hot model) or one-hot [n, V] f32 (embedding model) */
  readonly targets: Tensor;
  /** Embedded inputs [n, E] (embedding model; null for one-hot). */
  readonly emb: Tensor | null;
  /** Hidden layer after LeakyReLU [n, H]. */
  readonly h: Tensor;
  /** Output logits [n, V]. */
  readonly logits: Tensor;
  /** Gradient of the mean loss w.r.t. the logits. */
  readonly dlogits: Tensor;
  /** Gradient w.r.t. the hidden activations. */
  readonly dh: Tensor;
  /** Gradient w.r.t. the hidden pre-activations. */
  readonly dh2: Tensor;
  /** Gradient w.r.t. the embedded inputs (embedding model; null for one-hot). */
  readonly demb: Tensor | null;
  /** Per-row cross-entropy [n]. */
  readonly rowLoss: Tensor;
  /** Mean cross-entropy (a scalar). */
  readonly loss: Tensor;
  /** Allocate every buffer for `n` rows. */
  constructor(rt: Runtime, readonly kind: BigramKind, cfg: BigramConfig, readonly n: number) {
    const { vocabSize: V, hidden: Hd, embd: E } = cfg;
    const f = (shape: number[], name: string) => Tensor.empty(rt, shape, "f32", name);
    const onehot = kind === "bigram-onehot";
    this.input = onehot ? f([n, V], "input") : Tensor.empty(rt, [n], "u32", "input");
    this.targets = onehot ? Tensor.empty(rt, [n], "u32", "targets") : f([n, V], "targets");
    this.emb = onehot ? null : f([n, E], "emb");
    this.demb = onehot ? null : f([n, E], "demb");
    this.h = f([n, Hd], "h");
    this.logits = f([n, V], "logits");
    this.dlogits = f([n, V], "dlogits");
    this.dh = f([n, Hd], "dh");
    this.dh2 = f([n, Hd], "dh2");
    this.rowLoss = f([n], "rowLoss");
    this.loss = f([1], "loss");
  }
}

/** The seed notebook's bigram MLPs: (one-hot or embedded) input -> Linear -> LeakyReLU -> Linear. */
class BigramMLP {
  /** All parameters (and gradients), in shards under the binding cap (ops/tensor.ts). */
  readonly params: ParamStore;
  private genActs: BigramActivations | null = null;

  /** Initialise the parameters like PyTorch's defaults from `seed`. */
  constructor(readonly rt: Runtime, readonly kind: BigramKind, readonly cfg: BigramConfig, seed = 1337) {
    this.params = new ParamStore(rt, bigramParamSpecs(kind, cfg, new Rng(seed)));
  }

  /** Record forward (+ loss and dlogits when `withLoss`). */
  forward(a: BigramActivations, withLoss = true, train = true): void {
    const { rt } = this;
    const p = (n: string) => this.params.get(n);
    let x = a.input;
    if (a.emb) {
      embeddingForward(rt, a.input, p("token_embedding.weight"), a.emb);
      x = a.emb;
    }
    linearForward(rt, x, p("fc1.weight"), p("fc1.bias"), a.h, a.n, "leaky_relu");
    linearForward(rt, a.h, p("fc2.weight"), p("fc2.bias"), a.logits, a.n);
    if (withLoss) {
      crossEntropy(
        rt,
        a.logits,
        a.targets,
        train ? a.dlogits : null,
        a.rowLoss,
        a.loss,
        a.n,
        this.cfg.vocabSize,
      );
    }
  }

  /** Record backward after a training forward; parameter gradients are overwritten. */
  backward(a: BigramActivations): void {
    const { rt } = this;
    const p = (n: string) => this.params.get(n);
    linearBackward(rt, a.dlogits, a.h, p("fc2.weight"), a.dh, a.n, false, p("fc2.bias"));
    leakyReluBackward(rt, a.dh, a.h, a.dh2);
    linearBackward(rt, a.dh2, a.emb ?? a.input, p("fc1.weight"), a.demb, a.n, false, p("fc1.bias"));
    if (a.emb) embeddingBackward(rt, a.input, a.demb!, p("token_embedding.weight").grad!);
  }

  /** Upload the n inputs given as ids (one-hot encoding happens here for the one-hot model). */
  setInputs(a: BigramActivations, ids: ArrayLike<number>): void {
    const V = this.cfg.vocabSize;
    if (this.kind === "bigram-onehot") {
      const x = new Float32Array(a.n * V);
      for (let i = 0; i < a.n; i++) x[i * V + ids[i]] = 1;
      a.input.write(x);
    } else a.input.write(Uint32Array.from(ids));
  }

  /** Greedy like the seed when temperature is 0 (the default), sampled otherwise. */
  async generate(
    start: number,
    maxNewTokens: number,
    opts: GenerateOptions = {},
  ): Promise<number[]> {
    this.genActs ??= new BigramActivations(this.rt, this.kind, this.cfg, 1);
    const rng = new Rng(opts.seed ?? 0);
    const out: number[] = [];
    let cur = start;
    for (let i = 0; i < maxNewTokens; i++) {
      this.setInputs(this.genActs, [cur]);
      this.forward(this.genActs, false, false);
      cur = sampleLogits(await this.genActs.logits.read(), rng, { temperature: 0, ...opts });
      out.push(cur);
      opts.onToken?.(cur);
    }
    return out;
  }
}

/** The one-hot bigram MLP with the reference sizes. */
export class BigramOneHotMLP extends BigramMLP {
  /** A one-hot bigram MLP over `vocabSize` characters. */
  constructor(rt: Runtime, vocabSize: number, seed = 1337) {
    super(rt, "bigram-onehot", { vocabSize, ...BIGRAM_REFERENCE }, seed);
  }
}

/** The embedding bigram MLP with the reference sizes. */
export class BigramEmbeddingMLP extends BigramMLP {
  /** An embedding bigram MLP over `vocabSize` characters. */
  constructor(rt: Runtime, vocabSize: number, seed = 1337) {
    super(rt, "bigram-embedding", { vocabSize, ...BIGRAM_REFERENCE }, seed);
  }
}

export { BigramMLP };
