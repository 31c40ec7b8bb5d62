// Dropout family: y = x · dropout_scale(seed, step, stream, i, p), with i the flat element index in
// the tensor, seed/step read from the u32 step-state tensor [seed, step, 0, 0] and `stream` a small
// integer naming the dropout site. The mask is a pure function of those, so backward recomputes it
// (nothing is stored) and a step is bit-reproducible. See ops/hash.ts (TS mirror: `dropoutScale`).
//
// Eval (train = false) and p = 0 are the identity. addDropout is the residual update
// res += dropout(y); its backward is dropoutBackward(dres → dy) plus the identity into dres.
// In place is allowed where the views are identical: dropoutForward(x, x), dropoutBackward(d, d).

import { addInto, launchElementwise, sameView } from "./elementwise.ts";
import { HASH_WGSL } from "./hash.ts";
import { f32, type Runtime } from "./runtime.ts";
import type { Tensor } from "./tensor.ts";

const EXPR = "x * dropout_scale(st[0], st[1], p.stream, i, p.p)";

function checkArgs(label: string, p: number, stream: number): void {
  if (!(p >= 0 && p < 1)) throw new Error(`${label}: p must be in [0, 1), got ${p}`);
  if (!Number.isInteger(stream) || stream < 0 || stream > 0xffffffff) {
    throw new Error(`${label}: stream must be a u32, got ${stream}`);
  }
}

function masked(
  rt: Runtime,
  label: string,
  x: Tensor,
  y: Tensor,
  p: number,
  state: Tensor,
  stream: number,
  accumulate: boolean,
): void {
  launchElementwise(rt, {
    label,
    inputs: [x],
    names: ["x"],
    out: y,
    expr: EXPR,
    accumulate,
    fields: ["stream: u32", "p: f32"],
    params: [stream, f32(p)],
    state,
    lib: HASH_WGSL,
  });
}

function copy(rt: Runtime, label: string, x: Tensor, y: Tensor): void {
  if (sameView(x, y)) return; // in place: nothing to do
  launchElementwise(rt, { label, inputs: [x], names: ["x"], out: y, expr: "x" });
}

/** Forward and backward are the same map (multiply by the recomputed mask); only labels differ. */
function applyMask(
  rt: Runtime,
  name: string,
  kernel: string,
  x: Tensor,
  y: Tensor,
  p: number,
  state: Tensor,
  stream: number,
  train: boolean,
): void {
  checkArgs(name, p, stream);
  if (!train || p === 0) copy(rt, "dropout_copy", x, y);
  else masked(rt, kernel, x, y, p, state, stream, false);
}

/** train: y = x · scale(seed, step, stream, i, p); eval or p = 0: y = x. */
export function dropoutForward(
  rt: Runtime,
  x: Tensor,
  y: Tensor,
  p: number,
  state: Tensor,
  stream: number,
  train: boolean,
): void {
  applyMask(rt, "dropoutForward", "dropout_fwd", x, y, p, state, stream, train);
}

/** dx = dy · (the same mask and scale as the forward with these arguments). */
export function dropoutBackward(
  rt: Runtime,
  dy: Tensor,
  dx: Tensor,
  p: number,
  state: Tensor,
  stream: number,
  train: boolean,
): void {
  applyMask(rt, "dropoutBackward", "dropout_bwd", dy, dx, p, state, stream, train);
}

/**
 * Residual update in place: res[i] += y[i] · scale (scale = 1 in eval), i.e. x = x + dropout(f(x)).
 * Backward: dres flows unchanged to the residual input, and dropoutBackward(dres → dy) gives the
 * branch gradient (same p, state, stream, train).
 */
export function addDropout(
  rt: Runtime,
  res: Tensor,
  y: Tensor,
  p: number,
  state: Tensor,
  stream: number,
  train: boolean,
): void {
  checkArgs("addDropout", p, stream);
  if (sameView(res, y)) throw new Error("addDropout: res and y are the same tensor");
  if (!train || p === 0) addInto(rt, res, y);
  else masked(rt, "add_dropout", y, res, p, state, stream, true);
}

/**
 * out = res + dropout(y): the transformer's residual update `x = x + dropout(f(x))` in one kernel,
 * keeping `res` intact (LayerNorm's backward needs it). Backward: dropoutBackward(dout → dy), and
 * dout flows unchanged into dres.
 */
export function residualDropout(
  rt: Runtime,
  res: Tensor,
  y: Tensor,
  out: Tensor,
  p: number,
  state: Tensor,
  stream: number,
  train: boolean,
): void {
  checkArgs("residualDropout", p, stream);
  const drop = train && p > 0;
  launchElementwise(rt, {
    label: "residual_dropout",
    inputs: [res, y],
    names: ["r", "x"],
    out,
    expr: drop ? `r + ${EXPR}` : "r + x",
    fields: drop ? ["stream: u32", "p: f32"] : [],
    params: drop ? [stream, f32(p)] : [],
    state: drop ? state : undefined,
    lib: drop ? HASH_WGSL : undefined,
  });
}
