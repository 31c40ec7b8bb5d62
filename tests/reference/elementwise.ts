// Float64 references for the elementwise, activation and dropout families.

import { dropoutScale } from "../../ops/hash.ts";

const map = (x: ArrayLike<number>, f: (v: number, i: number) => number): Float64Array =>
  Float64Array.from(x, f);

export const reluRef = (x: ArrayLike<number>): Float64Array => map(x, (v) => Math.max(v, 0));
/** dx from dy and the forward output y. */
export const reluGradRef = (dy: ArrayLike<number>, y: ArrayLike<number>): Float64Array =>
  map(dy, (d, i) => (y[i] > 0 ? d : 0));

export const leakyReluRef = (x: ArrayLike<number>, slope = 0.01): Float64Array =>
  map(x, (v) => (v > 0 ? v : slope * v));
export const leakyReluGradRef = (dy: ArrayLike<number>, y: ArrayLike<number>, slope = 0.01): Float64Array =>
  map(dy, (d, i) => (y[i] > 0 ? d : slope * d));

/**
 * The dropout mask·scale for elements 0..n-1 (0 or 1/(1-p)); all ones in eval. p is rounded to f32
 * first, as the kernels receive it (the keep test u >= p can differ between p and f32(p)).
 */
export function dropoutScales(
  n: number,
  p: number,
  seed: number,
  step: number,
  stream: number,
  train = true,
): Float64Array {
  const s = new Float64Array(n);
  const p32 = Math.fround(p);
  for (let i = 0; i < n; i++) s[i] = train ? dropoutScale(seed, step, stream, i, p32) : 1;
  return s;
}

/** y = x·scale; also the backward (dx = dy·scale) since dropout is linear. */
export const dropoutRef = (x: ArrayLike<number>, scales: ArrayLike<number>): Float64Array =>
  map(x, (v, i) => v * scales[i]);

/** res + y·scale: the residual update x = x + dropout(f(x)). */
export const addDropoutRef = (
  res: ArrayLike<number>,
  y: ArrayLike<number>,
  scales: ArrayLike<number>,
): Float64Array => map(res, (r, i) => r + y[i] * scales[i]);

export const addRef = (a: ArrayLike<number>, b: ArrayLike<number>): Float64Array =>
  map(a, (v, i) => v + b[i]);
export const scaleRef = (x: ArrayLike<number>, s: number): Float64Array => map(x, (v) => s * v);

// ---------------------------------------------------------------- GELU (float64, from the definitions)

/** erfc(z) in float64: the Maclaurin series of erf for |z| <= 2, the continued fraction of erfc beyond. */
export function erfcRef(z: number): number {
  if (Math.abs(z) <= 2) {
    // erf(z) = 2/√π Σ (-1)^n z^(2n+1) / (n! (2n+1))
    let term = z, sum = z;
    for (let n = 1; n < 60; n++) {
      term *= -z * z / n;
      sum += term / (2 * n + 1);
    }
    return 1 - (2 / Math.sqrt(Math.PI)) * sum;
  }
  if (z < 0) return 2 - erfcRef(-z);
  // erfc(z) = e^(−z²)/√π · 1/(z + (1/2)/(z + 1/(z + (3/2)/(z + ...)))), evaluated from the tail.
  let k = z;
  for (let n = 80; n >= 1; n--) k = z + (n / 2) / k;
  return Math.exp(-z * z) / (Math.sqrt(Math.PI) * k);
}

/** Φ(x), the standard normal CDF. */
export const normalCdfRef = (x: number): number => 0.5 * erfcRef(-x / Math.SQRT2);

/** The GELU forms: "gelu" = GPT-2's 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))), "gelu_erf" = x·Φ(x). */
export function geluRef(x: ArrayLike<number>, form: "gelu" | "gelu_erf"): Float64Array {
  const k = Math.sqrt(2 / Math.PI);
  return map(
    x,
    (v) => form === "gelu" ? 0.5 * v * (1 + Math.tanh(k * (v + 0.044715 * v * v * v))) : v * normalCdfRef(v),
  );
}

/** dx = dy · GELU'(x) (x the forward input). */
export function geluGradRef(
  dy: ArrayLike<number>,
  x: ArrayLike<number>,
  form: "gelu" | "gelu_erf",
): Float64Array {
  const k = Math.sqrt(2 / Math.PI);
  return map(dy, (d, i) => {
    const v = x[i];
    if (form === "gelu_erf") {
      return d * (normalCdfRef(v) + v * Math.exp(-0.5 * v * v) / Math.sqrt(2 * Math.PI));
    }
    const t = Math.tanh(k * (v + 0.044715 * v * v * v));
    return d * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * k * (1 + 3 * 0.044715 * v * v));
  });
}
