// Hugging Face GPT-2 in and out. The import mapping (models/hf_gpt2.ts) is checked against an
// independent float64 GPT-2 written from the published architecture (tests/reference/gpt2_hf.ts) on
// small random GPT-2-shaped directories in every key layout and dtype: logits per element within the
// forward tolerance, and the same greedy ids. Export then import is bit-identical; bad input is one
// CheckpointError line.

import assert from "node:assert";
import { assertClose, familyTest, Rng, rt } from "../util.ts";
import { GPT, GPTActivations, type GPTConfig, NANOGPT_ARCH } from "../../models/gpt.ts";
import { StepState } from "../../models/common.ts";
import { exportHFGpt2, importHFGpt2 } from "../../models/hf_gpt2.ts";
import { CheckpointError, decodeSafetensors, encodeSafetensors } from "../../lib/safetensors.ts";
import { type HFLayout, type HFShape, makeHFDir } from "../hf_fixture.ts";
import { hfGpt2Reference } from "../reference/gpt2_hf.ts";

/** V = 67, C = 36 (3 heads of 12), 2 layers, 11 positions: no size a multiple of a tile. */
const SHAPE: HFShape = { vocab: 67, embd: 36, heads: 3, layers: 2, positions: 11, activation: "gelu_new" };

/** The GPU's eval logits [B*T, V] of `ids` (B sequences of T) for an imported model. */
async function gpuLogits(cfg: GPTConfig, params: Map<string, Float32Array>, ids: Uint32Array, B: number) {
  const T = ids.length / B;
  const model = new GPT(rt, cfg, 1);
  model.params.writeAll(params);
  const acts = new GPTActivations(rt, cfg, B, T, undefined, { logits: true });
  acts.idx.write(ids);
  acts.logits.poison();
  model.forward(acts, new StepState(rt, 0).tensor, false, false);
  return await acts.logits.read();
}

const argmaxRows = (a: ArrayLike<number>, V: number) =>
  Array.from({ length: a.length / V }, (_, r) => {
    let best = 0;
    for (let v = 1; v < V; v++) if (a[r * V + v] > a[r * V + best]) best = v;
    return best;
  });

// Every layout in F32 and F16 (and BF16 once), each with one of the four activation names.
const CASES: [HFLayout, "F32" | "F16" | "BF16", string][] = [
  ["plain", "F32", "gelu_new"],
  ["plain", "F16", "gelu"],
  ["prefixed", "F32", "gelu_pytorch_tanh"],
  ["prefixed", "F16", "relu"],
  ["buffers", "F32", "gelu"],
  ["buffers", "F16", "gelu_new"],
  ["plain", "BF16", "gelu_pytorch_tanh"],
];

familyTest(
  "HF GPT-2 import: logits per element = the float64 GPT-2, greedy ids equal (layouts x dtypes x activations)",
  async () => {
    const rng = new Rng(4);
    for (const [layout, dtype, activation] of CASES) {
      const shape = { ...SHAPE, activation };
      const f = makeHFDir(shape, layout, dtype, 7);
      const m = importHFGpt2(f.configText, f.weights, `/fixture/${layout}-${dtype}`);
      const T = SHAPE.positions, B = 2;
      const ids = Uint32Array.from({ length: B * T }, () => rng.int(SHAPE.vocab));
      const got = await gpuLogits(m.config, m.params, ids, B);
      const want = new Float64Array(B * T * SHAPE.vocab);
      for (let b = 0; b < B; b++) {
        const seq = Array.from(ids.subarray(b * T, (b + 1) * T));
        want.set(
          hfGpt2Reference({ ...f.config, layer_norm_epsilon: 1e-5 } as never, f.sd, seq),
          b * T * SHAPE.vocab,
        );
      }
      const label = `hf import ${layout} ${dtype} ${activation}`;
      assertClose(got, want, 1e-5, `${label} logits`);
      assert.deepEqual(argmaxRows(got, SHAPE.vocab), argmaxRows(want, SHAPE.vocab), `${label}: greedy ids`);
    }
  },
);

familyTest("HF GPT-2 import with a cropped block size: the first rows' logits are unchanged", async () => {
  const f = makeHFDir(SHAPE, "plain", "F32", 3);
  const full = importHFGpt2(f.configText, f.weights, "/fixture");
  const crop = importHFGpt2(f.configText, f.weights, "/fixture", { blockSize: 5 });
  assert.equal(crop.config.blockSize, 5);
  assert.equal(crop.params.get("position_embedding.weight")!.length, 5 * SHAPE.embd);
  const ids = Uint32Array.from([3, 1, 4, 1, 5]);
  const a = await gpuLogits(full.config, full.params, Uint32Array.from([...ids, 9, 2, 6, 5, 3, 5]), 1);
  const b = await gpuLogits(crop.config, crop.params, ids, 1);
  assertClose(b, a.subarray(0, 5 * SHAPE.vocab), 1e-6, "hf cropped block");
});

Deno.test("HF GPT-2 import refuses bad directories in one CheckpointError line", () => {
  const f = makeHFDir(SHAPE, "plain", "F32", 2);
  const { tensors, metadata } = decodeSafetensors(f.weights, "x");
  const without = (key: string) =>
    encodeSafetensors(new Map([...tensors].filter(([k]) => k !== key)), metadata);
  const withT = (key: string, shape: number[]) =>
    encodeSafetensors(
      new Map([...tensors, [key, { shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) }]]),
      metadata,
    );
  const cfg = (over: Record<string, unknown>) => JSON.stringify({ ...f.config, ...over });
  const cases: [string, Uint8Array, RegExp][] = [
    [f.configText, without("h.1.mlp.c_fc.bias"), /tensor h\.1\.mlp\.c_fc\.bias is missing/],
    [
      f.configText,
      withT("h.0.attn.c_proj.weight", [SHAPE.embd + 1, SHAPE.embd]),
      /has shape \[37,36\], expected \[36,36\]/,
    ],
    [f.configText, withT("h.0.attn.rotary.weight", [2]), /unexpected tensor h\.0\.attn\.rotary\.weight/],
    [
      f.configText,
      withT("lm_head.weight", [SHAPE.vocab, SHAPE.embd]),
      /lm_head\.weight differs from wte\.weight/,
    ],
    [cfg({ activation_function: "silu" }), f.weights, /activation_function "silu" is not supported/],
    [cfg({ layer_norm_epsilon: 1e-6 }), f.weights, /layer_norm_epsilon 0\.000001 is not supported/],
    [cfg({ n_inner: 100 }), f.weights, /n_inner 100/],
    [cfg({ model_type: "llama" }), f.weights, /model_type is "llama", not "gpt2"/],
    [cfg({ n_head: 5 }), f.weights, /not divisible/],
    ["{not json", f.weights, /not valid JSON/],
  ];
  for (const [text, bytes, re] of cases) {
    assert.throws(
      () => importHFGpt2(text, bytes, "/d"),
      (e: Error) => e instanceof CheckpointError && re.test(e.message) && !e.message.includes("\n"),
    );
  }
  // A dtype other than F32/F16/BF16.
  const i8 = f.weights.slice();
  const text = new TextDecoder().decode(i8);
  const at = text.indexOf('"F32"');
  i8.set(new TextEncoder().encode('"I32"'), at);
  assert.throws(
    () => importHFGpt2(f.configText, i8, "/d"),
    /dtype "I32"; only "F32", "F16", "BF16" are supported/,
  );
});

familyTest(
  "export then import: bit-identical parameters and logits; non-GPT-2 models are refused",
  async () => {
    const cfg: GPTConfig = {
      vocabSize: 29,
      nEmbd: 24,
      nHead: 2,
      nLayer: 2,
      blockSize: 9,
      dropout: 0,
      ...NANOGPT_ARCH,
    };
    const model = new GPT(rt, cfg, 3);
    const values = await model.params.readAll();
    const chars = Array.from({ length: 29 }, (_, i) => String.fromCharCode(65 + i));
    const files = exportHFGpt2(cfg, values, chars);
    const back = importHFGpt2(files.config, files.weights, "/export", {}, files.chars);
    assert.deepEqual(back.chars, chars);
    // GPT-2 has biases and a tanh or erf GELU: nanoGPT's bias-free model comes back with zero biases.
    assert.equal(back.config.activation, "gelu_erf");
    for (const [k, v] of values) assert.deepEqual(back.params.get(k), v, k);
    for (const [k, v] of back.params) if (!values.has(k)) assert.ok(v.every((x) => x === 0), `${k} is zeros`);
    const meta = decodeSafetensors(files.weights, "x").metadata;
    assert.equal(meta.format, "pt");
    const hf = JSON.parse(files.config);
    assert.equal(hf.model_type, "gpt2");
    assert.deepEqual(hf.architectures, ["GPT2LMHeadModel"]);
    const ids = Uint32Array.from({ length: 18 }, (_, i) => (i * 7) % 29);
    const a = await gpuLogits(cfg, values, ids, 2), b = await gpuLogits(back.config, back.params, ids, 2);
    assert.deepEqual(b, a, "logits bit-identical");
    assert.throws(() => exportHFGpt2({ ...cfg, tiedHead: false, bias: true }, values, null), /not tied/);
  },
);
