// deno task bench — how fast is a training step of the reference GPT on this adapter, and why.
//
// Prints the adapter, ms/step (median of --steps synced steps after warm-up), tokens/s, achieved
// GFLOP/s (analytic FLOP count), dispatches and submits per step, the forward / backward / optimizer
// split and a per-kernel table from timestamp queries, a matmul micro-benchmark (the adapter's matmul
// ceiling, window kernel vs the storage kernel), the allocation counters of steady-state steps (must
// all be 0), and — when `python3 -c "import torch"` works — the same step in PyTorch on the CPU.

import type { Runtime } from "./ops/runtime.ts";
import { createRuntime } from "./lib/backend.ts";
import { Tensor } from "./ops/tensor.ts";
import { matmul, type MatmulKernel } from "./ops/matmul.ts";
import { GPT, GPT_REFERENCE, type GPTConfig } from "./models/gpt.ts";
import { type DecayParams, Optimizer } from "./models/common.ts";
import { Rng } from "./lib/rng.ts";
import { choiceFlag, ensureOutputFile, type FlagSpec, intFlag, parseFlags, runMain } from "./lib/cli.ts";
import { atomicWrite } from "./lib/fsutil.ts";
import { PRESETS } from "./train/config.ts";
import { GPTStep, type Phase } from "./train/step.ts";
import { benchSampling, type SamplingCase, summarize } from "./bench/sampling.ts";

const USAGE = `Benchmark one training step of the GPT (WebGPU) and the matmul kernels.

Usage: deno task bench [flags]`;

const FLAGS: FlagSpec[] = [
  {
    name: "config",
    type: "string",
    default: "lecture",
    help: "model and optimizer settings: lecture | nanogpt-char",
  },
  { name: "steps", type: "string", default: "20", help: "timed steps (median reported)" },
  {
    name: "warmup",
    type: "string",
    default: "3",
    help: "untimed steps first (the first compiles every pipeline)",
  },
  {
    name: "profile-steps",
    type: "string",
    default: "3",
    help: "steps timed per kernel with timestamp queries",
  },
  { name: "batch-size", type: "string", help: "sequences per micro-batch (default: the config's, 64)" },
  { name: "grad-accum", type: "string", default: "1", help: "micro-batches per step" },
  {
    name: "mm-kernels",
    type: "string",
    default: "window,storage,tiled",
    help: 'kernels in the matmul micro-benchmark: window, storage, tiled ("" skips it)',
  },
  { name: "no-torch", type: "boolean", default: false, help: "skip the PyTorch CPU comparison" },
  { name: "torch-steps", type: "string", help: "PyTorch timed steps (default: --steps)" },
  {
    name: "sampling",
    type: "boolean",
    default: false,
    help: "also time sampling (chars/s, before/after the KV cache; bench/sampling.ts)",
  },
  { name: "json", type: "string", help: "also write every result as JSON to this file" },
];

interface KernelRow {
  name: string;
  calls: number;
  ms: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.round(q * (s.length - 1))))];
}

/** Analytic FLOPs of one training step (multiply-add = 2). Elementwise ops are not counted. */
export function stepFlops(cfg: GPTConfig, B: number, T: number): { matmul: number; attention: number } {
  const N = B * T, C = cfg.nEmbd, V = cfg.vocabSize, L = cfg.nLayer;
  // Per block: qkv (C -> 3C), proj (C -> C), fc (C -> 4C), mlp proj (4C -> C): 2·N·C·12C forward.
  // Backward doubles it (dx and dW). The LM head is one more Linear (C -> V).
  const fwd = L * 24 * N * C * C + 2 * N * C * V;
  // Attention per block: Q·Kᵀ and P·V forward (2·B·T²·C each), four products of that size backward.
  const attention = L * 12 * B * T * T * C;
  return { matmul: 3 * fwd, attention };
}

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

async function torchRef(
  steps: number,
  batch: number,
  cfg: GPTConfig,
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
      const args = [
        script,
        "--steps",
        String(steps),
        "--threads",
        "2",
        "--batch",
        String(batch),
        "--block",
        String(cfg.blockSize),
        "--n-embd",
        String(cfg.nEmbd),
        "--n-head",
        String(cfg.nHead),
        "--n-layer",
        String(cfg.nLayer),
        "--vocab",
        String(cfg.vocabSize),
        "--dropout",
        String(cfg.dropout),
      ];
      const r = await new Deno.Command(python, { args, stdout: "piped", stderr: "piped" }).output();
      if (!r.success) return { python, error: new TextDecoder().decode(r.stderr).trim().slice(-500) };
      return { python, result: JSON.parse(new TextDecoder().decode(r.stdout).trim().split("\n").pop()!) };
    } catch (e) {
      errs.push(`${python}: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}`);
    }
  }
  return { python: "", error: errs.join("; ") || "no python3" };
}

async function main(): Promise<void> {
  const { values: v } = parseFlags(Deno.args, FLAGS, USAGE);
  const preset = PRESETS[choiceFlag(v.config, "config", Object.keys(PRESETS))];
  const setting = (k: string, def: string) => preset[k] ?? def;
  const steps = intFlag(v.steps, "steps", { min: 1, max: 100_000 });
  const warmup = intFlag(v.warmup, "warmup", { min: 1, max: 100_000 });
  const profileSteps = intFlag(v["profile-steps"], "profile-steps", { min: 0, max: 1000 });
  const B = intFlag(v["batch-size"] ?? setting("batch-size", "64"), "batch-size", { min: 1, max: 4096 });
  const accum = intFlag(v["grad-accum"], "grad-accum", { min: 1, max: 1024 });
  const mmKernels = (v["mm-kernels"] as string).split(",").filter((s) => s)
    .map((k) => choiceFlag(k, "mm-kernels", ["window", "storage", "tiled"] as const));
  const torchSteps = v["torch-steps"] === undefined
    ? steps
    : intFlag(v["torch-steps"], "torch-steps", { min: 1, max: 100_000 });
  const json = v.json as string | undefined;
  if (json) {
    await ensureOutputFile(
      json,
      "--json",
      `--allow-read=${json} --allow-write=${json} (deno task bench allows . )`,
    );
  }

  const rt = await createRuntime({ timestamps: true });
  const info = rt.adapter.info;
  const adapter = {
    description: info.description || info.vendor || "unknown",
    vendor: info.vendor,
    backend: rt.backendName(),
    fallback: info.isFallbackAdapter,
    timestamps: rt.hasTimestamps,
  };
  console.log(`adapter   ${adapter.description}`);
  console.log(
    `backend   ${adapter.backend}; fallback adapter: ${adapter.fallback ? "yes" : "no"}; ` +
      `timestamp-query: ${adapter.timestamps ? "yes" : "no"}`,
  );

  // ---------------------------------------------------------------- the training step
  const num = (k: string, def: number) => Number(setting(k, String(def)));
  const cfg: GPTConfig = {
    vocabSize: 65,
    nEmbd: num("n-embd", GPT_REFERENCE.nEmbd),
    nHead: num("n-head", GPT_REFERENCE.nHead),
    nLayer: num("n-layer", GPT_REFERENCE.nLayer),
    blockSize: num("block-size", GPT_REFERENCE.blockSize),
    dropout: num("dropout", GPT_REFERENCE.dropout),
  };
  const optOpts = {
    beta2: num("beta2", 0.999),
    weightDecay: num("weight-decay", 0.01),
    decayParams: setting("decay-params", "all") as DecayParams,
    gradClip: num("grad-clip", 0),
  };
  const T = cfg.blockSize;
  console.log(
    `\n${v.config} GPT: vocab ${cfg.vocabSize}, n_embd ${cfg.nEmbd}, ${cfg.nHead} heads, ${cfg.nLayer} layers, ` +
      `block ${T}, batch ${B} x ${accum} micro-batches, dropout ${cfg.dropout}, AdamW (beta2 ${optOpts.beta2}, ` +
      `weight decay ${optOpts.weightDecay} on ${optOpts.decayParams}, grad clip ${
        optOpts.gradClip || "off"
      }); ` +
      `kernels: ${rt.kernels}`,
  );
  const model = new GPT(rt, cfg, 1337);
  const opt = new Optimizer(rt, model.params, "adamw", num("lr", 1e-3), optOpts);
  // The training step of train.ts itself, on random ids.
  const trainStep = new GPTStep(rt, model, opt, B, accum, 1337);
  const acts = trainStep.acts;
  const rng = new Rng(1);
  const batch = () => {
    const x = new Uint32Array(B * T), y = new Uint32Array(B * T);
    for (let i = 0; i < x.length; i++) x[i] = rng.int(cfg.vocabSize), y[i] = rng.int(cfg.vocabSize);
    return { x, y };
  };
  /** Where each phase of the last recorded step began (dispatch counter values). */
  const marks: { phase: Phase; at: number }[] = [];
  let stepNo = 0;
  const record = () => {
    marks.length = 0;
    trainStep.record(
      ++stepNo,
      opt.lr,
      batch,
      undefined,
      (phase) => marks.push({ phase, at: rt.stats.dispatches }),
    );
    rt.submit();
  };

  let t0 = performance.now();
  record();
  await rt.sync();
  const firstStepMs = performance.now() - t0;
  const afterFirst = { ...rt.stats };
  for (let i = 1; i < warmup; i++) {
    record();
    await rt.sync();
  }
  const before = { ...rt.stats };
  const times: number[] = [];
  for (let i = 0; i < steps; i++) {
    t0 = performance.now();
    record();
    await rt.sync();
    times.push(performance.now() - t0);
  }
  const after = { ...rt.stats };
  // Back-to-back steps with one sync at the end (what train.ts does between loss readbacks).
  t0 = performance.now();
  const pipelinedSteps = Math.min(steps, 10);
  for (let i = 0; i < pipelinedSteps; i++) record();
  await rt.sync();
  const pipelinedMs = (performance.now() - t0) / pipelinedSteps;
  const loss = (await acts.loss.read())[0];

  // What one host wait (queue.onSubmittedWorkDone) costs on its own: part of every synced step.
  const waits: number[] = [];
  for (let i = 0; i < 5; i++) {
    t0 = performance.now();
    await rt.sync();
    waits.push(performance.now() - t0);
  }
  const syncMs = median(waits);
  const msStep = median(times);
  const flops = stepFlops(cfg, accum * B, T);
  const totalFlops = flops.matmul + flops.attention;
  const perStep = (k: keyof typeof after) => (after[k] - before[k]) / steps;
  const alloc = {
    buffers: after.buffersCreated - afterFirst.buffersCreated,
    bindGroups: after.bindGroupsCreated - afterFirst.bindGroupsCreated,
    pipelines: after.pipelinesCreated - afterFirst.pipelinesCreated,
    uniforms: after.uniformsCreated - afterFirst.uniformsCreated,
  };
  const step = {
    firstStepMs,
    msMedian: msStep,
    msMin: Math.min(...times),
    msP90: quantile(times, 0.9),
    msMean: times.reduce((a, b) => a + b, 0) / times.length,
    pipelinedMs,
    syncMs,
    tokensPerSec: (accum * B * T) / (msStep / 1000),
    flops: { ...flops, total: totalFlops },
    gflops: totalFlops / msStep / 1e6,
    dispatchesPerStep: perStep("dispatches"),
    submitsPerStep: perStep("submits"),
    readbacksPerStep: perStep("readbacks"),
    loss,
  };
  console.log(
    `step      ${fmt(msStep)} ms median of ${steps} (min ${fmt(step.msMin)}, p90 ${fmt(step.msP90)}; ` +
      `first step ${fmt(firstStepMs, 0)} ms incl. compiles; ${fmt(pipelinedMs)} ms/step back-to-back)`,
  );
  console.log(
    `          ${fmt(step.tokensPerSec, 0)} tokens/s; loss after ${stepNo} steps ${
      fmt(loss, 4)
    }; one host wait ` +
      `(onSubmittedWorkDone) alone takes ${fmt(syncMs)} ms and is part of every synced step`,
  );
  console.log(
    `FLOPs     ${fmt(totalFlops / 1e9, 3)} GFLOP/step (matmuls ${fmt(flops.matmul / 1e9, 3)}, attention ` +
      `${fmt(flops.attention / 1e9, 3)}; elementwise not counted) -> ${fmt(step.gflops, 2)} GFLOP/s achieved`,
  );
  console.log(
    `work      ${fmt(step.dispatchesPerStep, 0)} dispatches, ${fmt(step.submitsPerStep, 0)} submits, ` +
      `${fmt(step.readbacksPerStep, 0)} readbacks per step`,
  );
  const allocOk = Object.values(alloc).every((n) => n === 0);
  console.log(
    `allocs    after the first step: ${alloc.buffers} buffers, ${alloc.bindGroups} bind groups, ` +
      `${alloc.pipelines} pipelines, ${alloc.uniforms} uniform buffers created ${
        allocOk ? "(ok)" : "(EXPECTED 0)"
      }`,
  );

  // ---------------------------------------------------------------- per-kernel profile
  let profile: {
    steps: number;
    kernelMs: number;
    phases: { forward: number; backward: number; optimizer: number };
    kernels: KernelRow[];
    families: KernelRow[];
  } | null = null;
  // One timestamp pair per dispatch, in one query set of at most 4096 queries.
  const PROFILE_CAPACITY = 2048;
  const profilable = step.dispatchesPerStep <= PROFILE_CAPACITY;
  if (profileSteps > 0 && rt.hasTimestamps && profilable) {
    const rows = new Map<string, KernelRow>();
    const phases = { forward: 0, backward: 0, optimizer: 0 };
    for (let s = 0; s < profileSteps; s++) {
      rt.startProfile(PROFILE_CAPACITY);
      record();
      const k = await rt.stopProfile();
      const d0 = marks[0].at;
      k.forEach((x, i) => {
        const r = rows.get(x.name) ?? { name: x.name, calls: 0, ms: 0 };
        r.calls++;
        r.ms += x.ms;
        rows.set(x.name, r);
        phases[marks.findLast((m) => m.at <= d0 + i)!.phase] += x.ms;
      });
    }
    const per = (r: KernelRow) => ({ ...r, calls: r.calls / profileSteps, ms: r.ms / profileSteps });
    const kernels = [...rows.values()].map(per).sort((a, b) => b.ms - a.ms);
    const fam = new Map<string, KernelRow>();
    for (const r of kernels) {
      const name = r.name.split(" ")[0];
      const f = fam.get(name) ?? { name, calls: 0, ms: 0 };
      f.calls += r.calls;
      f.ms += r.ms;
      fam.set(name, f);
    }
    const kernelMs = kernels.reduce((a, r) => a + r.ms, 0);
    for (const p of Object.keys(phases) as (keyof typeof phases)[]) phases[p] /= profileSteps;
    profile = {
      steps: profileSteps,
      kernelMs,
      phases,
      kernels,
      families: [...fam.values()].sort((a, b) => b.ms - a.ms),
    };
    const pct = (x: number) => `${fmt((100 * x) / kernelMs, 0)}%`;
    console.log(
      `\nGPU time  ${fmt(kernelMs)} ms/step in kernels (timestamp queries, one pass per dispatch, ` +
        `mean of ${profileSteps} steps): forward ${fmt(phases.forward)} (${pct(phases.forward)}), ` +
        `backward ${fmt(phases.backward)} (${pct(phases.backward)}), optimizer ${fmt(phases.optimizer)} ` +
        `(${pct(phases.optimizer)}); step median minus kernel time: ${fmt(msStep - kernelMs)} ms ` +
        `(host recording, copies, per-dispatch overhead, the host wait; measured in separate steps)`,
    );
    console.log(`\n${pad("kernel family", 28)}${lpad("calls", 7)}${lpad("ms/step", 10)}${lpad("share", 7)}`);
    for (const r of profile.families) {
      console.log(`${pad(r.name, 28)}${lpad(fmt(r.calls, 0), 7)}${lpad(fmt(r.ms), 10)}${lpad(pct(r.ms), 7)}`);
    }
    console.log(
      `\n${pad("top kernels", 28)}${lpad("calls", 7)}${lpad("ms/step", 10)}${lpad("share", 7)}${
        lpad("ms/call", 9)
      }`,
    );
    for (const r of kernels.slice(0, 20)) {
      console.log(
        `${pad(r.name, 28)}${lpad(fmt(r.calls, 0), 7)}${lpad(fmt(r.ms), 10)}${lpad(pct(r.ms), 7)}` +
          `${lpad(fmt(r.ms / r.calls, 2), 9)}`,
      );
    }
  } else {
    console.log(
      `\nGPU time  per-kernel timing unavailable (${
        !rt.hasTimestamps
          ? "no timestamp-query"
          : !profilable
          ? `${fmt(step.dispatchesPerStep, 0)} dispatches per step, over the profiler's ${PROFILE_CAPACITY}`
          : "--profile-steps 0"
      })`,
    );
  }

  // ---------------------------------------------------------------- matmul micro-benchmark
  let mm: Awaited<ReturnType<typeof timeMatmuls>> = [];
  let ceiling = NaN;
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
      `ceiling   ${fmt(ceiling, 2)} GFLOP/s (best matmul above); the step reaches ` +
        `${fmt(step.gflops, 2)} = ${fmt((100 * step.gflops) / ceiling, 0)}% of it; at the ceiling ` +
        `its ${fmt(totalFlops / 1e9, 2)} GFLOP would take ${fmt(totalFlops / ceiling / 1e6)} ms`,
    );
  }

  // ---------------------------------------------------------------- PyTorch CPU
  let torch: Awaited<ReturnType<typeof torchRef>> | null = null;
  if (!v["no-torch"]) {
    torch = await torchRef(torchSteps, accum * B, cfg);
    if (torch.result) {
      const tms = Number(torch.result.ms_per_step_median);
      console.log(
        `\nPyTorch   ${torch.result.torch} CPU, ${torch.result.threads} threads, BLAS ${torch.result.blas} ` +
          `(${torch.python}): ${fmt(tms)} ms/step median of ${torchSteps}; ratio torch/webgpu ` +
          `${fmt(tms / msStep, 2)} (${
            tms >= msStep
              ? `WebGPU ${fmt(tms / msStep, 2)}x faster`
              : `PyTorch ${fmt(msStep / tms, 2)}x faster`
          })`,
      );
    } else {
      console.log(`\nPyTorch   not available: ${torch.error}`);
    }
  }

  let sampling: SamplingCase[] | null = null;
  if (v.sampling) {
    console.log("\nsampling (random-init weights, temperature 0.8; bench/sampling.ts)");
    sampling = await benchSampling(rt, { log: (l) => console.log(l) });
    for (const l of summarize(sampling)) console.log(l);
  }

  if (json) {
    const result = {
      adapter,
      config: {
        preset: v.config,
        ...cfg,
        batch: B,
        gradAccum: accum,
        optimizer: "adamw",
        ...optOpts,
        kernels: rt.kernels,
      },
      step,
      alloc,
      profile,
      matmul: { results: mm, ceilingGflops: ceiling, stepOverCeiling: step.gflops / ceiling },
      torch,
      sampling,
    };
    await atomicWrite(json, JSON.stringify(result, null, 2) + "\n");
    console.log(`\nwrote ${json}`);
  }
  rt.destroy();
}

if (import.meta.main) runMain(main);
