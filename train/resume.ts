// --resume reconciliation: the checkpoint decides the model, its config and the optimizer (a flag that
// says otherwise is refused); the training settings (lr and its schedule, betas, weight decay and its
// groups, clipping, accumulation, seed, batch size) default to the checkpoint's, so the run continues
// exactly. Giving a different value is allowed, with a note that the run then differs from an
// uninterrupted one.

import { choiceFlag, fail, floatFlag, intFlag } from "../lib/cli.ts";
import type { GPTConfig } from "../models/gpt.ts";
import type { ResumeData } from "../models/checkpoint.ts";
import { DECAY_PARAMS, type DecayParams } from "../models/common.ts";
import { checkSchedule, type Run } from "./config.ts";

type NumKey =
  | "lr"
  | "seed"
  | "batch"
  | "gradAccum"
  | "warmupIters"
  | "lrDecayIters"
  | "minLr"
  | "beta1"
  | "beta2";
type Key = NumKey | "weightDecay" | "gradClip" | "decayParams";

/** flag name -> Run key and how to validate a stored value. */
const INHERITED: [string, Key, (s: string, flag: string) => number | DecayParams][] = [
  ["lr", "lr", (s, f) => floatFlag(s, f, { min: 0, minExclusive: true })],
  ["seed", "seed", (s, f) => intFlag(s, f, { min: 0, max: 0xffffffff })],
  ["batch-size", "batch", (s, f) => intFlag(s, f, { min: 1 })],
  ["grad-accum", "gradAccum", (s, f) => intFlag(s, f, { min: 1, max: 1024 })],
  ["warmup-iters", "warmupIters", (s, f) => intFlag(s, f, { min: 0 })],
  ["lr-decay-iters", "lrDecayIters", (s, f) => intFlag(s, f, { min: 0 })],
  ["min-lr", "minLr", (s, f) => floatFlag(s, f, { min: 0 })],
  ["beta1", "beta1", (s, f) => floatFlag(s, f, { min: 0, max: 1, maxExclusive: true })],
  ["beta2", "beta2", (s, f) => floatFlag(s, f, { min: 0, max: 1, maxExclusive: true })],
  ["weight-decay", "weightDecay", (s, f) => floatFlag(s, f, { min: 0 })],
  ["decay-params", "decayParams", (s, f) => choiceFlag(s, f, DECAY_PARAMS)],
  ["grad-clip", "gradClip", (s, f) => floatFlag(s, f, { min: 0 })],
];

/** Apply the checkpoint `r` to `run` (see the header); notes for the user go to `notes`. */
export function resolveResume(run: Run, r: ResumeData, notes: string[]): void {
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

  // Stored values: the older metadata fields, then train_config (by flag name), validated as flags.
  const stored = new Map<string, unknown>([["lr", r.lr], ["seed", r.seed], ["batch-size", r.batch]]);
  for (const [k, x] of Object.entries(r.settings ?? {})) stored.set(k, x);
  for (const [flag, key, parse] of INHERITED) {
    const raw = stored.get(flag);
    if (raw === undefined || (flag === "batch-size" && r.kind !== "gpt")) continue;
    let theirs: number | DecayParams;
    try {
      theirs = parse(String(raw), flag);
    } catch (e) {
      fail(`${r.file}: metadata 'train_config' holds an invalid ${flag}: ${(e as Error).message}`);
    }
    const mine = run[key];
    if (!run.given.has(flag)) (run as unknown as Record<Key, unknown>)[key] = theirs;
    else if (mine !== theirs) {
      notes.push(
        `note: --${flag} ${mine} differs from the checkpoint's ${theirs}; ` +
          `the run will not match an uninterrupted one`,
      );
    }
  }
  if (typeof r.settings?.config === "string" && !run.given.has("config")) run.config = r.settings.config;
  checkSchedule(run);
}

/** Characters in `a` but not in `b`, quoted, at most 10. */
function missingChars(a: string[], b: string[]): string {
  const set = new Set(b);
  const extra = a.filter((c) => !set.has(c));
  return extra.slice(0, 10).map((c) => JSON.stringify(c)).join(", ") + (extra.length > 10 ? ", ..." : "");
}

/** Refuse text whose character set differs from the checkpoint's vocabulary. */
export function checkSameVocab(data: string, dataChars: string[], vocab: string[]): void {
  if (dataChars.join("") === vocab.join("")) return;
  const extra = missingChars(dataChars, vocab), gone = missingChars(vocab, dataChars);
  fail(
    `--resume: ${data} is not the text the checkpoint was trained on (${
      [
        extra && `characters not in its vocabulary: ${extra}`,
        gone && `vocabulary characters missing from the data: ${gone}`,
      ].filter(Boolean).join("; ")
    })`,
  );
}
