import { filteredProbs, sampleLogits } from "../../models/common.ts";
import { GPT, type GPTConfig } from "../../models/gpt.ts";
import { familyTest, Rng, rt } from "../util.ts";

const logits = [0.1, 2.0, -1.0, 1.5, 0.7, 1.9];

Deno.test("top-k = 1 equals greedy", () => {
  for (let s = 0; s < 20; s++) {
    const l = new Rng(s).uniformArray(17, -3, 3);
    const greedy = sampleLogits(l, new Rng(0), { temperature: 0 });
    for (let d = 0; d < 5; d++) {
      if (sampleLogits(l, new Rng(d), { temperature: 1.3, topK: 1 }) !== greedy) {
        throw new Error("top-k 1 != greedy");
      }
    }
  }
});

Deno.test("top-p keeps the smallest set with mass >= p", () => {
  const full = filteredProbs(logits, 1, 0, 1);
  const order = [...full.keys()].sort((a, b) => full[b] - full[a]);
  for (const p of [0.05, 0.3, 0.5, 0.8, 0.95, 0.999]) {
    const kept = filteredProbs(logits, 1, 0, p);
    let mass = 0, k = 0;
    while (mass < p) mass += full[order[k++]];
    const nz = [...kept].filter((x) => x > 0).length;
    if (nz !== k) throw new Error(`top-p ${p}: kept ${nz}, want ${k}`);
    for (let r = 0; r < k; r++) if (!(kept[order[r]] > 0)) throw new Error("top-p dropped a likelier token");
    const sum = kept.reduce((a, b) => a + b, 0);
    if (Math.abs(sum - 1) > 1e-12) throw new Error("top-p not renormalised");
  }
});

Deno.test("temperature scales logits; top-k keeps exactly k", () => {
  const hot = filteredProbs(logits, 10, 0, 1), cold = filteredProbs(logits, 0.1, 0, 1);
  if (!(Math.max(...hot) < Math.max(...cold))) throw new Error("higher temperature must flatten");
  const k3 = filteredProbs(logits, 1, 3, 1);
  if ([...k3].filter((x) => x > 0).length !== 3) throw new Error("top-k 3");
  if (!(k3[1] > 0 && k3[5] > 0 && k3[3] > 0)) throw new Error("top-k kept the wrong tokens");
});

Deno.test("sampling draws match the distribution (chi-square bound)", () => {
  const p = filteredProbs(logits, 0.8, 4, 0.9);
  const counts = new Array(logits.length).fill(0);
  const rng = new Rng(42);
  const n = 20000;
  for (let i = 0; i < n; i++) counts[sampleLogits(logits, rng, { temperature: 0.8, topK: 4, topP: 0.9 })]++;
  let chi = 0;
  p.forEach((pi, i) => {
    if (pi === 0 && counts[i] > 0) throw new Error(`token ${i} is filtered out but was drawn`);
    if (pi > 0) chi += (counts[i] - n * pi) ** 2 / (n * pi);
  });
  if (!(chi < 20)) throw new Error(`chi-square ${chi}`);
});

familyTest("GPT.generate: same seed => same sample; greedy ignores the seed", async () => {
  const cfg: GPTConfig = { vocabSize: 10, nEmbd: 16, nHead: 2, nLayer: 1, blockSize: 6, dropout: 0.1 };
  const model = new GPT(rt, cfg, 5);
  const a = await model.generate([1, 2], 12, { temperature: 1, seed: 9 });
  const b = await model.generate([1, 2], 12, { temperature: 1, seed: 9 });
  const c = await model.generate([1, 2], 12, { temperature: 1, seed: 10 });
  if (a.join() !== b.join()) throw new Error("same seed gave different samples");
  if (a.length !== 12 || a.some((x) => x < 0 || x >= 10)) throw new Error("bad ids");
  if (a.join() === c.join()) throw new Error("different seeds gave identical 12-token samples");
  const g1 = await model.generate([3], 8, { temperature: 0, seed: 1 });
  const g2 = await model.generate([3], 8, { temperature: 0, seed: 2 });
  if (g1.join() !== g2.join()) throw new Error("greedy must not depend on the seed");
});
