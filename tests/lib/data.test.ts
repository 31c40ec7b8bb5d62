// lib/data.ts: text loading errors, one-hot / id pairs, the GPT split and batches (against a direct
// re-implementation of the notebook's get_batch), and the exact bigram entropy.

import assert from "node:assert/strict";
import { bigramEntropy, decodeText, GPTData, idPairs, oneHotPairs } from "../../lib/data.ts";
import { loadText } from "../../models/files.ts";
import { UsageError } from "../../lib/cli.ts";
import { Rng } from "../../lib/rng.ts";

function usageError(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof UsageError && re.test(e.message));
}

async function usageErrorAsync(p: Promise<unknown>, re: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof UsageError && re.test(e.message));
}

Deno.test("loadText: the real file, a missing file, a directory", async () => {
  const text = await loadText("data/tinyshakespeare.txt");
  assert.equal(text.length, 1115394);
  assert.ok(text.startsWith("First Citizen:"));
  await usageErrorAsync(loadText("data/nope.txt"), /^data file not found: data\/nope\.txt$/);
  await usageErrorAsync(loadText("data"), /^data file is a directory: data$/);
});

Deno.test("decodeText: empty, BOM-only and invalid UTF-8 are UsageErrors naming the file", () => {
  usageError(() => decodeText(new Uint8Array(0), "x.txt"), /^data file is empty: x\.txt$/);
  usageError(() => decodeText(new Uint8Array([0xef, 0xbb, 0xbf]), "x.txt"), /^data file is empty: x\.txt$/);
  for (const bad of [[0xff], [0x61, 0xc3], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80]]) {
    usageError(() => decodeText(new Uint8Array(bad), "x.txt"), /^data file is not valid UTF-8: x\.txt$/);
  }
  assert.equal(decodeText(new TextEncoder().encode("héllo 😀"), "x"), "héllo 😀");
});

Deno.test("oneHotPairs: one row per consecutive pair", () => {
  const { inputs, targets, n } = oneHotPairs([2, 0, 1, 1], 3);
  assert.equal(n, 3);
  assert.deepEqual(Array.from(inputs), [0, 0, 1, 1, 0, 0, 0, 1, 0]);
  assert.deepEqual(Array.from(targets), [1, 0, 0, 0, 1, 0, 0, 1, 0]);
  assert.equal(oneHotPairs([1], 2).n, 0);
  assert.equal(oneHotPairs([], 2).inputs.length, 0);
  assert.throws(() => oneHotPairs([0, 3], 3), /outside \[0, 3\)/);
  assert.throws(() => oneHotPairs([0, 1.5], 3), /outside/);
});

Deno.test("idPairs: ids in, one-hot and ids out", () => {
  const r = idPairs(Uint32Array.from([2, 0, 1, 1]), 3);
  assert.equal(r.n, 3);
  assert.deepEqual(Array.from(r.inputs), [2, 0, 1]);
  assert.deepEqual(Array.from(r.targetIds), [0, 1, 1]);
  assert.deepEqual(Array.from(r.targets), [1, 0, 0, 0, 1, 0, 0, 1, 0]);
  assert.throws(() => idPairs([5], 3), /outside/);
});

Deno.test("GPTData: 90/10 split as views", () => {
  const ids = Uint32Array.from({ length: 1001 }, (_, i) => i % 7);
  const d = new GPTData(ids);
  assert.equal(d.train.length, 900);
  assert.equal(d.val.length, 101);
  assert.equal(d.train.buffer, ids.buffer);
  assert.equal(new GPTData(ids, 0.5).train.length, 500);
  assert.equal(new GPTData(ids, 1).val.length, 0);
  assert.throws(() => new GPTData(ids, 0), /trainFrac/);
  assert.throws(() => new GPTData(ids, 1.5), /trainFrac/);
});

Deno.test("GPTData.getBatch matches the notebook's get_batch with the same draws", () => {
  const ids = Uint32Array.from({ length: 500 }, (_, i) => (i * 31 + 7) % 65);
  const d = new GPTData(ids);
  const B = 5, T = 8;
  for (const split of ["train", "val"] as const) {
    const data = split === "train" ? d.train : d.val;
    const rng = new Rng(3), ref = new Rng(3);
    const { x, y } = d.getBatch(split, B, T, rng);
    assert.equal(x.length, B * T);
    assert.equal(y.length, B * T);
    const ix = Array.from({ length: B }, () => ref.int(data.length - T));
    for (let b = 0; b < B; b++) {
      assert.deepEqual(Array.from(x.subarray(b * T, (b + 1) * T)), Array.from(data.slice(ix[b], ix[b] + T)));
      assert.deepEqual(
        Array.from(y.subarray(b * T, (b + 1) * T)),
        Array.from(data.slice(ix[b] + 1, ix[b] + T + 1)),
      );
    }
    assert.deepEqual(rng.state(), ref.state(), "one draw per row");
  }
});

Deno.test("GPTData.getBatch: every start offset in [0, len - block) is reachable, none beyond", () => {
  const ids = Uint32Array.from({ length: 12 }, (_, i) => i);
  const d = new GPTData(ids, 1);
  const seen = new Set<number>();
  const rng = new Rng(9);
  for (let k = 0; k < 400; k++) seen.add(d.getBatch("train", 1, 4, rng).x[0]);
  assert.deepEqual([...seen].sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7]);
  // Exactly block + 1 tokens: the only window.
  const tight = new GPTData(Uint32Array.from([1, 2, 3]), 1).getBatch("train", 2, 2, new Rng(1));
  assert.deepEqual(Array.from(tight.x), [1, 2, 1, 2]);
  assert.deepEqual(Array.from(tight.y), [2, 3, 2, 3]);
});

Deno.test("GPTData.getBatch: a split shorter than block + 1 is a UsageError", () => {
  const d = new GPTData(Uint32Array.from({ length: 100 }, (_, i) => i % 3));
  usageError(
    () => d.getBatch("val", 4, 10, new Rng(0)),
    /the val split has 10 tokens, fewer than block size \+ 1 = 11/,
  );
  usageError(() => d.getBatch("train", 4, 90, new Rng(0)), /the train split has 90 tokens/);
  assert.throws(() => d.getBatch("train", 0, 4, new Rng(0)), /batch must be a positive integer/);
});

Deno.test("bigramEntropy: hand-computed values", () => {
  assert.equal(bigramEntropy([0, 1, 0, 1], 2), 0); // fully determined
  // pairs (0,0) (0,1) (1,0) (0,1) (1,1): row 0 = {0:1, 1:2}, row 1 = {0:1, 1:1}
  const want = -(Math.log(1 / 3) + 2 * Math.log(2 / 3) + 2 * Math.log(1 / 2)) / 5;
  assert.ok(Math.abs(bigramEntropy([0, 0, 1, 0, 1, 1], 2) - want) < 1e-15);
  assert.throws(() => bigramEntropy([1], 2), /at least 2 tokens/);
});

Deno.test("bigramEntropy is the count model's cross-entropy and a lower bound for other bigram models", () => {
  const rng = new Rng(17);
  const V = 6;
  const ids = Array.from({ length: 3000 }, () => Math.min(V - 1, Math.floor(rng.uniform() ** 2 * V)));
  const H = bigramEntropy(ids, V);
  const counts = Array.from({ length: V }, () => new Float64Array(V));
  for (let i = 0; i + 1 < ids.length; i++) counts[ids[i]][ids[i + 1]]++;
  const ce = (P: Float64Array[]) => {
    let s = 0;
    for (let i = 0; i + 1 < ids.length; i++) s -= Math.log(P[ids[i]][ids[i + 1]]);
    return s / (ids.length - 1);
  };
  const norm = (rows: Float64Array[]) => rows.map((r) => r.map((v) => v / r.reduce((a, b) => a + b, 0)));
  assert.ok(Math.abs(ce(norm(counts)) - H) < 1e-12);
  for (let k = 0; k < 20; k++) {
    const other = norm(counts.map((r) => r.map((c) => c + 0.1 + rng.uniform())));
    assert.ok(ce(other) > H);
  }
  assert.ok(H > 0 && H < Math.log(V));
});

Deno.test("bigramEntropy on tinyshakespeare is about 2.45 nats", async () => {
  const text = await loadText("data/tinyshakespeare.txt");
  const chars = [...new Set(text)].sort();
  const index = new Map(chars.map((c, i) => [c, i]));
  const ids = Uint32Array.from(text, (c) => index.get(c)!);
  const H = bigramEntropy(ids, chars.length);
  assert.ok(H > 2.4 && H < 2.5, `H = ${H}`);
});
