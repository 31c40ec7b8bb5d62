// The gpu family's matmul autotuner. A product's shape class (ops/matmul/variants.ts shapeClass) met
// for the first time on an adapter runs today's kernel and is queued; `tunePending()` (the CLIs call
// it after a step is submitted) then times every candidate variant the adapter can run on that
// product: a warm-up call each (compiles), then a few calls each, interleaved, with timestamp
// queries (one pass per dispatch) or, without `timestamp-query`, whole submits timed on the host; the
// median wins. Later products of the class run the winner. The choices are kept per adapter in a
// TuneStore (a file under the user's cache directory in Deno, lib/tune_cache.ts; IndexedDB in the
// page, web/tune_store.ts), so a run with the cache in place times nothing and is deterministic.
//
// Modes (--tune): "off" runs today's kernel everywhere (no tuner is installed); "on" uses the cache
// and tunes what it lacks; "force" ignores the cached choices and tunes every class again (and
// stores the new ones). Without --tune the CLIs tune the gpu family on a GPU and not on a CPU
// fallback adapter (lib/tune_cache.ts installTuner). Every variant sums each output in the same order
// except split-K, so which one wins changes results by float32 rounding at most.
//
// A class is timed on the first product met, with its own A, B and bias (read only) and scratch
// outputs; the decoder records its passes once and replays them, so in sampling the tuned variants
// serve the next run.
//
// Budget: `tunePending` stops timing new classes after `budgetMs` (default 4 s); the classes left
// over keep today's kernel for the run, are not stored, and are timed on a later run.

import type { MatmulProblem } from "../matmul.ts";
import type { Runtime } from "../runtime.ts";
import { Tensor } from "../tensor.ts";
import { matmulTiled } from "./gpu.ts";
import { candidates, DEFAULT_VARIANT, type MatmulVariant, shapeClass, variantByName } from "./variants.ts";

/** --tune: off (today's kernel), on (cached choices, tune the rest), force (tune every class again). */
export type TuneMode = "off" | "on" | "force";
/** The values of --tune. */
export const TUNE_MODES: readonly TuneMode[] = ["off", "on", "force"];

/** Where the tuner keeps its choices between runs. */
export interface TuneStore {
  /** Where (a path, "IndexedDB ..."), for messages. */
  readonly where: string;
  /** The stored text, or null when nothing is stored yet. */
  read(): Promise<string | null>;
  /** Replace the stored text (atomically); throws when it cannot. */
  write(text: string): Promise<void>;
}

/** One candidate's timing: GFLOP/s and the median time of one call. */
export interface TunedCandidate {
  /** The variant's name. */
  variant: string;
  /** Median milliseconds per call. */
  ms: number;
  /** 2·M·N·K·batch / time. */
  gflops: number;
}

/** One shape class's timings (the bench's `tuning` entries). */
export interface TuneResult {
  /** The class and the product timed: "TN 256x64x4096 rowsums (256x64x4096)". */
  shape: string;
  /** Every candidate timed, in list order. */
  candidates: TunedCandidate[];
  /** The fastest. */
  winner: string;
}

/** The format name in the stored text. */
export const TUNE_FORMAT = "tinygpt-webgpu matmul tuning";
/**
 * Bumped whenever the variants' kernels change: stored choices of another version are dropped (and
 * re-tuned), since their timings no longer hold.
 */
export const TUNE_VERSION = 1;

/** The stored text: per adapter key, the kernels' version and the chosen variant per shape class. */
interface StoredTuning {
  format: string;
  adapters: Record<string, { version: number; choices: Record<string, string> }>;
}

/** The adapter's identity for the cache: vendor, architecture, device, description, subgroup sizes. */
export function adapterKey(info: GPUAdapterInfo): string {
  const i = info as GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number };
  return [
    i.vendor,
    i.architecture,
    i.device,
    i.description,
    `subgroups ${i.subgroupMinSize ?? "?"}..${i.subgroupMaxSize ?? "?"}`,
    i.isFallbackAdapter ? "fallback" : "",
  ].join(" | ");
}

/** Parse stored text: the tuning, or why it is not one of ours (corrupt or foreign). */
export function parseStored(text: string): StoredTuning | string {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch {
    return "not JSON";
  }
  const o = j as Partial<StoredTuning> | null;
  if (!o || typeof o !== "object" || o.format !== TUNE_FORMAT) return `not a "${TUNE_FORMAT}" file`;
  if (!o.adapters || typeof o.adapters !== "object") return "no adapters";
  for (const a of Object.values(o.adapters)) {
    if (!a || typeof a.version !== "number" || !a.choices || typeof a.choices !== "object") {
      return "malformed adapter entry";
    }
    if (!Object.values(a.choices).every((v) => typeof v === "string")) return "malformed choice";
  }
  return o as StoredTuning;
}

const tuners = new WeakMap<Runtime, MatmulTuner>();

/** Install (or with null remove) the tuner the gpu family's matmul consults on `rt`. */
export function setMatmulTuner(rt: Runtime, tuner: MatmulTuner | null): void {
  if (tuner) tuners.set(rt, tuner);
  else tuners.delete(rt);
}

/** The tuner installed on `rt`, if any. */
export function matmulTuner(rt: Runtime): MatmulTuner | undefined {
  return tuners.get(rt);
}

/** The variant the gpu family runs `p` with on `rt`: the tuner's choice, else today's kernel. */
export function chooseVariant(rt: Runtime, p: MatmulProblem): MatmulVariant {
  return tuners.get(rt)?.choose(p) ?? DEFAULT_VARIANT;
}

/** Options of `MatmulTuner.create`. */
export interface TunerOptions {
  /** "on" or "force" ("off" installs no tuner). */
  mode: Exclude<TuneMode, "off">;
  /** Where choices persist; null: in memory only. */
  store?: TuneStore | null;
  /** One line per message (default console.warn); each distinct message is printed once. */
  log?: (line: string) => void;
  /** Stop timing new classes in one `tunePending` after this many ms (default 4000). */
  budgetMs?: number;
  /** Calls timed per candidate (default 5; the median counts). */
  reps?: number;
  /** Time only variants whose workgroup arrays hold at most this many vec4 (see `candidates`; GL). */
  maxArrayVec4?: number;
}

/** The autotuner of one runtime (see the header). */
export class MatmulTuner {
  /** Every class this tuner timed (in order), with all its candidates. */
  readonly results: TuneResult[] = [];
  private readonly choices = new Map<string, MatmulVariant>();
  private readonly pending = new Map<string, MatmulProblem>();
  private readonly said = new Set<string>();
  private stored: StoredTuning | null = null;
  /** The store may be written (false: not ours, unreadable, or a write failed). */
  private writable = false;

  private constructor(
    readonly rt: Runtime,
    readonly mode: Exclude<TuneMode, "off">,
    readonly store: TuneStore | null,
    private readonly logLine: (line: string) => void,
    readonly budgetMs: number,
    readonly reps: number,
    readonly maxArrayVec4: number,
  ) {}

  /** A tuner for `rt` with the choices `store` holds for its adapter (none with mode "force"). */
  static async create(rt: Runtime, o: TunerOptions): Promise<MatmulTuner> {
    const t = new MatmulTuner(
      rt,
      o.mode,
      o.store ?? null,
      o.log ?? ((l) => console.warn(l)),
      o.budgetMs ?? 4000,
      o.reps ?? 5,
      o.maxArrayVec4 ?? Infinity,
    );
    await t.load();
    return t;
  }

  /** The adapter's key in the store. */
  get adapter(): string {
    return adapterKey(this.rt.adapter.info);
  }

  /** Print `line` once per tuner. */
  say(line: string): void {
    if (this.said.has(line)) return;
    this.said.add(line);
    this.logLine(line);
  }

  /** Read the store: this adapter's choices (none with "force"), or one line saying why not. */
  private async load(): Promise<void> {
    if (!this.store) return;
    let text: string | null;
    try {
      text = await this.store.read();
    } catch (e) {
      this.say(`matmul tuning: cannot read ${this.store.where} (${msg(e)}); tuning in memory for this run`);
      return;
    }
    if (text === null) {
      this.stored = { format: TUNE_FORMAT, adapters: {} };
      this.writable = true;
      return;
    }
    const s = parseStored(text);
    if (typeof s === "string") {
      this.say(
        `warning: ignoring the matmul tuning cache ${this.store.where} (${s}); tuning in memory for this run ` +
          `(delete the file to let it be rewritten)`,
      );
      return;
    }
    this.stored = s;
    this.writable = true;
    const mine = s.adapters[this.adapter];
    if (this.mode === "force" || !mine || mine.version !== TUNE_VERSION) return;
    for (const [cls, name] of Object.entries(mine.choices)) {
      const v = variantByName(name);
      if (v) this.choices.set(cls, v);
    }
  }

  /** Shape classes with a choice (cached or tuned in this run). */
  get known(): number {
    return this.choices.size;
  }

  /** Classes met but not timed yet. */
  get hasPending(): boolean {
    return this.pending.size > 0;
  }

  /** The classes met but not timed yet, each with the first product met. */
  get queued(): ReadonlyMap<string, MatmulProblem> {
    return this.pending;
  }

  /** The variant for `p`: the class's choice, else today's kernel (and the class is queued). */
  choose(p: MatmulProblem): MatmulVariant {
    const cls = shapeClass(p);
    const v = this.choices.get(cls);
    if (v) return v;
    if (!this.pending.has(cls)) this.pending.set(cls, p);
    return DEFAULT_VARIANT;
  }

  /**
   * Time every queued class (see the header), keep and store the winners. Call it with nothing of the
   * step left unsubmitted (it submits and waits). Returns the classes timed.
   */
  async tunePending(): Promise<TuneResult[]> {
    if (!this.pending.size) return [];
    const t0 = performance.now();
    const done: TuneResult[] = [];
    let left = 0;
    for (const [cls, p] of [...this.pending]) {
      this.pending.delete(cls);
      if (performance.now() - t0 > this.budgetMs) {
        left++;
        this.choices.set(cls, DEFAULT_VARIANT);
        continue;
      }
      let r: TuneResult;
      try {
        r = await this.measure(p);
      } catch (e) {
        // A candidate the device rejected (or lost): today's kernel for this class, this run.
        this.choices.set(cls, DEFAULT_VARIANT);
        this.say(`matmul tuning: timing ${cls} failed (${msg(e)}); today's kernel runs it`);
        continue;
      }
      this.choices.set(cls, variantByName(r.winner)!);
      this.remember(cls, r.winner);
      done.push(r);
    }
    const s = ((performance.now() - t0) / 1000).toFixed(1);
    const how =
      (this.rt.hasTimestamps ? "timestamp queries" : "whole submits timed on the host (no timestamp-query)") +
      (this.maxArrayVec4 < Infinity
        ? `; variants with workgroup arrays of at most ${this.maxArrayVec4} vec4 only`
        : "");
    this.say(
      `matmul tuning: ${done.length} shape class${done.length === 1 ? "" : "es"} timed in ${s} s (${how})` +
        (left
          ? `; ${left} left on today's kernel for this run (over the ${this.budgetMs / 1000} s budget)`
          : ""),
    );
    await this.save();
    return done;
  }

  /** Note a winner in the stored form (written by `save`). */
  private remember(cls: string, winner: string): void {
    if (!this.stored) return;
    const key = this.adapter;
    const mine = this.stored.adapters[key];
    if (!mine || mine.version !== TUNE_VERSION) {
      this.stored.adapters[key] = { version: TUNE_VERSION, choices: {} };
    }
    this.stored.adapters[key].choices[cls] = winner;
  }

  /** Write the choices, merged into what the store holds now (another run may have added some). */
  private async save(): Promise<void> {
    const mine = this.stored?.adapters[this.adapter];
    if (!this.store || !this.writable || !mine) return;
    try {
      const now = await this.store.read();
      let base: StoredTuning = { format: TUNE_FORMAT, adapters: {} };
      if (now !== null) {
        const cur = parseStored(now);
        if (typeof cur === "string") throw new Error(`it is no longer a tuning cache: ${cur}`);
        base = cur;
      }
      const theirs = base.adapters[this.adapter];
      base.adapters[this.adapter] = {
        version: TUNE_VERSION,
        choices: { ...(theirs?.version === TUNE_VERSION ? theirs.choices : {}), ...mine.choices },
      };
      await this.store.write(JSON.stringify(base, null, 1) + "\n");
      this.stored = base;
    } catch (e) {
      this.writable = false;
      this.say(
        `matmul tuning: cannot write ${this.store.where} (${
          msg(e)
        }); the choices are kept in memory for this run`,
      );
    }
  }

  /**
   * Time `p`'s candidates (default: every variant the adapter can run on it, ops/matmul/variants.ts
   * candidates) into scratch outputs; A, B and the bias are only read.
   */
  async measure(
    p: MatmulProblem,
    cands: readonly MatmulVariant[] = candidates(p, this.rt.device.limits, this.maxArrayVec4),
  ): Promise<TuneResult> {
    return await timeCandidates(this.rt, p, cands, this.reps);
  }
}

const msg = (e: unknown) => (e instanceof Error ? e.message : String(e)).split("\n")[0];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Time each of `cands` on `p` (scratch C and row sums), `reps` calls each, interleaved: medians. */
export async function timeCandidates(
  rt: Runtime,
  p: MatmulProblem,
  cands: readonly MatmulVariant[],
  reps: number,
): Promise<TuneResult> {
  const C = Tensor.empty(rt, [p.batch * p.M * p.N]);
  const rs = p.rowSums ? Tensor.empty(rt, [p.M]) : null;
  const q: MatmulProblem = { ...p, C, rowSums: rs };
  const times = cands.map(() => [] as number[]);
  try {
    await rt.sync();
    for (const v of cands) matmulTiled(rt, q, v); // compiles every candidate
    await rt.sync();
    if (rt.hasTimestamps) {
      // One pass per dispatch; a split-K call is two dispatches, summed.
      const owner: number[] = [];
      rt.startProfile(Math.max(16, 2 * cands.length * reps));
      for (let r = 0; r < reps; r++) {
        cands.forEach((v, i) => {
          const d0 = rt.stats.dispatches;
          matmulTiled(rt, q, v);
          for (let d = d0; d < rt.stats.dispatches; d++) owner.push(i);
        });
      }
      const k = await rt.stopProfile();
      let at = 0;
      for (let r = 0; r < reps; r++) {
        cands.forEach((_, i) => {
          let ms = 0;
          while (at < owner.length && owner[at] === i) ms += k[at++].ms;
          times[i].push(ms);
        });
      }
    } else {
      // Whole submits, 4 calls each, timed on the host.
      for (let r = 0; r < reps; r++) {
        for (const [i, v] of cands.entries()) {
          const t0 = performance.now();
          for (let n = 0; n < 4; n++) matmulTiled(rt, q, v);
          await rt.sync();
          times[i].push((performance.now() - t0) / 4);
        }
      }
    }
  } finally {
    await rt.sync().catch(() => {});
    C.buffer.destroy();
    rs?.buffer.destroy();
  }
  const flops = 2 * p.M * p.N * p.K * p.batch;
  const out = cands.map((v, i) => {
    const ms = median(times[i]);
    return { variant: v.name, ms, gflops: flops / Math.max(ms, 1e-6) / 1e6 };
  });
  let best = 0;
  out.forEach((c, i) => (c.ms < out[best].ms ? (best = i) : 0));
  return {
    shape: `${shapeClass(p)} (${p.batch > 1 ? `${p.batch}x` : ""}${p.M}x${p.N}x${p.K})`,
    candidates: out,
    winner: out[best]?.variant ?? DEFAULT_VARIANT.name,
  };
}
