// deno task export --checkpoint FILE --out DIR — a trained GPT as a Hugging Face GPT-2 directory
// (config.json + model.safetensors, and a char model's tinygpt_chars.json) that
// transformers.GPT2LMHeadModel.from_pretrained(DIR) loads: the way to carry on with the ecosystem's
// trainers (transformers + accelerate, torchrun with FSDP, DeepSpeed) on many GPUs. CPU only (no GPU
// needed). Only GPT-2-shaped models export: a head tied to the token embedding, without a bias
// (--arch nanogpt or gpt2, or a model imported with --init-from); others are refused in one line.

import {
  ensureReadPermission,
  ensureWritePermission,
  fail,
  type FlagSpec,
  parseFlags,
  runMain,
} from "./lib/cli.ts";
import { isDirectory, readModelCheckpoint, writeHFDir } from "./models/files.ts";
import type { GPTConfig } from "./models/gpt.ts";
import { exportHFGpt2, exportProblem } from "./models/hf_gpt2.ts";

const FLAGS: FlagSpec[] = [
  { name: "checkpoint", type: "string", default: "out/model.safetensors", help: "the model file to export" },
  {
    name: "out",
    type: "string",
    help: "directory to write config.json and model.safetensors into (created)",
  },
];
const USAGE = `Export a trained GPT as a Hugging Face GPT-2 directory.

Usage: deno task export --checkpoint FILE --out DIR`;

export async function main(args: string[] = Deno.args): Promise<void> {
  const f = parseFlags(args, FLAGS, USAGE);
  const v = f.values as Record<string, string | undefined>;
  const path = v.checkpoint!, out = v.out;
  if (!out) fail("--out DIR is required (the directory to write the Hugging Face files into)");
  await ensureReadPermission([path], `--allow-read=${path}`);
  await ensureWritePermission([out], `--allow-write=${out}`);
  if (await isDirectory(path)) {
    fail(`--checkpoint ${path} is a directory; give the model file (model.safetensors)`);
  }
  const stat = await Deno.stat(out).catch(() => null);
  if (stat && !stat.isDirectory) fail(`--out ${out} exists and is not a directory`);
  const ckpt = await readModelCheckpoint(path);
  if (ckpt.kind !== "gpt") fail(`${path} holds a ${ckpt.kind} model; only GPT models export as GPT-2`);
  const cfg = ckpt.config as GPTConfig;
  const problem = exportProblem(cfg);
  if (problem) fail(`${path} cannot be exported as GPT-2: ${problem}`);
  await writeHFDir(out, exportHFGpt2(cfg, ckpt.params, ckpt.tokenizer === "char" ? ckpt.vocab : null));
  console.log(
    `wrote ${out}/config.json and ${out}/model.safetensors${
      ckpt.tokenizer === "char" ? " and tinygpt_chars.json" : ""
    } ` +
      `(GPT-2: ${cfg.nLayer} layers, ${cfg.nHead} heads, n_embd ${cfg.nEmbd}, vocab ${cfg.vocabSize}, ` +
      `${ckpt.tokenizer} tokenizer)`,
  );
}

if (import.meta.main) runMain(() => main());
