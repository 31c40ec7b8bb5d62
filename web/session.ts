// The page's training run, without the DOM: the same model, optimizer, seeding and batch order as
// `deno task train` (train.ts), so the same flags give the same per-step losses in the browser as in
// Deno (tests/web checks it). One command buffer per step; the host writes the batch and reads back
// only the losses.

import type { Runtime } from "../ops/runtime.ts";
import type { Tensor } from "../ops/tensor.ts";
import { Tokenizer } from "../lib/tokenizer.ts";
import { bigramEntropy, GPTData, idPairs } from "../lib/data.ts";
import { Rng } from "../lib/rng.ts";
import { GPT, GPT_REFERENCE, GPTActivations } from "../models/gpt.ts";
import { BIGRAM_REFERENCE, BigramActivations, BigramMLP } from "../models/bigram.ts";
import {
  type GenerateOptions,
  LossHistory,
  Optimizer,
  type OptimizerKind,
  StepState,
} from "../models/common.ts";
import type { AnyModel, ModelKind } from "../models/checkpoint.ts";

export interface RunConfig {
  model: ModelKind;
  steps: number;
  batch: number;
  lr: number;
  seed: number;
  evalInterval: number;
  evalIters: number;
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

/** A trainable model with its data, optimizer and per-step recording (train.ts's gptJob/bigramJob). */
export class Session {
  readonly model: AnyModel;
  readonly tok: Tokenizer;
  readonly opt: Optimizer;
  readonly tokensPerStep: number;
  /** The exact bigram entropy of the training pairs (bigram models: the floor of their loss). */
  readonly floor?: number;
  step = 0;
  private readonly record: (step: number) => void;
  private readonly lossTensor: Tensor;
  readonly evaluate: (step: number) => Promise<Eval>;

  constructor(readonly rt: Runtime, readonly cfg: RunConfig, text: string) {
    this.tok = Tokenizer.fromText(text);
    const ids = Uint32Array.from(this.tok.encode(text));
    const V = this.tok.vocabSize, seed = cfg.seed;
    const optimizer: OptimizerKind = cfg.model === "gpt" ? "adamw" : "sgd";
    const state = new StepState(rt, seed);
    if (cfg.model === "gpt") {
      const gcfg = { ...GPT_REFERENCE, vocabSize: V };
      const model = new GPT(rt, gcfg, seed);
      this.model = model;
      this.opt = new Optimizer(rt, model.params, optimizer, cfg.lr);
      const data = new GPTData(ids), T = gcfg.blockSize, B = cfg.batch;
      const acts = new GPTActivations(rt, gcfg, B, T);
      const rng = new Rng(seed);
      const evalHist = new LossHistory(rt, 2 * cfg.evalIters);
      this.tokensPerStep = B * T;
      this.lossTensor = acts.loss;
      this.record = (step) => {
        const { x, y } = data.getBatch("train", B, T, rng);
        acts.idx.write(x);
        acts.targets.write(y);
        state.set(step);
        model.forward(acts, state.tensor, true);
        model.backward(acts, state.tensor);
        this.opt.step(state.tensor);
      };
      this.evaluate = async (step) => {
        const erng = new Rng((seed ^ Math.imul(step + 1, 0x9e3779b1)) >>> 0); // as train.ts: independent
        for (const split of ["train", "val"] as const) {
          for (let i = 0; i < cfg.evalIters; i++) {
            const { x, y } = data.getBatch(split, B, T, erng);
            acts.idx.write(x);
            acts.targets.write(y);
            model.forward(acts, state.tensor, false);
            evalHist.push(acts.loss);
            rt.submit();
          }
        }
        const l = await evalHist.drain();
        return { step, train: mean(l.subarray(0, cfg.evalIters)), val: mean(l.subarray(cfg.evalIters)) };
      };
    } else {
      // Full batch over every consecutive pair of the first 5000 characters, as the seed notebook.
      const first = ids.subarray(0, Math.min(5000, ids.length)), n = first.length - 1;
      const model = new BigramMLP(rt, cfg.model, { vocabSize: V, ...BIGRAM_REFERENCE }, seed);
      this.model = model;
      this.opt = new Optimizer(rt, model.params, optimizer, cfg.lr);
      const acts = new BigramActivations(rt, model.kind, model.cfg, n);
      const pairs = idPairs(first, V);
      model.setInputs(acts, pairs.inputs);
      // Class ids for the one-hot model's loss, one-hot rows for the embedding model's (as train.ts).
      acts.targets.write(model.kind === "bigram-onehot" ? pairs.targetIds : pairs.targets);
      const evalHist = new LossHistory(rt, 1);
      this.tokensPerStep = n;
      this.floor = bigramEntropy(first, V);
      this.lossTensor = acts.loss;
      this.record = (step) => {
        state.set(step);
        model.forward(acts, true, true);
        model.backward(acts);
        this.opt.step(state.tensor);
      };
      this.evaluate = async (step) => {
        model.forward(acts, true, false);
        evalHist.push(acts.loss);
        return { step, train: (await evalHist.drain())[0] };
      };
    }
  }

  /**
   * Train to `cfg.steps`, reading the losses back every `readEvery` steps (and before each eval).
   * `paused()` is asked between steps: while it is true the loop waits. Evaluates at step 0, every
   * `evalInterval` steps and at the end.
   */
  async train(hooks: {
    readEvery: number;
    onProgress(p: Progress): void;
    onEval(e: Eval): void;
    paused(): boolean;
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
        while (hooks.paused()) await new Promise((r) => setTimeout(r, 100));
        t0 = performance.now();
      }
      this.step++;
      this.record(this.step);
      hist.push(this.lossTensor);
      rt.submit();
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

function mean(a: Float32Array): number {
  return a.reduce((s, x) => s + x, 0) / a.length;
}
