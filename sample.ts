// deno run --unstable-webgpu sample.ts --temperature 0.8
// Stream text from a trained checkpoint (default: out/model.safetensors, written by `deno task train`).

import { createRuntime } from "./lib/backend.ts";
import { Tokenizer } from "./lib/tokenizer.ts";
import {
  ensureReadPermission,
  fail,
  type FlagSpec,
  floatFlag,
  gpuCause,
  intFlag,
  parseFlags,
  runMain,
  UsageError,
} from "./lib/cli.ts";
import { buildModel } from "./models/checkpoint.ts";
import { readModelCheckpoint } from "./lib/files.ts";
import type { GPT } from "./models/gpt.ts";
import type { BigramMLP } from "./models/bigram.ts";

export const DEFAULT_CHECKPOINT = "out/model.safetensors";
/** Below this (but above 0, which is greedy) logits / temperature can overflow to infinity. */
const MIN_TEMPERATURE = 1e-6;

const FLAGS: FlagSpec[] = [
  {
    name: "checkpoint",
    type: "string",
    default: DEFAULT_CHECKPOINT,
    help: "model .safetensors to sample from",
  },
  {
    name: "temperature",
    type: "string",
    default: "1",
    help: "softmax temperature (0 = greedy, else >= 1e-6)",
  },
  { name: "top-k", type: "string", default: "0", help: "keep the k most likely tokens (0 = all)" },
  {
    name: "top-p",
    type: "string",
    default: "1",
    help: "nucleus: smallest set with probability mass >= p, in (0, 1]",
  },
  { name: "max-new-tokens", type: "string", default: "500", help: "characters to generate" },
  {
    name: "start",
    type: "string",
    default: "\n",
    help: "prompt text (its characters must be in the vocabulary)",
  },
  { name: "seed", type: "string", default: "0", help: "sampling seed (same seed => same text)" },
];

const USAGE = `Sample text from a trained checkpoint.

Usage: deno run --unstable-webgpu sample.ts [flags]   (or: deno task sample [flags])`;

export async function main(args: string[] = Deno.args): Promise<void> {
  const f = parseFlags(args, FLAGS, USAGE);
  const v = f.values as Record<string, string>;
  const temperature = floatFlag(v.temperature, "temperature", { min: 0, max: 1e6 });
  if (temperature > 0 && temperature < MIN_TEMPERATURE) {
    fail(`--temperature must be 0 (greedy) or at least 1e-6, got ${v.temperature}`);
  }
  const topP = floatFlag(v["top-p"], "top-p", { min: 0, max: 1, minExclusive: true });
  const topK = intFlag(v["top-k"], "top-k", { min: 0, max: 1 << 20 });
  const maxNew = intFlag(v["max-new-tokens"], "max-new-tokens", { min: 0, max: 1_000_000 });
  const seed = intFlag(v.seed, "seed", { min: 0, max: 0xffffffff });
  if (v.start === "") fail("--start must contain at least one character");
  const path = v.checkpoint;
  await ensureReadPermission([path], `--allow-read=${path === DEFAULT_CHECKPOINT ? "out" : path}`);
  if (!(await Deno.stat(path).then(() => true, () => false))) {
    fail(
      `checkpoint not found: ${path}${
        path === DEFAULT_CHECKPOINT ? " (train one first: deno task train)" : ""
      }`,
    );
  }
  // The whole checkpoint is validated on the CPU before the GPU is touched.
  const ckpt = await readModelCheckpoint(path);
  const tok = new Tokenizer(ckpt.vocab);
  if (topK > tok.vocabSize) {
    fail(`--top-k must be at most the vocabulary size (${tok.vocabSize}), got ${topK}; 0 keeps all`);
  }
  let start: number[];
  try {
    start = tok.encode(v.start);
  } catch (e) {
    if (e instanceof UsageError) {
      fail(`--start: ${e.message.replace("the vocabulary", `the vocabulary of ${path}`)}`);
    }
    throw e;
  }
  const rt = await createRuntime();
  try {
    const model = buildModel(rt, ckpt);
    const enc = new TextEncoder();
    const opts = {
      temperature,
      topK,
      topP,
      seed,
      onToken: (id: number) => Deno.stdout.writeSync(enc.encode(tok.decode([id]))),
    };
    Deno.stdout.writeSync(enc.encode(v.start));
    if (ckpt.kind === "gpt") {
      await (model as GPT).generate(start, maxNew, opts);
    } else {
      await (model as BigramMLP).generate(start[start.length - 1], maxNew, opts);
    }
    Deno.stdout.writeSync(enc.encode("\n"));
  } catch (e) {
    throw await gpuCause(rt, e);
  }
  rt.destroy();
}

if (import.meta.main) runMain(() => main());
