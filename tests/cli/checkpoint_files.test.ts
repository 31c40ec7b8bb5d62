// Bad checkpoint files end sample.ts and train.ts --resume with exit 2 and ONE line naming the file and
// the problem (no stack trace, nothing allocated on the GPU first). lib/safetensors.ts has the
// byte-level fuzz; these check that every kind of damage reaches the CLIs as a clean user error.

import { encodeModelCheckpoint, encodeResumeCheckpoint } from "../../models/checkpoint.ts";
import { Rng } from "../../lib/rng.ts";
import {
  assertUserError,
  gptValues,
  pool,
  sample,
  tempDir,
  TINY_CFG,
  train,
  VOCAB,
  writeCheckpoint,
  writeData,
} from "./helpers.ts";
import type { GPTConfig } from "../../models/gpt.ts";

const enc = new TextEncoder();

/** Replace the JSON header of a safetensors file (keeping its data section), padded to 8 bytes. */
function withHeader(bytes: Uint8Array, edit: (h: Record<string, unknown>) => void): Uint8Array {
  const n = new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  edit(header);
  let json = enc.encode(JSON.stringify(header));
  json = Uint8Array.from([...json, ...new Array((8 - (json.length % 8)) % 8).fill(0x20)]);
  const data = bytes.subarray(8 + n);
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setUint32(0, json.length, true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

/** Bytes with the metadata entry `key` replaced. */
function withMeta(bytes: Uint8Array, key: string, value: string): Uint8Array {
  return withHeader(bytes, (h) => ((h.__metadata__ as Record<string, string>)[key] = value));
}

/** Damaged variants of a good file, each with the message it must produce. */
function damage(good: Uint8Array, kind: "model" | "resume"): [string, Uint8Array, RegExp][] {
  const headerLen = new DataView(good.buffer, good.byteOffset).getUint32(0, true);
  const lying = good.slice();
  new DataView(lying.buffer).setUint32(0, headerLen + 4096, true);
  const shorter = good.slice();
  new DataView(shorter.buffer).setUint32(0, headerLen - 8, true);
  const first = kind === "model" ? "token_embedding.weight" : "param.token_embedding.weight";
  const cfg = { vocabSize: VOCAB.length, ...TINY_CFG };
  return [
    [
      "not safetensors",
      enc.encode("hello, I am a text file\n"),
      /header length .* implausibly large|exceeds/,
    ],
    ["too short", enc.encode("hi"), /file is too short \(2 bytes\)/],
    ["empty", new Uint8Array(0), /file is too short \(0 bytes\)/],
    [
      "truncated data",
      good.subarray(0, good.length - 100),
      /ends at byte .* data section has only .*truncated/,
    ],
    ["truncated header", good.subarray(0, 8 + 40), /header length \d+ exceeds the 40 bytes .*truncated/],
    ["header length lies (longer)", lying, /header is not valid UTF-8|header is not valid JSON|exceeds/],
    ["header length lies (shorter)", shorter, /header is not valid JSON/],
    [
      "shape lies about the bytes",
      withHeader(good, (h) => ((h[first] as { shape: number[] }).shape = [3, 3])),
      new RegExp(`tensor "${first.replace(/\./g, "\\.")}" has \\d+ bytes but shape \\[3,3\\] needs 36`),
    ],
    [
      "offsets overlap",
      withHeader(good, (h) => {
        const t = h[first] as { data_offsets: number[] };
        t.data_offsets = [t.data_offsets[0] + 4, t.data_offsets[1] + 4];
      }),
      /overlaps|gap of|trailing bytes/,
    ],
    [
      "dtype",
      withHeader(good, (h) => ((h[first] as { dtype: string }).dtype = "F16")),
      /dtype "F16"; only "F32"/,
    ],
    [
      "config not JSON",
      withMeta(good, "config", "{nEmbd: 16"),
      /metadata 'config' is missing or not valid JSON/,
    ],
    [
      "config with more layers than the tensors",
      withMeta(good, "config", JSON.stringify({ ...cfg, nLayer: 2 })),
      /the tensors hold \d+ values but the config .* needs \d+/,
    ],
    [
      "config with a huge width (no allocation first)",
      withMeta(good, "config", JSON.stringify({ ...cfg, nEmbd: 1 << 20, nHead: 1 << 13 })),
      /the tensors hold \d+ values but the config .* needs \d+/,
    ],
    [
      "indivisible heads",
      withMeta(good, "config", JSON.stringify({ ...cfg, nHead: 3 })),
      /nEmbd 16 is not divisible by nHead 3/,
    ],
    [
      "vocab size disagrees",
      withMeta(good, "vocab", JSON.stringify(VOCAB.slice(1))),
      /vocabSize \d+ does not match the \d+-character vocab/,
    ],
    [
      "vocab not characters",
      withMeta(good, "vocab", JSON.stringify(["ab", ...VOCAB.slice(1)])),
      /not one character/,
    ],
    [
      "unknown model kind",
      withMeta(good, "model", "rnn"),
      /metadata 'model' must be gpt, bigram-onehot or bigram-embedding/,
    ],
    ["step", withMeta(good, "step", "-1"), /metadata 'step' is not a non-negative integer/],
  ];
}

/** A checkpoint whose tensors are internally consistent but do not match its config's layout. */
function mismatched(kind: "model" | "resume"): [string, Uint8Array, RegExp][] {
  const cfg: GPTConfig = { vocabSize: VOCAB.length, ...TINY_CFG };
  const values = gptValues(cfg);
  const encode = (v: Map<string, Float32Array>, c = cfg) =>
    kind === "model"
      ? encodeModelCheckpoint("gpt", c, v, VOCAB, 5)
      : encodeResumeCheckpoint("gpt", c, v, VOCAB, 5, new Map(), {
        optimizer: "sgd",
        lr: 0.01,
        seed: 1337,
        batch: 4,
        rng: new Rng(1).state(),
      });
  const good = encode(values);
  const pre = kind === "model" ? "" : "param\\.";
  // Same total size, different layout: a tensor renamed, and two tensors' shapes swapped.
  const renamed = withHeader(good, (h) => {
    const key = kind === "model" ? "ln_f.bias" : "param.ln_f.bias";
    h[key.replace("ln_f", "ln_final")] = h[key];
    delete h[key];
  });
  const transposed = withHeader(good, (h) => {
    const key = kind === "model" ? "blocks.0.mlp.fc.weight" : "param.blocks.0.mlp.fc.weight";
    (h[key] as { shape: number[] }).shape = [16, 64];
  });
  return [
    ["renamed tensor", renamed, new RegExp(`tensor ${pre}ln_f\\.bias is missing|unexpected tensor`)],
    [
      "transposed tensor",
      transposed,
      new RegExp(`tensor ${pre}blocks\\.0\\.mlp\\.fc\\.weight has shape \\[16,64\\], expected \\[64,16\\]`),
    ],
    [
      "extra tensor",
      withHeader(good, (h) => {
        // Split lm_head.bias into itself minus one value and a stray one-value tensor.
        const t = h[kind === "model" ? "lm_head.bias" : "param.lm_head.bias"] as {
          shape: number[];
          data_offsets: number[];
        };
        const [a, b] = t.data_offsets;
        t.shape = [t.shape[0] - 1];
        t.data_offsets = [a, b - 4];
        h.stray = { dtype: "F32", shape: [1], data_offsets: [b - 4, b] };
      }),
      /lm_head\.bias has shape|unexpected tensor stray/,
    ],
  ];
}

Deno.test("sample.ts: damaged or mismatched checkpoints are one-line errors (exit 2)", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const { model } = await writeCheckpoint(dir);
    const { resume } = await writeCheckpoint(`${dir}/pair`);
    const cases = [
      ...damage(model, "model"),
      ...mismatched("model"),
      [
        "the resume file instead of the model",
        resume,
        /a training-state file for --resume, not a model file/,
      ] as const,
    ];
    assertUserError(
      await sample(dir, [`--checkpoint=${dir}/missing.safetensors`]),
      /checkpoint not found: .*missing/,
    );
    assertUserError(
      await sample(dir, [`--checkpoint=${dir}`]),
      // A directory is read as a Hugging Face GPT-2 directory (sample.ts --checkpoint DIR).
      /is not a Hugging Face GPT-2 directory|checkpoint not found/,
    );
    await pool(cases.map((c, i) => [i, ...c] as const), 3, async ([i, what, bytes, re]) => {
      const path = `${dir}/bad${i}.safetensors`;
      await Deno.writeFile(path, bytes);
      const r = await sample(dir, [`--checkpoint=${path}`, "--max-new-tokens=2"]);
      assertUserError(r, re, what);
      assertUserError(r, new RegExp(`^error: ${path.replace(/[.]/g, "\\.")}: `), `${what}: names the file`);
    });
  } finally {
    await cleanup();
  }
});

Deno.test("train.ts --resume: missing, damaged or mismatched resume state is a one-line error (exit 2)", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const data = await writeData(dir);
    const args = (
      out: string,
    ) => [`--data=${data}`, `--out=${out}`, "--resume", "--steps=9", "--sample-tokens=0"];
    await Deno.mkdir(`${dir}/none`);
    assertUserError(
      await train(dir, args(`${dir}/none`)),
      /--resume: there is no checkpoint in .*none to continue/,
    );
    const { resume } = await writeCheckpoint(`${dir}/nooptim`);
    await Deno.remove(`${dir}/nooptim/model.optim.safetensors`);
    assertUserError(
      await train(dir, args(`${dir}/nooptim`)),
      /--resume: .*model\.optim\.safetensors \(the training state saved beside model\.safetensors\) is missing/,
    );
    const cases: [string, Uint8Array, RegExp][] = [
      ...damage(resume, "resume"),
      ...mismatched("resume"),
      ["rng state", withMeta(resume, "rng", "[1,2,3]"), /metadata 'rng' is not a valid generator state/],
      ["optimizer", withMeta(resume, "optimizer", "lion"), /metadata 'optimizer' must be sgd or adamw/],
      [
        "adamw without moments",
        withMeta(resume, "optimizer", "adamw"),
        /adamw state needs tensors adam\.m and adam\.v/,
      ],
      ["lr", withMeta(resume, "lr", "fast"), /metadata 'lr' is invalid/],
    ];
    await pool(cases.map((c, i) => [i, ...c] as const), 3, async ([i, what, bytes, re]) => {
      const out = `${dir}/case${i}`;
      await writeCheckpoint(out);
      await Deno.writeFile(`${out}/model.optim.safetensors`, bytes);
      const r = await train(dir, args(out));
      assertUserError(r, re, what);
      assertUserError(r, /^error: .*model\.optim\.safetensors: /, `${what}: names the file`);
    });
  } finally {
    await cleanup();
  }
});
