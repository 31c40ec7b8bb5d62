// Small random GPT-2-shaped Hugging Face directories, made in the tests (no GPT-2 weights can be
// downloaded here): config.json text and model.safetensors bytes in a chosen key layout and dtype,
// plus the float64 values as stored (what tests/reference/gpt2_hf.ts reads).

import { encodeSafetensors } from "../lib/safetensors.ts";
import { Rng } from "../lib/rng.ts";

/** The sizes and activation of a fixture. */
export interface HFShape {
  vocab: number;
  embd: number;
  heads: number;
  layers: number;
  positions: number;
  activation: string;
}

/** unprefixed keys; "transformer."-prefixed; unprefixed with the old causal-mask buffers and lm_head. */
export type HFLayout = "plain" | "prefixed" | "buffers";

/** A fixture: the files' contents and the stored values (unprefixed keys, float64). */
export interface HFFixture {
  config: Record<string, unknown>;
  configText: string;
  weights: Uint8Array;
  sd: Map<string, Float64Array>;
}

/** Round to bf16 (nearest, ties to even) and return the 16 bits. */
function bf16Bits(x: number): number {
  const u = new Uint32Array(new Float32Array([x]).buffer)[0];
  return ((u + 0x7fff + ((u >> 16) & 1)) >>> 16) & 0xffff;
}

/**
 * A random GPT-2 directory. Weights N(0, 0.3)-ish, LayerNorm weights around 1 and biases nonzero (so
 * every tensor matters). F16/BF16 files store rounded values; `sd` holds exactly what is stored.
 */
export function makeHFDir(
  s: HFShape,
  layout: HFLayout = "plain",
  dtype: "F32" | "F16" | "BF16" = "F32",
  seed = 1,
): HFFixture {
  const rng = new Rng(seed);
  const C = s.embd;
  const tensors: [string, number[], () => Float32Array][] = [
    ["wte.weight", [s.vocab, C], () => rng.normalArray(s.vocab * C, 0.3)],
    ["wpe.weight", [s.positions, C], () => rng.normalArray(s.positions * C, 0.3)],
  ];
  const ln = (name: string) => {
    tensors.push([`${name}.weight`, [C], () => rng.uniformArray(C, 0.6, 1.4)]);
    tensors.push([`${name}.bias`, [C], () => rng.uniformArray(C, -0.3, 0.3)]);
  };
  const conv = (name: string, nin: number, nout: number) => {
    tensors.push([`${name}.weight`, [nin, nout], () => rng.normalArray(nin * nout, 1 / Math.sqrt(nin))]);
    tensors.push([`${name}.bias`, [nout], () => rng.uniformArray(nout, -0.2, 0.2)]);
  };
  for (let l = 0; l < s.layers; l++) {
    const p = `h.${l}.`;
    ln(p + "ln_1");
    if (layout === "buffers") {
      const P = s.positions;
      tensors.push([
        p + "attn.bias",
        [1, 1, P, P],
        () => Float32Array.from({ length: P * P }, (_, i) => (i % P <= Math.floor(i / P) ? 1 : 0)),
      ]);
      tensors.push([p + "attn.masked_bias", [], () => new Float32Array([-1e4])]);
    }
    conv(p + "attn.c_attn", C, 3 * C);
    conv(p + "attn.c_proj", C, C);
    ln(p + "ln_2");
    conv(p + "mlp.c_fc", C, 4 * C);
    conv(p + "mlp.c_proj", 4 * C, C);
  }
  ln("ln_f");
  const sd = new Map<string, Float64Array>();
  const stored = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, shape, make] of tensors) {
    const v = make();
    // The stored values: rounded to the file's dtype.
    if (dtype === "F16") v.set(new Float16Array(v));
    if (dtype === "BF16") {
      v.set(Float32Array.from(v, (x) => new Float32Array(new Uint32Array([bf16Bits(x) << 16]).buffer)[0]));
    }
    sd.set(name, Float64Array.from(v));
    stored.set(name, { shape, data: v });
  }
  if (layout === "buffers") stored.set("lm_head.weight", { ...stored.get("wte.weight")! });
  const prefix = layout === "prefixed" ? "transformer." : "";
  const named = new Map([...stored].map(([k, t]) => [k === "lm_head.weight" ? k : prefix + k, t]));
  let weights = encodeSafetensors(named, { format: "pt" });
  if (dtype !== "F32") weights = narrow(weights, dtype);
  const config = {
    model_type: "gpt2",
    architectures: ["GPT2LMHeadModel"],
    vocab_size: s.vocab,
    n_positions: s.positions,
    n_ctx: s.positions,
    n_embd: C,
    n_layer: s.layers,
    n_head: s.heads,
    n_inner: null,
    activation_function: s.activation,
    layer_norm_epsilon: 1e-5,
    resid_pdrop: 0.1,
    embd_pdrop: 0.1,
    attn_pdrop: 0.1,
  };
  return { config, configText: JSON.stringify(config), weights, sd };
}

/** Rewrite an F32 safetensors file with every tensor in F16 or BF16 (values already representable). */
function narrow(f32: Uint8Array, dtype: "F16" | "BF16"): Uint8Array {
  const dv = new DataView(f32.buffer, f32.byteOffset);
  const n = Number(dv.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(f32.subarray(8, 8 + n)));
  const body = f32.subarray(8 + n);
  const parts: Uint8Array[] = [];
  let offset = 0;
  const entries = Object.entries(header).filter(([k]) => k !== "__metadata__") as [
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] },
  ][];
  entries.sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0]);
  for (const [, e] of entries) {
    const src = new Float32Array(body.slice(e.data_offsets[0], e.data_offsets[1]).buffer);
    const out = new Uint16Array(src.length);
    if (dtype === "F16") out.set(new Uint16Array(new Float16Array(src).buffer));
    else src.forEach((x, i) => (out[i] = bf16Bits(x)));
    const bytes = new Uint8Array(out.buffer);
    e.dtype = dtype;
    e.data_offsets = [offset, offset + bytes.length];
    offset += bytes.length;
    parts.push(bytes);
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const pad = Math.ceil(json.length / 8) * 8;
  json = Uint8Array.from({ length: pad }, (_, i) => (i < json.length ? json[i] : 0x20));
  const out = new Uint8Array(8 + pad + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(pad), true);
  out.set(json, 8);
  let at = 8 + pad;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Write a fixture's two files into `dir` (created). */
export async function writeHFFixture(dir: string, f: HFFixture): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(`${dir}/config.json`, f.configText);
  await Deno.writeFile(`${dir}/model.safetensors`, f.weights);
}
