// models/memory.ts: the buffer list it derives without allocating matches what the model really
// allocates, and checkBuffers refuses the largest buffer over the binding / buffer limit in one line.

import assert from "node:assert/strict";
import { rt, Tensor } from "../util.ts";
import { GPT, GPTActivations, type GPTConfig } from "../../models/gpt.ts";
import { Optimizer } from "../../models/common.ts";
import { UsageError } from "../../lib/errors.ts";
import {
  checkBuffers,
  checkGptTraining,
  gptActivationBuffers,
  gptBufferKind,
  gptTrainingBuffers,
  totalBytes,
} from "../../models/memory.ts";

const cfg: GPTConfig = { vocabSize: 13, nEmbd: 24, nHead: 3, nLayer: 2, blockSize: 9, dropout: 0.1 };
/** rt.createBuffer's rounding. */
const rounded = (b: number) => Math.max(16, Math.ceil(b / 16) * 16);

/** Every distinct buffer behind the tensors of `acts` (top level and per layer). */
function actBuffers(acts: GPTActivations): GPUBuffer[] {
  const seen = new Set<GPUBuffer>();
  const visit = (o: object) => {
    for (const x of Object.values(o)) if (x instanceof Tensor) seen.add(x.buffer);
  };
  visit(acts);
  acts.layers.forEach(visit);
  return [...seen];
}

Deno.test("gptActivationBuffers lists exactly what GPTActivations allocates", () => {
  for (const [B, T] of [[1, 1], [3, 9], [5, 4]]) {
    const before = rt.stats.buffersCreated;
    const acts = new GPTActivations(rt, cfg, B, T);
    const created = rt.stats.buffersCreated - before;
    const needs = gptActivationBuffers(cfg, B, T);
    assert.equal(needs.length, created, `B ${B}, T ${T}: buffer count`);
    const real = actBuffers(acts).reduce((a, b) => a + b.size, 0);
    assert.equal(needs.reduce((a, n) => a + rounded(n.bytes), 0), real, `B ${B}, T ${T}: bytes`);
    // Attention saves O(B·H·T) per layer (no T x T probabilities): lse per layer, one shared delta.
    const lse = needs.filter((n) => n.name === "lse"), delta = needs.filter((n) => n.name === "delta");
    assert.equal(lse.length, cfg.nLayer);
    assert.equal(delta.length, 1);
    assert.ok([...lse, ...delta].every((n) => n.bytes === 4 * B * cfg.nHead * T));
  }
});

Deno.test("gptTrainingBuffers: parameters, gradients and AdamW moments at least the real sizes", () => {
  const needs = gptTrainingBuffers(cfg, 2, 3, "adamw");
  const model = new GPT(rt, cfg, 1);
  new Optimizer(rt, model.params, "adamw", 1e-3);
  const real = model.params.params.byteLength;
  for (const name of ["params", "grads", "adam.m", "adam.v", "grad-accum"]) {
    const n = needs.find((x) => x.name === name);
    assert.ok(n, name);
    assert.ok(
      n.bytes >= real && n.bytes <= real + 4 * 64 * (6 + 12 * cfg.nLayer),
      `${name}: ${n.bytes} vs ${real}`,
    );
  }
  assert.equal(
    needs.filter((n) => n.name === "idx").length,
    1 + 3,
    "the activations' ids and one per micro-batch",
  );
  assert.equal(gptTrainingBuffers(cfg, 2, 1, "sgd").some((n) => n.name.startsWith("adam")), false);
  assert.ok(totalBytes(needs) > totalBytes(gptTrainingBuffers(cfg, 2, 1, "adamw")));
});

Deno.test("checkBuffers: the largest buffer over the limit, one line, per binding or per buffer", () => {
  const needs = [{ name: "small", bytes: 10 }, { name: "probs", bytes: 3 * 2 ** 20 }, {
    name: "h",
    bytes: 2 ** 20,
  }];
  const hint = () => ({ what: "attention", flags: "--batch-size 8", advice: "lower --batch-size" });
  checkBuffers({ maxStorageBufferBindingSize: 3 * 2 ** 20, maxBufferSize: 2 ** 30 }, needs, hint); // fits exactly
  for (
    const [limits, re] of [
      [{ maxStorageBufferBindingSize: 2 ** 21, maxBufferSize: 2 ** 30 }, /allows 2\.0 MiB per binding/],
      [{ maxStorageBufferBindingSize: 2 ** 30, maxBufferSize: 2 ** 21 }, /allows 2\.0 MiB per buffer/],
    ] as const
  ) {
    assert.throws(() => checkBuffers(limits, needs, hint), (e: unknown) => {
      assert.ok(e instanceof UsageError);
      assert.match(e.message, /^--batch-size 8 needs a 3\.0 MiB attention buffer \(probs\); this adapter /);
      assert.match(e.message, re);
      assert.match(e.message, /: lower --batch-size$/);
      return true;
    });
  }
});

Deno.test("gptActivationBuffers: attention at GPT-2 124M, batch 1, block 1024, is O(B·H·T)", () => {
  const gpt2: GPTConfig = {
    vocabSize: 50257,
    nEmbd: 768,
    nHead: 12,
    nLayer: 12,
    blockSize: 1024,
    dropout: 0,
  };
  const needs = gptActivationBuffers(gpt2, 1, 1024).filter((n) => gptBufferKind(n.name) === "attention");
  // 12 layers of lse [1, 12, 1024] and one delta: 13 x 48 KiB (the probabilities were 12 x 48 MiB).
  assert.equal(needs.length, 13);
  assert.equal(needs.reduce((a, n) => a + n.bytes, 0), 13 * 4 * 12 * 1024);
});

Deno.test("checkGptTraining: nanogpt-char at batch 64 fits 128 MiB bindings, block 512 does not", () => {
  const nano: GPTConfig = { vocabSize: 65, nEmbd: 384, nHead: 6, nLayer: 6, blockSize: 256, dropout: 0.2 };
  const lavapipe = {
    device: { limits: { maxStorageBufferBindingSize: 2 ** 27, maxBufferSize: 2 ** 31 - 1 } },
  };
  const total = checkGptTraining(lavapipe as never, nano, 64, 1, "adamw");
  // 2.5 GiB: 3.3 GiB before flash attention, whose 6 x 96 MiB of probabilities (and 96 MiB of
  // dscores) became 6 x 384 KiB of lse and one 384 KiB delta.
  assert.ok(total > 2 * 2 ** 30 && total < 3 * 2 ** 30, `total ${total}`);
  // Block 512: no attention buffer grows with T², the MLP's activations are the largest.
  assert.throws(
    () => checkGptTraining(lavapipe as never, { ...nano, blockSize: 512 }, 64, 1, "adamw"),
    /^UsageError: --batch-size 64 --block-size 512 --n-embd 384 needs a 192 MiB activation buffer \(h\)/,
  );
  assert.throws(
    () => checkGptTraining(lavapipe as never, { ...nano, blockSize: 64 }, 4096, 1, "adamw"),
    /--batch-size 4096 --block-size 64 --n-embd 384 needs a .* activation buffer \(h\).*or --block-size$/,
  );
});
