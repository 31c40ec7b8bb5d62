// A training job: one of the three models with its data, buffers and optimizer, behind one interface
// the loop drives (record a step, evaluate, sample, save/restore the batch sampler's state). Shared by
// train.ts and the web page (web/session.ts), so both train the same way; browser-safe.

import type { Runtime } from "../ops/runtime.ts";
import type { TextTokenizer } from "../lib/tokenizer.ts";
import { bigramEntropy, type GPTData } from "../lib/data.ts";
import { Rng } from "../lib/rng.ts";
import type { GPT } from "../models/gpt.ts";
import { BigramActivations, type BigramMLP } from "../models/bigram.ts";
import { LossHistory, type Optimizer, StepState } from "../models/common.ts";
import type { Run } from "./config.ts";
import type { EvalResult } from "./metrics.ts";
import { GPTStep } from "./step.ts";

/** The run settings a job reads (train.ts passes its whole Run; the page its own flags). */
export type JobSettings = Pick<Run, "batch" | "gradAccum" | "seed" | "evalIters">;

export interface Job {
  tokensPerStep: number;
  /** Micro-batches per step: the loss history holds this many losses per step. */
  lossesPerStep: number;
  /** Record one training step (forward, backward, optimizer) for step `step` at learning rate `lr`. */
  record(step: number, lr: number, losses: LossHistory): void;
  /** Mean losses over eval batches, by split. */
  evaluate(step: number): Promise<EvalResult>;
  sample(n: number, onToken: (id: number) => void): Promise<void>;
  rngState(): number[];
  setRngState(s: number[]): void;
  floor?: number; // bigram entropy: the best loss a bigram model can reach
}

export function gptJob(
  rt: Runtime,
  run: JobSettings,
  data: GPTData,
  model: GPT,
  opt: Optimizer,
  tok: TextTokenizer,
): Job {
  const T = model.cfg.blockSize;
  const step = new GPTStep(rt, model, opt, run.batch, run.gradAccum, run.seed);
  const acts = step.acts;
  let rng = new Rng(run.seed);
  const evalHist = new LossHistory(rt, 2 * run.evalIters);
  return {
    tokensPerStep: run.batch * run.gradAccum * T,
    lossesPerStep: run.gradAccum,
    record(s, lr, losses) {
      step.record(s, lr, () => data.getBatch("train", run.batch, T, rng), losses);
    },
    async evaluate(s) {
      const erng = new Rng((run.seed ^ Math.imul(s + 1, 0x9e3779b1)) >>> 0); // independent of training
      for (const split of ["train", "val"] as const) {
        for (let i = 0; i < run.evalIters; i++) {
          const { x, y } = data.getBatch(split, run.batch, T, erng);
          acts.idx.write(x);
          acts.targets.write(y);
          model.forward(acts, step.state.tensor, false);
          evalHist.push(acts.loss);
          rt.submit();
        }
      }
      const l = await evalHist.drain();
      const mean = (a: Float32Array) => a.reduce((s, x) => s + x, 0) / a.length;
      return { train: mean(l.subarray(0, run.evalIters)), val: mean(l.subarray(run.evalIters)) };
    },
    async sample(n, onToken) {
      // Start from a newline like the seed notebook, or the text's first token if it has none.
      const start = tok.kind === "gpt2" || tok.chars.includes("\n") ? tok.encode("\n") : [data.train[0]];
      await model.generate(start, n, { temperature: 0.8, seed: run.seed, onToken });
    },
    rngState: () => rng.state(),
    setRngState: (s) => (rng = Rng.fromState(s)),
  };
}

export function bigramJob(
  rt: Runtime,
  run: JobSettings,
  ids: Uint32Array,
  model: BigramMLP,
  opt: Optimizer,
  tok: TextTokenizer,
): Job {
  const V = tok.vocabSize;
  const n = ids.length - 1;
  const state = new StepState(rt, run.seed);
  const acts = new BigramActivations(rt, model.kind, model.cfg, n);
  model.setInputs(acts, ids.subarray(0, n));
  if (model.kind === "bigram-onehot") acts.targets.write(ids.slice(1));
  else {
    const t = new Float32Array(n * V);
    for (let i = 0; i < n; i++) t[i * V + ids[i + 1]] = 1;
    acts.targets.write(t);
  }
  const evalHist = new LossHistory(rt, 1);
  return {
    tokensPerStep: n,
    lossesPerStep: 1,
    floor: bigramEntropy(ids, V),
    record(step, lr, losses) {
      state.set(step);
      model.forward(acts, true, true);
      losses.push(acts.loss);
      model.backward(acts);
      opt.setLr(lr);
      opt.step(state.tensor);
    },
    async evaluate() {
      model.forward(acts, true, false);
      evalHist.push(acts.loss);
      return { train: (await evalHist.drain())[0] };
    },
    async sample(count, onToken) {
      // Start from "F" like the seed notebook, or the text's first character if it has none.
      const start = tok.chars.includes("F") ? tok.encode("F")[0] : ids[0];
      await model.generate(start, count, { temperature: 0.8, seed: run.seed, onToken });
    },
    rngState: () => [],
    setRngState: () => {},
  };
}
