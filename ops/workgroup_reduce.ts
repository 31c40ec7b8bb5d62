// The one workgroup-memory tree reduction the GPU-family row kernels share (layernorm, cross-entropy,
// the decode path's fused LayerNorms): `wg_sum(l, v)` / `wg_max(l, v)` return the sum / max of `v`
// (`wg_sum2`: two sums at once, one tree's barriers) over the workgroup's `wg` invocations (l = local_invocation_index), in a fixed tree order, so a
// result is bit-reproducible. Call them in uniform control flow (they contain barriers); the
// trailing barrier lets the next call reuse the scratch array. `wg` must be a power of two.
// No subgroup path: the adapters this project is tested on report no `subgroups` feature.

/** WGSL declaring the scratch array and wg_sum / wg_max for a workgroup of `wg` invocations. */
export function workgroupReduceWGSL(wg: number): string {
  if (!(wg >= 2 && (wg & (wg - 1)) === 0)) {
    throw new Error(`workgroupReduceWGSL: ${wg} is not a power of two`);
  }
  const fn = (name: string, ty: string, red: string, combine: string) => /* wgsl */ `
fn ${name}(l: u32, v: ${ty}) -> ${ty} {
  ${red}[l] = v;
  workgroupBarrier();
  for (var s = ${wg / 2}u; s > 0u; s >>= 1u) {
    if (l < s) { ${red}[l] = ${combine}; }
    workgroupBarrier();
  }
  let r = ${red}[0];
  workgroupBarrier();
  return r;
}`;
  return `var<workgroup> wg_red: array<f32, ${wg}>;
var<workgroup> wg_red2: array<vec2<f32>, ${wg}>;
${fn("wg_sum", "f32", "wg_red", "wg_red[l] + wg_red[l + s]")}
${fn("wg_max", "f32", "wg_red", "max(wg_red[l], wg_red[l + s])")}
${fn("wg_sum2", "vec2<f32>", "wg_red2", "wg_red2[l] + wg_red2[l + s]")}`;
}
