// Runtime.record / replay: a replay encodes the recorded dispatches and copies again, in order, and
// they read the buffers' contents at the time they run (not when they were recorded).
import assert from "node:assert";
import { assertClose, familyTest, poisoned, Rng, rt, Tensor } from "../util.ts";
import { add, scale } from "../../ops/elementwise.ts";

const rng = new Rng(4242);

familyTest(
  "record/replay re-encodes the same dispatches and copies against the current contents",
  async () => {
    const n = 1031;
    const a = Tensor.from(rt, rng.uniformArray(n)), b = Tensor.from(rt, rng.uniformArray(n));
    const sum = poisoned([n]), copied = poisoned([n]), out = poisoned([n]);
    const before = rt.stats.dispatches;
    const rec = rt.record(() => {
      add(rt, a, b, sum);
      rt.copy(sum, copied);
      scale(rt, copied, out, -1.5);
    });
    const recorded = rt.stats.dispatches - before;
    assert.ok(recorded >= 2, `recorded ${recorded} dispatches`);
    const expect = async (label: string) => {
      const [x, y] = [await a.read(), await b.read()];
      assertClose(await out.read(), Array.from(x, (v, i) => (v + y[i]) * -1.5), 1e-5, label);
    };
    await expect("recorded run");
    for (let round = 0; round < 2; round++) {
      a.write(Float32Array.from(rng.uniformArray(n)));
      sum.poison();
      copied.poison();
      out.poison();
      const d0 = rt.stats.dispatches;
      rt.replay(rec);
      assert.strictEqual(rt.stats.dispatches - d0, recorded);
      await expect(`replay ${round}`);
    }
  },
);

familyTest("record refuses a submit inside it and can record again afterwards", async () => {
  const x = Tensor.from(rt, [1, 2, 3]);
  const y = poisoned([3]);
  assert.throws(() => rt.record(() => rt.submit()), /inside record/);
  assert.throws(() => rt.record(() => rt.record(() => {})), /already recording/);
  const rec = rt.record(() => scale(rt, x, y, 2));
  y.poison();
  rt.replay(rec);
  assertClose(await y.read(), [2, 4, 6], 1e-6, "after a refused record");
});
