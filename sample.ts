// deno run --unstable-webgpu sample.ts --temperature 0.8
// Stream text from a trained checkpoint (default: out/model.safetensors, written by `deno task train`)
// or from a Hugging Face GPT-2 directory (config.json + model.safetensors), with the model's tokenizer:
// its characters, or GPT-2's BPE.

import { createRuntime } from "./lib/backend.ts";
import { installTuner } from "./lib/tune_cache.ts";
import { GPT2_VOCAB_SIZE, StreamDecoder, type TextTokenizer, Tokenizer } from "./lib/tokenizer.ts";
import { Gpt2Tokenizer } from "./lib/bpe.ts";
import {
  ensureReadPermission,
  fail,
  type FlagSpec,
  floatFlag,
  gpuCause,
  intFlag,
  KERNELS_FLAG,
  kernelsChoice,
  parseFlags,
  runMain,
  TUNE_FLAG,
  tuneChoice,
  UsageError,
} from "./lib/cli.ts";
import { checkBuffers, gptActivationBuffers } from "./models/memory.ts";
import { buildModel, type CheckpointData } from "./models/checkpoint.ts";
import { isDirectory, readHFDir, readModelCheckpoint } from "./models/files.ts";
import { HF_CHARS } from "./models/hf_gpt2.ts";
import type { GPT, GPTConfig } from "./models/gpt.ts";
import { DEFAULT_CHUNK } from "./models/gpt_decode.ts";
import type { BigramMLP } from "./models/bigram.ts";

export const DEFAULT_CHECKPOINT = "out/model.safetensors";
/** Below this (but above 0, which is greedy) logits / temperature can overflow to infinity. */
const MIN_TEMPERATURE = 1e-6;

const FLAGS: FlagSpec[] = [
  {
    name: "checkpoint",
    type: "string",
    default: DEFAULT_CHECKPOINT,
    help:
      "model .safetensors to sample from, or a Hugging Face GPT-2 directory (config.json + model.safetensors)",
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
  {
    name: "max-new-tokens",
    type: "string",
    default: "500",
    help: "tokens to generate (characters, or BPE tokens)",
  },
  {
    name: "start",
    type: "string",
    default: "\n",
    help: "prompt text (with a char model, its characters must be in the vocabulary)",
  },
  { name: "seed", type: "string", default: "0", help: "sampling seed (same seed => same text)" },
  {
    name: "num-samples",
    type: "string",
    default: "1",
    help: "samples of the prompt, decoded as one batch (GPT); printed one after another",
  },
  KERNELS_FLAG,
  { ...TUNE_FLAG, help: TUNE_FLAG.help + " (sampling times the classes it met after it has printed)" },
];
/** Most samples decoded at once (each costs a [block_size]-row window pass per character). */
const MAX_SAMPLES = 256;
/** nanoGPT's sample.py prints this line after every sample. */
export const SAMPLE_SEPARATOR = "---------------";

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
  const numSamples = intFlag(v["num-samples"], "num-samples", { min: 1, max: MAX_SAMPLES });
  if (v.start === "") fail("--start must contain at least one character");
  const kernels = kernelsChoice(v.kernels);
  const tune = tuneChoice(v.tune);
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
  const ckpt = await readCheckpoint(path);
  const tok: TextTokenizer = ckpt.tokenizer === "gpt2" ? new Gpt2Tokenizer() : new Tokenizer(ckpt.vocab);
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
  const rt = await createRuntime({ kernels, timestamps: tune !== "off" });
  try {
    if (ckpt.kind === "gpt") {
      // The decoder's window pass: GPTActivations for N sequences of block_size (the largest buffer
      // is the logits, [N, block, vocab], or the MLP's [N, block, 4 n_embd]).
      const cfg = ckpt.config as GPTConfig;
      checkBuffers(rt.device.limits, gptActivationBuffers(cfg, numSamples, cfg.blockSize), () => ({
        what: "decoding",
        flags: `--num-samples ${numSamples} (block size ${cfg.blockSize}, ${cfg.nHead} heads)`,
        advice: "use fewer samples",
      }));
    }
    // stdout is the text alone; the adapter line (which names the kernel family) goes to stderr.
    console.error(`adapter: ${rt.describe()}`);
    // The decoder records each pass once and replays it, so what the tuner times now serves later
    // runs (from the cache); the matmuls of this one keep the variants they were recorded with.
    const tuner = await installTuner(rt, tune, (l) => console.error(l));
    const model = buildModel(rt, ckpt);
    const enc = new TextEncoder();
    const write = (text: string) => Deno.stdout.writeSync(enc.encode(text));
    const opts = { temperature, topK, topP, seed };
    // Sample 0 streams as it is generated; with --num-samples N the others follow it, each printed
    // with its prompt and followed by a separator line, as nanoGPT's sample.py does.
    write(v.start);
    const stream = new StreamDecoder(tok);
    const onToken = (id: number) => write(stream.push(id));
    let rest: number[][] = [];
    if (ckpt.kind === "gpt") {
      // A terminal gets smaller chunks, so the text streams smoothly; a pipe gets fewer readbacks.
      const chunk = Deno.stdout.isTerminal() ? 4 : DEFAULT_CHUNK;
      const all = await (model as GPT).generateBatch(start, maxNew, numSamples, { ...opts, chunk, onToken });
      rest = all.slice(1);
    } else {
      // Bigram models decode one sample at a time; sample i uses seed + i.
      const bigram = model as BigramMLP, last = start[start.length - 1];
      await bigram.generate(last, maxNew, { ...opts, onToken });
      for (let i = 1; i < numSamples; i++) {
        rest.push(await bigram.generate(last, maxNew, { ...opts, seed: seed + i }));
      }
    }
    write(stream.flush() + "\n");
    if (numSamples > 1) {
      write(SAMPLE_SEPARATOR + "\n");
      for (const ids of rest) write(v.start + tok.decode(ids) + "\n" + SAMPLE_SEPARATOR + "\n");
    }
    if (tuner?.hasPending) await tuner.tunePending();
  } catch (e) {
    throw await gpuCause(rt, e);
  }
  rt.destroy();
}

/**
 * A checkpoint file, or a Hugging Face GPT-2 directory as one (its tokenizer: tinygpt_chars.json's
 * characters, else GPT-2's BPE, which needs vocab_size >= 50257).
 */
async function readCheckpoint(path: string): Promise<CheckpointData> {
  if (!(await isDirectory(path))) return await readModelCheckpoint(path);
  const hf = await readHFDir(path);
  if (!hf.chars && hf.config.vocabSize < GPT2_VOCAB_SIZE) {
    fail(
      `${path}: vocab_size ${hf.config.vocabSize} is below GPT-2's ${GPT2_VOCAB_SIZE} and there is no ` +
        `${HF_CHARS}: no tokenizer fits it`,
    );
  }
  return {
    kind: "gpt",
    config: hf.config,
    tokenizer: hf.chars ? "char" : "gpt2",
    vocab: hf.chars ?? [],
    step: 0,
    params: hf.params,
    metadata: {},
  };
}

if (import.meta.main) runMain(() => main());
