// models/memory.ts: the buffer list it derives without allocating matches what the model really
// allocates, and checkBuffers refuses the largest buffer over the binding / buffer limit in one line.

import assert from "node:assert/strict";
import { rt, Tensor } from "../util.ts";
import { GPT, GPT2_ARCH, GPTActivations, type GPTConfig } from "../../models/gpt.ts";
import { GPTStep } from "../../train/step.ts";
import { GPT2_124M } from "../../bench/step.ts";
import { Optimizer } from "../../models/common.ts";
import { UsageError } from "../../lib/errors.ts";
import {
  bufferKind,
  type BufferNeed,
  bytesByKind,
  checkBuffers,
  checkGptTraining,
  fmtPlan,
  gptActivationBuffers,
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
  const needs = gptActivationBuffers(GPT2_124M, 1, 1024).filter((n) => bufferKind(n.name) === "attention");
  // 12 layers of lse [1, 12, 1024] and one delta: 13 x 48 KiB (the probabilities were 12 x 48 MiB).
  assert.equal(needs.length, 13);
  assert.equal(needs.reduce((a, n) => a + n.bytes, 0), 13 * 4 * 12 * 1024);
});

Deno.test("checkGptTraining: nanogpt-char at batch 64 fits 128 MiB bindings, block 512 does not", () => {
  const nano: GPTConfig = { vocabSize: 65, nEmbd: 384, nHead: 6, nLayer: 6, blockSize: 256, dropout: 0.2 };
  const lavapipe = {
    device: { limits: { maxStorageBufferBindingSize: 2 ** 27, maxBufferSize: 2 ** 31 - 1 } },
    maxBindingBytes: 2 ** 27,
  };
  const total = totalBytes(checkGptTraining(lavapipe as never, nano, 64, 1, "adamw"));
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

/** Run `fn` and list every buffer it creates on the real runtime (label, bytes asked for). */
function allocations(fn: () => void): BufferNeed[] {
  const got: BufferNeed[] = [];
  const create = rt.createBuffer;
  rt.createBuffer = (bytes: number, usage?: number, label?: string) => {
    got.push({ name: label ?? "buffer", bytes });
    return create.call(rt, bytes, usage, label);
  };
  try {
    fn();
  } finally {
    rt.createBuffer = create;
  }
  return got;
}

const sorted = (n: BufferNeed[]) => n.map((x) => `${x.name}:${x.bytes}`).sort();

Deno.test("the training plan = what a GPT-2-shaped step really allocates, under a binding cap that shards it", () => {
  // GPT-2's architecture at a size where the token embedding (500 x 64 floats) and the MLP weights
  // exceed a 64 KiB cap, with AdamW's decay groups, clipping and accumulation.
  const small: GPTConfig = {
    vocabSize: 500,
    nEmbd: 64,
    nHead: 4,
    nLayer: 2,
    blockSize: 16,
    dropout: 0.1,
    ...GPT2_ARCH,
  };
  const cap = 64 << 10, before = rt.maxBindingBytes;
  rt.maxBindingBytes = cap;
  try {
    const opts = { decayParams: "2d" as const, gradClip: 1 };
    const real = allocations(() => {
      const model = new GPT(rt, small, 1);
      const opt = new Optimizer(rt, model.params, "adamw", 1e-3, opts);
      new GPTStep(rt, model, opt, 2, 3, 1);
    });
    const plan = gptTrainingBuffers(small, 2, 3, "adamw", { ...opts, maxBindingBytes: cap });
    assert.deepEqual(sorted(plan), sorted(real));
    assert.ok(plan.filter((n) => n.name === "params").length > 2, "several parameter shards");
    const kinds = bytesByKind(plan);
    assert.equal(kinds.params, kinds.grads / 2, "gradients of one step plus their accumulation");
    assert.ok(kinds.optimizer > 2 * kinds.params, "AdamW's two moments, a decay mask, clipping scratch");
    assert.equal(kinds.total, totalBytes(plan));
  } finally {
    rt.maxBindingBytes = before;
  }
});

Deno.test("the plan of GPT-2 124M at batch 1, block 1024: shards under 128 MiB but the embedding's", () => {
  const plan = gptTrainingBuffers(GPT2_124M, 1, 1, "adamw", { maxBindingBytes: 2 ** 27, decayParams: "2d" });
  const params = plan.filter((n) => n.name === "params");
  const wte = 50257 * 768 * 4;
  assert.deepEqual(params.filter((n) => n.bytes > 2 ** 27).map((n) => n.bytes), [Math.ceil(wte / 256) * 256]);
  const kinds = bytesByKind(plan);
  const count = 124_439_808; // GPT-2 small's parameters
  assert.ok(kinds.params >= 4 * count && kinds.params < 4 * count + 2 ** 20, `params ${kinds.params}`);
  assert.equal(kinds.grads, kinds.params);
  assert.ok(kinds.optimizer >= 2 * kinds.params && kinds.optimizer < 2.1 * kinds.params);
  // The activations, head and attention buffers are GPTActivations' (whatever their design).
  const acts = bytesByKind(gptActivationBuffers(GPT2_124M, 1, 1024));
  for (const k of ["activations", "head", "attention"] as const) {
    assert.ok(kinds[k] >= acts[k] && kinds[k] <= acts[k] + 2 ** 16, `${k}: ${kinds[k]} vs ${acts[k]}`);
  }
  console.log(`GPT-2 124M, batch 1, block 1024: ${fmtPlan(plan)}`);
});

Deno.test("checkGptTraining: parameters are sharded under the binding cap; one larger than a buffer is refused", () => {
  const big: GPTConfig = { vocabSize: 65, nEmbd: 1024, nHead: 8, nLayer: 8, blockSize: 8, dropout: 0 };
  // 4 MiB bindings: 100 MiB of parameters in shards, each MLP weight (16 MiB) a shard of its own.
  const rtLike = (maxBufferSize: number) => ({
    device: { limits: { maxStorageBufferBindingSize: 2 ** 22, maxBufferSize } },
    maxBindingBytes: 2 ** 22,
  });
  const plan = checkGptTraining(rtLike(2 ** 30) as never, big, 1, 1, "adamw");
  const params = plan.filter((n) => n.name === "params");
  assert.ok(params.length > 16, `${params.length} shards`);
  assert.ok(params.every((n) => n.bytes <= 16 * 2 ** 20));
  assert.throws(
    () => checkGptTraining(rtLike(2 ** 23) as never, big, 1, 1, "adamw"),
    /^UsageError: --n-embd 1024 --n-layer 8 needs a 16 MiB parameter buffer \(params\); this adapter allows 8\.0 MiB per buffer: lower --n-embd or --n-layer$/,
  );
});
