import { assertClose, Rng, rt } from "../util.ts";
import { GPT, GPTActivations, type GPTConfig, gptExport, gptImport } from "../../models/gpt.ts";
import { LossHistory, Optimizer, StepState } from "../../models/common.ts";
import { gptReference } from "../reference/gpt.ts";

async function lossOf(model: GPT, acts: GPTActivations, state: StepState, train: boolean): Promise<number> {
  const h = new LossHistory(rt, 1);
  model.forward(acts, state.tensor, train);
  h.push(acts.loss);
  return (await h.drain())[0];
}

Deno.test("GPT forward loss and every parameter gradient match a float64 reference model", async () => {
  const cfg: GPTConfig = { vocabSize: 11, nEmbd: 12, nHead: 3, nLayer: 2, blockSize: 7, dropout: 0 };
  const B = 3, T = 7;
  const model = new GPT(rt, cfg, 7);
  // Non-trivial LayerNorm affine parameters, so their gradients are exercised.
  const rng = new Rng(99);
  const values = await model.params.readAll();
  for (const [k, v] of values) if (k.includes("ln")) v.set(rng.uniformArray(v.length, 0.5, 1.5));
  model.params.writeAll(values);
  const idx = Uint32Array.from({ length: B * T }, () => rng.int(cfg.vocabSize));
  const tgt = Uint32Array.from({ length: B * T }, () => rng.int(cfg.vocabSize));
  const acts = new GPTActivations(rt, cfg, B, T);
  acts.idx.write(idx);
  acts.targets.write(tgt);
  const state = new StepState(rt, 1);
  state.set(1);
  model.params.grads.poison();
  const h = new LossHistory(rt, 1);
  model.forward(acts, state.tensor, true);
  model.backward(acts, state.tensor);
  h.push(acts.loss);
  const loss = (await h.drain())[0];
  const ref = gptReference(
    cfg,
    new Map([...values].map(([k, v]) => [k, Float64Array.from(v)])),
    idx,
    tgt,
    B,
    T,
  );
  assertClose([loss], [ref.loss], 1e-4, "gpt loss");
  assertClose(await acts.logits.read(), ref.logits, 1e-4, "gpt logits");
  for (const [name, g] of await model.params.readGrads()) {
    assertClose(g, ref.grads.get(name)!, 1e-3, `grad ${name}`);
  }
});

Deno.test("initial GPT loss (reference config) is about ln(65)", async () => {
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

Deno.test("a tiny GPT overfits a short repeated string (loss < 0.5)", async () => {
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

Deno.test("dropout: train-mode forward differs by step, eval-mode is deterministic and dropout-free", async () => {
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
