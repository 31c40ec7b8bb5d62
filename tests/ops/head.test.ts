// The fused, chunked head and loss (ops/head.ts) through both kernel families vs float64, per element:
// loss, row losses and the gradients of x, W and b, at GPT-2's vocabulary (V = 50257, N = 21, C = 24:
// three chunks) and a character one (V = 65, N = 37: five chunks, and one), with and without a bias,
// every output NaN-poisoned; a tied head's gradient accumulated after; one chunk bit-identical to the
// unfused ops; the chunk size. Each chunk reads all of W twice, so at V = 50257 the chunks are few.

import assert from "node:assert";
import { assertClose, familyTest, poisoned, Rng, rt, Tensor } from "../util.ts";
import { HEAD_CHUNK_BYTES, headLogits, headLoss, headRowAlign, headRows } from "../../ops/head.ts";
import { linearBackward, linearForward } from "../../ops/matmul.ts";
import { crossEntropy } from "../../ops/cross_entropy.ts";
import { embeddingBackward } from "../../ops/embedding.ts";
import { ParamStore } from "../../ops/tensor.ts";
import { headRef } from "../reference/head.ts";
import { embeddingGradRef } from "../reference/embedding.ts";

const rng = new Rng(2718);
const C = 24; // chunks start on multiples of 8 rows (256-byte aligned views of x)

interface Case {
  N: number;
  V: number;
  bias: boolean;
  x: Float32Array;
  W: Float32Array;
  b: Float32Array | null;
  tgt: Uint32Array;
  ref: ReturnType<typeof headRef>;
}

const cases = new Map<string, Case>();
/** Random inputs and their float64 result, kept across the two families. */
function inputs(V: number, bias: boolean): Case {
  const key = `${V}/${bias}`;
  let c = cases.get(key);
  if (!c) {
    const N = V > 1000 ? 21 : 37;
    const x = rng.uniformArray(N * C, -2, 2), W = rng.uniformArray(V * C, -0.5, 0.5);
    const b = bias ? rng.uniformArray(V, -1, 1) : null;
    const tgt = Uint32Array.from({ length: N }, () => rng.int(V));
    cases.set(key, c = { N, V, bias, x, W, b, tgt, ref: headRef(x, W, b, tgt, N, C, V) });
  }
  return c;
}

/** The head's operands on the GPU (parameters in a ParamStore, as a model has them), outputs poisoned. */
function upload(c: Case, rows: number) {
  const N = c.N;
  const store = new ParamStore(rt, [
    { name: "W", shape: [c.V, C], init: c.W },
    ...(c.b ? [{ name: "b", shape: [c.V], init: c.b }] : []),
  ]);
  store.grads.poison();
  const W = store.get("W"), b = store.find("b");
  const scratch = () => poisoned([rows, c.V]);
  return {
    h: { xf: Tensor.from(rt, c.x, [N, C]), W, bias: b, N },
    l: {
      targets: Tensor.from(rt, c.tgt),
      rowLoss: poisoned([N]),
      loss: poisoned([1]),
      logits: scratch(),
      rows,
    },
    g: { dlogits: scratch(), dxf: poisoned([N, C]), dW: W.grad!, db: b?.grad ?? null },
  };
}

for (const V of [50257, 65]) {
  familyTest(
    `headLoss V=${V}: loss and the gradients of x, W, b = float64, in chunks of 8 rows${
      V === 65 ? " and in one" : ""
    }`,
    async () => {
      for (const bias of [true, false]) {
        const c = inputs(V, bias);
        for (const rows of V === 65 ? [8, c.N] : [8]) {
          const tag = `V=${V} bias=${bias} rows=${rows}`;
          const { h, l, g } = upload(c, rows);
          headLoss(rt, h, l, g);
          assertClose(await l.loss.read(), [c.ref.loss], 1e-5, `head loss ${tag}`);
          assertClose(await l.rowLoss.read(), c.ref.rowLoss, 1e-5, `head rowLoss ${tag}`);
          assertClose(await g.dxf.read(), c.ref.dx, 1e-4, `head dx ${tag}`);
          assertClose(await g.dW.read(), c.ref.dW, 1e-4, `head dW ${tag}`);
          if (g.db) assertClose(await g.db.read(), c.ref.db, 1e-4, `head db ${tag}`);
          // Evaluation: the losses alone; the gradients are not touched.
          l.rowLoss.poison();
          l.loss.poison();
          g.dxf.poison();
          headLoss(rt, h, l, null);
          assertClose(await l.loss.read(), [c.ref.loss], 1e-5, `head eval loss ${tag}`);
          assertClose(await l.rowLoss.read(), c.ref.rowLoss, 1e-5, `head eval rowLoss ${tag}`);
          assert.ok((await g.dxf.read()).every(Number.isNaN), "eval wrote dxf");
        }
      }
    },
  );
}

familyTest("headLoss with a tied head: the embedding's backward adds to the head's gradient", async () => {
  const c = inputs(65, false), N = c.N;
  const { h, l, g } = upload(c, 8);
  const idx = Uint32Array.from({ length: N }, () => rng.int(c.V)), dres = rng.uniformArray(N * C);
  headLoss(rt, h, l, g);
  embeddingBackward(rt, Tensor.from(rt, idx), Tensor.from(rt, dres, [N, C]), g.dW, true);
  const emb = embeddingGradRef(idx, dres, c.V, C);
  assertClose(await g.dW.read(), c.ref.dW.map((v, i) => v + emb[i]), 1e-4, "tied head + embedding grad");
});

familyTest(
  "headLoss in one chunk is bit-identical to linearForward + crossEntropy + linearBackward",
  async () => {
    const c = inputs(65, true), N = c.N;
    const fused = upload(c, N);
    headLoss(rt, fused.h, fused.l, fused.g);
    const u = upload(c, N);
    const logits = poisoned([N, c.V]), dlogits = poisoned([N, c.V]);
    linearForward(rt, u.h.xf, u.h.W, u.h.bias, logits, N);
    crossEntropy(rt, logits, u.l.targets, dlogits, u.l.rowLoss, u.l.loss, N, c.V);
    linearBackward(rt, dlogits, u.h.xf, u.h.W, u.g.dxf, N, false, u.h.bias);
    for (const k of ["loss", "rowLoss"] as const) {
      assert.deepEqual(
        await fused.l[k].read(),
        await u.l[k].read(),
        k,
      );
    }
    for (const k of ["dxf", "dW", "db"] as const) {
      assert.deepEqual(
        await fused.g[k]!.read(),
        await u.g[k]!.read(),
        k,
      );
    }
  },
);

familyTest("headLogits: rows from an aligned start = float64; a misaligned start is refused", async () => {
  const c = inputs(65, true);
  const { h } = upload(c, 8);
  const out = poisoned([13, c.V]);
  headLogits(rt, h, out, 16, 13);
  assertClose(await out.read(), c.ref.logits.subarray(16 * c.V, 29 * c.V), 1e-5, "headLogits rows 16..29");
  assert.throws(() => headLogits(rt, h, out, 3, 13), /multiple of 8/);
});

Deno.test("headRows: one chunk while N·V fits, else even chunks under the budget on aligned rows", () => {
  assert.equal(headRows(64 * 256, 65, 384), 64 * 256); // nanoGPT's shakespeare-char: one chunk
  const R = headRows(1024, 50257, 768); // GPT-2 at batch 1, block 1024: 7 chunks of 147
  assert.equal(R, 147);
  assert.ok(R * 50257 * 4 <= HEAD_CHUNK_BYTES && Math.ceil(1024 / R) === 7);
  const small = headRows(8 * 1024, 50257, 768, { budget: 16 * 2 ** 20 });
  assert.ok(small * 50257 * 4 <= 16 * 2 ** 20 && small >= 80, `${small}`);
  assert.equal(headRowAlign(24), 8);
  assert.equal(headRowAlign(99), 64);
  assert.equal(headRows(37, 50257, 24, { rows: 5 }), 8); // rounded up to the alignment
  assert.equal(headRows(1000, 50257, 99) % 64, 0);
});
