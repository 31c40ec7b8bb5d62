// deno task train — train the GPT (default: the reference config) or a bigram MLP on TinyShakespeare.
// Every forward, backward and optimizer op runs as a WGSL kernel; one command buffer per step; the
// host reads back only the losses (every --log-interval steps) and the weights when it checkpoints.

import type { Runtime } from "./ops/runtime.ts";
import { createRuntime } from "./lib/backend.ts";
import { MAX_HS } from "./ops/attention.ts";
import type { Tensor } from "./ops/tensor.ts";
import { Tokenizer } from "./lib/tokenizer.ts";
import { bigramEntropy, GPTData } from "./lib/data.ts";
import { loadText, readResume, saveCheckpoint } from "./lib/files.ts";
import { Rng } from "./lib/rng.ts";
import {
  choiceFlag,
  ensureReadPermission,
  ensureWritePermission,
  fail,
  type FlagSpec,
  floatFlag,
  gpuCause,
  intFlag,
  parseFlags,
  runMain,
} from "./lib/cli.ts";
import { appendLine, atomicWrite } from "./lib/fsutil.ts";
import { lossSvg } from "./lib/plot.ts";
import { GPT, GPT_REFERENCE, GPTActivations, type GPTConfig } from "./models/gpt.ts";
import { BIGRAM_REFERENCE, BigramActivations, type BigramKind, BigramMLP } from "./models/bigram.ts";
import { LossHistory, Optimizer, type OptimizerKind, StepState } from "./models/common.ts";
import {
  buildModel,
  checkOptimState,
  type ModelKind,
  NonFiniteParamsError,
  optimPath,
  paramCount,
  type ResumeData,
} from "./models/checkpoint.ts";
import { basename, join } from "node:path";

const FLAGS: FlagSpec[] = [
  { name: "model", type: "string", default: "gpt", help: "gpt | bigram-onehot | bigram-embedding" },
  {
    name: "steps",
    type: "string",
    default: "5000",
    help: "optimizer steps to train for (total, including resumed)",
  },
  { name: "batch-size", type: "string", default: "64", help: "sequences per step (gpt)" },
  {
    name: "block-size",
    type: "string",
    default: String(GPT_REFERENCE.blockSize),
    help: "context length (gpt)",
  },
  { name: "n-embd", type: "string", default: String(GPT_REFERENCE.nEmbd), help: "embedding width (gpt)" },
  { name: "n-head", type: "string", default: String(GPT_REFERENCE.nHead), help: "attention heads (gpt)" },
  {
    name: "n-layer",
    type: "string",
    default: String(GPT_REFERENCE.nLayer),
    help: "transformer blocks (gpt)",
  },
  {
    name: "dropout",
    type: "string",
    default: String(GPT_REFERENCE.dropout),
    help: "dropout probability (gpt)",
  },
  { name: "lr", type: "string", help: "learning rate (default 1e-3 for adamw, 0.01 for sgd)" },
  { name: "optimizer", type: "string", help: "sgd | adamw (default adamw for gpt, sgd for bigram models)" },
  { name: "seed", type: "string", default: "1337", help: "seed for init, batches and dropout" },
  { name: "eval-interval", type: "string", default: "500", help: "steps between train/val loss estimates" },
  { name: "eval-iters", type: "string", default: "20", help: "batches per loss estimate" },
  {
    name: "log-interval",
    type: "string",
    default: "10",
    help: "steps between loss readbacks / progress updates",
  },
  { name: "data", type: "string", default: "data/tinyshakespeare.txt", help: "training text (UTF-8)" },
  { name: "out", type: "string", default: "out", help: "directory for checkpoint, metrics.jsonl, loss.svg" },
  {
    name: "force",
    type: "boolean",
    default: false,
    help: "start a new model even if --out already holds a checkpoint (it is overwritten)",
  },
  {
    name: "resume",
    type: "boolean",
    default: false,
    help: "continue from the checkpoint in --out (with its model, optimizer, lr, seed and batch size)",
  },
  {
    name: "sample-tokens",
    type: "string",
    default: "300",
    help: "characters to generate at the end (0: none)",
  },
];

const USAGE = `Train a character-level language model on the GPU (WebGPU/WGSL).

Usage: deno task train [flags]`;

/** Flags that only make sense for the GPT. */
const GPT_ONLY = ["batch-size", "block-size", "n-embd", "n-head", "n-layer", "dropout"] as const;

interface Run {
  kind: ModelKind;
  steps: number;
  lr: number;
  optimizer: OptimizerKind;
  seed: number;
  evalInterval: number;
  evalIters: number;
  logInterval: number;
  out: string;
  data: string;
  resume: boolean;
  force: boolean;
  sampleTokens: number;
  /** The GPT config (vocabSize filled in from the data or the checkpoint); null for bigram models. */
  gpt: GPTConfig | null;
  batch: number;
  /** Flags given on the command line (the rest are defaults, or the checkpoint's values on --resume). */
  given: Set<string>;
}

/** Validate every flag on its own (cross-checks against the data and the checkpoint come later). */
function parse(args: string[]): Run {
  const f = parseFlags(args, FLAGS, USAGE);
  const v = f.values as Record<string, string | boolean | undefined>;
  const s = (k: string) => v[k] as string;
  const kind = choiceFlag(s("model"), "model", ["gpt", "bigram-onehot", "bigram-embedding"]) as ModelKind;
  const optimizer =
    (v.optimizer === undefined
      ? (kind === "gpt" ? "adamw" : "sgd")
      : choiceFlag(s("optimizer"), "optimizer", ["sgd", "adamw"])) as OptimizerKind;
  const lr = v.lr === undefined
    ? (optimizer === "adamw" ? 1e-3 : 0.01)
    : floatFlag(s("lr"), "lr", { min: 0, max: 10, minExclusive: true });
  const run: Run = {
    kind,
    optimizer,
    lr,
    steps: intFlag(s("steps"), "steps", { min: 1, max: 10_000_000 }),
    batch: intFlag(s("batch-size"), "batch-size", { min: 1, max: 4096 }),
    seed: intFlag(s("seed"), "seed", { min: 0, max: 0xffffffff }),
    evalInterval: intFlag(s("eval-interval"), "eval-interval", { min: 1, max: 10_000_000 }),
    evalIters: intFlag(s("eval-iters"), "eval-iters", { min: 1, max: 10_000 }),
    logInterval: intFlag(s("log-interval"), "log-interval", { min: 1, max: 1000 }),
    sampleTokens: intFlag(s("sample-tokens"), "sample-tokens", { min: 0, max: 100_000 }),
    out: s("out"),
    data: s("data"),
    resume: !!v.resume,
    force: !!v.force,
    gpt: {
      vocabSize: 0,
      nEmbd: intFlag(s("n-embd"), "n-embd", { min: 1, max: 4096 }),
      nHead: intFlag(s("n-head"), "n-head", { min: 1, max: 256 }),
      nLayer: intFlag(s("n-layer"), "n-layer", { min: 1, max: 64 }),
      blockSize: intFlag(s("block-size"), "block-size", { min: 1, max: 256 }),
      dropout: floatFlag(s("dropout"), "dropout", { min: 0, max: 1, maxExclusive: true }),
    },
    given: f.given,
  };
  if (!run.out.trim()) fail("--out needs a directory");
  return run;
}

/** A new model: the GPT flags must fit together. */
function checkNewModel(run: Run): void {
  if (run.kind !== "gpt") {
    run.gpt = null;
    return;
  }
  const { nEmbd, nHead } = run.gpt!;
  if (nEmbd % nHead !== 0) fail(`--n-embd (${nEmbd}) must be divisible by --n-head (${nHead})`);
  if (nEmbd / nHead > MAX_HS) {
    fail(`--n-embd / --n-head (the head size, ${nEmbd / nHead}) must be at most ${MAX_HS}`);
  }
}

/**
 * --resume: the checkpoint decides the model, its config and the optimizer; a flag that says otherwise
 * is refused. lr, seed and batch size default to the checkpoint's (so the run continues exactly);
 * giving a different value is allowed, with a note that the run then differs from an uninterrupted one.
 */
function resolveResume(run: Run, r: ResumeData, notes: string[]): void {
  const where = `the checkpoint in ${run.out}`;
  const clash = (flag: string, mine: unknown, theirs: string): never =>
    fail(
      `--resume: --${flag} ${mine} contradicts ${where} (${theirs}); ` +
        `leave the flag out to continue it, or train a new model in another --out`,
    );
  if (run.given.has("model") && run.kind !== r.kind) clash("model", run.kind, `a ${r.kind} model`);
  run.kind = r.kind;
  if (r.kind === "gpt") {
    const c = r.config as GPTConfig;
    const keys = [
      ["n-embd", "nEmbd", "n_embd"],
      ["n-head", "nHead", "n_head"],
      ["n-layer", "nLayer", "n_layer"],
      ["block-size", "blockSize", "block size"],
      ["dropout", "dropout", "dropout"],
    ] as const;
    for (const [flag, key, label] of keys) {
      if (run.given.has(flag) && run.gpt![key] !== c[key]) clash(flag, run.gpt![key], `${label} ${c[key]}`);
    }
    run.gpt = { ...c };
  } else run.gpt = null;
  if (run.given.has("optimizer") && run.optimizer !== r.optimizer) {
    clash("optimizer", run.optimizer, `trained with ${r.optimizer}`);
  }
  run.optimizer = r.optimizer;
  const inherit = (flag: string, key: "lr" | "seed" | "batch", theirs: number | undefined) => {
    if (theirs === undefined) return;
    if (!run.given.has(flag)) run[key] = theirs;
    else if (run[key] !== theirs) {
      notes.push(
        `note: --${flag} ${run[key]} differs from the checkpoint's ${theirs}; ` +
          `the run will not match an uninterrupted one`,
      );
    }
  };
  inherit("lr", "lr", r.lr);
  inherit("seed", "seed", r.seed);
  if (r.kind === "gpt") inherit("batch-size", "batch", r.batch);
}

/** Characters in `a` but not in `b`, quoted, at most 10. */
function missingChars(a: string[], b: string[]): string {
  const set = new Set(b);
  const extra = a.filter((c) => !set.has(c));
  return extra.slice(0, 10).map((c) => JSON.stringify(c)).join(", ") + (extra.length > 10 ? ", ..." : "");
}

/** Temp files a killed run may have left beside the outputs (see lib/fsutil.ts atomicWrite). */
async function removeStaleTemps(out: string, names: string[]): Promise<void> {
  const re = new RegExp(
    `^\\.(${names.map((n) => n.replace(/[.]/g, "\\.")).join("|")})\\.tmp-\\d+-[0-9a-f]+$`,
  );
  try {
    for await (const e of Deno.readDir(out)) {
      if (e.isFile && re.test(e.name)) await Deno.remove(join(out, e.name)).catch(() => {});
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

function fmtBytes(n: number): string {
  return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(1)} GiB` : `${(n / 2 ** 20).toFixed(1)} MiB`;
}

/** Refuse a configuration whose largest buffer the adapter cannot hold, naming the flags to lower. */
function checkBufferSizes(rt: Runtime, buffers: [string, number][], hint: string): void {
  const limit = Math.min(rt.device.limits.maxStorageBufferBindingSize, rt.device.limits.maxBufferSize);
  for (const [what, floats] of buffers) {
    if (floats * 4 > limit) {
      fail(
        `${what} needs a ${fmtBytes(floats * 4)} GPU buffer, over this adapter's ` +
          `${fmtBytes(limit)} limit: ${hint}`,
      );
    }
  }
}

/** Training stopped because the loss or the parameters stopped being finite numbers. */
export class TrainingDiverged extends Error {
  override name = "TrainingDiverged";
}

/** The step and value of the first non-finite loss in `losses` (loss i is step firstStep + i), or null. */
export function firstNonFinite(
  losses: ArrayLike<number>,
  firstStep: number,
): { step: number; value: number } | null {
  for (let i = 0; i < losses.length; i++) {
    if (!Number.isFinite(losses[i])) return { step: firstStep + i, value: losses[i] };
  }
  return null;
}

/** The error for a diverged run: what went wrong, where, and which checkpoint is kept. */
export function divergedError(
  what: string,
  step: number,
  lastSaved: number | null,
  out: string,
): TrainingDiverged {
  const kept = lastSaved === null
    ? "no checkpoint was written"
    : `the last good checkpoint, step ${lastSaved}, is kept in ${out}`;
  return new TrainingDiverged(
    `training diverged: ${what} at step ${step}; stopped (${kept}); try a lower --lr`,
  );
}

function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return "?";
  const m = Math.floor(s / 60), h = Math.floor(m / 60);
  return h
    ? `${h}h${String(m % 60).padStart(2, "0")}m`
    : m
    ? `${m}m${String(Math.round(s % 60)).padStart(2, "0")}s`
    : `${s.toFixed(0)}s`;
}

/** A step-able training job: one of the three models with its data, buffers and optimizer. */
interface Job {
  model: GPT | BigramMLP;
  tokensPerStep: number;
  /** Record one training step (forward, backward, optimizer) for step number `step`. */
  record(step: number): void;
  /** Mean losses over eval batches, by split. */
  evaluate(step: number): Promise<{ train: number; val?: number }>;
  loss: Tensor;
  sample(n: number, onToken: (id: number) => void): Promise<void>;
  rngState(): number[];
  setRngState(s: number[]): void;
  floor?: number; // bigram entropy: the best loss a bigram model can reach
}

function gptJob(
  rt: Runtime,
  run: Run,
  cfg: GPTConfig,
  data: GPTData,
  model: GPT,
  opt: Optimizer,
  tok: Tokenizer,
): Job {
  const state = new StepState(rt, run.seed);
  const acts = new GPTActivations(rt, cfg, run.batch, cfg.blockSize);
  let rng = new Rng(run.seed);
  const evalHist = new LossHistory(rt, 2 * run.evalIters);
  return {
    model,
    tokensPerStep: run.batch * cfg.blockSize,
    loss: acts.loss,
    record(step) {
      const { x, y } = data.getBatch("train", run.batch, cfg.blockSize, rng);
      acts.idx.write(x);
      acts.targets.write(y);
      state.set(step);
      model.forward(acts, state.tensor, true);
      model.backward(acts, state.tensor);
      opt.step(state.tensor);
    },
    async evaluate(step) {
      const erng = new Rng((run.seed ^ Math.imul(step + 1, 0x9e3779b1)) >>> 0); // independent of training
      for (const split of ["train", "val"] as const) {
        for (let i = 0; i < run.evalIters; i++) {
          const { x, y } = data.getBatch(split, run.batch, cfg.blockSize, erng);
          acts.idx.write(x);
          acts.targets.write(y);
          model.forward(acts, state.tensor, false);
          evalHist.push(acts.loss);
          rt.submit();
        }
      }
      const l = await evalHist.drain();
      const mean = (a: Float32Array) => a.reduce((s, x) => s + x, 0) / a.length;
      return { train: mean(l.subarray(0, run.evalIters)), val: mean(l.subarray(run.evalIters)) };
    },
    async sample(n, onToken) {
      // Start from a newline like the seed notebook, or the text's first character if it has none.
      const start = tok.chars.includes("\n") ? tok.encode("\n") : [data.train[0]];
      await model.generate(start, n, { temperature: 0.8, seed: run.seed, onToken });
    },
    rngState: () => rng.state(),
    setRngState: (s) => (rng = Rng.fromState(s)),
  };
}

function bigramJob(
  rt: Runtime,
  run: Run,
  ids: Uint32Array,
  model: BigramMLP,
  opt: Optimizer,
  tok: Tokenizer,
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
    model,
    tokensPerStep: n,
    loss: acts.loss,
    floor: bigramEntropy(ids, V),
    record(step) {
      state.set(step);
      model.forward(acts, true, true);
      model.backward(acts);
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

interface MetricsLine {
  step: number;
  eval?: { step: number; train: number; val?: number };
  losses?: number[];
}

/** metrics.jsonl lines up to `upTo` (later ones belong to steps the checkpoint does not have). */
async function readMetrics(path: string, upTo: number): Promise<{ raw: string[]; parsed: MetricsLine[] }> {
  let text = "";
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const raw: string[] = [], parsed: MetricsLine[] = [];
  for (const line of text.split("\n")) {
    let m: MetricsLine;
    try {
      m = JSON.parse(line);
    } catch {
      continue; // empty, or the torn last line of a killed run
    }
    if (typeof m?.step !== "number" || m.step > upTo) continue;
    raw.push(line);
    parsed.push(m);
  }
  return { raw, parsed };
}

export async function main(args: string[] = Deno.args): Promise<void> {
  const run = parse(args);
  await ensureReadPermission([run.data], `--allow-read=${run.data}`);
  await ensureReadPermission([run.out], `--allow-read=${run.out}`);
  await ensureWritePermission([run.out], `--allow-write=${run.out}`);
  const ckpt = join(run.out, "model.safetensors");
  const metricsPath = join(run.out, "metrics.jsonl");

  // Everything that can be checked without the GPU is checked first.
  const notes: string[] = [];
  let resume: ResumeData | null = null;
  if (run.resume) {
    const exists = (p: string) => Deno.stat(p).then(() => true, () => false);
    if (!(await exists(optimPath(ckpt)))) {
      fail(
        (await exists(ckpt))
          ? `--resume: ${optimPath(ckpt)} (the training state saved beside ${basename(ckpt)}) is missing`
          : `--resume: there is no checkpoint in ${run.out} to continue (train without --resume first)`,
      );
    }
    resume = await readResume(ckpt);
    resolveResume(run, resume, notes);
  } else {
    checkNewModel(run);
    // Never replace a trained model by accident: a new run into a folder with a checkpoint must say so.
    if (!run.force && (await Deno.stat(ckpt).then(() => true, () => false))) {
      fail(
        `${run.out} already holds a checkpoint: continue it with --resume, overwrite it with --force, or use another --out`,
      );
    }
  }
  if (run.kind !== "gpt") {
    const bad = GPT_ONLY.find((f) => run.given.has(f));
    if (bad) fail(`--${bad} applies only to --model gpt, not ${run.kind}`);
  }

  const text = await loadText(run.data);
  const dataTok = Tokenizer.fromText(text);
  let tok = dataTok;
  if (resume) {
    tok = new Tokenizer(resume.vocab);
    if (dataTok.chars.join("") !== tok.chars.join("")) {
      const extra = missingChars(dataTok.chars, tok.chars), gone = missingChars(tok.chars, dataTok.chars);
      fail(
        `--resume: ${run.data} is not the text the checkpoint was trained on (${
          [
            extra && `characters not in its vocabulary: ${extra}`,
            gone && `vocabulary characters missing from the data: ${gone}`,
          ].filter(Boolean).join("; ")
        })`,
      );
    }
  }
  const ids = Uint32Array.from(tok.encode(text));
  let gptData: GPTData | null = null;
  if (run.gpt) {
    run.gpt.vocabSize = tok.vocabSize;
    gptData = new GPTData(ids);
    const need = run.gpt.blockSize + 1;
    for (const split of ["train", "val"] as const) {
      const n = gptData[split].length;
      if (n < need) {
        fail(
          `--data: the ${split} split of ${run.data} (${split === "train" ? "first 90%" : "last 10%"}) has ` +
            `${n} characters, fewer than block size + 1 = ${need}: use more text or a smaller --block-size`,
        );
      }
    }
  } else if (ids.length < 2) {
    fail(`--data: ${run.data} has ${ids.length} character; a bigram model needs at least 2`);
  }

  const outInfo = await Deno.stat(run.out).catch(() => null);
  if (outInfo && !outInfo.isDirectory) fail(`--out: ${run.out} exists and is not a directory`);
  await Deno.mkdir(run.out, { recursive: true });
  await removeStaleTemps(run.out, [basename(ckpt), basename(optimPath(ckpt)), "metrics.jsonl", "loss.svg"]);

  const rt = await createRuntime();
  try {
    await train(rt, run, resume, notes, tok, ids, gptData, ckpt, metricsPath);
  } catch (e) {
    throw await gpuCause(rt, e);
  }
}

async function train(
  rt: Runtime,
  run: Run,
  resume: ResumeData | null,
  notes: string[],
  tok: Tokenizer,
  ids: Uint32Array,
  gptData: GPTData | null,
  ckpt: string,
  metricsPath: string,
): Promise<void> {
  const isTTY = Deno.stdout.isTerminal();
  const log = (s: string) => console.log((isTTY ? "\r\x1b[2K" : "") + s);
  const V = tok.vocabSize;
  const bigramCfg = { vocabSize: V, ...BIGRAM_REFERENCE };
  const first = ids.subarray(0, Math.min(5000, ids.length));
  if (run.gpt) {
    const { nEmbd: C, nHead: H, blockSize: T } = run.gpt, B = run.batch, N = B * T;
    checkBufferSizes(rt, [
      ["attention (batch x heads x block x block)", B * H * T * T],
      ["the MLP activations", N * 4 * C],
      ["the logits", N * V],
      ["the parameters", paramCountOf(run)],
    ], "lower --batch-size or --block-size (or --n-embd)");
  } else {
    checkBufferSizes(
      rt,
      [["the one-hot inputs", first.length * V]],
      "use text with fewer distinct characters",
    );
  }

  let model: GPT | BigramMLP;
  if (resume) model = buildModel(rt, resume);
  else if (run.gpt) model = new GPT(rt, run.gpt, run.seed);
  else model = new BigramMLP(rt, run.kind as BigramKind, bigramCfg, run.seed);
  const opt = new Optimizer(rt, model.params, run.optimizer, run.lr);
  if (resume) {
    checkOptimState(resume, model);
    opt.writeState(resume.optimState);
  }
  const startStep = resume?.step ?? 0;

  let job: Job;
  let cfgNote: string;
  if (run.gpt) {
    const cfg = run.gpt;
    job = gptJob(rt, run, cfg, gptData!, model as GPT, opt, tok);
    cfgNote = `gpt n_embd=${cfg.nEmbd} n_head=${cfg.nHead} n_layer=${cfg.nLayer} block=${cfg.blockSize} ` +
      `batch=${run.batch} dropout=${cfg.dropout}`;
  } else {
    job = bigramJob(rt, run, first, model as BigramMLP, opt, tok);
    cfgNote = `${run.kind} on the first ${first.length} characters (hidden ${BIGRAM_REFERENCE.hidden})`;
  }
  if (resume && resume.rng.length) job.setRngState(resume.rng);
  if (resume) log(`resuming from ${resume.source} at step ${startStep}`);
  for (const n of notes) log(n);
  log(`adapter: ${rt.describe()}`);
  log(`model: ${cfgNote}; ${model.params.count.toLocaleString()} parameters; ${run.optimizer} lr=${run.lr}`);
  if (startStep >= run.steps) {
    log(`already at step ${startStep} >= --steps ${run.steps}; nothing to do`);
    return;
  }

  let lastSaved: number | null = resume ? startStep : null;
  const save = async (step: number) => {
    try {
      await saveCheckpoint(ckpt, run.kind, model, tok.chars, step, await opt.readState(), {
        optimizer: run.optimizer,
        lr: run.lr,
        seed: run.seed,
        batch: run.batch,
        rng: job.rngState(),
      });
    } catch (e) {
      if (e instanceof NonFiniteParamsError) {
        throw divergedError(`parameter ${e.param} became NaN or infinite`, step, lastSaved, run.out);
      }
      throw e;
    }
    lastSaved = step;
  };

  // metrics.jsonl: a fresh run starts it anew; a resumed one keeps the lines up to its step (a killed
  // run may have logged steps after its last checkpoint; those steps will run again).
  const evals: { step: number; train: number; val?: number }[] = [];
  const batchLosses: [number, number][] = [];
  const prior = resume ? await readMetrics(metricsPath, startStep) : { raw: [], parsed: [] };
  for (const m of prior.parsed) {
    if (m.eval) evals.push(m.eval);
    if (Array.isArray(m.losses)) {
      m.losses.forEach((l, i) => batchLosses.push([m.step - m.losses!.length + 1 + i, l]));
    }
  }
  await atomicWrite(metricsPath, prior.raw.map((l) => l + "\n").join(""));

  const writePlot = async () => {
    const series = [{ name: "batch loss", points: batchLosses, color: "#bbb" }];
    series.push({
      name: "train",
      points: evals.map((e) => [e.step, e.train] as [number, number]),
      color: "#1f77b4",
    });
    if (evals.some((e) => e.val !== undefined)) {
      series.push({
        name: "val",
        points: evals.map((e) => [e.step, e.val!] as [number, number]),
        color: "#d62728",
      });
    }
    await atomicWrite(join(run.out, "loss.svg"), lossSvg(series, `${run.kind} loss`));
  };
  const doEval = async (step: number) => {
    const r = await job.evaluate(step);
    const bad = firstNonFinite(r.val === undefined ? [r.train] : [r.train, r.val], 0);
    if (bad) throw divergedError(`the evaluated loss became ${bad.value}`, step, lastSaved, run.out);
    evals.push({ step, ...r });
    await appendLine(metricsPath, JSON.stringify({ step, eval: { step, ...r } }));
    const floor = job.floor !== undefined
      ? `  (exact bigram entropy of the data: ${job.floor.toFixed(4)})`
      : "";
    log(
      `step ${step}: train loss ${r.train.toFixed(4)}${
        r.val !== undefined ? `, val loss ${r.val.toFixed(4)}` : ""
      }${floor}`,
    );
  };

  // Ctrl-C (or SIGTERM) finishes the current step, saves it and exits 0; a second one exits at once
  // (the last checkpoint on disk is whole either way: every write is atomic).
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) {
      console.error(
        "error: interrupted again; exiting without saving this step (the last checkpoint is intact)",
      );
      Deno.exit(130);
    }
    interrupted = true;
  };
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  const hist = new LossHistory(rt, run.logInterval);
  const t0 = performance.now();
  let lastLoss = NaN;
  let step = startStep;
  try {
    if (!resume) await doEval(0);
    while (step < run.steps && !interrupted) {
      step++;
      job.record(step);
      hist.push(job.loss);
      rt.submit();
      const isEval = step % run.evalInterval === 0 || step === run.steps;
      if (hist.full || isEval || interrupted) {
        const losses = await hist.drain();
        const firstStep = step - losses.length + 1;
        const bad = firstNonFinite(losses, firstStep);
        if (bad) throw divergedError(`the loss became ${bad.value}`, bad.step, lastSaved, run.out);
        losses.forEach((l, i) => batchLosses.push([firstStep + i, l]));
        await appendLine(
          metricsPath,
          JSON.stringify({ step, loss: losses[losses.length - 1], losses: Array.from(losses) }),
        );
        lastLoss = losses[losses.length - 1];
        const dt = (performance.now() - t0) / 1000;
        const done = step - startStep;
        const tps = (done * job.tokensPerStep) / dt;
        const eta = ((run.steps - step) * dt) / done;
        const line =
          `step ${step}/${run.steps}  loss ${lastLoss.toFixed(4)}  ${
            Math.round(tps).toLocaleString()
          } tok/s  ` +
          `${(1000 * dt / done).toFixed(0)} ms/step  ETA ${fmtTime(eta)}`;
        if (isTTY) await Deno.stdout.write(new TextEncoder().encode("\r\x1b[2K" + line));
        else if (isEval || step % (run.logInterval * 10) === 0) console.log(line);
      }
      if (isEval) {
        await doEval(step);
        await save(step);
        await writePlot();
      }
    }
    if (interrupted) {
      if (lastSaved !== step) await save(step);
      await writePlot();
      log(`interrupted: saved step ${step} to ${ckpt}; continue with --resume`);
      return;
    }
  } finally {
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
  }
  const secs = (performance.now() - t0) / 1000;
  log(
    `done: ${step - startStep} steps in ${fmtTime(secs)} (${
      (1000 * secs / Math.max(1, step - startStep)).toFixed(0)
    } ms/step); checkpoint ${ckpt}`,
  );
  if (run.sampleTokens > 0) {
    const enc = new TextEncoder();
    await Deno.stdout.write(enc.encode("--- sample (temperature 0.8) ---\n"));
    await job.sample(run.sampleTokens, (id) => Deno.stdout.writeSync(enc.encode(tok.decode([id]))));
    await Deno.stdout.write(enc.encode("\n"));
  }
}

function paramCountOf(run: Run): number {
  return run.gpt ? paramCount("gpt", run.gpt) : 0;
}

if (import.meta.main) runMain(() => main());
