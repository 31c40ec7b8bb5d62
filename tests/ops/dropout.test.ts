// Dropout family, through both kernel families. The mask the GPU applies is read back (dropout of a
// ones tensor: every element is 0 or 1/(1-p)) and compared element by element with the host hash
// `dropoutScale` that the float64 references use, so a GPU mask that differed from the host's fails
// here (and the whole-GPT check, which builds its reference on the host hash, would fail too).
// Statistics bound what the hash produces: the dropped fraction is p, neighbours are independent.

import assert from "node:assert";
import { assertClose, AWKWARD, familyTest, poisoned, Rng, rt, Tensor } from "../util.ts";
import { addDropout, dropoutBackward, dropoutForward, residualDropout } from "../../ops/dropout.ts";
import { addDropoutRef, dropoutRef, dropoutScales } from "../reference/elementwise.ts";

const rng = new Rng(2024);
const stateOf = (seed: number, step: number) => Tensor.from(rt, new Uint32Array([seed, step, 0, 0]));
const ones = (n: number) => new Float32Array(n).fill(1);

/** Values bounded away from 0, so "dropped" is exactly "output == 0". */
function nonzero(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (rng.uniform() < 0.5 ? -1 : 1) * rng.range(0.25, 2);
  return a;
}

/** dropoutForward (or dropoutBackward) of x on fresh, NaN-poisoned outputs. */
async function apply(
  x: Float32Array,
  p: number,
  seed: number,
  step: number,
  stream: number,
  train = true,
  backward = false,
): Promise<Float32Array> {
  const Y = poisoned([x.length]);
  (backward ? dropoutBackward : dropoutForward)(
    rt,
    Tensor.from(rt, x),
    Y,
    p,
    stateOf(seed, step),
    stream,
    train,
  );
  return await Y.read();
}

/**
 * `got` is a mask read back from the GPU (dropout of ones): element i must be 0 exactly where the host
 * scale is 0, and the host's 1/(1-p) (to f32 rounding of the division) elsewhere.
 */
function assertMask(got: ArrayLike<number>, scales: Float64Array, label: string): void {
  if (got.length !== scales.length) throw new Error(`${label}: ${got.length} vs ${scales.length} elements`);
  for (let i = 0; i < got.length; i++) {
    const ok = scales[i] === 0 ? got[i] === 0 : Math.abs(got[i] - scales[i]) <= 1e-6 * scales[i];
    if (!ok) throw new Error(`${label}: element ${i} is ${got[i]}, the host hash gives ${scales[i]}`);
  }
}

/** Fraction of elements dropped (== 0). */
const droppedFraction = (y: ArrayLike<number>, from = 0, to = y.length) => {
  let k = 0;
  for (let i = from; i < to; i++) if (y[i] === 0) k++;
  return k / (to - from);
};

const CASES = [[0.1, 1, 1, 0], [0.5, 12345, 77, 3], [0.9, 0xdeadbeef, 1000000, 11], [0.2, 1337, 5000, 14]];

familyTest(
  "dropout: the GPU's mask equals the host dropoutScale element by element, forward and backward",
  async () => {
    for (const n of [...AWKWARD, 1000, 4099]) {
      for (const [p, seed, step, stream] of CASES) {
        const s = dropoutScales(n, p, seed, step, stream);
        const fwd = await apply(ones(n), p, seed, step, stream);
        const bwd = await apply(ones(n), p, seed, step, stream, true, true);
        assertMask(fwd, s, `forward mask n=${n} p=${p}`);
        assertMask(bwd, s, `backward mask n=${n} p=${p}`);
        assert.deepStrictEqual(bwd, fwd, "backward mask != forward mask");
        // On values: y = x·mask, dx = dy·mask.
        const x = nonzero(n), dy = nonzero(n);
        assertClose(await apply(x, p, seed, step, stream), dropoutRef(x, s), 1e-5, "dropout fwd");
        assertClose(
          await apply(dy, p, seed, step, stream, true, true),
          dropoutRef(dy, s),
          1e-4,
          "dropout bwd",
        );
      }
    }
  },
);

familyTest("dropout: the mask check fails for another stream, step, seed or p", async () => {
  const n = 4099, [p, seed, step, stream] = [0.5, 7, 5, 2];
  const got = await apply(ones(n), p, seed, step, stream);
  assertMask(got, dropoutScales(n, p, seed, step, stream), "own mask");
  for (
    const [q, se, st, str] of [[p, seed, step, 3], [p, seed, 6, stream], [p, 8, step, stream], [
      0.4,
      seed,
      step,
      stream,
    ]]
  ) {
    assert.throws(
      () => assertMask(got, dropoutScales(n, q, se, st, str), "other"),
      /host hash/,
      `p ${q} seed ${se} step ${st} stream ${str} passed as the same mask`,
    );
  }
});

familyTest("dropout drops a fraction p, evenly along the tensor, independently for neighbours", async () => {
  const n = 100_000;
  for (const p of [0.1, 0.2, 0.5, 0.9]) {
    const y = await apply(ones(n), p, 42, 1, 0);
    // sd of the fraction is sqrt(p(1-p)/n) <= 0.0016: ±0.01 is > 6 sigma, and fails for a wrong p
    // (these differ by >= 0.1), an all-kept or an all-dropped mask.
    const frac = droppedFraction(y);
    if (!(Math.abs(frac - p) <= 0.01)) throw new Error(`p=${p}: dropped fraction ${frac}`);
    // Each tenth of the tensor (sd <= 0.005, bound 6 sigma): no block of indices kept or dropped whole.
    for (let c = 0; c < 10; c++) {
      const f = droppedFraction(y, (c * n) / 10, ((c + 1) * n) / 10);
      if (!(Math.abs(f - p) <= 0.03)) throw new Error(`p=${p}: tenth ${c} drops ${f}`);
    }
    // Neighbours: both dropped with probability p² (a mask constant over pairs or runs gives p).
    let both = 0;
    for (let i = 0; i + 1 < n; i++) if (y[i] === 0 && y[i + 1] === 0) both++;
    if (!(Math.abs(both / (n - 1) - p * p) <= 0.01)) {
      throw new Error(`p=${p}: neighbours both dropped ${both}`);
    }
  }
});

familyTest(
  "dropout masks differ across steps, streams and seeds, and repeat exactly for the same inputs",
  async () => {
    const n = 10_000, p = 0.5;
    const base = await apply(ones(n), p, 7, 5, 2);
    const again = await apply(ones(n), p, 7, 5, 2);
    assert.deepStrictEqual(new Uint32Array(again.buffer), new Uint32Array(base.buffer), "not deterministic");
    for (const [seed, step, stream] of [[7, 6, 2], [7, 5, 3], [8, 5, 2]]) {
      const other = await apply(ones(n), p, seed, step, stream);
      assertMask(
        other,
        dropoutScales(n, p, seed, step, stream),
        `seed ${seed} step ${step} stream ${stream}`,
      );
      let diff = 0;
      for (let i = 0; i < n; i++) if ((other[i] === 0) !== (base[i] === 0)) diff++;
      // Independent masks disagree on 2p(1-p) = 50% of elements (sd 0.5%).
      if (Math.abs(diff / n - 0.5) > 0.05) {
        throw new Error(`seed ${seed} step ${step} stream ${stream}: only ${diff} of ${n} mask bits differ`);
      }
    }
  },
);

familyTest("dropout eval and p = 0 are the identity (forward and backward)", async () => {
  for (const n of [1, 65, 1000]) {
    const x = nonzero(n);
    for (const [p, train] of [[0.5, false], [0, true], [0, false]] as const) {
      assert.deepStrictEqual(await apply(x, p, 3, 9, 1, train), x, `forward p=${p} train=${train}`);
      assert.deepStrictEqual(await apply(x, p, 3, 9, 1, train, true), x, `backward p=${p} train=${train}`);
    }
  }
});

familyTest("dropout in place (y = x) uses the same mask", async () => {
  const n = 257, p = 0.3;
  const s = dropoutScales(n, p, 5, 2, 4);
  const T = Tensor.from(rt, ones(n));
  dropoutForward(rt, T, T, p, stateOf(5, 2), 4, true);
  assertMask(await T.read(), s, "forward in place");
  const x = nonzero(n);
  T.write(x);
  dropoutForward(rt, T, T, p, stateOf(5, 2), 4, true);
  assertClose(await T.read(), dropoutRef(x, s), 1e-5, "dropout fwd in place");
  dropoutBackward(rt, T, T, p, stateOf(5, 2), 4, true);
  assertClose(await T.read(), dropoutRef(dropoutRef(x, s), s), 1e-4, "dropout bwd in place");
});

familyTest(
  "addDropout: res += dropout(y) with the host mask; its backward is dropoutBackward's mask",
  async () => {
    for (const n of [...AWKWARD, 3000]) {
      for (const [p, train] of [[0.2, true], [0.2, false], [0, true]] as const) {
        const seed = 99, step = 4, stream = 6;
        const s = dropoutScales(n, p, seed, step, stream, train);
        const st = stateOf(seed, step);
        // The mask: res + dropout(ones) − res is the mask (res is exact where the element is dropped).
        const res = rng.uniformArray(n), R = Tensor.from(rt, res);
        addDropout(rt, R, Tensor.from(rt, ones(n)), p, st, stream, train);
        assertMask((await R.read()).map((v, i) => v - res[i]), s, `addDropout mask p=${p} train=${train}`);
        // Values.
        const y = nonzero(n);
        R.write(res);
        addDropout(rt, R, Tensor.from(rt, y), p, st, stream, train);
        assertClose(await R.read(), addDropoutRef(res, y, s), 1e-5, "addDropout fwd");
        // Backward of out = res + dropout(y): dres = dout (identity), dy = dropoutBackward(dout), same mask.
        const g = nonzero(n);
        assertClose(
          await apply(g, p, seed, step, stream, train, true),
          dropoutRef(g, s),
          1e-4,
          "addDropout bwd dy",
        );
      }
    }
  },
);

familyTest("residualDropout: out = res + dropout(y) with the host mask, res left intact", async () => {
  for (const n of [...AWKWARD, 3000]) {
    for (const [p, train] of [[0.2, true], [0.2, false], [0, true]] as const) {
      const seed = 7, step = 3, stream = 2;
      const s = dropoutScales(n, p, seed, step, stream, train);
      const res = rng.uniformArray(n), R = Tensor.from(rt, res);
      for (const y of [ones(n), nonzero(n)]) {
        const out = poisoned([n]);
        residualDropout(rt, R, Tensor.from(rt, y), out, p, stateOf(seed, step), stream, train);
        const got = await out.read();
        assertClose(got, addDropoutRef(res, y, s), 1e-5, "residualDropout fwd");
        if (y[0] === 1 && y[n - 1] === 1) {
          assertMask(got.map((v, i) => v - res[i]), s, `residualDropout mask p=${p} train=${train}`);
        }
      }
      assert.deepStrictEqual(await R.read(), res, "residualDropout changed res");
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
