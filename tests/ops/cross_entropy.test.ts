// Cross-entropy (index, one-hot and soft targets) and meanReduce through both kernel families
// (familyTest) vs float64, per element, outputs NaN-poisoned, on N and V that are not multiples of
// any workgroup size.

import { assertClose, checkNumeric, f64, familyTest, poisoned, Rng, rt, Tensor } from "../util.ts";
import { crossEntropy, meanReduce } from "../../ops/cross_entropy.ts";
import { crossEntropyLossRef, crossEntropyRef, type Targets } from "../reference/cross_entropy.ts";

const rng = new Rng(4321);

type Kind = "index" | "onehot" | "soft";

function makeTargets(kind: Kind, N: number, V: number): Targets {
  if (kind === "index") return Uint32Array.from({ length: N }, () => rng.int(V));
  const t = new Float32Array(N * V);
  for (let r = 0; r < N; r++) {
    if (kind === "onehot") {
      t[r * V + rng.int(V)] = 1;
    } else {
      // Soft targets: a random distribution per row (sums to ~1, as label smoothing or distillation).
      let s = 0;
      for (let c = 0; c < V; c++) s += t[r * V + c] = rng.uniform();
      for (let c = 0; c < V; c++) t[r * V + c] /= s;
    }
  }
  return t;
}

const toTensor = (t: Targets) =>
  t instanceof Uint32Array ? Tensor.from(rt, t) : Tensor.from(rt, Float32Array.from(t));

/** A 1-element loss view at a 256-byte offset inside a bigger poisoned buffer (as a metrics slot). */
function lossSlot(): { all: Tensor; loss: Tensor } {
  const all = poisoned([192]);
  return { all, loss: new Tensor(rt, all.buffer, 256, [1]) };
}

async function run(logits: Float32Array, targets: Targets, N: number, V: number, grad = true) {
  const X = Tensor.from(rt, logits), T = toTensor(targets);
  const D = grad ? poisoned([N * V]) : null, R = poisoned([N]);
  const { all, loss } = lossSlot();
  crossEntropy(rt, X, T, D, R, loss, N, V);
  const slot = await all.read();
  for (let i = 0; i < slot.length; i++) {
    if (i !== 64 && !Number.isNaN(slot[i])) throw new Error(`loss slot: wrote outside its view at ${i}`);
  }
  return { loss: slot[64], rowLoss: await R.read(), dlogits: D ? await D.read() : null };
}

familyTest("crossEntropy: index, one-hot and soft targets vs float64 on awkward shapes", async () => {
  for (const N of [1, 7, 65, 129, 1031]) {
    for (const V of [1, 7, 64, 65, 66, 129, 385]) {
      for (const kind of ["index", "onehot", "soft"] as Kind[]) {
        const x = rng.uniformArray(N * V, -4, 4);
        const t = makeTargets(kind, N, V);
        const got = await run(x, t, N, V);
        const want = crossEntropyRef(x, t, N, V);
        const tag = `${kind} (${N}, ${V})`;
        assertClose(got.rowLoss, want.rowLoss, 1e-5, `ce rowLoss ${tag}`);
        assertClose([got.loss], [want.loss], 1e-5, `ce loss ${tag}`);
        assertClose(got.dlogits!, want.dlogits, 1e-4, `ce dlogits ${tag}`);
      }
    }
  }
});

familyTest("crossEntropy: without dlogits writes only the losses", async () => {
  for (const [N, V] of [[65, 129], [7, 385]]) {
    for (const kind of ["index", "soft"] as Kind[]) {
      const x = rng.uniformArray(N * V, -3, 3), t = makeTargets(kind, N, V);
      const got = await run(x, t, N, V, false);
      const want = crossEntropyRef(x, t, N, V);
      assertClose(got.rowLoss, want.rowLoss, 1e-5, `ce rowLoss ${kind}`);
      assertClose([got.loss], [want.loss], 1e-5, `ce loss ${kind}`);
    }
  }
});

Deno.test("crossEntropy: analytic float64 gradient agrees with finite differences", () => {
  for (const kind of ["index", "onehot", "soft"] as Kind[]) {
    const N = 7, V = 13;
    const x = f64(rng.uniformArray(N * V, -3, 3)), t = makeTargets(kind, N, V);
    const g = crossEntropyRef(x, t, N, V).dlogits;
    checkNumeric((v) => crossEntropyLossRef(v, t, N, V), x, g, rng, `ce dlogits fd ${kind}`, 12);
  }
});

familyTest("crossEntropy: large logits (±80, ±1000) stay finite and accurate", async () => {
  for (const scale of [80, 1000]) {
    const N = 65, V = 65;
    for (const kind of ["index", "soft"] as Kind[]) {
      const x = rng.uniformArray(N * V, -scale, scale);
      const t = makeTargets(kind, N, V);
      const got = await run(x, t, N, V);
      const want = crossEntropyRef(x, t, N, V);
      assertClose(got.rowLoss, want.rowLoss, 1e-5, `ce rowLoss large ${kind}`);
      assertClose([got.loss], [want.loss], 1e-5, `ce loss large ${kind}`);
      assertClose(got.dlogits!, want.dlogits, 1e-4, `ce dlogits large ${kind}`);
    }
  }
});

familyTest("crossEntropy: many rows (N = 100003) and a class index >= V gives a NaN row", async () => {
  const N = 100003, V = 7;
  const x = rng.uniformArray(N * V, -2, 2), t = makeTargets("index", N, V);
  const got = await run(x, t, N, V);
  const want = crossEntropyRef(x, t, N, V);
  assertClose([got.loss], [want.loss], 1e-5, "ce loss 100k rows");
  assertClose(got.dlogits!, want.dlogits, 1e-4, "ce dlogits 100k rows");

  const bad = Uint32Array.from({ length: 7 }, () => rng.int(5));
  bad[3] = 5;
  const y = rng.uniformArray(7 * 5);
  const r = await run(y, bad, 7, 5);
  const ok = crossEntropyRef(y, bad, 7, 5);
  if (!Number.isNaN(r.rowLoss[3]) || !Number.isNaN(r.loss)) {
    throw new Error("invalid index: row loss/loss not NaN");
  }
  for (let c = 0; c < 5; c++) {
    if (!Number.isNaN(r.dlogits![15 + c])) throw new Error("invalid index: dlogits not NaN");
  }
  const keep = [0, 1, 2, 4, 5, 6];
  assertClose(
    keep.map((i) => r.rowLoss[i]),
    keep.map((i) => ok.rowLoss[i]),
    1e-5,
    "ce rowLoss around invalid",
  );
});

familyTest("meanReduce: out[0] = mean of the first n values, for n from 1 to 100k", async () => {
  for (const n of [1, 7, 65, 255, 256, 257, 1000, 4099, 16384, 100000, 100003]) {
    // Positive values, like losses (a near-zero mean would make relative error meaningless).
    const x = new Float32Array(n + 5).fill(NaN);
    x.set(rng.uniformArray(n, 0.5, 5));
    const { all, loss } = lossSlot();
    meanReduce(rt, Tensor.from(rt, x), loss, n);
    const got = (await all.read())[64];
    let s = 0;
    for (let i = 0; i < n; i++) s += x[i];
    assertClose([got], [s / n], 1e-5, "meanReduce");
  }
});
