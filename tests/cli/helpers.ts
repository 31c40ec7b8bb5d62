// Shared helpers for the CLI reliability tests: train.ts / sample.ts run as child `deno run` processes
// (with the narrow permissions the deno.json tasks grant), tiny configs, generated data, synthetic
// checkpoints, and `inspect`, which reports on an --out directory from a child process (the test
// runner itself may write /tmp but not read it).

import assert from "node:assert/strict";
import { Rng } from "../../lib/rng.ts";
import { Tokenizer } from "../../lib/tokenizer.ts";
import { type GPTConfig, gptParamSpecs } from "../../models/gpt.ts";
import { encodeModelCheckpoint, encodeResumeCheckpoint } from "../../models/checkpoint.ts";
import { OPTIONAL_ENV } from "../../lib/env.ts";

export const ROOT = new URL("../../", import.meta.url).pathname;
export const TRAIN = `${ROOT}train.ts`;
export const SAMPLE = `${ROOT}sample.ts`;
const INSPECT = new URL("./inspect.ts", import.meta.url).pathname;

/** The tiny GPT every CLI test trains: a step takes well under a second on lavapipe. */
export const TINY = [
  "--n-embd=16",
  "--n-head=2",
  "--n-layer=1",
  "--block-size=8",
  "--batch-size=4",
  "--eval-iters=1",
  "--sample-tokens=0",
];
export const TINY_CFG = { nEmbd: 16, nHead: 2, nLayer: 1, blockSize: 8, dropout: 0.1 };

export interface Result {
  code: number;
  signal: Deno.Signal | null;
  stdout: string;
  stderr: string;
}

const dec = new TextDecoder();

/** The env access the deno.json tasks grant: the optional variables (lib/env.ts), no others. */
export const ENV_FLAG = `--allow-env=${OPTIONAL_ENV.join(",")}`;

/** `deno run` args for a script with read/write access to `dir` only (plus env, as the tasks). */
export function runArgs(script: string, dir: string, args: string[]): string[] {
  return [
    "run",
    "--no-config",
    "--no-lock",
    "--quiet",
    `--allow-read=${dir}`,
    `--allow-write=${dir}`,
    ENV_FLAG,
    script,
    ...args,
  ];
}

const BASE_ENV = { TINYGPT_DEBUG: "", NO_COLOR: "1", XDG_RUNTIME_DIR: "/tmp" };

/** Run a deno child to completion. */
export async function deno(args: string[], env: Record<string, string> = {}): Promise<Result> {
  const out = await new Deno.Command("deno", {
    args,
    env: { ...BASE_ENV, ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: out.code,
    signal: out.signal,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}

/** train.ts with access to `dir` (data and --out inside it). */
export function train(dir: string, args: string[], env: Record<string, string> = {}): Promise<Result> {
  return deno(runArgs(TRAIN, dir, args), env);
}

/** sample.ts with access to `dir`. */
export function sample(dir: string, args: string[], env: Record<string, string> = {}): Promise<Result> {
  return deno(runArgs(SAMPLE, dir, args), env);
}

/** A child whose stdout can be watched while it runs (to signal it at the right moment). */
export class Running {
  readonly child: Deno.ChildProcess;
  stdout = "";
  stderr = "";
  private readonly done: Promise<Result>;
  private waiters: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];

  constructor(args: string[], env: Record<string, string> = {}) {
    const child = this.child = new Deno.Command("deno", {
      args,
      env: { ...BASE_ENV, ...env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const pump = async (s: ReadableStream<Uint8Array>, key: "stdout" | "stderr") => {
      for await (const chunk of s.pipeThrough(new TextDecoderStream())) {
        this[key] += chunk;
        if (key === "stdout") this.check();
      }
    };
    const pumps = Promise.all([pump(child.stdout, "stdout"), pump(child.stderr, "stderr")]);
    this.done = (async () => {
      const st = await child.status;
      await pumps;
      this.check();
      return { code: st.code, signal: st.signal, stdout: this.stdout, stderr: this.stderr };
    })();
  }

  private check(): void {
    this.waiters = this.waiters.filter((w) => {
      const m = this.stdout.match(w.re);
      if (m) w.resolve(m);
      return !m;
    });
  }

  /** Resolves with the match once stdout matches `re`; rejects if the child exits first. */
  waitFor(re: RegExp): Promise<RegExpMatchArray> {
    const hit = new Promise<RegExpMatchArray>((resolve) => {
      this.waiters.push({ re, resolve });
      this.check();
    });
    return Promise.race([
      hit,
      this.done.then((r) => {
        const m = r.stdout.match(re);
        if (m) return m;
        throw new Error(`child exited (${r.code}) before printing ${re}:\n${r.stdout}\n${r.stderr}`);
      }),
    ]);
  }

  kill(signal: Deno.Signal): void {
    this.child.kill(signal);
  }

  result(): Promise<Result> {
    return this.done;
  }
}

/** A fresh temp directory under /tmp, removed by the returned function. */
export async function tempDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "tinygpt-cli-" });
  return { dir, cleanup: () => Deno.remove(dir, { recursive: true }).catch(() => {}) };
}

/** Deterministic training text (~1500 characters of a small vocabulary). */
export function corpus(words = 300, seed = 1): string {
  const rng = new Rng(seed);
  const list = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far", "Who", "goes?"];
  const out: string[] = [];
  for (let i = 0; i < words; i++) out.push(list[rng.int(list.length)] + (rng.int(9) === 0 ? ".\n" : ""));
  return out.join(" ");
}

/** A temp directory for a whole test file, removed when the process unloads. */
export async function fileTempDir(): Promise<string> {
  const { dir } = await tempDir();
  globalThis.addEventListener("unload", () => {
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch { /* already gone */ }
  });
  return dir;
}

/**
 * A --resume command line naming no model or training flags (the checkpoint supplies them): only the
 * data, the output, the step count and the logging/eval settings (which do not affect training).
 */
export function resumeArgs(data: string, out: string, steps: number): string[] {
  return [
    `--data=${data}`,
    `--out=${out}`,
    "--resume",
    `--steps=${steps}`,
    "--sample-tokens=0",
    "--eval-interval=5",
    "--eval-iters=1",
    "--log-interval=3",
  ];
}

/** Per-step losses 1..steps of `got` are bit-identical to `want`'s, and metrics.jsonl is clean. */
export function assertSameLosses(got: Inspection, want: Inspection, what: string, steps: number): void {
  assert.equal(got.badLines, 0, `${what}: metrics.jsonl has torn or repeated lines`);
  assert.equal(want.losses.length, steps + 1);
  for (let s = 1; s <= steps; s++) {
    assert.ok(typeof want.losses[s] === "number", `reference has no loss for step ${s}`);
    assert.ok(
      Object.is(got.losses[s], want.losses[s]),
      `${what}: step ${s} loss ${got.losses[s]} != ${want.losses[s]}`,
    );
  }
}

/** Write the corpus to dir/data.txt and return its path. */
export async function writeData(dir: string, text = corpus()): Promise<string> {
  const path = `${dir}/data.txt`;
  await Deno.writeTextFile(path, text);
  return path;
}

export const VOCAB = Tokenizer.fromText(corpus()).chars;

/** Random-initialised GPT weights (internal names) for `cfg`, as a model would have them. */
export function gptValues(cfg: GPTConfig, seed = 1): Map<string, Float32Array> {
  return new Map(gptParamSpecs(cfg, new Rng(seed)).map((s) => [s.name, s.init]));
}

/**
 * A synthetic tiny-GPT checkpoint pair in `dir` (model.safetensors and an SGD resume file, which needs
 * no optimizer buffers), as train.ts would write it at `step`. Returns the model file's bytes.
 */
export async function writeCheckpoint(
  dir: string,
  opts: { vocab?: string[]; step?: number; cfg?: Partial<GPTConfig> } = {},
): Promise<{ model: Uint8Array; resume: Uint8Array; cfg: GPTConfig }> {
  const vocab = opts.vocab ?? VOCAB;
  const cfg: GPTConfig = { vocabSize: vocab.length, ...TINY_CFG, ...opts.cfg };
  const values = gptValues(cfg);
  const step = opts.step ?? 5;
  const model = encodeModelCheckpoint("gpt", cfg, values, vocab, step);
  const resume = encodeResumeCheckpoint("gpt", cfg, values, vocab, step, new Map(), {
    optimizer: "sgd",
    lr: 0.01,
    seed: 1337,
    batch: 4,
    rng: new Rng(1337).state(),
  });
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeFile(`${dir}/model.safetensors`, model);
  await Deno.writeFile(`${dir}/model.optim.safetensors`, resume);
  return { model, resume, cfg };
}

/** What `inspect.ts` reports about an --out directory. */
export interface Inspection {
  files: string[];
  model?: {
    step: number;
    kind: string;
    finite: boolean;
    sha256: string;
    trainConfig?: Record<string, unknown>;
  };
  modelError?: string;
  resume?: { step: number; finite: boolean; settings?: Record<string, unknown> };
  resumeError?: string;
  /** Per-step batch losses from metrics.jsonl (index = step; null where absent). */
  losses: (number | null)[];
  evals: { step: number; train: number; val?: number }[];
  /** metrics.jsonl lines that did not parse or repeat a step. */
  badLines: number;
}

/** Load the checkpoint in `dir` the way sample.ts and --resume do, in a child that may read it. */
export async function inspect(dir: string): Promise<Inspection> {
  const r = await deno([
    "run",
    "--no-config",
    "--no-lock",
    "--quiet",
    `--allow-read=${dir}`,
    "--allow-env",
    INSPECT,
    dir,
  ]);
  assert.equal(r.code, 0, `inspect failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** A user error: exit status 2 and exactly one `error: ...` line on stderr (no stack trace). */
export function assertUserError(r: Result, re: RegExp, what = ""): void {
  assertOneLine(r, re, 2, what);
}

/** The adapter line sample.ts prints on stderr (stdout is the text alone); it names the kernel family. */
export const SAMPLE_ADAPTER_LINE = /^adapter: .* \[backend .*, kernels (gpu|cpu)\]$/;

/** sample.ts's stderr on success: the adapter line and nothing else. */
export function assertAdapterLineOnly(stderr: string): void {
  const lines = stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `only the adapter line on stderr: ${stderr}`);
  assert.match(lines[0], SAMPLE_ADAPTER_LINE);
}

/**
 * Exit status `code` and exactly one `error: ...` line on stderr matching `re` (besides sample.ts's
 * adapter line, printed once the GPU is open).
 */
export function assertOneLine(r: Result, re: RegExp, code: number, what = ""): void {
  const ctx = `${what}\nexit ${r.code}\nstderr: ${r.stderr}\nstdout: ${r.stdout}`;
  assert.equal(r.code, code, ctx);
  const lines = r.stderr.trimEnd().split("\n").filter((l) => !SAMPLE_ADAPTER_LINE.test(l));
  assert.equal(lines.length, 1, `one stderr line expected: ${ctx}`);
  assert.match(lines[0], /^error: /, ctx);
  assert.match(lines[0], re, ctx);
  assert.doesNotMatch(r.stderr, /\bat .*:\d+:\d+/, `no stack trace: ${ctx}`);
}

/** Run `fn` over `items`, at most `n` at a time. */
export async function pool<T>(items: T[], n: number, fn: (t: T) => Promise<void>): Promise<void> {
  let i = 0;
  const worker = async () => {
    while (i < items.length) await fn(items[i++]);
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
}
