// deno task train — train the GPT (default: the reference config) or a bigram MLP on TinyShakespeare.
// Every forward, backward and optimizer op runs as a WGSL kernel; one command buffer per step; the
// host reads back only the losses (every --log-interval steps) and the weights when it checkpoints.

import { Runtime } from "./ops/runtime.ts";
import type { Tensor } from "./ops/tensor.ts";
import { Tokenizer } from "./lib/tokenizer.ts";
import { bigramEntropy, GPTData, loadText } from "./lib/data.ts";
import { Rng } from "./lib/rng.ts";
import {
  choiceFlag,
  ensureReadPermission,
  ensureWritePermission,
  fail,
  type FlagSpec,
  floatFlag,
  intFlag,
  parseFlags,
  runMain,
} from "./lib/cli.ts";
import { appendLine, atomicWrite } from "./lib/fsutil.ts";
import { lossSvg } from "./lib/plot.ts";
import { GPT, GPT_REFERENCE, GPTActivations, type GPTConfig } from "./models/gpt.ts";
import { BIGRAM_REFERENCE, BigramActivations, type BigramKind, BigramMLP } from "./models/bigram.ts";
import { LossHistory, Optimizer, type OptimizerKind, StepState } from "./models/common.ts";
import { loadModel, loadOptim, type ModelKind, saveModel, saveOptim } from "./models/checkpoint.ts";
import { join } from "node:path";

const FLAGS: FlagSpec[] = [
  { name: "model", type: "string", default: "gpt", help: "gpt | bigram-onehot | bigram-embedding" },
  {
    name: "steps",
    type: "string",
    default: "5000",
    help: "optimizer steps to train for (total, including resumed)",
  },
  { name: "batch-size", type: "string", default: "64", help: "sequences per step (gpt)" },
  {
    name: "block-size",
    type: "string",
    default: String(GPT_REFERENCE.blockSize),
    help: "context length (gpt)",
  },
  { name: "n-embd", type: "string", default: String(GPT_REFERENCE.nEmbd), help: "embedding width (gpt)" },
  { name: "n-head", type: "string", default: String(GPT_REFERENCE.nHead), help: "attention heads (gpt)" },
  {
    name: "n-layer",
    type: "string",
    default: String(GPT_REFERENCE.nLayer),
    help: "transformer blocks (gpt)",
  },
  {
    name: "dropout",
    type: "string",
    default: String(GPT_REFERENCE.dropout),
    help: "dropout probability (gpt)",
  },
  { name: "lr", type: "string", help: "learning rate (default 1e-3 for adamw, 0.01 for sgd)" },
  { name: "optimizer", type: "string", help: "sgd | adamw (default adamw for gpt, sgd for bigram models)" },
  { name: "seed", type: "string", default: "1337", help: "seed for init, batches and dropout" },
  { name: "eval-interval", type: "string", default: "500", help: "steps between train/val loss estimates" },
  { name: "eval-iters", type: "string", default: "20", help: "batches per loss estimate" },
  {
    name: "log-interval",
    type: "string",
    default: "10",
    help: "steps between loss readbacks / progress updates",
  },
  { name: "data", type: "string", default: "data/tinyshakespeare.txt", help: "training text (UTF-8)" },
  { name: "out", type: "string", default: "out", help: "directory for checkpoint, metrics.jsonl, loss.svg" },
  { name: "resume", type: "boolean", default: false, help: "continue from the checkpoint in --out" },
  {
    name: "sample-tokens",
    type: "string",
    default: "300",
    help: "characters to generate at the end (0: none)",
  },
];

const USAGE = `Train a character-level language model on the GPU (WebGPU/WGSL).

Usage: deno task train [flags]`;

interface Run {
  kind: ModelKind;
  steps: number;
  lr: number;
  optimizer: OptimizerKind;
  seed: number;
  evalInterval: number;
  evalIters: number;
  logInterval: number;
  out: string;
  resume: boolean;
  sampleTokens: number;
  gpt: GPTConfig | null;
  batch: number;
}

function parse(args: string[]): Run & { data: string } {
  const f = parseFlags(args, FLAGS, USAGE);
  const v = f.values as Record<string, string | boolean | undefined>;
  const s = (k: string) => v[k] as string;
  const kind = choiceFlag(s("model"), "model", ["gpt", "bigram-onehot", "bigram-embedding"]) as ModelKind;
  const optimizer =
    (v.optimizer === undefined
      ? (kind === "gpt" ? "adamw" : "sgd")
      : choiceFlag(s("optimizer"), "optimizer", ["sgd", "adamw"])) as OptimizerKind;
  const lr = v.lr === undefined
    ? (optimizer === "adamw" ? 1e-3 : 0.01)
    : floatFlag(s("lr"), "lr", { min: 0, max: 10, minExclusive: true });
  const nEmbd = intFlag(s("n-embd"), "n-embd", { min: 1, max: 4096 });
  const nHead = intFlag(s("n-head"), "n-head", { min: 1, max: 256 });
  if (nEmbd % nHead !== 0) fail(`--n-embd (${nEmbd}) must be divisible by --n-head (${nHead})`);
  const blockSize = intFlag(s("block-size"), "block-size", { min: 1, max: 256 });
  return {
    kind,
    optimizer,
    lr,
    steps: intFlag(s("steps"), "steps", { min: 1, max: 10_000_000 }),
    batch: intFlag(s("batch-size"), "batch-size", { min: 1, max: 4096 }),
    seed: intFlag(s("seed"), "seed", { min: 0, max: 0xffffffff }),
    evalInterval: intFlag(s("eval-interval"), "eval-interval", { min: 1, max: 10_000_000 }),
    evalIters: intFlag(s("eval-iters"), "eval-iters", { min: 1, max: 10_000 }),
    logInterval: intFlag(s("log-interval"), "log-interval", { min: 1, max: 1000 }),
    sampleTokens: intFlag(s("sample-tokens"), "sample-tokens", { min: 0, max: 100_000 }),
    out: s("out"),
    data: s("data"),
    resume: !!v.resume,
    gpt: kind === "gpt"
      ? {
        vocabSize: 0,
        nEmbd,
        nHead,
        nLayer: intFlag(s("n-layer"), "n-layer", { min: 1, max: 64 }),
        blockSize,
        dropout: floatFlag(s("dropout"), "dropout", { min: 0, max: 1, maxExclusive: true }),
      }
      : null,
  };
}

function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return "?";
  const m = Math.floor(s / 60), h = Math.floor(m / 60);
  return h
    ? `${h}h${String(m % 60).padStart(2, "0")}m`
    : m
    ? `${m}m${String(Math.round(s % 60)).padStart(2, "0")}s`
    : `${s.toFixed(0)}s`;
}

/** A step-able training job: one of the three models with its data, buffers and optimizer. */
interface Job {
  model: GPT | BigramMLP;
  tokensPerStep: number;
  /** Record one training step (forward, backward, optimizer) for step number `step`. */
  record(step: number): void;
  /** Mean losses over eval batches, by split. */
  evaluate(step: number): Promise<{ train: number; val?: number }>;
  loss: Tensor;
  sample(n: number, onToken: (id: number) => void): Promise<void>;
  rngState(): number[];
  setRngState(s: number[]): void;
  floor?: number; // bigram entropy: the best loss a bigram model can reach
}

function gptJob(
  rt: Runtime,
  run: Run,
  cfg: GPTConfig,
  data: GPTData,
  model: GPT,
  opt: Optimizer,
  tok: Tokenizer,
): Job {
  const state = new StepState(rt, run.seed);
  const acts = new GPTActivations(rt, cfg, run.batch, cfg.blockSize);
  let rng = new Rng(run.seed);
  const evalHist = new LossHistory(rt, 2 * run.evalIters);
  return {
    model,
    tokensPerStep: run.batch * cfg.blockSize,
    loss: acts.loss,
    record(step) {
      const { x, y } = data.getBatch("train", run.batch, cfg.blockSize, rng);
      acts.idx.write(x);
      acts.targets.write(y);
      state.set(step);
      model.forward(acts, state.tensor, true);
      model.backward(acts, state.tensor);
      opt.step(state.tensor);
    },
    async evaluate(step) {
      const erng = new Rng((run.seed ^ Math.imul(step + 1, 0x9e3779b1)) >>> 0); // independent of training
      for (const split of ["train", "val"] as const) {
        for (let i = 0; i < run.evalIters; i++) {
          const { x, y } = data.getBatch(split, run.batch, cfg.blockSize, erng);
          acts.idx.write(x);
          acts.targets.write(y);
          model.forward(acts, state.tensor, false);
          evalHist.push(acts.loss);
          rt.submit();
        }
      }
      const l = await evalHist.drain();
      const mean = (a: Float32Array) => a.reduce((s, x) => s + x, 0) / a.length;
      return { train: mean(l.subarray(0, run.evalIters)), val: mean(l.subarray(run.evalIters)) };
    },
    async sample(n, onToken) {
      await model.generate(tok.encode("\n"), n, { temperature: 0.8, seed: run.seed, onToken });
    },
    rngState: () => rng.state(),
    setRngState: (s) => (rng = Rng.fromState(s)),
  };
}

function bigramJob(
  rt: Runtime,
  run: Run,
  ids: Uint32Array,
  model: BigramMLP,
  opt: Optimizer,
  tok: Tokenizer,
): Job {
  const V = tok.vocabSize;
  const n = ids.length - 1;
  const state = new StepState(rt, run.seed);
  const acts = new BigramActivations(rt, model.kind, model.cfg, n);
  model.setInputs(acts, ids.subarray(0, n));
  if (model.kind === "bigram-onehot") acts.targets.write(ids.slice(1));
  else {
    const t = new Float32Array(n * V);
    for (let i = 0; i < n; i++) t[i * V + ids[i + 1]] = 1;
    acts.targets.write(t);
  }
  const evalHist = new LossHistory(rt, 1);
  return {
    model,
    tokensPerStep: n,
    loss: acts.loss,
    floor: bigramEntropy(ids, V),
    record(step) {
      state.set(step);
      model.forward(acts, true, true);
      model.backward(acts);
      opt.step(state.tensor);
    },
    async evaluate() {
      model.forward(acts, true, false);
      evalHist.push(acts.loss);
      return { train: (await evalHist.drain())[0] };
    },
    async sample(count, onToken) {
      await model.generate(tok.encode("F")[0], count, { temperature: 0.8, seed: run.seed, onToken });
    },
    rngState: () => [],
    setRngState: () => {},
  };
}

async function main() {
  const run = parse(Deno.args);
  await ensureReadPermission([run.data], `--allow-read=${run.data}`);
  await ensureReadPermission([run.out], `--allow-read=${run.out}`);
  await ensureWritePermission([run.out], `--allow-write=${run.out}`);
  const text = await loadText(run.data);
  const tok = Tokenizer.fromText(text);
  const ids = Uint32Array.from(tok.encode(text));
  const ckpt = join(run.out, "model.safetensors");
  const metricsPath = join(run.out, "metrics.jsonl");
  await Deno.mkdir(run.out, { recursive: true });

  const rt = await Runtime.create();
  const isTTY = Deno.stdout.isTerminal();
  const log = (s: string) => console.log((isTTY ? "\r\x1b[2K" : "") + s);

  let startStep = 0;
  let model: GPT | BigramMLP;
  let cfgNote: string;
  let opt: Optimizer;
  let resumeMeta: Record<string, string> = {};
  if (run.resume) {
    await ensureReadPermission([ckpt], `--allow-read=${run.out}`);
    const loaded = await loadModel(rt, ckpt);
    if (loaded.kind !== run.kind) fail(`--resume: ${ckpt} holds a ${loaded.kind} model, not ${run.kind}`);
    if (loaded.vocab.join("") !== tok.chars.join("")) {
      fail(`--resume: ${ckpt} was trained on a different vocabulary`);
    }
    model = loaded.model;
    if (run.gpt) run.gpt = (model as GPT).cfg;
    opt = new Optimizer(rt, model.params, run.optimizer, run.lr);
    const o = await loadOptim(ckpt);
    if (o.step !== loaded.step) {
      fail(`--resume: optimizer state is from step ${o.step}, model from step ${loaded.step}`);
    }
    if ((o.metadata.optimizer ?? run.optimizer) !== run.optimizer) {
      fail(`--resume: checkpoint used --optimizer ${o.metadata.optimizer}`);
    }
    opt.writeState(o.state);
    resumeMeta = o.metadata;
    startStep = loaded.step;
    log(`resuming from ${ckpt} at step ${startStep}`);
  } else if (run.gpt) {
    run.gpt.vocabSize = tok.vocabSize;
    model = new GPT(rt, run.gpt, run.seed);
    opt = new Optimizer(rt, model.params, run.optimizer, run.lr);
  } else {
    model = new BigramMLP(
      rt,
      run.kind as BigramKind,
      { vocabSize: tok.vocabSize, ...BIGRAM_REFERENCE },
      run.seed,
    );
    opt = new Optimizer(rt, model.params, run.optimizer, run.lr);
  }

  let job: Job;
  if (run.gpt) {
    const cfg = run.gpt;
    const data = new GPTData(ids);
    if (data.val.length < cfg.blockSize + 1) fail(`--data: too short for --block-size ${cfg.blockSize}`);
    job = gptJob(rt, run, cfg, data, model as GPT, opt, tok);
    cfgNote = `gpt n_embd=${cfg.nEmbd} n_head=${cfg.nHead} n_layer=${cfg.nLayer} block=${cfg.blockSize} ` +
      `batch=${run.batch} dropout=${cfg.dropout}`;
  } else {
    const first = ids.subarray(0, Math.min(5000, ids.length));
    if (first.length < 2) fail("--data: need at least 2 characters for a bigram model");
    job = bigramJob(rt, run, first, model as BigramMLP, opt, tok);
    cfgNote = `${run.kind} on the first ${first.length} characters (hidden ${BIGRAM_REFERENCE.hidden})`;
  }
  if (resumeMeta.rng) job.setRngState(JSON.parse(resumeMeta.rng));
  log(`adapter: ${rt.describe()}`);
  log(`model: ${cfgNote}; ${model.params.count.toLocaleString()} parameters; ${run.optimizer} lr=${run.lr}`);
  if (startStep >= run.steps) {
    log(`already at step ${startStep} >= --steps ${run.steps}; nothing to do`);
    return;
  }

  const save = async (step: number) => {
    // Optimizer state first: a kill between the two renames leaves the old model with newer moments,
    // which --resume detects (steps differ) instead of silently continuing from mismatched state.
    await saveOptim(ckpt, await opt.readState(), step, {
      optimizer: run.optimizer,
      rng: JSON.stringify(job.rngState()),
    });
    await saveModel(ckpt, run.kind, model, tok.chars, step);
  };
  const evals: { step: number; train: number; val?: number }[] = [];
  const batchLosses: [number, number][] = [];
  if (run.resume) {
    try {
      for (const line of (await Deno.readTextFile(metricsPath)).split("\n")) {
        if (!line) continue;
        const m = JSON.parse(line);
        if (m.step > startStep) continue;
        if (m.eval) evals.push(m.eval);
      }
    } catch { /* no earlier metrics */ }
  }
  const writePlot = async () => {
    const series = [{ name: "batch loss", points: batchLosses, color: "#bbb" }];
    series.push({
      name: "train",
      points: evals.map((e) => [e.step, e.train] as [number, number]),
      color: "#1f77b4",
    });
    if (evals.some((e) => e.val !== undefined)) {
      series.push({
        name: "val",
        points: evals.map((e) => [e.step, e.val!] as [number, number]),
        color: "#d62728",
      });
    }
    await atomicWrite(join(run.out, "loss.svg"), lossSvg(series, `${run.kind} loss`));
  };
  const doEval = async (step: number) => {
    const r = await job.evaluate(step);
    evals.push({ step, ...r });
    await appendLine(metricsPath, JSON.stringify({ step, eval: { step, ...r } }));
    const floor = job.floor !== undefined
      ? `  (exact bigram entropy of the data: ${job.floor.toFixed(4)})`
      : "";
    log(
      `step ${step}: train loss ${r.train.toFixed(4)}${
        r.val !== undefined ? `, val loss ${r.val.toFixed(4)}` : ""
      }${floor}`,
    );
  };

  let interrupted = false;
  const onSigint = () => (interrupted = true);
  Deno.addSignalListener("SIGINT", onSigint);
  const hist = new LossHistory(rt, run.logInterval);
  const t0 = performance.now();
  let lastLoss = NaN;
  let step = startStep;
  try {
    if (startStep === 0) await doEval(0);
    while (step < run.steps && !interrupted) {
      step++;
      job.record(step);
      hist.push(job.loss);
      rt.submit();
      const isEval = step % run.evalInterval === 0 || step === run.steps;
      if (hist.full || isEval || interrupted) {
        const losses = await hist.drain();
        const first = step - losses.length + 1;
        for (let i = 0; i < losses.length; i++) {
          if (!Number.isFinite(losses[i])) {
            throw new Error(
              `loss became ${losses[i]} at step ${
                first + i
              }; stopping (the last good checkpoint in ${run.out} is kept)`,
            );
          }
          batchLosses.push([first + i, losses[i]]);
        }
        await appendLine(
          metricsPath,
          JSON.stringify({ step, loss: losses[losses.length - 1], losses: Array.from(losses) }),
        );
        lastLoss = losses[losses.length - 1];
        const dt = (performance.now() - t0) / 1000;
        const done = step - startStep;
        const tps = (done * job.tokensPerStep) / dt;
        const eta = ((run.steps - step) * dt) / done;
        const line =
          `step ${step}/${run.steps}  loss ${lastLoss.toFixed(4)}  ${
            Math.round(tps).toLocaleString()
          } tok/s  ` +
          `${(1000 * dt / done).toFixed(0)} ms/step  ETA ${fmtTime(eta)}`;
        if (isTTY) await Deno.stdout.write(new TextEncoder().encode("\r\x1b[2K" + line));
        else if (isEval || step % (run.logInterval * 10) === 0) console.log(line);
      }
      if (isEval) {
        await doEval(step);
        await save(step);
        await writePlot();
      }
    }
  } finally {
    Deno.removeSignalListener("SIGINT", onSigint);
  }
  if (interrupted) {
    await save(step);
    await writePlot();
    log(`interrupted: saved step ${step} to ${ckpt}; continue with --resume`);
    return;
  }
  const secs = (performance.now() - t0) / 1000;
  log(
    `done: ${step - startStep} steps in ${fmtTime(secs)} (${
      (1000 * secs / Math.max(1, step - startStep)).toFixed(0)
    } ms/step); checkpoint ${ckpt}`,
  );
  if (run.sampleTokens > 0) {
    const enc = new TextEncoder();
    await Deno.stdout.write(enc.encode("--- sample (temperature 0.8) ---\n"));
    await job.sample(run.sampleTokens, (id) => Deno.stdout.writeSync(enc.encode(tok.decode([id]))));
    await Deno.stdout.write(enc.encode("\n"));
  }
}

if (import.meta.main) runMain(main);
