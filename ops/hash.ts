// Counter-based randomness for dropout: the keep/drop decision for element `idx` of dropout site
// `stream` at training step `step` is a pure function of (seed, step, stream, idx). Forward and
// backward recompute the same mask, so no mask is ever stored, and runs are bit-reproducible.
//
// The per-step values live in a small u32 storage tensor, the "step state":
//   [0] seed   [1] step (1-based optimizer step; AdamW's bias-correction t)   [2], [3] unused (0)
// The host writes it once per step (queue.writeBuffer), so no uniform changes per step.

/** WGSL: the hash and `dropout_scale`, returning 0 (dropped) or 1/(1-p) (kept). */
export const HASH_WGSL = /* wgsl */ `
fn pcg_hash(x: u32) -> u32 {
  let s = x * 747796405u + 2891336453u;
  let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
  return (w >> 22u) ^ w;
}
fn dropout_scale(seed: u32, step: u32, stream: u32, idx: u32, p: f32) -> f32 {
  if (p <= 0.0) { return 1.0; }
  let h = pcg_hash(idx ^ pcg_hash(stream ^ pcg_hash(step ^ pcg_hash(seed))));
  let u = f32(h >> 8u) * (1.0 / 16777216.0);
  return select(0.0, 1.0 / (1.0 - p), u >= p);
}`;

export function pcgHash(x: number): number {
  const s = (Math.imul(x >>> 0, 747796405) + 2891336453) >>> 0;
  const w = Math.imul(((s >>> ((s >>> 28) + 4)) ^ s) >>> 0, 277803737) >>> 0;
  return ((w >>> 22) ^ w) >>> 0;
}

/** TS mirror of the WGSL `dropout_scale`, used by the float64 references in tests. */
export function dropoutScale(seed: number, step: number, stream: number, idx: number, p: number): number {
  if (p <= 0) return 1;
  const h = pcgHash((idx ^ pcgHash((stream ^ pcgHash((step ^ pcgHash(seed)) >>> 0)) >>> 0)) >>> 0);
  const u = (h >>> 8) / 16777216;
  return u >= p ? 1 / (1 - p) : 0;
}
