// Whole-GPT checks, each through both kernel families: loss, logits and every parameter gradient of a
// training forward + backward against the float64 reference (tests/reference/gpt.ts) with the same
// dropout masks, at a size that crosses every tile and workgroup boundary; the reference's own
// gradient against central finite differences; training, dropout and export behaviour.

import { assertClose, checkNumeric, familyTest, relErr, Rng, rt, Tensor } from "../util.ts";
import {
  GPT,
  GPT2_ARCH,
  GPTActivations,
  type GPTConfig,
  gptExport,
  gptImport,
  gptParamSpecs,
  NANOGPT_ARCH,
} from "../../models/gpt.ts";
import { LossHistory, Optimizer, StepState } from "../../models/common.ts";
import { type GPTRefDropout, gptReference, type GPTRefResult } from "../reference/gpt.ts";

async function lossOf(model: GPT, acts: GPTActivations, state: StepState, train: boolean): Promise<number> {
  const h = new LossHistory(rt, 1);
  model.forward(acts, state.tensor, train);
  h.push(acts.loss);
  return (await h.drain())[0];
}

/** Every f32 buffer of `acts` set to NaN: an element the forward or backward fails to write shows. */
function poisonActivations(acts: GPTActivations): void {
  const all = [...Object.values(acts), ...acts.layers.flatMap((a) => Object.values(a))];
  for (const t of all) if (t instanceof Tensor && t.dtype === "f32") t.poison();
}

/** A model with random (non-trivial) LayerNorm affine parameters and a random batch. */
async function setup(cfg: GPTConfig, B: number, T: number, seed: number) {
  const model = new GPT(rt, cfg, seed);
  const rng = new Rng(seed + 1);
  const values = await model.params.readAll();
  for (const [k, v] of values) {
    if (k.includes("ln") && k.endsWith("weight")) v.set(rng.uniformArray(v.length, 0.5, 1.5));
    if (k.includes("ln") && k.endsWith("bias")) v.set(rng.uniformArray(v.length, -0.2, 0.2));
    // nanoGPT's init zeroes the Linear biases: random ones, so a bias the GPU ignored would show.
    else if (k.endsWith("bias") && v.every((x) => x === 0)) v.set(rng.uniformArray(v.length, -0.2, 0.2));
  }
  model.params.writeAll(values);
  const idx = Uint32Array.from({ length: B * T }, () => rng.int(cfg.vocabSize));
  const tgt = Uint32Array.from({ length: B * T }, () => rng.int(cfg.vocabSize));
  const p64 = new Map([...values].map(([k, v]) => [k, Float64Array.from(v)]));
  return { model, idx, tgt, p64 };
}

const refs = new Map<string, GPTRefResult>();

/**
 * One training forward + backward on the GPU (outputs and gradients NaN-poisoned first) against the
 * float64 reference with the same step state: loss and logits to 1e-5, every gradient to 1e-4, per
 * element. `headRows` splits the fused head and loss into chunks of that many rows. Returns the
 * reference result and its inputs.
 */
async function checkGradients(
  cfg: GPTConfig,
  B: number,
  T: number,
  drop: GPTRefDropout,
  label: string,
  headRows?: number,
) {
  const { model, idx, tgt, p64 } = await setup(cfg, B, T, 7);
  const acts = new GPTActivations(rt, cfg, B, T, undefined, { logits: true, headRows });
  if (headRows !== undefined && !(acts.headRows < B * T)) throw new Error("the head is not chunked");
  acts.idx.write(idx);
  acts.targets.write(tgt);
  poisonActivations(acts);
  model.params.grads.poison();
  const state = new StepState(rt, drop.seed);
  state.set(drop.step);
  const h = new LossHistory(rt, 1);
  model.forward(acts, state.tensor, true);
  model.backward(acts, state.tensor);
  h.push(acts.loss);
  const loss = (await h.drain())[0];
  // The same inputs in both families: the float64 result (about a second at the big size) is kept.
  let ref = refs.get(label);
  if (!ref) refs.set(label, ref = gptReference(cfg, p64, idx, tgt, B, T, { dropout: drop }));
  assertClose([loss], [ref.loss], 1e-5, `${label} loss`);
  assertClose(await acts.logits.read(), ref.logits, 1e-5, `${label} logits`);
  const grads = await model.params.readGrads();
  for (const [name, g] of grads) assertClose(g, ref.grads.get(name)!, 1e-4, `${label} grad ${name}`);
  if (grads.size !== ref.grads.size) {
    throw new Error(`${grads.size} gradients, reference has ${ref.grads.size}`);
  }
  return { ref, p64, idx, tgt };
}

// C = 132 (4 heads of 33), 4C = 528, 3C = 396, T = 65, V = 67, N = B·T = 130: none is a multiple of a
// tile or workgroup size, so every matmul, attention, LayerNorm and cross-entropy kernel runs its
// edge paths. Dropout 0.2 at all three sites of both blocks.
const BIG: GPTConfig = { vocabSize: 67, nEmbd: 132, nHead: 4, nLayer: 2, blockSize: 65, dropout: 0.2 };
const BIG_B = 2, BIG_T = 65, DROP: GPTRefDropout = { seed: 1234, step: 3 };

familyTest(
  "GPT C=132 T=65 V=67 B=2 with dropout 0.2: loss, logits, every gradient = float64 with the same masks",
  async () => {
    // The head in chunks of 48 rows (48, 48, 34): untied, biased.
    const { ref, p64, idx, tgt } = await checkGradients(BIG, BIG_B, BIG_T, DROP, "gpt big dropout", 48);
    // The masks matter: without dropout, or with the next step's masks, the logits are far from these
    // (the tolerance above is 1e-5), so a GPU that skipped a dropout site or keyed it differently fails.
    for (const other of [undefined, { ...DROP, step: DROP.step + 1 }]) {
      const o = gptReference(BIG, p64, idx, tgt, BIG_B, BIG_T, { dropout: other, grads: false });
      const e = relErr(o.logits, ref.logits);
      if (!(e > 1e-2)) throw new Error(`other masks change the logits by only ${e}`);
    }
  },
);

// nanoGPT's architecture (exact GELU, no biases, tied head, embedding dropout, its init) with dropout
// on at all four sites: C = 72 (4 heads of 18), T = 33, V = 67, none a multiple of a tile.
familyTest(
  "nanoGPT architecture C=72 T=33 V=67 with dropout 0.2: loss, logits, every gradient = float64",
  async () => {
    const cfg: GPTConfig = {
      vocabSize: 67,
      nEmbd: 72,
      nHead: 4,
      nLayer: 2,
      blockSize: 33,
      dropout: 0.2,
      ...NANOGPT_ARCH,
    };
    // The head in chunks of 24 rows (24, 24, 18): tied, no bias.
    const { ref, p64, idx, tgt } = await checkGradients(cfg, 2, 33, DROP, "nanogpt arch dropout", 24);
    if (ref.grads.has("lm_head.weight") || ref.grads.has("ln_f.bias")) {
      throw new Error(
        "bias-free tied model has a head",
      );
    }
    // Embedding dropout is on: the logits without it differ.
    const o = gptReference({ ...cfg, embdDropout: false }, p64, idx, tgt, 2, 33, {
      dropout: DROP,
      grads: false,
    });
    if (!(relErr(o.logits, ref.logits) > 1e-2)) throw new Error("embedding dropout changes nothing");
  },
);

// GPT-2's architecture (tanh GELU, every Linear biased, c_attn too, tied head) with dropout.
familyTest(
  "GPT-2 architecture C=24 T=9 V=13 with dropout 0.1: loss, logits, every gradient = float64",
  async () => {
    const cfg: GPTConfig = {
      vocabSize: 13,
      nEmbd: 24,
      nHead: 3,
      nLayer: 2,
      blockSize: 9,
      dropout: 0.1,
      ...GPT2_ARCH,
    };
    await checkGradients(cfg, 2, 9, { seed: 5, step: 2 }, "gpt2 arch dropout");
  },
);

// GPT-2's vocabulary: the head's products with K = V, the tied embedding's gradient over 50257 rows and
// the cross-entropy rows past llvmpipe's loop limit (ops/runtime.ts LLVMPIPE_LOOP_LIMIT).
familyTest("GPT-2 architecture at V=50257: loss, logits, every gradient = float64", async () => {
  const cfg: GPTConfig = {
    vocabSize: 50257,
    nEmbd: 16,
    nHead: 2,
    nLayer: 1,
    blockSize: 8,
    dropout: 0,
    ...GPT2_ARCH,
  };
  // The head in chunks of 12 rows (12, 4): tied, biased elsewhere.
  await checkGradients(cfg, 2, 8, { seed: 1, step: 1 }, "gpt2 arch V=50257", 12);
});

Deno.test("architecture options: parameter lists of the course, nanoGPT and GPT-2 models", () => {
  const base = { vocabSize: 5, nEmbd: 8, nHead: 2, nLayer: 1, blockSize: 4, dropout: 0 };
  const names = (cfg: GPTConfig) => gptParamSpecs(cfg, new Rng(1)).map((s) => s.name);
  const course = names(base),
    nano = names({ ...base, ...NANOGPT_ARCH }),
    gpt2 = names({ ...base, ...GPT2_ARCH });
  if (!course.includes("lm_head.bias") || course.includes("blocks.0.attn.qkv.bias")) {
    throw new Error(`${course}`);
  }
  if (nano.some((n) => n.endsWith("bias") || n.startsWith("lm_head"))) throw new Error(`${nano}`);
  if (!gpt2.includes("blocks.0.attn.qkv.bias") || gpt2.includes("lm_head.weight")) throw new Error(`${gpt2}`);
  // nanoGPT's init: N(0, 0.02), residual projections N(0, 0.02/√(2·n_layer)); the course's: PyTorch's.
  const std = (a: Float32Array) => Math.sqrt(a.reduce((s, x) => s + x * x, 0) / a.length);
  const big = { ...base, nEmbd: 64, nLayer: 8, ...NANOGPT_ARCH };
  const specs = new Map(gptParamSpecs(big, new Rng(2)).map((s) => [s.name, s.init]));
  const fc = std(specs.get("blocks.0.mlp.fc.weight")!), proj = std(specs.get("blocks.0.mlp.proj.weight")!);
  if (Math.abs(fc - 0.02) > 0.001 || Math.abs(proj - 0.02 / 4) > 0.0003) {
    throw new Error(`init std ${fc} ${proj}`);
  }
});

familyTest("GPT C=12 T=7 V=11 without dropout: loss, logits, every gradient = float64", async () => {
  const cfg: GPTConfig = { vocabSize: 11, nEmbd: 12, nHead: 3, nLayer: 2, blockSize: 7, dropout: 0 };
  await checkGradients(cfg, 3, 7, { seed: 1, step: 1 }, "gpt small");
});

Deno.test("float64 GPT reference with dropout 0.3: every parameter's gradient = central finite differences", async () => {
  // A small config (the reference is shape-generic, and a plain-JS forward per difference must be
  // cheap) with the masks fixed by the step state, two sampled elements of every parameter.
  const cfg: GPTConfig = { vocabSize: 13, nEmbd: 24, nHead: 3, nLayer: 2, blockSize: 9, dropout: 0.3 };
  const B = 2, T = 9, drop = { seed: 77, step: 2 };
  const { p64, idx, tgt } = await setup(cfg, B, T, 5);
  const ref = gptReference(cfg, p64, idx, tgt, B, T, { dropout: drop });
  const rng = new Rng(3);
  for (const [name, v] of p64) {
    const f = (x: Float64Array) =>
      gptReference(cfg, new Map([...p64, [name, x]]), idx, tgt, B, T, { dropout: drop, grads: false }).loss;
    checkNumeric(f, Float64Array.from(v), ref.grads.get(name)!, rng, `fd ${name}`, 2);
  }
});

familyTest("initial GPT loss (reference config) is about ln(65)", async () => {
  const cfg: GPTConfig = { vocabSize: 65, nEmbd: 64, nHead: 4, nLayer: 4, blockSize: 32, dropout: 0.1 };
  const model = new GPT(rt, cfg, 1337);
  const acts = new GPTActivations(rt, cfg, 4, 32);
  const rng = new Rng(5);
  acts.idx.write(Uint32Array.from({ length: 128 }, () => rng.int(65)));
  acts.targets.write(Uint32Array.from({ length: 128 }, () => rng.int(65)));
  const state = new StepState(rt, 1);
  const loss = await lossOf(model, acts, state, false);
  if (!(Math.abs(loss - Math.log(65)) <= 0.3)) {
    throw new Error(`initial loss ${loss}, want ln(65)=${Math.log(65)} ± 0.3`);
  }
});

familyTest("a tiny GPT overfits a short repeated string (loss < 0.5)", async () => {
  const text = "hello world! ".repeat(20);
  const chars = [...new Set(text)].sort();
  const ids = Array.from(text, (c) => chars.indexOf(c));
  const cfg: GPTConfig = {
    vocabSize: chars.length,
    nEmbd: 32,
    nHead: 2,
    nLayer: 2,
    blockSize: 16,
    dropout: 0,
  };
  const B = 8, T = 16;
  const model = new GPT(rt, cfg, 3);
  const opt = new Optimizer(rt, model.params, "adamw", 3e-3);
  const acts = new GPTActivations(rt, cfg, B, T);
  const state = new StepState(rt, 1);
  const rng = new Rng(11);
  const hist = new LossHistory(rt, 300);
  for (let step = 1; step <= 300; step++) {
    const x = new Uint32Array(B * T), y = new Uint32Array(B * T);
    for (let b = 0; b < B; b++) {
      const o = rng.int(ids.length - T - 1);
      for (let t = 0; t < T; t++) [x[b * T + t], y[b * T + t]] = [ids[o + t], ids[o + t + 1]];
    }
    acts.idx.write(x);
    acts.targets.write(y);
    state.set(step);
    model.forward(acts, state.tensor, true);
    model.backward(acts, state.tensor);
    opt.step(state.tensor);
    hist.push(acts.loss);
    rt.submit();
  }
  const losses = await hist.drain();
  const final = losses[losses.length - 1];
  if (!(final < 0.5)) {
    throw new Error(`loss after 300 steps is ${final}, want < 0.5 (started at ${losses[0]})`);
  }
});

familyTest("dropout: train forward differs by step, eval is deterministic and dropout-free", async () => {
  const cfg: GPTConfig = { vocabSize: 9, nEmbd: 16, nHead: 2, nLayer: 1, blockSize: 5, dropout: 0.5 };
  const model = new GPT(rt, cfg, 1);
  const acts = new GPTActivations(rt, cfg, 2, 5);
  const rng = new Rng(2);
  acts.idx.write(Uint32Array.from({ length: 10 }, () => rng.int(9)));
  acts.targets.write(Uint32Array.from({ length: 10 }, () => rng.int(9)));
  const state = new StepState(rt, 4);
  state.set(1);
  const a = await lossOf(model, acts, state, true);
  const a2 = await lossOf(model, acts, state, true);
  state.set(2);
  const b = await lossOf(model, acts, state, true);
  const e1 = await lossOf(model, acts, state, false);
  state.set(3);
  const e2 = await lossOf(model, acts, state, false);
  if (a !== a2) throw new Error("same step must give the same dropout mask");
  if (a === b) throw new Error("different steps must give different dropout masks");
  if (e1 !== e2) throw new Error("eval mode must not depend on the step");
});

Deno.test("export/import of PyTorch names round-trips the fused QKV weight", () => {
  const cfg: GPTConfig = { vocabSize: 5, nEmbd: 8, nHead: 2, nLayer: 1, blockSize: 4, dropout: 0 };
  const rng = new Rng(3);
  const internal = new Map<string, Float32Array>();
  const model = new GPT(rt, cfg, 1);
  for (const t of model.params.list) internal.set(t.name, rng.uniformArray(t.size));
  const sd = gptExport(cfg, internal);
  const q0 = sd.get("blocks.0.attn.heads.0.query.weight")!, k1 = sd.get("blocks.0.attn.heads.1.key.weight")!;
  if (q0.shape.join() !== "4,8") throw new Error(`query shape ${q0.shape}`);
  const qkv = internal.get("blocks.0.attn.qkv.weight")!;
  if (q0.data[0] !== qkv[0] || k1.data[0] !== qkv[(8 + 4) * 8]) throw new Error("head rows mapped wrongly");
  if (sd.has("blocks.0.attn.qkv.weight")) throw new Error("fused name must not be exported");
  const back = gptImport(cfg, sd);
  for (const [k, v] of internal) {
    if (back.get(k)!.join() !== v.join()) throw new Error(`round trip changed ${k}`);
  }
});
