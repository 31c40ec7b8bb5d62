// LayerNorm forward and backward through both kernel families (familyTest) vs the float64 reference,
// per element, outputs NaN-poisoned, on rows and C that are not multiples of any workgroup size.

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
import { layernormBackward, layernormForward } from "../../ops/layernorm.ts";
import { ParamStore } from "../../ops/tensor.ts";
import { layernormGradRef, layernormRef } from "../reference/layernorm.ts";

const rng = new Rng(4321);
const CS = [1, 7, 64, 65, 129, 384, 385];

/** w and b live in one ParamStore (as in a model), so w.grad and b.grad share the grads buffer. */
function params(C: number) {
  const w = rng.uniformArray(C, 0.5, 1.5), b = rng.uniformArray(C);
  const ps = new ParamStore(rt, [{ name: "ln.w", shape: [C], init: w }, {
    name: "ln.b",
    shape: [C],
    init: b,
  }]);
  return { w, b, ps, W: ps.get("ln.w"), B: ps.get("ln.b") };
}

/** Rows with a per-row offset and spread, so mean and rstd differ from row to row. */
function inputs(rows: number, C: number): Float32Array {
  const x = new Float32Array(rows * C);
  for (let r = 0; r < rows; r++) {
    const off = rng.range(-2, 2), sd = rng.range(0.2, 3);
    for (let c = 0; c < C; c++) x[r * C + c] = off + sd * rng.normal();
  }
  return x;
}

familyTest("layernorm forward: y, mean, rstd vs float64 reference on awkward shapes", async () => {
  for (const rows of [...AWKWARD, 1031]) {
    for (const C of CS) {
      const { w, b, W, B } = params(C);
      const x = inputs(rows, C);
      const Y = poisoned([rows, C]), M = poisoned([rows]), R = poisoned([rows]);
      layernormForward(rt, Tensor.from(rt, x), W, B, Y, M, R, rows, C);
      const want = layernormRef(x, w, b, rows, C);
      assertClose(await Y.read(), want.y, 1e-5, "layernorm fwd y");
      assertClose(await M.read(), want.mean, 1e-5, "layernorm fwd mean");
      assertClose(await R.read(), want.rstd, 1e-5, "layernorm fwd rstd");
    }
  }
});

familyTest("layernorm backward: dx, dw, db vs float64 reference on awkward shapes", async () => {
  for (const rows of [...AWKWARD, 1031]) {
    for (const C of CS) {
      const { w, b, ps, W, B } = params(C);
      const x = inputs(rows, C), dy = rng.uniformArray(rows * C);
      const X = Tensor.from(rt, x), Y = poisoned([rows, C]), M = poisoned([rows]), R = poisoned([rows]);
      layernormForward(rt, X, W, B, Y, M, R, rows, C);
      ps.grads.poison();
      const dX = poisoned([rows, C]);
      layernormBackward(rt, Tensor.from(rt, dy), X, W, B, M, R, dX, rows, C);
      const g = layernormGradRef(dy, x, w, rows, C);
      const tag = `(${rows}, ${C})`;
      assertClose(await dX.read(), g.dx, 1e-4, `layernorm bwd dx ${tag}`);
      assertClose(await W.grad!.read(), g.dw, 1e-4, `layernorm bwd dw ${tag}`);
      assertClose(await B.grad!.read(), g.db, 1e-4, `layernorm bwd db ${tag}`);
      void b;
    }
  }
});

Deno.test("layernorm reference: the float64 analytic gradients agree with central differences", () => {
  for (const [rows, C] of [[1, 1], [7, 65], [65, 7], [3, 385]]) {
    const { w, b } = params(C);
    const x = inputs(rows, C), dy = rng.uniformArray(rows * C);
    const g = layernormGradRef(dy, x, w, rows, C);
    const xs = f64(x), ws = f64(w), bs = f64(b);
    checkNumeric((v) => dot(dy, layernormRef(v, ws, bs, rows, C).y), xs, g.dx, rng, "layernorm dx fd");
    checkNumeric((v) => dot(dy, layernormRef(xs, v, bs, rows, C).y), ws, g.dw, rng, "layernorm dw fd");
    checkNumeric((v) => dot(dy, layernormRef(xs, ws, v, rows, C).y), bs, g.db, rng, "layernorm db fd");
  }
});

familyTest("layernorm backward: accumulateDx adds into an existing residual gradient", async () => {
  for (const [rows, C] of [[7, 65], [129, 7], [65, 129], [1000, 385]]) {
    const { w, ps, W, B } = params(C);
    const x = inputs(rows, C), dy = rng.uniformArray(rows * C), prev = rng.uniformArray(rows * C);
    const X = Tensor.from(rt, x), Y = poisoned([rows, C]), M = poisoned([rows]), R = poisoned([rows]);
    layernormForward(rt, X, W, B, Y, M, R, rows, C);
    ps.grads.poison();
    const dX = Tensor.from(rt, prev);
    layernormBackward(rt, Tensor.from(rt, dy), X, W, B, M, R, dX, rows, C, true);
    const g = layernormGradRef(dy, x, w, rows, C);
    assertClose(await dX.read(), g.dx.map((v, i) => v + prev[i]), 1e-4, "layernorm bwd dx accumulate");
    assertClose(await W.grad!.read(), g.dw, 1e-4, "layernorm bwd dw");
    assertClose(await B.grad!.read(), g.db, 1e-4, "layernorm bwd db");
  }
});

familyTest("layernorm backward: many rows, deterministic column reduction", async () => {
  for (const [rows, C] of [[1000, 65], [4099, 384]]) {
    const { w, W, B } = params(C);
    const x = inputs(rows, C), dy = rng.uniformArray(rows * C);
    const X = Tensor.from(rt, x), Y = poisoned([rows, C]), M = poisoned([rows]), R = poisoned([rows]);
    layernormForward(rt, X, W, B, Y, M, R, rows, C);
    const DY = Tensor.from(rt, dy);
    const g = layernormGradRef(dy, x, w, rows, C);
    const runs: Uint32Array[] = [];
    for (let k = 0; k < 2; k++) {
      W.grad!.poison();
      B.grad!.poison();
      const dX = poisoned([rows, C]);
      layernormBackward(rt, DY, X, W, B, M, R, dX, rows, C);
      assertClose(await dX.read(), g.dx, 1e-4, "layernorm bwd dx");
      assertClose(await W.grad!.read(), g.dw, 1e-4, "layernorm bwd dw");
      assertClose(await B.grad!.read(), g.db, 1e-4, "layernorm bwd db");
      runs.push(new Uint32Array([...await W.grad!.readU32(), ...await B.grad!.readU32()]));
    }
    if (!runs[0].every((v, i) => v === runs[1][i])) {
      throw new Error("layernorm dw/db not bit-identical across runs");
    }
  }
});
