// The race detector's own checks (./detector.ts): what it adds on top of wgsl_reflect (barrier
// semantics per memory space, vector components, per-invocation private memory, races between
// workgroups, out-of-bounds accesses, the comparison with the GPU's result) and the interpreter
// fixes it carries, each on a small kernel whose answer is known. Also the three races of issue 16,
// as patterns cut from the kernels that had them.

import assert from "node:assert";
import type { CapturedDispatch } from "../../ops/runtime.ts";
import { checkDispatch, dynamicIndexWrites, type Finding } from "./detector.ts";

/** A dispatch of `code` binding `buffers` (binding i+1 by name; `after` defaults to `before`). */
function dispatch(
  code: string,
  grid: [number, number, number],
  buffers: Record<string, { before: ArrayBufferLike; after?: ArrayBufferLike }>,
): CapturedDispatch {
  return {
    label: "test",
    code,
    family: "gpu",
    workgroups: grid,
    bindings: Object.entries(buffers).map(([name, b], i) => ({
      decl: { binding: i + 1, name, uniform: false },
      before: b.before.slice(0) as ArrayBuffer,
      after: (b.after ?? b.before).slice(0) as ArrayBuffer,
    })),
  };
}

/** Findings of `kind` on `variable`. */
const of = (fs: Finding[], kind: Finding["kind"], variable?: string) =>
  fs.filter((f) => f.kind === kind && (variable === undefined || f.variable === variable));

/** Check `code` over `out` (f32, `n` words) and return the findings other than the GPU comparison. */
function findings(code: string, n = 64, grid: [number, number, number] = [1, 1, 1]): Finding[] {
  const r = checkDispatch(dispatch(code, grid, { out: { before: new Float32Array(n).buffer } }));
  return r.findings.filter((f) => f.kind !== "mismatch");
}

const OUT = "@group(0) @binding(1) var<storage, read_write> out: array<f32>;";

Deno.test("race detector: workgroupBarrier orders workgroup memory, storageBarrier does not", () => {
  const kernel = (barrier: string) =>
    `${OUT}
var<workgroup> tile: array<f32, 64>;
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32) {
  tile[lid] = f32(lid);
  ${barrier};
  out[lid] = tile[63u - lid];
}`;
  assert.deepEqual(findings(kernel("workgroupBarrier()")), []);
  const racy = of(findings(kernel("storageBarrier()")), "race", "tile");
  assert.equal(racy.length, 1, "a storageBarrier does not order workgroup memory");
  assert.match(racy[0].message, /workgroupBarrier/);
});

Deno.test("race detector: storageBarrier orders storage memory, workgroupBarrier does not", () => {
  const kernel = (barrier: string) =>
    `${OUT}
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32) {
  out[lid] = f32(lid);
  ${barrier};
  out[64u + lid] = out[63u - lid];
}`;
  assert.deepEqual(findings(kernel("storageBarrier()"), 128), []);
  assert.equal(of(findings(kernel("workgroupBarrier()"), 128), "race", "out").length, 1);
});

Deno.test("race detector: a component store is a store to its whole vector", () => {
  // issue 16's tile_dots pattern: four invocations store the four components of one vec4.
  const components = `${OUT}
var<workgroup> xt: array<vec4<f32>, 16>;
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32) {
  xt[lid / 4u][lid % 4u] = f32(lid);
  workgroupBarrier();
  out[lid] = xt[lid / 4u][lid % 4u];
}`;
  assert.equal(of(findings(components), "race", "xt").length, 1);
  // The fix: each invocation stores whole vec4s (and the stored value is read back exactly).
  const whole = `${OUT}
var<workgroup> xt: array<vec4<f32>, 16>;
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32) {
  if (lid < 16u) { xt[lid] = vec4<f32>(f32(4u * lid), f32(4u * lid + 1u), f32(4u * lid + 2u), f32(4u * lid + 3u)); }
  workgroupBarrier();
  out[lid] = xt[lid / 4u][lid % 4u];
}`;
  const expect = Float32Array.from({ length: 64 }, (_, i) => i);
  const r = checkDispatch(
    dispatch(whole, [1, 1, 1], { out: { before: new Float32Array(64).buffer, after: expect.buffer } }),
  );
  assert.deepEqual(r.findings, []);
  assert.deepEqual(new Float32Array(r.memory.get("out")!), expect);
});

Deno.test("race detector: issue 16's sampling pattern (a workgroup value read, then reused)", () => {
  const kernel = (fixed: boolean) =>
    `${OUT}
var<workgroup> redV: array<f32, 64>;
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32) {
  redV[lid] = f32(lid);
  workgroupBarrier();
  let zmax = redV[0];
  ${fixed ? "workgroupBarrier();" : "storageBarrier();"}
  redV[lid] = zmax + 1.0;
  workgroupBarrier();
  out[lid] = redV[(lid + 1u) % 64u];
}`;
  assert.equal(of(findings(kernel(false)), "race", "redV").length, 1);
  assert.deepEqual(findings(kernel(true)), []);
});

Deno.test("race detector: var<private> is per invocation; workgroup memory starts zeroed", () => {
  const code = `${OUT}
var<private> acc: array<vec4<f32>, 2>;
var<workgroup> seen: array<f32, 4>;
@compute @workgroup_size(4)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  acc[1][lid] = f32(lid + 1u);
  acc[1] += vec4<f32>(1.0);
  let before = seen[lid];
  seen[lid] = 5.0;
  out[wid.x * 8u + lid] = acc[1][lid];
  out[wid.x * 8u + 4u + lid] = before;
}`;
  const expect = new Float32Array(16);
  for (const w of [0, 1]) for (let l = 0; l < 4; l++) [expect[w * 8 + l], expect[w * 8 + 4 + l]] = [l + 2, 0];
  const r = checkDispatch(
    dispatch(code, [2, 1, 1], { out: { before: new Float32Array(16).buffer, after: expect.buffer } }),
  );
  assert.deepEqual(r.findings, []);
});

Deno.test("race detector: a storage word two workgroups touch is a race", () => {
  const code = `${OUT}
@compute @workgroup_size(4)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  out[wid.x * 3u + lid] = 1.0;
}`;
  const f = of(findings(code, 16, [2, 1, 1]), "race", "out");
  assert.equal(f.length, 1);
  assert.match(f[0].message, /workgroups of one dispatch are unordered/);
});

Deno.test("race detector: an access outside its buffer is a finding", () => {
  const code = `${OUT}
@compute @workgroup_size(4)
fn main(@builtin(local_invocation_index) lid: u32) {
  out[lid * 2u] = 1.0;
}`;
  assert.equal(of(findings(code, 5), "oob", "out").length, 1);
  assert.deepEqual(findings(code, 8), []);
});

Deno.test("race detector: a barrier some invocations never reach is a finding", () => {
  const code = `${OUT}
var<workgroup> t: array<f32, 4>;
@compute @workgroup_size(4)
fn main(@builtin(local_invocation_index) lid: u32) {
  if (lid == 3u) { return; }
  t[lid] = 1.0;
  workgroupBarrier();
  out[lid] = t[(lid + 1u) % 3u];
}`;
  assert.equal(of(findings(code, 4), "divergence").length, 1);
});

Deno.test("race detector: what the interpreter writes is compared with what the GPU wrote", () => {
  const code = `${OUT}
@compute @workgroup_size(4)
fn main(@builtin(local_invocation_index) lid: u32) {
  out[lid] = f32(lid) * 2.0;
}`;
  const ok = Float32Array.from([0, 2, 4, 6]), wrong = Float32Array.from([0, 2, 5, 6]);
  const run = (after: Float32Array) =>
    checkDispatch(
      dispatch(code, [1, 1, 1], { out: { before: new Float32Array(4).buffer, after: after.buffer } }),
    );
  assert.deepEqual(run(ok).findings, []);
  const m = of(run(wrong).findings, "mismatch", "out");
  assert.equal(m.length, 1);
  assert.match(m[0].message, /1 of 4 words/);
});

Deno.test("race detector: interpreter fixes (case bodies, 32-bit integer *, <<, >>, calls per invocation)", () => {
  const code = `${OUT}
@group(0) @binding(2) var<storage, read_write> u: array<u32>;
fn twice(x: u32) -> u32 { return 2u * x; }
@compute @workgroup_size(4)
fn main(@builtin(local_invocation_index) lid: u32) {
  var a = 0.0; var b = 0.0; var c = 0.0;
  switch lid {
    case 1u: { a = 1.0; b = 2.0; c = 3.0; }
    default: {}
  }
  out[lid] = a + b + c;
  let h = (lid + 0x9e3779b9u) * 747796405u;
  u[lid] = h;
  u[4u + lid] = h >> 7u;
  u[8u + lid] = h << 3u;
  u[12u + lid] = twice(lid + 10u);
}`;
  const want = new Uint32Array(16);
  for (let l = 0; l < 4; l++) {
    const h = Math.imul((l + 0x9e3779b9) >>> 0, 747796405) >>> 0;
    [want[l], want[4 + l], want[8 + l], want[12 + l]] = [h, h >>> 7, (h << 3) >>> 0, 2 * (l + 10)];
  }
  const out = Float32Array.from([0, 6, 0, 0]);
  const r = checkDispatch(dispatch(code, [1, 1, 1], {
    out: { before: new Float32Array(4).buffer, after: out.buffer },
    u: { before: new Uint32Array(16).buffer, after: want.buffer },
  }));
  assert.deepEqual(r.findings, []);
});

Deno.test("race detector: a write into a private vector or array through a computed index", () => {
  const kernel = (loop: string, index: string) =>
    `${OUT}
@compute @workgroup_size(4)
fn main(@builtin(local_invocation_index) lid: u32) {
  var v = vec4<f32>();
  var a: array<f32, 8>;
  ${loop} {
    v[${index}] = 1.0;
    a[${index} + 4u] = 2.0;
  }
  out[lid] = v.x + a[4];
}`;
  // A counter of a loop with constant bounds is constant once the loop is unrolled.
  assert.deepEqual(dynamicIndexWrites(kernel("for (var r = 0u; r < 4u; r++)", "r")), []);
  assert.deepEqual(dynamicIndexWrites(kernel("for (var r = 0u; r < 4u; r += 2u)", "3u - r")), []);
  // An index from data, or from a loop whose bounds are not constant, is not.
  const fromData = dynamicIndexWrites(kernel("if (lid < 4u)", "lid"));
  assert.deepEqual(fromData.map((w) => [w.variable, w.into]), [["v", "vector"], ["a", "array"]]);
  assert.equal(dynamicIndexWrites(kernel("for (var r = lid; r < 4u; r++)", "r")).length, 2);
});
