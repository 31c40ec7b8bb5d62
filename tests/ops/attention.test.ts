import {
  assertClose,
  browserSubset,
  checkNumeric,
  dot,
  f64,
  familyTest,
  IN_BROWSER,
  poisoned,
  Rng,
  rt,
  Tensor,
} from "../util.ts";
import type { KernelFamily } from "../../ops/runtime.ts";
import { attentionBackward, attentionForward, attentionRows, MAX_HS } from "../../ops/attention.ts";
import { keysPerWorkgroup } from "../../ops/attention/gpu.ts";
import { attentionGradRef, attentionRef, type AttnCfg, attnMask } from "../reference/attention.ts";

const rng = new Rng(4321);

// (B, T, C, H): a single element, odd B*H*T counts, head sizes 4, 16, 15 and 6 (CPU family: 16 rows
// per invocation), 48 (5 rows, column loops in 3 chunks) and MAX_HS = 128 (2 rows, 8 chunks); T = 65,
// 129 and 256 (GPU family: 2 to 4 tiles of 64 keys); hs = 1, 2 and 10 (GPU: 64, 32 and 6 column
// groups), 100 (two columns per lane, the second partial); B*H from 1 to 96; hs = 33 (odd: C 99, H 3)
// and 64 at T = 70 (two key tiles, the second partial).
const SHAPES: [number, number, number, number][] = [
  [1, 1, 4, 1],
  [2, 7, 12, 3],
  [3, 13, 16, 4],
  [1, 32, 64, 4],
  [2, 33, 20, 5],
  [1, 7, 30, 2], // hs = 15
  [1, 129, 18, 3], // hs = 6
  [2, 17, 96, 2], // hs = 48
  [1, 5, 128, 1], // hs = MAX_HS
  [1, 256, 8, 2], // hs = 4, T = 256
  [2, 65, 40, 4], // hs = 10, T = 65
  [2, 9, 3, 3], // hs = 1
  [12, 5, 16, 8], // hs = 2, B*H = 96
  [1, 70, 100, 1], // hs = 100
  [1, 67, 99, 3], // hs = 33
  [1, 70, 128, 2], // hs = 64
];

const MODES = [
  { p: 0, train: true, name: "p=0" },
  { p: 0.1, train: true, name: "p=0.1 train" },
  { p: 0.1, train: false, name: "eval" },
];

function stepState(seed: number, step: number): Tensor {
  return Tensor.from(rt, new Uint32Array([seed, step, 0, 0]), [4]);
}

interface Run {
  out: Float32Array;
  lse: Float32Array;
  dqkv: Float32Array;
  delta: Float32Array;
}

/** Forward then backward on freshly poisoned outputs; returns what the kernels wrote. */
async function run(cfg: AttnCfg, qkv: Float32Array, dout: Float32Array): Promise<Run> {
  const { B, T, C, H, p, stream, train } = cfg;
  const state = stepState(cfg.seed, cfg.step);
  const Q = Tensor.from(rt, qkv);
  const out = poisoned([B * T * C]);
  const lse = poisoned([B * H * T]);
  attentionForward(rt, Q, out, lse, B, T, C, H, p, state, stream, train);
  const dqkv = poisoned([B * T * 3 * C]);
  const delta = poisoned([B * H * T]);
  attentionBackward(rt, Tensor.from(rt, dout), Q, out, lse, dqkv, delta, B, T, C, H, p, state, stream, train);
  return { out: await out.read(), lse: await lse.read(), dqkv: await dqkv.read(), delta: await delta.read() };
}

/** D_t = dout_t · out_t per (b, h, t), from the float64 forward output. */
function deltaRef(dout: ArrayLike<number>, out: ArrayLike<number>, cfg: AttnCfg): Float64Array {
  const { B, T, C, H } = cfg, hs = C / H;
  const D = new Float64Array(B * H * T);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < T; t++) {
        for (let d = 0; d < hs; d++) {
          const i = (b * T + t) * C + h * hs + d;
          D[(b * H + h) * T + t] += dout[i] * out[i];
        }
      }
    }
  }
  return D;
}

// In the page each head size compiles its own cpu-family kernels (registers unrolled per hs, seconds
// each in SwiftShader), so it runs the shapes that reach every code path: T = 1; hs <= 32 (whole rows
// unrolled) even and odd; hs > 32 in 16-column chunks with a remainder (100), over several key tiles
// (T 70); B·H > 1. (Many tiles: the T = 1024 test; MAX_HS runs under Deno.)
const PAGE_SHAPES = ["1,1,4,1", "2,7,12,3", "1,7,30,2", "1,70,100,1"];

familyTest("attention forward/backward vs float64 reference (p=0, dropout, eval)", async () => {
  const shapes = browserSubset(SHAPES, (s) => PAGE_SHAPES.includes(s.join(",")));
  if (shapes.length < PAGE_SHAPES.length) throw new Error("a page shape is not among SHAPES");
  for (const [B, T, C, H] of shapes) {
    for (const m of MODES) {
      const cfg: AttnCfg = { B, T, C, H, p: m.p, train: m.train, seed: 17, step: 3, stream: 5 };
      const qkv = rng.uniformArray(B * T * 3 * C), dout = rng.uniformArray(B * T * C);
      const got = await run(cfg, qkv, dout);
      const want = attentionRef(qkv, cfg);
      const tag = `(${B},${T},${C},${H}) ${m.name}`;
      try {
        assertClose(got.out, want.out, 1e-5, "attention fwd out");
        assertClose(got.lse, want.lse, 1e-5, "attention fwd lse");
        assertClose(got.dqkv, attentionGradRef(dout, qkv, cfg), 1e-4, "attention bwd dqkv");
        assertClose(got.delta, deltaRef(dout, want.out, cfg), 1e-4, "attention bwd delta");
      } catch (e) {
        throw new Error(`${tag}: ${(e as Error).message}`);
      }
    }
  }
});

familyTest("attention at T = 1024 (16 tiles of keys) vs float64 reference, dropout on", async () => {
  // hs 16; in the page hs 4, whose kernels the shapes above compiled already.
  const [B, T, C, H] = [1, 1024, IN_BROWSER ? 8 : 32, 2];
  const cfg: AttnCfg = { B, T, C, H, p: 0.1, train: true, seed: 4, step: 9, stream: 2 };
  const qkv = rng.uniformArray(B * T * 3 * C), dout = rng.uniformArray(B * T * C);
  const got = await run(cfg, qkv, dout);
  const want = attentionRef(qkv, cfg);
  assertClose(got.out, want.out, 1e-5, "attention fwd out (T 1024)");
  assertClose(got.lse, want.lse, 1e-5, "attention fwd lse (T 1024)");
  assertClose(got.dqkv, attentionGradRef(dout, qkv, cfg), 1e-4, "attention bwd dqkv (T 1024)");
});

familyTest("attention dropout is active and matches the TS mirror mask", async () => {
  const [B, T, C, H] = [1, 32, 64, 4];
  const cfg: AttnCfg = { B, T, C, H, p: 0.1, train: true, seed: 99, step: 7, stream: 2 };
  let dropped = 0, kept = 0;
  for (let r = 0; r < B * H * T; r++) {
    for (let j = 0; j <= r % T; j++) attnMask(cfg, r * T + j) === 0 ? dropped++ : kept++;
  }
  if (dropped < 0.05 * (dropped + kept) || dropped > 0.15 * (dropped + kept)) {
    throw new Error(`dropout rate off: ${dropped} of ${dropped + kept}`);
  }
  const qkv = rng.uniformArray(B * T * 3 * C), dout = rng.uniformArray(B * T * C);
  const withDrop = await run(cfg, qkv, dout);
  const noDrop = await run({ ...cfg, p: 0 }, qkv, dout);
  // The softmax statistics are taken before dropout: identical; the outputs differ.
  assertClose(withDrop.lse, noDrop.lse, 0, "attention lse independent of dropout");
  if (withDrop.out.every((v, i) => v === noDrop.out[i])) throw new Error("dropout changed nothing");
  // A different step gives a different mask.
  const other = await run({ ...cfg, step: 8 }, qkv, dout);
  if (other.out.every((v, i) => v === withDrop.out[i])) throw new Error("mask did not change with step");
  assertClose(other.out, attentionRef(qkv, { ...cfg, step: 8 }).out, 1e-5, "attention fwd out");
});

// Reads the dropout mask straight out of the forward pass: with q = 0 every score is 0, so
// P_tj = 1 / (t + 1), and with v_j = e_j (hs >= T) out_t[j] = P_tj mask_tj. Both families must drop
// exactly the elements ops/hash.ts's mask drops (at p = 0.5 any slip shows in a quarter of the rows).
familyTest("attention dropout mask is exactly ops/hash.ts's, element by element", async () => {
  const [B, T, C, H] = [2, 13, 32, 2], hs = C / H;
  const cfg: AttnCfg = { B, T, C, H, p: 0.5, train: true, seed: 12345, step: 6, stream: 4 };
  const qkv = new Float32Array(B * T * 3 * C);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < H; h++) qkv[(b * T + t) * 3 * C + 2 * C + h * hs + t] = 1;
    }
  }
  const got = await run(cfg, qkv, rng.uniformArray(B * T * C));
  let dropped = 0;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < T; t++) {
        const r0 = ((b * H + h) * T + t) * T;
        for (let j = 0; j < hs; j++) {
          const want = j <= t ? attnMask(cfg, r0 + j) / (t + 1) : 0;
          const o = got.out[(b * T + t) * C + h * hs + j];
          if (Math.abs(o - want) > 1e-6) {
            throw new Error(`(b ${b}, h ${h}, t ${t}, j ${j}): out ${o}, mask says ${want}`);
          }
          if (j <= t && want === 0) dropped++;
        }
      }
    }
  }
  const seen = B * H * T * (T + 1) / 2;
  if (dropped < 0.35 * seen || dropped > 0.65 * seen) throw new Error(`dropped ${dropped} of ${seen}`);
});

// The two families on one input: the same dropout mask and the same results to float32 rounding.
Deno.test("attention: the gpu and cpu families agree (dropout on)", async () => {
  const [B, T, C, H] = [3, 70, IN_BROWSER ? 16 : 48, 4]; // in the page hs 4, compiled already
  const cfg: AttnCfg = { B, T, C, H, p: 0.2, train: true, seed: 8, step: 21, stream: 6 };
  const qkv = rng.uniformArray(B * T * 3 * C), dout = rng.uniformArray(B * T * C);
  const before = rt.kernels;
  const runs: Partial<Record<KernelFamily, Run>> = {};
  try {
    for (const family of ["gpu", "cpu"] as const) {
      rt.kernels = family;
      runs[family] = await run(cfg, qkv, dout);
    }
  } finally {
    rt.kernels = before;
  }
  const { gpu, cpu } = runs as Record<KernelFamily, Run>;
  assertClose(gpu.out, cpu.out, 1e-5, "attention gpu vs cpu out");
  assertClose(gpu.lse, cpu.lse, 1e-5, "attention gpu vs cpu lse");
  assertClose(gpu.dqkv, cpu.dqkv, 1e-4, "attention gpu vs cpu dqkv");
});

// The launch shapes each family promises (ops/attention/*.ts), at the reference config (B 64, T 32,
// C 64, H 4): the GPU family spreads the work over tens of thousands of invocations.
familyTest("attention launches 1 forward and 2 backward dispatches of the family's shape", async (family) => {
  const [B, T, C, H] = [64, 32, 64, 4], hs = C / H;
  const cfg: AttnCfg = { B, T, C, H, p: 0.1, train: true, seed: 1, step: 1, stream: 0 };
  rt.startTrace();
  let trace;
  try {
    await run(cfg, rng.uniformArray(B * T * 3 * C), rng.uniformArray(B * T * C));
  } finally {
    trace = rt.stopTrace().filter((k) => k.name.startsWith("attention"));
  }
  const R = attentionRows(hs), cpuGroups = Math.ceil(B * H * Math.ceil(T / R) / 64);
  const want = family === "gpu"
    ? [["attention_fwd", B * H * T / 4], ["attention_bwd_rows", B * H * T / 4], [
      "attention_bwd_keys",
      B * H * Math.ceil(T / keysPerWorkgroup(hs)),
    ]]
    : [["attention_fwd", cpuGroups], ["attention_bwd_rows", cpuGroups], ["attention_bwd_keys", cpuGroups]];
  const got = trace.map((k) => [k.name, k.workgroups]);
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    throw new Error(`launches ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  }
  if (trace.some((k) => k.workgroupSize !== 64 || k.family !== family)) {
    throw new Error(`workgroup sizes / families ${JSON.stringify(trace)}`);
  }
  const invocations = trace.reduce((n, k) => n + k.workgroups * k.workgroupSize, 0);
  if (family === "gpu" && !(invocations >= 1e4 * 3)) throw new Error(`only ${invocations} invocations`);
});

Deno.test("attention float64 analytic gradient agrees with finite differences (dropout on)", () => {
  for (const [B, T, C, H] of [[2, 7, 12, 3], [1, 9, 20, 5]]) {
    const cfg: AttnCfg = { B, T, C, H, p: 0.25, train: true, seed: 3, step: 11, stream: 1 };
    const qkv = f64(rng.uniformArray(B * T * 3 * C)), dout = rng.uniformArray(B * T * C);
    const g = attentionGradRef(dout, qkv, cfg);
    checkNumeric((x) => dot(dout, attentionRef(x, cfg).out), qkv, g, rng, "attention dqkv fd", 24);
  }
});

familyTest("attention eval mode equals p=0, and runs are bit-identical", async () => {
  const [B, T, C, H] = [2, 33, 20, 5];
  const qkv = rng.uniformArray(B * T * 3 * C), dout = rng.uniformArray(B * T * C);
  const base: AttnCfg = { B, T, C, H, p: 0.1, train: false, seed: 5, step: 1, stream: 9 };
  const evalRun = await run(base, qkv, dout);
  const p0 = await run({ ...base, p: 0, train: true }, qkv, dout);
  const same = (a: Float32Array, b: Float32Array, what: string) => {
    const x = new Uint32Array(a.buffer), y = new Uint32Array(b.buffer);
    if (x.length !== y.length || x.some((v, i) => v !== y[i])) throw new Error(`${what}: not bit-identical`);
  };
  for (const k of ["out", "lse", "dqkv"] as const) same(evalRun[k], p0[k], `eval vs p=0 ${k}`);
  const train = { ...base, train: true };
  const r1 = await run(train, qkv, dout), r2 = await run(train, qkv, dout);
  for (const k of ["out", "lse", "dqkv"] as const) same(r1[k], r2[k], `determinism ${k}`);
});

familyTest("attention softmax is stable for large scores", async () => {
  // hs = 4, q = 8 everywhere, k_j = 8 + (j % 5)/64: scores 128 + (j % 5)/4 exactly, exp would overflow f32.
  const [B, T, C, H] = [1, 9, 8, 2];
  const qkv = new Float32Array(B * T * 3 * C);
  for (let t = 0; t < T; t++) {
    for (let c = 0; c < C; c++) {
      qkv[t * 3 * C + c] = 8;
      qkv[t * 3 * C + C + c] = 8 + (t % 5) / 64;
      qkv[t * 3 * C + 2 * C + c] = rng.range(-1, 1);
    }
  }
  const dout = rng.uniformArray(B * T * C);
  const cfg: AttnCfg = { B, T, C, H, p: 0.1, train: true, seed: 1, step: 2, stream: 3 };
  const got = await run(cfg, qkv, dout);
  const want = attentionRef(qkv, cfg);
  assertClose(got.out, want.out, 1e-5, "attention fwd out (large scores)");
  assertClose(got.lse, want.lse, 1e-5, "attention fwd lse (large scores)");
  assertClose(got.dqkv, attentionGradRef(dout, qkv, cfg), 1e-4, "attention bwd dqkv (large scores)");
});

Deno.test("attention rejects bad shapes with clear errors", () => {
  const state = stepState(0, 1);
  const t = Tensor.empty(rt, [1024]);
  const expectThrow = (f: () => void, msg: string) => {
    try {
      f();
    } catch (e) {
      if (!String(e).includes(msg)) throw new Error(`wrong error: ${e}`);
      return;
    }
    throw new Error(`expected an error containing "${msg}"`);
  };
  expectThrow(() => attentionForward(rt, t, t, t, 1, 2, 10, 3, 0, state, 0, true), "not divisible");
  expectThrow(
    () => attentionForward(rt, t, t, t, 1, 1, 2 * MAX_HS, 1, 0, state, 0, true),
    "exceeds the supported maximum",
  );
  expectThrow(
    () => attentionForward(rt, t, t, Tensor.empty(rt, [63]), 1, 32, 8, 2, 0, state, 0, true),
    "lse has",
  );
  expectThrow(
    () => attentionBackward(rt, t, t, t, t, t, Tensor.empty(rt, [63]), 1, 32, 8, 2, 0, state, 0, true),
    "delta has",
  );
  expectThrow(
    () => attentionBackward(rt, t, t, t, t, t, t, 1, 2, 8, 2, 0, Tensor.empty(rt, [4]), 0, true),
    "u32 step-state",
  );
});
