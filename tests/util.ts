// Shared helpers for the GPU tests: the runtime, seeded inputs, and relative-error assertions.

import { getRuntime, type Runtime } from "../ops/runtime.ts";
import { Tensor } from "../ops/tensor.ts";
import { Rng } from "../lib/rng.ts";

export { Rng, Tensor };
export const rt: Runtime = await getRuntime();

/** Shapes that are deliberately not multiples of any workgroup size. */
export const AWKWARD = [1, 7, 65, 129];

/**
 * Relative error of `got` vs the float64 reference: max|got - want| / max(max|want|, tiny).
 * Normalising by the largest reference magnitude keeps near-zero entries from dominating.
 */
export function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  if (got.length !== want.length) throw new Error(`length ${got.length} vs ${want.length}`);
  let num = 0, den = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!Number.isFinite(got[i]) || Number.isNaN(d)) return Infinity;
    num = Math.max(num, d);
    den = Math.max(den, Math.abs(want[i]));
  }
  return num / Math.max(den, 1e-30);
}

/** Records the worst error seen per label, printed at the end of the test file (for the closing note). */
export const worst = new Map<string, number>();

export function assertClose(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  tol: number,
  label: string,
): void {
  const e = relErr(got, want);
  worst.set(label, Math.max(worst.get(label) ?? 0, e));
  if (!(e <= tol)) {
    throw new Error(`${label}: relative error ${e.toExponential(3)} > ${tol}`);
  }
}

// With TINYGPT_REPORT=1, each test module prints its worst errors when it finishes.
if (Deno.env.get("TINYGPT_REPORT")) {
  globalThis.addEventListener("unload", () => {
    for (const [k, v] of worst) console.log(`[err] ${k}: ${v.toExponential(2)}`);
  });
}

/** A fresh f32 tensor filled with NaN, so any element the kernel fails to write fails the test. */
export function poisoned(shape: number[]): Tensor {
  const t = Tensor.empty(rt, shape);
  t.poison();
  return t;
}

/**
 * Central finite differences of a scalar float64 function f at x, for the components in `idx`
 * (all when omitted): spot-checks the analytic reference gradients.
 */
export function numericGrad(
  f: (x: Float64Array) => number,
  x: Float64Array,
  idx?: number[],
  h = 1e-5,
): Map<number, number> {
  const out = new Map<number, number>();
  for (const i of idx ?? x.keys()) {
    const old = x[i];
    x[i] = old + h;
    const fp = f(x);
    x[i] = old - h;
    const fm = f(x);
    x[i] = old;
    out.set(i, (fp - fm) / (2 * h));
  }
  return out;
}

/** Assert an analytic float64 gradient matches central differences on a few sampled components. */
export function checkNumeric(
  f: (x: Float64Array) => number,
  x: Float64Array,
  analytic: ArrayLike<number>,
  rng: Rng,
  label: string,
  samples = 6,
): void {
  const idx = Array.from({ length: Math.min(samples, x.length) }, () => rng.int(x.length));
  const num = numericGrad(f, x, idx);
  const scale = Math.max(1e-8, ...Array.from(analytic, Math.abs));
  for (const [i, g] of num) {
    const e = Math.abs(g - analytic[i]) / scale;
    if (!(e < 1e-6)) throw new Error(`${label}: finite difference at ${i}: ${g} vs analytic ${analytic[i]}`);
  }
}

/** Dot product of two float64 arrays: turns a vector output into a scalar loss L = Σ w·y. */
export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

export const f64 = (a: ArrayLike<number>): Float64Array => Float64Array.from(a);

/**
 * Per-element error max_i |got_i - want_i| / (|want_i| + atol) against a float64 reference; throws
 * above `tol` naming the worst element. Non-finite values fail.
 */
export function assertCloseElementwise(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  tol: number,
  atol: number,
  label: string,
): void {
  if (got.length !== want.length) throw new Error(`${label}: length ${got.length} vs ${want.length}`);
  let worstErr = 0, at = 0;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i] - want[i]) / (Math.abs(want[i]) + atol);
    if (!Number.isFinite(got[i]) || !(e <= worstErr)) {
      worstErr = Number.isFinite(got[i]) ? e : Infinity;
      at = i;
    }
  }
  worst.set(label, Math.max(worst.get(label) ?? 0, worstErr));
  if (!(worstErr <= tol)) {
    throw new Error(
      `${label}: element ${at}: got ${got[at]}, want ${want[at]} (error ${
        worstErr.toExponential(3)
      } > ${tol})`,
    );
  }
}
