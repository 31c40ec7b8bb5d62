// Checkpoints. Two files, each a safetensors file written atomically (temp file, fsync, rename):
//
//   model.safetensors        the model with PyTorch-compatible names (metadata: model, config, vocab,
//                            step): what sample.ts and other tools read.
//   model.optim.safetensors  everything `--resume` needs to continue exactly, self-contained: the
//                            parameters (internal names, `param.<name>`), the optimizer moments, the
//                            step, the optimizer, lr, seed, batch size, the batch sampler's RNG state
//                            and `train_config`, the run's resolved training settings (JSON, by flag
//                            name: schedule, betas, weight decay and its groups, clipping, accumulation).
//
// This module is browser-safe: bytes in, bytes out. models/files.ts reads and writes the files (Deno):
// `saveCheckpoint` there writes the resume file first, then the model. A kill between the two renames
// leaves a model one save older than the resume file; both still load, and --resume continues from
// the newer resume file, so no completed step is lost and nothing is mixed.
//
// Parsing validates everything on the CPU before any GPU allocation (`parseModelCheckpoint`,
// `parseResume`): metadata, the config against the vocabulary and the supported limits, the parameter
// count the config implies against what the file holds, every tensor name and shape. Any problem is a
// CheckpointError naming the file.

import type { Runtime } from "../ops/runtime.ts";
import { MAX_HS } from "../ops/attention.ts";
import {
  CheckpointError,
  decodeSafetensors,
  encodeSafetensors,
  type StoredTensor,
} from "../lib/safetensors.ts";
import { archProblem, GPT, gptArch, type GPTConfig, gptExport, gptImport, gptParamSpecs } from "./gpt.ts";
import { GPT2_VOCAB_SIZE, type TokenizerKind } from "../lib/tokenizer.ts";
import { type BigramConfig, type BigramKind, BigramMLP, bigramParamSpecs } from "./bigram.ts";
import { Rng } from "../lib/rng.ts";
import type { OptimizerKind } from "./common.ts";

/** The model families a checkpoint can hold. */
export type ModelKind = "gpt" | BigramKind;
/** A model of any family. */
export type AnyModel = GPT | BigramMLP;
/** The config of any family. */
export type AnyConfig = GPTConfig | BigramConfig;
export const MODEL_KINDS: readonly ModelKind[] = ["gpt", "bigram-onehot", "bigram-embedding"];

export interface LoadedModel {
  kind: ModelKind;
  config: AnyConfig;
  /** The tokenizer the model was trained with. */
  tokenizer: TokenizerKind;
  vocab: string[];
  step: number;
  model: AnyModel;
}

/** A checkpoint read and validated on the CPU (nothing allocated on the GPU yet). */
export interface CheckpointData {
  /** The model family. */
  kind: ModelKind;
  /** The model config (vocabulary size included). */
  config: AnyConfig;
  /** The tokenizer the model was trained with (metadata `tokenizer`; absent in older files: char). */
  tokenizer: TokenizerKind;
  /** The char tokenizer's characters (id order); [] with the gpt2 tokenizer. */
  vocab: string[];
  /** Optimizer steps done. */
  step: number;
  /** Parameter values by internal name (the GPT's Q/K/V fused), each checked against the config. */
  params: Map<string, Float32Array>;
  /** The file's raw string metadata. */
  metadata: Record<string, string>;
}

/** What `--resume` continues from: the model plus the training state. */
export interface ResumeData extends CheckpointData {
  /** The optimizer of the run. */
  optimizer: OptimizerKind;
  /** Optimizer buffers by name (adam.m, adam.v; empty for SGD). Sizes are checked by `buildResume`. */
  optimState: Map<string, Float32Array>;
  /** Batch sampler RNG state (4 words; empty for bigram models or legacy files without one). */
  rng: number[];
  /** Hyperparameters the run used (absent in files written before they were recorded). */
  lr?: number;
  /** Seed of the run. */
  seed?: number;
  /** Batch size of the run. */
  batch?: number;
  /** The run's training settings by flag name (`train_config`; absent in older files). */
  settings?: Record<string, unknown>;
  /** The resume file. */
  file: string;
  /** Where the parameters came from: the resume file itself, or (legacy files) model.safetensors. */
  source: string;
}

type StateDict = Map<string, StoredTensor>;

/**
 * Largest block size / layer count / width a checkpoint may declare (train.ts's --block-size takes up
 * to this too; the adapter's buffer limits, models/memory.ts, refuse far less).
 */
export const MAX_DIM = 1 << 20;
const PARAM_PREFIX = "param.";
const RESUME_FORMAT = "tinygpt-resume/2";

export function optimPath(path: string): string {
  return path.replace(/\.safetensors$/, "") + ".optim.safetensors";
}

/** The number of parameters a config implies (before any allocation; the layout is models/*.ts'). */
export function paramCount(kind: ModelKind, c: AnyConfig): number {
  const V = c.vocabSize;
  if (kind === "gpt") {
    const g = c as GPTConfig, { nEmbd: C, blockSize: T, nLayer: L } = g;
    const a = gptArch(g), bias = a.bias ? 1 : 0;
    // Per layer: 12C² weights, two LayerNorms (C, + C with bias), biases of proj, fc, mlp.proj (6C), of qkv (3C).
    const layer = 12 * C * C + 2 * C * (1 + bias) + 6 * C * bias + (a.qkvBias ? 3 * C : 0);
    const head = a.tiedHead ? 0 : V * C + V * bias;
    return V * C + T * C + L * layer + C * (1 + bias) + head;
  }
  const { hidden: H, embd: E } = c as BigramConfig;
  const inp = kind === "bigram-onehot" ? V : E;
  return (kind === "bigram-embedding" ? V * E : 0) + H * inp + H + V * H + V;
}

function internalShapes(kind: ModelKind, c: AnyConfig): Map<string, readonly number[]> {
  const specs = kind === "gpt"
    ? gptParamSpecs(c as GPTConfig, new Rng(0))
    : bigramParamSpecs(kind, c as BigramConfig, new Rng(0));
  return new Map(specs.map((s) => [s.name, s.shape]));
}

// ---------------------------------------------------------------------------------------------
// Writing

/** A model's tokenizer as checkpoints record it: `vocab` is the char tokenizer's character list. */
export interface TokenizerInfo {
  /** Which tokenizer. */
  kind: TokenizerKind;
  /** The characters (char); [] (gpt2). */
  vocab: string[];
}

/** `vocab` alone (the older API) is a char tokenizer. */
function tokInfo(t: string[] | TokenizerInfo): TokenizerInfo {
  return Array.isArray(t) ? { kind: "char", vocab: t } : t;
}

function encodeMeta(kind: ModelKind, config: AnyConfig, tok: TokenizerInfo, step: number) {
  // A GPT's config records its architecture options (defaults filled in), so a file says what it holds.
  const cfg = kind === "gpt" ? { ...config, ...gptArch(config as GPTConfig) } : config;
  return {
    model: kind,
    config: JSON.stringify(cfg),
    tokenizer: tok.kind,
    vocab: JSON.stringify(tok.vocab),
    step: String(step),
  };
}

/** The training state the resume file records beside the tensors. */
export interface TrainState {
  /** `sgd` or `adamw`. */
  optimizer: OptimizerKind;
  /** The base learning rate (the schedule's peak). */
  lr: number;
  /** The run's seed (init, batches, dropout). */
  seed: number;
  /** Sequences per micro-batch. */
  batch: number;
  /** The batch sampler's RNG state (Rng.state()). */
  rng: number[];
  /** The resolved training settings by flag name, stored as `train_config` (JSON). */
  settings?: Record<string, number | string>;
}

/** The model file's bytes from internal parameter values (PyTorch names for the GPT). */
export function encodeModelCheckpoint(
  kind: ModelKind,
  config: AnyConfig,
  values: Map<string, Float32Array>,
  vocab: string[] | TokenizerInfo,
  step: number,
  extraMeta: Record<string, string> = {},
): Uint8Array {
  const shapes = internalShapes(kind, config);
  const sd: StateDict = kind === "gpt"
    ? gptExport(config as GPTConfig, values)
    : new Map([...shapes].map(([name, shape]) => [name, { shape: [...shape], data: values.get(name)! }]));
  return encodeSafetensors(sd, { ...extraMeta, ...encodeMeta(kind, config, tokInfo(vocab), step) });
}

/** The resume file's bytes: parameters (internal names), optimizer buffers, training metadata. */
export function encodeResumeCheckpoint(
  kind: ModelKind,
  config: AnyConfig,
  values: Map<string, Float32Array>,
  vocab: string[] | TokenizerInfo,
  step: number,
  optimState: Map<string, Float32Array>,
  train: TrainState,
): Uint8Array {
  const sd: StateDict = new Map();
  for (const [name, shape] of internalShapes(kind, config)) {
    sd.set(PARAM_PREFIX + name, { shape: [...shape], data: values.get(name)! });
  }
  for (const [k, v] of optimState) sd.set(k, { shape: [v.length], data: v });
  return encodeSafetensors(sd, {
    format: RESUME_FORMAT,
    ...encodeMeta(kind, config, tokInfo(vocab), step),
    optimizer: train.optimizer,
    lr: String(train.lr),
    seed: String(train.seed),
    batch: String(train.batch),
    rng: JSON.stringify(train.rng),
    ...(train.settings ? { train_config: JSON.stringify(train.settings) } : {}),
  });
}

/** The name of the first parameter holding a NaN or an infinity, or null when all are finite. */
export function firstNonFiniteParam(values: Map<string, Float32Array>): string | null {
  for (const [name, v] of values) {
    for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i])) return name;
  }
  return null;
}

/** Refusing to write a checkpoint whose parameters are not all finite (training diverged). */
export class NonFiniteParamsError extends Error {
  override name = "NonFiniteParamsError";
  constructor(readonly param: string) {
    super(`parameter ${param} holds NaN or infinity`);
  }
}

/**
 * The bytes of both checkpoint files from the model on the GPU. Throws NonFiniteParamsError if any
 * parameter is NaN or infinite: a diverged model never replaces a good checkpoint.
 */
export async function checkpointBytes(
  kind: ModelKind,
  model: AnyModel,
  vocab: string[] | TokenizerInfo,
  step: number,
  optimState: Map<string, Float32Array>,
  train: TrainState,
): Promise<{ resume: Uint8Array; model: Uint8Array }> {
  const values = await model.params.readAll();
  const bad = firstNonFiniteParam(values);
  if (bad !== null) throw new NonFiniteParamsError(bad);
  const meta: Record<string, string> = train.settings ? { train_config: JSON.stringify(train.settings) } : {};
  return {
    resume: encodeResumeCheckpoint(kind, model.cfg, values, vocab, step, optimState, train),
    model: encodeModelCheckpoint(kind, model.cfg, values, vocab, step, meta),
  };
}

/** The model file's bytes (PyTorch names) from the model on the GPU: what `model.safetensors` holds. */
export async function modelBytes(
  kind: ModelKind,
  model: AnyModel,
  vocab: string[] | TokenizerInfo,
  step: number,
): Promise<Uint8Array> {
  return encodeModelCheckpoint(kind, model.cfg, await model.params.readAll(), vocab, step);
}

/** A legacy optimizer-only resume file's bytes (moments and metadata, no parameters). */
export function encodeOptim(
  state: Map<string, Float32Array>,
  step: number,
  extra: Record<string, string>,
): Uint8Array {
  const sd: StateDict = new Map([...state].map(([k, v]) => [k, { shape: [v.length], data: v }]));
  return encodeSafetensors(sd, { step: String(step), ...extra });
}

// ---------------------------------------------------------------------------------------------
// Reading

function parseJSON<T>(s: string | undefined, what: string, path: string): T {
  try {
    if (s === undefined) throw new Error("missing");
    return JSON.parse(s) as T;
  } catch {
    throw new CheckpointError(`${path}: metadata '${what}' is missing or not valid JSON`);
  }
}

/** kind, config, vocab and step from a file's metadata, validated. */
function parseHeader(
  metadata: Record<string, string>,
  path: string,
): { kind: ModelKind; config: AnyConfig; tokenizer: TokenizerKind; vocab: string[]; step: number } {
  const kind = metadata.model as ModelKind;
  if (!MODEL_KINDS.includes(kind)) {
    throw new CheckpointError(`${path}: metadata 'model' must be gpt, bigram-onehot or bigram-embedding`);
  }
  const tokenizer = (metadata.tokenizer ?? "char") as TokenizerKind;
  if (tokenizer !== "char" && tokenizer !== "gpt2") {
    throw new CheckpointError(`${path}: metadata 'tokenizer' must be char or gpt2`);
  }
  const vocab = parseJSON<string[]>(
    metadata.vocab ?? (tokenizer === "gpt2" ? "[]" : undefined),
    "vocab",
    path,
  );
  if (tokenizer === "gpt2") {
    if (!Array.isArray(vocab) || vocab.length !== 0) {
      throw new CheckpointError(`${path}: metadata 'vocab' must be empty with the gpt2 tokenizer`);
    }
  } else if (!Array.isArray(vocab) || vocab.length === 0) {
    throw new CheckpointError(`${path}: metadata 'vocab' must be a non-empty JSON array of characters`);
  }
  const seen = new Set<string>();
  for (const c of vocab) {
    if (typeof c !== "string" || Array.from(c).length !== 1) {
      throw new CheckpointError(`${path}: metadata 'vocab' has an entry that is not one character`);
    }
    if (seen.has(c)) throw new CheckpointError(`${path}: metadata 'vocab' repeats ${JSON.stringify(c)}`);
    seen.add(c);
  }
  const step = Number(metadata.step ?? "0");
  if (!Number.isSafeInteger(step) || step < 0) {
    throw new CheckpointError(`${path}: metadata 'step' is not a non-negative integer`);
  }
  const config = parseJSON<AnyConfig>(metadata.config, "config", path);
  validateConfig(kind, config, tokenizer === "gpt2" ? null : vocab.length, path);
  return { kind, config, tokenizer, vocab, step };
}

/** V: the char vocabulary's size, or null for the gpt2 tokenizer (which needs vocabSize >= 50257). */
function validateConfig(kind: ModelKind, c: AnyConfig, V: number | null, path: string): void {
  const posInt = (x: unknown) => Number.isInteger(x) && (x as number) > 0 && (x as number) <= MAX_DIM;
  const bad = (what: string) => new CheckpointError(`${path}: config ${what}`);
  if (typeof c !== "object" || c === null || Array.isArray(c)) throw bad("is not an object");
  if (V === null) {
    if (!(posInt(c.vocabSize) && c.vocabSize >= GPT2_VOCAB_SIZE)) {
      throw bad(`vocabSize ${c.vocabSize} is below the gpt2 tokenizer's ${GPT2_VOCAB_SIZE}`);
    }
  } else if (c.vocabSize !== V) throw bad(`vocabSize ${c.vocabSize} does not match the ${V}-character vocab`);
  if (kind === "gpt") {
    const g = c as GPTConfig;
    for (const k of ["nEmbd", "nHead", "nLayer", "blockSize"] as const) {
      if (!posInt(g[k])) throw bad(`${k} is invalid (${JSON.stringify(g[k])})`);
    }
    if (g.nEmbd % g.nHead !== 0) throw bad(`nEmbd ${g.nEmbd} is not divisible by nHead ${g.nHead}`);
    if (g.nEmbd / g.nHead > MAX_HS) throw bad(`head size ${g.nEmbd / g.nHead} exceeds the maximum ${MAX_HS}`);
    if (!(typeof g.dropout === "number" && g.dropout >= 0 && g.dropout < 1)) throw bad("dropout is invalid");
    const arch = archProblem(g);
    if (arch) throw bad(arch);
  } else {
    const b = c as BigramConfig;
    if (!posInt(b.hidden) || !posInt(b.embd)) throw bad("hidden/embd are invalid");
  }
}

/** Refuse a config whose parameters the file cannot hold, before anything of that size is allocated. */
function checkCount(kind: ModelKind, config: AnyConfig, stored: number, path: string): void {
  const need = paramCount(kind, config);
  if (need !== stored) {
    throw new CheckpointError(
      `${path}: the tensors hold ${stored} values but the config ${JSON.stringify(config)} needs ${need}`,
    );
  }
}

function numel(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * Internal parameter values from `sd`: PyTorch names (`exported`, the model file; converted for the GPT)
 * or internal names (the resume file). Names must be exactly the config's, with the right shapes.
 */
function importParams(kind: ModelKind, config: AnyConfig, sd: StateDict, path: string, exported: boolean) {
  let total = 0;
  for (const t of sd.values()) total += numel(t.shape);
  checkCount(kind, config, total, path);
  try {
    if (kind === "gpt" && exported) return gptImport(config as GPTConfig, sd);
    const out = new Map<string, Float32Array>();
    const want = internalShapes(kind, config);
    const label = (name: string) => (exported ? name : PARAM_PREFIX + name);
    for (const [name, shape] of want) {
      const got = sd.get(name);
      if (!got) throw new Error(`tensor ${label(name)} is missing`);
      if (got.shape.join(",") !== shape.join(",")) {
        throw new Error(`tensor ${label(name)} has shape [${got.shape}], expected [${shape}]`);
      }
      out.set(name, got.data);
    }
    for (const name of sd.keys()) if (!want.has(name)) throw new Error(`unexpected tensor ${label(name)}`);
    return out;
  } catch (e) {
    if (e instanceof CheckpointError) throw e;
    throw new CheckpointError(`${path}: ${(e as Error).message}`);
  }
}

/** Decode and validate a model file's bytes (CPU only). */
export function parseModelCheckpoint(bytes: Uint8Array, path: string): CheckpointData {
  const { tensors, metadata } = decodeSafetensors(bytes, path);
  if (metadata.format === RESUME_FORMAT) {
    throw new CheckpointError(`${path}: this is a training-state file for --resume, not a model file`);
  }
  const h = parseHeader(metadata, path);
  return { ...h, params: importParams(h.kind, h.config, tensors, path, true), metadata };
}

/** Allocate the model on the GPU and upload the checkpoint's parameters. */
export function buildModel(rt: Runtime, c: CheckpointData): AnyModel {
  const model = c.kind === "gpt"
    ? new GPT(rt, c.config as GPTConfig)
    : new BigramMLP(rt, c.kind, c.config as BigramConfig);
  model.params.writeAll(c.params);
  return model;
}

function optionalNumber(
  metadata: Record<string, string>,
  key: string,
  path: string,
  ok: (x: number) => boolean,
): number | undefined {
  if (metadata[key] === undefined) return undefined;
  const x = Number(metadata[key]);
  if (metadata[key].trim() === "" || !ok(x)) {
    throw new CheckpointError(`${path}: metadata '${key}' is invalid (${JSON.stringify(metadata[key])})`);
  }
  return x;
}

/**
 * Decode and validate what `--resume` continues from (CPU only): the bytes of the resume file `p`, and
 * for legacy resume files without parameters, the model file `legacyModel.path` (read only then) at
 * the same step.
 */
export async function parseResume(
  bytes: Uint8Array,
  p: string,
  legacyModel: { path: string; read(): Promise<CheckpointData> },
): Promise<ResumeData> {
  const { tensors, metadata } = decodeSafetensors(bytes, p);
  const params: StateDict = new Map();
  const optimState = new Map<string, Float32Array>();
  for (const [name, t] of tensors) {
    if (name.startsWith(PARAM_PREFIX)) params.set(name.slice(PARAM_PREFIX.length), t);
    else if (name === "adam.m" || name === "adam.v") {
      if (t.shape.length !== 1) throw new CheckpointError(`${p}: tensor ${name} must be one-dimensional`);
      optimState.set(name, t.data);
    } else throw new CheckpointError(`${p}: unexpected tensor ${name}`);
  }
  let base: CheckpointData;
  let source = p;
  if (params.size > 0) {
    const h = parseHeader(metadata, p);
    base = { ...h, params: importParams(h.kind, h.config, params, p, false), metadata };
  } else {
    // Legacy layout: parameters only in the model file, which must be from the same step.
    base = await legacyModel.read();
    source = legacyModel.path;
    const step = Number(metadata.step);
    if (step !== base.step) {
      throw new CheckpointError(
        `${p}: optimizer state is from step ${metadata.step}, ${source} from step ${base.step}`,
      );
    }
  }
  const optimizer = (metadata.optimizer ?? (optimState.size ? "adamw" : "sgd")) as OptimizerKind;
  if (optimizer !== "sgd" && optimizer !== "adamw") {
    throw new CheckpointError(`${p}: metadata 'optimizer' must be sgd or adamw`);
  }
  if (optimizer === "adamw" && !(optimState.has("adam.m") && optimState.has("adam.v"))) {
    throw new CheckpointError(`${p}: adamw state needs tensors adam.m and adam.v`);
  }
  if (optimizer === "sgd" && optimState.size) throw new CheckpointError(`${p}: sgd has no optimizer tensors`);
  let rng: number[] = [];
  if (metadata.rng !== undefined) {
    rng = parseJSON<number[]>(metadata.rng, "rng", p);
    const u32 = (x: unknown) => Number.isInteger(x) && (x as number) >= 0 && (x as number) <= 0xffffffff;
    const ok = Array.isArray(rng) &&
      (base.kind === "gpt"
        ? rng.length === 4 && rng.every(u32) && rng.some((x) => x !== 0)
        : rng.length === 0);
    if (!ok) throw new CheckpointError(`${p}: metadata 'rng' is not a valid generator state`);
  }
  let settings: Record<string, unknown> | undefined;
  if (metadata.train_config !== undefined) {
    settings = parseJSON<Record<string, unknown>>(metadata.train_config, "train_config", p);
    if (typeof settings !== "object" || settings === null || Array.isArray(settings)) {
      throw new CheckpointError(`${p}: metadata 'train_config' must be a JSON object`);
    }
  }
  return {
    ...base,
    optimizer,
    optimState,
    rng,
    settings,
    lr: optionalNumber(metadata, "lr", p, (x) => Number.isFinite(x) && x > 0),
    seed: optionalNumber(metadata, "seed", p, (x) => Number.isInteger(x) && x >= 0 && x <= 0xffffffff),
    batch: optionalNumber(metadata, "batch", p, (x) => Number.isInteger(x) && x >= 1),
    file: p,
    source,
  };
}

/** Check the optimizer buffers against the built model's flat parameter layout. */
export function checkOptimState(r: ResumeData, model: AnyModel): void {
  const n = model.params.floats;
  for (const [name, v] of r.optimState) {
    if (v.length !== n) {
      throw new CheckpointError(`${r.file}: ${name} has ${v.length} values, the model needs ${n}`);
    }
  }
}

/** Optimizer moments and resume metadata from a resume file's bytes (legacy API). */
export function parseOptim(
  bytes: Uint8Array,
  p: string,
): { state: Map<string, Float32Array>; step: number; metadata: Record<string, string> } {
  const { tensors, metadata } = decodeSafetensors(bytes, p);
  const step = Number(metadata.step);
  if (!Number.isInteger(step) || step < 0) {
    throw new CheckpointError(`${p}: metadata 'step' is not an integer`);
  }
  const state = new Map<string, Float32Array>();
  for (const [k, v] of tensors) if (!k.startsWith(PARAM_PREFIX)) state.set(k, v.data);
  return { state, step, metadata };
}
