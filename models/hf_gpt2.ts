// Hugging Face GPT-2, in and out (browser-safe: text and bytes in, text and bytes out; models/files.ts
// reads and writes the directories). The format, as transformers' modeling_gpt2.py and the Hub's files
// (openai-community/gpt2, distilgpt2, gpt2-medium) have it:
//
// * config.json: n_embd, n_head, n_layer, n_positions, vocab_size, activation_function ("gelu_new" and
//   "gelu_pytorch_tanh": the tanh GELU; "gelu": the exact erf GELU; "relu"), layer_norm_epsilon. The
//   MLP is 4·n_embd wide (n_inner null), attention scaled by 1/√head_size, the head tied to wte.
// * model.safetensors: wte.weight [V, C], wpe.weight [n_positions, C], per block i h.{i}.ln_1.{weight,
//   bias}, h.{i}.attn.c_attn.{weight, bias}, h.{i}.attn.c_proj.*, h.{i}.ln_2.*, h.{i}.mlp.c_fc.*,
//   h.{i}.mlp.c_proj.*, then ln_f.*; keys with or without a "transformer." prefix. The Linears are
//   Conv1D: weight [in, out], y = x·W + b (our Linear keeps nn.Linear's [out, in]: transposed). c_attn's
//   3C outputs are q, k, v side by side, head h at h·head_size in each: our fused qkv rows exactly.
//   h.{i}.attn.bias and h.{i}.attn.masked_bias (causal-mask buffers of older files) are ignored;
//   lm_head.weight is absent or equal to wte.weight. Tensors are F32, F16 or BF16.
//
// Any other content is a CheckpointError naming the file and the problem (the CLIs: one line, exit 2).
// Export writes what transformers.GPT2LMHeadModel.from_pretrained loads without a missing or
// unexpected weight: "transformer."-prefixed keys, no lm_head.weight (tied), F32, metadata
// {"format": "pt"} (transformers refuses safetensors files without it). Only GPT-2-shaped models
// export: a tied head without a bias. Absent biases (nanoGPT's bias=False) are written as zeros.

import {
  CheckpointError,
  decodeSafetensors,
  encodeSafetensors,
  type StoredTensor,
} from "../lib/safetensors.ts";
import { MAX_HS } from "../ops/attention.ts";
import { LN_EPS } from "../ops/layernorm.ts";
import { type Activation, GPT2_ARCH, gptArch, type GPTConfig, gptParamSpecs } from "./gpt.ts";
import { Rng } from "../lib/rng.ts";

/** The files of a Hugging Face GPT-2 directory. */
export const HF_CONFIG = "config.json";
/** The weights' file. */
export const HF_WEIGHTS = "model.safetensors";
/** A char model's vocabulary, written beside them by the export (our file; transformers ignores it). */
export const HF_CHARS = "tinygpt_chars.json";

/** activation_function -> our activation. */
const FROM_HF: Record<string, Activation> = {
  gelu_new: "gelu",
  gelu_pytorch_tanh: "gelu",
  gelu: "gelu_erf",
  relu: "relu",
};
/** Our activation -> activation_function. */
const TO_HF: Record<Activation, string> = { gelu: "gelu_new", gelu_erf: "gelu", relu: "relu" };

/** What a Hugging Face GPT-2 directory holds, converted (internal parameter names, f32). */
export interface HFModel {
  /** Our config (GPT-2's architecture; dropout 0, blockSize n_positions unless cropped). */
  config: GPTConfig;
  /** Parameter values by internal name. */
  params: Map<string, Float32Array>;
  /** The config.json object as read. */
  hfConfig: Record<string, unknown>;
  /** A char model's vocabulary (from tinygpt_chars.json), else null. */
  chars: string[] | null;
}

/** Options of the import. */
export interface HFImportOptions {
  /** Context length to use (<= n_positions; the position table is cropped, as nanoGPT's crop_block_size). */
  blockSize?: number;
  /** Dropout of the model built (default 0). */
  dropout?: number;
}

const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** Our GPTConfig from config.json's text (CheckpointError on anything we cannot run exactly). */
export function parseHFConfig(text: string, path: string, opts: HFImportOptions = {}): {
  config: GPTConfig;
  hf: Record<string, unknown>;
} {
  const bad = (msg: string): never => {
    throw new CheckpointError(`${path}: ${msg}`);
  };
  let hf: unknown;
  try {
    hf = JSON.parse(text);
  } catch {
    return bad("is not valid JSON");
  }
  if (!isObj(hf)) return bad("is not a JSON object");
  if (hf.model_type !== undefined && hf.model_type !== "gpt2") {
    bad(`model_type is ${JSON.stringify(hf.model_type)}, not "gpt2"`);
  }
  const int = (k: string, alt?: string): number => {
    const v = hf[k] ?? (alt ? hf[alt] : undefined);
    if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > 1 << 20) {
      bad(`${k} must be a positive integer, got ${JSON.stringify(v)}`);
    }
    return v as number;
  };
  const C = int("n_embd"), H = int("n_head"), L = int("n_layer"), V = int("vocab_size");
  const P = int("n_positions", "n_ctx");
  if (C % H !== 0) bad(`n_embd ${C} is not divisible by n_head ${H}`);
  if (C / H > MAX_HS) bad(`head size ${C / H} exceeds the maximum ${MAX_HS}`);
  if (hf.n_inner !== undefined && hf.n_inner !== null && hf.n_inner !== 4 * C) {
    bad(`n_inner ${JSON.stringify(hf.n_inner)} is not supported (the MLP is 4·n_embd = ${4 * C} wide)`);
  }
  const actName = hf.activation_function ?? "gelu_new";
  const activation = typeof actName === "string" ? FROM_HF[actName] : undefined;
  if (!activation) {
    bad(
      `activation_function ${
        JSON.stringify(actName)
      } is not supported (gelu_new, gelu_pytorch_tanh, gelu, relu)`,
    );
  }
  const eps = hf.layer_norm_epsilon ?? 1e-5;
  if (typeof eps !== "number" || Math.abs(eps - LN_EPS) > 1e-12) {
    bad(`layer_norm_epsilon ${JSON.stringify(eps)} is not supported (the LayerNorm kernels use ${LN_EPS})`);
  }
  const refuse: [string, unknown][] = [
    ["scale_attn_weights", false],
    ["scale_attn_by_inverse_layer_idx", true],
    ["add_cross_attention", true],
    ["tie_word_embeddings", false],
  ];
  for (const [k, v] of refuse) if (hf[k] === v) bad(`${k} = ${v} is not supported`);
  const T = opts.blockSize ?? P;
  if (!(Number.isInteger(T) && T >= 1 && T <= P)) bad(`block size ${T} must be in [1, n_positions = ${P}]`);
  const config: GPTConfig = {
    vocabSize: V,
    nEmbd: C,
    nHead: H,
    nLayer: L,
    blockSize: T,
    dropout: opts.dropout ?? 0,
    ...GPT2_ARCH,
    activation: activation!,
  };
  return { config, hf };
}

/** Our parameter name and whether the Conv1D weight is transposed, for a GPT-2 key (prefix stripped). */
function ourName(key: string): { name: string; conv: boolean } | null {
  const top: Record<string, string> = {
    "wte.weight": "token_embedding.weight",
    "wpe.weight": "position_embedding.weight",
    "ln_f.weight": "ln_f.weight",
    "ln_f.bias": "ln_f.bias",
  };
  if (top[key]) return { name: top[key], conv: false };
  const m = /^h\.(\d+)\.(ln_1|ln_2|attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.(weight|bias)$/.exec(
    key,
  );
  if (!m) return null;
  const part: Record<string, string> = {
    ln_1: "ln1",
    ln_2: "ln2",
    "attn.c_attn": "attn.qkv",
    "attn.c_proj": "attn.proj",
    "mlp.c_fc": "mlp.fc",
    "mlp.c_proj": "mlp.proj",
  };
  return { name: `blocks.${m[1]}.${part[m[2]]}.${m[3]}`, conv: !m[2].startsWith("ln") && m[3] === "weight" };
}

/** [rows, cols] -> [cols, rows]. */
function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = a[i * cols + j];
  return out;
}

/**
 * A Hugging Face GPT-2 directory's config.json text and model.safetensors bytes -> our config and
 * parameters (`dir` names the files in errors).
 */
export function importHFGpt2(
  configText: string,
  weights: Uint8Array,
  dir: string,
  opts: HFImportOptions = {},
  charsText: string | null = null,
): HFModel {
  const { config, hf } = parseHFConfig(configText, `${dir}/${HF_CONFIG}`, opts);
  const file = `${dir}/${HF_WEIGHTS}`;
  const bad = (msg: string): never => {
    throw new CheckpointError(`${file}: ${msg}`);
  };
  const { tensors } = decodeSafetensors(weights, file, ["F32", "F16", "BF16"]);
  const want = new Map(gptParamSpecs(config, new Rng(0)).map((s) => [s.name, s.shape]));
  // wpe may be longer than the block size we run (cropped below).
  const P = (hf.n_positions ?? hf.n_ctx) as number;
  const params = new Map<string, Float32Array>();
  let lmHead: StoredTensor | null = null;
  for (const [key, t] of tensors) {
    const k = key.startsWith("transformer.") ? key.slice("transformer.".length) : key;
    if (/^h\.\d+\.attn\.(bias|masked_bias)$/.test(k)) continue; // causal-mask buffers
    if (key === "lm_head.weight") {
      lmHead = t;
      continue;
    }
    const our = ourName(k);
    if (!our || !want.has(our.name)) bad(`unexpected tensor ${key}`);
    if (params.has(our!.name)) bad(`tensor ${key} appears twice (with and without the transformer. prefix)`);
    const shape = want.get(our!.name)!;
    // Conv1D stores [in, out]; wpe has n_positions rows.
    const stored = our!.conv
      ? [shape[1], shape[0]]
      : our!.name === "position_embedding.weight"
      ? [P, shape[1]]
      : shape;
    if (t.shape.join(",") !== stored.join(",")) {
      bad(`tensor ${key} has shape [${t.shape}], expected [${stored}]`);
    }
    let data = our!.conv ? transpose(t.data, stored[0], stored[1]) : t.data;
    if (our!.name === "position_embedding.weight") data = data.slice(0, config.blockSize * config.nEmbd);
    params.set(our!.name, data);
  }
  for (const name of want.keys()) {
    if (!params.has(name)) bad(`tensor ${hfName(name)} is missing`);
  }
  if (lmHead) {
    const wte = tensors.get("transformer.wte.weight") ?? tensors.get("wte.weight")!;
    const same = lmHead.shape.join() === wte.shape.join() &&
      lmHead.data.every((x, i) => Object.is(x, wte.data[i]));
    if (!same) bad("lm_head.weight differs from wte.weight (an untied head is not supported)");
  }
  let chars: string[] | null = null;
  if (charsText !== null) {
    const where = `${dir}/${HF_CHARS}`;
    let c: unknown;
    try {
      c = JSON.parse(charsText);
    } catch {
      throw new CheckpointError(`${where}: is not valid JSON`);
    }
    const list = isObj(c) ? c.chars : undefined;
    if (
      !Array.isArray(list) || list.length !== config.vocabSize || !list.every((x) => typeof x === "string")
    ) {
      throw new CheckpointError(
        `${where}: "chars" must list the ${config.vocabSize} characters of the vocabulary`,
      );
    }
    chars = list as string[];
  }
  return { config, params, hfConfig: hf, chars };
}

/** A GPT-2 key (unprefixed) for an internal parameter name: the inverse of ourName, for messages and export. */
function hfName(name: string): string {
  const top: Record<string, string> = {
    "token_embedding.weight": "wte.weight",
    "position_embedding.weight": "wpe.weight",
    "ln_f.weight": "ln_f.weight",
    "ln_f.bias": "ln_f.bias",
  };
  if (top[name]) return top[name];
  const m = /^blocks\.(\d+)\.(ln1|ln2|attn\.qkv|attn\.proj|mlp\.fc|mlp\.proj)\.(weight|bias)$/.exec(name)!;
  const part: Record<string, string> = {
    ln1: "ln_1",
    ln2: "ln_2",
    "attn.qkv": "attn.c_attn",
    "attn.proj": "attn.c_proj",
    "mlp.fc": "mlp.c_fc",
    "mlp.proj": "mlp.c_proj",
  };
  return `h.${m[1]}.${part[m[2]]}.${m[3]}`;
}

/** Why `cfg` cannot be exported as GPT-2, or null when it can. */
export function exportProblem(cfg: GPTConfig): string | null {
  const a = gptArch(cfg);
  if (!a.tiedHead) {
    return "its head is not tied to the token embedding (GPT-2 ties them; train with --arch nanogpt or gpt2)";
  }
  return null;
}

/** The directory's files for `cfg` and its internal parameter values (GPT-2-shaped models only). */
export function exportHFGpt2(
  cfg: GPTConfig,
  values: Map<string, Float32Array>,
  chars: string[] | null,
): { config: string; weights: Uint8Array; chars: string | null } {
  const problem = exportProblem(cfg);
  if (problem) throw new Error(`this model cannot be exported as GPT-2: ${problem}`);
  const a = gptArch(cfg), { nEmbd: C, nLayer: L, blockSize: T, vocabSize: V } = cfg;
  // Every GPT-2 tensor, in the Hub's order; an absent bias is zeros.
  const full = { ...cfg, ...GPT2_ARCH };
  const sd = new Map<string, StoredTensor>();
  for (const spec of gptParamSpecs(full, new Rng(0))) {
    const [rows, cols] = spec.shape;
    const data = values.get(spec.name) ?? new Float32Array(spec.init.length);
    const conv = spec.shape.length === 2 && spec.name.startsWith("blocks.");
    sd.set(`transformer.${hfName(spec.name)}`, {
      shape: conv ? [cols, rows] : [...spec.shape],
      data: conv ? transpose(data, rows, cols) : data,
    });
  }
  const hf: Record<string, unknown> = {
    model_type: "gpt2",
    architectures: ["GPT2LMHeadModel"],
    vocab_size: V,
    n_positions: T,
    n_ctx: T,
    n_embd: C,
    n_layer: L,
    n_head: cfg.nHead,
    n_inner: null,
    activation_function: TO_HF[a.activation],
    resid_pdrop: cfg.dropout,
    embd_pdrop: a.embdDropout ? cfg.dropout : 0,
    attn_pdrop: cfg.dropout,
    layer_norm_epsilon: LN_EPS,
    initializer_range: 0.02,
    scale_attn_weights: true,
    tie_word_embeddings: true,
    use_cache: true,
    torch_dtype: "float32",
    ...(chars ? {} : { bos_token_id: 50256, eos_token_id: 50256 }),
  };
  return {
    config: JSON.stringify(hf, null, 2) + "\n",
    weights: encodeSafetensors(sd, { format: "pt" }),
    chars: chars ? JSON.stringify({ tokenizer: "char", chars }) + "\n" : null,
  };
}
