// Activation family: ReLU, LeakyReLU and GELU (both forms), forward and backward, elementwise over
// n = x.size.
//
// ReLU's and LeakyReLU's backward kernels take the forward OUTPUT y rather than x: y > 0 ⇔ x > 0 (for LeakyReLU with
// slope >= 0), so they also serve after a matmul whose ReLU/LeakyReLU epilogue was fused and whose
// pre-activation was never stored. At x = 0 exactly the gradient is taken as the negative side's
// (0 for ReLU, slope for LeakyReLU), like PyTorch.
//
// GELU's backward takes the forward INPUT x (GELU is not monotonic, y does not determine x): a model
// keeps the pre-activation. Its two forms (GPT-2's tanh approximation "gelu", the exact "gelu_erf")
// and their derivatives are written out in ./activation/gelu.ts, which the matmul epilogues share.
//
// In place is allowed where the views are identical: reluForward(x, x), reluBackward(dy, y, dy).
// Both kernel families share these kernels: elementwise.ts' generator (256 invocations per
// workgroup, one element each, consecutive invocations on consecutive elements) is the GPU's shape,
// and it is llvmpipe's too: llvmpipe runs consecutive invocations as the lanes of one SIMD batch, so
// one element per invocation makes every load and store a contiguous vector access, where a run of
// elements per invocation (the usual CPU shape) would make them strided gathers.

import { launchElementwise } from "./elementwise.ts";
import { GELU_WGSL, type GeluForm } from "./activation/gelu.ts";
import { f32, type Runtime } from "./runtime.ts";
import type { Tensor } from "./tensor.ts";

function checkSlope(label: string, slope: number): void {
  if (!(slope >= 0)) {
    throw new Error(`${label}: slope must be >= 0 (backward reads the sign of y), got ${slope}`);
  }
}

/** y = max(x, 0). */
export function reluForward(rt: Runtime, x: Tensor, y: Tensor): void {
  launchElementwise(rt, { label: "relu_fwd", inputs: [x], names: ["x"], out: y, expr: "max(x, 0.0)" });
}

/** dx = dy · [y > 0], with y the forward output. */
export function reluBackward(rt: Runtime, dy: Tensor, y: Tensor, dx: Tensor): void {
  launchElementwise(rt, {
    label: "relu_bwd",
    inputs: [dy, y],
    names: ["dy", "y"],
    out: dx,
    expr: "select(0.0, dy, y > 0.0)",
  });
}

/** y = x for x > 0, slope·x otherwise. */
export function leakyReluForward(rt: Runtime, x: Tensor, y: Tensor, slope = 0.01): void {
  checkSlope("leakyReluForward", slope);
  launchElementwise(rt, {
    label: "leaky_relu_fwd",
    inputs: [x],
    names: ["x"],
    out: y,
    expr: "select(p.slope * x, x, x > 0.0)",
    fields: ["slope: f32"],
    params: [f32(slope)],
  });
}

/** dx = dy for y > 0, slope·dy otherwise, with y the forward output. */
export function leakyReluBackward(rt: Runtime, dy: Tensor, y: Tensor, dx: Tensor, slope = 0.01): void {
  checkSlope("leakyReluBackward", slope);
  launchElementwise(rt, {
    label: "leaky_relu_bwd",
    inputs: [dy, y],
    names: ["dy", "y"],
    out: dx,
    expr: "select(p.slope * dy, dy, y > 0.0)",
    fields: ["slope: f32"],
    params: [f32(slope)],
  });
}

export { GELU_WGSL, type GeluForm } from "./activation/gelu.ts";

function checkForm(label: string, form: GeluForm): void {
  if (form !== "gelu" && form !== "gelu_erf") throw new Error(`${label}: unknown GELU form ${form}`);
}

/** y = GELU(x): `form` "gelu" is GPT-2's tanh approximation, "gelu_erf" the exact x·Φ(x). */
export function geluForward(rt: Runtime, x: Tensor, y: Tensor, form: GeluForm = "gelu"): void {
  checkForm("geluForward", form);
  launchElementwise(rt, {
    label: `${form}_fwd`,
    inputs: [x],
    names: ["x"],
    out: y,
    expr: `${form}(x)`,
    lib: GELU_WGSL,
  });
}

/** dx = dy · GELU'(x), with x the forward INPUT (the pre-activation). */
export function geluBackward(rt: Runtime, dy: Tensor, x: Tensor, dx: Tensor, form: GeluForm = "gelu"): void {
  checkForm("geluBackward", form);
  launchElementwise(rt, {
    label: `${form}_bwd`,
    inputs: [dy, x],
    names: ["dy", "x"],
    out: dx,
    expr: `dy * ${form}_grad(x)`,
    lib: GELU_WGSL,
  });
}
