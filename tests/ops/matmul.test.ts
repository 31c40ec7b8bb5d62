import { assertClose, AWKWARD, checkNumeric, dot, f64, poisoned, Rng, rt, Tensor } from "../util.ts";
import {
  linearBackward,
  linearForward,
  matmul,
  type MatmulKernel,
  sumRows,
  WINDOW,
} from "../../ops/matmul.ts";
import { ParamStore } from "../../ops/tensor.ts";
import { STORAGE } from "../../ops/runtime.ts";
import { linearGradRef, linearRef, matmulRef } from "../reference/matmul.ts";

const rng = new Rng(1234);

Deno.test("matmul forward: all transpose combinations, batches, awkward shapes", async () => {
  const shapes: [number, number, number, number][] = [
    [1, 1, 1, 1],
    [7, 65, 1, 2],
    [65, 7, 129, 1],
    [129, 65, 7, 3],
    [33, 129, 65, 1],
  ];
  for (const [M, N, K, batch] of shapes) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        const a = rng.uniformArray(batch * M * K), b = rng.uniformArray(batch * K * N);
        const C = poisoned([batch * M * N]);
        matmul(rt, Tensor.from(rt, a), Tensor.from(rt, b), C, M, N, K, { transA, transB, batch });
        const want = matmulRef(a, b, M, N, K, transA, transB, batch);
        assertClose(await C.read(), want, 1e-5, "matmul fwd");
      }
    }
  }
});

Deno.test("matmul epilogues: bias, relu, leaky_relu, accumulate, alpha", async () => {
  const M = 65, N = 7, K = 129;
  const a = rng.uniformArray(M * K), b = rng.uniformArray(K * N), bias = rng.uniformArray(N);
  const base = matmulRef(a, b, M, N, K);
  const withBias = base.map((v, i) => v + bias[i % N]);
  const cases = [
    { ep: "relu" as const, f: (v: number) => Math.max(v, 0) },
    { ep: "leaky_relu" as const, f: (v: number) => (v > 0 ? v : 0.01 * v) },
    { ep: "none" as const, f: (v: number) => v },
  ];
  for (const { ep, f } of cases) {
    const C = poisoned([M * N]);
    matmul(rt, Tensor.from(rt, a), Tensor.from(rt, b), C, M, N, K, {
      bias: Tensor.from(rt, bias),
      epilogue: ep,
    });
    assertClose(await C.read(), withBias.map(f), 1e-5, `matmul bias+${ep}`);
  }
  const init = rng.uniformArray(M * N);
  const C = Tensor.from(rt, init);
  matmul(rt, Tensor.from(rt, a), Tensor.from(rt, b), C, M, N, K, { accumulate: true, alpha: 0.5 });
  assertClose(await C.read(), base.map((v, i) => init[i] + 0.5 * v), 1e-5, "matmul accumulate");
});

Deno.test("sumRows (bias gradient reduction) on awkward shapes", async () => {
  for (const M of AWKWARD) {
    for (const N of [1, 65, 129]) {
      const x = rng.uniformArray(M * N);
      const y = poisoned([N]);
      sumRows(rt, Tensor.from(rt, x), y, M, N);
      const want = new Float64Array(N);
      for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) want[j] += x[i * N + j];
      assertClose(await y.read(), want, 1e-5, "sumRows");
      const prev = rng.uniformArray(N);
      y.write(prev);
      sumRows(rt, Tensor.from(rt, x), y, M, N, true);
      assertClose(await y.read(), want.map((v, j) => v + prev[j]), 1e-5, "sumRows accumulate");
    }
  }
});

Deno.test("linear forward/backward vs float64 reference and finite differences", async () => {
  for (const [n, inp, out] of [[1, 7, 65], [65, 129, 7], [129, 65, 1], [7, 1, 129]]) {
    const w = rng.uniformArray(out * inp), bb = rng.uniformArray(out), x = rng.uniformArray(n * inp);
    const dy = rng.uniformArray(n * out);
    const ps = new ParamStore(rt, [{ name: "w", shape: [out, inp], init: w }, {
      name: "b",
      shape: [out],
      init: bb,
    }]);
    ps.grads.poison();
    const W = ps.get("w"), B = ps.get("b");
    const X = Tensor.from(rt, x), Y = poisoned([n * out]), dX = poisoned([n * inp]);
    linearForward(rt, X, W, B, Y, n);
    assertClose(await Y.read(), linearRef(x, w, bb, n, out, inp), 1e-5, "linear fwd");
    linearBackward(rt, Tensor.from(rt, dy), X, W, dX, n, false, B);
    const g = linearGradRef(dy, x, w, n, out, inp);
    assertClose(await dX.read(), g.dx, 1e-4, "linear bwd dx");
    assertClose(await W.grad!.read(), g.dW, 1e-4, "linear bwd dW");
    assertClose(await B.grad!.read(), g.db, 1e-4, "linear bwd db");
    // The float64 analytic gradient itself agrees with central differences of L = Σ dy·y.
    const xs = f64(x), ws = f64(w);
    checkNumeric((v) => dot(dy, linearRef(v, ws, bb, n, out, inp)), xs, g.dx, rng, "linear dx fd");
    checkNumeric((v) => dot(dy, linearRef(xs, v, bb, n, out, inp)), ws, g.dW, rng, "linear dW fd");
  }
});

Deno.test("linear backward accumulates dx into an existing residual gradient", async () => {
  const n = 7, inp = 65, out = 129;
  const w = rng.uniformArray(out * inp), x = rng.uniformArray(n * inp), dy = rng.uniformArray(n * out);
  const prev = rng.uniformArray(n * inp);
  const ps = new ParamStore(rt, [{ name: "w", shape: [out, inp], init: w }]);
  const dX = Tensor.from(rt, prev);
  linearBackward(rt, Tensor.from(rt, dy), Tensor.from(rt, x), ps.get("w"), dX, n, true);
  const g = linearGradRef(dy, x, w, n, out, inp);
  assertClose(await dX.read(), g.dx.map((v, i) => v + prev[i]), 1e-4, "linear bwd dx accumulate");
});

// The window kernel reads operands through 64 KiB uniform-buffer windows; these shapes need several
// windows per operand (row blocks, column blocks, k blocks within a dispatch and across dispatches,
// unaligned window starts) so every tiling path is compared with the float64 reference.
const BIG: [number, number, number, boolean, boolean, number][] = [
  [600, 130, 70, false, true, 1], // A: row blocks
  [300, 70, 200, false, false, 1], // A: row blocks, B: one window
  [70, 129, 700, true, false, 1], // k blocks over two dispatches
  [65, 300, 257, true, true, 1], // B needs column blocks and k blocks
  [5, 600, 70, false, true, 1], // one row block, column blocks
  [700, 7, 65, false, false, 1], // K = 65: windows start unaligned
  [300, 70, 130, false, true, 2], // batches of several windows
  [70, 100, 600, false, true, 1], // B [N, K] with K = 600: only a narrow tile fits a window
];

Deno.test("window matmul: products spanning many uniform-buffer windows", async () => {
  for (const [M, N, K, transA, transB, batch] of BIG) {
    if (batch * Math.max(M * K, K * N) <= WINDOW) throw new Error("shape fits one window: not a window test");
    const a = rng.uniformArray(batch * M * K), b = rng.uniformArray(batch * K * N);
    const want = matmulRef(a, b, M, N, K, transA, transB, batch);
    for (const kernel of ["window", "storage"] as MatmulKernel[]) {
      const C = poisoned([batch * M * N]);
      matmul(rt, Tensor.from(rt, a), Tensor.from(rt, b), C, M, N, K, { transA, transB, batch, kernel });
      assertClose(await C.read(), want, 1e-5, `matmul ${kernel} ${M}x${N}x${K}`);
    }
  }
});

Deno.test("window matmul: bias + relu and accumulate + alpha when K is split across dispatches", async () => {
  const M = 70, N = 129, K = 700;
  const a = rng.uniformArray(K * M), b = rng.uniformArray(K * N), bias = rng.uniformArray(N);
  const base = matmulRef(a, b, M, N, K, true, false);
  const C = poisoned([M * N]);
  matmul(rt, Tensor.from(rt, a), Tensor.from(rt, b), C, M, N, K, {
    transA: true,
    bias: Tensor.from(rt, bias),
    epilogue: "relu",
  });
  assertClose(await C.read(), base.map((v, i) => Math.max(0, v + bias[i % N])), 1e-5, "split-K bias+relu");
  const init = rng.uniformArray(M * N);
  const D = Tensor.from(rt, init);
  matmul(rt, Tensor.from(rt, a), Tensor.from(rt, b), D, M, N, K, {
    transA: true,
    accumulate: true,
    alpha: -0.5,
  });
  assertClose(await D.read(), base.map((v, i) => init[i] - 0.5 * v), 1e-5, "split-K accumulate");
});

Deno.test("matmul rowSums: the fused bias gradient, both kernels, split K", async () => {
  for (const [M, N, K, transA] of [[70, 129, 700, true], [33, 65, 300, false]] as const) {
    const a = rng.uniformArray(M * K), b = rng.uniformArray(K * N);
    const want = new Float64Array(M);
    for (let i = 0; i < M; i++) for (let k = 0; k < K; k++) want[i] += transA ? a[k * M + i] : a[i * K + k];
    for (const kernel of ["window", "storage"] as MatmulKernel[]) {
      const C = poisoned([M * N]), rs = poisoned([M]);
      matmul(rt, Tensor.from(rt, a), Tensor.from(rt, b), C, M, N, K, { transA, rowSums: rs, kernel });
      assertClose(await C.read(), matmulRef(a, b, M, N, K, transA), 1e-5, `rowSums ${kernel} C`);
      assertClose(await rs.read(), want, 1e-5, `rowSums ${kernel}`);
      const prev = rng.uniformArray(M);
      rs.write(prev);
      const D = Tensor.from(rt, new Float32Array(M * N));
      matmul(rt, Tensor.from(rt, a), Tensor.from(rt, b), D, M, N, K, {
        transA,
        rowSums: rs,
        kernel,
        accumulate: true,
      });
      assertClose(await rs.read(), want.map((v, i) => v + prev[i]), 1e-5, `rowSums ${kernel} accumulate`);
    }
  }
});

Deno.test("window matmul binds operands in place when their buffer has UNIFORM usage", async () => {
  const M = 300, N = 70, K = 130;
  const a = rng.uniformArray(M * K), b = rng.uniformArray(K * N);
  // Operands at offsets that are not window-aligned, in buffers with room for whole windows after them.
  const place = (data: Float32Array, offsetFloats: number) => {
    const buf = rt.createBuffer(
      (offsetFloats + data.length) * 4 + WINDOW * 4,
      STORAGE | 0x40,
      "uniform-usage",
    );
    const t = new Tensor(rt, buf, offsetFloats * 4, [data.length]);
    t.write(data);
    return t;
  };
  const C = poisoned([M * N]);
  const A = place(a, 64 + 3), B = place(b, 5);
  let copies = 0;
  const copy = rt.copy;
  rt.copy = (...args) => (copies++, copy.apply(rt, args));
  try {
    matmul(rt, A, B, C, M, N, K);
  } finally {
    rt.copy = copy;
  }
  assertClose(await C.read(), matmulRef(a, b, M, N, K), 1e-5, "matmul in-place windows");
  if (copies !== 0) throw new Error(`in-place windows made ${copies} staging copies`);
});

Deno.test("window matmul: a repeated product allocates nothing after its first run", async () => {
  const M = 600, N = 130, K = 70;
  const A = Tensor.from(rt, rng.uniformArray(M * K)), B = Tensor.from(rt, rng.uniformArray(N * K));
  const C = Tensor.empty(rt, [M * N]), bias = Tensor.from(rt, rng.uniformArray(N));
  const run = () => matmul(rt, A, B, C, M, N, K, { transB: true, bias, epilogue: "relu" });
  run();
  await rt.sync();
  const s = { ...rt.stats };
  run();
  run();
  await rt.sync();
  for (const k of ["buffersCreated", "bindGroupsCreated", "uniformsCreated", "pipelinesCreated"] as const) {
    if (rt.stats[k] !== s[k]) throw new Error(`${k} grew from ${s[k]} to ${rt.stats[k]}`);
  }
});
