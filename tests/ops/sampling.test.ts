// The GPU sampling kernel vs the host reference (models/common.ts): the kept set and the
// probabilities it draws from (filteredProbs), and the drawn id (sampleLogits fed the kernel's
// counter-based uniform), on random logits with awkward vocabularies, ties, and strided rows, through
// both kernel families (familyTest: they share the kernel in two workgroup shapes); and at GPT-2's
// vocabulary, V = 50257, with a few sequences each (a sequence there costs lavapipe ~10 ms).

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
  const ids = Tensor.empty(rt, [B], "u32");
  ids.poison();
  const state = Tensor.from(rt, new Uint32Array([seed, n, 0, 0]));
  sampleTokens(rt, Tensor.from(rt, logits), probs, ids, state, { ...c, step });
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

familyTest(
  "sampling kernel: draws follow the filtered distribution (chi-square), seeds differ",
  async (family) => {
    // Sequences of the same row, each its own stream: the draw frequencies must fit the probs (4000 in
    // the cpu family's 8-invocation shape; 500 in the gpu family's, whose 128-invocation workgroups
    // cost lavapipe ~2 ms each, SwiftShader in the page ~10).
    const V = 9, B = family === "gpu" ? 500 : 4000;
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
  },
);

// ---- GPT-2's vocabulary ----

const BIG_V = 50257;

/** Whether drawing `got` instead of `want` is a rounding of the cumulative mass at u (host probs p). */
function drawWithinRounding(p: ArrayLike<number>, u: number, got: number, want: number): boolean {
  if (!(p[got] > 0)) return false;
  const lo = Math.min(got, want), hi = Math.max(got, want);
  let mass = 0; // the kept mass strictly before hi, from lo on: the bound the two draws straddle
  for (let i = 0; i < hi; i++) mass += p[i];
  let before = 0;
  for (let i = 0; i < lo; i++) before += p[i];
  return Math.abs(mass - u) < 1e-5 || Math.abs(before + p[lo] - u) < 1e-5;
}

const BIG_CASES: (Case & { name: string; logits: (n: number) => Float32Array })[] = [
  {
    name: "plain",
    B: 2,
    V: BIG_V,
    temperature: 1,
    topK: 0,
    topP: 1,
    logits: (n) => rng.uniformArray(n, -4, 4),
  },
  {
    name: "top-k and top-p",
    B: 2,
    V: BIG_V,
    temperature: 0.8,
    topK: 50,
    topP: 0.9,
    logits: (n) => rng.uniformArray(n, -4, 4),
  },
  {
    name: "top-p 0.5",
    B: 1,
    V: BIG_V,
    temperature: 1.2,
    topK: 0,
    topP: 0.5,
    logits: (n) => rng.uniformArray(n, -4, 4),
  },
  {
    name: "k = 1",
    B: 1,
    V: BIG_V,
    temperature: 1,
    topK: 1,
    topP: 1,
    logits: (n) => rng.uniformArray(n, -4, 4),
  },
  {
    name: "k = V",
    B: 1,
    V: BIG_V,
    temperature: 0.7,
    topK: BIG_V,
    topP: 1,
    logits: (n) => rng.uniformArray(n, -4, 4),
  },
  {
    // 17 distinct logits, ~3000 tokens each: the top-k cut and the top-p cut fall inside tie groups.
    name: "ties",
    B: 2,
    V: BIG_V,
    temperature: 1,
    topK: 5000,
    topP: 0.7,
    logits: (n) => rng.uniformArray(n, -4, 4).map((x) => Math.round(x * 2) / 2),
  },
  {
    // A peaked row: the top-p cut keeps one token of a tied top group (p below one token's mass).
    name: "tiny top-p, tied top",
    B: 1,
    V: BIG_V,
    temperature: 1,
    topK: 0,
    topP: 0.01,
    logits: (n) => {
      const x = rng.uniformArray(n, -4, 0);
      for (const i of [777, 20000, 50256]) x[i] = 9;
      return x;
    },
  },
];

familyTest(
  "sampling kernel at V = 50257: kept set, probabilities and draw match the host reference",
  async () => {
    let checked = 0;
    for (const c of BIG_CASES) {
      const logits = c.logits(c.B * c.V);
      const seed = rng.int(1 << 30), n = rng.int(1000);
      const got = await run(logits, c, seed, n, 0);
      for (let b = 0; b < c.B; b++) {
        const row = logits.subarray(b * c.V, (b + 1) * c.V);
        const tag = `V=${c.V} ${c.name} seq ${b}`;
        if (nearTopPBoundary(row, c)) continue;
        const want = filteredProbs(row, c.temperature, c.topK, c.topP);
        const gotRow = got.probs.subarray(b * c.V, (b + 1) * c.V);
        let kept = 0;
        for (let i = 0; i < c.V; i++) {
          if ((gotRow[i] > 0) !== (want[i] > 0)) {
            throw new Error(
              `${tag}: token ${i} kept ${gotRow[i] > 0} on the GPU, ${want[i] > 0} on the host`,
            );
          }
          if (want[i] > 0) kept++;
        }
        if (c.topK > 0 && c.topK < c.V && kept > c.topK) throw new Error(`${tag}: kept ${kept} > k`);
        assertCloseElementwise(gotRow, want, 1e-4, 1e-9, `sampling probs (${tag})`);
        const u = sampleUniform(seed, b, n);
        const id = sampleLogits(row, { uniform: () => u }, c);
        // The cumulative mass at u is summed in another order than the host's: at 50257 terms a
        // bound within 1e-5 of u may fall either way (the kept set above is exact).
        if (got.ids[b] !== id && !drawWithinRounding(want, u, got.ids[b], id)) {
          throw new Error(`${tag}: drew ${got.ids[b]}, host reference draws ${id} (u=${u})`);
        }
        checked++;
      }
    }
    if (checked < 9) throw new Error(`only ${checked} rows checked`);
  },
);

familyTest("sampling kernel at V = 50257: greedy is the first maximum, ties included", async () => {
  const B = 2, V = BIG_V;
  const logits = rng.uniformArray(B * V, -3, 3).map((x) => Math.round(x * 4) / 4); // ~2000 tie the max
  logits[V + 40000] = 5; // sequence 1: one clear maximum, late in the row
  const got = await run(logits, { B, V, temperature: 0, topK: 0, topP: 1 }, 1, 0, 0);
  for (let b = 0; b < B; b++) {
    const row = logits.subarray(b * V, (b + 1) * V);
    const want = sampleLogits(row, new Rng(0), { temperature: 0 });
    if (got.ids[b] !== want) throw new Error(`seq ${b}: greedy ${got.ids[b]}, want ${want}`);
    for (let i = 0; i < V; i++) {
      if (got.probs[b * V + i] !== (i === want ? 1 : 0)) {
        throw new Error(`seq ${b}: greedy probs not one-hot`);
      }
    }
  }
});

familyTest("sampling kernel at V = 50257: draws follow the filtered distribution (chi-square)", async () => {
  // Four tokens hold nearly all the mass, spread over the row; top-p 0.95 keeps exactly them (the
  // rest, at logit -20, weigh 1e-4 together). 64 sequences of the same row, each its own stream.
  const V = BIG_V, B = 64;
  const row = new Float32Array(V).fill(-20);
  [[3, 0.4], [17000, 0.3], [33333, 0.2], [50256, 0.1]].forEach(([i, q]) => row[i] = Math.log(q));
  const logits = new Float32Array(B * V);
  for (let b = 0; b < B; b++) logits.set(row, b * V);
  const c = { B, V, temperature: 1, topK: 0, topP: 0.95 };
  const got = await run(logits, c, 91, 3, 0);
  const p = filteredProbs(row, c.temperature, c.topK, c.topP);
  const counts = new Map<number, number>();
  for (const id of got.ids) counts.set(id, (counts.get(id) ?? 0) + 1);
  let chi = 0, cells = 0;
  for (const [id, k] of counts) {
    if (!(p[id] > 0)) throw new Error(`token ${id} is filtered out but drawn ${k}x`);
  }
  p.forEach((pi, i) => {
    if (pi > 0) {
      cells++;
      chi += ((counts.get(i) ?? 0) - B * pi) ** 2 / (B * pi);
    }
  });
  if (cells !== 4) throw new Error(`top-p kept ${cells} tokens, want 4`);
  if (!(chi < 21)) {
    throw new Error(`chi-square ${chi.toFixed(1)} (3 degrees of freedom; counts ${[...counts]})`);
  }
});
