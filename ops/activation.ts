// Activation family: ReLU and LeakyReLU, forward and backward, elementwise over n = x.size.
//
// The backward kernels take the forward OUTPUT y rather than x: y > 0 ⇔ x > 0 (for LeakyReLU with
// slope >= 0), so they also serve after a matmul whose ReLU/LeakyReLU epilogue was fused and whose
// pre-activation was never stored. At x = 0 exactly the gradient is taken as the negative side's
// (0 for ReLU, slope for LeakyReLU), like PyTorch.
//
// In place is allowed where the views are identical: reluForward(x, x), reluBackward(dy, y, dy).
// Both kernel families share these kernels: elementwise.ts' generator (256 invocations per
// workgroup, one element each, coalesced) is GPU-shaped already.

import { launchElementwise } from "./elementwise.ts";
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
