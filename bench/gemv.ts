// Small-M products y = x · Wᵀ (the decoder's shapes) through each cpu-family kernel: the storage
// kernel, the window kernel with no dispatch cap, the GEMV kernel (ops/matmul/cpu_gemv.ts) and the
// default choice. Operands in UNIFORM-usage buffers with a window of slack, as the decoder allocates
// them. Wall-clock ms per product (median of --reps runs of --inner products each, interleaved).
//
//   deno run -A --unstable-webgpu bench/gemv.ts [--reps 5]

import { Runtime, STORAGE } from "../ops/runtime.ts";
import { Tensor } from "../ops/tensor.ts";
import { matmul, type MatmulKernel, WINDOW } from "../ops/matmul.ts";

const args = Deno.args;
const flag = (n: string, d: number) => {
  const i = args.indexOf(`--${n}`);
  return i >= 0 ? Number(args[i + 1]) : d;
};
const reps = flag("reps", 5), inner = flag("inner", 3);
const shapes = [[50257, 768], [2304, 768], [3072, 768], [768, 3072], [768, 768]];
const ms = [1, 4];
const rt = await Runtime.create({ kernels: "cpu" });
const operand = (floats: number) =>
  new Tensor(rt, rt.createBuffer(floats * 4 + WINDOW * 4, STORAGE | 0x40), 0, [floats], "f32");
const kinds: (MatmulKernel | "default")[] = ["default", "window", "gemv" as MatmulKernel, "storage"];
for (const [N, K] of shapes) {
  const W = operand(N * K);
  const fill = new Float32Array(N * K).map((_, i) => Math.sin(i) * 0.1);
  W.write(fill);
  const bias = Tensor.empty(rt, [N], "f32");
  for (const M of ms) {
    const x = operand(M * K), y = Tensor.empty(rt, [M * N], "f32");
    x.write(new Float32Array(M * K).map((_, i) => Math.cos(i)));
    const t: Record<string, number[]> = {};
    for (let r = 0; r < reps + 1; r++) {
      for (const k of kinds) {
        if (N > 10000 && k === "window" && M === 4) continue;
        const o = { transB: true, bias, ...(k === "default" ? {} : { kernel: k }) };
        const t0 = performance.now();
        for (let i = 0; i < inner; i++) matmul(rt, x, W, y, M, N, K, o);
        await rt.sync();
        if (r > 0) (t[k] ??= []).push((performance.now() - t0) / inner);
      }
    }
    const med = (a: number[]) => [...a].sort((p, q) => p - q)[a.length >> 1];
    console.log(
      `M=${M} N=${N} K=${K}: ` + Object.entries(t).map(([k, v]) => `${k} ${med(v).toFixed(2)} ms`).join(", "),
    );
  }
}
