// bench.ts --json: per config measured, the model config (the checkpoint metadata's keys), the kernel
// family, every dispatch of a step (name, family, workgroup size, workgroups, ms), dispatchesPerStep
// and msPerStep, beside the fields the bench always wrote. One short lecture run (a few seconds).

import assert from "node:assert/strict";
import { decodeSafetensors } from "../../lib/safetensors.ts";
import { deno, ENV_FLAG, ROOT, tempDir, writeCheckpoint } from "./helpers.ts";
import { COURSE_ARCH } from "../../models/gpt.ts";

Deno.test("bench.ts --json: configs[] with config, family, kernels, dispatchesPerStep, msPerStep", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const json = `${dir}/bench.json`;
    const r = await deno([
      "run",
      "--no-config",
      "--no-lock",
      "--quiet",
      `--allow-read=${ROOT},${dir}`,
      `--allow-write=${dir}`,
      ENV_FLAG,
      `${ROOT}bench.ts`,
      "--config=lecture",
      "--kernels=cpu",
      "--steps=1",
      "--warmup=1",
      "--profile-steps=1",
      "--mm-kernels=",
      "--no-torch",
      "--no-tuning",
      `--json=${json}`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^adapter: .*, kernels cpu\]$/m);
    assert.match(r.stdout, /^summary /m);
    // The test runner may write /tmp but not read it: a child reads the file.
    const read = await deno(["eval", `console.log(Deno.readTextFileSync(${JSON.stringify(json)}))`]);
    assert.equal(read.code, 0, read.stderr);
    const j = JSON.parse(read.stdout);
    for (const k of ["adapter", "config", "step", "alloc", "profile", "matmul", "torch", "sampling"]) {
      assert.ok(k in j, `top-level ${k} kept`);
    }
    assert.equal(j.configs.length, 1);
    const c = j.configs[0];
    assert.equal(c.name, "lecture");
    assert.equal(c.family, "cpu");
    // The same keys as the checkpoint metadata's config.
    const { model } = await writeCheckpoint(`${dir}/ck`);
    const meta = JSON.parse(decodeSafetensors(model, "ck").metadata.config);
    assert.deepEqual(Object.keys(c.config).sort(), Object.keys(meta).sort());
    assert.deepEqual(c.config, {
      vocabSize: 65,
      nEmbd: 64,
      nHead: 4,
      nLayer: 4,
      blockSize: 32,
      dropout: 0.1,
      ...COURSE_ARCH,
    });
    assert.equal(c.kernels.length, c.dispatchesPerStep);
    assert.equal(c.dispatchesPerStep, j.step.dispatchesPerStep, "the trace counts what the step records");
    assert.ok(c.msPerStep > 0 && c.msPerStep === c.step.msMedian);
    for (const k of c.kernels) {
      assert.equal(typeof k.name, "string");
      assert.equal(k.family, "cpu");
      assert.ok(Number.isInteger(k.workgroupSize) && k.workgroupSize >= 1, JSON.stringify(k));
      assert.ok(Number.isInteger(k.workgroups) && k.workgroups >= 1, JSON.stringify(k));
      assert.ok(k.ms === null || k.ms >= 0, JSON.stringify(k));
    }
    const sizes = c.kernels.map((k: { workgroupSize: number }) => k.workgroupSize);
    assert.deepEqual(c.workgroupSizes, { min: Math.min(...sizes), max: Math.max(...sizes) });
    if (j.adapter.timestamps) assert.ok(c.kernels.every((k: { ms: number | null }) => k.ms !== null));
  } finally {
    await cleanup();
  }
});

Deno.test("bench.ts --json: the matmul tuning table, every candidate's GFLOP/s and the winner per shape class", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const json = `${dir}/bench.json`;
    const only = ["64x64 k8 4x4", "64x64 k8 4x4 v4"];
    const r = await deno([
      "run",
      "--no-config",
      "--no-lock",
      "--quiet",
      `--allow-read=${ROOT},${dir}`,
      `--allow-write=${dir}`,
      "--allow-env",
      `${ROOT}bench.ts`,
      "--config=lecture",
      "--kernels=cpu",
      "--batch-size=1",
      "--steps=1",
      "--warmup=1",
      "--profile-steps=0",
      "--mm-kernels=",
      "--no-torch",
      `--tuning-variants=${only.join(",")}`,
      `--json=${json}`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^matmul tuning: every gpu-family variant on each shape class/m);
    const read = await deno(["eval", `console.log(Deno.readTextFileSync(${JSON.stringify(json)}))`]);
    const j = JSON.parse(read.stdout);
    // The lecture step's products: 5 Linear layers x (forward, dx, dW), in a handful of classes.
    assert.ok(j.tuning.length >= 5, JSON.stringify(j.tuning));
    const shapes = new Set<string>();
    for (const t of j.tuning) {
      assert.match(t.shape, /^[NT]{2} \d+x\d+x\d+.* \(\d+x\d+x\d+\)$/);
      shapes.add(t.shape.split(" (")[0]);
      assert.deepEqual(t.candidates.map((c: { variant: string }) => c.variant), only);
      assert.ok(t.candidates.every((c: { gflops: number }) => c.gflops > 0), JSON.stringify(t));
      const best = Math.max(...t.candidates.map((c: { gflops: number }) => c.gflops));
      assert.equal(t.candidates.find((c: { variant: string }) => c.variant === t.winner).gflops, best);
    }
    assert.equal(shapes.size, j.tuning.length, "one entry per shape class");
    assert.ok([...shapes].some((s) => s.startsWith("TN") && s.endsWith("rowsums")), "the weight gradients");
  } finally {
    await cleanup();
  }
});

Deno.test("bench.ts --tuning-variants: an unknown variant is one error line", async () => {
  const r = await deno([
    "run",
    "--no-config",
    "--no-lock",
    "--quiet",
    `--allow-read=${ROOT}`,
    "--allow-env",
    `${ROOT}bench.ts`,
    "--tuning-variants=64x64 k9",
  ]);
  assert.equal(r.code, 2);
  assert.match(r.stderr.trim(), /^error: --tuning-variants must be one of .*, got "64x64 k9"$/);
});
