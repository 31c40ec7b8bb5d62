// lib/safetensors.ts: exact round trips, the byte layout, one test per lie a file can tell, and a
// fixed-seed fuzz (byte flips, truncations, header-length edits) where every outcome is either a clean
// decode or a CheckpointError.

import assert from "node:assert/strict";
import {
  CheckpointError,
  decodeSafetensors,
  encodeSafetensors,
  MAX_HEADER_BYTES,
} from "../../lib/safetensors.ts";
import { Rng } from "../../lib/rng.ts";

type T = { shape: number[]; data: Float32Array };
const enc = new TextEncoder();

function sample(): Map<string, T> {
  const rng = new Rng(5);
  return new Map<string, T>([
    ["wte", { shape: [5, 3], data: rng.normalArray(15) }],
    ["scalar", { shape: [], data: new Float32Array([Math.PI]) }],
    ["empty", { shape: [0, 4], data: new Float32Array(0) }],
    ["odd.bias", { shape: [7], data: Float32Array.from([0, -0, 1e-40, 3.4e38, -1, Infinity, NaN]) }],
    ["7", { shape: [1, 1, 2], data: new Float32Array([1, 2]) }],
  ]);
}
const META = { format: "tinygpt", config: JSON.stringify({ n_embd: 32 }), "ünï": "😀", ["__proto__"]: "x" };

/** A file from a raw header (object or text) and a data section, with an optional length override. */
function craft(header: unknown, data: Uint8Array = new Uint8Array(0), headerLen?: number): Uint8Array {
  const h = enc.encode(typeof header === "string" ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setUint32(0, headerLen ?? h.length, true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

const f32 = (n: number) => ({ dtype: "F32", shape: [n], data_offsets: [0, 4 * n] });

function rejects(bytes: Uint8Array, re: RegExp): void {
  assert.throws(() => decodeSafetensors(bytes, "out/m.safetensors"), (e: unknown) => {
    assert.ok(e instanceof CheckpointError, `expected CheckpointError, got ${e}`);
    assert.equal(e.name, "CheckpointError");
    assert.ok(e.message.startsWith("out/m.safetensors: "), e.message);
    assert.ok(!e.message.includes("\n"), "one line");
    assert.match(e.message, re);
    return true;
  });
}

Deno.test("round trip is exact (values, -0, NaN, shapes, order, metadata) and re-encodes to the same bytes", () => {
  const tensors = sample();
  const bytes = encodeSafetensors(tensors, META);
  const back = decodeSafetensors(bytes);
  assert.deepEqual([...back.tensors.keys()], [...tensors.keys()]);
  for (const [k, t] of tensors) {
    const b = back.tensors.get(k)!;
    assert.deepEqual(b.shape, t.shape);
    assert.ok(b.data instanceof Float32Array);
    assert.deepEqual(new Uint8Array(b.data.buffer), new Uint8Array(t.data.buffer), k); // bitwise
  }
  assert.deepEqual({ ...back.metadata }, { ...META });
  assert.equal(Object.getOwnPropertyDescriptor(back.metadata, "__proto__")?.value, "x");
  assert.deepEqual(encodeSafetensors(back.tensors, back.metadata), bytes);
});

Deno.test("byte layout: u64 LE header length, space-padded JSON to 8 bytes, contiguous LE f32 data", () => {
  const t = new Map<string, T>([["a", { shape: [2], data: new Float32Array([1.5, -2]) }]]);
  const bytes = encodeSafetensors(t, { k: "v" });
  const dv = new DataView(bytes.buffer);
  const n = dv.getUint32(0, true);
  assert.equal(dv.getUint32(4, true), 0);
  assert.equal(n % 8, 0);
  const header = new TextDecoder().decode(bytes.subarray(8, 8 + n));
  assert.match(
    header,
    /^\{"__metadata__":\{"k":"v"\},"a":\{"dtype":"F32","shape":\[2\],"data_offsets":\[0,8\]\}\} *$/,
  );
  assert.equal(bytes.length, 8 + n + 8);
  assert.equal(dv.getFloat32(8 + n, true), 1.5);
  assert.equal(dv.getFloat32(8 + n + 4, true), -2);
  // A hand-made file as another writer would produce it (unpadded header, no metadata) decodes.
  const data = new Uint8Array(new Float32Array([3, 4, 5]).buffer);
  const other = decodeSafetensors(craft({ w: { dtype: "F32", shape: [3, 1], data_offsets: [0, 12] } }, data));
  assert.deepEqual(Array.from(other.tensors.get("w")!.data), [3, 4, 5]);
  assert.deepEqual(other.metadata, {});
});

Deno.test("decode copes with unaligned input views and returns fresh arrays", () => {
  const bytes = encodeSafetensors(sample(), META);
  for (const shift of [1, 2, 3]) {
    const big = new Uint8Array(bytes.length + shift);
    big.set(bytes, shift);
    const view = big.subarray(shift);
    const back = decodeSafetensors(view);
    assert.deepEqual(Array.from(back.tensors.get("wte")!.data), Array.from(sample().get("wte")!.data));
    big.fill(0);
    assert.notEqual(back.tensors.get("wte")!.data[0], 0, "a copy, not a view of the input");
  }
});

Deno.test("header may list tensors out of order; the result is in data order", () => {
  const data = new Uint8Array(new Float32Array([1, 2, 3]).buffer);
  const hdr = {
    b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
    a: { dtype: "F32", shape: [1], data_offsets: [0, 4] },
  };
  const back = decodeSafetensors(craft(hdr, data));
  assert.deepEqual([...back.tensors.keys()], ["a", "b"]);
  assert.deepEqual(Array.from(back.tensors.get("b")!.data), [2, 3]);
});

Deno.test("encode rejects inconsistent input", () => {
  assert.throws(
    () => encodeSafetensors(new Map([["a", { shape: [2, 2], data: new Float32Array(3) }]]), {}),
    /shape/,
  );
  assert.throws(
    () => encodeSafetensors(new Map([["a", { shape: [-1], data: new Float32Array(0) }]]), {}),
    /shape/,
  );
  assert.throws(() =>
    encodeSafetensors(new Map([["__metadata__", { shape: [0], data: new Float32Array(0) }]]), {})
  );
  assert.throws(() => encodeSafetensors(new Map(), { a: 1 as unknown as string }), /metadata/);
});

const FOUR = new Uint8Array(16);

Deno.test("lies about the file: too short, header length too large / huge / zero", () => {
  rejects(new Uint8Array(0), /too short \(0 bytes\)/);
  rejects(new Uint8Array(7), /too short \(7 bytes\)/);
  const ok = encodeSafetensors(sample(), {});
  const n = new DataView(ok.buffer).getUint32(0, true);
  rejects(ok.slice(0, 8 + n - 1), /header length \d+ exceeds/);
  rejects(ok.slice(0, 8), /header length \d+ exceeds the 0 bytes/);
  const huge = ok.slice();
  new DataView(huge.buffer).setUint32(4, 1, true);
  rejects(huge, /implausibly large/);
  const big = ok.slice();
  new DataView(big.buffer).setUint32(0, MAX_HEADER_BYTES + 1, true);
  rejects(big, /implausibly large/);
  rejects(craft("", FOUR, 0), /header is empty/);
});

Deno.test("lies in the header text: not UTF-8, not JSON, not an object", () => {
  const bad = new Uint8Array([0x7b, 0xff, 0x7d, 0x20]);
  const f = new Uint8Array(12);
  new DataView(f.buffer).setUint32(0, 4, true);
  f.set(bad, 8);
  rejects(f, /header is not valid UTF-8/);
  rejects(craft('{"a": '), /not valid JSON/);
  rejects(craft("\uFEFF{}"), /not valid JSON/);
  for (const h of ["[]", "3", "null", '"x"', "true"]) rejects(craft(h), /not a JSON object/);
  assert.equal(decodeSafetensors(craft("{}")).tensors.size, 0);
  assert.equal(decodeSafetensors(craft("  {}   ")).tensors.size, 0);
});

Deno.test("lies in the metadata", () => {
  rejects(craft({ __metadata__: "x" }), /"__metadata__" is not an object/);
  rejects(craft({ __metadata__: [] }), /"__metadata__" is not an object/);
  rejects(craft({ __metadata__: null }), /"__metadata__" is not an object/);
  rejects(craft({ __metadata__: { step: 3 } }), /metadata value for "step" is not a string/);
  rejects(craft({ __metadata__: { a: { b: "c" } } }), /metadata value for "a" is not a string/);
});

Deno.test("lies in a tensor entry: missing fields, dtype, shape", () => {
  rejects(craft({ a: 3 }, FOUR), /tensor "a" is not an object/);
  rejects(craft({ a: [1] }, FOUR), /tensor "a" is not an object/);
  rejects(craft({ a: { shape: [4], data_offsets: [0, 16] } }, FOUR), /tensor "a" has no "dtype"/);
  rejects(craft({ a: { dtype: "F32", data_offsets: [0, 16] } }, FOUR), /tensor "a" has no "shape"/);
  rejects(craft({ a: { dtype: "F32", shape: [4] } }, FOUR), /tensor "a" has no "data_offsets"/);
  for (const dtype of ["F16", "f32", "BF16", "F64", 1, null]) {
    rejects(craft({ a: { ...f32(4), dtype } }, FOUR), /has dtype .*only "F32" is supported/);
  }
  for (const shape of [4, "4", [-4], [1.5], ["4"], [2 ** 53], [null], { 0: 4 }]) {
    rejects(
      craft({ a: { ...f32(4), shape } }, FOUR),
      /tensor "a" has shape .*not a list of non-negative integers/,
    );
  }
});

Deno.test("lies in data_offsets: form, order, bounds, size", () => {
  for (const off of [[0], [0, 16, 16], [0, 16.5], [-4, 12], ["0", "16"], 16, null, [0, 2 ** 53]]) {
    rejects(
      craft({ a: { ...f32(4), data_offsets: off } }, FOUR),
      /data_offsets .*not two non-negative integers/,
    );
  }
  rejects(craft({ a: { ...f32(0), data_offsets: [8, 4] } }, FOUR), /with begin > end/);
  rejects(craft({ a: f32(5) }, FOUR), /ends at byte 20 but the data section has only 16 bytes/);
  rejects(craft({ a: { ...f32(4), shape: [2, 3] } }, FOUR), /has 16 bytes but shape \[2,3\] needs 24/);
  rejects(craft({ a: { ...f32(4), shape: [3] } }, FOUR), /has 16 bytes but shape \[3\] needs 12/);
});

Deno.test("lies about the layout: overlaps, gaps, trailing bytes", () => {
  const t = (b: number, e: number) => ({ dtype: "F32", shape: [(e - b) / 4], data_offsets: [b, e] });
  rejects(craft({ a: t(0, 8), b: t(4, 16) }, FOUR), /tensor "b" overlaps tensor "a"/);
  rejects(craft({ a: t(0, 16), b: t(0, 16) }, FOUR), /overlaps/);
  rejects(craft({ a: t(0, 4), b: t(8, 16) }, FOUR), /gap of 4 unused bytes before tensor "b"/);
  rejects(craft({ a: t(4, 16) }, FOUR), /gap of 4 unused bytes before tensor "a"/);
  rejects(craft({ a: t(0, 12) }, FOUR), /4 trailing bytes after the last tensor/);
  rejects(craft({}, FOUR), /16 trailing bytes/);
  // Zero-size tensors take no room and may share an offset.
  const ok = decodeSafetensors(craft({ z1: t(0, 0), a: t(0, 16), z2: t(16, 16), z3: t(16, 16) }, FOUR));
  assert.deepEqual([...ok.tensors.keys()], ["z1", "a", "z2", "z3"]);
});

Deno.test("fuzz: byte flips, truncations, length edits either decode cleanly or throw CheckpointError", () => {
  const valid = encodeSafetensors(sample(), META);
  const n = new DataView(valid.buffer).getUint32(0, true);
  const dataStart = 8 + n;
  const rng = new Rng(2024);
  const counts = { ok: 0, rejected: 0 };
  const t0 = performance.now();
  for (let c = 0; c < 600; c++) {
    const b = valid.slice();
    let dataOnly = false;
    let bytes: Uint8Array = b;
    switch (c % 6) {
      case 0: { // flip bits of one byte in the header (length field included)
        const i = rng.int(dataStart);
        b[i] ^= 1 + rng.int(255);
        break;
      }
      case 1: { // flip bytes in the tensor data only: must still decode
        for (let k = 0; k < 1 + rng.int(4); k++) {
          b[dataStart + rng.int(b.length - dataStart)] ^= 1 + rng.int(255);
        }
        dataOnly = true;
        break;
      }
      case 2: // truncate anywhere
        bytes = b.slice(0, rng.int(b.length));
        break;
      case 3: { // edit the header length: small nudge, random u32, or a high word
        const dv = new DataView(b.buffer);
        const r = rng.int(3);
        if (r === 0) dv.setUint32(0, Math.max(0, n + rng.int(33) - 16), true);
        else if (r === 1) dv.setUint32(0, rng.nextU32(), true);
        else dv.setUint32(4, 1 + rng.int(0xffff), true);
        break;
      }
      case 4: { // several random byte writes anywhere
        for (let k = 0; k < 1 + rng.int(8); k++) b[rng.int(b.length)] = rng.int(256);
        break;
      }
      case 5: { // replace one header byte with a JSON-significant character
        const chars = '{}[]",:0123456789 -.eE\\';
        b[8 + rng.int(n)] = chars.charCodeAt(rng.int(chars.length));
        break;
      }
    }
    try {
      const { tensors } = decodeSafetensors(bytes, "fuzz.safetensors");
      for (const [, t] of tensors) assert.equal(t.data.length, t.shape.reduce((a, d) => a * d, 1));
      counts.ok++;
    } catch (e) {
      assert.ok(!dataOnly, `case ${c}: a data-only flip must decode, got ${e}`);
      assert.ok(e instanceof CheckpointError, `case ${c}: ${e instanceof Error ? e.name : typeof e}: ${e}`);
      assert.ok(e.message.startsWith("fuzz.safetensors: "));
      assert.ok(!e.message.includes("unexpected"), `case ${c} reached the fallback: ${e.message}`);
      assert.ok(!e.message.includes("\n"));
      counts.rejected++;
    }
  }
  assert.ok(counts.ok >= 100 && counts.rejected >= 300, JSON.stringify(counts));
  assert.ok(performance.now() - t0 < 5000, "fuzz took too long");
});
