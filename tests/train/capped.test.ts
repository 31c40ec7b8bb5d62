// A GPT training step on a runtime whose binding cap is tiny (16 KiB), so that every path past one
// binding runs on a small model: parameter shards (a token embedding and MLP weights larger than the
// cap, each a shard of its own, updated in windows), the global gradient norm over the shards,
// chunked products (the tied head, the MLP and attention projections) and the windowed embedding,
// gradient accumulation per shard. Losses and parameters must equal the same step uncapped.

import assert from "node:assert/strict";
import { assertClose, familyTest, rt } from "../util.ts";
import { GPT, GPT2_ARCH, type GPTConfig } from "../../models/gpt.ts";
import { LossHistory, Optimizer } from "../../models/common.ts";
import { type Batch, GPTStep } from "../../train/step.ts";
import { Rng } from "../../lib/rng.ts";

// GPT-2's architecture at a size where the embedding (300 x 48 floats: 57.6 KB) and every MLP
// weight (192 x 48: 36.9 KB) exceed the cap, while each activation (8 rows) stays under it.
const cfg: GPTConfig = {
  vocabSize: 300,
  nEmbd: 48,
  nHead: 2,
  nLayer: 2,
  blockSize: 8,
  dropout: 0.1,
  ...GPT2_ARCH,
};
const CAP = 16 << 10;

async function step(cap: number) {
  const before = rt.maxBindingBytes;
  rt.maxBindingBytes = cap;
  try {
    const model = new GPT(rt, cfg, 11);
    const opt = new Optimizer(rt, model.params, "adamw", 3e-3, {
      weightDecay: 0.1,
      decayParams: "matmul",
      gradClip: 0.5,
    });
    const run = new GPTStep(rt, model, opt, 1, 2, 99);
    const rng = new Rng(3);
    const batch = (): Batch => ({
      x: Uint32Array.from({ length: cfg.blockSize }, () => rng.int(cfg.vocabSize)),
      y: Uint32Array.from({ length: cfg.blockSize }, () => rng.int(cfg.vocabSize)),
    });
    const hist = new LossHistory(rt, 4);
    run.record(1, 3e-3, batch, hist);
    const grads = await model.params.readGrads(); // step 1's mean gradient, clipped
    run.record(2, 3e-3, batch, hist);
    return {
      shards: model.params.shards.length,
      losses: await hist.drain(),
      grads,
      params: await model.params.readAll(),
      moments: await opt.readState(),
    };
  } finally {
    rt.maxBindingBytes = before;
  }
}

familyTest(
  "two GPT-2-shaped training steps under a 16 KiB binding cap = the same steps uncapped",
  async () => {
    const want = await step(rt.maxBindingBytes);
    const got = await step(CAP);
    assert.equal(want.shards, 1);
    assert.ok(got.shards > 3, `${got.shards} parameter shards under the cap`);
    assertClose(got.losses, want.losses, 1e-5, "capped losses");
    // The last step's mean gradient (the float32 order of the chunked sums differs), then the weights
    // after two AdamW steps (m/√v amplifies that difference where a gradient is near 0).
    for (const [name, g] of want.grads) assertClose(got.grads.get(name)!, g, 2e-5, `capped grad: ${name}`);
    for (const [name, v] of want.params) assertClose(got.params.get(name)!, v, 1e-2, `capped step: ${name}`);
    for (const k of ["adam.m", "adam.v"]) assertClose(got.moments.get(k)!, want.moments.get(k)!, 1e-2, k);
  },
);

familyTest("greedy decoding under a 16 KiB binding cap = uncapped (folded head in row blocks)", async () => {
  const ids = async (cap: number) => {
    const before = rt.maxBindingBytes;
    rt.maxBindingBytes = cap;
    try {
      const model = new GPT(rt, { ...cfg, dropout: 0 }, 5);
      // Past block_size too: window passes as well as cached ones.
      return await model.generate([1, 2, 3], cfg.blockSize + 2, { temperature: 0 });
    } finally {
      rt.maxBindingBytes = before;
    }
  };
  assert.deepEqual(await ids(CAP), await ids(rt.maxBindingBytes));
});
