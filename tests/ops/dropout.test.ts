import assert from "node:assert";
import { assertClose, AWKWARD, checkNumeric, dot, f64, poisoned, Rng, rt, Tensor } from "../util.ts";
import { addDropout, dropoutBackward, dropoutForward, residualDropout } from "../../ops/dropout.ts";
import { addDropoutRef, dropoutRef, dropoutScales } from "../reference/elementwise.ts";

const rng = new Rng(2024);
const stateOf = (seed: number, step: number) => Tensor.from(rt, new Uint32Array([seed, step, 0, 0]));

/** Values bounded away from 0, so "dropped" is exactly "output == 0". */
function nonzero(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (rng.uniform() < 0.5 ? -1 : 1) * rng.range(0.25, 2);
  return a;
}

/** Run dropoutForward on fresh tensors and return the output. */
async function forward(x: Float32Array, p: number, seed: number, step: number, stream: number, train = true) {
  const Y = poisoned([x.length]);
  dropoutForward(rt, Tensor.from(rt, x), Y, p, stateOf(seed, step), stream, train);
  return await Y.read();
}

function assertMask(got: Float32Array, scales: Float64Array, label: string): void {
  for (let i = 0; i < got.length; i++) {
    if ((got[i] === 0) !== (scales[i] === 0)) {
      throw new Error(`${label}: mask differs from dropoutScale at ${i} (got ${got[i]}, scale ${scales[i]})`);
    }
  }
}

Deno.test("dropout forward/backward: exact mask agreement with dropoutScale, values, finite differences", async () => {
  const sizes = [...AWKWARD, 1000, 4099];
  for (const n of sizes) {
    for (
      const [p, seed, step, stream] of [[0.1, 1, 1, 0], [0.5, 12345, 77, 3], [0.9, 0xdeadbeef, 1000000, 11]]
    ) {
      const x = nonzero(n), dy = nonzero(n);
      const st = stateOf(seed, step);
      const Y = poisoned([n]), dX = poisoned([n]);
      dropoutForward(rt, Tensor.from(rt, x), Y, p, st, stream, true);
      dropoutBackward(rt, Tensor.from(rt, dy), dX, p, st, stream, true);
      const s = dropoutScales(n, p, seed, step, stream);
      const y = await Y.read(), dx = await dX.read();
      assertMask(y, s, "dropout fwd");
      assertMask(dx, s, "dropout bwd");
      assertClose(y, dropoutRef(x, s), 1e-5, "dropout fwd");
      assertClose(dx, dropoutRef(dy, s), 1e-4, "dropout bwd");
      checkNumeric((v) => dot(dy, dropoutRef(v, s)), f64(x), dropoutRef(dy, s), rng, "dropout fd");
    }
  }
});

Deno.test("dropout keeps a fraction ≈ 1-p of a large tensor", async () => {
  const n = 100_000;
  const x = nonzero(n);
  for (const p of [0.1, 0.5]) {
    const y = await forward(x, p, 42, 1, 0);
    let kept = 0;
    for (const v of y) if (v !== 0) kept++;
    // Standard deviation of the kept fraction is sqrt(p(1-p)/n) <= 0.0016: ±1% is > 6 sigma.
    const frac = kept / n;
    if (Math.abs(frac - (1 - p)) > 0.01) throw new Error(`p=${p}: kept fraction ${frac}`);
    // Kept elements are scaled by exactly 1/(1-p) (f32): check on the first few.
    const s = Math.fround(1 / (1 - Math.fround(p)));
    for (let i = 0; i < 100; i++) {
      if (y[i] !== 0) assert.ok(Math.abs(y[i] - x[i] * s) <= 1e-6 * Math.abs(x[i] * s), `scale at ${i}`);
    }
  }
});

Deno.test("dropout masks differ across steps, streams and seeds, and repeat exactly for the same inputs", async () => {
  const n = 10_000, p = 0.5;
  const x = nonzero(n);
  const base = await forward(x, p, 7, 5, 2);
  const again = await forward(x, p, 7, 5, 2);
  assert.deepStrictEqual(new Uint32Array(again.buffer), new Uint32Array(base.buffer), "not deterministic");
  for (const [seed, step, stream] of [[7, 6, 2], [7, 5, 3], [8, 5, 2]]) {
    const other = await forward(x, p, seed, step, stream);
    let diff = 0;
    for (let i = 0; i < n; i++) if ((other[i] === 0) !== (base[i] === 0)) diff++;
    // Independent masks disagree on 2p(1-p) = 50% of elements.
    if (Math.abs(diff / n - 0.5) > 0.05) {
      throw new Error(`seed ${seed} step ${step} stream ${stream}: only ${diff} of ${n} mask bits differ`);
    }
  }
});

Deno.test("dropout eval and p = 0 are the identity (forward and backward)", async () => {
  for (const n of [1, 65, 1000]) {
    const x = nonzero(n);
    for (const [p, train] of [[0.5, false], [0, true], [0, false]] as const) {
      const y = await forward(x, p, 3, 9, 1, train);
      assert.deepStrictEqual(y, x, `forward p=${p} train=${train}`);
      const dX = poisoned([n]);
      dropoutBackward(rt, Tensor.from(rt, x), dX, p, stateOf(3, 9), 1, train);
      assert.deepStrictEqual(await dX.read(), x, `backward p=${p} train=${train}`);
      assertClose(y, x, 1e-5, "dropout eval fwd");
    }
  }
});

Deno.test("dropout in place (y = x) uses the same mask", async () => {
  const n = 257, p = 0.3;
  const x = nonzero(n);
  const T = Tensor.from(rt, x);
  dropoutForward(rt, T, T, p, stateOf(5, 2), 4, true);
  const s = dropoutScales(n, p, 5, 2, 4);
  const y = await T.read();
  assertMask(y, s, "dropout fwd in place");
  assertClose(y, dropoutRef(x, s), 1e-5, "dropout fwd");
  dropoutBackward(rt, T, T, p, stateOf(5, 2), 4, true);
  assertClose(await T.read(), dropoutRef(dropoutRef(x, s), s), 1e-4, "dropout bwd");
});

Deno.test("addDropout: res += dropout(y); backward = identity into dres + dropoutBackward", async () => {
  for (const n of [...AWKWARD, 3000]) {
    for (const [p, train] of [[0.2, true], [0.2, false], [0, true]] as const) {
      const seed = 99, step = 4, stream = 6;
      const res = rng.uniformArray(n), y = nonzero(n), g = rng.uniformArray(n);
      const st = stateOf(seed, step);
      const s = dropoutScales(n, p, seed, step, stream, train);
      const R = Tensor.from(rt, res);
      addDropout(rt, R, Tensor.from(rt, y), p, st, stream, train);
      assertClose(await R.read(), addDropoutRef(res, y, s), 1e-5, "addDropout fwd");
      // Backward of out = res + dropout(y) for L = Σ g·out: dres = g (identity), dy = dropoutBackward(g).
      const dY = poisoned([n]);
      dropoutBackward(rt, Tensor.from(rt, g), dY, p, st, stream, train);
      const dyRef = dropoutRef(g, s);
      assertClose(await dY.read(), dyRef, 1e-4, "addDropout bwd dy");
      const ys = f64(y), rs = f64(res);
      checkNumeric((v) => dot(g, addDropoutRef(rs, v, s)), ys, dyRef, rng, "addDropout dy fd");
      checkNumeric((v) => dot(g, addDropoutRef(v, ys, s)), rs, g, rng, "addDropout dres fd");
    }
  }
});

Deno.test("residualDropout: out = res + dropout(y), res left intact", async () => {
  for (const n of [...AWKWARD, 3000]) {
    for (const [p, train] of [[0.2, true], [0.2, false], [0, true]] as const) {
      const seed = 7, step = 3, stream = 2;
      const res = rng.uniformArray(n), y = nonzero(n);
      const s = dropoutScales(n, p, seed, step, stream, train);
      const R = Tensor.from(rt, res), out = poisoned([n]);
      residualDropout(rt, R, Tensor.from(rt, y), out, p, stateOf(seed, step), stream, train);
      const got = await out.read();
      assertClose(got, addDropoutRef(res, y, s), 1e-5, "residualDropout fwd");
      assertMask(got.map((v, i) => v - res[i]), s, "residualDropout");
      assertClose(await R.read(), res, 0, "residualDropout keeps res");
    }
  }
});

Deno.test("dropout argument checks", () => {
  const t = Tensor.empty(rt, [7]), u = Tensor.empty(rt, [7]), st = stateOf(1, 1);
  assert.throws(() => dropoutForward(rt, t, u, 1, st, 0, true), /p must be/);
  assert.throws(() => dropoutForward(rt, t, u, 0.1, st, -1, true), /stream/);
  assert.throws(() => dropoutForward(rt, t, u, 0.1, Tensor.empty(rt, [4]), 0, true), /state/);
  assert.throws(() => addDropout(rt, t, t, 0.1, st, 0, true), /same tensor/);
});
