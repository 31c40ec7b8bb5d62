import { assertClose, familyTest, poisoned, Rng, rt, Tensor } from "../util.ts";
import {
  ADAMW_DEFAULTS,
  type AdamWConfig,
  adamwStep,
  ClipBuffers,
  clipGradNorm,
  decayMaskWords,
  hyperValues,
  sgdStep,
  zeroGrads,
} from "../../ops/optim.ts";
import { ParamStore } from "../../ops/tensor.ts";
import { adamwRef, type AdamWState, clipRef, sgdRef } from "../reference/optim.ts";

const rng = new Rng(99);
const SIZES = [1, 7, 65, 1003, 70001];

const CUSTOM: AdamWConfig = { lr: 3e-2, beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0.1 };

/** The u32 step state [seed, step, 0, 0]. */
const stepState = (t: number) => Tensor.from(rt, Uint32Array.from([1234, t, 0, 0]));
/** The f32 hyper tensor [lr, 1 - lr·wd]. */
const hyper = (cfg: { lr: number; weightDecay: number }) =>
  Tensor.from(rt, hyperValues(cfg.lr, cfg.weightDecay));

familyTest("zeroGrads writes 0 everywhere, including a ParamStore's padding", async () => {
  for (const n of SIZES) {
    const g = poisoned([n]);
    zeroGrads(rt, g);
    const got = await g.read();
    if (got.some((x) => x !== 0)) throw new Error(`zeroGrads: nonzero element (n=${n})`);
  }
  const ps = new ParamStore(rt, [{ name: "a", shape: [7, 3], init: rng.uniformArray(21) }]);
  ps.grads.poison();
  zeroGrads(rt, ps.grads);
  if ((await ps.grads.read()).some((x) => x !== 0)) throw new Error("zeroGrads: ParamStore grads not zero");
});

familyTest("sgdStep: one and five steps vs float64", async () => {
  for (const n of SIZES) {
    const lr = 0.05;
    // Parameters at the scale of one update, so the update itself is what is measured.
    const p0 = rng.uniformArray(n, -0.05, 0.05);
    const P = Tensor.from(rt, p0);
    let want: Float64Array = Float64Array.from(p0);
    for (let s = 0; s < 5; s++) {
      const g = rng.uniformArray(n);
      sgdStep(rt, P, Tensor.from(rt, g), hyper({ lr, weightDecay: 0 }));
      want = sgdRef(want, g, lr);
      assertClose(await P.read(), want, 1e-5, s === 0 ? "sgd 1 step" : "sgd 5 steps");
    }
  }
});

async function adamwRun(
  n: number,
  cfg: AdamWConfig,
  steps: number[],
  pScale: number,
  init?: { m: Float32Array; v: Float32Array },
): Promise<void> {
  const p0 = rng.uniformArray(n, -pScale, pScale);
  const P = Tensor.from(rt, p0);
  const M = Tensor.from(rt, init?.m ?? new Float32Array(n)),
    Vt = Tensor.from(rt, init?.v ?? new Float32Array(n));
  const S = stepState(steps[0]);
  const H = hyper(cfg);
  const ref: AdamWState = { p: Float64Array.from(p0), m: f64Or0(init?.m, n), v: f64Or0(init?.v, n) };
  const label = `adamw ${cfg === ADAMW_DEFAULTS ? "defaults" : "custom"}`;
  for (const t of steps) {
    // queue.writeBuffer lands before the next submit's commands: submit once per step, as training does.
    S.write(Uint32Array.from([1234, t, 0, 0]));
    const g = rng.uniformArray(n);
    adamwStep(rt, P, Tensor.from(rt, g), M, Vt, S, H, cfg);
    rt.submit();
    adamwRef(ref, g, t, cfg);
  }
  const tag = steps.length === 1 ? `t=${steps[0]}` : `${steps.length} steps`;
  assertClose(await P.read(), ref.p, 1e-5, `${label} p ${tag}`);
  assertClose(await M.read(), ref.m, 1e-5, `${label} m ${tag}`);
  assertClose(await Vt.read(), ref.v, 1e-5, `${label} v ${tag}`);
}

const f64Or0 = (a: Float32Array | undefined, n: number) => a ? Float64Array.from(a) : new Float64Array(n);

familyTest("adamwStep: one step and five steps vs float64 PyTorch formulas", async () => {
  for (const cfg of [ADAMW_DEFAULTS, CUSTOM]) {
    for (const n of SIZES) {
      // pScale ~ lr: the per-step change is a large fraction of the parameters.
      await adamwRun(n, cfg, [1], cfg.lr);
      await adamwRun(n, cfg, [1, 2, 3, 4, 5], cfg.lr);
      await adamwRun(n, cfg, [1, 2, 3, 4, 5], 1);
    }
  }
});

familyTest("adamwStep: late steps (t = 4000, 5000) from a warm optimizer state", async () => {
  for (const cfg of [ADAMW_DEFAULTS, CUSTOM]) {
    for (const n of [65, 1003]) {
      const m = rng.uniformArray(n, -0.1, 0.1);
      const v = rng.uniformArray(n, 0, 0.3);
      await adamwRun(n, cfg, [4000], cfg.lr, { m, v });
      await adamwRun(n, cfg, [4000, 4001, 4002, 4003, 4004], cfg.lr, { m, v });
      await adamwRun(n, cfg, [5000], cfg.lr, { m, v });
    }
  }
});

familyTest("adamwStep: bias corrections 1-β^t are accurate for t = 1..5000 (update alone)", async () => {
  // p = 0 and no weight decay: the new p is exactly -lr·mhat/(sqrt(vhat)+eps), so any error in
  // 1-β1^t or 1-β2^t shows directly (a plain f32 1 - pow(β, t) gives 5e-5 here).
  const n = 257;
  for (const base of [ADAMW_DEFAULTS, CUSTOM, { ...CUSTOM, beta1: 0.3, beta2: 0.5 }]) {
    const cfg = { ...base, weightDecay: 0 };
    for (const t of [1, 2, 3, 7, 10, 50, 100, 500, 999, 1000, 2000, 4000, 5000]) {
      const P = Tensor.from(rt, new Float32Array(n));
      const m = rng.uniformArray(n, -0.1, 0.1), v = rng.uniformArray(n, 0, 0.3), g = rng.uniformArray(n);
      const M = Tensor.from(rt, m), Vt = Tensor.from(rt, v);
      adamwStep(rt, P, Tensor.from(rt, g), M, Vt, stepState(t), hyper(cfg), cfg);
      const ref: AdamWState = { p: new Float64Array(n), m: Float64Array.from(m), v: Float64Array.from(v) };
      adamwRef(ref, g, t, cfg);
      assertClose(await P.read(), ref.p, 1e-5, "adamw update alone");
    }
  }
});

familyTest("optimizers over a whole ParamStore (flat params/grads, padding stays 0)", async () => {
  const specs = [
    { name: "w", shape: [65, 7], init: rng.uniformArray(455, -0.01, 0.01) },
    { name: "b", shape: [7], init: rng.uniformArray(7, -0.01, 0.01) },
  ];
  const ps = new ParamStore(rt, specs);
  const n = ps.params.size;
  const g = new Float32Array(n);
  ps.list.forEach((t, i) => g.set(rng.uniformArray(t.size), ps.offsets[i]));
  ps.grads.write(g);
  const M = Tensor.from(rt, new Float32Array(n)), Vt = Tensor.from(rt, new Float32Array(n));
  const ref: AdamWState = {
    p: Float64Array.from(await ps.params.read()),
    m: new Float64Array(n),
    v: new Float64Array(n),
  };
  adamwStep(rt, ps.params, ps.grads, M, Vt, stepState(1), hyper(ADAMW_DEFAULTS), ADAMW_DEFAULTS);
  adamwRef(ref, g, 1, ADAMW_DEFAULTS);
  const got = await ps.params.read();
  assertClose(got, ref.p, 1e-5, "adamw ParamStore");
  for (let i = 0; i < n; i++) if (ref.p[i] === 0 && got[i] !== 0) throw new Error("padding changed");
});

familyTest("adamwStep with a decay mask: only the masked elements decay (vs float64)", async () => {
  for (const n of [1, 7, 65, 1003, 70001]) {
    // Awkward ranges: crossing 32-bit word boundaries, a single element, the last element.
    const ranges: [number, number][] = [[0, Math.min(n, 3)], [Math.floor(n / 3), Math.floor(n / 2) + 1]];
    if (n > 40) ranges.push([31, 33], [n - 1, n]);
    const on = new Uint8Array(n);
    for (const [a, b] of ranges) on.fill(1, a, b);
    const cfg = { ...CUSTOM, weightDecay: 0.5 }; // large decay: a wrong bit is a big error
    const p0 = rng.uniformArray(n, -1, 1);
    const P = Tensor.from(rt, p0);
    const M = Tensor.from(rt, new Float32Array(n)), Vt = Tensor.from(rt, new Float32Array(n));
    const D = Tensor.from(rt, decayMaskWords(n, ranges));
    const S = stepState(1), H = hyper(cfg);
    const ref: AdamWState = { p: Float64Array.from(p0), m: new Float64Array(n), v: new Float64Array(n) };
    for (let t = 1; t <= 3; t++) {
      S.write(Uint32Array.from([1234, t, 0, 0]));
      const g = rng.uniformArray(n);
      adamwStep(rt, P, Tensor.from(rt, g), M, Vt, S, H, cfg, D);
      rt.submit();
      adamwRef(ref, g, t, cfg, (i) => on[i] === 1);
    }
    assertClose(await P.read(), ref.p, 1e-5, "adamw masked decay");
  }
});

familyTest(
  "clipGradNorm: global L2 norm and clipped gradients vs float64 (above and below the limit)",
  async () => {
    for (const n of [1, 7, 65, 1003, 70001, 2_500_003]) {
      for (const maxNorm of [0.5, 1e9]) {
        const g = rng.uniformArray(n, -1, 1);
        const G = Tensor.from(rt, g);
        const buf = new ClipBuffers(rt, n);
        buf.coef.poison();
        buf.partials.poison();
        clipGradNorm(rt, G, maxNorm, buf);
        const want = clipRef(g, maxNorm);
        const [norm, scale] = await buf.coef.read();
        assertClose([norm], [want.norm], 1e-5, "clip norm");
        assertClose([scale], [want.scale], 1e-5, "clip scale");
        if (maxNorm > 1e8 && scale !== 1) {
          throw new Error(
            `below the limit the scale must be 1, got ${scale}`,
          );
        }
        assertClose(await G.read(), want.grads, 1e-5, "clipped grads");
      }
    }
  },
);
