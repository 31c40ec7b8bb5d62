// train/config.ts and train/resume.ts without a GPU: presets and their precedence, the settings a
// checkpoint stores, and what --resume inherits from them.

import assert from "node:assert/strict";
import { parseRun, trainingSettings } from "../../train/config.ts";
import { resolveResume } from "../../train/resume.ts";
import type { ResumeData } from "../../models/checkpoint.ts";
import { UsageError } from "../../lib/cli.ts";
import { inferBackend } from "../../lib/backend.ts";
import { COURSE_ARCH, NANOGPT_ARCH } from "../../models/gpt.ts";

Deno.test("no --config: the lecture recipe, bit for bit what train.ts did before presets", async () => {
  const r = await parseRun([]);
  assert.deepEqual(
    [
      r.config,
      r.lr,
      r.warmupIters,
      r.lrDecayIters,
      r.beta1,
      r.beta2,
      r.weightDecay,
      r.decayParams,
      r.gradClip,
    ],
    ["lecture", 1e-3, 0, 0, 0.9, 0.999, 0.01, "all", 0],
  );
  // The architecture options, explicit, are the course model's (= their defaults).
  assert.deepEqual(r.gpt, {
    vocabSize: 0,
    nEmbd: 64,
    nHead: 4,
    nLayer: 4,
    blockSize: 32,
    dropout: 0.1,
    ...COURSE_ARCH,
  });
  assert.equal(r.tokenizer, null);
  assert.equal(r.batch, 64);
  assert.equal(r.gradAccum, 1);
  assert.equal(r.given.size, 0);
});

Deno.test("--config nanogpt-char: the preset, explicit flags override it, both count as given", async () => {
  const r = await parseRun(["--config=nanogpt-char", "--n-layer=2", "--grad-accum=4", "--batch-size=16"]);
  // nanoGPT's model: exact GELU, no biases, tied head, embedding dropout, its init.
  assert.deepEqual(r.gpt, {
    vocabSize: 0,
    nEmbd: 384,
    nHead: 6,
    nLayer: 2,
    blockSize: 256,
    dropout: 0.2,
    ...NANOGPT_ARCH,
  });
  assert.deepEqual(
    [
      r.lr,
      r.warmupIters,
      r.lrDecayIters,
      r.minLr,
      r.beta2,
      r.weightDecay,
      r.decayParams,
      r.gradClip,
      r.steps,
    ],
    [1e-3, 100, 5000, 1e-4, 0.99, 0.1, "2d", 1, 5000],
  );
  assert.deepEqual([r.batch, r.gradAccum, r.evalInterval, r.evalIters], [16, 4, 250, 200]);
  assert.ok(r.given.has("n-embd") && r.fromPreset.has("n-embd") && !r.fromPreset.has("n-layer"));
  await assert.rejects(() => parseRun(["--config=nanogpt-char", "--min-lr=0.01"]), UsageError);
});

function checkpoint(settings: Record<string, unknown> | undefined): ResumeData {
  return {
    kind: "gpt",
    config: { vocabSize: 5, nEmbd: 16, nHead: 2, nLayer: 1, blockSize: 8, dropout: 0.1 },
    tokenizer: "char",
    vocab: ["a", "b", "c", "d", "e"],
    step: 10,
    params: new Map(),
    metadata: {},
    optimizer: "adamw",
    optimState: new Map(),
    rng: [1, 2, 3, 4],
    lr: 3e-3,
    seed: 7,
    batch: 4,
    settings,
    file: "out/model.optim.safetensors",
    source: "out/model.optim.safetensors",
  };
}

Deno.test("--resume inherits every stored training setting; a different explicit value is a note", async () => {
  const stored = trainingSettings({
    ...(await parseRun([
      "--config=nanogpt-char",
      "--batch-size=4",
      "--grad-accum=3",
      "--lr=3e-3",
      "--seed=7",
    ])),
    gpt: { vocabSize: 5, nEmbd: 16, nHead: 2, nLayer: 1, blockSize: 8, dropout: 0.1 },
  });
  const run = await parseRun(["--resume", "--grad-clip=2"]);
  const notes: string[] = [];
  resolveResume(run, checkpoint(stored), notes);
  assert.deepEqual(
    [
      run.config,
      run.lr,
      run.warmupIters,
      run.lrDecayIters,
      run.minLr,
      run.beta2,
      run.weightDecay,
      run.decayParams,
    ],
    ["nanogpt-char", 3e-3, 100, 5000, 1e-4, 0.99, 0.1, "2d"],
  );
  assert.deepEqual([run.batch, run.gradAccum, run.seed, run.gradClip], [4, 3, 7, 2]);
  assert.deepEqual(notes, [
    "note: --grad-clip 2 differs from the checkpoint's 1; the run will not match an uninterrupted one",
  ]);
  // An older checkpoint without train_config: lr, seed and batch from its metadata, the rest as before.
  const old = await parseRun(["--resume"]);
  resolveResume(old, checkpoint(undefined), []);
  assert.deepEqual([old.lr, old.seed, old.batch, old.gradAccum, old.weightDecay, old.decayParams], [
    3e-3,
    7,
    4,
    1,
    0.01,
    "all",
  ]);
  // A stored value that is not a valid flag value is the checkpoint's fault, named as such.
  assert.throws(
    () => resolveResume(run, checkpoint({ ...stored, "decay-params": "most" }), []),
    /out\/model\.optim\.safetensors: metadata 'train_config' holds an invalid decay-params/,
  );
});

Deno.test("inferBackend: GL's unreported subgroup range, Vulkan's real one, else unknown", () => {
  const has = (...f: string[]) => new Set(f);
  assert.equal(
    inferBackend({ subgroupMinSize: 4, subgroupMaxSize: 128 }, has(), "linux"),
    "gl (inferred: no subgroup size reported)",
  );
  assert.equal(
    inferBackend({ subgroupMinSize: 8, subgroupMaxSize: 8 }, has("shader-f16"), "linux"),
    "vulkan (inferred: 8-wide subgroups reported)",
  );
  assert.match(inferBackend({ subgroupMinSize: 32, subgroupMaxSize: 64 }, has(), "darwin"), /^metal /);
  assert.match(inferBackend({}, has(), "linux"), /^unknown /);
});
