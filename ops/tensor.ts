// Tensor: a typed view (offset + shape) into a GPU buffer, optionally carrying a gradient view.
// ParamStore: every parameter of a model in a few flat buffers ("shards", each within the runtime's
// binding cap, so the optimizer and grad-zeroing are one dispatch per shard), and the gradients in
// shards of the same layout. Each parameter starts on a 256-byte boundary
// (minStorageBufferOffsetAlignment), so it can also be bound on its own. A parameter larger than the
// cap (GPT-2's token embedding) gets a shard of its own, which ops bind in windows (`windows`).

import { type BufferView, type Runtime, STORAGE } from "./runtime.ts";

/** Element type of a tensor (both 4 bytes). */
export type DType = "f32" | "u32";

export const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** A typed view of a GPU buffer region with a shape (f32 or u32 elements). */
export class Tensor implements BufferView {
  /** The gradient of a parameter (its view in the ParamStore's gradient buffer). */
  grad: Tensor | null = null;

  /** A view of `buffer` at byte `offset`. */
  constructor(
    readonly rt: Runtime,
    readonly buffer: GPUBuffer,
    readonly offset: number,
    readonly shape: readonly number[],
    readonly dtype: DType = "f32",
    readonly name = "",
  ) {}

  /** Number of elements. */
  get size(): number {
    return numel(this.shape);
  }
  /** Size in bytes (4 per element). */
  get byteLength(): number {
    return this.size * 4;
  }

  /** A new zeroed tensor of `shape`. */
  static empty(rt: Runtime, shape: readonly number[], dtype: DType = "f32", name = ""): Tensor {
    return new Tensor(rt, rt.createBuffer(numel(shape) * 4, STORAGE, name), 0, shape, dtype, name);
  }

  /** A new tensor holding `data` (u32 for Uint32Array/Int32Array, else f32). */
  static from(
    rt: Runtime,
    data: Float32Array | Uint32Array | Int32Array | readonly number[],
    shape: readonly number[] = [data.length],
    name = "",
  ): Tensor {
    const dtype: DType = data instanceof Uint32Array || data instanceof Int32Array ? "u32" : "f32";
    if (numel(shape) !== data.length) {
      throw new Error(`Tensor.from: ${data.length} values for shape [${shape}]`);
    }
    const t = Tensor.empty(rt, shape, dtype, name);
    t.write(Array.isArray(data) ? new Float32Array(data) : data as Float32Array);
    return t;
  }

  /** Queue a write of all elements. */
  write(data: Float32Array | Uint32Array | Int32Array): void {
    if (data.length !== this.size) throw new Error(`write: ${data.length} values into [${this.shape}]`);
    this.rt.write(this, data);
  }

  /** Fill with NaN (f32) or 0xffffffff (u32): tests poison outputs so an unwritten element fails. */
  poison(): void {
    const a = new Uint32Array(this.size).fill(this.dtype === "f32" ? 0x7fc00000 : 0xffffffff);
    this.rt.write(this, a);
  }

  /** Read back as float32 (submits pending work). */
  async read(): Promise<Float32Array> {
    return await this.rt.read(this);
  }

  /** Read back as u32 (submits pending work). */
  async readU32(): Promise<Uint32Array> {
    return new Uint32Array(await this.rt.readBytes(this));
  }

  /** Same storage, new shape (sizes must agree). */
  reshape(shape: readonly number[]): Tensor {
    if (numel(shape) !== this.size) throw new Error(`reshape [${this.shape}] -> [${shape}]`);
    const t = new Tensor(this.rt, this.buffer, this.offset, shape, this.dtype, this.name);
    t.grad = this.grad?.reshape(shape) ?? null;
    return t;
  }
}

/** A parameter: its name, shape and initial values. */
export interface ParamSpec {
  name: string;
  shape: readonly number[];
  init: Float32Array;
}

/** A parameter whose initial values may be absent (zeros, nothing uploaded: the memory planner's). */
export type ParamShape = Omit<ParamSpec, "init"> & { init?: Float32Array };

const ALIGN = 64; // floats: 256 bytes
/** Window starts are multiples of this many floats (a decay-mask word offset stays 256-byte aligned). */
const WINDOW_ALIGN = 2048;

/** The flat layout of a ParamStore: where each parameter lives, and how the layout is cut into shards. */
export interface ParamLayout {
  /** Each parameter's first float in the flat layout (padded to 64 floats: 256 bytes). */
  offsets: number[];
  /** Floats of the whole flat layout (the concatenation of the shards; checkpoints' optimizer state). */
  floats: number;
  /** Contiguous runs of parameters: [start float, floats, first parameter, end parameter). */
  shards: { start: number; floats: number; first: number; end: number }[];
}

/**
 * The layout of parameters of `shapes` under a binding cap of `capBytes`: the flat layout of a
 * single buffer (unchanged by the cap), cut between parameters into shards of at most `capBytes`
 * each; a parameter larger than the cap is a shard of its own. The memory planner uses it too.
 */
export function paramLayout(shapes: readonly (readonly number[])[], capBytes: number): ParamLayout {
  const offsets: number[] = [];
  const shards: ParamLayout["shards"] = [];
  let total = 0;
  const capFloats = Math.floor(capBytes / 4);
  shapes.forEach((shape, i) => {
    const n = Math.ceil(numel(shape) / ALIGN) * ALIGN;
    const last = shards.at(-1);
    if (last && last.floats + n <= capFloats) {
      last.floats += n;
      last.end = i + 1;
    } else shards.push({ start: total, floats: n, first: i, end: i + 1 });
    offsets.push(total);
    total += n;
  });
  if (!shards.length) shards.push({ start: 0, floats: ALIGN, first: 0, end: 0 });
  return { offsets, floats: Math.max(total, ALIGN), shards };
}

/**
 * Views of a flat tensor that each fit in `capBytes` (default: the runtime's binding cap), in order,
 * starting at multiples of 2048 floats: what an elementwise op over a shard binds, one dispatch each.
 */
export function windows(t: Tensor, capBytes = t.rt.maxBindingBytes): Tensor[] {
  if (t.byteLength <= capBytes) return [t];
  const w = Math.floor(capBytes / 4 / WINDOW_ALIGN) * WINDOW_ALIGN;
  if (w <= 0) throw new Error(`windows: a binding cap of ${capBytes} bytes is too small`);
  const out: Tensor[] = [];
  for (let s = 0; s < t.size; s += w) {
    const n = Math.min(w, t.size - s);
    out.push(new Tensor(t.rt, t.buffer, t.offset + 4 * s, [n], t.dtype, t.name));
  }
  return out;
}

/** One buffer of parameters and its gradient buffer (same layout), a contiguous run of the flat layout. */
export interface ParamShard {
  /** The shard's parameter buffer (padding included, kept at 0). */
  params: Tensor;
  /** Its gradient buffer. */
  grads: Tensor;
  /** The shard's first float in the flat layout. */
  start: number;
  /** The parameters it holds (indices into `ParamStore.list`). */
  members: number[];
}

/** All parameters in a few shards, all gradients in shards of the same layout. */
export class ParamStore {
  /** The shards, in layout order (one when everything fits in one binding). */
  readonly shards: ParamShard[] = [];
  /** Every parameter view, in layout order. */
  readonly list: Tensor[] = [];
  private byName = new Map<string, Tensor>();
  /** In floats, in the flat layout (the concatenation of the shards). */
  readonly offsets: number[];
  /** Floats of the flat layout. */
  readonly floats: number;

  /** Allocate the shards and upload each spec's initial values. */
  constructor(readonly rt: Runtime, specs: readonly ParamShape[]) {
    for (const s of specs) {
      if (s.init && s.init.length !== numel(s.shape)) throw new Error(`param ${s.name}: init size mismatch`);
    }
    const layout = paramLayout(specs.map((s) => s.shape), rt.maxBindingBytes);
    this.offsets = layout.offsets;
    this.floats = layout.floats;
    const one = layout.shards.length === 1;
    for (const sh of layout.shards) {
      const n = one ? layout.floats : sh.floats;
      const params = Tensor.empty(rt, [n], "f32", "params");
      const grads = Tensor.empty(rt, [n], "f32", "grads");
      const upload = specs.slice(sh.first, sh.end).some((s) => s.init);
      const host = upload ? new Float32Array(n) : null;
      const members: number[] = [];
      for (let i = sh.first; i < sh.end; i++) {
        const s = specs[i], at = this.offsets[i] - sh.start;
        if (s.init) host!.set(s.init, at);
        const p = new Tensor(rt, params.buffer, at * 4, s.shape, "f32", s.name);
        p.grad = new Tensor(rt, grads.buffer, at * 4, s.shape, "f32", s.name + ".grad");
        this.list.push(p);
        this.byName.set(s.name, p);
        members.push(i);
      }
      if (host) params.write(host); // (new buffers are zero-filled: the gradients need no upload)
      this.shards.push({ params, grads, start: sh.start, members });
    }
  }

  /** The whole flat parameter buffer, when there is one shard (tests and small models). */
  get params(): Tensor {
    return this.single().params;
  }

  /** The whole flat gradient buffer, when there is one shard. */
  get grads(): Tensor {
    return this.single().grads;
  }

  /** The one shard (throws when there are several). */
  private single(): ParamShard {
    if (this.shards.length !== 1) {
      throw new Error(`ParamStore: ${this.shards.length} shards, no single buffer`);
    }
    return this.shards[0];
  }

  /** The parameter named `name`. */
  get(name: string): Tensor {
    const t = this.byName.get(name);
    if (!t) throw new Error(`no parameter named ${name}`);
    return t;
  }

  /** The parameter named `name`, or null when there is none (an optional bias). */
  find(name: string): Tensor | null {
    return this.byName.get(name) ?? null;
  }

  /** Number of parameters (padding excluded). */
  get count(): number {
    return this.list.reduce((a, t) => a + t.size, 0);
  }

  /** Read a flat layout back from per-shard tensors (`pick` chooses the shard's buffer). */
  async readFlat(pick: (s: ParamShard, i: number) => Tensor): Promise<Float32Array> {
    if (this.shards.length === 1) return await pick(this.shards[0], 0).read();
    const flat = new Float32Array(this.floats);
    for (const [i, s] of this.shards.entries()) flat.set(await pick(s, i).read(), s.start);
    return flat;
  }

  /** Write a flat layout into per-shard tensors (`pick` chooses the shard's buffer). */
  writeFlat(flat: Float32Array, pick: (s: ParamShard, i: number) => Tensor): void {
    if (flat.length !== this.floats) {
      throw new Error(`flat layout: ${flat.length} values, want ${this.floats}`);
    }
    this.shards.forEach((s, i) => {
      const t = pick(s, i);
      t.write(flat.subarray(s.start, s.start + t.size));
    });
  }

  /** Read every parameter back (name -> values) for checkpoints. */
  async readAll(): Promise<Map<string, Float32Array>> {
    return this.byParam(await this.readFlat((s) => s.params));
  }

  /** Read every gradient back (name -> values). */
  async readGrads(): Promise<Map<string, Float32Array>> {
    return this.byParam(await this.readFlat((s) => s.grads));
  }

  /** A flat layout's values per parameter name. */
  private byParam(flat: Float32Array): Map<string, Float32Array> {
    return new Map(this.list.map((t, i) => [t.name, flat.slice(this.offsets[i], this.offsets[i] + t.size)]));
  }

  /** Overwrite parameters from name -> values (sizes are checked). */
  writeAll(values: Map<string, Float32Array>): void {
    const host = new Float32Array(this.floats);
    this.list.forEach((t, i) => {
      const v = values.get(t.name);
      if (!v || v.length !== t.size) throw new Error(`param ${t.name}: missing or wrong size`);
      host.set(v, this.offsets[i]);
    });
    this.writeFlat(host, (s) => s.params);
  }
}
