// Tensors past one storage binding, on a runtime whose binding cap is set tiny (rt.maxBindingBytes):
// chunked products (ops/matmul/chunk.ts) and windowed embeddings against the same ops uncapped,
// both families, awkward shapes; the optimizer over parameter shards against the single flat buffer.

import assert from "node:assert/strict";
import { assertClose, familyTest, poisoned, Rng, rt, Tensor } from "../util.ts";
import { matmul, type MatmulOpts } from "../../ops/matmul.ts";
import { embeddingBackward, embeddingForward } from "../../ops/embedding.ts";
import { type ParamSpec, ParamStore } from "../../ops/tensor.ts";
import { Optimizer } from "../../models/common.ts";

const rng = new Rng(4242);
const CAP = 16 << 10; // 16 KiB: every tensor below of more than 4096 floats is cut
const MATMUL_CAP = 64 << 10; // 64 KiB: 64 rows of up to 256 floats fit (odd row lengths align to 64 rows)

/** Run `fn` with the runtime's binding cap at `bytes`. */
export async function capped<T>(bytes: number, fn: () => Promise<T> | T): Promise<T> {
  const before = rt.maxBindingBytes;
  rt.maxBindingBytes = bytes;
  try {
    return await fn();
  } finally {
    rt.maxBindingBytes = before;
  }
}

// [M, N, K, transA, transB, options (bias / rowSums: {} = draw one)]: the head's three products (x·Wᵀ, dY·W, dYᵀ·x with the bias
// gradient) and the other layouts, with sizes that are multiples of nothing.
const CASES: [number, number, number, boolean, boolean, MatmulOpts][] = [
  [37, 301, 101, false, true, { bias: {} as Tensor, epilogue: "gelu" }], // x·Wᵀ: N blocks, scatter
  [37, 101, 301, false, false, {}], // dY·W: K blocks of W, dY gathered
  [301, 101, 37, true, false, { rowSums: {} as Tensor }], // dYᵀ·x: M blocks, dY gathered
  [136, 128, 144, true, true, {}], // every operand cut
  [130, 45, 140, false, false, { accumulate: true }],
  [12, 1100, 17, false, true, { accumulate: true }], // a scatter that adds
];

familyTest("matmul under a 64 KiB binding cap = the same product uncapped", async () => {
  for (const [M, N, K, transA, transB, o] of CASES) {
    const a = rng.uniformArray(M * K), b = rng.uniformArray(K * N);
    const init = o.accumulate ? rng.uniformArray(M * N) : undefined;
    const opts = { ...o, transA, transB };
    // The bias must be the same in both runs: draw it once.
    const bias = o.bias ? Tensor.from(rt, rng.uniformArray(N)) : null;
    const run = () => {
      const A = Tensor.from(rt, a), B = Tensor.from(rt, b);
      const C = init ? Tensor.from(rt, init) : poisoned([M * N]);
      const rs = o.rowSums ? poisoned([M]) : null;
      const d0 = rt.stats.dispatches;
      matmul(rt, A, B, C, M, N, K, { ...opts, bias, rowSums: rs });
      return { C, rs, dispatches: rt.stats.dispatches - d0 };
    };
    const want = run();
    const got = await capped(MATMUL_CAP, run);
    const what = `${M}x${N}x${K} ${transA ? "T" : "N"}${transB ? "T" : "N"}`;
    assert(got.dispatches > want.dispatches, `${what}: the capped product was not chunked`);
    assertClose(await got.C.read(), await want.C.read(), 1e-5, `chunked matmul ${what}`);
    if (got.rs) assertClose(await got.rs.read(), await want.rs!.read(), 1e-5, `chunked rowSums ${what}`);
  }
});

familyTest("embedding over a table past the binding cap = uncapped (NaN rows, accumulate)", async () => {
  for (const [V, C, n] of [[1000, 7, 300], [301, 33, 65], [130, 40, 90]]) {
    const table = rng.uniformArray(V * C);
    const idx = Uint32Array.from({ length: n }, (_, i) => (i === 5 ? V + 3 : rng.int(V)));
    const dout = rng.uniformArray(n * C), prev = rng.uniformArray(V * C);
    const run = async () => {
      const W = Tensor.from(rt, table, [V, C]), I = Tensor.from(rt, idx);
      const Y = poisoned([n, C]);
      embeddingForward(rt, I, W, Y);
      const Y2 = Tensor.from(rt, dout, [n, C]);
      embeddingForward(rt, I, W, Y2, true);
      const D = poisoned([V, C]), D2 = Tensor.from(rt, prev, [V, C]);
      const DY = Tensor.from(rt, dout, [n, C]);
      embeddingBackward(rt, I, DY, D);
      embeddingBackward(rt, I, DY, D2, true);
      return [await Y.read(), await Y2.read(), await D.read(), await D2.read()];
    };
    const want = await run();
    const got = await capped(CAP, run);
    assert(Number.isNaN(got[0][5 * C]), "an index >= V gives a NaN row");
    ["fwd", "fwd accumulate", "bwd", "bwd accumulate"].forEach((what, i) => {
      assert.deepStrictEqual(got[i].slice(0, 5 * C), want[i].slice(0, 5 * C), `windowed embedding ${what}`);
      assert.deepStrictEqual(got[i].slice(6 * C), want[i].slice(6 * C), `windowed embedding ${what}`);
    });
  }
});

const SPECS = (): ParamSpec[] =>
  [
    ["embedding.weight", [300, 33]], // 39.6 KB: a shard of its own, updated in windows
    ["a.weight", [20, 30]],
    ["a.bias", [20]],
    ["b.weight", [40, 82]],
    ["ln.weight", [81]],
  ].map(([name, shape]) => {
    const s = shape as number[];
    return { name: name as string, shape: s, init: rng.uniformArray(s[0] * (s[1] ?? 1)) };
  });

familyTest("AdamW + clipping + decay groups over parameter shards = over one flat buffer", async () => {
  const specs = SPECS();
  const grads = specs.map((s) => rng.uniformArray(s.init.length, -2, 2));
  const run = async () => {
    const store = new ParamStore(rt, specs);
    store.list.forEach((t, i) => t.grad!.write(grads[i]));
    const opt = new Optimizer(rt, store, "adamw", 1e-2, {
      decayParams: "matmul",
      weightDecay: 0.1,
      gradClip: 1,
    });
    const state = Tensor.from(rt, new Uint32Array([1, 3, 0, 0]), [4]);
    opt.step(state);
    return {
      store,
      params: await store.readAll(),
      moments: await opt.readState(),
      coef: await opt.clipCoef!.read(),
    };
  };
  const flat = await run();
  const sharded = await capped(CAP, run);
  assert.deepStrictEqual(flat.store.shards.length, 1);
  assert(sharded.store.shards.length === 3, `${sharded.store.shards.length} shards under the cap`);
  assert.deepStrictEqual(
    sharded.store.floats,
    flat.store.floats,
    "the flat layout does not depend on the cap",
  );
  assertClose(sharded.coef, flat.coef, 1e-6, "global gradient norm over shards");
  for (const [name, v] of flat.params) {
    assertClose(sharded.params.get(name)!, v, 1e-6, `sharded AdamW ${name}`);
  }
  for (const k of ["adam.m", "adam.v"]) {
    assertClose(sharded.moments.get(k)!, flat.moments.get(k)!, 1e-6, `sharded ${k}`);
  }
});
