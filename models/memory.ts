// What a configuration needs from the adapter, before anything is allocated: every GPU buffer of a
// GPT training step (parameters, gradients, AdamW moments, gradient accumulation, every activation
// GPTActivations allocates) or of a decoder, checked against the device's limits. Every buffer is
// bound whole by some kernel (AdamW binds the flat parameter buffer, the head the logits), so each
// must fit in one storage binding (maxStorageBufferBindingSize) and one buffer (maxBufferSize).
// Attention keeps O(B·H·T) per layer (its softmax statistics), never B·H·T·T. WebGPU does not report the device's total memory: the total is reported
// (train.ts prints it), and an allocation past it fails as a GPUFailure. Browser-safe.

import type { Runtime } from "../ops/runtime.ts";
import { GPTActivations, gptArch, type GPTConfig } from "./gpt.ts";
import { fail } from "../lib/errors.ts";
import { paramCount } from "./checkpoint.ts";

/** One GPU buffer a configuration allocates. */
export interface BufferNeed {
  /** The buffer's name (GPTActivations' labels: "lse", "h", "logits", ...; "params", "adam.m"). */
  name: string;
  /** Size in bytes. */
  bytes: number;
}

/** The limits the check reads (a GPUSupportedLimits, or the device's). */
export type BufferLimits = Pick<GPUSupportedLimits, "maxStorageBufferBindingSize" | "maxBufferSize">;

export function fmtBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(1)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(n >= 10 * 2 ** 20 ? 0 : 1)} MiB`;
  return `${(n / 2 ** 10).toFixed(1)} KiB`;
}

/**
 * The buffers `new GPTActivations(rt, cfg, B, T)` allocates, found by running its constructor on a
 * runtime that only counts (so this list cannot drift from the real one). No host data of the
 * activations' size is created: the constructor allocates buffers and uploads only the positions.
 */
export function gptActivationBuffers(cfg: GPTConfig, B: number, T: number): BufferNeed[] {
  const needs: BufferNeed[] = [];
  const counting = {
    createBuffer(byteLength: number, _usage?: number, label?: string) {
      needs.push({ name: label ?? "buffer", bytes: byteLength });
      return { size: byteLength } as unknown as GPUBuffer;
    },
    write() {},
  };
  new GPTActivations(counting as unknown as Runtime, cfg, B, T);
  return needs;
}

/** Floats of the flat parameter buffer: ParamStore pads each of its tensors to 64 floats. */
function paramFloats(cfg: GPTConfig): number {
  const a = gptArch(cfg), bias = a.bias ? 1 : 0;
  // Embeddings 2; per layer 6 weights and 5 biases (+ qkv.bias); ln_f; the head (course: 6 + 11·L).
  const tensors = 2 + cfg.nLayer * (6 + 5 * bias + (a.qkvBias ? 1 : 0)) + 1 + bias +
    (a.tiedHead ? 0 : 1 + bias);
  return paramCount("gpt", cfg) + 64 * tensors;
}

/** Every buffer of a GPT training step: parameters, gradients, optimizer state, activations. */
export function gptTrainingBuffers(
  cfg: GPTConfig,
  batch: number,
  gradAccum: number,
  optimizer: "sgd" | "adamw",
): BufferNeed[] {
  const P = 4 * paramFloats(cfg), N = batch * cfg.blockSize;
  const needs: BufferNeed[] = [{ name: "params", bytes: P }, { name: "grads", bytes: P }];
  if (optimizer === "adamw") needs.push({ name: "adam.m", bytes: P }, { name: "adam.v", bytes: P });
  if (gradAccum > 1) {
    needs.push({ name: "grad-accum", bytes: P });
    for (let k = 0; k < gradAccum; k++) {
      needs.push({ name: "idx", bytes: 4 * N }, { name: "targets", bytes: 4 * N });
    }
  }
  return [...needs, ...gptActivationBuffers(cfg, batch, cfg.blockSize)];
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
 * Refuse the configuration when its largest buffer does not fit the device's limits: ONE UsageError
 * line, "<flags> needs a <size> <what> buffer; this adapter allows <limit> per binding: <advice>".
 */
export function checkBuffers(
  limits: BufferLimits,
  needs: readonly BufferNeed[],
  hint: (n: BufferNeed) => BufferHint,
): void {
  const limit = bufferLimit(limits);
  const worst = needs.reduce((a, n) => (n.bytes > a.bytes ? n : a), { name: "", bytes: 0 });
  if (worst.bytes <= limit.bytes) return;
  const h = hint(worst);
  fail(
    `${h.flags} needs a ${fmtBytes(worst.bytes)} ${h.what} buffer (${h.detail ?? worst.name}); ` +
      `this adapter allows ` +
      `${fmtBytes(limit.bytes)} per ${limit.per}: ${h.advice}`,
  );
}

/** Which part of the GPT a buffer belongs to, by its name (GPTActivations' and the optimizer's labels). */
export function gptBufferKind(name: string): "attention" | "parameter" | "activation" {
  if (name === "lse" || name === "delta") return "attention";
  if (["params", "grads", "adam.m", "adam.v", "grad-accum"].includes(name)) return "parameter";
  return "activation";
}

/**
 * train.ts's check of a GPT run before allocating: refused with the flags to lower, else the total
 * bytes of its buffers.
 */
export function checkGptTraining(
  rt: Pick<Runtime, "device">,
  cfg: GPTConfig,
  batch: number,
  gradAccum: number,
  optimizer: "sgd" | "adamw",
): number {
  const needs = gptTrainingBuffers(cfg, batch, gradAccum, optimizer);
  const { nEmbd: C, nLayer: L, nHead: H, blockSize: T } = cfg;
  checkBuffers(rt.device.limits, needs, (n) => {
    const kind = gptBufferKind(n.name);
    if (kind === "parameter") {
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
  return totalBytes(needs);
}
