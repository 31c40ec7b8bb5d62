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
