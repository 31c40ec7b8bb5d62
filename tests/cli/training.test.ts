// Nothing lost, and reproducible: whole training runs of the tiny GPT as child processes.
//   - same seed => bit-identical losses and weights across runs
//   - 10 steps + --resume to 20 == 20 steps straight (dropout on), and so does a run stopped by Ctrl-C
//     at an arbitrary step and resumed
//   - SIGKILL at random moments while checkpointing every step never leaves a checkpoint that does not
//     load, and --resume carries on from it
//   - a diverging run (SGD at lr 10) stops with one line and keeps its last good checkpoint
// One uninterrupted run (the reference) is trained once and shared by the tests in this file.

import assert from "node:assert/strict";
import {
  assertAdapterLineOnly,
  assertOneLine,
  assertSameLosses,
  corpus,
  deno,
  fileTempDir,
  inspect,
  type Inspection,
  resumeArgs,
  runArgs,
  Running,
  sample,
  tempDir,
  TINY,
  TRAIN,
  train,
  writeData,
} from "./helpers.ts";

const ROOT_DIR = await fileTempDir();
const DATA = await writeData(ROOT_DIR);
const STEPS = 20;
/** The tiny GPT with dropout 0.1 (the default), evals every 5 steps, losses read back every 3. */
const RUN = [`--data=${DATA}`, ...TINY, "--dropout=0.1", "--eval-interval=5", "--log-interval=3"];

async function trainOk(out: string, extra: string[]): Promise<Inspection> {
  const r = await train(ROOT_DIR, [...RUN, `--out=${out}`, ...extra]);
  assert.equal(r.code, 0, `train ${extra.join(" ")}: ${r.stderr}`);
  assert.equal(r.stderr, "");
  return inspect(out);
}

let reference: Promise<Inspection> | null = null;
/** 20 uninterrupted steps (trained on first use). */
function referenceRun(): Promise<Inspection> {
  return reference ??= trainOk(`${ROOT_DIR}/reference`, [`--steps=${STEPS}`]);
}

Deno.test("same seed, same adapter: bit-identical loss curve and weights", async () => {
  const a = await referenceRun();
  const b = await trainOk(`${ROOT_DIR}/again`, [`--steps=${STEPS}`]);
  assertSameLosses(b, a, "second run", STEPS);
  assert.deepEqual(b.evals, a.evals);
  assert.equal(b.model?.sha256, a.model?.sha256, "same weights, byte for byte");
  assert.equal(a.model?.step, STEPS);
  // A different seed really is a different run (the comparison above is not vacuous).
  const c = await trainOk(`${ROOT_DIR}/seed2`, ["--steps=3", "--seed=2"]);
  assert.notEqual(c.losses[1], a.losses[1]);
});

Deno.test("--resume from step 10 continues to exactly the losses of an uninterrupted run", async () => {
  const a = await referenceRun();
  const out = `${ROOT_DIR}/resumed`;
  await trainOk(out, ["--steps=10"]);
  const r = await train(ROOT_DIR, resumeArgs(DATA, out, STEPS));
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /resuming from .* at step 10/);
  const b = await inspect(out);
  assertSameLosses(b, a, "resumed run", STEPS);
  assert.deepEqual(b.evals, a.evals);
  assert.equal(b.model?.sha256, a.model?.sha256, "same final weights");
  // Repeating the configuration flags is fine as long as they agree with the checkpoint.
  const again = await train(ROOT_DIR, [...RUN, `--out=${out}`, "--resume", `--steps=${STEPS}`]);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /already at step 20/);
});

Deno.test("Ctrl-C saves the current step and exits 0; resuming from it matches the uninterrupted run", async () => {
  const a = await referenceRun();
  const out = `${ROOT_DIR}/interrupted`;
  // No periodic checkpoints: whatever is on disk afterwards was written because of the signal. The
  // progress line for step 10 appears once step 10 is done; the signal lands a little after it.
  const run = new Running(
    runArgs(TRAIN, ROOT_DIR, [
      ...RUN,
      `--out=${out}`,
      "--steps=1000",
      "--eval-interval=1000",
      "--log-interval=1",
    ]),
  );
  await run.waitFor(/^step 10\/1000 /m);
  await new Promise((r) => setTimeout(r, Math.random() * 150));
  run.kill("SIGINT");
  const r = await run.result();
  assert.equal(r.code, 0, `exit ${r.code} ${r.signal}: ${r.stderr}`);
  assert.equal(r.stderr, "");
  const m = r.stdout.match(/interrupted: saved step (\d+) to .*model\.safetensors; continue with --resume/);
  assert.ok(m, r.stdout);
  const k = Number(m[1]);
  assert.ok(k >= 10 && k < 1000, `stopped at step ${k}`);
  const info = await inspect(out);
  assert.equal(info.model?.step, k, info.modelError);
  assert.equal(info.resume?.step, k, info.resumeError);
  // Always compare: if the signal landed at or after the shared reference's last step (a fast machine),
  // resume to a few steps past it and compare with an uninterrupted run of that length.
  const target = k < STEPS ? STEPS : k + 3;
  const want = k < STEPS ? a : await trainOk(`${ROOT_DIR}/reference-${target}`, [`--steps=${target}`]);
  const resumed = await train(ROOT_DIR, [...RUN, `--out=${out}`, "--resume", `--steps=${target}`]);
  assert.equal(resumed.code, 0, resumed.stderr);
  const b = await inspect(out);
  assertSameLosses(b, want, `interrupted at step ${k} and resumed to ${target}`, target);
  assert.equal(b.model?.sha256, want.model?.sha256, "same final weights");
});

Deno.test("SIGKILL while checkpointing every step never leaves a checkpoint that does not load", async () => {
  const out = `${ROOT_DIR}/killed`;
  const args = [...RUN, `--out=${out}`, "--steps=500", "--eval-interval=1", "--log-interval=1"];
  const delays: number[] = [];
  let lastStep = 0;
  for (let round = 0; round < 4; round++) {
    const run = new Running(runArgs(TRAIN, ROOT_DIR, round === 0 ? args : [...args, "--resume"]));
    // Once the next step's eval is printed its checkpoint is being written: kill somewhere from there.
    await run.waitFor(new RegExp(`^step ${lastStep + 2}: train loss`, "m"));
    const delay = Math.floor(Math.random() * 150);
    delays.push(delay);
    await new Promise((r) => setTimeout(r, delay));
    run.kill("SIGKILL");
    const r = await run.result();
    assert.equal(r.signal, "SIGKILL", `round ${round}: ${r.stderr}`);
    const info = await inspect(out);
    const ctx = `round ${round}, killed ${delay} ms after step ${lastStep + 2}'s eval (delays ${delays})`;
    assert.ok(info.model, `${ctx}: model does not load: ${info.modelError}`);
    assert.ok(info.resume, `${ctx}: resume state does not load: ${info.resumeError}`);
    assert.ok(info.model.finite && info.resume.finite, ctx);
    // The resume file is written first: it is at the model's step or one save ahead.
    assert.ok(
      info.resume.step === info.model.step || info.resume.step === info.model.step + 1,
      `${ctx}: model step ${info.model.step}, resume step ${info.resume.step}`,
    );
    assert.ok(info.resume.step > lastStep, `${ctx}: progress (${info.resume.step} after ${lastStep})`);
    // The killed run's lock file stays (the next run takes it over); temp files may stay.
    const stray = info.files.filter((f) =>
      !["model.safetensors", "model.optim.safetensors", "metrics.jsonl", "loss.svg", "train.lock"].includes(f)
    );
    assert.ok(
      stray.every((f) =>
        /^\.(model(\.optim)?\.safetensors|metrics\.jsonl|loss\.svg)\.tmp-\d+-[0-9a-f]+$/.test(f)
      ),
      `${ctx}: ${stray}`,
    );
    lastStep = info.resume.step;
  }
  // A final resume runs to the end: it continues from the last state, and cleans up temp files.
  const done = await train(ROOT_DIR, [
    ...args.filter((a) => a !== "--steps=500"),
    `--steps=${lastStep + 2}`,
    "--resume",
  ]);
  assert.equal(done.code, 0, done.stderr);
  assert.match(done.stdout, new RegExp(`resuming from .* at step ${lastStep}`));
  assert.match(
    done.stdout,
    /note: took over the lock in .* left by a run that is no longer running \(pid \d+/,
  );
  const info = await inspect(out);
  assert.equal(info.model?.step, lastStep + 2);
  assert.deepEqual(info.files, ["loss.svg", "metrics.jsonl", "model.optim.safetensors", "model.safetensors"]);
  assert.equal(info.badLines, 0, "metrics.jsonl was trimmed to the resumed step");
  for (let s = 1; s <= lastStep + 2; s++) assert.equal(typeof info.losses[s], "number", `loss of step ${s}`);
});

Deno.test("a diverging run stops with one line and keeps its last good checkpoint", async () => {
  const out = `${ROOT_DIR}/diverged`;
  // Plain SGD at the largest accepted learning rate blows the tiny GPT up within a few dozen steps.
  const r = await train(ROOT_DIR, [
    `--data=${DATA}`,
    ...TINY,
    `--out=${out}`,
    "--optimizer=sgd",
    "--lr=10",
    "--steps=300",
    "--eval-interval=1",
    "--log-interval=1",
  ]);
  assertOneLine(
    r,
    /^error: training diverged: .* became (NaN|-?Infinity) at step (\d+); stopped \(the last good checkpoint, step (\d+), is kept in .*\); try a lower --lr$/,
    1,
  );
  const [, , bad, kept] = r.stderr.match(/became (NaN|-?Infinity) at step (\d+).*step (\d+), is kept/)!;
  assert.ok(Number(kept) < Number(bad), r.stderr);
  const info = await inspect(out);
  assert.equal(info.model?.step, Number(kept), info.modelError);
  assert.equal(info.resume?.step, Number(kept), info.resumeError);
  assert.ok(info.model!.finite && info.resume!.finite, "the kept checkpoint has finite weights");
});

Deno.test("sample.ts streams text from the trained checkpoint; same seed, same text", async () => {
  await referenceRun();
  const ck = `--checkpoint=${ROOT_DIR}/reference/model.safetensors`;
  const a = await sample(ROOT_DIR, [
    ck,
    "--max-new-tokens=20",
    "--seed=3",
    "--start=the ",
    "--top-k=5",
    "--top-p=0.9",
  ]);
  assert.equal(a.code, 0, a.stderr);
  assertAdapterLineOnly(a.stderr);
  assert.ok(a.stdout.startsWith("the ") && [...a.stdout].length === 4 + 20 + 1, JSON.stringify(a.stdout));
  const b = await sample(ROOT_DIR, [
    ck,
    "--max-new-tokens=20",
    "--seed=3",
    "--start=the ",
    "--top-k=5",
    "--top-p=0.9",
  ]);
  assert.equal(b.stdout, a.stdout);
});

Deno.test("the end-of-training sample works for any text (no newline, no 'F')", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    // The GPT starts its sample from "\n" and the bigram models from "F" when the text has them.
    const noNewline = await writeData(dir, corpus().replace(/\n/g, " "));
    const g = await train(dir, [
      `--data=${noNewline}`,
      ...TINY,
      `--out=${dir}/gpt`,
      "--steps=2",
      "--sample-tokens=5",
    ]);
    assert.equal(g.code, 0, g.stderr);
    assert.match(g.stdout, /--- sample \(temperature 0\.8\) ---\n.{5}\n$/s);
    const b = await train(dir, [
      `--data=${noNewline}`,
      "--model=bigram-onehot",
      `--out=${dir}/bigram`,
      "--steps=2",
      "--sample-tokens=5",
    ]);
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stdout, /--- sample \(temperature 0\.8\) ---\n.{5}\n$/s);
  } finally {
    await cleanup();
  }
});

Deno.test("a save that fails (disk full) names the file, the step, and what is still on disk", async () => {
  const fixture = new URL("./fixtures/disk_full.ts", import.meta.url).pathname;
  const cases = [
    // The resume file is written first: when it fails, nothing of step 4 is on disk.
    [
      "model.optim.safetensors",
      /^error: could not write .*\/model\.optim\.safetensors: No space left on device \(os error 28\) \(at step 4\); step 4 was not saved; the checkpoint of step 2 is on disk, unchanged$/,
      2,
      2,
    ],
    // The model file second: the resume file already holds step 4.
    [
      "model.safetensors",
      /^error: could not write .*\/model\.safetensors: No space left on device \(os error 28\) \(at step 4\); .*\/model\.optim\.safetensors holds step 4 \(--resume continues from it\); .*\/model\.safetensors still holds step 2$/,
      2,
      4,
    ],
  ] as const;
  for (const [file, re, modelStep, resumeStep] of cases) {
    const out = `${ROOT_DIR}/full-${file}`;
    const r = await deno(
      runArgs(fixture, ROOT_DIR, [file, "2", ...RUN, `--out=${out}`, "--steps=10", "--eval-interval=2"]),
    );
    assertOneLine(r, re, 1, file);
    const info = await inspect(out);
    assert.equal(info.model?.step, modelStep, info.modelError);
    assert.equal(info.resume?.step, resumeStep, info.resumeError);
  }
});
