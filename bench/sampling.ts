// Sampling speed: characters/s of GPT decoding at the lecture config and nanoGPT's shakespeare-char
// config (random-init weights: speed does not depend on them), for a prompt shorter than block_size
// and for a long generation, with the KV cache and GPU sampling on and off, and "before" (today's
// crop-and-recompute path, GPT.generateRecompute, as of commit b37abb4), all in the same run.
// `--config gpt2`: GPT-2 small's shape instead (GPT2_ARCH, 12 layers, 12 heads, 768 wide, vocab
// 50257, block 1024; --gpt2-layers and --gpt2-embd for a smaller one), greedy tokens/s with the KV cache and GPU
// sampling after an 8-token prompt, beside PyTorch's eager GPT-2 with a KV cache (bench/torch_ref.py
// --gpt2-decode, same shape, CPU) when python3 with torch runs.
//
//   deno run --allow-read=. --allow-write=. --allow-env bench/sampling.ts [--json FILE] [--quick]
//   deno run --allow-read=. --allow-write=. --allow-env --allow-run=python3,/usr/bin/python3 \
//     bench/sampling.ts --config gpt2 [--gpt2-layers N] [--gpt2-embd C] [--no-torch]
//   deno task bench --sampling        (the same table after the training-step benchmark)

import {
  ensureOutputFile,
  type FlagSpec,
  intFlag,
  KERNELS_FLAG,
  kernelsChoice,
  parseFlags,
  runMain,
} from "../lib/cli.ts";
import type { Runtime } from "../ops/runtime.ts";
import { createRuntime } from "../lib/backend.ts";
import { atomicWrite } from "../lib/fsutil.ts";
import { GPT, GPT_REFERENCE, type GPTConfig } from "../models/gpt.ts";
import { GPT2_124M } from "./step.ts";
import type { DecodeOptions } from "../models/gpt_decode.ts";

export interface SamplingCase {
  config: string;
  case: string; // "short prompt" / "long generation" / "N samples"
  mode: string;
  samples: number;
  promptChars: number;
  newChars: number; // per sample
  seconds: number; // the median of `rounds` runs
  rounds: number;
  charsPerSec: number; // all samples' characters / seconds (tokens/s for GPT-2)
}

const NANOGPT_CHAR: Omit<GPTConfig, "vocabSize"> = {
  nEmbd: 384,
  nHead: 6,
  nLayer: 6,
  blockSize: 256,
  dropout: 0.2,
};

/** Layers and width of the GPT-2 case (heads of 64). */
export interface Gpt2Shape {
  nLayer: number;
  nEmbd: number;
  nHead: number;
}

/** Prompt and new tokens of the GPT-2 case (and of bench/torch_ref.py --gpt2-decode's defaults). */
const GPT2_PROMPT = 8, GPT2_NEW = 32;

type Mode = "before" | "no cache, host" | "cache, host" | "no cache, GPU" | "cache, GPU";
const MODES: Mode[] = ["before", "no cache, host", "cache, host", "no cache, GPU", "cache, GPU"];
const MODE_OPTS: Record<Exclude<Mode, "before">, DecodeOptions> = {
  "no cache, host": { cache: false, gpuSampling: false },
  "cache, host": { cache: true, gpuSampling: false },
  "no cache, GPU": { cache: false, gpuSampling: true },
  "cache, GPU": { cache: true, gpuSampling: true },
};

/**
 * The median of `rounds` timed generations, after a short untimed one that compiles the pipelines and
 * allocates (single runs of one case spread by ±10% on an idle 2-core machine).
 */
async function timeRun(
  model: GPT,
  mode: Mode,
  prompt: number[],
  newChars: number,
  samples: number,
  rounds: number,
  temperature: number,
): Promise<number> {
  const opts = { temperature, seed: 1 };
  const run = (n: number) =>
    mode === "before"
      ? model.generateRecompute(prompt, n, opts)
      : model.generateBatch(prompt, n, samples, { ...opts, ...MODE_OPTS[mode] });
  await run(Math.min(newChars, 3)); // a window pass, a cached pass and a draw
  const secs: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    await run(newChars);
    secs.push((performance.now() - t0) / 1000);
  }
  return secs.sort((a, b) => a - b)[Math.floor(rounds / 2)];
}

interface Plan {
  config: string;
  cfg: GPTConfig;
  temperature: number; // 0 = greedy
  cases: { name: string; prompt: number; chars: (m: Mode) => number; samples: number; modes: Mode[] }[];
}

/** The GPT-2 plan: greedy, KV cache and GPU sampling, at GPT-2 small's shape but for `shape`. */
function gpt2Plan(quick: boolean, shape: Gpt2Shape): Plan {
  const cfg = { ...GPT2_124M, ...shape };
  return {
    config: `gpt2 (C${cfg.nEmbd} L${cfg.nLayer} H${cfg.nHead} T${cfg.blockSize} V${cfg.vocabSize})`,
    cfg,
    temperature: 0,
    cases: [{
      name: "short prompt",
      prompt: GPT2_PROMPT,
      chars: () => (quick ? 8 : GPT2_NEW),
      samples: 1,
      modes: ["cache, GPU"],
    }],
  };
}

function plans(quick: boolean): Plan[] {
  const lecture: GPTConfig = { vocabSize: 65, ...GPT_REFERENCE };
  const nano: GPTConfig = { vocabSize: 65, ...NANOGPT_CHAR };
  const recompute = (m: Mode) => m === "before" || m.startsWith("no cache");
  return [
    {
      config: "lecture (C64 L4 H4 T32)",
      cfg: lecture,
      temperature: 0.8,
      cases: [
        { name: "short prompt", prompt: 1, chars: () => 31, samples: 1, modes: MODES },
        { name: "long generation", prompt: 1, chars: () => (quick ? 100 : 500), samples: 1, modes: MODES },
        {
          name: "8 samples",
          prompt: 1,
          chars: () => (quick ? 100 : 500),
          samples: 8,
          modes: ["no cache, GPU", "cache, GPU"],
        },
      ],
    },
    {
      config: "nanogpt-char (C384 L6 H6 T256)",
      cfg: nano,
      temperature: 0.8,
      cases: [
        // Without the cache every character is a full 256-position pass: a few are enough to time.
        {
          name: "short prompt",
          prompt: 1,
          chars: (m) => (recompute(m) ? 2 : quick ? 16 : 64),
          samples: 1,
          modes: MODES,
        },
        // Past block_size every character is a fresh pass over the window on every path.
        { name: "long generation", prompt: 256, chars: () => 2, samples: 1, modes: ["before", "cache, GPU"] },
      ],
    },
  ];
}

/** Timed runs per case by default (medians); --quick runs one. */
export const DEFAULT_ROUNDS = 3;

/** Run every case; `log` gets one line per measurement as it finishes. */
export async function benchSampling(
  rt: Runtime,
  opts: { quick?: boolean; rounds?: number; log?: (line: string) => void; gpt2?: Gpt2Shape } = {},
): Promise<SamplingCase[]> {
  const rounds = opts.rounds ?? (opts.quick ? 1 : DEFAULT_ROUNDS);
  const out: SamplingCase[] = [];
  const todo = opts.gpt2 ? [gpt2Plan(!!opts.quick, opts.gpt2)] : plans(!!opts.quick);
  for (const plan of todo) {
    const model = new GPT(rt, plan.cfg, 1337);
    for (const c of plan.cases) {
      const prompt = Array.from({ length: c.prompt }, (_, i) => (i * 7 + 1) % plan.cfg.vocabSize);
      for (const mode of c.modes) {
        const n = c.chars(mode);
        const seconds = await timeRun(model, mode, prompt, n, c.samples, rounds, plan.temperature);
        const r: SamplingCase = {
          config: plan.config,
          case: c.name,
          mode,
          samples: c.samples,
          promptChars: c.prompt,
          newChars: n,
          seconds,
          rounds,
          charsPerSec: (n * c.samples) / seconds,
        };
        out.push(r);
        opts.log?.(row(r));
      }
    }
  }
  return out;
}

const rate = (x: number) => x.toFixed(x >= 100 ? 0 : x >= 10 ? 1 : 2);

function row(r: SamplingCase): string {
  const cps = rate(r.charsPerSec);
  return `${r.config.padEnd(31)} ${r.case.padEnd(16)} ${r.mode.padEnd(15)} ${
    `${r.samples}x${r.newChars}`.padStart(6)
  } chars ${r.seconds.toFixed(2).padStart(7)} s ${cps.padStart(7)} chars/s`;
}

/** The closing summary: speed-ups against "before" and the two targets. */
export function summarize(rows: SamplingCase[]): string[] {
  const lines: string[] = [];
  const find = (config: string, c: string, mode: string) =>
    rows.find((r) => r.config.startsWith(config) && r.case === c && r.mode === mode);
  for (const config of ["lecture", "nanogpt-char"]) {
    for (const c of ["short prompt", "long generation"]) {
      const before = find(config, c, "before"), after = find(config, c, "cache, GPU");
      if (before && after) {
        lines.push(
          `${config} ${c}: ${rate(before.charsPerSec)} -> ${rate(after.charsPerSec)} chars/s (${
            (after.charsPerSec / before.charsPerSec).toFixed(1)
          }x)`,
        );
      }
    }
  }
  const one = find("lecture", "long generation", "cache, GPU"),
    eight = find("lecture", "8 samples", "cache, GPU");
  if (one && eight) {
    lines.push(
      `lecture: one ${one.newChars}-char sample ${one.seconds.toFixed(2)} s (target >= 300 chars/s: ${
        one.charsPerSec >= 300 ? "met" : "not met"
      }); 8 samples ${eight.seconds.toFixed(2)} s = ${
        (eight.seconds / one.seconds).toFixed(2)
      }x (target < 2x: ${eight.seconds < 2 * one.seconds ? "met" : "not met"})`,
    );
  }
  return lines;
}

const USAGE = `Sampling speed (chars/s) of GPT decoding, before/after the KV cache and GPU sampling.

Usage: deno run --allow-read=. --allow-write=. --allow-env bench/sampling.ts [flags]`;

const FLAGS: FlagSpec[] = [
  { name: "quick", type: "boolean", default: false, help: "shorter generations, one round (a smoke run)" },
  {
    name: "rounds",
    type: "string",
    help: `timed runs per case, the median reported (default ${DEFAULT_ROUNDS}; 1 with --quick)`,
  },
  { name: "json", type: "string", help: "also write the rows as JSON to this file" },
  {
    name: "config",
    type: "string",
    help: "lecture,nanogpt-char (default: the character models) or gpt2 (GPT-2 small, greedy)",
  },
  { name: "gpt2-layers", type: "string", help: "--config gpt2: layers (default 12, GPT-2 small)" },
  {
    name: "gpt2-embd",
    type: "string",
    help:
      "--config gpt2: width, a multiple of 64 (default 768; smaller fits the token embedding in one binding)",
  },
  { name: "no-torch", type: "boolean", default: false, help: "--config gpt2: skip the PyTorch reference" },
  KERNELS_FLAG,
];

/** PyTorch's GPT-2 greedy decode with a KV cache (bench/torch_ref.py --gpt2-decode), or why not. */
async function torchGpt2(shape: Gpt2Shape, newTokens: number): Promise<Record<string, unknown>> {
  const script = new URL("./torch_ref.py", import.meta.url).pathname;
  const args = [script, "--gpt2-decode", "--prompt", `${GPT2_PROMPT}`];
  args.push("--n-layer", `${shape.nLayer}`, "--n-embd", `${shape.nEmbd}`, "--n-head", `${shape.nHead}`);
  const errs: string[] = [];
  for (const python of ["python3", "/usr/bin/python3"]) {
    try {
      const r = await new Deno.Command(python, {
        args: [...args, "--new-tokens", `${newTokens}`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      if (r.success) return JSON.parse(new TextDecoder().decode(r.stdout).trim().split("\n").pop()!);
      errs.push(`${python}: ${new TextDecoder().decode(r.stderr).trim().split("\n").pop()}`);
    } catch (e) {
      errs.push(`${python}: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}`);
    }
  }
  return { error: errs.join("; ") };
}

async function main(): Promise<void> {
  const { values: v } = parseFlags(Deno.args, FLAGS, USAGE);
  const json = v.json as string | undefined;
  if (json) await ensureOutputFile(json, "--json", `--allow-read=${json} --allow-write=${json}`);
  const rt = await createRuntime({ kernels: kernelsChoice(v.kernels) });
  console.log(`adapter   ${rt.describe()}`);
  const rounds = v.rounds === undefined ? undefined : intFlag(v.rounds, "rounds", { min: 1, max: 100 });
  const config = (v.config as string | undefined) ?? "lecture,nanogpt-char";
  if (config !== "gpt2" && config !== "lecture,nanogpt-char") {
    throw new Error(`--config: gpt2 or lecture,nanogpt-char, not ${config}`);
  }
  let gpt2: Gpt2Shape | undefined;
  if (config === "gpt2") {
    const layers = v["gpt2-layers"], embd = v["gpt2-embd"];
    const nEmbd = embd === undefined ? GPT2_124M.nEmbd : intFlag(embd, "gpt2-embd", { min: 64, max: 1600 });
    if (nEmbd % 64) throw new Error("--gpt2-embd: a multiple of 64");
    gpt2 = {
      nLayer: layers === undefined ? GPT2_124M.nLayer : intFlag(layers, "gpt2-layers", { min: 1, max: 48 }),
      nEmbd,
      nHead: nEmbd / 64,
    };
  }
  const rows = await benchSampling(rt, { quick: !!v.quick, rounds, gpt2, log: (l) => console.log(l) });
  for (const l of summarize(rows)) console.log(l);
  let torch: Record<string, unknown> | null = null;
  if (gpt2 && !v["no-torch"]) {
    torch = await torchGpt2(gpt2, rows[0].newChars);
    const tps = torch.tokens_per_s as number | undefined;
    console.log(
      tps === undefined
        ? `PyTorch reference: ${torch.error}`
        : `PyTorch eager GPT-2 (KV cache, CPU, ${torch.threads} threads): ${rate(tps)} tokens/s; ours ${
          rate(rows[0].charsPerSec)
        } tokens/s = ${(rows[0].charsPerSec / tps).toFixed(2)}x (target >= 0.5x)`,
    );
  }
  if (json) {
    await atomicWrite(
      json,
      JSON.stringify({ adapter: rt.describe(), sampling: rows, ...(torch ? { torch } : {}) }, null, 2) + "\n",
    );
  }
  rt.destroy();
}

if (import.meta.main) runMain(main);
