// The page's training run, without the DOM: the same model, optimizer, seeding and batch order as
// `deno task train` (train.ts), so the same flags give the same per-step losses in the browser as in
// Deno (tests/web checks it). One command buffer per step; the host writes the batch and reads back
// only the losses.

import type { Runtime } from "../ops/runtime.ts";
import { matmulTuner } from "../ops/matmul/tune.ts";
import { type TextTokenizer, Tokenizer, type TokenizerKind } from "../lib/tokenizer.ts";
import { Gpt2Tokenizer } from "../lib/bpe.ts";
import { GPTData } from "../lib/data.ts";
import { GPT, GPT_REFERENCE } from "../models/gpt.ts";
import { checkGptTraining } from "../models/memory.ts";
import { BIGRAM_REFERENCE, BigramMLP } from "../models/bigram.ts";
import { type GenerateOptions, LossHistory, Optimizer, type OptimizerKind } from "../models/common.ts";
import type { AnyModel, ModelKind } from "../models/checkpoint.ts";
import { bigramJob, gptJob, type Job, type JobSettings } from "../train/jobs.ts";

export interface RunConfig {
  model: ModelKind;
  steps: number;
  batch: number;
  lr: number;
  seed: number;
  evalInterval: number;
  evalIters: number;
  /** The GPT's tokenizer (default char; gpt2 is GPT-2's BPE, 50257 ids). */
  tokenizer?: TokenizerKind;
}

/** train.ts's defaults, except evaluation (cheaper in the page: fewer batches per estimate). */
export function defaults(model: ModelKind): RunConfig {
  const gpt = model === "gpt";
  return {
    model,
    steps: gpt ? 500 : 2000,
    batch: 64,
    lr: gpt ? 1e-3 : 0.01,
    seed: 1337,
    evalInterval: gpt ? 50 : 200,
    evalIters: 10,
  };
}

export interface Progress {
  step: number;
  /** The batch losses read back since the last report, for steps step - losses.length + 1 .. step. */
  losses: Float32Array;
  tokensPerSec: number;
  etaSec: number;
}

export interface Eval {
  step: number;
  train: number;
  val?: number;
}

/** A trainable model with its data and optimizer: train.ts's own job (train/jobs.ts), driven by the page. */
export class Session {
  readonly model: AnyModel;
  readonly tok: TextTokenizer;
  readonly opt: Optimizer;
  readonly tokensPerStep: number;
  /** The exact bigram entropy of the training pairs (bigram models: the floor of their loss). */
  readonly floor?: number;
  step = 0;
  private readonly job: Job;

  constructor(readonly rt: Runtime, readonly cfg: RunConfig, text: string) {
    this.tok = cfg.tokenizer === "gpt2" && cfg.model === "gpt"
      ? new Gpt2Tokenizer()
      : Tokenizer.fromText(text);
    const ids = Uint32Array.from(this.tok.encode(text));
    const V = this.tok.vocabSize, seed = cfg.seed;
    const optimizer: OptimizerKind = cfg.model === "gpt" ? "adamw" : "sgd";
    const settings: JobSettings = { batch: cfg.batch, gradAccum: 1, seed, evalIters: cfg.evalIters };
    if (cfg.model === "gpt") {
      const gptCfg = { ...GPT_REFERENCE, vocabSize: V };
      // Every buffer against the adapter's limits first (GPT-2's 50257-id logits need a small batch).
      checkGptTraining(rt, gptCfg, cfg.batch, 1, optimizer);
      const model = new GPT(rt, gptCfg, seed);
      this.model = model;
      this.opt = new Optimizer(rt, model.params, optimizer, cfg.lr);
      this.job = gptJob(rt, settings, new GPTData(ids), model, this.opt, this.tok);
    } else {
      // Full batch over every consecutive pair of the first 5000 characters, as the seed notebook.
      const first = ids.subarray(0, Math.min(5000, ids.length));
      const model = new BigramMLP(rt, cfg.model, { vocabSize: V, ...BIGRAM_REFERENCE }, seed);
      this.model = model;
      this.opt = new Optimizer(rt, model.params, optimizer, cfg.lr);
      this.job = bigramJob(rt, settings, first, model, this.opt, this.tok);
    }
    this.tokensPerStep = this.job.tokensPerStep;
    this.floor = this.job.floor;
  }

  /** Mean losses over eval batches at `step` (GPT: train and val splits; bigram: the training pairs). */
  async evaluate(step: number): Promise<Eval> {
    return { step, ...(await this.job.evaluate(step)) };
  }

  /**
   * Train to `cfg.steps`, reading the losses back every `readEvery` steps (and before each eval).
   * `paused()` is asked between steps: while it is true the loop waits, and `onHold(true)` says so once
   * the pending losses are reported (the step shown is then the step held at); `onHold(false)` on
   * resume. Evaluates at step 0, every `evalInterval` steps and at the end.
   */
  async train(hooks: {
    readEvery: number;
    onProgress(p: Progress): void;
    onEval(e: Eval): void;
    paused(): boolean;
    onHold?(held: boolean): void;
  }): Promise<number[]> {
    const { rt, cfg } = this;
    const hist = new LossHistory(rt, Math.max(1, hooks.readEvery));
    const all: number[] = [];
    if (this.step === 0) hooks.onEval(await this.evaluate(0));
    let active = 0, done = 0;
    let t0 = performance.now();
    const report = async () => {
      const losses = await hist.drain();
      for (const l of losses) {
        if (!Number.isFinite(l)) throw new Error(`training diverged: the loss became ${l}; try a lower lr`);
      }
      all.push(...losses);
      const dt = (active + performance.now() - t0) / 1000;
      hooks.onProgress({
        step: this.step,
        losses,
        tokensPerSec: (done * this.tokensPerStep) / dt,
        etaSec: ((cfg.steps - this.step) * dt) / done,
      });
      // Let the page paint and handle clicks between readbacks.
      await new Promise((r) => setTimeout(r, 0));
    };
    while (this.step < cfg.steps) {
      if (hooks.paused()) {
        if (hist.pending) await report(); // the page then shows the step it holds at
        active += performance.now() - t0;
        hooks.onHold?.(true);
        while (hooks.paused()) await new Promise((r) => setTimeout(r, 100));
        hooks.onHold?.(false);
        t0 = performance.now();
      }
      this.step++;
      this.job.record(this.step, cfg.lr, hist);
      rt.submit();
      // The matmul tuner (gpu family) times the shape classes the step met for the first time.
      const tuner = matmulTuner(rt);
      if (tuner?.hasPending) await tuner.tunePending();
      done++;
      const isEval = this.step % cfg.evalInterval === 0 || this.step === cfg.steps;
      if (hist.full || isEval) await report();
      if (isEval) hooks.onEval(await this.evaluate(this.step));
    }
    return all;
  }
}

/** Sample from a model (GPT: `start` ids as context; bigram: its last id), streaming each id. */
export async function generate(
  model: AnyModel,
  start: number[],
  n: number,
  opts: GenerateOptions,
): Promise<number[]> {
  if (model instanceof GPT) return await model.generate(start, n, opts);
  return await model.generate(start[start.length - 1], n, opts);
}
