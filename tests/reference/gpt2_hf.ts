// An independent float64 GPT-2 forward, written from the published architecture (OpenAI's GPT-2 as
// Hugging Face transformers' modeling_gpt2.py implements it) and reading a Hugging Face state dict
// directly: Conv1D weights [in, out] (y = x·W + b), c_attn's output split into q, k, v of n_embd each
// and each into heads of n_embd / n_head, causal softmax(q·kᵀ / √head_size), the MLP 4·n_embd wide
// with config.activation_function, LayerNorm with config.layer_norm_epsilon, logits = ln_f(x)·wteᵀ.
// It shares no code with models/ or ops/ (nor with tests/reference/gpt.ts): the import mapping in
// models/hf_gpt2.ts is checked against it.

/** The config.json fields the forward reads. */
export interface HFConfigRef {
  n_embd: number;
  n_head: number;
  n_layer: number;
  vocab_size: number;
  activation_function: string;
  layer_norm_epsilon: number;
}

const SQRT_2_PI = Math.sqrt(2 / Math.PI);

function erf(x: number): number {
  // Maclaurin series for |x| <= 3, the asymptotic continued fraction of erfc beyond.
  if (Math.abs(x) <= 3) {
    let term = x, sum = x;
    for (let n = 1; n < 100; n++) {
      term *= -x * x / n;
      sum += term / (2 * n + 1);
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  const z = Math.abs(x);
  let k = z;
  for (let n = 100; n >= 1; n--) k = z + (n / 2) / k;
  const erfc = Math.exp(-z * z) / (Math.sqrt(Math.PI) * k);
  return Math.sign(x) * (1 - erfc);
}

/** transformers' ACT2FN for the four names GPT-2 configs use. */
function act(name: string, x: number): number {
  switch (name) {
    case "gelu_new":
    case "gelu_pytorch_tanh":
      return 0.5 * x * (1 + Math.tanh(SQRT_2_PI * (x + 0.044715 * x ** 3)));
    case "gelu":
      return 0.5 * x * (1 + erf(x / Math.SQRT2));
    case "relu":
      return Math.max(0, x);
  }
  throw new Error(`activation ${name}`);
}

function layerNorm(x: Float64Array, w: Float64Array, b: Float64Array, eps: number): Float64Array {
  const n = x.length;
  const mean = x.reduce((s, v) => s + v, 0) / n;
  const variance = x.reduce((s, v) => s + (v - mean) ** 2, 0) / n;
  return x.map((v, i) => ((v - mean) / Math.sqrt(variance + eps)) * w[i] + b[i]);
}

/** Conv1D: y[j] = Σ_i x[i]·W[i, j] + b[j], W [in, out]. */
function conv1d(x: Float64Array, W: Float64Array, b: Float64Array): Float64Array {
  const nin = x.length, nout = b.length;
  const y = Float64Array.from(b);
  for (let i = 0; i < nin; i++) for (let j = 0; j < nout; j++) y[j] += x[i] * W[i * nout + j];
  return y;
}

/**
 * Logits [T, V] of the token ids (T <= n_positions) under the state dict `sd` (unprefixed GPT-2 keys,
 * float64 values as stored).
 */
export function hfGpt2Reference(
  cfg: HFConfigRef,
  sd: Map<string, Float64Array>,
  ids: number[],
): Float64Array {
  const { n_embd: C, n_head: H, n_layer: L, vocab_size: V } = cfg, hs = C / H, T = ids.length;
  const g = (k: string) => {
    const v = sd.get(k);
    if (!v) throw new Error(`reference: no ${k}`);
    return v;
  };
  const wte = g("wte.weight"), wpe = g("wpe.weight");
  let xs = ids.map((id, t) => Float64Array.from({ length: C }, (_, c) => wte[id * C + c] + wpe[t * C + c]));
  for (let l = 0; l < L; l++) {
    const p = `h.${l}.`;
    const qkv = xs.map((x) =>
      conv1d(
        layerNorm(x, g(p + "ln_1.weight"), g(p + "ln_1.bias"), cfg.layer_norm_epsilon),
        g(p + "attn.c_attn.weight"),
        g(p + "attn.c_attn.bias"),
      )
    );
    const att = xs.map(() => new Float64Array(C));
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < T; t++) {
        const q = qkv[t].subarray(h * hs, (h + 1) * hs);
        const scores: number[] = [];
        for (let j = 0; j <= t; j++) {
          const k = qkv[j].subarray(C + h * hs, C + (h + 1) * hs);
          scores.push(q.reduce((s, v, i) => s + v * k[i], 0) / Math.sqrt(hs));
        }
        const m = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let j = 0; j <= t; j++) {
          const v = qkv[j].subarray(2 * C + h * hs, 2 * C + (h + 1) * hs);
          for (let i = 0; i < hs; i++) att[t][h * hs + i] += (e[j] / z) * v[i];
        }
      }
    }
    xs = xs.map((x, t) => {
      const y = conv1d(att[t], g(p + "attn.c_proj.weight"), g(p + "attn.c_proj.bias"));
      return x.map((v, i) => v + y[i]);
    });
    xs = xs.map((x) => {
      const a = layerNorm(x, g(p + "ln_2.weight"), g(p + "ln_2.bias"), cfg.layer_norm_epsilon);
      const hdn = conv1d(a, g(p + "mlp.c_fc.weight"), g(p + "mlp.c_fc.bias")).map((v) =>
        act(cfg.activation_function, v)
      );
      const y = conv1d(hdn, g(p + "mlp.c_proj.weight"), g(p + "mlp.c_proj.bias"));
      return x.map((v, i) => v + y[i]);
    });
  }
  const logits = new Float64Array(T * V);
  xs.forEach((x, t) => {
    const f = layerNorm(x, g("ln_f.weight"), g("ln_f.bias"), cfg.layer_norm_epsilon);
    for (let v = 0; v < V; v++) {
      let s = 0;
      for (let c = 0; c < C; c++) s += f[c] * wte[v * C + c];
      logits[t * V + v] = s;
    }
  });
  return logits;
}
