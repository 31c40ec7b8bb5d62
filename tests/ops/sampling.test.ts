// The GPU sampling kernel vs the host reference (models/common.ts): the kept set and the
// probabilities it draws from (filteredProbs), and the drawn id (sampleLogits fed the kernel's
// counter-based uniform), on random logits with awkward vocabularies, ties, and strided rows, through
// both kernel families (familyTest: they share the kernel).

import { assertCloseElementwise, familyTest, Rng, rt, Tensor } from "../util.ts";
import { sampleTokens, sampleUniform } from "../../ops/sampling.ts";
import { filteredProbs, sampleLogits } from "../../models/common.ts";

const rng = new Rng(2024);

interface Case {
  B: number;
  V: number;
  temperature: number;
  topK: number;
  topP: number;
  rowStride?: number;
  rowOffset?: number;
  ties?: boolean;
}

const CASES: Case[] = [
  { B: 1, V: 1, temperature: 1, topK: 0, topP: 1 },
  { B: 3, V: 7, temperature: 0.8, topK: 3, topP: 1 },
  { B: 2, V: 65, temperature: 1, topK: 0, topP: 0.9 },
  { B: 4, V: 65, temperature: 0.7, topK: 10, topP: 0.5 },
  { B: 2, V: 65, temperature: 1.3, topK: 0, topP: 1, ties: true },
  { B: 3, V: 65, temperature: 1, topK: 5, topP: 0.8, ties: true },
  { B: 2, V: 129, temperature: 2, topK: 100, topP: 0.95 },
  { B: 1, V: 129, temperature: 0.05, topK: 0, topP: 0.3 },
  { B: 5, V: 65, temperature: 1, topK: 1, topP: 1 },
  { B: 2, V: 66, temperature: 0.8, topK: 0, topP: 0.95 },
  { B: 3, V: 20, temperature: 1, topK: 0, topP: 1, rowStride: 4, rowOffset: 3 }, // rows b*4+3
];

/** Run the kernel on NaN-poisoned outputs; return probs [B*V] and ids [B]. */
async function run(logits: Float32Array, c: Case, seed: number, n: number, step: number) {
  const { B, V } = c;
  const probs = Tensor.empty(rt, [B * V]);
  probs.poison();
  const order = Tensor.empty(rt, [B * V], "u32");
  order.poison();
  const ids = Tensor.empty(rt, [B], "u32");
  ids.poison();
  const state = Tensor.from(rt, new Uint32Array([seed, n, 0, 0]));
  sampleTokens(rt, Tensor.from(rt, logits), probs, order, ids, state, { ...c, step });
  return { probs: await probs.read(), ids: await ids.readU32() };
}

/** Host cumulative top-p mass at the cut is within f32 reach of p: either kept set is right. */
function nearTopPBoundary(row: ArrayLike<number>, c: Case): boolean {
  if (c.topP >= 1) return false;
  const full = filteredProbs(row, c.temperature, c.topK, 1);
  const sorted = [...full].filter((x) => x > 0).sort((a, b) => b - a);
  let mass = 0;
  for (const x of sorted) {
    mass += x;
    if (Math.abs(mass - c.topP) < 1e-5) return true;
  }
  return false;
}

familyTest("sampling kernel: kept set, probabilities and draw match the host reference", async () => {
  let checked = 0, boundary = 0;
  for (const c of CASES) {
    const rows = (c.B - 1) * (c.rowStride ?? 1) + (c.rowOffset ?? 0) + 1;
    for (let rep = 0; rep < 6; rep++) {
      const logits = rng.uniformArray(rows * c.V, -4, 4);
      if (c.ties) { for (let i = 0; i < logits.length; i++) logits[i] = Math.round(logits[i]); // many equal logits
       }
      const seed = rng.int(1 << 30), n = rng.int(1000), step = rep;
      const got = await run(logits, c, seed, n, step);
      for (let b = 0; b < c.B; b++) {
        const r = b * (c.rowStride ?? 1) + (c.rowOffset ?? 0);
        const row = logits.subarray(r * c.V, (r + 1) * c.V);
        const tag = `B=${c.B} V=${c.V} T=${c.temperature} k=${c.topK} p=${c.topP} rep ${rep} seq ${b}`;
        if (nearTopPBoundary(row, c)) {
          boundary++;
          continue;
        }
        const want = filteredProbs(row, c.temperature, c.topK, c.topP);
        const gotRow = got.probs.subarray(b * c.V, (b + 1) * c.V);
        for (let i = 0; i < c.V; i++) {
          if ((gotRow[i] > 0) !== (want[i] > 0)) {
            throw new Error(
              `${tag}: token ${i} kept ${gotRow[i] > 0} on the GPU, ${want[i] > 0} on the host`,
            );
          }
        }
        assertCloseElementwise(gotRow, want, 1e-5, 1e-7, `sampling probs (${tag})`);
        const u = sampleUniform(seed, b, n + step);
        const id = sampleLogits(row, { uniform: () => u }, c);
        if (got.ids[b] !== id) {
          throw new Error(`${tag}: drew ${got.ids[b]}, host reference draws ${id} (u=${u})`);
        }
        checked++;
      }
    }
  }
  // Equal logits can put the top-p cut exactly on p (a real tie): those rows are skipped, the rest checked.
  if (checked < 120) throw new Error(`only ${checked} rows checked (${boundary} at a top-p boundary)`);
});

familyTest("sampling kernel: greedy is the first maximum and a one-hot distribution", async () => {
  for (const V of [1, 7, 65, 66, 129]) {
    const B = 3;
    const logits = rng.uniformArray(B * V, -2, 2);
    for (let i = 0; i < logits.length; i++) logits[i] = Math.round(logits[i] * 2) / 2; // ties
    const got = await run(logits, { B, V, temperature: 0, topK: 5, topP: 0.5 }, 1, 0, 0);
    for (let b = 0; b < B; b++) {
      const row = logits.subarray(b * V, (b + 1) * V);
      const want = sampleLogits(row, new Rng(0), { temperature: 0 });
      if (got.ids[b] !== want) throw new Error(`V=${V} seq ${b}: greedy ${got.ids[b]}, want ${want}`);
      for (let i = 0; i < V; i++) {
        if (got.probs[b * V + i] !== (i === want ? 1 : 0)) {
          throw new Error(`V=${V}: greedy probs not one-hot`);
        }
      }
    }
  }
});

familyTest("sampling kernel: draws follow the filtered distribution (chi-square), seeds differ", async () => {
  // 4000 sequences of the same row, each its own stream: the draw frequencies must fit the probs.
  const V = 9, B = 4000;
  const row = rng.uniformArray(V, -2, 2);
  const logits = new Float32Array(B * V);
  for (let b = 0; b < B; b++) logits.set(row, b * V);
  const c = { B, V, temperature: 0.9, topK: 6, topP: 0.95 };
  const got = await run(logits, c, 77, 5, 0);
  const p = filteredProbs(row, c.temperature, c.topK, c.topP);
  const counts = new Array(V).fill(0);
  for (const id of got.ids) counts[id]++;
  let chi = 0;
  p.forEach((pi, i) => {
    if (pi === 0 && counts[i] > 0) throw new Error(`token ${i} is filtered out but was drawn`);
    if (pi > 0) chi += (counts[i] - B * pi) ** 2 / (B * pi);
  });
  if (!(chi < 25)) throw new Error(`chi-square ${chi.toFixed(1)} (counts ${counts})`);
  const other = await run(logits, c, 78, 5, 0);
  if (other.ids.join() === got.ids.join()) throw new Error("a different seed drew the same 4000 ids");
});
