// Training data (browser-safe; models/files.ts reads the file): decoding the text, the (current char ->
// next char) pairs the bigram and MLP models train on, the GPT train/val split with random window
// batches (the seed notebook's get_batch), and the exact bigram entropy of a token stream (the floor
// for any bigram model's loss).

import { UsageError } from "./errors.ts";
import type { Rng } from "./rng.ts";

/** UTF-8 text of `bytes`; empty or invalid UTF-8 is a UsageError naming `label` (a file path). */
export function decodeText(bytes: Uint8Array, label: string): string {
  if (bytes.length === 0) throw new UsageError(`data file is empty: ${label}`);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new UsageError(`data file is not valid UTF-8: ${label}`);
  }
  if (text.length === 0) throw new UsageError(`data file is empty: ${label}`); // only a byte-order mark
  return text;
}

function checkIds(ids: ArrayLike<number>, V: number): void {
  if (!Number.isInteger(V) || V < 1) throw new Error(`vocabulary size must be a positive integer, got ${V}`);
  for (let i = 0; i < ids.length; i++) {
    const t = ids[i];
    if (!Number.isInteger(t) || t < 0 || t >= V) {
      throw new Error(`token id ${t} at ${i} is outside [0, ${V})`);
    }
  }
}

/** Every consecutive pair (ids[i], ids[i+1]) as one-hot rows: inputs and targets are [n, V], n = len - 1. */
export function oneHotPairs(
  ids: ArrayLike<number>,
  V: number,
): { inputs: Float32Array; targets: Float32Array; n: number } {
  checkIds(ids, V);
  const n = Math.max(0, ids.length - 1);
  const inputs = new Float32Array(n * V), targets = new Float32Array(n * V);
  for (let i = 0; i < n; i++) {
    inputs[i * V + ids[i]] = 1;
    targets[i * V + ids[i + 1]] = 1;
  }
  return { inputs, targets, n };
}

/**
 * Every consecutive pair with the input as an id (for an embedding lookup): inputs[i] = ids[i],
 * targetIds[i] = ids[i+1], and targets the [n, V] one-hot rows of targetIds.
 */
export function idPairs(
  ids: ArrayLike<number>,
  V: number,
): { inputs: Uint32Array; targets: Float32Array; targetIds: Uint32Array; n: number } {
  checkIds(ids, V);
  const n = Math.max(0, ids.length - 1);
  const inputs = new Uint32Array(n), targetIds = new Uint32Array(n), targets = new Float32Array(n * V);
  for (let i = 0; i < n; i++) {
    inputs[i] = ids[i];
    targetIds[i] = ids[i + 1];
    targets[i * V + ids[i + 1]] = 1;
  }
  return { inputs, targets, targetIds, n };
}

/** The GPT data: the first floor(trainFrac * len) tokens train, the rest validate (views, not copies). */
export class GPTData {
  /** The first `trainFrac` of the tokens. */
  readonly train: Uint32Array;
  /** The remaining tokens (validation). */
  readonly val: Uint32Array;

  /** Split `ids` (views, not copies). */
  constructor(ids: Uint32Array, trainFrac = 0.9) {
    if (!(trainFrac > 0 && trainFrac <= 1)) throw new Error(`trainFrac must be in (0, 1], got ${trainFrac}`);
    const n = Math.floor(trainFrac * ids.length);
    this.train = ids.subarray(0, n);
    this.val = ids.subarray(n);
  }

  /**
   * `batch` random windows of `block` tokens from a split: start offsets i = rng.int(len - block),
   * drawn in order, x = data[i : i+block], y = data[i+1 : i+block+1]; both flat [batch * block].
   */
  getBatch(
    split: "train" | "val",
    batch: number,
    block: number,
    rng: Rng,
  ): { x: Uint32Array; y: Uint32Array } {
    for (const [k, v] of [["batch", batch], ["block", block]] as const) {
      if (!Number.isInteger(v) || v < 1) {
        throw new Error(`getBatch: ${k} must be a positive integer, got ${v}`);
      }
    }
    const data = split === "train" ? this.train : this.val;
    if (data.length < block + 1) {
      throw new UsageError(
        `the ${split} split has ${data.length} tokens, fewer than block size + 1 = ${block + 1}: ` +
          `use more data or a smaller block size`,
      );
    }
    const x = new Uint32Array(batch * block), y = new Uint32Array(batch * block);
    for (let b = 0; b < batch; b++) {
      const i = rng.int(data.length - block);
      x.set(data.subarray(i, i + block), b * block);
      y.set(data.subarray(i + 1, i + block + 1), b * block);
    }
    return { x, y };
  }
}

/**
 * The conditional entropy (nats) of the next token given the current one, from the pair counts of
 * `ids`: -(1/n) Σ_pairs log(count(a,b) / count(a,·)), n = len - 1. This is the lowest mean
 * cross-entropy any bigram model can reach on this data (the count-based model attains it).
 */
export function bigramEntropy(ids: ArrayLike<number>, V: number): number {
  checkIds(ids, V);
  const n = ids.length - 1;
  if (n < 1) throw new Error("bigramEntropy needs at least 2 tokens");
  const pair = new Map<number, number>();
  const row = new Float64Array(V);
  for (let i = 0; i < n; i++) {
    const k = ids[i] * V + ids[i + 1];
    pair.set(k, (pair.get(k) ?? 0) + 1);
    row[ids[i]]++;
  }
  let sum = 0;
  for (const [k, c] of pair) sum += c * Math.log(c / row[Math.floor(k / V)]);
  return Math.max(0, -sum / n); // not -0 for a fully determined stream
}
