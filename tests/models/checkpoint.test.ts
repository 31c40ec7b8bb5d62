import assert from "node:assert/strict";
import { familyTest, Rng, rt } from "../util.ts";
import {
  COURSE_ARCH,
  GPT,
  gptArch,
  type GPTConfig,
  gptExport,
  gptImport,
  gptParamSpecs,
} from "../../models/gpt.ts";
import { encodeModelCheckpoint, parseModelCheckpoint } from "../../models/checkpoint.ts";
import { decodeSafetensors, encodeSafetensors } from "../../lib/safetensors.ts";

familyTest("GPT safetensors round trip is bit-exact through PyTorch names", async () => {
  const cfg: GPTConfig = { vocabSize: 11, nEmbd: 12, nHead: 3, nLayer: 2, blockSize: 5, dropout: 0.1 };
  const a = new GPT(rt, cfg, 1);
  const before = await a.params.readAll();
  const bytes = encodeSafetensors(gptExport(cfg, before), { model: "gpt", config: JSON.stringify(cfg) });
  const { tensors, metadata } = decodeSafetensors(bytes);
  if (metadata.model !== "gpt" || JSON.parse(metadata.config).nHead !== 3) throw new Error("metadata lost");
  const want = [
    "token_embedding.weight:11,12",
    "position_embedding.weight:5,12",
    "blocks.1.attn.heads.2.value.weight:4,12",
    "blocks.0.attn.proj.weight:12,12",
    "blocks.0.mlp.fc.weight:48,12",
    "blocks.0.mlp.proj.weight:12,48",
    "lm_head.weight:11,12",
    "lm_head.bias:11",
  ];
  for (const w of want) {
    const [name, shape] = w.split(":");
    if (tensors.get(name)?.shape.join() !== shape) {
      throw new Error(`${name}: shape ${tensors.get(name)?.shape}`);
    }
  }
  const b = new GPT(rt, cfg, 2);
  b.params.writeAll(gptImport(cfg, tensors));
  const after = await b.params.readAll();
  for (const [k, v] of before) {
    const u = new Uint32Array(v.buffer), w = new Uint32Array(after.get(k)!.buffer);
    if (!u.every((x, i) => x === w[i])) throw new Error(`${k} changed in the round trip`);
  }
  // Same weights => same generated text.
  const s1 = await a.generate([1], 10, { temperature: 1, seed: 3 });
  const s2 = await b.generate([1], 10, { temperature: 1, seed: 3 });
  if (s1.join() !== s2.join()) throw new Error("reloaded model samples differently");
});

Deno.test("importing a state dict with a wrong shape or missing tensor fails with its name", () => {
  const cfg: GPTConfig = { vocabSize: 5, nEmbd: 8, nHead: 2, nLayer: 1, blockSize: 4, dropout: 0 };
  const m = new GPT(rt, cfg, 1);
  const vals = new Map(m.params.list.map((t) => [t.name, new Rng(1).uniformArray(t.size)]));
  const sd = gptExport(cfg, vals);
  const bad = new Map(sd);
  bad.set("ln_f.bias", { shape: [7], data: new Float32Array(7) });
  try {
    gptImport(cfg, bad);
    throw new Error("accepted a wrong shape");
  } catch (e) {
    if (!/ln_f\.bias/.test((e as Error).message)) throw e;
  }
  const missing = new Map(sd);
  missing.delete("blocks.0.attn.heads.1.key.weight");
  try {
    gptImport(cfg, missing);
    throw new Error("accepted a missing tensor");
  } catch (e) {
    if (!/heads\.1\.key/.test((e as Error).message)) throw e;
  }
});

Deno.test("a checkpoint written before the architecture options loads as the course model, values unchanged", async () => {
  // Written by the code before this change (config without architecture fields, no tokenizer
  // metadata): tests/models/fixtures/gpt_before_arch_options.safetensors, V = 5, C = 8, seed 42.
  const path = new URL("./fixtures/gpt_before_arch_options.safetensors", import.meta.url);
  const c = parseModelCheckpoint(await Deno.readFile(path), "old.safetensors");
  assert.equal(c.kind, "gpt");
  assert.equal(c.tokenizer, "char");
  assert.deepEqual(c.vocab, ["\n", " ", "a", "b", "c"]);
  assert.equal(c.step, 7);
  const cfg = c.config as GPTConfig;
  assert.deepEqual(gptArch(cfg), COURSE_ARCH);
  // Same parameter names and values as this code's course model from the same seed: the init order
  // of the course model is unchanged too.
  const specs = gptParamSpecs(cfg, new Rng(42));
  assert.deepEqual([...c.params.keys()], specs.map((s) => s.name));
  for (const s of specs) assert.deepEqual(c.params.get(s.name), s.init, s.name);
  // Saved again, the file records the architecture and the tokenizer, and loads to the same values.
  const again = parseModelCheckpoint(
    encodeModelCheckpoint("gpt", cfg, c.params, c.vocab, 7),
    "new.safetensors",
  );
  assert.equal(again.metadata.tokenizer, "char");
  assert.deepEqual(JSON.parse(again.metadata.config), { ...cfg, ...COURSE_ARCH });
  for (const s of specs) assert.deepEqual(again.params.get(s.name), s.init, s.name);
});
