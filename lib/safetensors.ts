// The safetensors checkpoint format (F32; reading may also accept F16 and BF16, converted to f32 exactly,
// for Hugging Face files): an 8-byte little-endian u64 header length N, N bytes
// of JSON header (padded with spaces to a multiple of 8), then the raw little-endian tensor data.
// Header: { "__metadata__": {string: string}, name: { "dtype": "F32", "shape": [...],
// "data_offsets": [begin, end] } }, offsets relative to the start of the data section.
//
// Decoding trusts nothing: every inconsistency is a CheckpointError, a one-line message naming the
// file and the problem. Like the reference implementation, the tensors must tile the data section
// exactly: in offset order each begins where the previous ended (no overlaps, no gaps) and the last
// ends at the end of the file (no trailing bytes). The header may list tensors in any order; the
// decoded Map is in data-offset order (which is the encoder's Map order).

/** A checkpoint file that cannot be used: one line naming the file and the problem. */
export class CheckpointError extends Error {
  /** The class name (the CLIs map it to exit status 2). */
  override name = "CheckpointError";
}

/** The dtypes decodeSafetensors can read (F16 and BF16 only when asked: our own files are F32). */
export type Dtype = "F32" | "F16" | "BF16";
const DTYPE_BYTES: Record<Dtype, number> = { F32: 4, F16: 2, BF16: 2 };

/** One tensor of a safetensors file (F32). */
export interface StoredTensor {
  /** Dimensions, outermost first. */
  shape: number[];
  /** The values, row-major. */
  data: Float32Array;
}

/** Largest header accepted (the reference implementation's limit). */
export const MAX_HEADER_BYTES = 100_000_000;

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function numel(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Serialise `tensors` (in the Map's order, contiguous) with string `metadata`. */
export function encodeSafetensors(
  tensors: Map<string, StoredTensor>,
  metadata: Record<string, string>,
): Uint8Array {
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== "string") throw new Error(`metadata value for "${k}" must be a string`);
  }
  // Built as text, not via an object, so every name (even "__proto__" or "7") keeps its place.
  const fields = [`"__metadata__":${JSON.stringify(metadata)}`];
  let offset = 0;
  for (const [name, t] of tensors) {
    if (name === "__metadata__") throw new Error(`"__metadata__" cannot be a tensor name`);
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new Error(`tensor "${name}": bad shape [${t.shape}]`);
    }
    if (numel(t.shape) !== t.data.length) {
      throw new Error(`tensor "${name}": shape [${t.shape}] does not match ${t.data.length} values`);
    }
    const end = offset + 4 * t.data.length;
    fields.push(
      `${JSON.stringify(name)}:${
        JSON.stringify({ dtype: "F32", shape: t.shape, data_offsets: [offset, end] })
      }`,
    );
    offset = end;
  }
  let json = new TextEncoder().encode(`{${fields.join(",")}}`);
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + padded + offset);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, padded % 2 ** 32, true);
  dv.setUint32(4, Math.floor(padded / 2 ** 32), true);
  out.set(json, 8);
  let pos = 8 + padded;
  for (const t of tensors.values()) {
    if (LITTLE_ENDIAN) {
      out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), pos);
    } else {
      for (let i = 0; i < t.data.length; i++) dv.setFloat32(pos + 4 * i, t.data[i], true);
    }
    pos += t.data.byteLength;
  }
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

const isIndex = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

/**
 * Parse a safetensors file. Every problem (truncation, an implausible header length, a header that is
 * not UTF-8 JSON of the right shape, a dtype other than F32, offsets that disagree with the shapes or
 * with each other or with the file size) is a CheckpointError whose message starts with `label`.
 * Tensor data is copied into fresh Float32Arrays.
 */
export function decodeSafetensors(
  bytes: Uint8Array,
  label = "checkpoint",
  dtypes: readonly Dtype[] = ["F32"],
): { tensors: Map<string, StoredTensor>; metadata: Record<string, string> } {
  const bad = (msg: string): never => {
    throw new CheckpointError(`${label}: ${msg}`);
  };
  try {
    return decode(bytes, bad, dtypes);
  } catch (e) {
    if (e instanceof CheckpointError) throw e;
    // Defence in depth: the checks above should leave nothing else to throw.
    throw new CheckpointError(
      `${label}: unexpected malformed checkpoint (${e instanceof Error ? e.message : e})`,
    );
  }
}

/** An IEEE half (its 16 bits) as a number: exact (every f16 is an f32). */
export function f16ToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24; // zero and subnormals
  if (e === 31) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

function decode(
  bytes: Uint8Array,
  bad: (msg: string) => never,
  dtypes: readonly Dtype[],
): { tensors: Map<string, StoredTensor>; metadata: Record<string, string> } {
  if (bytes.length < 8) bad(`file is too short (${bytes.length} bytes) to be a safetensors checkpoint`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lo = dv.getUint32(0, true), hi = dv.getUint32(4, true);
  const n = hi * 2 ** 32 + lo;
  if (hi !== 0 || n > MAX_HEADER_BYTES) {
    bad(`header length ${n} is implausibly large (limit ${MAX_HEADER_BYTES})`);
  }
  if (n > bytes.length - 8) {
    bad(`header length ${n} exceeds the ${bytes.length - 8} bytes after the length field (truncated file?)`);
  }
  if (n === 0) bad("header is empty");

  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes.subarray(8, 8 + n));
  } catch {
    return bad("header is not valid UTF-8");
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch {
    return bad("header is not valid JSON");
  }
  if (!isObject(header)) return bad("header is not a JSON object");

  const metadata: Record<string, string> = {};
  if ("__metadata__" in header) {
    const m = header.__metadata__;
    if (!isObject(m)) bad(`"__metadata__" is not an object`);
    for (const [k, v] of Object.entries(m as Record<string, unknown>)) {
      if (typeof v !== "string") bad(`metadata value for ${JSON.stringify(k)} is not a string`);
      Object.defineProperty(metadata, k, { value: v, enumerable: true, writable: true, configurable: true });
    }
  }

  const dataStart = 8 + n, dataLen = bytes.length - dataStart;
  const entries: { name: string; shape: number[]; begin: number; end: number; dtype: Dtype }[] = [];
  for (const [name, e] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const q = JSON.stringify(name);
    if (!isObject(e)) return bad(`tensor ${q} is not an object`);
    if (!("dtype" in e)) bad(`tensor ${q} has no "dtype"`);
    if (!("shape" in e)) bad(`tensor ${q} has no "shape"`);
    if (!("data_offsets" in e)) bad(`tensor ${q} has no "data_offsets"`);
    const dtype = e.dtype as Dtype;
    if (!dtypes.includes(dtype)) {
      const ok = dtypes.map((d) => `"${d}"`).join(", ");
      bad(
        `tensor ${q} has dtype ${JSON.stringify(e.dtype)}; only ${ok} ${
          dtypes.length > 1 ? "are" : "is"
        } supported`,
      );
    }
    const shape = e.shape;
    if (!Array.isArray(shape) || !shape.every(isIndex)) {
      return bad(`tensor ${q} has shape ${JSON.stringify(shape)}, not a list of non-negative integers`);
    }
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every(isIndex)) {
      return bad(`tensor ${q} has data_offsets ${JSON.stringify(off)}, not two non-negative integers`);
    }
    const [begin, end] = off as number[];
    if (begin > end) bad(`tensor ${q} has data_offsets [${begin}, ${end}] with begin > end`);
    if (end > dataLen) {
      bad(`tensor ${q} ends at byte ${end} but the data section has only ${dataLen} bytes (truncated file?)`);
    }
    const count = numel(shape as number[]), size = DTYPE_BYTES[dtype];
    if (end - begin !== size * count) {
      bad(`tensor ${q} has ${end - begin} bytes but shape [${shape}] needs ${size * count} (${dtype})`);
    }
    entries.push({ name, shape: shape as number[], begin, end, dtype });
  }

  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let prev = "";
  for (const t of entries) {
    if (t.begin < cursor) bad(`tensor ${JSON.stringify(t.name)} overlaps tensor ${JSON.stringify(prev)}`);
    if (t.begin > cursor) {
      bad(`gap of ${t.begin - cursor} unused bytes before tensor ${JSON.stringify(t.name)}`);
    }
    cursor = t.end;
    prev = t.name;
  }
  if (cursor !== dataLen) bad(`${dataLen - cursor} trailing bytes after the last tensor`);

  const tensors = new Map<string, StoredTensor>();
  for (const t of entries) {
    const count = (t.end - t.begin) / DTYPE_BYTES[t.dtype];
    const data = new Float32Array(count);
    if (t.dtype !== "F32") {
      // Half-width values widened exactly: F16 by its fields, BF16 as the top half of an f32.
      const at = dataStart + t.begin;
      const words = new Uint32Array(data.buffer);
      for (let i = 0; i < count; i++) {
        const h = dv.getUint16(at + 2 * i, true);
        if (t.dtype === "BF16") words[i] = h << 16;
        else data[i] = f16ToNumber(h);
      }
      tensors.set(t.name, { shape: t.shape, data });
      continue;
    }
    const src = bytes.subarray(dataStart + t.begin, dataStart + t.end);
    if (LITTLE_ENDIAN) new Uint8Array(data.buffer).set(src); // byte copy: any alignment
    else for (let i = 0; i < count; i++) data[i] = dv.getFloat32(dataStart + t.begin + 4 * i, true);
    tensors.set(t.name, { shape: t.shape, data });
  }
  return { tensors, metadata };
}
