// Checkpoints: the model as PyTorch-compatible .safetensors (metadata: model, config, vocab, step)
// and, in a sibling `.optim.safetensors`, everything `--resume` needs to continue exactly:
// optimizer moments, the step and the batch sampler's RNG state. Both are written atomically.

import type { Runtime } from "../ops/runtime.ts";
import { CheckpointError, decodeSafetensors, encodeSafetensors } from "../lib/safetensors.ts";
import { atomicWrite } from "../lib/fsutil.ts";
import { type GPTConfig, gptExport, gptImport } from "./gpt.ts";
import { GPT } from "./gpt.ts";
import { type BigramConfig, type BigramKind, BigramMLP } from "./bigram.ts";

export type ModelKind = "gpt" | BigramKind;
export type AnyModel = GPT | BigramMLP;
export type AnyConfig = GPTConfig | BigramConfig;

export interface LoadedModel {
  kind: ModelKind;
  config: AnyConfig;
  vocab: string[];
  step: number;
  model: AnyModel;
}

type StateDict = Map<string, { shape: number[]; data: Float32Array }>;

export function optimPath(path: string): string {
  return path.replace(/\.safetensors$/, "") + ".optim.safetensors";
}

async function exportState(kind: ModelKind, model: AnyModel): Promise<StateDict> {
  const values = await model.params.readAll();
  if (kind === "gpt") return gptExport((model as GPT).cfg, values);
  return new Map(model.params.list.map((t) => [t.name, { shape: [...t.shape], data: values.get(t.name)! }]));
}

export async function saveModel(
  path: string,
  kind: ModelKind,
  model: AnyModel,
  vocab: string[],
  step: number,
): Promise<void> {
  const sd = await exportState(kind, model);
  const meta = {
    model: kind,
    config: JSON.stringify(model.cfg),
    vocab: JSON.stringify(vocab),
    step: String(step),
  };
  await atomicWrite(path, encodeSafetensors(sd, meta));
}

export async function saveOptim(
  path: string,
  state: Map<string, Float32Array>,
  step: number,
  extra: Record<string, string>,
): Promise<void> {
  const sd: StateDict = new Map([...state].map(([k, v]) => [k, { shape: [v.length], data: v }]));
  await atomicWrite(optimPath(path), encodeSafetensors(sd, { step: String(step), ...extra }));
}

async function readFileChecked(path: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new CheckpointError(`checkpoint not found: ${path}`);
    if (e instanceof Deno.errors.IsADirectory) {
      throw new CheckpointError(`checkpoint is a directory: ${path}`);
    }
    throw e;
  }
}

function parseJSON<T>(s: string | undefined, what: string, path: string): T {
  try {
    if (s === undefined) throw new Error("missing");
    return JSON.parse(s) as T;
  } catch {
    throw new CheckpointError(`${path}: metadata '${what}' is missing or not valid JSON`);
  }
}

/** Read a checkpoint's metadata and tensors, validating everything against its own config. */
export async function loadModel(rt: Runtime, path: string): Promise<LoadedModel> {
  const { tensors, metadata } = decodeSafetensors(await readFileChecked(path), path);
  const kind = metadata.model as ModelKind;
  if (!["gpt", "bigram-onehot", "bigram-embedding"].includes(kind)) {
    throw new CheckpointError(`${path}: metadata 'model' must be gpt, bigram-onehot or bigram-embedding`);
  }
  const vocab = parseJSON<string[]>(metadata.vocab, "vocab", path);
  if (!Array.isArray(vocab) || vocab.some((c) => typeof c !== "string") || vocab.length === 0) {
    throw new CheckpointError(`${path}: metadata 'vocab' must be a JSON array of characters`);
  }
  const step = Number(metadata.step ?? "0");
  if (!Number.isInteger(step) || step < 0) {
    throw new CheckpointError(`${path}: metadata 'step' is not an integer`);
  }
  const config = parseJSON<AnyConfig>(metadata.config, "config", path);
  validateConfig(kind, config, vocab.length, path);
  let model: AnyModel;
  try {
    if (kind === "gpt") {
      const gpt = new GPT(rt, config as GPTConfig);
      gpt.params.writeAll(gptImport(config as GPTConfig, tensors));
      model = gpt;
    } else {
      const m = new BigramMLP(rt, kind, config as BigramConfig);
      for (const t of m.params.list) {
        const got = tensors.get(t.name);
        if (!got) throw new Error(`tensor ${t.name} is missing`);
        if (got.shape.join(",") !== t.shape.join(",")) {
          throw new Error(`tensor ${t.name} has shape [${got.shape}], expected [${t.shape}]`);
        }
      }
      for (const name of tensors.keys()) {
        if (!m.params.list.some((t) => t.name === name)) {
          throw new Error(`unexpected tensor ${name}`);
        }
      }
      m.params.writeAll(new Map([...tensors].map(([k, v]) => [k, v.data])));
      model = m;
    }
  } catch (e) {
    if (e instanceof CheckpointError) throw e;
    throw new CheckpointError(`${path}: ${(e as Error).message}`);
  }
  return { kind, config, vocab, step, model };
}

function validateConfig(kind: ModelKind, c: AnyConfig, V: number, path: string): void {
  const posInt = (x: unknown) => Number.isInteger(x) && (x as number) > 0 && (x as number) <= 1 << 20;
  const bad = (what: string) => new CheckpointError(`${path}: config ${what}`);
  if (typeof c !== "object" || c === null) throw bad("is not an object");
  if (c.vocabSize !== V) throw bad(`vocabSize ${c.vocabSize} does not match the ${V}-character vocab`);
  if (kind === "gpt") {
    const g = c as GPTConfig;
    for (const k of ["nEmbd", "nHead", "nLayer", "blockSize"] as const) {
      if (!posInt(g[k])) throw bad(`${k} is invalid`);
    }
    if (g.nEmbd % g.nHead !== 0) throw bad("nEmbd is not divisible by nHead");
    if (!(typeof g.dropout === "number" && g.dropout >= 0 && g.dropout < 1)) throw bad("dropout is invalid");
  } else {
    const b = c as BigramConfig;
    if (!posInt(b.hidden) || !posInt(b.embd)) throw bad("hidden/embd are invalid");
  }
}

/** Optimizer moments and resume metadata from the sibling file. */
export async function loadOptim(
  path: string,
): Promise<{ state: Map<string, Float32Array>; step: number; metadata: Record<string, string> }> {
  const p = optimPath(path);
  const { tensors, metadata } = decodeSafetensors(await readFileChecked(p), p);
  const step = Number(metadata.step);
  if (!Number.isInteger(step) || step < 0) {
    throw new CheckpointError(`${p}: metadata 'step' is not an integer`);
  }
  return { state: new Map([...tensors].map(([k, v]) => [k, v.data])), step, metadata };
}
