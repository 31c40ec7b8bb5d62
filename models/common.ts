// What every model shares: PyTorch-default initialisers, the optimizer wrapper over the parameter
// shards, the per-step "step state" tensor, and the on-GPU loss history.

import type { Runtime } from "../ops/runtime.ts";
import { type ParamStore, Tensor, windows } from "../ops/tensor.ts";
import {
  ADAMW_DEFAULTS,
  type AdamWConfig,
  adamwStep,
  ClipBuffers,
  clipGradNorm,
  decayMaskWords,
  hyperValues,
  sgdStep,
  zeroGrads,
} from "../ops/optim.ts";
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

/**
 * Which parameters AdamW's weight decay applies to:
 *   all     every parameter (torch.optim.AdamW(model.parameters()); the lecture recipe)
 *   matmul  the 2-D weight matrices of the Linear layers only: no biases, LayerNorm or embeddings
 *   2d      every parameter with two or more dimensions, embeddings included (nanoGPT's literal
 *           `p.dim() >= 2` rule; its token embedding is tied to the LM head, so it is a matmul weight)
 */
export type DecayParams = "all" | "matmul" | "2d";
/** The `--decay-params` choices. */
export const DECAY_PARAMS: readonly DecayParams[] = ["all", "matmul", "2d"];

/** Whether parameter `name` of shape `shape` decays under `rule`. */
export function decays(rule: DecayParams, name: string, shape: readonly number[]): boolean {
  if (rule === "all") return true;
  if (shape.length < 2) return false;
  return rule === "2d" || !/embedding\.weight$/.test(name);
}

/** Everything about the update except the step: constants, plus the lr schedule's current value. */
export interface OptimizerOptions {
  /** AdamW's first-moment decay (default 0.9). */
  beta1?: number;
  /** AdamW's second-moment decay (default 0.999). */
  beta2?: number;
  /** AdamW's epsilon (default 1e-8). */
  eps?: number;
  /** Decoupled weight decay (default 0.01). */
  weightDecay?: number;
  /** Which parameters decay (default "all"). */
  decayParams?: DecayParams;
  /** Clip the global gradient L2 norm to this before the update (0: off). */
  gradClip?: number;
}

/** One parameter shard's optimizer buffers (AdamW moments, decay mask), each in binding-sized windows. */
interface ShardState {
  /** Windows of the shard's parameters. */
  params: Tensor[];
  /** Windows of its gradients. */
  grads: Tensor[];
  /** Windows of its first moments (AdamW). */
  m: Tensor[];
  /** Windows of its second moments (AdamW). */
  v: Tensor[];
  /** Windows of its decay mask (AdamW with decayParams other than "all"). */
  mask: (Tensor | null)[];
  /** The whole moment buffers (checkpoints). */
  mBuf: Tensor | null;
  vBuf: Tensor | null;
}

/** Windows of the u32 decay mask matching float windows of `ws` (each starting at a multiple of 2048 floats). */
function maskWindows(mask: Tensor, ws: readonly Tensor[]): Tensor[] {
  const base = ws[0].offset;
  return ws.map((w) => {
    const start = (w.offset - base) / 4;
    const words = Math.ceil(w.size / 32);
    return new Tensor(mask.rt, mask.buffer, mask.offset + start / 8, [words], "u32", mask.name);
  });
}

/**
 * torch.optim.SGD / torch.optim.AdamW over the model's parameter shards, optionally after
 * torch.nn.utils.clip_grad_norm_ (the global norm over every shard). The learning rate may change
 * every step (`setLr`) without a new uniform or bind group: it lives in the small `hyper` tensor
 * [lr, 1 − lr·wd] written each step. With one shard this is one dispatch per update, as before; a
 * shard past the binding cap is updated a window at a time.
 */
export class Optimizer {
  /** The AdamW hyperparameters (PyTorch defaults with this lr). */
  readonly adamw: AdamWConfig;
  /** Which parameters weight decay applies to. */
  readonly decayParams: DecayParams;
  /** The global gradient-norm clip (0: off). */
  readonly gradClip: number;
  /** The f32 [lr, 1 − lr·wd] tensor the update kernels read, written each step by setLr. */
  readonly hyper: Tensor;
  private readonly shards: ShardState[];
  private readonly clip: ClipBuffers | null;
  private current: number;

  /** An optimizer of `kind` over `store` with learning rate `lr`; the moments start at 0. */
  constructor(
    readonly rt: Runtime,
    readonly store: ParamStore,
    readonly kind: OptimizerKind,
    lr: number,
    opts: OptimizerOptions = {},
  ) {
    const { decayParams = "all", gradClip = 0, ...adam } = opts;
    this.adamw = { ...ADAMW_DEFAULTS, ...adam, lr };
    this.decayParams = decayParams;
    this.gradClip = gradClip;
    this.current = lr;
    this.hyper = Tensor.from(rt, hyperValues(lr, this.adamw.weightDecay), [2], "optim-hyper");
    this.shards = store.shards.map((sh) => {
      const n = sh.params.size;
      const params = windows(sh.params), grads = windows(sh.grads);
      const st: ShardState = {
        params,
        grads,
        m: [],
        v: [],
        mask: params.map(() => null),
        mBuf: null,
        vBuf: null,
      };
      if (kind !== "adamw") return st;
      st.mBuf = Tensor.from(rt, new Float32Array(n), [n], "adam.m");
      st.vBuf = Tensor.from(rt, new Float32Array(n), [n], "adam.v");
      st.m = windows(st.mBuf);
      st.v = windows(st.vBuf);
      if (decayParams !== "all") {
        const ranges = sh.members.flatMap((i): [number, number][] => {
          const t = store.list[i], at = store.offsets[i] - sh.start;
          return decays(decayParams, t.name, t.shape) ? [[at, at + t.size]] : [];
        });
        st.mask = maskWindows(Tensor.from(rt, decayMaskWords(n, ranges), undefined, "decay-mask"), params);
      }
      return st;
    });
    this.clip = gradClip > 0
      ? new ClipBuffers(rt, this.shards.flatMap((s) => s.grads.map((g) => g.size)))
      : null;
  }

  /** AdamW first moments, when there is one shard (null for SGD). */
  get m(): Tensor | null {
    return this.single().mBuf;
  }

  /** AdamW second moments, when there is one shard (null for SGD). */
  get v(): Tensor | null {
    return this.single().vBuf;
  }

  /** The one shard's state (throws when there are several). */
  private single(): ShardState {
    if (this.shards.length !== 1) {
      throw new Error(`Optimizer: ${this.shards.length} shards, no single buffer`);
    }
    return this.shards[0];
  }

  /** The learning rate of the next update. */
  get lr(): number {
    return this.current;
  }

  /** Set the learning rate for the next recorded update (a 2-word buffer write, nothing allocated). */
  setLr(lr: number): void {
    if (lr === this.current) return;
    this.current = lr;
    this.hyper.write(hyperValues(lr, this.adamw.weightDecay));
  }

  /** Record one update (step number t comes from the step state's word 1), after clipping if enabled. */
  step(state: Tensor): void {
    if (this.clip) clipGradNorm(this.rt, this.shards.flatMap((s) => s.grads), this.gradClip, this.clip);
    for (const s of this.shards) {
      s.params.forEach((p, w) => {
        if (this.kind === "sgd") sgdStep(this.rt, p, s.grads[w], this.hyper);
        else adamwStep(this.rt, p, s.grads[w], s.m[w], s.v[w], state, this.hyper, this.adamw, s.mask[w]);
      });
    }
  }

  /** [norm before clipping, scale applied] of the last recorded clip (null when clipping is off). */
  get clipCoef(): Tensor | null {
    return this.clip?.coef ?? null;
  }

  /** Record zeroing every gradient. */
  zeroGrad(): void {
    for (const s of this.shards) for (const g of s.grads) zeroGrads(this.rt, g);
  }

  /** Moment buffers for checkpoints, in the flat layout (empty for SGD). */
  async readState(): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    if (this.kind === "adamw") {
      out.set("adam.m", await this.store.readFlat((_, i) => this.shards[i].mBuf!));
      out.set("adam.v", await this.store.readFlat((_, i) => this.shards[i].vBuf!));
    }
    return out;
  }

  /** Restore the moments saved by `readState` (a no-op for SGD). */
  writeState(state: Map<string, Float32Array>): void {
    if (this.kind !== "adamw") return;
    const m = state.get("adam.m"), v = state.get("adam.v");
    if (!m || !v || m.length !== this.store.floats || v.length !== this.store.floats) {
      throw new Error("optimizer state does not match the model");
    }
    this.store.writeFlat(m, (_, i) => this.shards[i].mBuf!);
    this.store.writeFlat(v, (_, i) => this.shards[i].vBuf!);
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
  rng: Pick<Rng, "uniform">, // any source of uniforms in [0, 1) (the GPU path's counter-based one)
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
