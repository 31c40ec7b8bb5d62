// Data preparation for the BPE tokenizer (Deno): encode a text once and keep its token ids beside it,
// as nanoGPT's prepare.py keeps train.bin / val.bin: `<data>.<tokenizer>.tokens`, uint16 little-endian
// ids (GPT-2's 50257 fit) after a small header that keys them:
//
//   8 bytes  magic "TGTOKv1\n"
//   4 bytes  header length H (u32 LE), then H bytes of JSON:
//            { "tokenizer": "gpt2/r50k_base (gpt-tokenizer 4.0.0)", "sha256": <hex of the text's UTF-8>,
//              "count": n }
//   2n bytes the ids
//
// A cache whose tokenizer, text hash or length disagrees (or that is truncated or malformed) is
// ignored and rewritten: a changed text or tokenizer is encoded again. Writes are atomic (temp file,
// fsync, rename: lib/fsutil.ts), so a killed run leaves the old cache or the new one, never half.
//
// Permissions: the cache lives next to the data, so writing it needs write access there. It is never
// prompted for: with read and write permission for the cache path already granted (deno task train
// grants both inside the project) the cache is read and written; otherwise, or when the directory is
// read-only, the text is encoded each run and a note says how to enable the cache. Encoding is never
// skipped and no run fails because of the cache.

import { atomicWrite } from "./fsutil.ts";
import type { TextTokenizer } from "./tokenizer.ts";

const MAGIC = "TGTOKv1\n";
/** What a cache's key names as its tokenizer (the package version: a new one may encode differently). */
export const GPT2_CACHE_KEY = "gpt2/r50k_base (gpt-tokenizer 4.0.0)";

/** The cache file of `data` for tokenizer `kind`. */
export const cachePath = (data: string, kind: string): string => `${data}.${kind}.tokens`;

async function sha256(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The cache file's bytes for `ids` of a text with hash `hash`. */
export function encodeTokenCache(ids: ArrayLike<number>, hash: string, key = GPT2_CACHE_KEY): Uint8Array {
  const header = new TextEncoder().encode(
    JSON.stringify({ tokenizer: key, sha256: hash, count: ids.length }),
  );
  const out = new Uint8Array(8 + 4 + header.length + 2 * ids.length);
  const dv = new DataView(out.buffer);
  out.set(new TextEncoder().encode(MAGIC), 0);
  dv.setUint32(8, header.length, true);
  out.set(header, 12);
  const at = 12 + header.length;
  for (let i = 0; i < ids.length; i++) {
    if (!(ids[i] >= 0 && ids[i] < 65536)) throw new Error(`token id ${ids[i]} does not fit uint16`);
    dv.setUint16(at + 2 * i, ids[i], true);
  }
  return out;
}

/** The ids of a cache file, or null when it is not a cache of this text (hash) and tokenizer. */
export function decodeTokenCache(bytes: Uint8Array, hash: string, key = GPT2_CACHE_KEY): Uint32Array | null {
  if (bytes.length < 12 || new TextDecoder().decode(bytes.subarray(0, 8)) !== MAGIC) return null;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const h = dv.getUint32(8, true);
  if (12 + h > bytes.length) return null;
  let meta: { tokenizer?: unknown; sha256?: unknown; count?: unknown };
  try {
    meta = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(12, 12 + h)));
  } catch {
    return null;
  }
  const n = meta.count;
  if (meta.tokenizer !== key || meta.sha256 !== hash || !Number.isSafeInteger(n)) return null;
  if (bytes.length !== 12 + h + 2 * (n as number)) return null;
  const ids = new Uint32Array(n as number);
  for (let i = 0; i < ids.length; i++) ids[i] = dv.getUint16(12 + h + 2 * i, true);
  return ids;
}

const granted = async (name: "read" | "write", path: string) =>
  (await Deno.permissions.query({ name, path })).state === "granted";

/** What encodeCached did, for the run's log. */
export interface CacheReport {
  /** "hit": read from the cache; "written": encoded and cached; "uncached": encoded, not cached (why in note). */
  status: "hit" | "written" | "uncached";
  /** The cache file. */
  path: string;
  /** Seconds spent encoding (0 on a hit). */
  encodeSeconds: number;
  /** Why the cache was not used, when it was not. */
  note?: string;
}

/** The BPE ids of `text` (the contents of the file `data`), through the cache beside it (see the top). */
export async function encodeCached(
  data: string,
  text: string,
  tok: TextTokenizer,
  key = GPT2_CACHE_KEY,
): Promise<{ ids: Uint32Array; report: CacheReport }> {
  const path = cachePath(data, tok.kind);
  const hash = await sha256(new TextEncoder().encode(text));
  const canRead = await granted("read", path), canWrite = await granted("write", path);
  if (canRead) {
    const bytes = await Deno.readFile(path).catch(() => null);
    const ids = bytes && decodeTokenCache(bytes, hash, key);
    if (ids) return { ids, report: { status: "hit", path, encodeSeconds: 0 } };
  }
  const t0 = performance.now();
  const ids = Uint32Array.from(tok.encode(text));
  const encodeSeconds = (performance.now() - t0) / 1000;
  if (!canRead || !canWrite) {
    const note =
      `no permission to cache the token ids in ${path} (run with --allow-read and --allow-write for it)`;
    return { ids, report: { status: "uncached", path, encodeSeconds, note } };
  }
  try {
    await atomicWrite(path, encodeTokenCache(ids, hash, key));
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    return {
      ids,
      report: { status: "uncached", path, encodeSeconds, note: `could not write ${path}: ${why}` },
    };
  }
  return { ids, report: { status: "written", path, encodeSeconds } };
}
