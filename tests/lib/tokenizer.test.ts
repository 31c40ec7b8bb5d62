// lib/tokenizer.ts: code-point vocabulary order (Python's sorted(set(text))), round trips, astral
// characters, and the errors for unknown characters and invalid ids.

import assert from "node:assert/strict";
import { Tokenizer } from "../../lib/tokenizer.ts";
import { UsageError } from "../../lib/cli.ts";

Deno.test("fromText: sorted unique characters by code point", () => {
  const t = Tokenizer.fromText("hello world");
  assert.deepEqual(t.chars, [" ", "d", "e", "h", "l", "o", "r", "w"]);
  assert.equal(t.vocabSize, 8);
  // UTF-16 order would put the astral emoji (surrogate 0xD83D) before U+FFFD; code-point order does not.
  const u = Tokenizer.fromText("\uFFFD😀a\u00E9");
  assert.deepEqual(u.chars, ["a", "\u00E9", "\uFFFD", "😀"]);
});

Deno.test("tinyshakespeare has the well-known 65-character vocabulary", async () => {
  const text = await Deno.readTextFile(new URL("../../data/tinyshakespeare.txt", import.meta.url));
  const t = Tokenizer.fromText(text);
  assert.equal(t.vocabSize, 65);
  assert.equal(t.chars.join(""), "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz");
  const sample = text.slice(0, 1000);
  assert.equal(t.decode(t.encode(sample)), sample);
});

Deno.test("encode/decode round trip, astral characters are one token each", () => {
  const s = "naïve 😀 café 𝔘𝔫𝔦";
  const t = Tokenizer.fromText(s);
  const ids = t.encode(s);
  assert.equal(ids.length, Array.from(s).length);
  assert.equal(t.decode(ids), s);
  assert.equal(t.decode(Uint32Array.from(ids)), s);
  assert.equal(t.encode("😀").length, 1);
  assert.deepEqual(t.encode(""), []);
  assert.equal(t.decode([]), "");
});

Deno.test("encode: unknown characters are a UsageError listing each once", () => {
  const t = Tokenizer.fromText("abc");
  assert.throws(() => t.encode("abé\tcé"), (e: unknown) => {
    assert.ok(e instanceof UsageError);
    assert.equal(e.message, 'characters not in the vocabulary: "é", "\\t"');
    return true;
  });
  assert.throws(() => t.encode("0123456789XYZ"), /"0", "1", .*"9" and 3 more$/);
});

Deno.test("decode: an invalid id is an Error (not a UsageError)", () => {
  const t = Tokenizer.fromText("ab");
  for (const bad of [-1, 2, 1.5, NaN]) {
    assert.throws(() => t.decode([0, bad]), (e: unknown) => {
      assert.ok(e instanceof Error && !(e instanceof UsageError));
      assert.match(e.message, /outside the vocabulary \[0, 2\)/);
      return true;
    });
  }
});

Deno.test("constructor validates the vocabulary and copies it", () => {
  assert.throws(() => new Tokenizer(["a", "bc"]), /not a single character/);
  assert.throws(() => new Tokenizer(["a", ""]), /not a single character/);
  assert.throws(() => new Tokenizer(["a", "b", "a"]), /duplicate/);
  const chars = ["x", "😀"];
  const t = new Tokenizer(chars);
  chars[0] = "z";
  assert.deepEqual(t.chars, ["x", "😀"]);
  assert.deepEqual(t.encode("😀x"), [1, 0]);
  // A vocabulary restored from JSON round-trips.
  assert.deepEqual(new Tokenizer(JSON.parse(JSON.stringify(t.chars))).chars, t.chars);
});
