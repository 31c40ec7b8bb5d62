// The one place that talks to WebGPU: adapter/device acquisition, the pipeline cache, the
// bind-group and uniform caches, buffer creation (with counters) and the step's command encoder.
//
// Every op in ops/ is a WGSL kernel launched through `Runtime.dispatch`. Dispatches are recorded
// into ONE command encoder (one compute pass) until `submit()`; nothing reaches the GPU before
// that, and the host reads back only what it asks for with `read()`.

/** Thrown for anything the GPU side reports: no adapter, device lost, WGSL/validation errors. */
export class GPUFailure extends Error {
  /** The class name (the CLIs report it as a GPU failure, exit status 1). */
  override name = "GPUFailure";
}

/** Counters of a Runtime (see `Runtime.stats`). */
export interface RuntimeStats {
  /** GPU buffers created. */
  buffersCreated: number;
  /** Bind groups created. */
  bindGroupsCreated: number;
  /** Uniform buffers created. */
  uniformsCreated: number;
  /** Compute pipelines compiled. */
  pipelinesCreated: number;
  /** Kernel launches recorded. */
  dispatches: number;
  /** Command buffers submitted. */
  submits: number;
  /** Buffers read back to the host. */
  readbacks: number;
}

/** A region of a GPU buffer: what one kernel binding sees. Offsets are in bytes. */
export interface BufferView {
  /** The buffer. */
  readonly buffer: GPUBuffer;
  /** Start of the region, in bytes. */
  readonly offset: number;
  /** Length of the region, in bytes. */
  readonly byteLength: number;
}

/** Uniform parameters of a dispatch: u32 words and f32 words, in the order the WGSL struct declares. */
export type Param = number | { f32: number } | { i32: number };
/** A uniform parameter passed as f32 (plain numbers are u32). */
export const f32 = (x: number): Param => ({ f32: x });
export const i32 = (x: number): Param => ({ i32: x });

export const STORAGE = 0x80 | 0x04 | 0x08; // STORAGE | COPY_SRC | COPY_DST (GPUBufferUsage values)

let nextBufferId = 1;
const bufferIds = new WeakMap<GPUBuffer, number>();
function bufferId(b: GPUBuffer): number {
  let id = bufferIds.get(b);
  if (id === undefined) {
    id = nextBufferId++;
    bufferIds.set(b, id);
  }
  return id;
}

/**
 * Which kernel family the ops dispatch. "gpu": shaped for real GPUs (workgroup-memory tiles, a
 * workgroup per row, >= 64 invocations per workgroup). "cpu": shaped for CPU fallback adapters
 * (llvmpipe / lavapipe / SwiftShader), where per-lane storage loads are gathers and few, fat
 * invocations win. Chosen from the adapter at `Runtime.create`; `rt.kernels` may be reassigned
 * (tests run every op through both).
 */
export type KernelFamily = "gpu" | "cpu";
/** Both kernel families. */
export const KERNEL_FAMILIES: readonly KernelFamily[] = ["gpu", "cpu"];

/**
 * Loop iterations one invocation may run on Mesa's llvmpipe (lavapipe, GL llvmpipe): gallivm counts
 * every loop iteration of an invocation against this limit and silently leaves any loop once it is
 * reached, so a kernel whose invocation loops longer computes a wrong result without an error
 * (measured: cross-entropy at V = 50257, three passes over the row, summed 30% of the exp terms).
 * Kernels whose loops grow with a size pick another shape past it.
 */
export const LLVMPIPE_LOOP_LIMIT = 65535;

/** True for a CPU fallback adapter: isFallbackAdapter, or Mesa's llvmpipe/lavapipe or SwiftShader. */
export function isCpuAdapter(info: {
  isFallbackAdapter?: boolean;
  description?: string;
  vendor?: string;
  architecture?: string;
  device?: string;
}): boolean {
  if (info.isFallbackAdapter) return true;
  const text = [info.description, info.vendor, info.architecture, info.device].join(" ");
  return /llvmpipe|lavapipe|softpipe|swiftshader/i.test(text);
}

/** The storage / uniform buffers a kernel binds, by the names its WGSL declares. */
export type Bindings = Readonly<Record<string, BufferView>>;

/** One binding a WGSL kernel declares: `@binding(n) var<space...> name`. */
export interface BindingDecl {
  /** The binding number in group 0. */
  binding: number;
  /** The variable's name (what `dispatch`'s bindings are keyed by). */
  name: string;
  /** A uniform (else storage) buffer. */
  uniform: boolean;
}

/** A compiled kernel: its pipeline, a stable id, the bindings it declares and its workgroup size. */
export interface CompiledKernel {
  /** The compute pipeline. */
  pipeline: GPUComputePipeline;
  /** Stable id (bind-group cache keys). */
  id: number;
  /** Group-0 bindings of the WGSL. */
  decls: BindingDecl[];
  /** Invocations per workgroup. */
  invocations: number;
}

/** The bindings of group 0 that `code` declares, and its workgroup size (invocations). */
function parseKernel(code: string, label: string): { decls: BindingDecl[]; invocations: number } {
  const decls: BindingDecl[] = [];
  for (const m of code.matchAll(/@binding\((\d+)\)\s*var<\s*(uniform|storage)[^>]*>\s*(\w+)/g)) {
    decls.push({ binding: Number(m[1]), name: m[3], uniform: m[2] === "uniform" });
  }
  const wg = code.match(/@workgroup_size\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?(?:,\s*(\d+)\s*)?\)/);
  if (!wg) throw new Error(`${label}: the kernel's @workgroup_size must be literal numbers`);
  const invocations = Number(wg[1]) * Number(wg[2] ?? 1) * Number(wg[3] ?? 1);
  return { decls, invocations };
}

/** Buffers created in "plan" mode (Runtime.startCapture): a size and a label, no memory; maps read zeros. */
const virtualBuffers = new WeakSet<GPUBuffer>();
function virtualBuffer(size: number, usage: number, label = ""): GPUBuffer {
  const b = {
    size,
    usage,
    label,
    mapState: "unmapped",
    mapAsync: () => Promise.resolve(),
    getMappedRange: (offset = 0, bytes = size - offset) => new ArrayBuffer(bytes),
    unmap() {},
    destroy() {},
  } as unknown as GPUBuffer;
  virtualBuffers.add(b);
  return b;
}

/** One encoded command of a Recording: a dispatch (resolved pipeline and bind group) or a copy. */
export type RecordedOp =
  | {
    label: string;
    pipeline: GPUComputePipeline;
    bindGroup: GPUBindGroup;
    workgroups: [number, number, number];
    invocations: number;
  }
  | { src: BufferView; dst: BufferView; byteLength: number };

/**
 * The dispatches and copies one call of `Runtime.record` encoded, with their pipelines, bind groups
 * and parameter buffers resolved: `Runtime.replay` encodes them again for a few host calls each.
 */
export interface Recording {
  /** What was encoded, in order. */
  readonly ops: readonly RecordedOp[];
}

/** The words of the uniform buffer that holds `params` (u32, f32 and i32 words; a multiple of 4). */
export function packParams(params: readonly Param[]): Uint32Array<ArrayBuffer> {
  const words = new Uint32Array(Math.max(4, Math.ceil(params.length / 4) * 4));
  const f = new Float32Array(words.buffer);
  const s = new Int32Array(words.buffer);
  params.forEach((p, i) => {
    if (typeof p === "number") {
      if (!Number.isInteger(p) || p < 0 || p > 0xffffffff) throw new Error(`u32 param out of range: ${p}`);
      words[i] = p;
    } else if ("f32" in p) f[i] = p.f32;
    else s[i] = p.i32;
  });
  return words;
}

/**
 * One dispatch as `Runtime.dispatch` received it (see `Runtime.startCapture`), with the bytes every
 * binding held just before it ran and just after: what the race check (tests/race/) executes again,
 * and checks its execution against.
 */
export interface CapturedDispatch {
  /** The dispatch's label. */
  label: string;
  /** The WGSL. */
  code: string;
  /** The family `rt.kernels` named when it was dispatched. */
  family: KernelFamily;
  /** Workgroups launched per dimension. */
  workgroups: [number, number, number];
  /** Every group-0 binding: its declaration and its bytes before and after the dispatch. */
  bindings: { decl: BindingDecl; before: ArrayBuffer; after: ArrayBuffer }[];
}

/** Where a captured binding's bytes are: the uniform words, or a region of a capture arena. */
type Snapshot = Uint32Array | { arena: number; offset: number; byteLength: number };
/** Bytes of one capture arena (a binding larger than this gets an arena of its own). */
const CAPTURE_ARENA = 16 << 20;

/** One recorded dispatch, as the bench's --json lists it (see `Runtime.startTrace`). */
export interface TracedKernel {
  /** The dispatch's label. */
  name: string;
  /** The family `rt.kernels` named when it was recorded. */
  family: KernelFamily;
  /** Invocations per workgroup. */
  workgroupSize: number;
  /** Workgroups launched. */
  workgroups: number;
}

/** One profiled dispatch. */
export interface TimedKernel {
  /** The dispatch's label. */
  name: string;
  /** GPU time, milliseconds. */
  ms: number;
}

/** One WebGPU device with its pipeline, bind-group and uniform caches and the step's command encoder. */
export class Runtime {
  /** Counters of what was created and recorded (allocation checks, the bench). */
  readonly stats: RuntimeStats = {
    buffersCreated: 0,
    bindGroupsCreated: 0,
    uniformsCreated: 0,
    pipelinesCreated: 0,
    dispatches: 0,
    submits: 0,
    readbacks: 0,
  };
  /** The kernel family ops dispatch (see KernelFamily); chosen from the adapter at create. */
  kernels: KernelFamily;
  /**
   * The most bytes one storage binding may see: the device's maxStorageBufferBindingSize unless set
   * lower (tests set 16 MiB, so every chunking path runs on small models). Ops that bind a tensor
   * larger than this bind windows of it (ParamStore shards, matmul chunks, embedding row blocks), and
   * `dispatch` refuses a binding past it. Set it before allocating a model: parameter shards are
   * laid out against it.
   */
  maxBindingBytes: number;
  private pipelines = new Map<string, CompiledKernel>();
  private trace: TracedKernel[] | null = null;
  private recording: RecordedOp[] | null = null;
  private capture: {
    plan: boolean;
    seen: Set<string>;
    /** Mappable buffers the snapshots are copied into, one after another (the last one is filling). */
    arenas: { buffer: GPUBuffer; used: number }[];
    pending: { d: Omit<CapturedDispatch, "bindings">; bufs: [BindingDecl, Snapshot, Snapshot][] }[];
  } | null = null;
  private bindGroups = new Map<string, GPUBindGroup>();
  private uniforms = new Map<string, GPUBuffer>();
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private errors: string[] = [];
  private lostReason: string | null = null;
  private readonly staging = new Map<number, GPUBuffer>();
  // Per-kernel profiling (timestamp-query): when enabled every dispatch gets its own pass.
  private profiler: { set: GPUQuerySet; resolve: GPUBuffer; names: string[]; capacity: number } | null = null;

  private constructor(
    readonly adapter: GPUAdapter,
    readonly device: GPUDevice,
    private readonly backend: string,
    kernels: KernelFamily,
  ) {
    this.kernels = kernels;
    this.maxBindingBytes = device.limits.maxStorageBufferBindingSize;
    device.addEventListener("uncapturederror", (e) => {
      this.errors.push((e as GPUUncapturedErrorEvent).error.message.trim());
    });
    device.lost.then((info) => {
      if (info.reason !== "destroyed") this.lostReason = info.message || String(info.reason);
    });
  }

  /**
   * Acquire the adapter and device; a clear GPUFailure if there is none. WebGPU does not report which
   * native API drives the adapter: `backend` names it for `describe()` (the CLIs pass lib/backend.ts'
   * inference, the web page the browser's implementation).
   */
  static async create(
    opts: {
      timestamps?: boolean;
      backend?: (adapter: GPUAdapter) => string;
      /** Kernel family; "auto" (the default): "cpu" on a CPU fallback adapter, else "gpu". */
      kernels?: KernelFamily | "auto";
      /** Bind at most this many bytes per storage binding (default and ceiling: the adapter's limit). */
      maxBindingBytes?: number;
    } = {},
  ): Promise<Runtime> {
    if (!("gpu" in navigator) || !navigator.gpu) {
      throw new GPUFailure("WebGPU is not available here (navigator.gpu is missing)");
    }
    const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
    if (!adapter) {
      throw new GPUFailure(
        "no WebGPU adapter found: install a GPU driver, or Mesa's software Vulkan driver " +
          "(Debian/Ubuntu: apt-get install mesa-vulkan-drivers)",
      );
    }
    const wantTs = !!opts.timestamps && adapter.features.has("timestamp-query");
    const device = await adapter.requestDevice({
      requiredFeatures: wantTs ? ["timestamp-query"] : [],
      requiredLimits: requiredLimits(adapter.limits),
    });
    const kernels = !opts.kernels || opts.kernels === "auto"
      ? (isCpuAdapter(adapter.info) ? "cpu" : "gpu")
      : opts.kernels;
    const rt = new Runtime(adapter, device, opts.backend?.(adapter) ?? "not reported", kernels);
    if (opts.maxBindingBytes) rt.maxBindingBytes = Math.min(rt.maxBindingBytes, opts.maxBindingBytes);
    return rt;
  }

  /** Which native API drives the adapter, as given to `create` ("not reported" when not given). */
  backendName(): string {
    return this.backend;
  }

  /** One line naming the adapter and family: "llvmpipe (LLVM 15.0.6, 256 bits) [backend vulkan (...), kernels cpu]". */
  describe(): string {
    const i = this.adapter.info;
    return `${i.description || i.vendor || "unknown adapter"} [backend ${this.backendName()}${
      i.isFallbackAdapter ? ", software fallback" : ""
    }, kernels ${this.kernels}]`;
  }

  /** Whether the device has timestamp queries (per-kernel profiling). */
  get hasTimestamps(): boolean {
    return this.device.features.has("timestamp-query");
  }

  // ---------------------------------------------------------------- buffers

  /** A buffer of at least `byteLength` bytes (rounded up to 16), counted in `stats`. */
  createBuffer(byteLength: number, usage: number = STORAGE, label?: string): GPUBuffer {
    this.stats.buffersCreated++;
    // Storage bindings must be a multiple of 4 bytes; round up so every tensor can be bound.
    const size = Math.max(16, Math.ceil(byteLength / 16) * 16);
    if (this.capture?.plan) return virtualBuffer(size, usage, label);
    return this.device.createBuffer({ size, usage, label });
  }

  /** Queue a write of `data` into `view`. */
  write(view: BufferView, data: ArrayBufferView): void {
    if (virtualBuffers.has(view.buffer)) return;
    this.device.queue.writeBuffer(
      view.buffer,
      view.offset,
      data.buffer as ArrayBuffer,
      data.byteOffset,
      data.byteLength,
    );
  }

  // ---------------------------------------------------------------- pipelines & dispatch

  /** The compute pipeline for WGSL `code` (entry point main), compiled once. */
  pipeline(code: string, label = "kernel"): CompiledKernel {
    let p = this.pipelines.get(code);
    if (!p) {
      const { decls, invocations } = parseKernel(code, label);
      const max = this.device.limits.maxComputeInvocationsPerWorkgroup;
      if (invocations > max) {
        throw new GPUFailure(
          `${label}: ${invocations} invocations per workgroup, this adapter allows ${max}`,
        );
      }
      const module = this.device.createShaderModule({ code, label });
      const pipeline = this.device.createComputePipeline({
        layout: "auto",
        compute: { module, entryPoint: "main" },
        label,
      });
      p = { pipeline, id: ++this.stats.pipelinesCreated, decls, invocations };
      this.pipelines.set(code, p);
    }
    return p;
  }

  /** The uniform buffer holding `params` (cached by content). */
  private uniform(params: readonly Param[]): GPUBuffer {
    const words = packParams(params);
    const key = Array.from(words).join(",");
    let u = this.uniforms.get(key);
    if (!u) {
      u = this.device.createBuffer({ size: words.byteLength, usage: 0x40 | 0x08, label: "params" });
      this.device.queue.writeBuffer(u, 0, words);
      this.stats.uniformsCreated++;
      this.uniforms.set(key, u);
    }
    return u;
  }

  /**
   * Record one kernel launch. `bindings` names every buffer the WGSL declares in group 0 but one
   * uniform (`p` by convention), which holds `params` in the order its struct declares them; a
   * missing or unknown name throws. Bind groups and uniform buffers are cached by content, so a step that repeats the
   * same launches allocates nothing after its first run.
   */
  dispatch(
    label: string,
    code: string,
    bindings: Bindings,
    params: readonly Param[],
    workgroups: readonly [number, number?, number?],
  ): void {
    const [x, y = 1, z = 1] = workgroups;
    if (x === 0 || y === 0 || z === 0) return;
    const max = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (x > max || y > max || z > max) throw new GPUFailure(`${label}: dispatch ${x}x${y}x${z} too large`);
    if (this.capture?.plan) return this.planDispatch(label, code, bindings, [x, y, z]);
    const { pipeline, id, decls, invocations } = this.pipeline(code, label);
    const uni = params.length ? this.uniform(params) : null;
    // Params go to the one uniform the bindings do not name (`p` by convention).
    const views: { binding: number; view: BufferView }[] = [];
    let paramsBound = false;
    for (const d of decls) {
      const v = bindings[d.name];
      if (v) {
        if (!d.uniform && v.byteLength > this.maxBindingBytes) {
          throw new GPUFailure(
            `${label}: binding "${d.name}" is ${v.byteLength} bytes, over the ${this.maxBindingBytes}-byte binding cap`,
          );
        }
        views.push({ binding: d.binding, view: v });
      } else if (d.uniform && uni && !paramsBound) {
        views.push({ binding: d.binding, view: { buffer: uni, offset: 0, byteLength: uni.size } });
        paramsBound = true;
      } else {
        throw new Error(`${label}: no buffer given for binding "${d.name}"`);
      }
    }
    for (const name of Object.keys(bindings)) {
      if (!decls.some((d) => d.name === name)) {
        throw new Error(`${label}: the kernel has no binding "${name}"`);
      }
    }
    if (uni && !paramsBound) throw new Error(`${label}: params given but the kernel has no uniform for them`);
    const key = id + "|" +
      views.map((e) => `${bufferId(e.view.buffer)}@${e.view.offset}+${e.view.byteLength}`).join(",");
    let bg = this.bindGroups.get(key);
    if (!bg) {
      const entries: GPUBindGroupEntry[] = views.map(({ binding, view: v }) => ({
        binding,
        resource: { buffer: v.buffer, offset: v.offset, size: Math.ceil(v.byteLength / 4) * 4 },
      }));
      bg = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries, label });
      this.stats.bindGroupsCreated++;
      this.bindGroups.set(key, bg);
    }
    const op = {
      label,
      pipeline,
      bindGroup: bg,
      workgroups: [x, y, z] as [number, number, number],
      invocations,
    };
    this.recording?.push(op);
    if (this.capture) this.captureDispatch(op, code, decls, views, uni, params);
    else this.encodeDispatch(op);
  }

  /**
   * A dispatch in "plan" mode: the bindings are checked against the kernel's declarations and the
   * launch recorded; nothing is compiled, bound or encoded.
   */
  private planDispatch(
    label: string,
    code: string,
    bindings: Bindings,
    workgroups: [number, number, number],
  ) {
    const { decls, invocations } = parseKernel(code, label);
    const max = this.device.limits.maxComputeInvocationsPerWorkgroup;
    if (invocations > max) {
      throw new GPUFailure(`${label}: ${invocations} invocations per workgroup, this adapter allows ${max}`);
    }
    for (const d of decls) {
      if (!d.uniform && !bindings[d.name]) {
        throw new Error(`${label}: no buffer given for binding "${d.name}"`);
      }
    }
    for (const name of Object.keys(bindings)) {
      if (!decls.some((d) => d.name === name)) {
        throw new Error(`${label}: the kernel has no binding "${name}"`);
      }
    }
    this.stats.dispatches++;
    this.capture!.pending.push({ d: { label, code, family: this.kernels, workgroups }, bufs: [] });
  }

  /**
   * Encode `op` between copies of every binding it uses into mappable buffers, the first time this
   * code runs with these parameters and grid (see `startCapture`).
   */
  private captureDispatch(
    op: Extract<RecordedOp, { label: string }>,
    code: string,
    decls: BindingDecl[],
    views: { binding: number; view: BufferView }[],
    uni: GPUBuffer | null,
    params: readonly Param[],
  ): void {
    const cap = this.capture!;
    const words = uni ? packParams(params) : null;
    const key = `${code}|${words?.join(",")}|${op.workgroups}|${
      views.map((v) => v.view.byteLength).join(",")
    }`;
    if (cap.seen.has(key)) return this.encodeDispatch(op);
    cap.seen.add(key);
    const snap = (): Snapshot[] =>
      views.map(({ view }) => {
        if (view.buffer === uni) return words!;
        const size = Math.ceil(view.byteLength / 4) * 4;
        let arena = cap.arenas.at(-1);
        if (!arena || arena.used + size > arena.buffer.size) {
          const bytes = Math.max(CAPTURE_ARENA, size);
          arena = {
            buffer: this.device.createBuffer({ size: bytes, usage: 0x01 | 0x08, label: "capture" }),
            used: 0,
          };
          cap.arenas.push(arena); // MAP_READ | COPY_DST
        }
        this.endPass();
        if (!this.encoder) this.encoder = this.device.createCommandEncoder();
        this.encoder.copyBufferToBuffer(view.buffer, view.offset, arena.buffer, arena.used, size);
        const at = { arena: cap.arenas.length - 1, offset: arena.used, byteLength: view.byteLength };
        arena.used += size;
        return at;
      });
    const before = snap();
    this.encodeDispatch(op);
    const after = snap();
    cap.pending.push({
      d: { label: op.label, code, family: this.kernels, workgroups: op.workgroups },
      bufs: views.map(({ binding }, i) => [decls.find((x) => x.binding === binding)!, before[i], after[i]]),
    });
  }

  /** Encode one resolved dispatch into the current compute pass (and count and trace it). */
  private encodeDispatch(op: Extract<RecordedOp, { label: string }>): void {
    const [x, y, z] = op.workgroups;
    const pass = this.beginPass(op.label);
    pass.setPipeline(op.pipeline);
    pass.setBindGroup(0, op.bindGroup);
    pass.dispatchWorkgroups(x, y, z);
    this.stats.dispatches++;
    this.trace?.push({
      name: op.label,
      family: this.kernels,
      workgroupSize: op.invocations,
      workgroups: x * y * z,
    });
    if (this.profiler) this.endPass();
  }

  /**
   * Run `fn` (which dispatches and copies as usual) and also keep what it encoded, so that `replay`
   * can encode the same commands again without redoing `fn`'s host work (planning, argument checks,
   * cache lookups). A replay is only right while what `fn` decided stays true: the same buffers,
   * shapes and parameters (the decoder keys its recordings by pass and position). Buffer writes
   * (`write`) are not part of a recording; no submit, read or nested record may happen inside `fn`.
   */
  record(fn: () => void): Recording {
    if (this.recording) throw new Error("record: already recording");
    const ops: RecordedOp[] = [];
    this.recording = ops;
    try {
      fn();
    } finally {
      this.recording = null;
    }
    return { ops };
  }

  /** Encode a Recording's commands again (see `record`). */
  replay(r: Recording): void {
    if (this.capture?.plan) return;
    for (const op of r.ops) {
      if ("label" in op) this.encodeDispatch(op);
      else this.copy(op.src, op.dst, op.byteLength);
    }
  }

  /** Start recording every dispatch's name, family and grid (the bench's per-kernel list). */
  startTrace(): void {
    this.trace = [];
  }

  /** Stop recording and return what was dispatched since `startTrace`. */
  stopTrace(): TracedKernel[] {
    const t = this.trace ?? [];
    this.trace = null;
    return t;
  }

  /**
   * Start capturing dispatches: from now on, the first dispatch of each (code, parameters, grid,
   * binding sizes) also copies every buffer it binds, just before it runs and just after, for
   * `stopCapture` to return. For tests at small sizes (tests/race/): the copies cost memory and time.
   * In "plan" mode nothing runs: dispatches are recorded (without bytes) and neither compiled nor
   * encoded, and buffers created meanwhile are virtual (a size, no memory; writes to them are dropped,
   * reads give zeros), so a step at any size can be planned without the memory or time it would take.
   * Such buffers are for planning only: do not use them after `stopCapture`.
   */
  startCapture(mode: "run" | "plan" = "run"): void {
    this.capture = { plan: mode === "plan", seen: new Set(), arenas: [], pending: [] };
  }

  /** Stop capturing; submit, and return what was captured since `startCapture`, in dispatch order. */
  async stopCapture(): Promise<CapturedDispatch[]> {
    const cap = this.capture;
    this.capture = null;
    if (!cap) return [];
    await this.sync();
    const mapped = await Promise.all(cap.arenas.map(async ({ buffer }) => {
      await buffer.mapAsync(1 /* GPUMapMode.READ */);
      const bytes = buffer.getMappedRange().slice(0);
      buffer.destroy();
      return bytes;
    }));
    const bytes = (s: Snapshot): ArrayBuffer =>
      s instanceof Uint32Array
        ? s.buffer.slice(0) as ArrayBuffer
        : mapped[s.arena].slice(s.offset, s.offset + s.byteLength);
    return cap.pending.map(({ d, bufs }) => ({
      ...d,
      bindings: bufs.map(([decl, before, after]) => ({ decl, before: bytes(before), after: bytes(after) })),
    }));
  }

  /** The compute pass to record into (one per dispatch while profiling). */
  private beginPass(label: string): GPUComputePassEncoder {
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    if (this.profiler) {
      const p = this.profiler;
      const i = p.names.length;
      if (i >= p.capacity) throw new GPUFailure("profiler: too many dispatches in one submit");
      p.names.push(label);
      this.pass = this.encoder.beginComputePass({
        timestampWrites: {
          querySet: p.set,
          beginningOfPassWriteIndex: 2 * i,
          endOfPassWriteIndex: 2 * i + 1,
        },
      });
    } else if (!this.pass) {
      this.pass = this.encoder.beginComputePass();
    }
    return this.pass;
  }

  /** End the open compute pass, if any. */
  private endPass(): void {
    this.pass?.end();
    this.pass = null;
  }

  /** Record a buffer-to-buffer copy (ends the current compute pass). */
  copy(src: BufferView, dst: BufferView, byteLength = src.byteLength): void {
    if (this.capture?.plan) return;
    this.recording?.push({ src, dst, byteLength });
    this.endPass();
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    this.encoder.copyBufferToBuffer(src.buffer, src.offset, dst.buffer, dst.offset, byteLength);
  }

  /** Submit everything recorded since the last submit as one command buffer. */
  submit(): void {
    if (this.recording) throw new Error("submit: inside record()");
    this.throwIfFailed();
    this.endPass();
    if (!this.encoder) return;
    const enc = this.encoder;
    this.encoder = null;
    this.device.queue.submit([enc.finish()]);
    this.stats.submits++;
  }

  /** Wait for all submitted work; throws if the device reported any error on the way. */
  async sync(): Promise<void> {
    this.submit();
    await this.device.queue.onSubmittedWorkDone();
    this.throwIfFailed();
  }

  /** Throw a GPUFailure if the device was lost or reported an error. */
  throwIfFailed(): void {
    if (this.lostReason) throw new GPUFailure(`the GPU device was lost: ${this.lostReason}`);
    if (this.errors.length) {
      const first = this.errors[0];
      this.errors.length = 0;
      throw new GPUFailure(`WebGPU error: ${first}`);
    }
  }

  /** Submit pending work and read a view back as float32 (or the raw bytes' u32/i32 reinterpretation). */
  async readBytes(view: BufferView): Promise<ArrayBuffer> {
    if (virtualBuffers.has(view.buffer)) return new ArrayBuffer(view.byteLength);
    const size = Math.ceil(view.byteLength / 4) * 4;
    const cap = 1 << Math.max(8, Math.ceil(Math.log2(size)));
    let st = this.staging.get(cap);
    if (!st) {
      st = this.createBuffer(cap, 0x01 | 0x08, "staging"); // MAP_READ | COPY_DST
      this.staging.set(cap, st);
    }
    this.copy(view, { buffer: st, offset: 0, byteLength: size }, size);
    this.submit();
    this.stats.readbacks++;
    await st.mapAsync(1, /* GPUMapMode.READ */ 0, size);
    const out = st.getMappedRange(0, size).slice(0);
    st.unmap();
    this.throwIfFailed();
    return out.slice(0, view.byteLength);
  }

  /** Submit pending work and read a view back as float32. */
  async read(view: BufferView): Promise<Float32Array> {
    return new Float32Array(await this.readBytes(view));
  }

  // ---------------------------------------------------------------- profiling

  /** Start timing every dispatch individually (one pass each). Needs the timestamp-query feature. */
  startProfile(capacity = 2048): void {
    if (!this.hasTimestamps) throw new GPUFailure("this adapter has no timestamp-query");
    this.endPass();
    const set = this.device.createQuerySet({ type: "timestamp", count: 2 * capacity });
    const resolve = this.createBuffer(16 * capacity, 0x200 | 0x04, "timestamps"); // QUERY_RESOLVE | COPY_SRC
    this.profiler = { set, resolve, names: [], capacity };
  }

  /** Stop profiling and return each recorded dispatch's GPU time. */
  async stopProfile(): Promise<TimedKernel[]> {
    const p = this.profiler;
    if (!p) return [];
    this.endPass();
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    const n = p.names.length;
    if (n) this.encoder.resolveQuerySet(p.set, 0, 2 * n, p.resolve, 0);
    this.profiler = null;
    const out: TimedKernel[] = [];
    if (n) {
      const bytes = await this.readBytes({ buffer: p.resolve, offset: 0, byteLength: 16 * n });
      const ts = new BigUint64Array(bytes);
      for (let i = 0; i < n; i++) out.push({ name: p.names[i], ms: Number(ts[2 * i + 1] - ts[2 * i]) / 1e6 });
    }
    p.set.destroy();
    p.resolve.destroy();
    return out;
  }

  /** Destroy the device (every buffer with it). */
  destroy(): void {
    this.device.destroy();
  }
}

let shared: Promise<Runtime> | null = null;
/** The process-wide runtime (tests and CLIs share one device). */
export function getRuntime(): Promise<Runtime> {
  if (!shared) shared = Runtime.create({ timestamps: true });
  return shared;
}

/** Workgroup count for n items at `size` per workgroup. */
export function groups(n: number, size: number): number {
  return Math.ceil(n / size);
}

/**
 * The one 1-D launch grid: `count` items at `wg` invocations per workgroup, as [x, y] workgroups
 * with x within the per-dimension limit. In WGSL the item is `gid.x + gid.y * stride`
 * (stride = x · wg, also `nwg.x * wg`); invocations past `count` must return.
 */
export function grid1d(
  rt: Runtime,
  count: number,
  wg: number,
): { workgroups: [number, number]; stride: number } {
  const total = groups(count, wg);
  if (total === 0) return { workgroups: [0, 1], stride: wg };
  const max = rt.device.limits.maxComputeWorkgroupsPerDimension;
  const y = Math.ceil(total / max);
  const x = Math.ceil(total / y);
  return { workgroups: [x, y], stride: x * wg };
}

/**
 * The adapter limits the kernels need, at the adapter's own maximum (WebGPU's defaults are far
 * lower than most adapters allow: 128 MiB storage bindings, 16 KiB workgroup memory, 256
 * invocations). Models check their memory against the device's granted limits before allocating.
 */
function requiredLimits(a: GPUSupportedLimits): Record<string, number> {
  return {
    maxStorageBuffersPerShaderStage: Math.min(10, a.maxStorageBuffersPerShaderStage),
    maxStorageBufferBindingSize: a.maxStorageBufferBindingSize,
    maxUniformBufferBindingSize: a.maxUniformBufferBindingSize,
    maxBufferSize: a.maxBufferSize,
    maxComputeWorkgroupStorageSize: a.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: a.maxComputeInvocationsPerWorkgroup,
    maxComputeWorkgroupSizeX: a.maxComputeWorkgroupSizeX,
    maxComputeWorkgroupSizeY: a.maxComputeWorkgroupSizeY,
    maxComputeWorkgroupsPerDimension: a.maxComputeWorkgroupsPerDimension,
  };
}
