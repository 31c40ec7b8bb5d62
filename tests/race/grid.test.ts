// Dispatch sizes at the largest shapes we support (issue 16, point 3): a training step, an evaluation
// forward and decoding (64 sequences; cached passes and a window pass) of a GPT-2-wide model at batch
// 64, block 1024, n_embd 768, vocabulary 50257, planned in both kernel families without running
// (Runtime.startCapture("plan"): buffers are virtual, nothing is compiled). WebGPU guarantees only
// 65535 workgroups per grid dimension (maxComputeWorkgroupsPerDimension's default, and what Chrome
// gives on Metal and D3D12), so every dimension of every launch must stay within it. The layers are
// all alike, so one of them covers every launch a deeper model makes.

import assert from "node:assert";
import { rt } from "../util.ts";
import { KERNEL_FAMILIES } from "../../ops/runtime.ts";
import { GPT, GPT2_ARCH, type GPTConfig } from "../../models/gpt.ts";
import { Optimizer } from "../../models/common.ts";
import { GPTStep } from "../../train/step.ts";

/** WebGPU's default (and guaranteed) maxComputeWorkgroupsPerDimension. */
const MAX_DIM = 65535;

const CFG: GPTConfig = {
  ...GPT2_ARCH,
  vocabSize: 50257,
  blockSize: 1024,
  nEmbd: 768,
  nHead: 12,
  nLayer: 1,
  dropout: 0.1,
};
const BATCH = 64;

for (const family of KERNEL_FAMILIES) {
  Deno.test(`[${family}] dispatch sizes at batch 64, block 1024, n_embd 768: every grid dimension <= 65535`, async () => {
    const before = rt.kernels;
    rt.kernels = family;
    rt.startCapture("plan");
    try {
      const model = new GPT(rt, CFG, 1);
      const opt = new Optimizer(rt, model.params, "adamw", 6e-4, { weightDecay: 0.1, gradClip: 1 });
      const step = new GPTStep(rt, model, opt, BATCH, 1, 1);
      const n = BATCH * CFG.blockSize;
      step.record(1, 6e-4, () => ({ x: new Uint32Array(n), y: new Uint32Array(n) }));
      model.forward(step.acts, step.state.tensor, false);
      await model.generateBatch([1], 2, BATCH, { temperature: 0.8, topK: 50, topP: 0.9 });
      const long = model.decoder(BATCH).prefillMax + 1;
      await model.generateBatch(Array.from({ length: long }, () => 1), 1, BATCH, { temperature: 0.8 });
    } finally {
      rt.kernels = before;
    }
    const launches = await rt.stopCapture();
    assert.ok(launches.length > 50, `planned only ${launches.length} launches`);
    const labels = new Set(launches.map((d) => d.label));
    const over = launches.filter((d) => d.workgroups.some((w) => w > MAX_DIM));
    assert.deepStrictEqual(
      [...new Set(over.map((d) => `${d.label} ${d.workgroups.join("x")}`))],
      [],
      "launches over 65535 workgroups in a dimension",
    );
    const widest = Math.max(...launches.flatMap((d) => d.workgroups));
    console.log(
      `[${family}] ${launches.length} launches of ${labels.size} kernels; widest dimension ${widest}`,
    );
  });
}
