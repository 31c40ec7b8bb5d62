// The fast decoder (KV cache + GPU sampling + batches) against today's crop-and-recompute decoding
// (GPT.generateRecompute): identical greedy ids well past block_size, identical samples on every
// path (cache on/off, GPU/host sampling, any chunk size), sample 0 of N = the single sample, one
// readback per chunk, and nothing allocated once a decoder exists.

import { assertCloseElementwise, familyTest, Rng, rt } from "../util.ts";
import { GPT, GPT2_ARCH, type GPTConfig, NANOGPT_ARCH } from "../../models/gpt.ts";

const cfg: GPTConfig = { vocabSize: 65, nEmbd: 32, nHead: 4, nLayer: 2, blockSize: 8, dropout: 0.1 };
const model = new GPT(rt, cfg, 11);
const PROMPTS = [
  [5],
  [1, 2, 3],
  [7, 7, 7, 7, 7, 7, 7, 7],
  Array.from({ length: 13 }, (_, i) => (i * 17) % 65),
];

function same(a: number[], b: number[], what: string): void {
  if (a.length !== b.length) throw new Error(`${what}: ${a.length} ids vs ${b.length}`);
  const i = a.findIndex((x, k) => x !== b[k]);
  if (i >= 0) throw new Error(`${what}: first difference at id ${i}: ${a[i]} vs ${b[i]}\n${a}\n${b}`);
}

familyTest("greedy: KV cache + GPU sampling = the recompute ids exactly (block 8, 80 new)", async () => {
  for (const start of PROMPTS) {
    const want = await model.generateRecompute(start, 80, { temperature: 0 });
    if (new Set(want).size < 3) throw new Error("degenerate reference sample: pick another seed");
    same(await model.generate(start, 80, { temperature: 0 }), want, `prompt ${start.length} cache+gpu`);
    same(
      await model.generate(start, 80, { temperature: 0, cache: false }),
      want,
      `prompt ${start.length} no cache`,
    );
    same(
      await model.generate(start, 80, { temperature: 0, gpuSampling: false }),
      want,
      `prompt ${start.length} cache, host sampling`,
    );
  }
});

familyTest("greedy: a prompt fed one cached position at a time gives the recompute ids too", async () => {
  const big = new GPT(rt, { ...cfg, blockSize: 24 }, 3); // prompts of up to 3 ids are fed position by position
  for (const start of [[9], [1, 2], [4, 5, 6], [4, 5, 6, 7]]) {
    const want = await big.generateRecompute(start, 40, { temperature: 0 });
    same(await big.generate(start, 40, { temperature: 0 }), want, `block 24, prompt ${start.length}`);
  }
});

familyTest("sampling: every path and chunk size draws the same ids; seeds and samples differ", async () => {
  const opts = { temperature: 1.1, topK: 20, topP: 0.9, seed: 123 };
  const start = [3, 1];
  const ref = await model.generate(start, 60, { ...opts, gpuSampling: false, cache: false });
  same(await model.generate(start, 60, opts), ref, "cache + GPU sampling vs host sampling without cache");
  same(await model.generate(start, 60, { ...opts, cache: false }), ref, "GPU sampling without cache");
  same(await model.generate(start, 60, { ...opts, gpuSampling: false }), ref, "host sampling with cache");
  for (const chunk of [1, 3, 8]) {
    same(await model.generate(start, 60, { ...opts, chunk }), ref, `chunk ${chunk}`);
  }
  const other = await model.generate(start, 60, { ...opts, seed: 124 });
  if (other.join() === ref.join()) throw new Error("a different seed gave the same 60 ids");
});

familyTest("batch: sample 0 of N = the single sample, each is reproducible, samples differ", async () => {
  const opts = { temperature: 1, seed: 7 };
  for (const start of [[4], PROMPTS[3]]) {
    const single = await model.generate(start, 40, opts);
    const batch = await model.generateBatch(start, 40, 5, opts);
    const again = await model.generateBatch(start, 40, 5, opts);
    if (batch.length !== 5) throw new Error(`${batch.length} samples, want 5`);
    same(batch[0], single, "sample 0 of 5 vs the single sample");
    batch.forEach((s, i) => same(again[i], s, `sample ${i} run twice`));
    if (new Set(batch.map((s) => s.join())).size !== 5) throw new Error("two of the 5 samples are identical");
    // The batch paths agree with each other too (host sampling uses the same per-sample streams).
    const host = await model.generateBatch(start, 40, 5, { ...opts, gpuSampling: false });
    batch.forEach((s, i) => same(host[i], s, `sample ${i}: GPU vs host sampling`));
  }
});

familyTest("decoder: one submit, one readback per chunk, no allocations after the first run", async () => {
  await model.generate([1], 50, { temperature: 0.8, seed: 1, chunk: 16 });
  const before = { ...rt.stats };
  let streamed = 0;
  const ids = await model.generate([1], 50, {
    temperature: 0.8,
    seed: 1,
    chunk: 16,
    onToken: () => streamed++,
  });
  const d = (k: keyof typeof before) => rt.stats[k] - before[k];
  if (ids.length !== 50 || streamed !== 50) throw new Error(`got ${ids.length} ids, streamed ${streamed}`);
  if (d("readbacks") !== 4 || d("submits") !== 4) {
    throw new Error(`50 ids in chunks of 16: ${d("readbacks")} readbacks, ${d("submits")} submits (want 4)`);
  }
  for (const k of ["buffersCreated", "bindGroupsCreated", "uniformsCreated", "pipelinesCreated"] as const) {
    if (d(k) !== 0) throw new Error(`${k}: ${d(k)} after the first run`);
  }
});

familyTest("cached pass: logits of position t = row t of the full window pass, for every t", async () => {
  const { blockSize: T, vocabSize: V } = cfg;
  const B = 3, dec = model.decoder(B), rng = new Rng(5);
  dec.syncWeights();
  const ids = Uint32Array.from({ length: B * T }, () => rng.int(V));
  dec.win.idx.write(ids);
  // fills the KV cache for all T positions; its logits are the reference
  const want = await dec.windowPass().read();
  for (let t = 0; t < T; t++) {
    // Rewind: the window pass over positions < t only (later ids zeroed), then position t cached.
    dec.win.idx.write(ids.map((x, i) => (i % T < t ? x : 0)));
    dec.windowPass();
    dec.step.idx.write(Uint32Array.from({ length: B }, (_, b) => ids[b * T + t]));
    dec.step.pos.write(new Uint32Array(B).fill(t));
    dec.step.logits.poison();
    dec.cachedPass(t);
    const got = await dec.step.logits.read();
    for (let b = 0; b < B; b++) {
      const row = want.subarray((b * T + t) * V, (b * T + t + 1) * V);
      assertCloseElementwise(
        got.subarray(b * V, (b + 1) * V),
        row,
        1e-4,
        1e-2,
        `cached logits t=${t} seq ${b}`,
      );
    }
  }
});

familyTest("last-row window pass: logits of row t = row t of the full window pass, for all t", async () => {
  const { blockSize: T, vocabSize: V } = cfg;
  const B = 3, dec = model.decoder(B), rng = new Rng(6);
  dec.syncWeights();
  const ids = Uint32Array.from({ length: B * T }, () => rng.int(V));
  for (let t = 0; t < T; t++) {
    // Window filled up to t (the ids after it are zero padding, as in generation).
    dec.win.idx.write(ids.map((x, i) => (i % T <= t ? x : 0)));
    const want = await dec.windowPass().read();
    dec.step.logits.poison();
    dec.lastRowPass(t);
    const got = await dec.step.logits.read();
    for (let b = 0; b < B; b++) {
      assertCloseElementwise(
        got.subarray(b * V, (b + 1) * V),
        want.subarray((b * T + t) * V, (b * T + t + 1) * V),
        1e-4,
        1e-2,
        `last-row logits t=${t} seq ${b}`,
      );
    }
  }
});

familyTest("decoder: reads the weights as they are when generate starts (its copy refreshed)", async () => {
  const m = new GPT(rt, cfg, 12);
  const before = await m.generate([3], 40, { temperature: 0 });
  same(before, await m.generateRecompute([3], 40, { temperature: 0 }), "initial weights");
  // Change every parameter (as a training step would), then decode with the same decoder again.
  const rng = new Rng(13), all = await m.params.readAll();
  for (const v of all.values()) for (let i = 0; i < v.length; i++) v[i] += 0.5 * (rng.uniform() - 0.5);
  m.params.writeAll(all);
  const after = await m.generate([3], 40, { temperature: 0 });
  same(after, await m.generateRecompute([3], 40, { temperature: 0 }), "changed weights");
  if (after.join() === before.join()) throw new Error("changing every weight did not change the greedy ids");
});

familyTest("greedy: one layer (the last is the first) and block 1 also give the recompute ids", async () => {
  for (const over of [{ nLayer: 1, blockSize: 5 }, { nLayer: 3, blockSize: 1 }]) {
    const m = new GPT(rt, { ...cfg, ...over }, 14);
    for (const start of [[2], [4, 1, 4, 1, 4, 1, 9]]) {
      const want = await m.generateRecompute(start, 24, { temperature: 0 });
      const tag = `L${over.nLayer} T${over.blockSize} prompt ${start.length}`;
      same(await m.generate(start, 24, { temperature: 0 }), want, `${tag} cache`);
      same(await m.generate(start, 24, { temperature: 0, cache: false }), want, `${tag} no cache`);
    }
  }
});

familyTest(
  "nanoGPT and GPT-2 architectures: cached and last-row passes = the training forward's rows",
  async () => {
    // The decode passes fuse GELU into the matmul epilogue, use zero LayerNorm biases, the qkv bias and
    // the tied head; the window pass is GPT.forward. (Greedy ids are no test here: a tied head at random
    // weights predicts the input token again and again.) Logits here are of order one: errors per element
    // against |want| + 0.1.
    const { blockSize: T, vocabSize: V } = cfg;
    const B = 2, rng = new Rng(9);
    for (const [name, arch] of [["nanogpt", NANOGPT_ARCH], ["gpt2", GPT2_ARCH]] as const) {
      const m = new GPT(rt, { ...cfg, ...arch }, 5);
      // Values of ordinary size (nanoGPT's init is N(0, 0.02) with zero biases: a dropped bias would not show).
      const values = await m.params.readAll();
      for (const [k, v] of values) if (!/ln.*weight/.test(k)) v.set(rng.uniformArray(v.length, -0.5, 0.5));
      m.params.writeAll(values);
      const dec = m.decoder(B);
      dec.syncWeights();
      const ids = Uint32Array.from({ length: B * T }, () => rng.int(V));
      dec.win.idx.write(ids);
      const want = await dec.windowPass().read();
      const rows = (t: number) => want.filter((_, i) => Math.floor(i / V) % T === t);
      dec.step.logits.poison();
      dec.lastRowPass(T - 1);
      assertCloseElementwise(await dec.step.logits.read(), rows(T - 1), 1e-4, 0.1, `${name} last-row pass`);
      for (const t of [0, 3]) {
        dec.win.idx.write(ids.map((x, i) => (i % T < t ? x : 0)));
        dec.windowPass();
        dec.step.idx.write(Uint32Array.from({ length: B }, (_, b) => ids[b * T + t]));
        dec.step.pos.write(new Uint32Array(B).fill(t));
        dec.step.logits.poison();
        dec.cachedPass(t);
        assertCloseElementwise(await dec.step.logits.read(), rows(t), 1e-4, 0.1, `${name} cached t=${t}`);
      }
    }
  },
);
