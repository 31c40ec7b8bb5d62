// Every gpu-family matmul variant (ops/matmul/variants.ts) against the float64 reference, per element,
// with NaN-poisoned outputs, in every form the models use. Five products cover the forms between them:
// each transpose pair; vec4 and scalar loads of each operand in each layout (contiguous dimension a
// multiple of 4 or not); batch; alpha; bias with each activation epilogue; accumulate; the fused bias
// gradient (row sums) with and without accumulate. M, N and K are multiples of no tile, M and N span
// two 128-wide tiles where they can, and K leaves a partial last K tile (and empty split-K chunks).
// The products' float64 references are computed once and every variant runs the same five products,
// so each variant compiles five kernels (plus the split-K reduction, shared).
//
// On lavapipe every variant runs. GL llvmpipe compiles large workgroup arrays very slowly (minutes
// per kernel) and the page's SwiftShader is slow too: there, today's kernel and one large variant.

import { assertClose, poisoned, Rng, rt, Tensor } from "../util.ts";
import { type Epilogue, matmul, MATMUL_VARIANTS, type MatmulVariant } from "../../ops/matmul.ts";
import { matmulRef, rowSumsRef } from "../reference/matmul.ts";
import { geluRef } from "../reference/elementwise.ts";
import { dispatchEveryVariant, FORMS, variantsToCheck } from "./matmul_variant_forms.ts";

/** float64 activations, one per epilogue (a new epilogue fails to compile here until it has one). */
const ACT: Record<Epilogue, (v: number) => number> = {
  none: (v) => v,
  relu: (v) => Math.max(v, 0),
  leaky_relu: (v) => (v > 0 ? v : 0.01 * v),
  gelu: (v) => geluRef([v], "gelu")[0],
  gelu_erf: (v) => geluRef([v], "gelu_erf")[0],
};

const rng = new Rng(4242);
/** Each form's inputs and float64 results, made once. */
const DATA = FORMS.map((f) => {
  const { M, N, K, batch } = f;
  const a = rng.uniformArray(batch * M * K), b = rng.uniformArray(batch * K * N);
  const bias = rng.uniformArray(N), c0 = rng.uniformArray(batch * M * N), rs0 = rng.uniformArray(M);
  const base = matmulRef(a, b, M, N, K, f.transA, f.transB, batch);
  const want = base.map((v, i) =>
    ACT[f.epilogue](f.alpha * v + (f.accumulate ? c0[i] : 0) + (f.bias ? bias[i % N] : 0))
  );
  const rows = rowSumsRef(a, M, K, f.transA);
  const wantRs = rows.map((v, i) => v + (f.accumulate ? rs0[i] : 0));
  const t = (x: Float32Array) => Tensor.from(rt, x);
  return { f, A: t(a), B: t(b), bias: t(bias), c0, rs0, want, wantRs };
});

/** The variants this adapter checks (see the header). */
const variantsHere = () => variantsToCheck(rt);

/** Run every form with variant `v`; assert each against float64. */
async function checkVariant(v: MatmulVariant, label = `variant ${v.name}`): Promise<void> {
  for (const d of DATA) {
    const { f } = d;
    const C = f.accumulate ? Tensor.from(rt, d.c0) : poisoned([f.batch * f.M * f.N]);
    const rs = f.rowSums ? (f.accumulate ? Tensor.from(rt, d.rs0) : poisoned([f.M])) : null;
    matmul(rt, d.A, d.B, C, f.M, f.N, f.K, {
      transA: f.transA,
      transB: f.transB,
      batch: f.batch,
      alpha: f.alpha,
      bias: f.bias ? d.bias : null,
      epilogue: f.epilogue,
      accumulate: f.accumulate,
      rowSums: rs,
      kernel: "tiled",
      variant: v,
    });
    assertClose(await C.read(), d.want, 1e-5, label);
    if (rs) assertClose(await rs.read(), d.wantRs, 1e-5, `${label} row sums`);
  }
}

const HERE = variantsHere();
for (const v of HERE) {
  Deno.test(`[gpu] matmul variant ${v.name}: every form vs float64`, () => checkVariant(v));
}

if (HERE.length === MATMUL_VARIANTS.length) {
  Deno.test("[gpu] dispatchEveryVariant (for the race check) records every variant on every form", async () => {
    rt.startTrace();
    dispatchEveryVariant(rt);
    const trace = rt.stopTrace();
    await rt.sync();
    const splits = MATMUL_VARIANTS.filter((v) => v.split > 1).length;
    const want = FORMS.length * (MATMUL_VARIANTS.length + splits);
    if (trace.length !== want) throw new Error(`${trace.length} dispatches, want ${want}`);
    const reductions = trace.filter((k) => k.name.endsWith(" reduce")).length;
    if (reductions !== FORMS.length * splits) throw new Error(`${reductions} split-K reductions`);
  });
}

Deno.test("[gpu] matmul split-K: the chunk sums add up in a fixed order (two runs bit for bit)", async () => {
  const v = MATMUL_VARIANTS.find((x) => x.split > 1)!;
  const d = DATA[2], { f } = d;
  const once = async () => {
    const C = poisoned([f.M * f.N]), rs = poisoned([f.M]);
    matmul(rt, d.A, d.B, C, f.M, f.N, f.K, { transA: true, rowSums: rs, kernel: "tiled", variant: v });
    return [await C.read(), await rs.read()];
  };
  const [c1, r1] = await once(), [c2, r2] = await once();
  const same = (x: Float32Array, y: Float32Array) =>
    new Uint32Array(x.buffer).every((w, i) => w === new Uint32Array(y.buffer)[i]);
  if (!same(c1, c2) || !same(r1, r2)) throw new Error(`${v.name}: two runs differ`);
});
