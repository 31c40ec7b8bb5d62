// deno task bench — how fast is a training step on this adapter, and why: the reference (lecture)
// config and nanoGPT's shakespeare-char config, on one kernel family (--kernels).
//
// Per config (bench/step.ts): ms/step (median of --steps synced steps after warm-up), tokens/s,
// achieved GFLOP/s (analytic FLOP count), dispatches and submits per step, the workgroup sizes used,
// the forward / backward / optimizer split and a per-kernel table from timestamp queries, the
// allocation counters of steady-state steps (must all be 0), and — when `python3 -c "import torch"`
// works — the same step in PyTorch on the CPU. Then a matmul micro-benchmark (the adapter's matmul
// ceiling: the cpu family's window and storage kernels and the gpu family's tiled one), the matmul
// tuning table (for every shape class of each config's step, every gpu-family variant's GFLOP/s on
// this adapter and the winner, ops/matmul/tune.ts) and a summary table. `--json FILE` writes it all.

import type { Runtime } from "./ops/runtime.ts";
import { isCpuAdapter } from "./ops/runtime.ts";
import { createRuntime } from "./lib/backend.ts";
import { Tensor } from "./ops/tensor.ts";
import {
  DEFAULT_VARIANT,
  matmul,
  MATMUL_VARIANTS,
  type MatmulKernel,
  type TuneResult,
} from "./ops/matmul.ts";
import { candidates, GL_MAX_ARRAY_VEC4, shapeClass } from "./ops/matmul/variants.ts";
import { timeCandidates } from "./ops/matmul/tune.ts";
import { installTuner } from "./lib/tune_cache.ts";
import { Rng } from "./lib/rng.ts";
import {
  choiceFlag,
  ensureOutputFile,
  type FlagSpec,
  intFlag,
  KERNELS_FLAG,
  kernelsChoice,
  parseFlags,
  runMain,
  TUNE_FLAG,
  tuneChoice,
} from "./lib/cli.ts";
import { atomicWrite } from "./lib/fsutil.ts";
import { checkGptTraining, fmtBytes, MEMORY_KINDS } from "./models/memory.ts";
import {
  BENCH_CONFIGS,
  benchStep,
  median,
  presetSettings,
  type StepBench,
  stepProducts,
  type StepSettings,
} from "./bench/step.ts";
import { benchSampling, type SamplingCase, summarize } from "./bench/sampling.ts";

export { stepFlops } from "./bench/step.ts";

const USAGE = `Benchmark one training step of the GPT (WebGPU) at each config, and the matmul kernels.

Usage: deno task bench [flags]`;

const FLAGS: FlagSpec[] = [
  {
    name: "config",
    type: "string",
    default: "lecture,nanogpt-char",
    help:
      "configs to measure, comma-separated: lecture | nanogpt-char (model and optimizer settings) | gpt2 (GPT-2 124M, random weights, batch 1, block 1024 where its step fits the bindings, else 128)",
  },
  KERNELS_FLAG,
  TUNE_FLAG,
  {
    name: "no-tuning",
    type: "boolean",
    default: false,
    help: "skip the matmul tuning table (every gpu-family variant on every shape class of each config)",
  },
  {
    name: "tuning-variants",
    type: "string",
    help: "the tuning table times only these variants, comma-separated names (default: every candidate)",
  },
  {
    name: "steps",
    type: "string",
    help: "timed steps, median reported (default 20; nanogpt-char on a CPU adapter: 2)",
  },
  {
    name: "warmup",
    type: "string",
    help:
      "untimed steps first, the first compiles every pipeline (default 3; nanogpt-char on a CPU adapter: 1)",
  },
  {
    name: "profile-steps",
    type: "string",
    help: "steps timed per kernel with timestamp queries (default 3; nanogpt-char on a CPU adapter: 1)",
  },
  {
    name: "time-budget",
    type: "string",
    default: "120",
    help:
      "seconds of timed and back-to-back steps per config, and of PyTorch's, at most (at least one step is timed)",
  },
  {
    name: "batch-size",
    type: "string",
    help: "sequences per micro-batch (default: the config's, 64; nanogpt-char on a CPU adapter: 4)",
  },
  { name: "grad-accum", type: "string", default: "1", help: "micro-batches per step" },
  {
    name: "mm-kernels",
    type: "string",
    default: "window,storage,tiled",
    help: 'kernels in the matmul micro-benchmark: window, storage (cpu family), tiled (gpu) ("" skips it)',
  },
  { name: "no-torch", type: "boolean", default: false, help: "skip the PyTorch comparison" },
  {
    name: "torch-device",
    type: "string",
    default: "cpu",
    help: "device of the PyTorch comparison: cpu | cuda",
  },
  { name: "torch-steps", type: "string", help: "PyTorch timed steps (default: --steps)" },
  {
    name: "sampling",
    type: "boolean",
    default: false,
    help: "also time sampling (chars/s, before/after the KV cache; bench/sampling.ts)",
  },
  { name: "json", type: "string", help: "also write every result as JSON to this file" },
];

function fmt(x: number, d = 1): string {
  return Number.isFinite(x) ? x.toFixed(d) : String(x);
}

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + " ".repeat(n - s.length);
}

function lpad(s: string, n: number): string {
  return s.length >= n ? s : " ".repeat(n - s.length) + s;
}

async function timeMatmuls(
  rt: Runtime,
  kernels: MatmulKernel[],
): Promise<{ shape: string; kernel: MatmulKernel; ms: number; gflops: number }[]> {
  const shapes: [string, number, number, number, boolean, boolean][] = [
    ["square 256", 256, 256, 256, false, false],
    ["square 512", 512, 512, 512, false, false],
    ["qkv fwd", 2048, 192, 64, false, true],
    ["fc fwd", 2048, 256, 64, false, true],
    ["mlp proj fwd", 2048, 64, 256, false, true],
    ["fc dx", 2048, 64, 256, false, false],
    ["mlp proj dx", 2048, 256, 64, false, false],
    ["fc dW", 256, 64, 2048, true, false],
    ["mlp proj dW", 64, 256, 2048, true, false],
    ["attn proj dW", 64, 64, 2048, true, false],
  ];
  const rng = new Rng(7);
  const out: { shape: string; kernel: MatmulKernel; ms: number; gflops: number }[] = [];
  for (const [label, M, N, K, transA, transB] of shapes) {
    const A = Tensor.from(rt, rng.uniformArray(M * K, -1, 1)),
      B = Tensor.from(rt, rng.uniformArray(K * N, -1, 1));
    const C = Tensor.empty(rt, [M * N]);
    const flops = 2 * M * N * K;
    for (const kernel of kernels) {
      const run = () => matmul(rt, A, B, C, M, N, K, { transA, transB, kernel });
      run();
      await rt.sync(); // compile
      // Enough calls per wait that the ~10 ms latency of one host wait stays a few percent.
      const reps = Math.max(3, Math.min(200, Math.ceil(1.5e9 / flops)));
      const ts: number[] = [];
      for (let r = 0; r < 5; r++) {
        const t0 = performance.now();
        for (let i = 0; i < reps; i++) run();
        await rt.sync();
        ts.push((performance.now() - t0) / reps);
      }
      const ms = median(ts);
      out.push({
        shape: `${label} ${transA ? "T" : "N"}${transB ? "T" : "N"} ${M}x${N}x${K}`,
        kernel,
        ms,
        gflops: flops / ms / 1e6,
      });
    }
  }
  return out;
}

/**
 * The tuning table: every shape class of each config's step (the gpu family's products), every
 * candidate variant timed on it (ops/matmul/tune.ts timeCandidates, the tuner's own measurement) and
 * the winner, printed as it goes.
 */
async function tuningTable(
  rt: Runtime,
  configs: StepSettings[],
  reps: number,
  only: string[] | null,
): Promise<TuneResult[]> {
  const out: TuneResult[] = [];
  const seen = new Set<string>();
  const gl = rt.backendName().startsWith("gl");
  console.log(
    `\nmatmul tuning: every gpu-family variant on each shape class of the step, GFLOP/s (${
      rt.hasTimestamps ? "timestamp queries" : "whole submits"
    }, median of ${reps}); today's kernel is ${DEFAULT_VARIANT.name}${
      gl ? `; GL: only variants with workgroup arrays of at most ${GL_MAX_ARRAY_VEC4} vec4` : ""
    }`,
  );
  for (const s of configs) {
    for (const p of await stepProducts(rt, s)) {
      if (seen.has(shapeClass(p))) continue;
      seen.add(shapeClass(p));
      const cands = candidates(p, rt.device.limits, gl ? GL_MAX_ARRAY_VEC4 : Infinity)
        .filter((v) => !only || only.includes(v.name));
      const r = await timeCandidates(rt, p, cands, reps);
      out.push(r);
      const today = r.candidates.find((c) => c.variant === DEFAULT_VARIANT.name);
      const win = r.candidates.find((c) => c.variant === r.winner)!;
      console.log(
        `${r.shape} [${s.preset}]: ${r.winner} ${fmt(win.gflops, 2)} GFLOP/s` +
          (today ? ` (today's ${fmt(today.gflops, 2)}, x${fmt(win.gflops / today.gflops, 2)})` : ""),
      );
      console.log(`    ${r.candidates.map((c) => `${c.variant} ${fmt(c.gflops, 2)}`).join(" | ")}`);
    }
  }
  return out;
}

/** The same step in PyTorch (bench/torch_ref.py), when `python3 -c "import torch"` works. */
async function torchRef(
  steps: number,
  s: StepSettings,
  device: "cpu" | "cuda",
  timeBudgetS: number,
): Promise<{ python: string; result?: Record<string, number | string>; error?: string }> {
  const script = new URL("./bench/torch_ref.py", import.meta.url).pathname;
  const errs: string[] = [];
  for (const python of ["python3", "/usr/bin/python3"]) {
    try {
      const probe = await new Deno.Command(python, {
        args: ["-c", "import torch"],
        stdout: "null",
        stderr: "piped",
      })
        .output();
      if (!probe.success) {
        errs.push(`${python}: ${new TextDecoder().decode(probe.stderr).trim().split("\n").pop()}`);
        continue;
      }
      const r = await new Deno.Command(python, {
        args: [script, ...torchArgs(steps, s, device, timeBudgetS)],
        stdout: "piped",
        stderr: "piped",
      }).output();
      if (!r.success) return { python, error: new TextDecoder().decode(r.stderr).trim().slice(-500) };
      return { python, result: JSON.parse(new TextDecoder().decode(r.stdout).trim().split("\n").pop()!) };
    } catch (e) {
      errs.push(`${python}: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}`);
    }
  }
  return { python: "", error: errs.join("; ") || "no python3" };
}

/** bench/torch_ref.py's arguments for the step of `s`. */
export function torchArgs(
  steps: number,
  s: StepSettings,
  device: "cpu" | "cuda",
  timeBudgetS: number,
): string[] {
  const { cfg } = s;
  const a: [string, number | string][] = [
    ["steps", steps],
    ["time-budget", timeBudgetS],
    ["device", device],
    ["threads", 2],
    ["batch", s.gradAccum * s.batch],
    ["block", cfg.blockSize],
    ["n-embd", cfg.nEmbd],
    ["n-head", cfg.nHead],
    ["n-layer", cfg.nLayer],
    ["vocab", cfg.vocabSize],
    ["dropout", cfg.dropout],
    ["lr", s.lr],
    ["beta2", s.opt.beta2],
    ["weight-decay", s.opt.weightDecay],
    ["decay-params", s.opt.decayParams],
    ["grad-clip", s.opt.gradClip],
  ];
  return a.flatMap(([k, x]) => [`--${k}`, String(x)]);
}

/** Print one config's step results (the lines the bench has always printed). */
function report(r: StepBench): void {
  const { step, alloc, profile } = r;
  console.log(
    `step      ${fmt(r.msPerStep)} ms median of ${step.timedSteps} (min ${fmt(step.msMin)}, p90 ${
      fmt(step.msP90)
    }; first step ${fmt(step.firstStepMs, 0)} ms incl. compiles; ${
      Number.isFinite(step.pipelinedMs)
        ? `${fmt(step.pipelinedMs)} ms/step back-to-back`
        : "no back-to-back steps under 3 timed ones"
    })`,
  );
  console.log(
    `          ${fmt(step.tokensPerSec, 0)} tokens/s; loss ${fmt(step.loss, 4)}; one host wait ` +
      `(onSubmittedWorkDone) alone takes ${fmt(step.syncMs)} ms and is part of every synced step`,
  );
  const f = step.flops;
  console.log(
    `FLOPs     ${fmt(f.total / 1e9, 3)} GFLOP/step (matmuls ${fmt(f.matmul / 1e9, 3)}, attention ` +
      `${fmt(f.attention / 1e9, 3)}; elementwise not counted) -> ${fmt(step.gflops, 2)} GFLOP/s achieved`,
  );
  console.log(
    `memory    planned: ${MEMORY_KINDS.map((k) => `${k} ${fmtBytes(r.planned[k])}`).join(", ")}; total ${
      fmtBytes(r.planned.total)
    }`,
  );
  console.log(
    `work      ${r.dispatchesPerStep} dispatches (${r.family} kernels, ${r.workgroupSizes.min}..${r.workgroupSizes.max} ` +
      `invocations per workgroup), ${fmt(step.submitsPerStep, 0)} submits, ${
        fmt(step.readbacksPerStep, 0)
      } readbacks per step`,
  );
  const allocOk = Object.values(alloc).every((n) => n === 0);
  console.log(
    `allocs    after the first step: ${alloc.buffers} buffers, ${alloc.bindGroups} bind groups, ` +
      `${alloc.pipelines} pipelines, ${alloc.uniforms} uniform buffers created ${
        allocOk ? "(ok)" : "(EXPECTED 0)"
      }`,
  );
  if (!profile) {
    console.log(`GPU time  per-kernel timing unavailable (${r.noProfile})`);
    return;
  }
  const { kernelMs, phases } = profile;
  const pct = (x: number) => `${fmt((100 * x) / kernelMs, 0)}%`;
  console.log(
    `GPU time  ${fmt(kernelMs)} ms/step in kernels (timestamp queries, one pass per dispatch, ` +
      `mean of ${profile.steps} steps): forward ${fmt(phases.forward)} (${pct(phases.forward)}), ` +
      `backward ${fmt(phases.backward)} (${pct(phases.backward)}), optimizer ${fmt(phases.optimizer)} ` +
      `(${pct(phases.optimizer)}); step median minus kernel time: ${fmt(r.msPerStep - kernelMs)} ms ` +
      `(host recording, copies, per-dispatch overhead, the host wait; measured in separate steps)`,
  );
  console.log(`\n${pad("kernel family", 28)}${lpad("calls", 7)}${lpad("ms/step", 10)}${lpad("share", 7)}`);
  for (const k of profile.families) {
    console.log(`${pad(k.name, 28)}${lpad(fmt(k.calls, 0), 7)}${lpad(fmt(k.ms), 10)}${lpad(pct(k.ms), 7)}`);
  }
  console.log(
    `\n${pad("top kernels", 28)}${lpad("calls", 7)}${lpad("ms/step", 10)}${lpad("share", 7)}${
      lpad("ms/call", 9)
    }`,
  );
  for (const k of profile.kernels.slice(0, 20)) {
    console.log(
      `${pad(k.name, 28)}${lpad(fmt(k.calls, 0), 7)}${lpad(fmt(k.ms), 10)}${lpad(pct(k.ms), 7)}` +
        `${lpad(fmt(k.ms / k.calls, 2), 9)}`,
    );
  }
}

async function main(): Promise<void> {
  const { values: v, given } = parseFlags(Deno.args, FLAGS, USAGE);
  const presets = (v.config as string).split(",").filter((c) => c)
    .map((c) => choiceFlag(c, "config", BENCH_CONFIGS));
  if (!presets.length) choiceFlag("", "config", BENCH_CONFIGS);
  const kernels = kernelsChoice(v.kernels);
  const opt = (k: string, max: number, min = 0) =>
    v[k] === undefined ? undefined : intFlag(v[k], k, { min, max });
  const stepsFlag = opt("steps", 100_000, 1), warmupFlag = opt("warmup", 100_000, 1);
  const profileFlag = opt("profile-steps", 1000), batchFlag = opt("batch-size", 4096, 1);
  const timeBudgetS = intFlag(v["time-budget"], "time-budget", { min: 1, max: 86_400 });
  const accum = intFlag(v["grad-accum"], "grad-accum", { min: 1, max: 1024 });
  const mmKernels = (v["mm-kernels"] as string).split(",").filter((s) => s)
    .map((k) => choiceFlag(k, "mm-kernels", ["window", "storage", "tiled"] as const));
  const torchStepsFlag = opt("torch-steps", 100_000, 1);
  const torchDevice = choiceFlag(v["torch-device"], "torch-device", ["cpu", "cuda"] as const);
  const json = v.json as string | undefined;
  if (json) {
    await ensureOutputFile(
      json,
      "--json",
      `--allow-read=${json} --allow-write=${json} (deno task bench allows . )`,
    );
  }

  const tune = tuneChoice(v.tune);
  const only = v["tuning-variants"] === undefined
    ? null
    : (v["tuning-variants"] as string).split(",").map((x) => x.trim()).filter((x) => x)
      .map((x) => choiceFlag(x, "tuning-variants", MATMUL_VARIANTS.map((m) => m.name)));
  const rt = await createRuntime({ timestamps: true, kernels });
  await installTuner(rt, tune, (l) => console.log(l));
  const info = rt.adapter.info;
  const cpuAdapter = isCpuAdapter(info);
  const adapter = {
    description: info.description || info.vendor || "unknown",
    vendor: info.vendor,
    backend: rt.backendName(),
    fallback: info.isFallbackAdapter,
    cpuAdapter,
    timestamps: rt.hasTimestamps,
    family: rt.kernels,
  };
  console.log(`adapter: ${rt.describe()}`);
  console.log(
    `          fallback adapter: ${adapter.fallback ? "yes" : "no"}; CPU adapter: ${
      cpuAdapter ? "yes" : "no"
    }; ` +
      `timestamp-query: ${adapter.timestamps ? "yes" : "no"}`,
  );

  // ---------------------------------------------------------------- the training step, per config
  const runs: {
    name: string;
    settings: StepSettings;
    note: string;
    result: StepBench;
    torch: Awaited<ReturnType<typeof torchRef>> | null;
  }[] = [];
  for (const name of presets) {
    // nanoGPT's config is GPU work: on a CPU adapter it runs at batch 4 for a few steps.
    const gpt2 = name === "gpt2";
    const small = (name === "nanogpt-char" && cpuAdapter) || gpt2;
    let settings = presetSettings(name, {
      batch: batchFlag ?? (small && !gpt2 ? 4 : undefined),
      gradAccum: accum,
    });
    const o = {
      steps: stepsFlag ?? (small ? 2 : 20),
      warmup: warmupFlag ?? (small ? 1 : 3),
      profileSteps: profileFlag ?? (small ? 1 : 3),
      timeBudgetS,
    };
    let note = small && !gpt2 && !given.has("batch-size")
      ? "CPU adapter: nanogpt-char at batch 4 (not 64) and few steps, so the bench finishes in minutes"
      : "";
    if (gpt2) {
      // GPT-2 124M at block 1024 when its step fits the adapter's bindings, else at block 128.
      const { cfg } = settings;
      try {
        checkGptTraining(rt, cfg, settings.batch, accum, "adamw", settings.opt);
      } catch (e) {
        settings = presetSettings(name, { batch: settings.batch, gradAccum: accum, cfg: { blockSize: 128 } });
        note = `block 128, not 1024: ${e instanceof Error ? e.message : e}`;
      }
    }
    const { cfg, opt: a } = settings;
    console.log(
      `\n${name} GPT: vocab ${cfg.vocabSize}, n_embd ${cfg.nEmbd}, ${cfg.nHead} heads, ${cfg.nLayer} layers, ` +
        `block ${cfg.blockSize}, batch ${settings.batch} x ${accum} micro-batches, dropout ${cfg.dropout}, ` +
        `AdamW (beta2 ${a.beta2}, weight decay ${a.weightDecay} on ${a.decayParams}, grad clip ${
          a.gradClip || "off"
        }); ` +
        `${rt.kernels} kernels`,
    );
    if (note) console.log(`note      ${note}`);
    const result = await benchStep(rt, settings, o);
    report(result);
    let torch: Awaited<ReturnType<typeof torchRef>> | null = null;
    if (gpt2) console.log("PyTorch   not run for gpt2 (bench/torch_ref.py runs the presets)");
    else if (!v["no-torch"]) {
      const torchSteps = torchStepsFlag ?? o.steps;
      torch = await torchRef(torchSteps, settings, torchDevice, timeBudgetS);
      if (torch.result) {
        const tms = Number(torch.result.ms_per_step_median), ms = result.msPerStep;
        console.log(
          `PyTorch   ${torch.result.torch} ${torchDevice.toUpperCase()}, ${torch.result.threads} threads, BLAS ${torch.result.blas} ` +
            `(${torch.python}): ${fmt(tms)} ms/step median of ${torchSteps}; ratio torch/webgpu ${
              fmt(tms / ms, 2)
            } (${tms >= ms ? `WebGPU ${fmt(tms / ms, 2)}x faster` : `PyTorch ${fmt(ms / tms, 2)}x faster`})`,
        );
      } else {
        console.log(`PyTorch   not available: ${torch.error}`);
      }
    }
    runs.push({ name, settings, note, result, torch });
  }

  // ---------------------------------------------------------------- matmul micro-benchmark
  let mm: Awaited<ReturnType<typeof timeMatmuls>> = [];
  let ceiling = NaN;
  const ref = runs[0].result.step;
  if (mmKernels.length) {
    mm = await timeMatmuls(rt, mmKernels);
    console.log(`\nmatmul micro-benchmark (wall clock incl. staging copies, median of 5)`);
    console.log(
      `${pad("shape", 36)}${mmKernels.map((k) => lpad(`${k} ms`, 12) + lpad("GFLOP/s", 9)).join("")}`,
    );
    for (const shape of [...new Set(mm.map((r) => r.shape))]) {
      const cells = mmKernels.map((k) => {
        const r = mm.find((x) => x.shape === shape && x.kernel === k)!;
        return lpad(fmt(r.ms, 2), 12) + lpad(fmt(r.gflops, 2), 9);
      });
      console.log(`${pad(shape, 36)}${cells.join("")}`);
    }
    ceiling = Math.max(...mm.map((r) => r.gflops));
    console.log(
      `ceiling   ${fmt(ceiling, 2)} GFLOP/s (best matmul above); the ${runs[0].name} step reaches ` +
        `${fmt(ref.gflops, 2)} = ${fmt((100 * ref.gflops) / ceiling, 0)}% of it; at the ceiling ` +
        `its ${fmt(ref.flops.total / 1e9, 2)} GFLOP would take ${fmt(ref.flops.total / ceiling / 1e6)} ms`,
    );
  }

  let tuning: TuneResult[] = [];
  // (Not over GPT-2 124M's shape classes: minutes per variant on a CPU adapter.)
  const tuned = runs.filter((r) => r.name !== "gpt2").map((r) => r.settings);
  if (!v["no-tuning"] && tuned.length) tuning = await tuningTable(rt, tuned, cpuAdapter ? 3 : 5, only);

  let sampling: SamplingCase[] | null = null;
  if (v.sampling) {
    console.log("\nsampling (random-init weights, temperature 0.8; bench/sampling.ts)");
    sampling = await benchSampling(rt, { log: (l) => console.log(l) });
    for (const l of summarize(sampling)) console.log(l);
  }

  // ---------------------------------------------------------------- summary
  console.log(`\nsummary (${adapter.description}, ${rt.kernels} kernels)`);
  console.log(
    `${pad("config", 14)}${lpad("batch", 6)}${lpad("ms/step", 10)}${lpad("dispatches", 12)}${
      lpad("workgroup", 12)
    }` +
      `${lpad("GFLOP/s", 9)}${lpad("torch ms", 10)}`,
  );
  for (const r of runs) {
    const t = r.torch?.result ? fmt(Number(r.torch.result.ms_per_step_median)) : "-";
    const w = r.result.workgroupSizes;
    console.log(
      `${pad(r.name, 14)}${lpad(String(r.settings.batch), 6)}${lpad(fmt(r.result.msPerStep), 10)}` +
        `${lpad(String(r.result.dispatchesPerStep), 12)}${lpad(`${w.min}..${w.max}`, 12)}` +
        `${lpad(fmt(r.result.step.gflops, 2), 9)}${lpad(t, 10)}`,
    );
  }

  if (json) {
    const first = runs[0];
    const fs = first.settings;
    const result = {
      adapter,
      // The first config's results under the fields the bench has always written.
      config: {
        preset: first.name,
        ...fs.cfg,
        batch: fs.batch,
        gradAccum: fs.gradAccum,
        optimizer: "adamw",
        ...fs.opt,
        kernels: rt.kernels,
      },
      step: first.result.step,
      alloc: first.result.alloc,
      profile: first.result.profile,
      matmul: { results: mm, ceilingGflops: ceiling, stepOverCeiling: ref.gflops / ceiling },
      // Per shape class of the steps: every gpu-family variant's GFLOP/s and the fastest.
      tuning: tuning.map((t) => ({
        shape: t.shape,
        candidates: t.candidates.map((c) => ({ variant: c.variant, gflops: c.gflops, ms: c.ms })),
        winner: t.winner,
      })),
      tune,
      torch: first.torch,
      sampling,
      family: rt.kernels,
      // Every config measured (see README, "Reading the bench JSON").
      configs: runs.map((r) => ({
        name: r.name,
        config: r.settings.cfg,
        training: {
          batch: r.settings.batch,
          gradAccum: r.settings.gradAccum,
          lr: r.settings.lr,
          ...r.settings.opt,
        },
        family: r.result.family,
        dispatchesPerStep: r.result.dispatchesPerStep,
        msPerStep: r.result.msPerStep,
        workgroupSizes: r.result.workgroupSizes,
        kernels: r.result.kernels,
        step: r.result.step,
        alloc: r.result.alloc,
        profile: r.result.profile,
        torch: r.torch,
        note: r.note,
      })),
    };
    await atomicWrite(json, JSON.stringify(result, null, 2) + "\n");
    console.log(`\nwrote ${json}`);
  }
  rt.destroy();
}

if (import.meta.main) runMain(main);
