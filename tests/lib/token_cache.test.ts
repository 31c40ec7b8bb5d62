// The BPE token-id cache's file format (lib/token_cache.ts): its key decides whether a cache is used.

import assert from "node:assert/strict";
import { Gpt2Tokenizer } from "../../lib/bpe.ts";
import { decodeTokenCache, encodeTokenCache } from "../../lib/token_cache.ts";

const tok = new Gpt2Tokenizer();

Deno.test("token cache: round trip; another text, tokenizer or a damaged file is a miss", () => {
  const ids = tok.encode("Hello world, hello cache");
  const bytes = encodeTokenCache(ids, "hash1");
  assert.deepEqual(Array.from(decodeTokenCache(bytes, "hash1")!), ids);
  assert.equal(decodeTokenCache(bytes, "hash2"), null); // the text changed
  assert.equal(decodeTokenCache(bytes, "hash1", "another tokenizer"), null);
  assert.equal(decodeTokenCache(bytes.subarray(0, bytes.length - 1), "hash1"), null); // truncated
  const bad = bytes.slice();
  bad[0] ^= 1;
  assert.equal(decodeTokenCache(bad, "hash1"), null);
  assert.throws(() => encodeTokenCache([70000], "h"), /uint16/);
});
