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
import { add, addInto, EW_WG, fill, scale } from "../../ops/elementwise.ts";
import { grid1d } from "../../ops/runtime.ts";
import { ParamStore } from "../../ops/tensor.ts";
import { addRef, scaleRef } from "../reference/elementwise.ts";

const rng = new Rng(31337);
const SIZES = [...AWKWARD, 256, 257, 65 * 129];

familyTest("add, addInto, scale, fill vs float64 reference on awkward sizes", async () => {
  for (const n of SIZES) {
    const a = rng.uniformArray(n), b = rng.uniformArray(n), s = rng.range(-3, 3);
    const out = poisoned([n]);
    add(rt, Tensor.from(rt, a), Tensor.from(rt, b), out);
    assertClose(await out.read(), addRef(a, b), 1e-5, "add");
    const acc = Tensor.from(rt, a);
    addInto(rt, acc, Tensor.from(rt, b));
    assertClose(await acc.read(), addRef(a, b), 1e-5, "addInto");
    const y = poisoned([n]);
    scale(rt, Tensor.from(rt, a), y, s);
    assertClose(await y.read(), scaleRef(a, s), 1e-5, "scale");
    const f = poisoned([n]);
    fill(rt, f, s);
    assertClose(await f.read(), new Float64Array(n).fill(Math.fround(s)), 1e-5, "fill");
    fill(rt, f, 0);
    assert.ok((await f.read()).every((v) => v === 0 && !Object.is(v, -0)), "fill 0");
  }
});

familyTest("add/scale backward (identity / scale by s) vs finite differences", async () => {
  const n = 65, s = -1.75;
  const a = rng.uniformArray(n), b = rng.uniformArray(n), dy = rng.uniformArray(n);
  // d(Σ dy·(a+b))/da = dy, /db = dy: the backward of add is the identity, accumulated with addInto.
  const as = f64(a), bs = f64(b);
  checkNumeric((v) => dot(dy, addRef(v, bs)), as, dy, rng, "add da fd");
  checkNumeric((v) => dot(dy, addRef(as, v)), bs, dy, rng, "add db fd");
  const gradRef = scaleRef(dy, s);
  checkNumeric((v) => dot(dy, scaleRef(v, s)), as, gradRef, rng, "scale dx fd");
  const prev = rng.uniformArray(n);
  const dA = Tensor.from(rt, prev);
  addInto(rt, dA, Tensor.from(rt, dy));
  assertClose(await dA.read(), addRef(prev, dy), 1e-4, "add bwd (addInto)");
  const dX = poisoned([n]);
  scale(rt, Tensor.from(rt, dy), dX, s);
  assertClose(await dX.read(), gradRef, 1e-4, "scale bwd");
});

familyTest("in place: add(a, b, a), add(a, b, b), add(a, a, a), addInto(x, x), scale(x, x)", async () => {
  const n = 129;
  const a = rng.uniformArray(n), b = rng.uniformArray(n);
  let A = Tensor.from(rt, a);
  add(rt, A, Tensor.from(rt, b), A);
  assertClose(await A.read(), addRef(a, b), 1e-5, "add");
  const B = Tensor.from(rt, b);
  add(rt, Tensor.from(rt, a), B, B);
  assertClose(await B.read(), addRef(a, b), 1e-5, "add");
  A = Tensor.from(rt, a);
  add(rt, A, A, A);
  assertClose(await A.read(), scaleRef(a, 2), 1e-5, "add");
  A = Tensor.from(rt, a);
  addInto(rt, A, A);
  assertClose(await A.read(), scaleRef(a, 2), 1e-5, "addInto");
  A = Tensor.from(rt, a);
  scale(rt, A, A, 0.5);
  assertClose(await A.read(), scaleRef(a, 0.5), 1e-5, "scale");
});

familyTest("views at offsets (ParamStore parameters) and the same-buffer guard", async () => {
  const n = 7;
  const ps = new ParamStore(rt, [
    { name: "p", shape: [n], init: rng.uniformArray(n) },
    { name: "q", shape: [n], init: rng.uniformArray(n) },
  ]);
  const P = ps.get("p"), Q = ps.get("q");
  const q = await Q.read();
  const out = poisoned([n]);
  add(rt, P, Q, out); // both inputs read from one buffer: allowed
  const pv = await P.read();
  assertClose(await out.read(), addRef(pv, q), 1e-5, "add");
  fill(rt, Q.grad!, 3);
  assertClose(await Q.grad!.read(), new Float64Array(n).fill(3), 1e-5, "fill");
  assert.ok((await ps.grads.read()).slice(0, n).every((v) => v === 0), "fill wrote outside its view");
  assert.throws(() => addInto(rt, P, Q), /shares a GPU buffer/);
  assert.throws(() => add(rt, P, out, Tensor.empty(rt, [n + 1])), /elements/);
});

familyTest("2-D grid past maxComputeWorkgroupsPerDimension (fill, scale)", async () => {
  const max = rt.device.limits.maxComputeWorkgroupsPerDimension;
  const n = max * 256 + 7;
  const [gx, gy] = grid1d(rt, n, EW_WG).workgroups;
  assert.ok(gy > 1 && gx <= max && gx * gy * 256 >= n, `grid ${gx}x${gy}`);
  const x = poisoned([n]), y = poisoned([n]);
  fill(rt, x, 1.5);
  scale(rt, x, y, 2);
  const got = await y.read();
  const bad = got.findIndex((v) => v !== 3);
  assert.strictEqual(bad, -1, `element ${bad} = ${got[bad]}`);
});
