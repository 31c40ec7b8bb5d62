// The page's half of the tuner tests (tests/web/op_tests.ts imports it; Deno has no IndexedDB): the
// IndexedDB tuning store (web/tune_store.ts) is written by one tuner and read back by the next. Only
// variants with small workgroup arrays are timed (SwiftShader compiles large ones slowly). It throws
// rather than import node:assert, which the page cannot load.

import { rt, Tensor } from "../util.ts";
import { matmul, MatmulTuner, setMatmulTuner, shapeClass } from "../../ops/matmul.ts";
import { GL_MAX_ARRAY_VEC4 } from "../../ops/matmul/variants.ts";
import { idbTuneStore } from "../../web/tune_store.ts";

Deno.test("browser: the IndexedDB tuning store is written, then read back", async () => {
  const store = idbTuneStore(`tinygpt-test-${Date.now()}`);
  if ((await store.read()) !== null) throw new Error("a new database holds a tuning");
  const M = 33, N = 20, K = 24;
  const t1 = await MatmulTuner.create(rt, {
    mode: "on",
    store,
    log: () => {},
    maxArrayVec4: GL_MAX_ARRAY_VEC4,
    reps: 2,
  });
  setMatmulTuner(rt, t1);
  let winner = "";
  try {
    const t = (n: number) => Tensor.from(rt, new Float32Array(n).fill(0.5));
    matmul(rt, t(M * K), t(K * N), Tensor.empty(rt, [M * N]), M, N, K, { kernel: "tiled" });
    [{ winner }] = await t1.tunePending();
  } finally {
    setMatmulTuner(rt, null);
  }
  const t2 = await MatmulTuner.create(rt, { mode: "on", store, log: () => {} });
  if (t2.known !== 1) throw new Error(`read back ${t2.known} classes, want 1`);
  const cls = shapeClass({ M, N, K, batch: 1, transA: false, transB: false });
  const stored = JSON.parse((await store.read())!).adapters[t2.adapter].choices[cls];
  if (stored !== winner) throw new Error(`stored ${stored}, the tuner chose ${winner}`);
});
