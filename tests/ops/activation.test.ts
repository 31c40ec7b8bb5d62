import assert from "node:assert";
import {
  assertClose,
  AWKWARD,
  checkNumeric,
  dot,
  f64,
  familyTest,
  poisoned,
  Rng,
  rt,
  Tensor,
} from "../util.ts";
import {
  geluBackward,
  geluForward,
  leakyReluBackward,
  leakyReluForward,
  reluBackward,
  reluForward,
} from "../../ops/activation.ts";
import { matmul } from "../../ops/matmul.ts";
import {
  erfcRef,
  geluGradRef,
  geluRef,
  leakyReluGradRef,
  leakyReluRef,
  reluGradRef,
  reluRef,
} from "../reference/elementwise.ts";

const rng = new Rng(777);
const SIZES = [...AWKWARD, 256, 257, 65 * 129];

const cases = [
  {
    name: "relu",
    fwd: (x: Tensor, y: Tensor) => reluForward(rt, x, y),
    bwd: (dy: Tensor, y: Tensor, dx: Tensor) => reluBackward(rt, dy, y, dx),
    ref: (x: ArrayLike<number>) => reluRef(x),
    grad: (dy: ArrayLike<number>, y: ArrayLike<number>) => reluGradRef(dy, y),
  },
  {
    name: "leaky_relu",
    fwd: (x: Tensor, y: Tensor) => leakyReluForward(rt, x, y),
    bwd: (dy: Tensor, y: Tensor, dx: Tensor) => leakyReluBackward(rt, dy, y, dx),
    ref: (x: ArrayLike<number>) => leakyReluRef(x),
    grad: (dy: ArrayLike<number>, y: ArrayLike<number>) => leakyReluGradRef(dy, y),
  },
  {
    name: "leaky_relu(0.2)",
    fwd: (x: Tensor, y: Tensor) => leakyReluForward(rt, x, y, 0.2),
    bwd: (dy: Tensor, y: Tensor, dx: Tensor) => leakyReluBackward(rt, dy, y, dx, 0.2),
    ref: (x: ArrayLike<number>) => leakyReluRef(x, 0.2),
    grad: (dy: ArrayLike<number>, y: ArrayLike<number>) => leakyReluGradRef(dy, y, 0.2),
  },
];

for (const c of cases) {
  familyTest(`${c.name} forward/backward vs float64 reference and finite differences`, async () => {
    for (const n of SIZES) {
      const x = rng.uniformArray(n), dy = rng.uniformArray(n);
      const X = Tensor.from(rt, x), Y = poisoned([n]), dX = poisoned([n]);
      c.fwd(X, Y);
      const y = await Y.read();
      assertClose(y, c.ref(x), 1e-5, `${c.name} fwd`);
      // Backward reads the GPU's forward output y, as a model would.
      c.bwd(Tensor.from(rt, dy), Y, dX);
      const g = c.grad(dy, c.ref(x));
      assertClose(await dX.read(), g, 1e-4, `${c.name} bwd`);
      checkNumeric((v) => dot(dy, c.ref(v)), f64(x), g, rng, `${c.name} fd`, 12);
    }
  });

  familyTest(`${c.name} in place (y = x, dx = dy) and x = 0 exactly`, async () => {
    const n = 129;
    const x = rng.uniformArray(n), dy = rng.uniformArray(n);
    x[0] = 0;
    x[5] = -0;
    const T = Tensor.from(rt, x);
    c.fwd(T, T);
    const y = await T.read();
    assertClose(y, c.ref(x), 1e-5, `${c.name} fwd`);
    const D = Tensor.from(rt, dy);
    c.bwd(D, T, D);
    assertClose(await D.read(), c.grad(dy, c.ref(x)), 1e-4, `${c.name} bwd`);
  });
}

familyTest("relu / leaky_relu backward after a matmul with a fused epilogue", async () => {
  const M = 65, N = 7, K = 33;
  const a = rng.uniformArray(M * K), b = rng.uniformArray(K * N), dy = rng.uniformArray(M * N);
  for (const ep of ["relu", "leaky_relu"] as const) {
    const C = poisoned([M * N]), dX = poisoned([M * N]);
    matmul(rt, Tensor.from(rt, a), Tensor.from(rt, b), C, M, N, K, { epilogue: ep });
    const y = await C.read();
    if (ep === "relu") reluBackward(rt, Tensor.from(rt, dy), C, dX);
    else leakyReluBackward(rt, Tensor.from(rt, dy), C, dX);
    const g = ep === "relu" ? reluGradRef(dy, y) : leakyReluGradRef(dy, y);
    assertClose(await dX.read(), g, 1e-4, `${ep} bwd (fused epilogue)`);
  }
});

Deno.test("activation argument checks", () => {
  const t = Tensor.empty(rt, [7]), u = Tensor.empty(rt, [8]);
  assert.throws(() => reluForward(rt, t, u), /elements/);
  assert.throws(() => leakyReluForward(rt, t, Tensor.empty(rt, [7]), -0.1), /slope/);
  // A different view of the output's buffer as input: rejected before WebGPU sees it.
  const shared = new Tensor(rt, t.buffer, 0, [3]), out = new Tensor(rt, t.buffer, 16, [3]);
  assert.throws(() => reluForward(rt, shared, out), /shares a GPU buffer/);
});

// ---------------------------------------------------------------- GELU

const FORMS = ["gelu", "gelu_erf"] as const;

/** Inputs over GELU's whole range: mostly |x| < 4, a few far tails (where 1 + tanh / erfc underflow). */
function geluInputs(n: number): Float32Array {
  const x = rng.uniformArray(n, -4, 4);
  const tails = [-30, -9.5, -6, 6, 9.5, 30, 0, -0, 1e-6, -1e-6];
  for (let i = 0; i < Math.min(n, tails.length); i++) x[(i * 37) % n] = tails[i];
  return x;
}

for (const form of FORMS) {
  familyTest(
    `${form} forward/backward vs float64 (awkward sizes, tails) and finite differences`,
    async () => {
      for (const n of SIZES) {
        const x = geluInputs(n), dy = rng.uniformArray(n);
        const X = Tensor.from(rt, x), Y = poisoned([n]), dX = poisoned([n]);
        geluForward(rt, X, Y, form);
        assertClose(await Y.read(), geluRef(x, form), 1e-5, `${form} fwd`);
        geluBackward(rt, Tensor.from(rt, dy), X, dX, form);
        const g = geluGradRef(dy, x, form);
        assertClose(await dX.read(), g, 1e-5, `${form} bwd`);
        if (n > 1) checkNumeric((v) => dot(dy, geluRef(v, form)), f64(x), g, rng, `${form} fd`, 12);
      }
    },
  );

  familyTest(`${form} in place and as a matmul epilogue (every matmul kernel)`, async () => {
    const n = 129, x = geluInputs(n);
    const T = Tensor.from(rt, x);
    geluForward(rt, T, T, form);
    assertClose(await T.read(), geluRef(x, form), 1e-5, `${form} fwd in place`);
    const M = 65, N = 7, K = 33;
    const a = rng.uniformArray(M * K), b = rng.uniformArray(K * N), bias = rng.uniformArray(N);
    const pre = new Float64Array(M * N);
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = bias[j];
        for (let k = 0; k < K; k++) s += a[i * K + k] * b[k * N + j];
        pre[i * N + j] = s;
      }
    }
    for (const kernel of ["tiled", "window", "storage"] as const) {
      const C = poisoned([M * N]);
      matmul(rt, Tensor.from(rt, a), Tensor.from(rt, b), C, M, N, K, {
        bias: Tensor.from(rt, bias),
        epilogue: form,
        kernel,
      });
      assertClose(await C.read(), geluRef(pre, form), 1e-5, `${form} epilogue (${kernel})`);
    }
  });
}

Deno.test("float64 erfc reference: known values, and the series and continued fraction agree at the seam", () => {
  // erfc(0.5), erfc(1), erfc(3), erfc(-1) to 15 digits (Abramowitz & Stegun, table 7.1 / DLMF).
  const known: [number, number][] = [
    [0.5, 0.4795001221869535],
    [1, 0.15729920705028513],
    [3, 2.209049699858544e-5],
    [-1, 1.8427007929497148],
  ];
  for (const [z, want] of known) {
    const got = erfcRef(z);
    if (!(Math.abs(got - want) <= 1e-14 * Math.abs(want))) {
      throw new Error(`erfc(${z}) = ${got}, want ${want}`);
    }
  }
  const below = erfcRef(2), above = erfcRef(2 + 1e-12);
  if (!(Math.abs(below - above) < 1e-13)) throw new Error(`erfc seam: ${below} vs ${above}`);
});

Deno.test("gelu argument checks", () => {
  const t = Tensor.empty(rt, [7]);
  assert.throws(() => geluForward(rt, t, Tensor.empty(rt, [8])), /elements/);
  // deno-lint-ignore no-explicit-any
  assert.throws(() => geluForward(rt, t, t, "swish" as any), /unknown GELU form/);
});
