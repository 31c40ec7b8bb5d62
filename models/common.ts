// What every model shares: PyTorch-default initialisers, the optimizer wrapper over the flat
// parameter buffer, the per-step "step state" tensor, and the on-GPU loss history.

import type { Runtime } from "../ops/runtime.ts";
import { type ParamStore, Tensor } from "../ops/tensor.ts";
import { ADAMW_DEFAULTS, type AdamWConfig, adamwStep, sgdStep, zeroGrads } from "../ops/optim.ts";
import type { Rng } from "../lib/rng.ts";

/** nn.Linear's default init (kaiming_uniform with a=√5): U(±1/√fan_in) for weight and bias. */
export function linearInit(rng: Rng, out: number, inp: number): { weight: Float32Array; bias: Float32Array } {
  const bound = 1 / Math.sqrt(inp);
  return { weight: rng.uniformArray(out * inp, -bound, bound), bias: rng.uniformArray(out, -bound, bound) };
}

/** nn.Embedding's default init: N(0, 1). */
export function embeddingInit(rng: Rng, n: number, dim: number): Float32Array {
  return rng.normalArray(n * dim);
}

/** torch.optim.SGD or torch.optim.AdamW. */
export type OptimizerKind = "sgd" | "adamw";

/** torch.optim.SGD / torch.optim.AdamW over the model's single flat parameter buffer. */
export class Optimizer {
  /** AdamW first moments (null for SGD). */
  readonly m: Tensor | null;
  /** AdamW second moments (null for SGD). */
  readonly v: Tensor | null;
  /** The AdamW hyperparameters (PyTorch defaults with this lr). */
  readonly adamw: AdamWConfig;

  /** An optimizer of `kind` over `store` with learning rate `lr`; the moments start at 0. */
  constructor(
    readonly rt: Runtime,
    readonly store: ParamStore,
    readonly kind: OptimizerKind,
    readonly lr: number,
  ) {
    this.adamw = { ...ADAMW_DEFAULTS, lr };
    if (kind === "adamw") {
      this.m = Tensor.from(rt, new Float32Array(store.params.size), [store.params.size], "adam.m");
      this.v = Tensor.from(rt, new Float32Array(store.params.size), [store.params.size], "adam.v");
    } else {
      this.m = this.v = null;
    }
  }

  /** Record one update (step number t comes from the step state's word 1). */
  step(state: Tensor): void {
    const { params, grads } = this.store;
    if (this.kind === "sgd") sgdStep(this.rt, params, grads, this.lr);
    else adamwStep(this.rt, params, grads, this.m!, this.v!, state, this.adamw);
  }

  /** Record zeroing every gradient. */
  zeroGrad(): void {
    zeroGrads(this.rt, this.store.grads);
  }

  /** Moment buffers for checkpoints (empty for SGD). */
  async readState(): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    if (this.m && this.v) {
      out.set("adam.m", await this.m.read());
      out.set("adam.v", await this.v.read());
    }
    return out;
  }

  /** Restore the moments saved by `readState` (a no-op for SGD). */
  writeState(state: Map<string, Float32Array>): void {
    if (!this.m || !this.v) return;
    const m = state.get("adam.m"), v = state.get("adam.v");
    if (!m || !v || m.length !== this.m.size || v.length !== this.v.size) {
      throw new Error("optimizer state does not match the model");
    }
    this.m.write(m);
    this.v.write(v);
  }
}

/** The u32 step state [seed, step, 0, 0] read by dropout and AdamW kernels (see ops/hash.ts). */
export class StepState {
  /** The 4-word u32 tensor the kernels read. */
  readonly tensor: Tensor;
  /** The step state for `seed`, at step 0. */
  constructor(readonly rt: Runtime, readonly seed: number) {
    this.tensor = Tensor.from(rt, new Uint32Array([seed >>> 0, 0, 0, 0]), [4], "step-state");
  }
  /** Upload [seed, step, 0, 0] for the next recorded step. */
  set(step: number): void {
    this.tensor.write(new Uint32Array([this.seed >>> 0, step >>> 0, 0, 0]));
  }
}

/**
 * Losses stay on the GPU: each recorded loss is copied into the next slot of a history buffer and
 * the host reads the filled slots back in one go (every readback costs ≥ 10 ms in Deno).
 */
export class LossHistory {
  /** The on-GPU slots, one f32 loss each. */
  readonly buffer: Tensor;
  private n = 0;
  /** A history of `capacity` slots. */
  constructor(readonly rt: Runtime, readonly capacity = 1024) {
    this.buffer = Tensor.empty(rt, [capacity], "f32", "loss-history");
  }
  /** Losses recorded and not yet read back. */
  get pending(): number {
    return this.n;
  }
  /** Whether every slot is taken (drain before the next push). */
  get full(): boolean {
    return this.n >= this.capacity;
  }
  /** Record a copy of the scalar `loss` into the next slot. */
  push(loss: Tensor): void {
    if (this.full) throw new Error("loss history full: drain() first");
    this.rt.copy(loss, { buffer: this.buffer.buffer, offset: this.n * 4, byteLength: 4 });
    this.n++;
  }
  /** Read back every recorded loss (submits pending work) and empty the history. */
  async drain(): Promise<Float32Array> {
    if (this.n === 0) return new Float32Array(0);
    const out = new Float32Array(
      await this.rt.readBytes({ buffer: this.buffer.buffer, offset: 0, byteLength: this.n * 4 }),
    );
    this.n = 0;
    return out;
  }
}

/** Sampling options shared by every model's `generate`. */
export interface GenerateOptions {
  /** Softmax temperature; 0 = greedy. */
  temperature?: number;
  /** Keep the k most likely tokens; 0 = off. */
  topK?: number;
  /** Nucleus sampling mass; 1 = off. */
  topP?: number;
  /** Seed of the sampling RNG (same seed, same text). */
  seed?: number;
  /** Called as each id is generated (streaming). */
  onToken?: (id: number) => void;
}

/** Temperature, then top-k, then nucleus (top-p) filtering, then a draw; temperature 0 is greedy. */
export function sampleLogits(
  logits: ArrayLike<number>,
  rng: Rng,
  opts: { temperature?: number; topK?: number; topP?: number } = {},
): number {
  const { temperature = 1, topK = 0, topP = 1 } = opts;
  const V = logits.length;
  if (temperature === 0) {
    let best = 0;
    for (let i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
    return best;
  }
  const probs = filteredProbs(logits, temperature, topK, topP);
  let u = rng.uniform();
  let last = 0;
  for (let i = 0; i < V; i++) {
    if (probs[i] <= 0) continue;
    last = i;
    u -= probs[i];
    if (u < 0) return i;
  }
  return last;
}

/** The distribution sampleLogits draws from (exported for tests). */
export function filteredProbs(
  logits: ArrayLike<number>,
  temperature: number,
  topK: number,
  topP: number,
): Float64Array {
  const V = logits.length;
  const z = Float64Array.from(logits, (x) => x / temperature);
  const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => z[b] - z[a] || a - b);
  const keep = new Uint8Array(V);
  const k = topK > 0 ? Math.min(topK, V) : V;
  for (let r = 0; r < k; r++) keep[order[r]] = 1;
  const max = z[order[0]];
  const p = new Float64Array(V);
  let s = 0;
  for (let i = 0; i < V; i++) if (keep[i]) s += p[i] = Math.exp(z[i] - max);
  for (let i = 0; i < V; i++) p[i] /= s;
  if (topP < 1) {
    // Smallest prefix of the sorted distribution whose mass reaches topP.
    let mass = 0;
    let r = 0;
    for (; r < k; r++) {
      mass += p[order[r]];
      if (mass >= topP) break;
    }
    for (let q = r + 1; q < V; q++) p[order[q]] = 0;
    let t = 0;
    for (let i = 0; i < V; i++) t += p[i];
    for (let i = 0; i < V; i++) p[i] /= t;
  }
  return p;
}
