// One GPT training step, recorded into the current command buffer (the caller submits): the shared
// step of train.ts and bench.ts.
//
//   for each of the accum micro-batches:  write the batch, forward, backward
//   grads = mean of the micro-batch gradients (only when accum > 1)
//   clip the global gradient norm (optional, on the GPU), optimizer update at the scheduled lr
//
// The mean of the micro-batch gradients is the gradient of the mean loss over their concatenation
// (every micro-batch has the same B·T rows), so an accumulated step equals one step on the
// concatenated batch. Each micro-batch has its own step state: micro-batch 0 uses the run's seed
// (so accum = 1 is exactly the plain step), micro-batch k > 0 a seed derived from it, so dropout masks
// differ between micro-batches. Host writes (queue.writeBuffer) all land before the step's command
// buffer runs, so with accum > 1 each micro-batch's ids go to their own buffers and are copied into
// the activations inside the command buffer. Nothing is allocated after construction.

import { f32, type Runtime } from "../ops/runtime.ts";
import { Tensor, windows } from "../ops/tensor.ts";
import { addInto, launchElementwise } from "../ops/elementwise.ts";
import { type GPT, GPTActivations } from "../models/gpt.ts";
import { type LossHistory, type Optimizer, StepState } from "../models/common.ts";

/** The dropout seed of micro-batch k (k = 0: the run's seed itself). */
export function microSeed(seed: number, k: number): number {
  return k === 0 ? seed >>> 0 : (seed ^ Math.imul(k, 0x9e3779b1)) >>> 0;
}

export interface Batch {
  x: Uint32Array;
  y: Uint32Array;
}

export type Phase = "forward" | "backward" | "optimizer";

export class GPTStep {
  readonly acts: GPTActivations;
  /** One step state per micro-batch; states[0] is the optimizer's (its word 1 is AdamW's t). */
  readonly states: StepState[];
  private readonly acc: Tensor[] | null; // per parameter shard
  /** Per-micro-batch ids and targets (accum > 1 only). */
  private readonly inputs: { idx: Tensor; targets: Tensor }[] = [];

  constructor(
    readonly rt: Runtime,
    readonly model: GPT,
    readonly opt: Optimizer,
    readonly batch: number,
    readonly accum: number,
    seed: number,
  ) {
    if (!(Number.isInteger(accum) && accum >= 1)) {
      throw new Error(`GPTStep: accum must be >= 1, got ${accum}`);
    }
    this.acts = new GPTActivations(rt, model.cfg, batch, model.cfg.blockSize);
    this.states = Array.from({ length: accum }, (_, k) => new StepState(rt, microSeed(seed, k)));
    this.acc = accum > 1
      ? model.params.shards.map((s) => Tensor.empty(rt, [s.grads.size], "f32", "grad-accum"))
      : null;
    if (accum > 1) {
      const n = this.acts.N;
      for (let k = 0; k < accum; k++) {
        this.inputs.push({
          idx: Tensor.empty(rt, [n], "u32", "idx"),
          targets: Tensor.empty(rt, [n], "u32", "targets"),
        });
      }
    }
  }

  /** The step state of micro-batch 0 (evaluation uses it; dropout is off there). */
  get state(): StepState {
    return this.states[0];
  }

  /**
   * Record training step `step` (1-based) at learning rate `lr`: `nextBatch` is called once per
   * micro-batch, each micro-batch loss is pushed to `losses` (the caller averages groups of accum),
   * and `onPhase` (bench) is told where forward, backward and the optimizer begin.
   */
  record(
    step: number,
    lr: number,
    nextBatch: () => Batch,
    losses?: LossHistory,
    onPhase?: (p: Phase) => void,
  ): void {
    const { rt, model, acts, opt } = this;
    const shards = model.params.shards;
    for (let k = 0; k < this.accum; k++) {
      const { x, y } = nextBatch();
      if (this.acc) {
        const inp = this.inputs[k];
        inp.idx.write(x);
        inp.targets.write(y);
        rt.copy(inp.idx, acts.idx);
        rt.copy(inp.targets, acts.targets);
      } else {
        acts.idx.write(x);
        acts.targets.write(y);
      }
      const state = this.states[k];
      state.set(step);
      onPhase?.("forward");
      model.forward(acts, state.tensor, true);
      if (losses) losses.push(acts.loss);
      onPhase?.("backward");
      model.backward(acts, state.tensor);
      if (!this.acc) continue;
      shards.forEach(({ grads }, i) => {
        const acc = this.acc![i];
        if (k === 0) return rt.copy(grads, acc);
        const [gw, aw] = [windows(grads), windows(acc)];
        if (k < this.accum - 1) gw.forEach((g, w) => addInto(rt, aw[w], g));
        else gw.forEach((g, w) => meanInto(rt, g, aw[w], 1 / this.accum));
      });
    }
    onPhase?.("optimizer");
    opt.setLr(lr);
    opt.step(this.states[0].tensor);
  }
}

/** g = (g + acc) · s: the last micro-batch's gradient joins the sum, and the sum becomes a mean. */
function meanInto(rt: Runtime, g: Tensor, acc: Tensor, s: number): void {
  launchElementwise(rt, {
    label: "grad_accum_mean",
    inputs: [g, acc],
    names: ["gr", "ac"],
    out: g,
    expr: "(gr + ac) * p.s",
    fields: ["s: f32"],
    params: [f32(s)],
  });
}

/** Mean of each consecutive group of `n` losses (micro-batches of one step), in float64. */
export function stepLosses(micro: Float32Array, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i + n <= micro.length; i += n) {
    let s = 0;
    for (let k = 0; k < n; k++) s += micro[i + k];
    out.push(n === 1 ? micro[i] : s / n);
  }
  return out;
}
