// The cpu family's small-M kernel (ops/matmul/cpu_gemv.ts: y = x · Wᵀ for M <= 4, W's rows in uniform
// windows) against float64, per element, with NaN-poisoned outputs: awkward N and K (scalar loads
// where K is not a multiple of 4, vec4 loads where it is), several dispatches of windows, operands
// staged and bound in place (at 16-byte and odd offsets), bias, alpha, GELU, accumulate, and the
// LayerNorm-normalised rows the decoder's layernormLinear uses.
import { assertCloseElementwise, rms, Rng, rt, Tensor } from "../util.ts";
import { linearWindow, matmul, WINDOW } from "../../ops/matmul.ts";
import { GEMV_MAX_M, gemvDispatches } from "../../ops/matmul/cpu_gemv.ts";
import { STORAGE } from "../../ops/runtime.ts";
import { matmulRef } from "../reference/matmul.ts";
import { geluRef } from "../reference/elementwise.ts";
import { layernormRef } from "../reference/layernorm.ts";

const rng = new Rng(4321);
const UNIFORM = 0x40;

/** `data` in a buffer of its own: plain STORAGE (staged by the kernel), or UNIFORM at `offset` floats. */
function tensor(data: ArrayLike<number>, shape: number[], at: number | null): Tensor {
  if (at === null) return Tensor.from(rt, Float32Array.from(data), shape);
  const buf = rt.createBuffer((at + data.length) * 4 + WINDOW * 4, STORAGE | UNIFORM);
  const t = new Tensor(rt, buf, at * 4, shape, "f32");
  t.write(Float32Array.from(data));
  return t;
}

/** [M, N, K]: scalar loads (K % 4 != 0), vec4 loads, 2 dispatches of windows (N·K over 10 windows). */
const SHAPES: [number, number, number][] = [[1, 7, 5], [3, 65, 129], [4, 129, 64], [2, 3001, 100], [
  1,
  37,
  771,
]];

async function check(M: number, N: number, K: number, at: number | null, ep: "none" | "gelu", acc: boolean) {
  const x = rng.uniformArray(M * K, -1, 1), W = rng.uniformArray(N * K, -0.3, 0.3);
  const bias = acc ? null : rng.uniformArray(N, -1, 1), c0 = rng.uniformArray(M * N, -2, 2);
  const alpha = acc ? 0.5 : 1;
  const y = Tensor.empty(rt, [M * N + 3]);
  y.poison();
  if (acc) rt.write({ buffer: y.buffer, offset: 0, byteLength: M * N * 4 }, Float32Array.from(c0));
  rt.startTrace();
  matmul(rt, tensor(x, [M, K], at), tensor(W, [N, K], at === null ? null : at + 4), y, M, N, K, {
    transB: true,
    bias: bias ? Tensor.from(rt, Float32Array.from(bias)) : null,
    epilogue: ep,
    accumulate: acc,
    alpha,
  });
  const dispatches = rt.stopTrace().filter((k) => k.name.startsWith("matmul")).length;
  let want: ArrayLike<number> = matmulRef(x, W, M, N, K, false, true).map((v, i) =>
    alpha * v + (bias ? bias[i % N] : 0)
  );
  if (acc) want = Float64Array.from(want, (v, i) => v + c0[i]);
  if (ep === "gelu") want = geluRef(want, "gelu");
  const got = await y.read();
  const tag = `gemv ${M}x${N}x${K} at ${at} ${ep}${acc ? " acc" : ""}`;
  assertCloseElementwise(got.subarray(0, M * N), want, 1e-5, rms(want), tag);
  if (!got.subarray(M * N).every(Number.isNaN)) throw new Error(`${tag}: wrote past C`);
  if (at === null && dispatches !== gemvDispatches(rt, N, K)) {
    throw new Error(`${tag}: ${dispatches} dispatches, want ${gemvDispatches(rt, N, K)} (the GEMV kernel's)`);
  }
}

Deno.test("[cpu] gemv: x·Wᵀ (+ bias, GELU, accumulate) vs float64, staged and in place", async () => {
  const before = rt.kernels;
  rt.kernels = "cpu";
  try {
    for (const [M, N, K] of SHAPES) {
      if (M > GEMV_MAX_M) throw new Error("shape outside the GEMV path");
      await check(M, N, K, null, "none", false);
      await check(M, N, K, 6, "gelu", false); // offset 6 floats: not 16-byte aligned (scalar loads)
      await check(M, N, K, 40, "none", true); // 16-byte aligned: vec4 loads where K allows
    }
  } finally {
    rt.kernels = before;
  }
});

Deno.test("[cpu] gemv: LayerNorm-normalised rows (linearWindow's norm) vs float64", async () => {
  for (const [M, N, K] of [[1, 50, 64], [4, 33, 129], [2, 3001, 100]]) {
    for (const offset of [0, 40]) {
      // offset 40: rows whose mean is 40x their spread (the shifted sums must not cancel).
      const x = rng.uniformArray(M * K, -1, 1).map((v) => v + offset);
      const W = rng.uniformArray(N * K, -0.3, 0.3), bias = rng.uniformArray(N, -1, 1);
      const cs = new Float64Array(N).map((_, j) => W.subarray(j * K, (j + 1) * K).reduce((s, v) => s + v, 0));
      const y = Tensor.empty(rt, [M * N + 3]);
      y.poison();
      const ok = linearWindow(
        rt,
        tensor(x, [M, K], 8),
        tensor(W, [N, K], null),
        tensor(bias, [N], null),
        y,
        M,
        {
          norm: { eps: 1e-5, colSums: tensor(cs, [N], null) },
        },
      );
      if (!ok) throw new Error("linearWindow declined a small-M product");
      const ones = new Float64Array(K).fill(1), zeros = new Float64Array(K);
      const xn = layernormRef(x, ones, zeros, M, K).y;
      const want = matmulRef(xn, W, M, N, K, false, true).map((v, i) => v + bias[i % N]);
      const got = await y.read();
      const tag = `gemv norm ${M}x${N}x${K} +${offset}`;
      assertCloseElementwise(got.subarray(0, M * N), want, 1e-5, rms(want), tag);
      if (!got.subarray(M * N).every(Number.isNaN)) throw new Error(`${tag}: wrote past C`);
    }
  }
});
