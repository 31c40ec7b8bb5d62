// deno run --unstable-webgpu sample.ts --temperature 0.8
// Stream text from a trained checkpoint (default: out/model.safetensors, written by `deno task train`).

import { Runtime } from "./ops/runtime.ts";
import { Tokenizer } from "./lib/tokenizer.ts";
import {
  ensureReadPermission,
  fail,
  type FlagSpec,
  floatFlag,
  intFlag,
  parseFlags,
  runMain,
} from "./lib/cli.ts";
import { loadModel } from "./models/checkpoint.ts";
import type { GPT } from "./models/gpt.ts";
import type { BigramMLP } from "./models/bigram.ts";

export const DEFAULT_CHECKPOINT = "out/model.safetensors";

const FLAGS: FlagSpec[] = [
  {
    name: "checkpoint",
    type: "string",
    default: DEFAULT_CHECKPOINT,
    help: "model .safetensors to sample from",
  },
  { name: "temperature", type: "string", default: "1", help: "softmax temperature (>= 0; 0 = greedy)" },
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

async function main() {
  const f = parseFlags(Deno.args, FLAGS, USAGE);
  const v = f.values as Record<string, string>;
  const temperature = floatFlag(v.temperature, "temperature", { min: 0, max: 1e6 });
  const topP = floatFlag(v["top-p"], "top-p", { min: 0, max: 1, minExclusive: true });
  const topKRaw = intFlag(v["top-k"], "top-k", { min: 0, max: 1 << 20 });
  const maxNew = intFlag(v["max-new-tokens"], "max-new-tokens", { min: 0, max: 1_000_000 });
  const seed = intFlag(v.seed, "seed", { min: 0, max: 0xffffffff });
  const path = v.checkpoint;
  await ensureReadPermission([path], `--allow-read=${path === DEFAULT_CHECKPOINT ? "out" : path}`);
  try {
    await Deno.stat(path);
  } catch {
    fail(
      `checkpoint not found: ${path}${
        path === DEFAULT_CHECKPOINT ? " (train one first: deno task train)" : ""
      }`,
    );
  }
  const rt = await Runtime.create();
  const { kind, vocab, model } = await loadModel(rt, path);
  const tok = new Tokenizer(vocab);
  if (topKRaw > tok.vocabSize) fail(`--top-k must be at most the vocabulary size (${tok.vocabSize})`);
  const start = tok.encode(v.start);
  if (start.length === 0) fail("--start must contain at least one character");
  const enc = new TextEncoder();
  const opts = {
    temperature,
    topK: topKRaw,
    topP,
    seed,
    onToken: (id: number) => Deno.stdout.writeSync(enc.encode(tok.decode([id]))),
  };
  Deno.stdout.writeSync(enc.encode(v.start));
  if (kind === "gpt") {
    await (model as GPT).generate(start, maxNew, opts);
  } else {
    await (model as BigramMLP).generate(start[start.length - 1], maxNew, opts);
  }
  Deno.stdout.writeSync(enc.encode("\n"));
  rt.destroy();
}

if (import.meta.main) runMain(main);
