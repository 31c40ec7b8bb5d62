// Shared helpers for the GPU tests: the runtime, seeded inputs, and relative-error assertions.

import { getRuntime, KERNEL_FAMILIES, type KernelFamily, type Runtime } from "../ops/runtime.ts";
import { Tensor } from "../ops/tensor.ts";
import { Rng } from "../lib/rng.ts";

export { Rng, Tensor };
export const rt: Runtime = await getRuntime();
// Release the device while the process is still whole: one full lavapipe run in four printed glibc's
// "corrupted size vs. prev_size in fastbins" after the test summary, i.e. while the driver was being
// torn down at exit with the device still alive (a suspected teardown-order crash in Mesa/wgpu, not
// yet reproduced on demand).
globalThis.addEventListener("unload", () => rt.destroy());

/**
 * Register `fn` once per kernel family ("[gpu] name", "[cpu] name"), forcing `rt.kernels` for its
 * duration: every op and model check runs through both families on whatever adapter runs the tests.
 */
export function familyTest(name: string, fn: (family: KernelFamily) => Promise<void> | void): void {
  for (const family of KERNEL_FAMILIES) {
    Deno.test(`[${family}] ${name}`, async () => {
      const before = rt.kernels;
      rt.kernels = family;
      try {
        await fn(family);
      } finally {
        rt.kernels = before;
      }
    });
  }
}

/**
 * Whether the tests run in the page (tests/web/op_tests.ts: the shim's `Deno` has no `build`). There,
 * SwiftShader compiles each pipeline for seconds, so a test whose shapes each compile new kernels of the
 * same code path may run a subset (`browserSubset`); Deno runs every shape.
 */
export const IN_BROWSER = !("build" in Deno);

/** `all`, or in the page only the entries `keep` picks (see IN_BROWSER). */
export function browserSubset<T>(all: readonly T[], keep: (t: T) => boolean): readonly T[] {
  return IN_BROWSER ? all.filter(keep) : all;
}

/** Shapes that are deliberately not multiples of any workgroup size. */
export const AWKWARD = [1, 7, 65, 129];

/** Root mean square of `a`: the scale of a tensor's values. */
export function rms(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  return Math.sqrt(s / Math.max(1, a.length));
}

/**
 * Relative error of `got` vs the float64 reference, per element: max_i |got_i − want_i| / (|want_i| +
 * atol). `atol` defaults to the reference's RMS: float32 rounds a sum in proportion to the
 * magnitudes summed, not to the result, so an element that cancels to near zero is judged against
 * the tensor's typical size, while every element of ordinary size is judged against itself (a
 * global max would let errors in the small entries of a tensor with a few large ones through).
 * Non-finite values give Infinity.
 */
export function relErr(got: ArrayLike<number>, want: ArrayLike<number>, atol = rms(want)): number {
  if (got.length !== want.length) throw new Error(`length ${got.length} vs ${want.length}`);
  const a = Math.max(atol, 1e-30);
  let worstErr = 0;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i] - want[i]) / (Math.abs(want[i]) + a);
    if (!Number.isFinite(got[i]) || Number.isNaN(e)) return Infinity;
    worstErr = Math.max(worstErr, e);
  }
  return worstErr;
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
