// Sampling speed: characters/s of GPT decoding at the lecture config and nanoGPT's shakespeare-char
// config (random-init weights: speed does not depend on them), for a prompt shorter than block_size
// and for a long generation, with the KV cache and GPU sampling on and off, and "before" (today's
// crop-and-recompute path, GPT.generateRecompute, as of commit b37abb4), all in the same run.
//
//   deno run --allow-read=. --allow-write=. --allow-env bench/sampling.ts [--json FILE] [--quick]
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
  charsPerSec: number; // all samples' characters / seconds
}

const NANOGPT_CHAR: Omit<GPTConfig, "vocabSize"> = {
  nEmbd: 384,
  nHead: 6,
  nLayer: 6,
  blockSize: 256,
  dropout: 0.2,
};

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
): Promise<number> {
  const opts = { temperature: 0.8, seed: 1 };
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
  cases: { name: string; prompt: number; chars: (m: Mode) => number; samples: number; modes: Mode[] }[];
}

function plans(quick: boolean): Plan[] {
  const lecture: GPTConfig = { vocabSize: 65, ...GPT_REFERENCE };
  const nano: GPTConfig = { vocabSize: 65, ...NANOGPT_CHAR };
  const recompute = (m: Mode) => m === "before" || m.startsWith("no cache");
  return [
    {
      config: "lecture (C64 L4 H4 T32)",
      cfg: lecture,
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
  opts: { quick?: boolean; rounds?: number; log?: (line: string) => void } = {},
): Promise<SamplingCase[]> {
  const rounds = opts.rounds ?? (opts.quick ? 1 : DEFAULT_ROUNDS);
  const out: SamplingCase[] = [];
  for (const plan of plans(!!opts.quick)) {
    const model = new GPT(rt, plan.cfg, 1337);
    for (const c of plan.cases) {
      const prompt = Array.from({ length: c.prompt }, (_, i) => (i * 7 + 1) % plan.cfg.vocabSize);
      for (const mode of c.modes) {
        const n = c.chars(mode);
        const seconds = await timeRun(model, mode, prompt, n, c.samples, rounds);
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
  KERNELS_FLAG,
];

async function main(): Promise<void> {
  const { values: v } = parseFlags(Deno.args, FLAGS, USAGE);
  const json = v.json as string | undefined;
  if (json) await ensureOutputFile(json, "--json", `--allow-read=${json} --allow-write=${json}`);
  const rt = await createRuntime({ kernels: kernelsChoice(v.kernels) });
  console.log(`adapter   ${rt.describe()}`);
  const rounds = v.rounds === undefined ? undefined : intFlag(v.rounds, "rounds", { min: 1, max: 100 });
  const rows = await benchSampling(rt, { quick: !!v.quick, rounds, log: (l) => console.log(l) });
  for (const l of summarize(rows)) console.log(l);
  if (json) {
    await atomicWrite(json, JSON.stringify({ adapter: rt.describe(), sampling: rows }, null, 2) + "\n");
  }
  rt.destroy();
}

if (import.meta.main) runMain(main);
