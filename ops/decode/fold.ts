// foldLayernorm's kernel (semantics in ../decode.ts), shared by both families: it runs once per
// generate() per folded Linear, so one invocation per output row is enough on any adapter.

export const FOLD_WGSL = /* wgsl */ `
struct P { N: u32, K: u32, hasBias: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> W: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> Wf: array<f32>;
@group(0) @binding(6) var<storage, read_write> bf: array<f32>;
@group(0) @binding(7) var<storage, read_write> cs: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let n = g.x;
  if (n >= p.N) { return; }
  var s = 0.0;
  var c = 0.0;
  if (p.hasBias != 0u) { s = bias[n]; }
  for (var k = 0u; k < p.K; k++) {
    let w = W[n * p.K + k];
    let wf = w * gamma[k];
    Wf[n * p.K + k] = wf;
    c += wf;
    s = fma(w, beta[k], s);
  }
  bf[n] = s;
  cs[n] = c;
}`;
