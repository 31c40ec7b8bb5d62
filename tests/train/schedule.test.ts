// nanoGPT's get_lr, checked at the points where its pieces meet, and the lecture case (constant lr).

import assert from "node:assert/strict";
import { lrAt, lrForStep } from "../../train/schedule.ts";

const S = { lr: 1e-3, warmupIters: 100, lrDecayIters: 5000, minLr: 1e-4 };

Deno.test("lrAt: warm-up, cosine, floor (nanoGPT's get_lr, it = 0-based update index)", () => {
  assert.equal(lrAt(0, S), 1e-3 * 1 / 101); // the first update already has a nonzero lr
  assert.equal(lrAt(99, S), 1e-3 * 100 / 101);
  assert.equal(lrAt(100, S), 1e-3); // ratio 0: cos(0) = 1
  const mid = lrAt(2550, S); // ratio 1/2: halfway between lr and min_lr
  assert.ok(Math.abs(mid - 5.5e-4) < 1e-15, String(mid));
  assert.ok(Math.abs(lrAt(5000, S) - 1e-4) < 1e-18); // ratio 1
  assert.equal(lrAt(5001, S), 1e-4);
  assert.equal(lrAt(1e6, S), 1e-4);
  for (let it = 100; it < 5000; it += 97) assert.ok(lrAt(it + 1, S) <= lrAt(it, S), `monotone at ${it}`);
  // A quarter of the way: min + (1 + cos(pi/4))/2 * (lr - min).
  const q = 100 + (5000 - 100) / 4;
  assert.ok(Math.abs(lrAt(q, S) - (1e-4 + 0.5 * (1 + Math.SQRT1_2) * 9e-4)) < 1e-15);
  assert.equal(lrForStep(1, S), lrAt(0, S));
});

Deno.test("no warm-up and no decay: exactly the constant lr (the lecture recipe)", () => {
  const c = { lr: 1e-3, warmupIters: 0, lrDecayIters: 0, minLr: 1e-4 };
  for (const it of [0, 1, 99, 100, 4999, 5000, 123456]) assert.equal(lrAt(it, c), 1e-3);
  // Warm-up without decay: linear ramp, then constant.
  const w = { ...c, warmupIters: 3 };
  assert.deepEqual([0, 1, 2, 3, 4].map((it) => lrAt(it, w)), [0.25e-3, 0.5e-3, 0.75e-3, 1e-3, 1e-3]);
});
