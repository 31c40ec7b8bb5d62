// Elementwise family: add, addInto, scale, fill, plus the shared generator that activation.ts and
// dropout.ts build their kernels with. One invocation per element, workgroups of 256, and a 2-D grid
// once n needs more than maxComputeWorkgroupsPerDimension workgroups (flat index = x + y·width).
//
// Aliasing: WebGPU forbids one buffer bound both read-only and read_write in a dispatch. When an
// input is exactly the output view (y = x in place, acc += x with acc === x), the generator binds it
// once, read_write, and reads it from there. An input that shares the output's buffer any other way
// (different offset/size) is rejected with a clear error instead of a validation failure at submit.
//
// Backward passes: add's gradient is the identity for both operands (use addInto to accumulate it),
// scale's gradient is scale by the same s, and fill has no inputs.
//
// Both kernel families share these kernels (and activation.ts' and dropout.ts'): one element per
// invocation, 256 per workgroup, consecutive invocations on consecutive elements (coalesced) is the
// GPU shape already, and lavapipe runs it at its memory speed.

import { f32, grid1d, type Param, type Runtime } from "./runtime.ts";
import { cachedWGSL } from "./wgsl_cache.ts";
import type { Tensor } from "./tensor.ts";

/** Invocations per workgroup of the elementwise kernels. */
export const EW_WG = 256;

/** Same buffer, same offset, same length: the one case an input may alias the output. */
export function sameView(a: Tensor, b: Tensor): boolean {
  return a.buffer === b.buffer && a.offset === b.offset && a.size === b.size;
}

/** Throw unless `written` shares no buffer with any of `read` (WebGPU's read vs read_write rule). */
export function assertNoAlias(label: string, written: Tensor, read: readonly Tensor[]): void {
  for (const t of read) {
    if (t.buffer === written.buffer) {
      throw new Error(
        `${label}: ${written.name || "output"} shares a GPU buffer with input ${t.name || "(unnamed)"} ` +
          "(WebGPU forbids binding one buffer both read-only and read_write in a dispatch)",
      );
    }
  }
}

/** One elementwise kernel: out[i] = expr (or out[i] + expr), expr over the named f32 inputs at i. */
export interface Elementwise {
  /** Kernel label (pipeline and error messages). */
  label: string;
  /** f32 inputs, read at the element index; `names[k]` is the WGSL `let` holding inputs[k][i]. */
  inputs: readonly Tensor[];
  /** WGSL names of the inputs, in order. */
  names: readonly string[];
  /** The f32 output, one element per invocation. */
  out: Tensor;
  /** WGSL f32 expression of the input names, the uniforms `p.<field>`, and `i` (flat index, u32). */
  expr: string;
  /** out[i] = out[i] + expr. */
  accumulate?: boolean;
  /** Extra uniform fields after `n`, e.g. "s: f32", and their values in order. */
  fields?: readonly string[];
  /** Values of `fields`, in order. */
  params?: readonly Param[];
  /** A read-only u32 tensor bound as `st` (dropout's step state). */
  state?: Tensor;
  /** Extra WGSL (functions) pasted before `main`. */
  lib?: string;
}

function ewWGSL(e: Elementwise, inplace: number): string {
  const key =
    [e.names.join(","), inplace, e.expr, e.accumulate ? 1 : 0, (e.fields ?? []).join(","), !!e.state]
      .join("|") + (e.lib ?? "");
  return cachedWGSL(`elementwise/${key}`, () => generateWGSL(e, inplace));
}

function generateWGSL(e: Elementwise, inplace: number): string {
  let binding = 1;
  const decls: string[] = [];
  const loads: string[] = [];
  e.names.forEach((name, k) => {
    if (k === inplace) {
      loads.push(`let ${name} = out[i];`);
    } else {
      decls.push(`@group(0) @binding(${binding++}) var<storage, read> in_${name}: array<f32>;`);
      loads.push(`let ${name} = in_${name}[i];`);
    }
  });
  if (e.state) decls.push(`@group(0) @binding(${binding++}) var<storage, read> st: array<u32>;`);
  decls.push(`@group(0) @binding(${binding++}) var<storage, read_write> out: array<f32>;`);
  const fields = ["n: u32", ...(e.fields ?? [])].join(", ");
  return /* wgsl */ `
struct P { ${fields} }
@group(0) @binding(0) var<uniform> p: P;
${decls.join("\n")}
${e.lib ?? ""}
@compute @workgroup_size(${EW_WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = g.x + g.y * (nwg.x * ${EW_WG}u);
  if (i >= p.n) { return; }
  ${loads.join("\n  ")}
  out[i] = ${e.accumulate ? "out[i] + " : ""}(${e.expr});
}`;
}

/** Validate sizes and aliasing, generate (cached) WGSL and record the dispatch. */
export function launchElementwise(rt: Runtime, e: Elementwise): void {
  const n = e.out.size;
  if (e.inputs.length !== e.names.length) throw new Error(`${e.label}: names/inputs mismatch`);
  if (e.out.dtype !== "f32") throw new Error(`${e.label}: output must be f32`);
  let inplace = -1;
  e.inputs.forEach((t, k) => {
    if (t.size !== n) throw new Error(`${e.label}: input has ${t.size} elements, output ${n}`);
    if (sameView(t, e.out)) {
      if (inplace < 0) inplace = k;
      else throw new Error(`${e.label}: two inputs alias the output`);
    } else if (t.buffer === e.out.buffer) {
      assertNoAlias(e.label, e.out, [t]);
    }
  });
  if (e.state) {
    if (e.state.dtype !== "u32" || e.state.size < 2) {
      throw new Error(`${e.label}: state must be u32 [seed, step, ..]`);
    }
    assertNoAlias(e.label, e.out, [e.state]);
  }
  const views: Record<string, Tensor> = { out: e.out };
  e.inputs.forEach((t, k) => {
    if (k !== inplace) views[`in_${e.names[k]}`] = t;
  });
  if (e.state) views.st = e.state;
  rt.dispatch(e.label, ewWGSL(e, inplace), views, [n, ...(e.params ?? [])], grid1d(rt, n, EW_WG).workgroups);
}

// ---------------------------------------------------------------- the ops

/** out = a + b (same sizes). `out` may be `a` or `b` itself (in place). */
export function add(rt: Runtime, a: Tensor, b: Tensor, out: Tensor): void {
  if (sameView(a, out) && sameView(b, out)) {
    scale(rt, out, out, 2);
    return;
  }
  launchElementwise(rt, { label: "add", inputs: [a, b], names: ["a", "b"], out, expr: "a + b" });
}

/** acc += x (same sizes): gradient accumulation, residual sums. */
export function addInto(rt: Runtime, acc: Tensor, x: Tensor): void {
  if (sameView(acc, x)) {
    scale(rt, acc, acc, 2);
    return;
  }
  launchElementwise(rt, {
    label: "add_into",
    inputs: [x],
    names: ["x"],
    out: acc,
    expr: "x",
    accumulate: true,
  });
}

/** y = s·x (same sizes; y may be x). Also scale's own backward: dx = s·dy. */
export function scale(rt: Runtime, x: Tensor, y: Tensor, s: number): void {
  launchElementwise(rt, {
    label: "scale",
    inputs: [x],
    names: ["x"],
    out: y,
    expr: "p.s * x",
    fields: ["s: f32"],
    params: [f32(s)],
  });
}

/** Every element of t = value (as f32). */
export function fill(rt: Runtime, t: Tensor, value: number): void {
  launchElementwise(rt, {
    label: "fill",
    inputs: [],
    names: [],
    out: t,
    expr: "p.v",
    fields: ["v: f32"],
    params: [f32(value)],
  });
}
