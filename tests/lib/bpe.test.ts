// GPT-2's BPE (lib/bpe.ts over gpt-tokenizer). Also run in the page (tests/web/op_tests.ts), so no
// node:assert (the small `assert` below) and nothing Deno-only.

import { GPT2_EOT, GPT2_VOCAB_SIZE, Gpt2Tokenizer } from "../../lib/bpe.ts";
import { StreamDecoder, Tokenizer } from "../../lib/tokenizer.ts";

const tok = new Gpt2Tokenizer();

const assert = {
  ok(v: unknown, msg = "assertion failed"): void {
    if (!v) throw new Error(msg);
  },
  equal(a: unknown, b: unknown, msg = ""): void {
    if (!Object.is(a, b)) throw new Error(`${JSON.stringify(a)} !== ${JSON.stringify(b)} ${msg}`);
  },
  deepEqual(a: unknown, b: unknown): void {
    if (JSON.stringify(a) !== JSON.stringify(b)) {
      throw new Error(`${JSON.stringify(a)} != ${JSON.stringify(b)}`);
    }
  },
  throws(f: () => unknown, re: RegExp): void {
    try {
      f();
    } catch (e) {
      if (!re.test(String((e as Error).message))) throw new Error(`wrong error: ${e}`);
      return;
    }
    throw new Error(`did not throw ${re}`);
  },
};

Deno.test("GPT-2 BPE: known ids (ASCII, non-ASCII, runs of whitespace)", () => {
  assert.equal(tok.vocabSize, GPT2_VOCAB_SIZE);
  assert.deepEqual(tok.encode("Hello world"), [15496, 995]);
  // Ids from OpenAI's GPT-2 encoder (tiktoken's r50k_base gives the same).
  assert.deepEqual(tok.encode(" the"), [262]);
  assert.deepEqual(tok.encode("\n"), [198]);
  assert.deepEqual(tok.encode("    x"), [220, 220, 220, 2124]);
  assert.deepEqual(tok.encode("é"), [2634]);
  assert.deepEqual(tok.encode("日本"), [33768, 98, 17312, 105]);
});

Deno.test('GPT-2 BPE: "<|endoftext|>" is plain text in encode; id 50256 decodes to it', () => {
  const ids = tok.encode("a<|endoftext|>b");
  assert.ok(!ids.includes(GPT2_EOT), `${ids}`);
  assert.equal(tok.decode(ids), "a<|endoftext|>b");
  assert.equal(tok.decode([GPT2_EOT]), "<|endoftext|>");
  assert.throws(() => tok.decode([GPT2_VOCAB_SIZE]), /outside the vocabulary/);
});

Deno.test("GPT-2 BPE: decode(encode(s)) = s", () => {
  for (
    const s of [
      "",
      "First Citizen:\nBefore we proceed any further, hear me speak.",
      "tabs\tand  double  spaces \n\n\n trailing ",
      "Ünïcödé ✓ emoji 🎉 and 中文 and عربى",
      "<|endoftext|><|endoftext|>",
    ]
  ) assert.equal(tok.decode(tok.encode(s)), s);
});

Deno.test("StreamDecoder: a character split over BPE tokens is written once it is whole", () => {
  const ids = tok.encode("🎉 ok"); // the emoji is several byte tokens
  const d = new StreamDecoder(tok);
  const parts = ids.map((id) => d.push(id));
  assert.ok(parts.every((p) => !p.includes("\uFFFD")), JSON.stringify(parts));
  assert.equal(parts.join("") + d.flush(), "🎉 ok");
  const c = new StreamDecoder(new Tokenizer(["a", "b"]));
  assert.equal(c.push(1) + c.push(0), "ba");
});
