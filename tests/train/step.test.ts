// The shared training step (train/step.ts) with everything on: gradient accumulation, global-norm
// clipping, decay groups and a scheduled lr. Checked against the float64 GPT, clip and AdamW
// references, and against one plain step on the concatenated batch; steady steps allocate nothing.

import { assertClose, familyTest, Rng, rt } from "../util.ts";
import { GPT, type GPTConfig } from "../../models/gpt.ts";
import { decays, LossHistory, Optimizer, type OptimizerOptions } from "../../models/common.ts";
import { type Batch, GPTStep, microSeed, stepLosses } from "../../train/step.ts";
import { lrForStep } from "../../train/schedule.ts";
import { gptReference } from "../reference/gpt.ts";
import { adamwRef, type AdamWState, clipRef } from "../reference/optim.ts";
import { ADAMW_DEFAULTS } from "../../ops/optim.ts";

const cfg: GPTConfig = { vocabSize: 11, nEmbd: 12, nHead: 3, nLayer: 2, blockSize: 7, dropout: 0 };
const T = cfg.blockSize;
const B = 3, ACCUM = 2;
const STEP = 5; // AdamW's t and the schedule's it = 4 (inside the warm-up)
const SCHED = { lr: 2e-3, warmupIters: 10, lrDecayIters: 50, minLr: 2e-4 };
const OPTS: OptimizerOptions = {
  beta1: 0.9,
  beta2: 0.99,
  weightDecay: 0.1,
  decayParams: "matmul",
  gradClip: 0.5,
};

function batches(rng: Rng, n: number): Batch[] {
  return Array.from({ length: n }, () => ({
    x: Uint32Array.from({ length: B * T }, () => rng.int(cfg.vocabSize)),
    y: Uint32Array.from({ length: B * T }, () => rng.int(cfg.vocabSize)),
  }));
}

function concat(bs: Batch[]): Batch {
  const cat = (k: "x" | "y") => {
    const out = new Uint32Array(bs.length * B * T);
    bs.forEach((b, i) => out.set(b[k], i * B * T));
    return out;
  };
  return { x: cat("x"), y: cat("y") };
}

/** A model and an optimizer with a warm AdamW state (so the update is smooth in the gradient). */
function setup(batch: number, accum: number, m: Float32Array, v: Float32Array) {
  const model = new GPT(rt, cfg, 7);
  const opt = new Optimizer(rt, model.params, "adamw", SCHED.lr, OPTS);
  opt.writeState(new Map([["adam.m", m], ["adam.v", v]]));
  return { model, opt, step: new GPTStep(rt, model, opt, batch, accum, 1337) };
}

familyTest("accumulated + clipped step = one step on the joined batch = float64 reference", async () => {
  const rng = new Rng(5);
  const probe = new GPT(rt, cfg, 7);
  const n = probe.params.params.size;
  const m0 = rng.uniformArray(n, -1e-3, 1e-3), v0 = rng.uniformArray(n, 1e-5, 1e-4);
  const micro = batches(rng, ACCUM);
  const lr = lrForStep(STEP, SCHED);

  // N micro-batches of B rows, accumulated ...
  const a = setup(B, ACCUM, m0, v0);
  const p0 = await a.model.params.readAll();
  const hist = new LossHistory(rt, ACCUM);
  for (const t of a.model.params.list) t.grad!.poison(); // (the padding between parameters stays 0)
  let i = 0;
  a.step.record(STEP, lr, () => micro[i++], hist);
  const accLoss = stepLosses(await hist.drain(), ACCUM);
  // ... and one step over the N·B rows at once.
  const c = setup(ACCUM * B, 1, m0, v0);
  const cat = concat(micro);
  const hist1 = new LossHistory(rt, 1);
  c.step.record(STEP, lr, () => cat, hist1);
  const catLoss = (await hist1.drain())[0];

  // Float64: loss and gradient of the concatenated batch, clipped, then AdamW with the decay groups.
  const p64 = new Map([...p0].map(([k, x]) => [k, Float64Array.from(x)]));
  const ref = gptReference(cfg, p64, cat.x, cat.y, ACCUM * B, T);
  assertClose(accLoss, [ref.loss], 1e-5, "accumulated loss (mean of micro-batches)");
  assertClose([catLoss], [ref.loss], 1e-5, "concatenated loss");
  const store = a.model.params;
  const flatG = new Float64Array(n);
  store.list.forEach((t, k) => flatG.set(ref.grads.get(t.name)!, store.offsets[k]));
  const clip = clipRef(flatG, OPTS.gradClip!);
  if (!(clip.scale < 0.9)) throw new Error(`test needs an active clip, scale ${clip.scale}`);
  const [norm, scale] = await a.opt.clipCoef!.read();
  assertClose([norm], [clip.norm], 1e-4, "accumulated grad norm");
  assertClose([scale], [clip.scale], 1e-4, "clip scale");
  assertClose(await store.grads.read(), clip.grads, 1e-3, "accumulated, clipped gradient");
  assertClose(await c.model.params.grads.read(), clip.grads, 1e-3, "concatenated, clipped gradient");

  const flatP = new Float64Array(n);
  const on = new Uint8Array(n);
  store.list.forEach((t, k) => {
    flatP.set(p0.get(t.name)!, store.offsets[k]);
    if (decays("matmul", t.name, t.shape)) on.fill(1, store.offsets[k], store.offsets[k] + t.size);
  });
  const st: AdamWState = { p: flatP, m: Float64Array.from(m0), v: Float64Array.from(v0) };
  adamwRef(
    st,
    clip.grads,
    STEP,
    { ...ADAMW_DEFAULTS, ...OPTS, lr } as typeof ADAMW_DEFAULTS,
    (j) => on[j] === 1,
  );
  const pa = await store.params.read(), pc = await c.model.params.params.read();
  assertClose(pa, st.p, 1e-5, "accumulated step params vs float64");
  assertClose(pc, st.p, 1e-5, "concatenated step params vs float64");
  assertClose(pa, pc, 1e-5, "accumulated vs concatenated params");
  // The decay groups really are different: an embedding and a LayerNorm weight kept their decay off.
  if (decays("matmul", "token_embedding.weight", [11, 12]) || decays("matmul", "blocks.0.ln1.weight", [12])) {
    throw new Error("embeddings and LayerNorm must not decay under 'matmul'");
  }
});

familyTest("steady steps allocate nothing, submit once (changing lr, clipping, accumulation)", async () => {
  const model = new GPT(rt, { ...cfg, dropout: 0.1 }, 3);
  const opt = new Optimizer(rt, model.params, "adamw", SCHED.lr, OPTS);
  const step = new GPTStep(rt, model, opt, B, 3, 1);
  const rng = new Rng(9);
  const hist = new LossHistory(rt, 3 * 4);
  const run = (s: number) => {
    step.record(s, lrForStep(s, SCHED), () => batches(rng, 1)[0], hist);
    rt.submit();
  };
  run(1);
  await hist.drain();
  const before = { ...rt.stats };
  for (let s = 2; s <= 5; s++) run(s);
  const losses = stepLosses(await hist.drain(), 3);
  const after = rt.stats;
  if (losses.length !== 4 || !losses.every(Number.isFinite)) throw new Error(`losses ${losses}`);
  const d = (k: keyof typeof after) => after[k] - before[k];
  const allocs = d("buffersCreated") + d("bindGroupsCreated") + d("uniformsCreated") + d("pipelinesCreated");
  if (allocs !== 0) throw new Error(`steady steps allocated: ${JSON.stringify({ before, after })}`);
  if (d("submits") !== 4 + 1) throw new Error(`submits: ${d("submits")} for 4 steps + 1 readback`);
  if (microSeed(1, 0) !== 1 || microSeed(1, 1) === microSeed(1, 2)) throw new Error("micro-batch seeds");
});
