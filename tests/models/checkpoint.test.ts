import { familyTest, Rng, rt } from "../util.ts";
import { GPT, type GPTConfig, gptExport, gptImport } from "../../models/gpt.ts";
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
