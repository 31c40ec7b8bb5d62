// Tensor: a typed view (offset + shape) into a GPU buffer, optionally carrying a gradient view.
// ParamStore: every parameter of a model in ONE flat buffer (and its gradient in another), so the
// optimizer and grad-zeroing are a single dispatch each. Each parameter starts on a 256-byte
// boundary (minStorageBufferOffsetAlignment), so it can also be bound on its own.

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

export interface ParamSpec {
  name: string;
  shape: readonly number[];
  init: Float32Array;
}

const ALIGN = 64; // floats: 256 bytes

/** All parameters in one buffer, all gradients in another, with identical layouts. */
export class ParamStore {
  /** The whole flat parameter buffer (padding included, kept at 0) */
  readonly params: Tensor;
  /** The flat gradient buffer (same layout as params). */
  readonly grads: Tensor;
  /** Every parameter view, in layout order. */
  readonly list: Tensor[] = [];
  private byName = new Map<string, Tensor>();
  /** In floats. */
  readonly offsets: number[] = [];

  /** Allocate both buffers and upload each spec's initial values. */
  constructor(readonly rt: Runtime, specs: readonly ParamSpec[]) {
    let total = 0;
    for (const s of specs) {
      if (s.init.length !== numel(s.shape)) throw new Error(`param ${s.name}: init size mismatch`);
      this.offsets.push(total);
      total += Math.ceil(numel(s.shape) / ALIGN) * ALIGN;
    }
    total = Math.max(total, ALIGN);
    this.params = Tensor.empty(rt, [total], "f32", "params");
    this.grads = Tensor.empty(rt, [total], "f32", "grads");
    const host = new Float32Array(total);
    specs.forEach((s, i) => {
      host.set(s.init, this.offsets[i]);
      const p = new Tensor(rt, this.params.buffer, this.offsets[i] * 4, s.shape, "f32", s.name);
      p.grad = new Tensor(rt, this.grads.buffer, this.offsets[i] * 4, s.shape, "f32", s.name + ".grad");
      this.list.push(p);
      this.byName.set(s.name, p);
    });
    this.params.write(host);
    this.grads.write(new Float32Array(total));
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

  /** Read every parameter back (name -> values) for checkpoints. */
  async readAll(): Promise<Map<string, Float32Array>> {
    const flat = await this.params.read();
    return new Map(this.list.map((t, i) => [t.name, flat.slice(this.offsets[i], this.offsets[i] + t.size)]));
  }

  /** Read every gradient back (name -> values). */
  async readGrads(): Promise<Map<string, Float32Array>> {
    const flat = await this.grads.read();
    return new Map(this.list.map((t, i) => [t.name, flat.slice(this.offsets[i], this.offsets[i] + t.size)]));
  }

  /** Overwrite parameters from name -> values (sizes are checked). */
  writeAll(values: Map<string, Float32Array>): void {
    const host = new Float32Array(this.params.size);
    this.list.forEach((t, i) => {
      const v = values.get(t.name);
      if (!v || v.length !== t.size) throw new Error(`param ${t.name}: missing or wrong size`);
      host.set(v, this.offsets[i]);
    });
    this.params.write(host);
  }
}
