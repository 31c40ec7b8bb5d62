// What a configuration needs from the adapter, before anything is allocated: every GPU buffer of a
// GPT training step or of a decoder, checked against the device's limits, and its total by kind.
// The list comes from the real constructors (ParamStore, Optimizer, GPTStep and GPTActivations) run
// on a runtime that only counts, so it cannot drift from what the step allocates; each buffer's kind
// comes from its label (`bufferKind`). Parameters, gradients and optimizer state are cut into shards
// under the binding cap and bound in windows, so they need only fit one buffer (maxBufferSize);
// every other buffer is bound whole by some kernel (the largest is the MLP's [B·T, 4C] activation:
// attention keeps O(B·H·T) per layer, the head a chunk of rows), so it must fit one storage binding. Not counted: the matmul chunk scratch a
// product past the binding cap allocates on first use (ops/matmul/chunk.ts), at most a few
// bindings. WebGPU does not report the device's total memory: the total is reported (train.ts prints
// it), and an allocation past it fails as a GPUFailure. Browser-safe.

import type { Runtime } from "../ops/runtime.ts";
import { type GPT, GPTActivations, type GPTConfig, gptParamSpecs } from "./gpt.ts";
import { fail } from "../lib/errors.ts";
import { ParamStore } from "../ops/tensor.ts";
import { type DecayParams, Optimizer } from "./common.ts";
import { GPTStep } from "../train/step.ts";
import type { Rng } from "../lib/rng.ts";

/** What a buffer holds. */
export type MemoryKind = "params" | "grads" | "optimizer" | "activations" | "head" | "attention";
/** Every kind, in the order the plan prints them. */
export const MEMORY_KINDS: readonly MemoryKind[] = [
  "params",
  "grads",
  "optimizer",
  "activations",
  "head",
  "attention",
];

/** One GPU buffer a configuration allocates. */
export interface BufferNeed {
  /** The buffer's name (GPTActivations' labels: "lse", "h", "logits", ...; "params", "adam.m"). */
  name: string;
  /** Size in bytes. */
  bytes: number;
}

/** The limits the check reads (a GPUSupportedLimits, or the device's). */
export type BufferLimits = Pick<GPUSupportedLimits, "maxStorageBufferBindingSize" | "maxBufferSize">;

/**
 * The kind of a buffer, by its label: the parameter store's, the optimizer's and gradient
 * accumulation's; attention's ("probs", "dscores", or any label starting "attn"); the LM head's and
 * loss's ("logits", "dlogits", "rowLoss", "loss", or any label starting "head"); else an activation.
 */
export function bufferKind(name: string): MemoryKind {
  if (name === "params") return "params";
  if (name === "grads" || name === "grad-accum") return "grads";
  if (/^(adam\.|decay-mask|clip-|optim-)/.test(name)) return "optimizer";
  if (name === "lse" || name === "delta" || name.startsWith("attn")) return "attention";
  if (["logits", "dlogits", "rowLoss", "loss"].includes(name) || name.startsWith("head")) return "head";
  return "activations";
}

/** Whether a buffer of this kind is bound in windows (so it only has to fit one buffer). */
const windowed = (k: MemoryKind) => k === "params" || k === "grads" || k === "optimizer";

/** Bytes per kind, and the total. */
export function bytesByKind(needs: readonly BufferNeed[]): Record<MemoryKind | "total", number> {
  const out = Object.fromEntries([...MEMORY_KINDS, "total"].map((k) => [k, 0])) as Record<
    MemoryKind | "total",
    number
  >;
  for (const n of needs) {
    out[bufferKind(n.name)] += n.bytes;
    out.total += n.bytes;
  }
  return out;
}

/** "params 475 MiB, grads 475 MiB, ..., total 2.1 GiB": a plan on one line. */
export function fmtPlan(needs: readonly BufferNeed[]): string {
  const b = bytesByKind(needs);
  return [...MEMORY_KINDS.map((k) => `${k} ${fmtBytes(b[k])}`), `total ${fmtBytes(b.total)}`].join(", ");
}

/** A runtime that allocates nothing: it lists every buffer asked for (the planner's source of truth). */
function countingRuntime(needs: BufferNeed[], maxBindingBytes: number): Runtime {
  return {
    maxBindingBytes,
    createBuffer(byteLength: number, _usage?: number, label?: string) {
      needs.push({ name: label ?? "buffer", bytes: byteLength });
      return { size: byteLength } as unknown as GPUBuffer;
    },
    write() {},
  } as unknown as Runtime;
}

export function fmtBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(1)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(n >= 10 * 2 ** 20 ? 0 : 1)} MiB`;
  return `${(n / 2 ** 10).toFixed(1)} KiB`;
}

/**
 * The buffers `new GPTActivations(rt, cfg, B, T)` allocates, found by running its constructor on a
 * runtime that only counts. No host data of the activations' size is created: the constructor
 * allocates buffers and uploads only the positions.
 */
export function gptActivationBuffers(cfg: GPTConfig, B: number, T: number): BufferNeed[] {
  const needs: BufferNeed[] = [];
  new GPTActivations(countingRuntime(needs, Infinity), cfg, B, T);
  return needs;
}

/** The GPT's parameters without their values (no host arrays of the model's size). */
function gptParamShapes(cfg: GPTConfig): { name: string; shape: readonly number[] }[] {
  const none = () => new Float32Array(0);
  const rng = { normalArray: none, uniformArray: none } as unknown as Rng;
  return gptParamSpecs(cfg, rng).map(({ name, shape }) => ({ name, shape }));
}

/** How the step is set up, besides the model and batch (what changes its buffers). */
export interface TrainingPlanOptions {
  /** The binding cap the parameter shards are laid out against (default: WebGPU's 128 MiB). */
  maxBindingBytes?: number;
  /** AdamW's decay groups (a mask buffer unless "all"). */
  decayParams?: DecayParams;
  /** Gradient clipping (scratch buffers when > 0). */
  gradClip?: number;
}

/**
 * Every buffer of a GPT training step: the ParamStore's shards, the Optimizer's state and the
 * GPTStep's (activations, gradient accumulation, micro-batch ids), from their constructors.
 */
export function gptTrainingBuffers(
  cfg: GPTConfig,
  batch: number,
  gradAccum: number,
  optimizer: "sgd" | "adamw",
  opts: TrainingPlanOptions = {},
): BufferNeed[] {
  const needs: BufferNeed[] = [];
  const rt = countingRuntime(needs, opts.maxBindingBytes ?? 2 ** 27);
  const store = new ParamStore(rt, gptParamShapes(cfg));
  const opt = new Optimizer(rt, store, optimizer, 1e-3, {
    decayParams: opts.decayParams,
    gradClip: opts.gradClip,
  });
  new GPTStep(rt, { cfg, params: store } as GPT, opt, batch, gradAccum, 0);
  return needs;
}

/** Total bytes of `needs`. */
export function totalBytes(needs: readonly BufferNeed[]): number {
  return needs.reduce((a, n) => a + n.bytes, 0);
}

/** The largest single buffer the device allows, and which limit sets it. */
export function bufferLimit(l: BufferLimits): { bytes: number; per: "binding" | "buffer" } {
  return l.maxStorageBufferBindingSize <= l.maxBufferSize
    ? { bytes: l.maxStorageBufferBindingSize, per: "binding" }
    : { bytes: l.maxBufferSize, per: "buffer" };
}

/** How a refused buffer is explained: what the buffer is, the flags (with values) that size it, the advice. */
export interface BufferHint {
  /** e.g. "attention" (becomes "a 1.6 GiB attention buffer"). */
  what: string;
  /** Shown in parentheses after "buffer" (default: the buffer's name). */
  detail?: string;
  /** The flags that size it, with their values, e.g. "--batch-size 64 --block-size 1024". */
  flags: string;
  /** What to do, e.g. "lower --batch-size or --block-size". */
  advice: string;
}

/**
 * Refuse the configuration when a buffer does not fit the device's limits: ONE UsageError line,
 * "<flags> needs a <size> <what> buffer; this adapter allows <limit> per binding: <advice>", for the
 * buffer furthest over its limit. Parameters, gradients and optimizer state (bound in windows) need
 * only fit one buffer; every other buffer must fit one binding too.
 */
export function checkBuffers(
  limits: BufferLimits,
  needs: readonly BufferNeed[],
  hint: (n: BufferNeed) => BufferHint,
): void {
  const whole = bufferLimit(limits);
  const limitOf = (n: BufferNeed) =>
    windowed(bufferKind(n.name)) ? { bytes: limits.maxBufferSize, per: "buffer" as const } : whole;
  const worst = needs.reduce<BufferNeed | null>(
    (a, n) => (n.bytes / limitOf(n).bytes > (a ? a.bytes / limitOf(a).bytes : 1) ? n : a),
    null,
  );
  if (!worst) return;
  const limit = limitOf(worst), h = hint(worst);
  fail(
    `${h.flags} needs a ${fmtBytes(worst.bytes)} ${h.what} buffer (${h.detail ?? worst.name}); ` +
      `this adapter allows ` +
      `${fmtBytes(limit.bytes)} per ${limit.per}: ${h.advice}`,
  );
}

/**
 * train.ts's check of a GPT run before allocating: refused with the flags to lower, else the plan (every
 * buffer of the step; `fmtPlan` prints it by kind).
 */
export function checkGptTraining(
  rt: Pick<Runtime, "device" | "maxBindingBytes">,
  cfg: GPTConfig,
  batch: number,
  gradAccum: number,
  optimizer: "sgd" | "adamw",
  opts: Omit<TrainingPlanOptions, "maxBindingBytes"> = {},
): BufferNeed[] {
  const needs = gptTrainingBuffers(cfg, batch, gradAccum, optimizer, {
    ...opts,
    maxBindingBytes: rt.maxBindingBytes,
  });
  const { nEmbd: C, nLayer: L, nHead: H, blockSize: T } = cfg;
  checkBuffers(rt.device.limits, needs, (n) => {
    const kind = bufferKind(n.name);
    if (windowed(kind)) {
      return {
        what: "parameter",
        flags: `--n-embd ${C} --n-layer ${L}`,
        advice: "lower --n-embd or --n-layer",
      };
    }
    const keep = "lower --batch-size (raise --grad-accum to keep the tokens per step) or --block-size";
    return kind === "attention"
      ? {
        what: "attention",
        detail: `${n.name}: batch x ${H} heads x block floats`,
        flags: `--batch-size ${batch} --block-size ${T}`,
        advice: keep,
      }
      : { what: "activation", flags: `--batch-size ${batch} --block-size ${T} --n-embd ${C}`, advice: keep };
  });
  return needs;
}
