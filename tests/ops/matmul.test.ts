import { assertClose, AWKWARD, checkNumeric, dot, f64, poisoned, Rng, rt, Tensor } from "../util.ts";
import { linearBackward, linearForward, matmul, sumRows } from "../../ops/matmul.ts";
import { ParamStore } from "../../ops/tensor.ts";
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
