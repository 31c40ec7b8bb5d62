// appendTokens' kernel, shared by both kernel families: one workgroup of 64 per sequence, the
// window shift done 64 consecutive entries at a time (coalesced), so it is GPU-shaped already.

const WG = 64;

export const APPEND_WGSL = /* wgsl */ `
struct P { T: u32, len: u32, cap: u32, slot: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> ctx: array<u32>;
@group(0) @binding(3) var<storage, read_write> hist: array<u32>;
@group(0) @binding(4) var<storage, read_write> pos: array<u32>;
const WG: u32 = ${WG}u;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wg.x;
  let T = p.T;
  let w = b * T;
  let id = ids[b];
  if (p.len >= T) {
    // Shift left by one, WG entries at a time: all reads of a block happen before its writes.
    for (var c = 0u; c < T; c += WG) {
      let j = c + lid;
      var v = 0u;
      if (j + 1u < T) { v = ctx[w + j + 1u]; }
      storageBarrier();
      if (j + 1u < T) { ctx[w + j] = v; }
      storageBarrier();
    }
  }
  if (lid == 0u) {
    let at = min(p.len, T - 1u);
    ctx[w + at] = id;
    pos[b] = at;
    hist[b * p.cap + p.slot] = id;
  }
}`;
