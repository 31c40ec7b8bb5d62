// The Deno edge of the core: every file the library reads or writes goes through here (the core in
// lib/, models/ and ops/ works on bytes and runs in a browser too; see web/). The functions keep the
// names and signatures they had when they lived beside their parsers, so callers changed only their
// import line. Writes are atomic (lib/fsutil.ts); read problems are UsageError / CheckpointError
// naming the path.

import { join } from "node:path";
import { decodeText } from "../lib/data.ts";
import { UsageError } from "../lib/errors.ts";
import { CheckpointError } from "../lib/safetensors.ts";
import { atomicWrite, writing } from "../lib/fsutil.ts";
import type { Runtime } from "../ops/runtime.ts";
import {
  type AnyModel,
  buildModel,
  checkpointBytes,
  type CheckpointData,
  encodeOptim,
  type LoadedModel,
  modelBytes,
  type ModelKind,
  optimPath,
  parseModelCheckpoint,
  parseOptim,
  parseResume,
  type ResumeData,
  type TokenizerInfo,
  type TrainState,
} from "./checkpoint.ts";
import {
  HF_CHARS,
  HF_CONFIG,
  HF_WEIGHTS,
  type HFImportOptions,
  type HFModel,
  importHFGpt2,
} from "./hf_gpt2.ts";

/** A file's bytes; missing or a directory is `error` (UsageError or CheckpointError) naming the path. */
async function readChecked(
  path: string,
  what: string,
  error: new (msg: string) => Error,
): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new error(`${what} not found: ${path}`);
    if (e instanceof Deno.errors.IsADirectory) throw new error(`${what} is a directory: ${path}`);
    throw e; // permission problems etc. keep their own type (runMain reports them)
  }
}

/** Read a UTF-8 text file. Missing, a directory, empty, or invalid UTF-8: a UsageError naming the path. */
export async function loadText(path: string): Promise<string> {
  return decodeText(await readChecked(path, "data file", UsageError), path);
}

/** Read and validate a model file (CPU only). */
export async function readModelCheckpoint(path: string): Promise<CheckpointData> {
  return parseModelCheckpoint(await readChecked(path, "checkpoint", CheckpointError), path);
}

/** Read a checkpoint's metadata and tensors, validating everything against its own config. */
export async function loadModel(rt: Runtime, path: string): Promise<LoadedModel> {
  const c = await readModelCheckpoint(path);
  const { kind, config, tokenizer, vocab, step } = c;
  return { kind, config, tokenizer, vocab, step, model: buildModel(rt, c) };
}

/**
 * Read and validate what `--resume` continues from (CPU only): the resume file `optimPath(path)`, and
 * for legacy resume files without parameters, the model file `path` at the same step.
 */
export async function readResume(path: string): Promise<ResumeData> {
  const p = optimPath(path);
  const bytes = await readChecked(p, "resume state", CheckpointError);
  return parseResume(bytes, p, { path, read: () => readModelCheckpoint(path) });
}

/** Optimizer moments and resume metadata from the resume file (legacy API). */
export async function loadOptim(
  path: string,
): Promise<{ state: Map<string, Float32Array>; step: number; metadata: Record<string, string> }> {
  const p = optimPath(path);
  return parseOptim(await readChecked(p, "resume state", CheckpointError), p);
}

/**
 * Write the resume file, then the model file (both atomic). Throws NonFiniteParamsError, writing
 * nothing, if any parameter is NaN or infinite: a diverged model never replaces a good checkpoint.
 * A failed write throws a WriteError naming the file (the model file's failure leaves the new resume
 * file in place).
 */
export async function saveCheckpoint(
  path: string,
  kind: ModelKind,
  model: AnyModel,
  vocab: string[] | TokenizerInfo,
  step: number,
  optimState: Map<string, Float32Array>,
  train: TrainState,
): Promise<void> {
  const files = await checkpointBytes(kind, model, vocab, step, optimState, train);
  await writing(optimPath(path), () => atomicWrite(optimPath(path), files.resume));
  await writing(path, () => atomicWrite(path, files.model));
}

/** Write only the model file (PyTorch names). */
export async function saveModel(
  path: string,
  kind: ModelKind,
  model: AnyModel,
  vocab: string[] | TokenizerInfo,
  step: number,
): Promise<void> {
  await atomicWrite(path, await modelBytes(kind, model, vocab, step));
}

/** Write a legacy optimizer-only resume file (moments and metadata, no parameters). */
export async function saveOptim(
  path: string,
  state: Map<string, Float32Array>,
  step: number,
  extra: Record<string, string>,
): Promise<void> {
  await atomicWrite(optimPath(path), encodeOptim(state, step, extra));
}

// ---------------------------------------------------------------- Hugging Face GPT-2 directories

/** Whether `path` is a directory (a Hugging Face model directory, where a checkpoint file may also go). */
export async function isDirectory(path: string): Promise<boolean> {
  return (await Deno.stat(path).catch(() => null))?.isDirectory ?? false;
}

/**
 * Read a Hugging Face GPT-2 directory (config.json, model.safetensors, and a char model's
 * tinygpt_chars.json when there is one) and convert it (models/hf_gpt2.ts). Missing files are a
 * CheckpointError naming them.
 */
export async function readHFDir(dir: string, opts: HFImportOptions = {}): Promise<HFModel> {
  const cfgPath = join(dir, HF_CONFIG), wPath = join(dir, HF_WEIGHTS);
  for (const p of [cfgPath, wPath]) {
    if (!(await Deno.stat(p).catch(() => null))?.isFile) {
      throw new CheckpointError(`${dir} is not a Hugging Face GPT-2 directory: ${p} is missing`);
    }
  }
  const text = new TextDecoder().decode(await Deno.readFile(cfgPath));
  const chars = await Deno.readTextFile(join(dir, HF_CHARS)).catch((e) => {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  });
  return importHFGpt2(text, await Deno.readFile(wPath), dir, opts, chars);
}

/** Write a Hugging Face GPT-2 directory's files (each atomically); `dir` is created if missing. */
export async function writeHFDir(
  dir: string,
  files: { config: string; weights: Uint8Array; chars: string | null },
): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const enc = new TextEncoder();
  await writing(join(dir, HF_WEIGHTS), () => atomicWrite(join(dir, HF_WEIGHTS), files.weights));
  await writing(join(dir, HF_CONFIG), () => atomicWrite(join(dir, HF_CONFIG), enc.encode(files.config)));
  if (files.chars !== null) {
    await writing(join(dir, HF_CHARS), () => atomicWrite(join(dir, HF_CHARS), enc.encode(files.chars!)));
  }
}
