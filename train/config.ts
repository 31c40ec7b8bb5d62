// train.ts's configuration: the flags, the presets (--config lecture | nanogpt-char | finetune-gpt2 |
// FILE.json) and
// their resolution into one validated `Run`. Precedence, lowest first: the flag defaults (which are
// the lecture recipe), the preset, a JSON file's values, the flags given on the command line.
// Checks against the data and the checkpoint come later (train/resume.ts, train.ts).

import { MAX_HS } from "../ops/attention.ts";
import type { TuneMode } from "../ops/matmul/tune.ts";
import {
  choiceFlag,
  ensureReadPermission,
  fail,
  type FlagSpec,
  floatFlag,
  intFlag,
  type KernelChoice,
  KERNELS_FLAG,
  kernelsChoice,
  parseFlags,
  TUNE_FLAG,
  tuneChoice,
} from "../lib/cli.ts";
import {
  type Activation,
  ACTIVATIONS,
  COURSE_ARCH,
  GPT2_ARCH,
  GPT_REFERENCE,
  type GPTArch,
  type GPTConfig,
  NANOGPT_ARCH,
} from "../models/gpt.ts";
import { type TokenizerKind, TOKENIZERS } from "../lib/tokenizer.ts";
import { MAX_DIM, type ModelKind } from "../models/checkpoint.ts";
import { DECAY_PARAMS, type DecayParams, type OptimizerKind } from "../models/common.ts";
import type { LrSchedule } from "./schedule.ts";

const str = (help: string, def?: unknown): FlagSpec => ({
  name: "",
  type: "string",
  help,
  ...(def === undefined ? {} : { default: String(def) }),
});

/** name -> spec; the defaults are the lecture recipe. */
const SPECS: Record<string, Omit<FlagSpec, "name">> = {
  config: str(
    "lecture | nanogpt-char | finetune-gpt2 | FILE.json (a JSON object of flags); explicit flags override it",
    "lecture",
  ),
  model: str("gpt | bigram-onehot | bigram-embedding", "gpt"),
  steps: str("optimizer steps to train for (total, including resumed)", 5000),
  "batch-size": str("sequences per micro-batch (gpt)", 64),
  "grad-accum": str("micro-batches per optimizer step (gradient accumulation; gpt)", 1),
  "block-size": str("context length (gpt)", GPT_REFERENCE.blockSize),
  "n-embd": str("embedding width (gpt)", GPT_REFERENCE.nEmbd),
  "n-head": str("attention heads (gpt)", GPT_REFERENCE.nHead),
  "n-layer": str("transformer blocks (gpt)", GPT_REFERENCE.nLayer),
  dropout: str("dropout probability (gpt)", GPT_REFERENCE.dropout),
  arch: str(
    "course (ReLU, biases, own head) | nanogpt (exact GELU, no biases, tied head, embedding dropout, " +
      "its init) | gpt2 (tanh GELU, biases, tied head); gpt",
    "course",
  ),
  activation: str("relu | gelu (GPT-2's tanh form) | gelu_erf (exact); default: the --arch's (gpt)"),
  tokenizer: str(
    "char (the text's characters) | gpt2 (GPT-2's BPE; token ids cached beside --data); " +
      "default char, or --init-from's",
  ),
  "init-from": str(
    "start from a Hugging Face GPT-2 directory (config.json + model.safetensors): fine-tuning; " +
      "--block-size may crop its context (default: its n_positions)",
  ),
  optimizer: str("sgd | adamw (default adamw for gpt, sgd for bigram models)"),
  lr: str("peak learning rate (default 1e-3 for adamw, 0.01 for sgd)"),
  "warmup-iters": str("updates of linear lr warm-up (nanoGPT's warmup_iters)", 0),
  "lr-decay-iters": str("cosine-decay the lr to --min-lr by this update (0: no decay)", 0),
  "min-lr": str("the lr at the end of the cosine decay (default --lr / 10)"),
  beta1: str("AdamW beta1", 0.9),
  beta2: str("AdamW beta2", 0.999),
  "weight-decay": str("AdamW weight decay", 0.01),
  "decay-params": str(
    "which parameters decay: all | matmul (Linear weight matrices only) | 2d (also embeddings)",
    "all",
  ),
  "grad-clip": str("clip the global gradient L2 norm to this (0: off)", 0),
  seed: str("seed for init, batches and dropout", 1337),
  "eval-interval": str("steps between train/val loss estimates and checkpoints", 500),
  "eval-iters": str("batches per loss estimate", 20),
  "log-interval": str("steps between loss readbacks / progress lines", 10),
  data: str("training text (UTF-8)", "data/tinyshakespeare.txt"),
  out: str("directory for checkpoint, metrics.jsonl, loss.svg (one run at a time)", "out"),
  force: {
    type: "boolean",
    default: false,
    help: "start a new model even if --out holds a checkpoint (overwrites it)",
  },
  resume: {
    type: "boolean",
    default: false,
    help: "continue from the checkpoint in --out (with its model and training settings)",
  },
  "sample-tokens": str("characters to generate at the end (0: none)", 300),
  kernels: KERNELS_FLAG,
  tune: TUNE_FLAG,
};
export const FLAGS: FlagSpec[] = Object.entries(SPECS).map(([name, s]) => ({ ...s, name } as FlagSpec));

/** Presets: flag values over the defaults. `lecture` is the defaults themselves. */
export const PRESETS: Record<string, Record<string, string>> = {
  lecture: {},
  // karpathy/nanoGPT config/train_shakespeare_char.py
  "nanogpt-char": {
    "n-embd": "384",
    "n-head": "6",
    "n-layer": "6",
    "block-size": "256",
    "batch-size": "64",
    dropout: "0.2",
    lr: "1e-3",
    "warmup-iters": "100",
    "lr-decay-iters": "5000",
    "min-lr": "1e-4",
    beta2: "0.99",
    "weight-decay": "0.1",
    // model.py's configure_optimizers: every parameter with dim >= 2 decays (the tied wte and wpe too).
    "decay-params": "2d",
    "grad-clip": "1.0",
    steps: "5000",
    "eval-interval": "250",
    "eval-iters": "200",
    // train.py's bias=False with model.py's GELU (nn.GELU(): the exact erf form), tied head,
    // transformer.drop on the embeddings and _init_weights.
    arch: "nanogpt",
  },
  // karpathy/nanoGPT config/finetune_shakespeare.py over train.py's defaults: --init-from DIR (a
  // Hugging Face GPT-2 directory; nanoGPT's init_from='gpt2-xl'), GPT-2's tokenizer, batch 1 with 32
  // micro-batches, 20 iterations at a constant 3e-5, dropout 0, evaluation every 5 on 40 batches.
  // Our change: the block size is the model's n_positions (1024 for GPT-2) unless --block-size crops
  // it; GPT-2 124M itself needs the large-model work (issue 18) to fit lavapipe's binding limit.
  "finetune-gpt2": {
    tokenizer: "gpt2",
    "batch-size": "1",
    "grad-accum": "32",
    steps: "20",
    lr: "3e-5",
    "warmup-iters": "0",
    "lr-decay-iters": "0",
    "min-lr": "3e-5",
    dropout: "0",
    beta2: "0.95",
    "weight-decay": "0.1",
    "decay-params": "2d",
    "grad-clip": "1.0",
    "eval-interval": "5",
    "eval-iters": "40",
  },
};

/** The --arch bundles. */
export const ARCHS: Record<string, GPTArch> = { course: COURSE_ARCH, nanogpt: NANOGPT_ARCH, gpt2: GPT2_ARCH };

const USAGE = `Train a language model on the GPU (WebGPU/WGSL), from scratch or from a Hugging Face GPT-2.

Usage: deno task train [flags]`;

/** Flags that only make sense for the GPT. */
export const GPT_ONLY = [
  "batch-size",
  "grad-accum",
  "block-size",
  "n-embd",
  "n-head",
  "n-layer",
  "dropout",
  "arch",
  "activation",
  "init-from",
];
/** Flags a --init-from directory decides (refused beside it). */
const FROM_DIR = ["n-embd", "n-head", "n-layer", "arch", "activation"];
/** Flags that only make sense for AdamW. */
const ADAMW_ONLY = ["beta1", "beta2", "weight-decay", "decay-params"];

export interface Run extends LrSchedule {
  config: string;
  kind: ModelKind;
  steps: number;
  optimizer: OptimizerKind;
  beta1: number;
  beta2: number;
  weightDecay: number;
  decayParams: DecayParams;
  gradClip: number;
  seed: number;
  evalInterval: number;
  evalIters: number;
  logInterval: number;
  out: string;
  data: string;
  resume: boolean;
  force: boolean;
  sampleTokens: number;
  /** The kernel family asked for (--kernels, else TINYGPT_KERNELS, else auto); not a training setting. */
  kernels: KernelChoice;
  /** --tune: matmul autotuning of the gpu family (off | on | force | auto); not a training setting. */
  tune: TuneMode | "auto";
  /** The GPT config (vocabSize filled in from the data or the checkpoint); null for bigram models. */
  gpt: GPTConfig | null;
  /** The tokenizer (null: char, or --init-from's). */
  tokenizer: TokenizerKind | null;
  /** A Hugging Face GPT-2 directory to start from, or null. */
  initFrom: string | null;
  batch: number;
  gradAccum: number;
  /** Flags set on the command line, by a JSON file or by an explicitly chosen preset. */
  given: Set<string>;
  /** The flags of `given` that only the preset set. */
  fromPreset: Set<string>;
}

/** The flag values of a --config FILE.json: a JSON object of flag names to values. */
async function readConfigFile(path: string): Promise<Record<string, string | boolean>> {
  await ensureReadPermission([path], `--allow-read=${path}`);
  let obj: unknown;
  try {
    obj = JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      fail(`--config: ${path} is neither a preset (${Object.keys(PRESETS).join(", ")}) nor a file`);
    }
    fail(`--config: ${path} is not valid JSON: ${e instanceof Error ? e.message : e}`);
  }
  if (typeof obj !== "object" || obj === null || Array.isArray(obj)) {
    fail(`--config: ${path} must hold a JSON object of flags, e.g. {"n-layer": 6}`);
  }
  const out: Record<string, string | boolean> = {};
  for (const [k, v] of Object.entries(obj as Record<string, unknown>)) {
    const spec = SPECS[k];
    if (!spec) fail(`--config: ${path}: unknown flag "${k}" (see --help)`);
    if (spec.type === "boolean" ? typeof v !== "boolean" : !["string", "number"].includes(typeof v)) {
      fail(`--config: ${path}: "${k}" must be a ${spec.type === "boolean" ? "boolean" : "number or string"}`);
    }
    if (k === "config" && !(String(v) in PRESETS)) fail(`--config: ${path}: "config" must name a preset`);
    out[k] = typeof v === "boolean" ? v : String(v);
  }
  return out;
}

/** Parse and validate the command line (with its preset / file) into a Run. */
export async function parseRun(args: string[]): Promise<Run> {
  const f = parseFlags(args, FLAGS, USAGE);
  const v = f.values as Record<string, string | boolean | undefined>;
  const given = new Set(f.given);
  const fromPreset = new Set<string>();
  const config = v.config as string;
  if (given.has("config")) {
    const file = config in PRESETS ? {} : await readConfigFile(config);
    const preset = PRESETS[(file.config as string | undefined) ?? config] ?? {};
    for (const [k, x] of Object.entries({ ...preset, ...file })) {
      if (!f.given.has(k)) v[k] = x;
      if (!given.has(k) && !(k in file)) fromPreset.add(k);
      given.add(k);
    }
  }
  const s = (k: string) => v[k] as string;
  const kind = choiceFlag(s("model"), "model", ["gpt", "bigram-onehot", "bigram-embedding"]) as ModelKind;
  const optimizer =
    (v.optimizer === undefined
      ? (kind === "gpt" ? "adamw" : "sgd")
      : choiceFlag(s("optimizer"), "optimizer", ["sgd", "adamw"])) as OptimizerKind;
  const lr = v.lr === undefined
    ? (optimizer === "adamw" ? 1e-3 : 0.01)
    : floatFlag(s("lr"), "lr", { min: 0, max: 10, minExclusive: true });
  const arch = ARCHS[choiceFlag(s("arch"), "arch", Object.keys(ARCHS))];
  const activation = v.activation === undefined
    ? arch.activation
    : choiceFlag(s("activation"), "activation", ACTIVATIONS) as Activation;
  const run: Run = {
    config,
    kind,
    optimizer,
    lr,
    warmupIters: intFlag(s("warmup-iters"), "warmup-iters", { min: 0, max: 10_000_000 }),
    lrDecayIters: intFlag(s("lr-decay-iters"), "lr-decay-iters", { min: 0, max: 10_000_000 }),
    minLr: v["min-lr"] === undefined ? lr / 10 : floatFlag(s("min-lr"), "min-lr", { min: 0, max: lr }),
    beta1: floatFlag(s("beta1"), "beta1", { min: 0, max: 1, maxExclusive: true }),
    beta2: floatFlag(s("beta2"), "beta2", { min: 0, max: 1, maxExclusive: true }),
    weightDecay: floatFlag(s("weight-decay"), "weight-decay", { min: 0, max: 10 }),
    decayParams: choiceFlag(s("decay-params"), "decay-params", DECAY_PARAMS),
    gradClip: floatFlag(s("grad-clip"), "grad-clip", { min: 0, max: 1e6 }),
    steps: intFlag(s("steps"), "steps", { min: 1, max: 10_000_000 }),
    batch: intFlag(s("batch-size"), "batch-size", { min: 1, max: 4096 }),
    gradAccum: intFlag(s("grad-accum"), "grad-accum", { min: 1, max: 1024 }),
    seed: intFlag(s("seed"), "seed", { min: 0, max: 0xffffffff }),
    evalInterval: intFlag(s("eval-interval"), "eval-interval", { min: 1, max: 10_000_000 }),
    evalIters: intFlag(s("eval-iters"), "eval-iters", { min: 1, max: 10_000 }),
    logInterval: intFlag(s("log-interval"), "log-interval", { min: 1, max: 1000 }),
    sampleTokens: intFlag(s("sample-tokens"), "sample-tokens", { min: 0, max: 100_000 }),
    kernels: kernelsChoice(v.kernels),
    tune: tuneChoice(v.tune),
    out: s("out"),
    data: s("data"),
    resume: !!v.resume,
    force: !!v.force,
    gpt: {
      vocabSize: 0,
      nEmbd: intFlag(s("n-embd"), "n-embd", { min: 1, max: 4096 }),
      nHead: intFlag(s("n-head"), "n-head", { min: 1, max: 256 }),
      nLayer: intFlag(s("n-layer"), "n-layer", { min: 1, max: 64 }),
      // No kernel caps the block size: the adapter's buffer limits do (models/memory.ts, checked
      // before allocating), and the data (a split must hold block size + 1 characters).
      blockSize: intFlag(s("block-size"), "block-size", { min: 1, max: MAX_DIM }),
      dropout: floatFlag(s("dropout"), "dropout", { min: 0, max: 1, maxExclusive: true }),
      ...arch,
      activation,
    },
    tokenizer: v.tokenizer === undefined ? null : choiceFlag(s("tokenizer"), "tokenizer", TOKENIZERS),
    initFrom: v["init-from"] === undefined ? null : s("init-from"),
    given,
    fromPreset,
  };
  if (!run.out.trim()) fail("--out needs a directory");
  if (run.initFrom !== null) {
    if (run.resume) {
      fail("--init-from starts a new run; --resume continues the one in --out: use one of them");
    }
    const bad = FROM_DIR.find((f) => run.given.has(f) && !run.fromPreset.has(f));
    if (bad) fail(`--${bad} does not apply with --init-from: the directory's config.json decides it`);
  } else if (run.config === "finetune-gpt2" || v.config === "finetune-gpt2") {
    fail("--config finetune-gpt2 needs --init-from DIR (a Hugging Face GPT-2 directory)");
  }
  if (run.tokenizer === "gpt2" && run.kind !== "gpt") fail("--tokenizer gpt2 applies only to --model gpt");
  checkSchedule(run);
  return run;
}

/** The schedule's flags must fit together (also re-checked after --resume inherits them). */
export function checkSchedule(run: Run): void {
  if (run.lrDecayIters > 0 && run.lrDecayIters <= run.warmupIters) {
    fail(`--lr-decay-iters (${run.lrDecayIters}) must be larger than --warmup-iters (${run.warmupIters})`);
  }
  if (run.minLr > run.lr) fail(`--min-lr (${run.minLr}) must be at most --lr (${run.lr})`);
}

/** Flags that do not apply to the model / optimizer being trained (refused, not silently ignored). */
export function checkApplicable(run: Run): void {
  if (run.kind !== "gpt") {
    const bad = GPT_ONLY.find((f) => run.given.has(f) && !run.fromPreset.has(f));
    if (bad) fail(`--${bad} applies only to --model gpt, not ${run.kind}`);
  }
  if (run.optimizer !== "adamw") {
    const bad = ADAMW_ONLY.find((f) => run.given.has(f) && !run.fromPreset.has(f));
    if (bad) fail(`--${bad} applies only to --optimizer adamw, not ${run.optimizer}`);
  }
}

/** A new model: the GPT flags must fit together. */
export function checkNewModel(run: Run): void {
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

/** The training settings a checkpoint records and --resume inherits, by flag name. */
export function trainingSettings(run: Run): Record<string, number | string> {
  const s: Record<string, number | string> = {
    config: run.config,
    lr: run.lr,
    "warmup-iters": run.warmupIters,
    "lr-decay-iters": run.lrDecayIters,
    "min-lr": run.minLr,
    "grad-clip": run.gradClip,
    seed: run.seed,
  };
  if (run.optimizer === "adamw") {
    Object.assign(s, {
      beta1: run.beta1,
      beta2: run.beta2,
      "weight-decay": run.weightDecay,
      "decay-params": run.decayParams,
    });
  }
  if (run.gpt) Object.assign(s, { "batch-size": run.batch, "grad-accum": run.gradAccum });
  return s;
}

/** One line with the resolved configuration, as the run prints it. */
export function describeRun(run: Run): string {
  const g = run.gpt;
  const arch = g
    ? ` activation=${g.activation ?? "relu"} bias=${g.bias ?? true} tied_head=${g.tiedHead ?? false} ` +
      `embd_dropout=${g.embdDropout ?? false} init=${g.init ?? "pytorch"}`
    : "";
  const model = g
    ? `n_embd=${g.nEmbd} n_head=${g.nHead} n_layer=${g.nLayer} block_size=${g.blockSize} ` +
      `dropout=${g.dropout}${arch} `
    : "";
  const s = trainingSettings(run);
  const rest = Object.entries(s).filter(([k]) => k !== "config").map(([k, x]) =>
    `${k.replace(/-/g, "_")}=${x}`
  );
  return `config ${run.config}: ${run.kind} ${model}steps=${run.steps} ${run.optimizer} ${rest.join(" ")}`;
}
