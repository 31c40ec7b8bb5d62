// deno task train — train the GPT (default: the lecture config; --config nanogpt-char for nanoGPT's
// shakespeare-char recipe; --init-from DIR to fine-tune a Hugging Face GPT-2, --config finetune-gpt2
// for nanoGPT's finetune_shakespeare recipe) or a bigram MLP on TinyShakespeare. Every forward, backward and optimizer
// op runs as a WGSL kernel; one command buffer per step; the host writes the batch and the step's lr
// and reads back only the losses (every --log-interval steps) and the weights when it checkpoints.
//
// The parts: train/config.ts (flags, presets), train/resume.ts (--resume reconciliation),
// train/lock.ts (one run per --out), train/jobs.ts + train/step.ts (the models' steps),
// train/schedule.ts (lr), train/metrics.ts (metrics.jsonl, loss.svg), train/progress.ts,
// train/signals.ts (Ctrl-C), train/errors.ts (divergence, failed saves).

import { basename, join } from "node:path";
import type { Runtime } from "./ops/runtime.ts";
import { createRuntime } from "./lib/backend.ts";
import { installTuner } from "./lib/tune_cache.ts";
import {
  GPT2_VOCAB_SIZE,
  StreamDecoder,
  type TextTokenizer,
  Tokenizer,
  type TokenizerKind,
} from "./lib/tokenizer.ts";
import { UsageError } from "./lib/errors.ts";
import { HF_CHARS } from "./models/hf_gpt2.ts";
import { Gpt2Tokenizer } from "./lib/bpe.ts";
import { encodeCached } from "./lib/token_cache.ts";
import type { HFModel } from "./models/hf_gpt2.ts";
import { GPTData } from "./lib/data.ts";
import { loadText, readHFDir, readResume, saveCheckpoint } from "./models/files.ts";
import { ensureReadPermission, ensureWritePermission, fail, gpuCause, runMain } from "./lib/cli.ts";
import { WriteError } from "./lib/fsutil.ts";
import { GPT } from "./models/gpt.ts";
import { BIGRAM_REFERENCE, type BigramKind, BigramMLP } from "./models/bigram.ts";
import { LossHistory, Optimizer } from "./models/common.ts";
import {
  buildModel,
  checkOptimState,
  NonFiniteParamsError,
  optimPath,
  type ResumeData,
} from "./models/checkpoint.ts";
import {
  checkApplicable,
  checkNewModel,
  describeRun,
  parseRun,
  type Run,
  trainingSettings,
} from "./train/config.ts";
import { checkSameVocab, resolveResume } from "./train/resume.ts";
import { lockOutDir } from "./train/lock.ts";
import { bigramJob, gptJob, type Job } from "./train/jobs.ts";
import {
  type BufferNeed,
  checkBuffers,
  checkGptTraining,
  fmtBytes,
  fmtPlan,
  totalBytes,
} from "./models/memory.ts";
import { lrForStep } from "./train/schedule.ts";
import { stepLosses } from "./train/step.ts";
import { Metrics } from "./train/metrics.ts";
import { fmtTime, Progress } from "./train/progress.ts";
import { Interrupt } from "./train/signals.ts";
import { divergedError, firstNonFinite, saveFailedMessage } from "./train/errors.ts";

export { divergedError, firstNonFinite, TrainingDiverged } from "./train/errors.ts";

const exists = (p: string) => Deno.stat(p).then(() => true, () => false);

/** Temp files a killed run may have left beside the outputs (see lib/fsutil.ts atomicWrite). */
async function removeStaleTemps(out: string, names: string[]): Promise<void> {
  const re = new RegExp(
    `^\\.(${names.map((n) => n.replace(/[.]/g, "\\.")).join("|")})\\.tmp-\\d+-[0-9a-f]+$`,
  );
  for await (const e of Deno.readDir(out)) {
    if (e.isFile && re.test(e.name)) await Deno.remove(join(out, e.name)).catch(() => {});
  }
}

export async function main(args: string[] = Deno.args): Promise<void> {
  const run = await parseRun(args);
  await ensureReadPermission([run.data], `--allow-read=${run.data}`);
  if (run.initFrom) await ensureReadPermission([run.initFrom], `--allow-read=${run.initFrom}`);
  await ensureReadPermission([run.out], `--allow-read=${run.out}`);
  await ensureWritePermission([run.out], `--allow-write=${run.out}`);
  const outInfo = await Deno.stat(run.out).catch(() => null);
  if (outInfo && !outInfo.isDirectory) fail(`--out: ${run.out} exists and is not a directory`);
  const p = await prepare(run);

  // One run per --out. The checkpoint checks are repeated under the lock: another run may have
  // saved into --out between the checks above and taking the lock.
  await Deno.mkdir(run.out, { recursive: true });
  const lock = await lockOutDir(run.out);
  let ok = false;
  try {
    if (lock.note) console.log(lock.note);
    await checkCheckpoint(run, p.ckpt, p.resume);
    await removeStaleTemps(run.out, [
      basename(p.ckpt),
      basename(optimPath(p.ckpt)),
      "metrics.jsonl",
      "loss.svg",
    ]);
    const rt = await createRuntime({ kernels: run.kernels, timestamps: run.tune !== "off" });
    try {
      await train(rt, run, p);
    } catch (e) {
      throw await gpuCause(rt, e);
    }
    ok = true;
  } finally {
    lock.release();
    // A run that failed before writing anything leaves no empty --out behind.
    if (!ok && !outInfo) await Deno.remove(run.out).catch(() => {});
  }
}

interface Prepared {
  ckpt: string;
  resume: ResumeData | null;
  notes: string[];
  tok: TextTokenizer;
  ids: Uint32Array;
  gptData: GPTData | null;
  /** The Hugging Face GPT-2 the run starts from (--init-from), or null. */
  hf: HFModel | null;
}

/** A new run must not replace a checkpoint (without --force); a resumed one must find its own. */
async function checkCheckpoint(run: Run, ckpt: string, resume: ResumeData | null): Promise<void> {
  if (resume) {
    const now = await readResume(ckpt).catch(() => null);
    if (now?.step !== resume.step) {
      fail(`${run.out} changed while this run was starting (another run saved into it); start it again`);
    }
  } else if (!run.force && (await exists(ckpt))) {
    // Never replace a trained model by accident: a new run into a folder with a checkpoint must say so.
    fail(
      `${run.out} already holds a checkpoint: continue it with --resume, overwrite it with --force, or use another --out`,
    );
  }
}

/** Everything that can be checked without the GPU (and without writing anything). */
async function prepare(run: Run): Promise<Prepared> {
  const ckpt = join(run.out, "model.safetensors");
  const notes: string[] = [];
  let resume: ResumeData | null = null;
  if (run.resume) {
    if (!(await exists(optimPath(ckpt)))) {
      fail(
        (await exists(ckpt))
          ? `--resume: ${optimPath(ckpt)} (the training state saved beside ${basename(ckpt)}) is missing`
          : `--resume: there is no checkpoint in ${run.out} to continue (train without --resume first)`,
      );
    }
    resume = await readResume(ckpt);
    resolveResume(run, resume, notes);
  } else {
    checkNewModel(run);
    await checkCheckpoint(run, ckpt, null);
  }
  checkApplicable(run);

  // The model to start from, and with it the tokenizer: the checkpoint's (--resume), the directory's
  // (--init-from: its tinygpt_chars.json, else GPT-2's BPE), else --tokenizer (default char).
  let hf: HFModel | null = null;
  if (run.initFrom) {
    const blockSize = run.given.has("block-size") ? run.gpt!.blockSize : undefined;
    hf = await readHFDir(run.initFrom, { blockSize, dropout: run.gpt!.dropout });
  }
  const kind: TokenizerKind = resume?.tokenizer ??
    (hf ? (hf.chars ? "char" : "gpt2") : run.tokenizer ?? "char");
  if (run.tokenizer && run.tokenizer !== kind && !run.fromPreset.has("tokenizer")) {
    fail(
      `--tokenizer ${run.tokenizer} contradicts ${
        resume ? `the checkpoint in ${run.out}` : run.initFrom
      } (${kind})`,
    );
  }
  if (hf && kind === "gpt2" && hf.config.vocabSize < GPT2_VOCAB_SIZE) {
    fail(
      `--init-from: ${run.initFrom} has vocab_size ${hf.config.vocabSize}, below GPT-2's ${GPT2_VOCAB_SIZE}, ` +
        `and no ${HF_CHARS} naming its characters`,
    );
  }
  const text = await loadText(run.data);
  let tok: TextTokenizer;
  let ids: Uint32Array;
  if (kind === "gpt2") {
    tok = new Gpt2Tokenizer();
    const { ids: encoded, report } = await encodeCached(run.data, text, tok);
    ids = encoded;
    if (report.status === "hit") {
      notes.push(`data: ${ids.length.toLocaleString()} GPT-2 tokens from ${report.path}`);
    } else {
      const rate = Math.round(ids.length / Math.max(report.encodeSeconds, 1e-6)).toLocaleString();
      notes.push(
        `data: encoded ${ids.length.toLocaleString()} GPT-2 tokens in ${report.encodeSeconds.toFixed(2)} s ` +
          `(${rate} tokens/s)` +
          (report.status === "written" ? `; cached in ${report.path}` : `; ${report.note}`),
      );
    }
  } else {
    const chars = resume ? resume.vocab : hf?.chars ?? null;
    tok = chars ? new Tokenizer(chars) : Tokenizer.fromText(text);
    if (resume) checkSameVocab(run.data, Tokenizer.fromText(text).chars, tok.chars);
    try {
      ids = Uint32Array.from(tok.encode(text));
    } catch (e) {
      if (e instanceof UsageError) {
        fail(
          `--data: ${run.data} has ${
            e.message.replace("the vocabulary", `the vocabulary of ${run.initFrom}`)
          }`,
        );
      }
      throw e;
    }
  }
  let gptData: GPTData | null = null;
  if (run.gpt) {
    if (hf) run.gpt = { ...hf.config };
    else if (!resume) run.gpt.vocabSize = tok.vocabSize;
    gptData = new GPTData(ids);
    const need = run.gpt.blockSize + 1;
    for (const split of ["train", "val"] as const) {
      const n = gptData[split].length;
      if (n < need) {
        fail(
          `--data: the ${split} split of ${run.data} (${split === "train" ? "first 90%" : "last 10%"}) has ` +
            `${n} ${tok.kind === "gpt2" ? "tokens" : "characters"}, fewer than block size + 1 = ${need}: ` +
            `use more text or a smaller --block-size`,
        );
      }
    }
  } else if (ids.length < 2) {
    fail(`--data: ${run.data} has ${ids.length} character; a bigram model needs at least 2`);
  }
  return { ckpt, resume, notes, tok, ids, gptData, hf };
}

async function train(rt: Runtime, run: Run, p: Prepared): Promise<void> {
  const { resume, notes, tok, ids, gptData, ckpt, hf } = p;
  // ---------------------------------------------------------------- model, optimizer, job
  const V = tok.vocabSize;
  const first = ids.subarray(0, Math.min(5000, ids.length));
  // Every buffer of the run against the adapter's limits, before anything is allocated.
  let plan: BufferNeed[] = [];
  if (run.gpt) {
    plan = checkGptTraining(rt, run.gpt, run.batch, run.gradAccum, run.optimizer, {
      decayParams: run.decayParams,
      gradClip: run.gradClip,
    });
  } else {
    checkBuffers(rt.device.limits, [{ name: "one-hot inputs", bytes: 4 * first.length * V }], () => ({
      what: "one-hot input",
      flags: `--data ${run.data} (${V} distinct characters)`,
      advice: "use text with fewer distinct characters",
    }));
  }
  let model: GPT | BigramMLP;
  if (resume) model = buildModel(rt, resume);
  else if (hf) {
    model = new GPT(rt, run.gpt!, run.seed);
    model.params.writeAll(hf.params);
  } else if (run.gpt) model = new GPT(rt, run.gpt, run.seed);
  else model = new BigramMLP(rt, run.kind as BigramKind, { vocabSize: V, ...BIGRAM_REFERENCE }, run.seed);
  const opt = new Optimizer(rt, model.params, run.optimizer, run.lr, {
    beta1: run.beta1,
    beta2: run.beta2,
    weightDecay: run.weightDecay,
    decayParams: run.decayParams,
    gradClip: run.gradClip,
  });
  if (resume) {
    checkOptimState(resume, model);
    opt.writeState(resume.optimState);
  }
  const job: Job = run.gpt
    ? gptJob(rt, run, gptData!, model as GPT, opt, tok)
    : bigramJob(rt, run, first, model as BigramMLP, opt, tok);
  if (resume && resume.rng.length) job.setRngState(resume.rng);
  const startStep = resume?.step ?? 0;

  const progress = new Progress(startStep, run.steps, job.tokensPerStep);
  const log = (s: string) => progress.log(s);
  if (resume) log(`resuming from ${resume.source} at step ${startStep}`);
  if (hf) log(`starting from the Hugging Face GPT-2 in ${run.initFrom}`);
  for (const n of notes) log(n);
  log(`adapter: ${rt.describe()}`);
  log(describeRun(run));
  // The matmul autotuner (gpu family): the shape classes the first step meets are timed after it.
  const tuner = await installTuner(rt, run.tune, log);
  log(
    `model: ${model.params.count.toLocaleString()} parameters; ${job.tokensPerStep.toLocaleString()} tokens per step` +
      (run.gpt
        ? `; ${fmtBytes(totalBytes(plan))} of GPU buffers planned (${fmtPlan(plan)})`
        : ` (the first ${first.length} characters, hidden ${BIGRAM_REFERENCE.hidden})`),
  );
  if (startStep >= run.steps) {
    log(`already at step ${startStep} >= --steps ${run.steps}; nothing to do`);
    return;
  }

  // ---------------------------------------------------------------- saving, metrics, evaluation
  const files = { model: ckpt, resume: optimPath(ckpt) };
  let lastSaved: number | null = resume ? startStep : null;
  const onWriteError = (e: unknown, step: number): never => {
    if (e instanceof WriteError) throw new Error(saveFailedMessage(e, step, lastSaved, files));
    throw e;
  };
  const save = async (step: number) => {
    try {
      const vocab = { kind: tok.kind, vocab: tok.chars };
      await saveCheckpoint(ckpt, run.kind, model, vocab, step, await opt.readState(), {
        optimizer: run.optimizer,
        lr: run.lr,
        seed: run.seed,
        batch: run.batch,
        rng: job.rngState(),
        settings: trainingSettings(run),
      });
    } catch (e) {
      if (e instanceof NonFiniteParamsError) {
        throw divergedError(`parameter ${e.param} became NaN or infinite`, step, lastSaved, run.out);
      }
      onWriteError(e, step);
    }
    lastSaved = step;
  };
  const metrics = new Metrics(run.out, `${run.kind} loss`);
  await metrics.start(resume ? startStep : null).catch((e) => onWriteError(e, startStep));
  const evaluate = async (step: number) => {
    const r = await job.evaluate(step);
    const bad = firstNonFinite(r.val === undefined ? [r.train] : [r.train, r.val], 0);
    if (bad) throw divergedError(`the evaluated loss became ${bad.value}`, step, lastSaved, run.out);
    await metrics.eval(step, r).catch((e) => onWriteError(e, step));
    const floor = job.floor !== undefined
      ? `  (exact bigram entropy of the data: ${job.floor.toFixed(4)})`
      : "";
    log(
      `step ${step}: train loss ${r.train.toFixed(4)}${
        r.val !== undefined ? `, val loss ${r.val.toFixed(4)}` : ""
      }${floor}`,
    );
  };

  // ---------------------------------------------------------------- the loop
  const interrupt = new Interrupt();
  const hist = new LossHistory(rt, run.logInterval * job.lossesPerStep);
  let step = startStep;
  try {
    if (!resume) await evaluate(0);
    while (step < run.steps && !interrupt.requested) {
      step++;
      job.record(step, lrForStep(step, run), hist);
      rt.submit();
      if (tuner?.hasPending) await tuner.tunePending();
      const isEval = step % run.evalInterval === 0 || step === run.steps;
      if (hist.full || isEval || interrupt.requested) {
        const losses = stepLosses(await hist.drain(), job.lossesPerStep);
        const firstStep = step - losses.length + 1;
        const bad = firstNonFinite(losses, firstStep);
        if (bad) throw divergedError(`the loss became ${bad.value}`, bad.step, lastSaved, run.out);
        await metrics.losses(firstStep, losses).catch((e) => onWriteError(e, step));
        await progress.update(step, losses[losses.length - 1]);
      }
      if (isEval) {
        await evaluate(step);
        await save(step);
        await metrics.plot().catch((e) => onWriteError(e, step));
      }
    }
    if (interrupt.requested) {
      if (lastSaved !== step) await save(step);
      await metrics.plot().catch((e) => onWriteError(e, step));
      log(`interrupted: saved step ${step} to ${ckpt}; continue with --resume`);
      return;
    }
  } finally {
    interrupt.dispose();
  }
  const secs = progress.seconds;
  log(
    `done: ${step - startStep} steps in ${fmtTime(secs)} (${
      (1000 * secs / Math.max(1, step - startStep)).toFixed(0)
    } ms/step); checkpoint ${ckpt}`,
  );
  if (run.sampleTokens > 0) {
    const enc = new TextEncoder();
    await Deno.stdout.write(enc.encode("--- sample (temperature 0.8) ---\n"));
    const text = new StreamDecoder(tok);
    await job.sample(run.sampleTokens, (id) => Deno.stdout.writeSync(enc.encode(text.push(id))));
    Deno.stdout.writeSync(enc.encode(text.flush()));
    await Deno.stdout.write(enc.encode("\n"));
  }
}

if (import.meta.main) runMain(() => main());
