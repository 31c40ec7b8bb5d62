// Embedding forward/backward through both kernel families (familyTest: they share the kernels) vs
// float64, NaN-poisoned outputs, awkward shapes.

import { assertClose, checkNumeric, dot, f64, familyTest, poisoned, Rng, rt, Tensor } from "../util.ts";
import { embeddingBackward, embeddingForward } from "../../ops/embedding.ts";
import { ParamStore } from "../../ops/tensor.ts";
import { embeddingGradRef, embeddingRef } from "../reference/embedding.ts";

const rng = new Rng(777);

// [V, C, n]: awkward sizes, n > V (repeats), n < V (unreferenced rows), n spanning several chunks.
const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [7, 65, 129],
  [65, 7, 300],
  [129, 129, 65],
  [65, 128, 2048],
  [300, 3, 7],
  [7, 300, 1500], // C > 256: several column blocks per row
  [66, 385, 1031], // nanoGPT-like: V 66, C 385 (two column blocks, the second short)
];

/** Indices drawn from a random subset of the rows, so some rows repeat and some are never used. */
function makeIdx(V: number, n: number): Uint32Array {
  const used = Array.from({ length: Math.max(1, Math.ceil(V / 2)) }, () => rng.int(V));
  return Uint32Array.from({ length: n }, () => used[rng.int(used.length)]);
}

familyTest("embeddingForward: gather and accumulate vs float64", async () => {
  for (const [V, C, n] of SHAPES) {
    const table = rng.uniformArray(V * C), idx = makeIdx(V, n);
    const W = Tensor.from(rt, table, [V, C]), I = Tensor.from(rt, idx);
    const Y = poisoned([n, C]);
    embeddingForward(rt, I, W, Y);
    const want = embeddingRef(idx, table, C);
    assertClose(await Y.read(), want, 1e-5, "embedding fwd");
    // accumulate: the position-embedding pattern (idx = positions) on top of existing values.
    const prev = rng.uniformArray(n * C);
    const pos = Uint32Array.from({ length: n }, (_, i) => i % V);
    const Y2 = Tensor.from(rt, prev, [n, C]);
    embeddingForward(rt, Tensor.from(rt, pos), W, Y2, true);
    assertClose(
      await Y2.read(),
      embeddingRef(pos, table, C).map((v, i) => v + prev[i]),
      1e-5,
      "embedding fwd acc",
    );
  }
});

familyTest(
  "embeddingBackward: repeated indices, unreferenced rows, accumulate, finite differences",
  async () => {
    for (const [V, C, n] of SHAPES) {
      const table = rng.uniformArray(V * C), idx = makeIdx(V, n), dy = rng.uniformArray(n * C);
      const I = Tensor.from(rt, idx), DY = Tensor.from(rt, dy, [n, C]);
      const DW = poisoned([V, C]); // unreferenced rows must be written as 0
      embeddingBackward(rt, I, DY, DW);
      const want = embeddingGradRef(idx, dy, V, C);
      assertClose(await DW.read(), want, 1e-4, "embedding bwd");
      const prev = rng.uniformArray(V * C);
      const DW2 = Tensor.from(rt, prev, [V, C]);
      embeddingBackward(rt, I, DY, DW2, true);
      assertClose(await DW2.read(), want.map((v, i) => v + prev[i]), 1e-4, "embedding bwd acc");
      // The float64 analytic gradient against central differences of L = Σ dy·out(table).
      checkNumeric((w) => dot(dy, embeddingRef(idx, w, C)), f64(table), want, rng, "embedding bwd fd");
    }
  },
);

familyTest("embeddingBackward: V beyond one grid layer (5000 rows) and bit-reproducible", async () => {
  const V = 5000, C = 3, n = 1000;
  const idx = Uint32Array.from({ length: n }, () => rng.int(V)), dy = rng.uniformArray(n * C);
  idx[0] = V - 1;
  idx[1] = V - 1;
  const I = Tensor.from(rt, idx), DY = Tensor.from(rt, dy, [n, C]);
  const DW = poisoned([V, C]);
  embeddingBackward(rt, I, DY, DW);
  const first = await DW.read();
  assertClose(first, embeddingGradRef(idx, dy, V, C), 1e-4, "embedding bwd large V");
  const idx2 = Uint32Array.from({ length: 3000 }, () => rng.int(5)), dy2 = rng.uniformArray(3000 * 129);
  const runs: Uint32Array[] = [];
  for (let k = 0; k < 2; k++) {
    const D = poisoned([5, 129]);
    embeddingBackward(rt, Tensor.from(rt, idx2), Tensor.from(rt, dy2, [3000, 129]), D);
    runs.push(new Uint32Array((await D.read()).buffer));
  }
  if (runs[0].some((b, i) => b !== runs[1][i])) throw new Error("embeddingBackward: not bit-reproducible");
});

familyTest("embedding on ParamStore views: tokens + positions forward, both tables' gradients", async () => {
  const V = 65, T = 33, C = 48, B = 5, n = B * T;
  const tok = rng.uniformArray(V * C), pos = rng.uniformArray(T * C);
  const ps = new ParamStore(rt, [
    { name: "wte", shape: [V, C], init: tok },
    { name: "wpe", shape: [T, C], init: pos },
  ]);
  ps.grads.poison();
  const wte = ps.get("wte"), wpe = ps.get("wpe");
  const ids = Uint32Array.from({ length: n }, () => rng.int(V));
  const positions = Uint32Array.from({ length: n }, (_, i) => i % T);
  const I = Tensor.from(rt, ids), P = Tensor.from(rt, positions);
  const X = poisoned([n, C]);
  embeddingForward(rt, I, wte, X);
  embeddingForward(rt, P, wpe, X, true);
  const want = embeddingRef(ids, tok, C).map((v, i) => v + embeddingRef(positions, pos, C)[i]);
  assertClose(await X.read(), want, 1e-5, "embedding fwd tok+pos");
  const dy = rng.uniformArray(n * C), DY = Tensor.from(rt, dy, [n, C]);
  embeddingBackward(rt, I, DY, wte.grad!);
  embeddingBackward(rt, P, DY, wpe.grad!);
  assertClose(await wte.grad!.read(), embeddingGradRef(ids, dy, V, C), 1e-4, "embedding bwd tok");
  assertClose(await wpe.grad!.read(), embeddingGradRef(positions, dy, T, C), 1e-4, "embedding bwd pos");
});

familyTest("embedding: an index >= V gives a NaN row forward and is ignored backward", async () => {
  const V = 7, C = 5;
  const table = rng.uniformArray(V * C), idx = Uint32Array.from([3, 7, 0, 3]), dy = rng.uniformArray(4 * C);
  const Y = poisoned([4, C]);
  embeddingForward(rt, Tensor.from(rt, idx), Tensor.from(rt, table, [V, C]), Y);
  const y = await Y.read();
  for (let c = 0; c < C; c++) {
    if (!Number.isNaN(y[C + c]) || y[c] !== table[3 * C + c]) throw new Error("invalid index row");
  }
  const DW = poisoned([V, C]);
  embeddingBackward(rt, Tensor.from(rt, idx), Tensor.from(rt, dy, [4, C]), DW);
  const valid = Uint32Array.from([3, 0, 3]), dyValid = [...dy.slice(0, C), ...dy.slice(2 * C)];
  assertClose(await DW.read(), embeddingGradRef(valid, dyValid, V, C), 1e-4, "embedding bwd skips invalid");
});
