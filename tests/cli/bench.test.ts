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
