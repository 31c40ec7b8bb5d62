// The matmul family against the float64 reference (tests/reference/matmul.ts), per element, with
// NaN-poisoned outputs. Every familyTest runs twice: through the gpu family (the tiled kernel) and
// the cpu family (window kernel, or the storage kernel where the window plan is long).
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
  cpuDispatches,
  linearBackward,
  linearForward,
  matmul,
  type MatmulKernel,
  type MatmulOpts,
  MAX_WINDOW_DISPATCHES,
  sumRows,
  WINDOW,
  windowDispatches,
} from "../../ops/matmul.ts";
import { GPU_MATMUL_WORKGROUP_BYTES } from "../../ops/matmul/gpu.ts";
import { ParamStore } from "../../ops/tensor.ts";
import { type KernelFamily, STORAGE } from "../../ops/runtime.ts";
import { linearGradRef, linearRef, matmulRef, rowSumsRef } from "../reference/matmul.ts";

const rng = new Rng(1234);
const TRANS = [[false, false], [false, true], [true, false], [true, true]] as const;
const ACTS = {
  none: (v: number) => v,
  relu: (v: number) => Math.max(v, 0),
  leaky_relu: (v: number) => (v > 0 ? v : 0.01 * v),
};

/**
 * The kernels a family test runs: the family's default choice, and on the cpu family also the storage
 * kernel (the default picks the window kernel for every product small enough to check in float64).
 */
function kernelsOf(family: KernelFamily): (MatmulKernel | undefined)[] {
  return family === "gpu" ? [undefined] : [undefined, "storage"];
}

/** Run one product on fresh tensors (C poisoned unless `init`) and return C. */
async function run(
  a: Float32Array,
  b: Float32Array,
  M: number,
  N: number,
  K: number,
  o: MatmulOpts,
  init?: Float32Array,
): Promise<Float32Array> {
  const C = init ? Tensor.from(rt, init) : poisoned([(o.batch ?? 1) * M * N]);
  matmul(rt, Tensor.from(rt, a), Tensor.from(rt, b), C, M, N, K, o);
  return await C.read();
}

// M, N, K, batch: 1, 7, 65, 129 (not multiples of any tile), K = 1 and K > the k step, and shapes
// whose contiguous dimensions are multiples of 4 but not of the tiles (the tiled kernel's vec4 loads).
const SHAPES: [number, number, number, number][] = [
  [1, 1, 1, 1],
  [7, 65, 1, 2],
  [65, 7, 129, 1],
  [129, 65, 7, 3],
  [33, 129, 65, 1],
  [68, 132, 20, 2],
  [132, 4, 68, 1],
];

familyTest("matmul forward: all transpose combinations, batches, awkward shapes", async (family) => {
  for (const kernel of kernelsOf(family)) {
    for (const [M, N, K, batch] of SHAPES) {
      for (const [transA, transB] of TRANS) {
        const a = rng.uniformArray(batch * M * K), b = rng.uniformArray(batch * K * N);
        const got = await run(a, b, M, N, K, { transA, transB, batch, kernel });
        assertClose(got, matmulRef(a, b, M, N, K, transA, transB, batch), 1e-5, "matmul fwd");
      }
    }
  }
});

familyTest("matmul bias with each epilogue, alpha, all transposes", async (family) => {
  for (const kernel of kernelsOf(family)) {
    for (const [M, N, K] of [[65, 7, 129], [7, 129, 65], [68, 132, 20]]) {
      for (const [transA, transB] of TRANS) {
        const a = rng.uniformArray(M * K), b = rng.uniformArray(K * N), bias = rng.uniformArray(N);
        const base = matmulRef(a, b, M, N, K, transA, transB);
        for (const [ep, f] of Object.entries(ACTS) as [keyof typeof ACTS, (v: number) => number][]) {
          const alpha = ep === "none" ? -0.75 : 1;
          const got = await run(a, b, M, N, K, {
            transA,
            transB,
            bias: Tensor.from(rt, bias),
            epilogue: ep,
            alpha,
            kernel,
          });
          assertClose(got, base.map((v, i) => f(alpha * v + bias[i % N])), 1e-5, `matmul bias+${ep}`);
        }
        const relu = await run(a, b, M, N, K, { transA, transB, epilogue: "relu", kernel });
        assertClose(relu, base.map(ACTS.relu), 1e-5, "matmul relu without bias");
      }
    }
  }
});

familyTest("matmul accumulate with alpha, batched", async (family) => {
  for (const kernel of kernelsOf(family)) {
    for (const [M, N, K, batch] of [[65, 7, 129, 1], [7, 129, 65, 2], [129, 65, 1, 1]]) {
      for (const [transA, transB] of TRANS) {
        const a = rng.uniformArray(batch * M * K), b = rng.uniformArray(batch * K * N);
        const init = rng.uniformArray(batch * M * N);
        const got = await run(
          a,
          b,
          M,
          N,
          K,
          { transA, transB, batch, accumulate: true, alpha: 0.5, kernel },
          init,
        );
        const base = matmulRef(a, b, M, N, K, transA, transB, batch);
        assertClose(got, base.map((v, i) => init[i] + 0.5 * v), 1e-5, "matmul accumulate");
      }
    }
  }
});

familyTest("matmul rowSums: the fused bias gradient, with and without accumulate", async (family) => {
  for (const kernel of kernelsOf(family)) {
    for (
      const [M, N, K, transA] of [[70, 129, 700, true], [33, 65, 300, false], [7, 1, 129, true], [
        129,
        7,
        1,
        false,
      ]] as const
    ) {
      const a = rng.uniformArray(M * K), b = rng.uniformArray(K * N);
      const want = rowSumsRef(a, M, K, transA);
      const C = poisoned([M * N]), rs = poisoned([M]);
      matmul(rt, Tensor.from(rt, a), Tensor.from(rt, b), C, M, N, K, { transA, rowSums: rs, kernel });
      assertClose(await C.read(), matmulRef(a, b, M, N, K, transA), 1e-5, "rowSums C");
      assertClose(await rs.read(), want, 1e-5, "rowSums");
      const prev = rng.uniformArray(M), init = rng.uniformArray(M * N);
      rs.write(prev);
      const D = Tensor.from(rt, init);
      matmul(rt, Tensor.from(rt, a), Tensor.from(rt, b), D, M, N, K, {
        transA,
        rowSums: rs,
        accumulate: true,
        kernel,
      });
      const base = matmulRef(a, b, M, N, K, transA);
      assertClose(await D.read(), base.map((v, i) => v + init[i]), 1e-5, "rowSums accumulate C");
      assertClose(await rs.read(), want.map((v, i) => v + prev[i]), 1e-5, "rowSums accumulate");
    }
  }
});

familyTest("matmul operands and outputs as views at non-zero offsets of shared buffers", async (family) => {
  for (const kernel of kernelsOf(family)) {
    const M = 65, N = 129, K = 68;
    const a = rng.uniformArray(M * K), b = rng.uniformArray(K * N), bias = rng.uniformArray(N);
    // A, B and the bias in one buffer, C in another (a dispatch cannot read and write one buffer),
    // each at a non-zero 256-byte-aligned offset (a storage binding's alignment).
    const at = [64, 64 + 4480, 64 + 4480 + 8832];
    const inputs = rt.createBuffer((at[2] + N) * 4), out = rt.createBuffer((128 + M * N) * 4);
    const view = (i: number, n: number) => new Tensor(rt, inputs, at[i] * 4, [n]);
    const A = view(0, M * K), B = view(1, K * N), bi = view(2, N), C = new Tensor(rt, out, 128 * 4, [M * N]);
    A.write(a), B.write(b), bi.write(bias), C.poison();
    for (const [transA, transB] of TRANS) {
      matmul(rt, A, B, C, M, N, K, { transA, transB, bias: bi, epilogue: "leaky_relu", kernel });
      const want = matmulRef(a, b, M, N, K, transA, transB).map((v, i) => ACTS.leaky_relu(v + bias[i % N]));
      assertClose(await C.read(), want, 1e-5, "matmul views");
    }
  }
});

familyTest("sumRows (bias gradient reduction) on awkward shapes", async () => {
  for (const M of AWKWARD) {
    for (const N of [1, 65, 129]) {
      const x = rng.uniformArray(M * N);
      const y = poisoned([N]);
      sumRows(rt, Tensor.from(rt, x), y, M, N);
      const want = rowSumsRef(x, N, M, true);
      assertClose(await y.read(), want, 1e-5, "sumRows");
      const prev = rng.uniformArray(N);
      y.write(prev);
      sumRows(rt, Tensor.from(rt, x), y, M, N, true);
      assertClose(await y.read(), want.map((v, j) => v + prev[j]), 1e-5, "sumRows accumulate");
    }
  }
});

familyTest("linear forward/backward vs float64 reference and finite differences", async () => {
  for (const [n, inp, out] of [[1, 7, 65], [65, 129, 7], [129, 65, 1], [7, 1, 129], [68, 132, 20]]) {
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

familyTest("linear backward accumulates dx into an existing residual gradient", async () => {
  const n = 7, inp = 65, out = 129;
  const w = rng.uniformArray(out * inp), x = rng.uniformArray(n * inp), dy = rng.uniformArray(n * out);
  const prev = rng.uniformArray(n * inp);
  const ps = new ParamStore(rt, [{ name: "w", shape: [out, inp], init: w }]);
  const dX = Tensor.from(rt, prev);
  linearBackward(rt, Tensor.from(rt, dy), Tensor.from(rt, x), ps.get("w"), dX, n, true);
  const g = linearGradRef(dy, x, w, n, out, inp);
  assertClose(await dX.read(), g.dx.map((v, i) => v + prev[i]), 1e-4, "linear bwd dx accumulate");
});

familyTest("matmul: a repeated product allocates nothing after its first run", async () => {
  const M = 600, N = 130, K = 70;
  const A = Tensor.from(rt, rng.uniformArray(M * K)), B = Tensor.from(rt, rng.uniformArray(N * K));
  const C = Tensor.empty(rt, [M * N]), bias = Tensor.from(rt, rng.uniformArray(N));
  const go = () => matmul(rt, A, B, C, M, N, K, { transB: true, bias, epilogue: "relu" });
  go();
  await rt.sync();
  const s = { ...rt.stats };
  go();
  go();
  await rt.sync();
  for (const k of ["buffersCreated", "bindGroupsCreated", "uniformsCreated", "pipelinesCreated"] as const) {
    if (rt.stats[k] !== s[k]) throw new Error(`${k} grew from ${s[k]} to ${rt.stats[k]}`);
  }
});

// ---------------------------------------------------------------- dispatch counts

/** The products of one training step of a GPT with n_embd C, B·T tokens and vocabulary V. */
function stepShapes(BT: number, C: number, V: number): [string, number, number, number, boolean, boolean][] {
  const out: [string, number, number, number, boolean, boolean][] = [];
  for (
    const [name, inp, o] of [["qkv", C, 3 * C], ["proj", C, C], ["fc", C, 4 * C], ["mlp", 4 * C, C], [
      "head",
      C,
      V,
    ]] as const
  ) {
    out.push([`${name} fwd`, BT, o, inp, false, true]);
    out.push([`${name} dx`, BT, inp, o, false, false]);
    out.push([`${name} dW`, o, inp, BT, true, false]);
  }
  return out;
}

Deno.test("cpu family: nanoGPT shakespeare-char products take few dispatches, the lecture's keep the window plan", () => {
  const ubos = rt.device.limits.maxUniformBuffersPerShaderStage;
  const count = (BT: number, C: number) =>
    stepShapes(BT, C, 65).map(([name, M, N, K, tA, tB]) => ({
      name: `${name} ${M}x${N}x${K}`,
      n: cpuDispatches({ M, N, K, transA: tA, transB: tB, batch: 1 }, ubos),
      w: windowDispatches({ M, N, K, transA: tA, transB: tB, batch: 1 }, ubos),
    }));
  for (
    const [B, T, C, most] of [[64, 256, 384, 3], [4, 256, 384, MAX_WINDOW_DISPATCHES], [
      64,
      32,
      64,
      MAX_WINDOW_DISPATCHES,
    ]]
  ) {
    const products = count(B * T, C);
    for (const { name, n } of products) {
      if (!(n >= 1 && n <= most)) throw new Error(`batch ${B} n_embd ${C} ${name}: ${n} dispatches`);
    }
    // The 12 products of one transformer block: within the step budget of 60 dispatches per layer
    // with the 14 other dispatches of a block.
    const layer = products.slice(0, 12).reduce((s, p) => s + p.n, 0);
    if (layer + 14 > 60) throw new Error(`batch ${B} n_embd ${C}: ${layer} matmul dispatches per layer`);
  }
  // The lecture model's products keep the window kernel (its plans are short).
  for (const { name, n, w } of count(64 * 32, 64)) {
    if (n !== w) throw new Error(`lecture ${name}: not the window plan (${w})`);
  }
});

Deno.test("cpu family: big products record the dispatches the planner predicts, and are right", async () => {
  const before = rt.kernels;
  rt.kernels = "cpu";
  try {
    const ubos = rt.device.limits.maxUniformBuffersPerShaderStage;
    // qkv forward of 256 tokens at n_embd 384; a head weight gradient over 4096 tokens with its bias.
    for (
      const [M, N, K, transA, transB] of [[256, 1152, 384, false, true], [
        384,
        65,
        4096,
        true,
        false,
      ]] as const
    ) {
      const a = rng.uniformArray(M * K), b = rng.uniformArray(K * N);
      const C = poisoned([M * N]), rs = poisoned([M]);
      const d0 = rt.stats.dispatches;
      matmul(rt, Tensor.from(rt, a), Tensor.from(rt, b), C, M, N, K, { transA, transB, rowSums: rs });
      const n = rt.stats.dispatches - d0;
      const want = cpuDispatches({ M, N, K, transA: transA, transB: transB, batch: 1 }, ubos);
      if (
        n !== want || windowDispatches({ M, N, K, transA: transA, transB: transB, batch: 1 }, ubos) <= want
      ) {
        throw new Error(`${M}x${N}x${K}: ${n} dispatches, planner says ${want}`);
      }
      assertClose(await C.read(), matmulRef(a, b, M, N, K, transA, transB), 1e-5, "big product");
      assertClose(await rs.read(), rowSumsRef(a, M, K, transA), 1e-5, "big product rowSums");
    }
  } finally {
    rt.kernels = before;
  }
});

familyTest(
  "matmul dispatches per product: one on gpu (256 invocations), a short window plan on cpu",
  (family) => {
    const M = 129, N = 65, K = 7, batch = 3;
    const A = Tensor.from(rt, rng.uniformArray(batch * M * K)),
      B = Tensor.from(rt, rng.uniformArray(batch * K * N));
    rt.startTrace();
    matmul(rt, A, B, Tensor.empty(rt, [batch * M * N]), M, N, K, { batch });
    const trace = rt.stopTrace();
    if (family === "gpu") {
      if (trace.length !== 1 || trace[0].workgroupSize !== 256) {
        throw new Error(
          `gpu trace: ${JSON.stringify(trace)}`,
        );
      }
      if (GPU_MATMUL_WORKGROUP_BYTES > 16384) {
        throw new Error(
          "tiled kernel exceeds 16 KiB of workgroup memory",
        );
      }
    } else if (trace.length < 1 || trace.length > batch * 5) {
      throw new Error(
        `cpu trace: ${trace.length} dispatches`,
      );
    }
  },
);

// ---------------------------------------------------------------- each kernel on many-window products

// The window kernel reads operands through 64 KiB uniform-buffer windows; these shapes need several
// windows per operand (row blocks, column blocks, k blocks within a dispatch and across dispatches,
// unaligned window starts) so every tiling path is compared with the float64 reference, and so is
// every other kernel on the same products.
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
const KERNELS: MatmulKernel[] = ["window", "storage", "tiled"];

Deno.test("every matmul kernel on products spanning many uniform-buffer windows", async () => {
  for (const [M, N, K, transA, transB, batch] of BIG) {
    if (batch * Math.max(M * K, K * N) <= WINDOW) throw new Error("shape fits one window: not a window test");
    const a = rng.uniformArray(batch * M * K), b = rng.uniformArray(batch * K * N);
    const want = matmulRef(a, b, M, N, K, transA, transB, batch);
    for (const kernel of KERNELS) {
      const got = await run(a, b, M, N, K, { transA, transB, batch, kernel });
      assertClose(got, want, 1e-5, `matmul ${kernel} ${M}x${N}x${K}`);
    }
  }
});

Deno.test("every matmul kernel: bias + relu, accumulate + alpha and rowSums when K is split", async () => {
  const M = 70, N = 129, K = 700;
  const a = rng.uniformArray(K * M), b = rng.uniformArray(K * N), bias = rng.uniformArray(N);
  const base = matmulRef(a, b, M, N, K, true, false);
  const init = rng.uniformArray(M * N);
  for (const kernel of KERNELS) {
    const got = await run(a, b, M, N, K, {
      transA: true,
      bias: Tensor.from(rt, bias),
      epilogue: "relu",
      kernel,
    });
    assertClose(got, base.map((v, i) => Math.max(0, v + bias[i % N])), 1e-5, `split-K bias+relu ${kernel}`);
    const acc = await run(a, b, M, N, K, { transA: true, accumulate: true, alpha: -0.5, kernel }, init);
    assertClose(acc, base.map((v, i) => init[i] - 0.5 * v), 1e-5, `split-K accumulate ${kernel}`);
    const rs = poisoned([M]);
    const C = poisoned([M * N]);
    matmul(rt, Tensor.from(rt, a), Tensor.from(rt, b), C, M, N, K, { transA: true, rowSums: rs, kernel });
    assertClose(await rs.read(), rowSumsRef(a, M, K, true), 1e-5, `split-K rowSums ${kernel}`);
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
    matmul(rt, A, B, C, M, N, K, { kernel: "window" });
  } finally {
    rt.copy = copy;
  }
  assertClose(await C.read(), matmulRef(a, b, M, N, K), 1e-5, "matmul in-place windows");
  if (copies !== 0) throw new Error(`in-place windows made ${copies} staging copies`);
});
