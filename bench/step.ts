// One config's training-step benchmark for bench.ts: train.ts's own step (train/step.ts) on random
// ids, timed (median of synced steps after warm-up), its allocation counters, a per-kernel profile
// from timestamp queries, and the dispatch trace of one step (name, family, workgroup size and count
// of every dispatch: the bench JSON's `kernels`). Also the preset -> model/optimizer settings that
// the bench and tests/train/dispatches.test.ts share.

import type { Runtime, TracedKernel } from "../ops/runtime.ts";
import type { MatmulProblem } from "../ops/matmul.ts";
import { MatmulTuner, matmulTuner, setMatmulTuner } from "../ops/matmul/tune.ts";
import { GPT, GPT2_ARCH, GPT_REFERENCE, type GPTConfig } from "../models/gpt.ts";
import { type DecayParams, Optimizer } from "../models/common.ts";
import { type BufferNeed, bytesByKind, checkGptTraining } from "../models/memory.ts";
import { Rng } from "../lib/rng.ts";
import { ARCHS, PRESETS } from "../train/config.ts";
import { GPTStep, type Phase } from "../train/step.ts";

/** The model and AdamW settings of a preset (train.ts's defaults under it), at a batch shape. */
export interface StepSettings {
  /** The preset's name (lecture, nanogpt-char). */
  preset: string;
  /** The model config, with the keys the checkpoint metadata stores. */
  cfg: GPTConfig;
  /** Sequences per micro-batch. */
  batch: number;
  /** Micro-batches per step. */
  gradAccum: number;
  /** AdamW's learning rate. */
  lr: number;
  /** AdamW's other settings. */
  opt: { beta2: number; weightDecay: number; decayParams: DecayParams; gradClip: number };
}

/** The bench's configs: train.ts's presets, and GPT-2 124M (random weights, GPT-2's vocabulary). */
export const BENCH_CONFIGS: readonly string[] = [...Object.keys(PRESETS), "gpt2"];

/** GPT-2 124M (Hugging Face's gpt2: 12 layers, 12 heads, n_embd 768, block 1024, vocabulary 50257). */
export const GPT2_124M: GPTConfig = {
  vocabSize: 50257,
  nEmbd: 768,
  nHead: 12,
  nLayer: 12,
  blockSize: 1024,
  dropout: 0,
  ...GPT2_ARCH,
};

/** `preset`'s settings (vocabulary 65, TinyShakespeare's), optionally at another batch or model shape. */
export function presetSettings(
  preset: string,
  over: { batch?: number; gradAccum?: number; cfg?: Partial<GPTConfig> } = {},
): StepSettings {
  if (preset === "gpt2") {
    // nanoGPT's finetuning settings, at batch 1.
    return {
      preset,
      cfg: { ...GPT2_124M, ...over.cfg },
      batch: over.batch ?? 1,
      gradAccum: over.gradAccum ?? 1,
      lr: 3e-5,
      opt: { beta2: 0.99, weightDecay: 0.1, decayParams: "2d", gradClip: 1 },
    };
  }
  const p = PRESETS[preset];
  if (!p) throw new Error(`no preset ${preset}`);
  const num = (k: string, def: number) => Number(p[k] ?? def);
  return {
    preset,
    cfg: {
      vocabSize: 65,
      nEmbd: num("n-embd", GPT_REFERENCE.nEmbd),
      nHead: num("n-head", GPT_REFERENCE.nHead),
      nLayer: num("n-layer", GPT_REFERENCE.nLayer),
      blockSize: num("block-size", GPT_REFERENCE.blockSize),
      dropout: num("dropout", GPT_REFERENCE.dropout),
      ...ARCHS[p.arch ?? "course"], // nanogpt-char: nanoGPT's architecture, as train.ts builds it
      ...over.cfg,
    },
    batch: over.batch ?? num("batch-size", 64),
    gradAccum: over.gradAccum ?? 1,
    lr: num("lr", 1e-3),
    opt: {
      beta2: num("beta2", 0.999),
      weightDecay: num("weight-decay", 0.01),
      decayParams: (p["decay-params"] ?? "all") as DecayParams,
      gradClip: num("grad-clip", 0),
    },
  };
}

/** Analytic FLOPs of one training step (multiply-add = 2). Elementwise ops are not counted. */
export function stepFlops(cfg: GPTConfig, B: number, T: number): { matmul: number; attention: number } {
  const N = B * T, C = cfg.nEmbd, V = cfg.vocabSize, L = cfg.nLayer;
  // Per block: qkv (C -> 3C), proj (C -> C), fc (C -> 4C), mlp proj (4C -> C): 2·N·C·12C forward.
  // Backward doubles it (dx and dW). The LM head is one more Linear (C -> V).
  const fwd = L * 24 * N * C * C + 2 * N * C * V;
  // Attention per block, over the causal triangle the kernels compute (query t sees keys j <= t:
  // T(T+1)/2 pairs per sequence and head, not T²): Q·Kᵀ and P·V forward, dP, dQ, dK and dV backward,
  // six products of hs multiply-adds per pair, over H heads of hs = C / H.
  const attention = L * 6 * B * T * (T + 1) * C;
  return { matmul: 3 * fwd, attention };
}

/** A training step of `s` on random ids, ready to record (train.ts's GPTStep and AdamW). */
export class BenchStep {
  readonly step: GPTStep;
  /** Every buffer the step plans (models/memory.ts), checked against the adapter's limits. */
  readonly plan: BufferNeed[];
  /** Where each phase of the last recorded step began (dispatch counter values). */
  readonly marks: { phase: Phase; at: number }[] = [];
  private n = 0;
  private readonly rng = new Rng(1);

  constructor(readonly rt: Runtime, readonly s: StepSettings) {
    this.plan = checkGptTraining(rt, s.cfg, s.batch, s.gradAccum, "adamw", s.opt);
    const model = new GPT(rt, s.cfg, 1337);
    const opt = new Optimizer(rt, model.params, "adamw", s.lr, s.opt);
    this.step = new GPTStep(rt, model, opt, s.batch, s.gradAccum, 1337);
  }

  /** Steps recorded so far. */
  get count(): number {
    return this.n;
  }

  /** Record one step and submit it. */
  record(): void {
    const { rt, s } = this;
    const { vocabSize: V, blockSize: T } = s.cfg;
    const batch = () => {
      const x = new Uint32Array(s.batch * T), y = new Uint32Array(s.batch * T);
      for (let i = 0; i < x.length; i++) x[i] = this.rng.int(V), y[i] = this.rng.int(V);
      return { x, y };
    };
    this.marks.length = 0;
    this.step.record(++this.n, this.step.opt.lr, batch, undefined, (phase) => {
      this.marks.push({ phase, at: rt.stats.dispatches });
    });
    rt.submit();
  }

  /** Record, submit and trace one step: every dispatch's name, family and grid. */
  trace(): TracedKernel[] {
    this.rt.startTrace();
    try {
      this.record();
    } catch (e) {
      this.rt.stopTrace();
      throw e;
    }
    return this.rt.stopTrace();
  }
}

/** One dispatch of the traced step, as the bench JSON lists it. */
export interface KernelEntry extends TracedKernel {
  /** GPU milliseconds (mean over the profiled steps); null without timestamp queries. */
  ms: number | null;
}

export interface KernelRow {
  name: string;
  calls: number;
  ms: number;
}

export interface StepBenchOptions {
  steps: number;
  warmup: number;
  profileSteps: number;
  /** Stop the timed loop after this many seconds (at least one step is timed). */
  timeBudgetS: number;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.round(q * (s.length - 1))))];
}

/** One timestamp pair per dispatch, in one query set of at most 4096 queries. */
const PROFILE_CAPACITY = 2048;

/**
 * The matmuls one training step of `s` records in the gpu family: the first product of each shape
 * class (ops/matmul/variants.ts shapeClass), its operands alive, for the bench's tuning table.
 */
export async function stepProducts(rt: Runtime, s: StepSettings): Promise<MatmulProblem[]> {
  const family = rt.kernels, installed = matmulTuner(rt);
  const probe = await MatmulTuner.create(rt, { mode: "on", store: null, log: () => {} });
  setMatmulTuner(rt, probe);
  rt.kernels = "gpu";
  try {
    new BenchStep(rt, s).record();
    await rt.sync();
    return [...probe.queued.values()];
  } finally {
    rt.kernels = family;
    setMatmulTuner(rt, installed ?? null);
  }
}

/** Time, count, trace and profile the training step of `s` (see the header). */
export async function benchStep(rt: Runtime, s: StepSettings, o: StepBenchOptions) {
  const b = new BenchStep(rt, s);
  let t0 = performance.now();
  // The first step compiles every pipeline; its trace is the step's dispatch list.
  const trace = b.trace();
  await rt.sync();
  const firstStepMs = performance.now() - t0;
  // The matmul tuner (--tune, gpu family) times the shape classes the first step met; one more step
  // compiles the winners, so the steps after it allocate nothing.
  const tuner = matmulTuner(rt);
  let tuneMs = 0;
  if (tuner?.hasPending) {
    t0 = performance.now();
    await tuner.tunePending();
    tuneMs = performance.now() - t0;
    b.record();
    await rt.sync();
  }
  const afterFirst = { ...rt.stats };
  for (let i = 1; i < o.warmup; i++) {
    b.record();
    await rt.sync();
  }
  const before = { ...rt.stats };
  const times: number[] = [];
  const start = performance.now();
  for (let i = 0; i < o.steps && (i === 0 || performance.now() - start < 1000 * o.timeBudgetS); i++) {
    t0 = performance.now();
    b.record();
    await rt.sync();
    times.push(performance.now() - t0);
  }
  const after = { ...rt.stats };
  // Back-to-back steps with one sync at the end (what train.ts does between loss readbacks), as many
  // as the rest of the time budget allows, up to 10; skipped under 3 (a slow config on a CPU adapter).
  const left = Math.floor((1000 * o.timeBudgetS - (performance.now() - start)) / median(times));
  const fit = Math.min(times.length, 10, Math.max(0, left));
  const pipelinedSteps = fit >= 3 ? fit : 0;
  t0 = performance.now();
  for (let i = 0; i < pipelinedSteps; i++) b.record();
  await rt.sync();
  const pipelinedMs = pipelinedSteps ? (performance.now() - t0) / pipelinedSteps : NaN;
  const loss = (await b.step.acts.loss.read())[0];
  // What one host wait (queue.onSubmittedWorkDone) costs on its own: part of every synced step.
  const waits: number[] = [];
  for (let i = 0; i < 5; i++) {
    t0 = performance.now();
    await rt.sync();
    waits.push(performance.now() - t0);
  }
  const msStep = median(times);
  const T = s.cfg.blockSize, tokens = s.gradAccum * s.batch * T;
  const flops = stepFlops(s.cfg, s.gradAccum * s.batch, T);
  const totalFlops = flops.matmul + flops.attention;
  const perStep = (k: keyof typeof after) => (after[k] - before[k]) / times.length;
  const step = {
    timedSteps: times.length,
    firstStepMs,
    /** Milliseconds the matmul tuner spent after the first step (0: nothing to time). */
    tuneMs,
    msMedian: msStep,
    msMin: Math.min(...times),
    msP90: quantile(times, 0.9),
    msMean: times.reduce((a, x) => a + x, 0) / times.length,
    pipelinedMs,
    syncMs: median(waits),
    tokensPerSec: tokens / (msStep / 1000),
    flops: { ...flops, total: totalFlops },
    gflops: totalFlops / msStep / 1e6,
    dispatchesPerStep: perStep("dispatches"),
    submitsPerStep: perStep("submits"),
    readbacksPerStep: perStep("readbacks"),
    loss,
  };
  const alloc = {
    buffers: after.buffersCreated - afterFirst.buffersCreated,
    bindGroups: after.bindGroupsCreated - afterFirst.bindGroupsCreated,
    pipelines: after.pipelinesCreated - afterFirst.pipelinesCreated,
    uniforms: after.uniformsCreated - afterFirst.uniformsCreated,
  };

  // Per-kernel GPU time: one pass per dispatch with timestamps, `profileSteps` steps.
  const profiled = new Array<number>(trace.length).fill(0);
  let profile: {
    steps: number;
    kernelMs: number;
    phases: Record<Phase, number>;
    kernels: KernelRow[];
    families: KernelRow[];
  } | null = null;
  let noProfile = "";
  if (!rt.hasTimestamps) noProfile = "no timestamp-query";
  else if (trace.length > PROFILE_CAPACITY) {
    noProfile = `${trace.length} dispatches per step, over the profiler's ${PROFILE_CAPACITY}`;
  } else if (o.profileSteps === 0) noProfile = "--profile-steps 0";
  else {
    const rows = new Map<string, KernelRow>();
    const phases: Record<Phase, number> = { forward: 0, backward: 0, optimizer: 0 };
    for (let p = 0; p < o.profileSteps; p++) {
      rt.startProfile(PROFILE_CAPACITY);
      b.record();
      const k = await rt.stopProfile();
      const d0 = b.marks[0].at;
      k.forEach((x, i) => {
        const r = rows.get(x.name) ?? { name: x.name, calls: 0, ms: 0 };
        r.calls++;
        r.ms += x.ms;
        rows.set(x.name, r);
        if (i < profiled.length) profiled[i] += x.ms / o.profileSteps;
        phases[b.marks.findLast((m) => m.at <= d0 + i)!.phase] += x.ms;
      });
    }
    const per = (r: KernelRow) => ({ ...r, calls: r.calls / o.profileSteps, ms: r.ms / o.profileSteps });
    const kernels = [...rows.values()].map(per).sort((a, x) => x.ms - a.ms);
    const fam = new Map<string, KernelRow>();
    for (const r of kernels) {
      const name = r.name.split(" ")[0];
      const f = fam.get(name) ?? { name, calls: 0, ms: 0 };
      f.calls += r.calls;
      f.ms += r.ms;
      fam.set(name, f);
    }
    for (const p of Object.keys(phases) as Phase[]) phases[p] /= o.profileSteps;
    profile = {
      steps: o.profileSteps,
      kernelMs: kernels.reduce((a, r) => a + r.ms, 0),
      phases,
      kernels,
      families: [...fam.values()].sort((a, x) => x.ms - a.ms),
    };
  }
  const kernels: KernelEntry[] = trace.map((k, i) => ({ ...k, ms: profile ? profiled[i] : null }));
  const sizes = trace.map((k) => k.workgroupSize);
  return {
    family: rt.kernels,
    kernels,
    planned: bytesByKind(b.plan),
    dispatchesPerStep: trace.length,
    msPerStep: msStep,
    workgroupSizes: { min: Math.min(...sizes), max: Math.max(...sizes) },
    step,
    alloc,
    profile,
    noProfile,
  };
}

/** What benchStep returns. */
export type StepBench = Awaited<ReturnType<typeof benchStep>>;
