// GELU's WGSL, shared by the activation kernels (../activation.ts) and the matmul epilogues
// (../matmul/common.ts): y = x·Φ(x), Φ the standard normal CDF, in two forms.
//
// * "gelu" — GPT-2's tanh approximation (Hugging Face "gelu_new" / "gelu_pytorch_tanh"):
//     y = 0.5·x·(1 + tanh(u)),  u = √(2/π)·(x + 0.044715·x³).
//   Computed as x·s with s = 0.5·(1 + tanh(u)) = 1 / (1 + e^(−2u)), which never forms inf − inf or
//   inf / inf (e^(−2u) may overflow to inf: s = 0), so no argument needs clamping.
//   dy/dx = s + x · 2s(1 − s) · √(2/π)·(1 + 3·0.044715·x²).
// * "gelu_erf" — the exact form (PyTorch nn.GELU(), nanoGPT's MLP, Hugging Face "gelu"):
//     y = x·Φ(x),  Φ(x) = erfc(−x/√2) / 2,  dy/dx = Φ(x) + x·φ(x),  φ(x) = e^(−x²/2) / √(2π).
//   WGSL has no erf: erfc comes from the Chebyshev fit of Numerical Recipes (erfcc, fractional error
//   below 1.2e-7 everywhere), so Φ keeps its relative accuracy in the left tail, where 1 + erf(x)
//   would cancel.

/** The two GELU forms (the model's activation names them the same way). */
export type GeluForm = "gelu" | "gelu_erf";

/** WGSL functions gelu(x), gelu_grad(x), gelu_erf(x), gelu_erf_grad(x) (all f32 -> f32). */
export const GELU_WGSL = /* wgsl */ `
const GELU_K = 0.7978845608028654; // √(2/π)
const GELU_C = 0.044715;
fn gelu_s(x: f32) -> f32 {
  return 1.0 / (1.0 + exp(-2.0 * GELU_K * (x + GELU_C * x * x * x)));
}
fn gelu(x: f32) -> f32 {
  return x * gelu_s(x);
}
fn gelu_grad(x: f32) -> f32 {
  let s = gelu_s(x);
  return s + x * 2.0 * s * (1.0 - s) * GELU_K * (1.0 + 3.0 * GELU_C * x * x);
}
// erfc(z) for z >= 0 (Numerical Recipes' erfcc).
fn erfc_pos(z: f32) -> f32 {
  let t = 1.0 / (1.0 + 0.5 * z);
  let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  return t * exp(-z * z + poly);
}
// Φ(x) = erfc(−x/√2) / 2.
fn normal_cdf(x: f32) -> f32 {
  let z = x * 0.7071067811865476;
  let e = erfc_pos(abs(z));
  return select(1.0 - 0.5 * e, 0.5 * e, z < 0.0);
}
fn gelu_erf(x: f32) -> f32 {
  return x * normal_cdf(x);
}
fn gelu_erf_grad(x: f32) -> f32 {
  return normal_cdf(x) + x * 0.3989422804014327 * exp(-0.5 * x * x);
}
`;
