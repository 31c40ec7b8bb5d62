// A WGSL data-race detector for the kernels the runtime dispatches, built on wgsl_reflect's WGSL
// interpreter (npm:wgsl_reflect: its WgslDebug stepper and its lockstep WorkgroupScheduler, the engine
// behind its `detectRaces`). It executes a captured dispatch (ops/runtime.ts `startCapture`: the
// kernel, its grid, and the bytes of every binding before and after it ran on the GPU) on the CPU,
// one workgroup at a time, every invocation of the workgroup interleaved a statement at a time and
// parked at each barrier, and records every access to storage and workgroup memory.
//
// What it adds on top of the library, each tested in detector.test.ts:
// - Barrier semantics. `detectRaces` ends the current phase for all memory at every barrier. Here a
//   `workgroupBarrier()` orders workgroup memory only and a `storageBarrier()` storage memory only, as
//   the WGSL memory model says: an access to workgroup memory before a storageBarrier and a conflicting
//   one after it still race, and likewise for storage memory across a workgroupBarrier.
// - Vector components. A store to one component of a vector (`v[i] = x`, `v.x = x`) is recorded as a
//   store to the whole vector: WGSL allows it to access the whole vector, and HLSL lowers it to a
//   load, insert and store (gpuweb#2112), so two invocations storing different components of one
//   vec4 race. A load of one component is recorded as that component only. The library records both
//   at whole-vector granularity and cannot execute a component store into an array element
//   (`a[i][j] = x`); here it is executed.
// - `var<private>` is per invocation (the library shares one copy between all invocations), and
//   `var<workgroup>` memory starts zeroed in every workgroup (the library keeps it across workgroups).
// - Races between workgroups: a storage word written by one workgroup and read or written by another
//   (among the workgroups executed) is a race too; WebGPU orders nothing between the workgroups of
//   one dispatch.
// - Out-of-bounds accesses are findings (a kernel must not rely on robust buffer access, which
//   differs between backends), not silent.
// - Faithfulness: every storage word the interpreter wrote must equal what the GPU wrote there (f32
//   within a small relative error). A kernel the interpreter executes wrongly (so its indices and
//   branches may differ from the GPU's) is reported, not trusted.
// - One pass over the accesses (a per-word table per phase) instead of comparing all pairs.

// @ts-types="wgsl_reflect/types"
import {
  ArrayIndex,
  Assign,
  BinaryOperator,
  CallExpr,
  Const,
  ConstExpr,
  For,
  Increment,
  LiteralExpr,
  ScalarData,
  StringExpr,
  TokenTypes,
  TypedData,
  UnaryOperator,
  Var,
  VariableExpr,
  VectorData,
  WgslDebug,
  WgslParser,
  WorkgroupScheduler,
} from "wgsl_reflect";
import type { CapturedDispatch } from "../../ops/runtime.ts";

/** What the check found wrong with one dispatch. */
export interface Finding {
  /** race: conflicting accesses of two invocations in one phase; oob: an access outside its buffer;
   * divergence: a barrier not reached by every invocation; mismatch: the interpreter disagreed with
   * the GPU; error: the interpreter failed. */
  kind: "race" | "oob" | "divergence" | "mismatch" | "error";
  /** The variable (binding or workgroup array) it concerns, when there is one. */
  variable?: string;
  /** One line: what, where (WGSL lines), which invocations. */
  message: string;
}

/** The result of checking one dispatch. */
export interface CheckResult {
  /** Distinct findings (one per kind, variable and pair of WGSL lines). */
  findings: Finding[];
  /** The workgroups executed. */
  workgroups: [number, number, number][];
  /** Interpreter steps taken (its cost). */
  steps: number;
  /** The storage bindings' bytes after the interpreter ran (by binding name). */
  memory: Map<string, ArrayBuffer>;
}

type Space = "storage" | "workgroup" | "private" | "uniform";

// Per-word state of one phase: the first two distinct invocations that wrote it and that read it,
// with the WGSL line of each access (-1: none).
interface Cell {
  w: [number, number, number, number];
  r: [number, number, number, number];
}
/** Note invocation `inv` (at `line`) in a [first, its line, second, its line] slot pair. */
function note(s: [number, number, number, number], inv: number, line: number): void {
  if (s[0] === -1) [s[0], s[1]] = [inv, line];
  else if (s[0] !== inv && s[2] === -1) [s[2], s[3]] = [inv, line];
}
/** [invocation, line] of an access in `s` by an invocation other than `inv`, or null. */
function other(s: [number, number, number, number], inv: number): [number, number] | null {
  if (s[0] !== -1 && s[0] !== inv) return [s[0], s[1]];
  if (s[2] !== -1 && s[2] !== inv) return [s[2], s[3]];
  return null;
}

/**
 * Records accesses for one workgroup and reports conflicts. A phase ends per memory space: the
 * scheduler tells it which barrier it is releasing (`barrier`), and the end of the workgroup ends all.
 */
class Tracker {
  currentLine = -1;
  /** The invocation being stepped (set by the library's scheduler before each step). */
  get currentInvocation(): number {
    return lane;
  }
  set currentInvocation(i: number) {
    lane = i;
  }
  /** The barrier builtin being released (set by BarrierScheduler), null at the end of the workgroup. */
  barrier: string | null = null;
  private phase: Record<"storage" | "workgroup", Map<string, Map<number, Cell>>> = {
    storage: new Map(),
    workgroup: new Map(),
  };

  constructor(
    private readonly report: (f: Finding, key: string) => void,
    private readonly onStorage: (
      variable: string,
      word: number,
      kind: "read" | "write",
      line: number,
    ) => void,
  ) {}

  record(space: Space, variable: string, offset: number, size: number, kind: "read" | "write"): void {
    if (space === "private" || space === "uniform") return; // per invocation; read-only
    if (space === "storage") {
      for (let w = offset >> 2; w < (offset + size + 3) >> 2; w++) {
        this.onStorage(variable, w, kind, this.currentLine);
      }
    }
    let words = this.phase[space].get(variable);
    if (!words) this.phase[space].set(variable, words = new Map());
    const inv = this.currentInvocation, line = this.currentLine;
    for (let w = offset >> 2; w < (offset + size + 3) >> 2; w++) {
      let c = words.get(w);
      if (!c) words.set(w, c = { w: [-1, -1, -1, -1], r: [-1, -1, -1, -1] });
      const ow = other(c.w, inv);
      const or = kind === "write" ? other(c.r, inv) : null;
      if (ow) this.race(space, variable, w, "write", ow, kind, [inv, line]);
      else if (or) this.race(space, variable, w, "read", or, kind, [inv, line]);
      note(kind === "write" ? c.w : c.r, inv, line);
    }
  }

  private race(
    space: Space,
    variable: string,
    word: number,
    firstKind: string,
    [firstInv, firstLine]: [number, number],
    kind: string,
    [inv, line]: [number, number],
  ): void {
    const lines = [firstLine, line].sort((a, b) => a - b).join("/");
    this.report({
      kind: "race",
      variable,
      message:
        `${space} '${variable}' word ${word}: ${firstKind} by invocation ${firstInv} at line ${firstLine} ` +
        `and ${kind} by invocation ${inv} at line ${line}, with no ${
          space === "workgroup" ? "workgroupBarrier" : "storageBarrier"
        } between them`,
    }, `race/${variable}/${lines}`);
  }

  /** End the phase of the memory the barrier being released orders (all memory at the end). */
  endPhase(): void {
    const b = this.barrier;
    this.barrier = null;
    if (b === null || b === "workgroupBarrier") this.phase.workgroup.clear();
    if (b === null || b === "storageBarrier") this.phase.storage.clear();
  }
}

// deno-lint-ignore no-explicit-any
type Any = any;

/** The invocation the scheduler is stepping (see perLaneCallResults). */
let lane = 0;

/**
 * The stepper runs a call inside an expression as a frame of its own and leaves its result on the
 * call's AST node (CallExpr.cachedReturnValue) for the enclosing statement to read. With several
 * invocations interleaved, one invocation's result would be read by another: keep one per invocation.
 */
function perLaneCallResults(ast: unknown): void {
  const seen = new Set<unknown>();
  const walk = (n: unknown): void => {
    if (!n || typeof n !== "object" || seen.has(n)) return;
    seen.add(n);
    if (n instanceof CallExpr) {
      const byLane = new Map<number, unknown>();
      Object.defineProperty(n, "cachedReturnValue", {
        get: () => byLane.get(lane) ?? null,
        set: (v: unknown) => void byLane.set(lane, v),
        configurable: true,
      });
    }
    for (const v of Object.values(n)) {
      if (Array.isArray(v)) v.forEach(walk);
      else walk(v);
    }
  };
  walk(ast);
}

/** The scalar element type name under `t` (f32 for array<vec4<f32>>), or null. */
function scalarOf(t: Any): string | null {
  while (t) {
    if (["f32", "u32", "i32", "bool", "f16"].includes(t.name)) return t.name;
    if (t.name === "atomic") return t.format?.name ?? null;
    t = t.format ?? null;
  }
  return null;
}
const VECTORS = new Set(["vec2", "vec3", "vec4"]);
const SCALARS = new Set(["f32", "u32", "i32", "bool"]);
const COMPONENT: Record<string, number> = { x: 0, y: 1, z: 2, w: 3, r: 0, g: 1, b: 2, a: 3 };

/**
 * A variable's memory, with every access reported to the Tracker, component accesses resolved
 * exactly, and component stores into array elements executed (see the file comment).
 */
class Tracked extends TypedData {
  constructor(
    data: ArrayBuffer,
    typeInfo: Any,
    private readonly tracker: Tracker,
    private readonly variable: string,
    private readonly space: Space,
    private readonly oob: (variable: string, line: number) => void,
  ) {
    super(data, typeInfo, 0, null);
  }

  /**
   * Resolve an access path: its byte range, its leaf type, and, when it ends in one component of a
   * vector, that vector's range. `rest` is the part of the path this did not resolve (a swizzle).
   */
  private resolve(postfix: Any, exec: Any, context: Any) {
    let offset = 0, type: Any = this.typeInfo, p = postfix;
    let vector: { offset: number; size: number } | null = null;
    while (p) {
      if (p instanceof ArrayIndex && type?.isArray) {
        offset += this.index(p.index, exec, context) * type.stride;
        type = type.format;
      } else if (p instanceof ArrayIndex && VECTORS.has(type?.name)) {
        vector = { offset, size: type.size };
        offset += this.index(p.index, exec, context) * 4;
        type = type.format;
      } else if (p instanceof StringExpr && type?.isStruct) {
        const m = type.members.find((x: Any) => x.name === p.value);
        if (!m) break;
        offset += m.offset;
        type = m.type;
      } else if (p instanceof StringExpr && VECTORS.has(type?.name) && p.value in COMPONENT) {
        vector = { offset, size: type.size };
        offset += COMPONENT[p.value] * 4;
        type = type.format;
      } else break;
      p = p.postfix;
    }
    const size = type?.size || 4;
    return { offset, size, type, vector, rest: p };
  }

  private index(e: Any, exec: Any, context: Any): number {
    const v = exec.evalExpression(e, context);
    const n = v instanceof ScalarData ? v.value : Number(v?.data?.[0]);
    if (!Number.isInteger(n)) throw new Error(`non-integer index ${n} into '${this.variable}'`);
    return n;
  }

  private check(offset: number, size: number): boolean {
    if (offset >= 0 && offset + size <= this.buffer.byteLength) return true;
    this.oob(this.variable, this.tracker.currentLine);
    return false;
  }

  /** The scalar at `offset` of type `t`. */
  private scalar(offset: number, t: Any): Any {
    const name = scalarOf(t);
    const Arr = name === "f32" ? Float32Array : name === "i32" ? Int32Array : Uint32Array;
    return new ScalarData(new Arr(this.buffer, offset, 1)[0], t);
  }

  override setDataValue(exec: Any, value: Any, postfix: Any, context: Any): void {
    const r = this.resolve(postfix, exec, context);
    const range = r.vector ?? r; // a component store may access its whole vector
    if (!this.check(range.offset, range.size)) return;
    this.tracker.record(this.space, this.variable, range.offset, range.size, "write");
    if (r.vector && !r.rest && value instanceof ScalarData) {
      const name = scalarOf(r.type);
      const Arr = name === "f32" ? Float32Array : name === "i32" ? Int32Array : Uint32Array;
      new Arr(this.buffer, r.offset, 1)[0] = value.value;
      return;
    }
    super.setDataValue(exec, value, postfix, context);
  }

  override getSubData(exec: Any, postfix: Any, context: Any): Any {
    const r = this.resolve(postfix, exec, context);
    if (!this.check(r.offset, r.size)) return new ScalarData(0, exec.getTypeInfo("f32"));
    this.tracker.record(this.space, this.variable, r.offset, r.size, "read");
    if (!r.rest && SCALARS.has(r.type?.name)) return this.scalar(r.offset, r.type);
    if (!r.rest && VECTORS.has(r.type?.name)) {
      const n = Number(r.type.name[3]);
      const name = scalarOf(r.type);
      const Arr = name === "f32" ? Float32Array : name === "i32" ? Int32Array : Uint32Array;
      return new VectorData(Array.from(new Arr(this.buffer, r.offset, n)), r.type);
    }
    return super.getSubData(exec, postfix, context);
  }
}

/** The library's lockstep scheduler, telling the Tracker which barrier each sync point releases. */
class BarrierScheduler extends (WorkgroupScheduler as Any) {
  constructor(debug: Any, private readonly tracker: Tracker, invocations: Any[]) {
    super(debug, tracker, invocations);
  }
  _syncBarrier(parked: Any[]): void {
    this.tracker.barrier = parked[0].barrierNode.name;
    super._syncBarrier(parked);
  }
}

/** A minimal ExecStack (the library does not export its class): the frames of one invocation. */
class Stack {
  states: Any[] = [];
  get isEmpty(): boolean {
    return this.states.length === 0;
  }
  get last(): Any {
    return this.states[this.states.length - 1] ?? null;
  }
  pop(): void {
    this.states.pop();
  }
}

/**
 * The parser keeps only the first two statements of a `case` body (its recursion returns
 * `[...first, rest[0]]`): parse them all.
 */
(WgslParser.prototype as Any)._case_body = function (this: Any) {
  const body: unknown[] = [];
  for (;;) {
    if (this._match(TokenTypes.keywords.fallthrough)) {
      this._consume(TokenTypes.tokens.semicolon, "Expected ';'");
      return body;
    }
    const s = this._statement();
    if (s === null) return body;
    body.push(...(Array.isArray(s) ? s : [s]));
  }
};

/** An already evaluated operand (see exactIntegerOps). */
class Held {
  constructor(readonly value: unknown) {}
}

/** "u32" or "i32" for an integer scalar or vector value, else null. */
function intKind(v: Any): "u32" | "i32" | null {
  const t = v?.typeInfo;
  const name: string = t?.format?.name ?? t?.name ?? "";
  if (/^(u32|vec[234]u)$/.test(name)) return "u32";
  if (/^(i32|x32|vec[234]i)$/.test(name)) return "i32";
  return null;
}

/**
 * The interpreter computes integer `*` in doubles (a u32 product past 2^53 loses its low bits: every
 * hash in ops/hash.ts) and `>>` with JavaScript's signed shift (a u32 at or past 2^31 shifts in ones).
 * Compute `*`, `<<` and `>>` of 32-bit integers exactly; everything else as the library does.
 */
function exactIntegerOps(exec: Any): void {
  const evalExpr = exec.evalExpression.bind(exec);
  exec.evalExpression = (node: Any, context: Any) =>
    node instanceof Held ? node.value : evalExpr(node, context);
  const binary = exec._evalBinaryOpValue.bind(exec);
  exec._evalBinaryOpValue = (node: Any, context: Any) => {
    const op = node.operator;
    if (op !== "*" && op !== "<<" && op !== ">>") return binary(node, context);
    const l = exec.evalExpression(node.left, context), r = exec.evalExpression(node.right, context);
    const lk = intKind(l), rk = intKind(r);
    if (!lk || !rk) return binary(new BinaryOperator(op, new Held(l) as Any, new Held(r) as Any), context);
    const u = lk === "u32" || rk === "u32";
    const f = (a: number, b: number) => {
      const x = op === "*"
        ? Math.imul(a, b)
        : op === "<<"
        ? a << (b & 31)
        : u
        ? (a >>> 0) >>> (b & 31)
        : a >> (b & 31);
      return u ? x >>> 0 : x | 0;
    };
    const vec = l.data?.length > 1 ? l : r.data?.length > 1 ? r : null;
    if (!vec) return new ScalarData(f(l.value, r.value), (u ? (lk === "u32" ? l : r) : l).typeInfo);
    const at = (v: Any, i: number) => v.data.length > 1 ? v.data[i] : v.value;
    return new VectorData(Array.from(vec.data, (_, i) => f(at(l, i), at(r, i))), vec.typeInfo);
  };
}

/**
 * Which workgroups to execute: all of a grid of at most `all`, else the first and the last (the last
 * holds the partial tiles and rows of every dimension).
 */
export function pickWorkgroups(grid: [number, number, number], all = 2): [number, number, number][] {
  const [x, y, z] = grid;
  if (x * y * z <= all) {
    const out: [number, number, number][] = [];
    for (let k = 0; k < z; k++) for (let j = 0; j < y; j++) for (let i = 0; i < x; i++) out.push([i, j, k]);
    return out;
  }
  return [[0, 0, 0], [x - 1, y - 1, z - 1]];
}

/** The f32 tolerance of the faithfulness check: relative to the word, with a floor of the buffer's scale. */
const REL = 2e-3;

/**
 * Execute `d` on the CPU (the workgroups `pickWorkgroups` chooses, or `opts.workgroups`) and report
 * races, out-of-bounds accesses, barrier divergence and disagreements with the GPU's result.
 */
export function checkDispatch(
  d: CapturedDispatch,
  opts: { workgroups?: [number, number, number][]; stepBudget?: number } = {},
): CheckResult {
  const findings = new Map<string, Finding>();
  const report = (f: Finding, key: string) => {
    if (!findings.has(key)) findings.set(key, f);
  };
  const debug: Any = new WgslDebug(d.code);
  const exec = debug.exec;
  const ctx = exec.context;
  perLaneCallResults(exec.ast);
  exactIntegerOps(exec);
  exec._execStatements(exec.ast, ctx);
  const u32 = exec.getTypeInfo("u32"), vec3u = exec.getTypeInfo("vec3u");

  // Module-scope variables by address space.
  const vars = [...ctx.variables.values()].filter((v: Any) => v.node?.storage !== undefined);
  const space = (v: Any): string | null => v.node?.storage ?? null;
  const workgroupVars = vars.filter((v: Any) => space(v) === "workgroup");
  const privateVars = vars.filter((v: Any) => space(v) === "private");

  // Storage bindings: the bytes before the dispatch, shared by every workgroup (as on the GPU).
  let group = 0; // the workgroup being executed (index into `run`)
  const storageWriters = new Map<string, Map<number, [number, number]>>(); // word -> [workgroup, line]
  const storageReaders = new Map<string, Map<number, [number, number]>>();
  const writtenWords = new Map<string, Set<number>>();
  const onStorage = (variable: string, word: number, kind: "read" | "write", line: number) => {
    const mine = kind === "write" ? storageWriters : storageReaders;
    if (!mine.has(variable)) mine.set(variable, new Map());
    const other = kind === "write" ? [storageWriters, storageReaders] : [storageWriters];
    for (const m of other) {
      const e = m.get(variable)?.get(word);
      if (e && e[0] !== group) {
        const lines = [e[1], line].sort((a, b) => a - b).join("/");
        report({
          kind: "race",
          variable,
          message: `storage '${variable}' word ${word}: ${
            m === storageWriters ? "written" : "read"
          } by workgroup ${e[0]} at line ${e[1]} and ${
            kind === "write" ? "written" : "read"
          } by workgroup ${group} at line ${line}: workgroups of one dispatch are unordered`,
        }, `wgrace/${variable}/${lines}`);
      }
    }
    if (!mine.get(variable)!.has(word)) mine.get(variable)!.set(word, [group, line]);
    if (kind === "write") {
      if (!writtenWords.has(variable)) writtenWords.set(variable, new Set());
      writtenWords.get(variable)!.add(word);
    }
  };
  const oob = (variable: string, line: number) =>
    report({
      kind: "oob",
      variable,
      message:
        `'${variable}': an access at line ${line} falls outside the buffer (robust access differs between backends)`,
    }, `oob/${variable}/${line}`);

  const run = opts.workgroups ?? pickWorkgroups(d.workgroups);
  const storage = new Map<string, { data: ArrayBuffer; type: Any }>();
  let steps = 0;
  for (let gi = 0; gi < run.length; gi++) {
    group = gi;
    const tracker = new Tracker(report, onStorage);
    for (const b of d.bindings) {
      const v = ctx.variables.get(b.decl.name);
      if (!v) throw new Error(`${d.label}: binding ${b.decl.name} not in the WGSL`);
      const type = exec.getTypeInfo(v.node.type);
      if (b.decl.uniform) {
        v.value = new Tracked(b.before.slice(0), type, tracker, b.decl.name, "uniform", oob);
      } else {
        if (!storage.has(b.decl.name)) storage.set(b.decl.name, { data: b.before.slice(0), type });
        v.value = new Tracked(storage.get(b.decl.name)!.data, type, tracker, b.decl.name, "storage", oob);
      }
    }
    for (const v of workgroupVars) {
      const type = exec.getTypeInfo(v.node.type);
      v.value = new Tracked(new ArrayBuffer(type.size), type, tracker, v.name, "workgroup", oob);
    }
    const wgSize = workgroupSize(ctx);
    const wid = run[gi];
    ctx.setVariable("@num_workgroups", new VectorData([...d.workgroups], vec3u));
    ctx.setVariable("@workgroup_id", new VectorData([...wid], vec3u));
    ctx.setVariable("@workgroup_size", new VectorData([...wgSize], vec3u));
    const kernel = ctx.getFunction("main");
    const invocations: Any[] = [];
    for (let lz = 0, li = 0; lz < wgSize[2]; lz++) {
      for (let ly = 0; ly < wgSize[1]; ly++) {
        for (let lx = 0; lx < wgSize[0]; lx++, li++) {
          const ic = ctx.clone();
          ic.createVariable("@local_invocation_id", new VectorData([lx, ly, lz], vec3u));
          ic.createVariable(
            "@global_invocation_id",
            new VectorData(
              [lx + wid[0] * wgSize[0], ly + wid[1] * wgSize[1], lz + wid[2] * wgSize[2]],
              vec3u,
            ),
          );
          ic.createVariable("@local_invocation_index", new ScalarData(li, u32));
          for (const arg of kernel.node.args ?? []) {
            const builtin = (arg.attributes ?? []).find((a: Any) => a.name === "builtin");
            if (builtin) ic.variables.set(arg.name, ic.getVariable(`@${builtin.value}`));
          }
          for (const v of privateVars) {
            const type = exec.getTypeInfo(v.node.type);
            ic.createVariable(
              v.name,
              new Tracked(new ArrayBuffer(type.size), type, tracker, v.name, "private", oob),
              v.node,
            );
          }
          const stack = new Stack();
          stack.states.push(debug.createStackFrame(kernel.node.body, ic));
          invocations.push({ index: li, stack, state: 0, barrierNode: null });
        }
      }
    }
    const sched = new BarrierScheduler(debug, tracker, invocations) as Any;
    if (opts.stepBudget) sched.stepBudget = opts.stepBudget;
    const countSteps = debug.stepStack.bind(debug);
    debug.stepStack = (s: Any, into: boolean) => {
      steps++;
      return countSteps(s, into);
    };
    try {
      sched.run();
    } catch (e) {
      report({ kind: "error", message: `workgroup ${wid}: ${(e as Error).message}` }, `error/${e}`);
    }
    debug.stepStack = countSteps;
    for (const e of sched.errors as string[]) {
      report({ kind: /divergence/i.test(e) ? "divergence" : "error", message: e }, `err/${e}`);
    }
  }

  // Faithfulness: what the interpreter wrote must be what the GPU wrote.
  for (const b of d.bindings) {
    const words = writtenWords.get(b.decl.name);
    const mine = storage.get(b.decl.name);
    if (!words || !mine) continue;
    const kind = scalarOf(mine.type);
    const got = kind === "f32" ? new Float32Array(mine.data) : new Uint32Array(mine.data);
    const want = kind === "f32" ? new Float32Array(b.after) : new Uint32Array(b.after);
    let scale = 0;
    if (kind === "f32") { for (const w of words) scale = Math.max(scale, Math.abs(want[w])); }
    let bad = 0, first = -1;
    for (const w of words) {
      const ok = kind === "f32"
        ? (Number.isNaN(got[w]) && Number.isNaN(want[w])) ||
          Math.abs(got[w] - want[w]) <= REL * (Math.abs(want[w]) + 1e-3 * scale)
        : got[w] === want[w];
      if (!ok && bad++ === 0) first = w;
    }
    if (bad) {
      report({
        kind: "mismatch",
        variable: b.decl.name,
        message:
          `'${b.decl.name}': ${bad} of ${words.size} words the interpreter wrote differ from the GPU's ` +
          `(word ${first}: interpreter ${got[first]}, GPU ${want[first]})`,
      }, `mismatch/${b.decl.name}`);
    }
  }
  const memory = new Map([...storage].map(([k, v]) => [k, v.data]));
  return { findings: [...findings.values()], workgroups: run, steps, memory };
}

/** The kernel's @workgroup_size (literals or module constants). */
function workgroupSize(ctx: Any): [number, number, number] {
  const fn = ctx.getFunction("main");
  const wg: [number, number, number] = [1, 1, 1];
  for (const attr of fn.node.attributes ?? []) {
    if (attr.name !== "workgroup_size") continue;
    const vals = Array.isArray(attr.value) ? attr.value : [attr.value];
    vals.slice(0, 3).forEach((s: string, i: number) => {
      const n = parseInt(s);
      if (!isNaN(n)) wg[i] = n;
      else {
        const c = ctx.getVariableValue(s);
        wg[i] = c instanceof ScalarData ? c.value : Number(c?.data?.[0]);
      }
    });
  }
  return wg;
}

/** A write into a function or private variable through a computed index (see dynamicIndexWrites). */
export interface DynamicWrite {
  /** The variable written. */
  variable: string;
  /** Its WGSL line. */
  line: number;
  /** "vector": a component of a vector; "array": an element of an array. */
  into: "vector" | "array";
}

/**
 * Writes into a function-scope or `var<private>` vector or array through an index that is not a
 * constant once the loops with constant trip counts are unrolled: `v[i] = x` with `i` computed from
 * data or from an unbounded loop. FXC (D3D) cannot address a vector component in a register: it
 * unrolls the loop around such a write (warning X3550) and fails where it cannot (error X3500,
 * gfx-rs/naga#1702); an array so indexed becomes an indexable temporary it may spill. An index made
 * of literals, module constants and counters of `for (var i = c0; i < c1; i++ / i += c2)` loops with
 * constant c0..c2 is constant after unrolling and is fine. Found in the WGSL text, whatever runs.
 */
export function dynamicIndexWrites(code: string): DynamicWrite[] {
  const ast: Any[] = new WgslParser().parse(code);
  const consts = new Set(ast.filter((n) => n instanceof Const).map((n) => n.name));
  const out: DynamicWrite[] = [];
  const kindOf = (v: Any): "vector" | "array" | null => {
    const name: string = v.type?.name ?? v.value?.type?.name ?? v.value?.name ?? "";
    if (VECTORS.has(name) || /^vec[234][fiuh]?$/.test(name)) return "vector";
    return name === "array" ? "array" : null;
  };
  // Constant after unrolling: literals, constants and unrollable loop counters, combined.
  const constant = (e: Any, counters: Set<string>): boolean => {
    if (e instanceof LiteralExpr || e instanceof ConstExpr) return true;
    if (e instanceof VariableExpr) return !e.postfix && (consts.has(e.name) || counters.has(e.name));
    if (e instanceof BinaryOperator) return constant(e.left, counters) && constant(e.right, counters);
    if (e instanceof UnaryOperator) return constant(e.right, counters);
    return false;
  };
  const counterOf = (f: Any, counters: Set<string>): string | null => {
    const i = f.init, c = f.condition, inc = f.increment;
    if (!(i instanceof Var) || !i.value || !constant(i.value, counters)) return null;
    if (!(c instanceof BinaryOperator) || !["<", "<="].includes(c.operator)) return null;
    if (!(c.left instanceof VariableExpr) || c.left.name !== i.name || !constant(c.right, counters)) {
      return null;
    }
    const step = inc instanceof Increment ||
      (inc instanceof Assign && String(inc.operator) === "+=" && constant(inc.value, counters));
    return step && inc.variable instanceof VariableExpr && inc.variable.name === i.name ? i.name : null;
  };
  const privates = new Map<string, "vector" | "array">();
  for (const n of ast) {
    if (n instanceof Var && n.storage === "private" && kindOf(n)) privates.set(n.name, kindOf(n)!);
  }
  const visit = (node: Any, locals: Map<string, "vector" | "array">, counters: Set<string>): void => {
    if (!node || typeof node !== "object") return;
    if (Array.isArray(node)) return node.forEach((n) => visit(n, locals, counters));
    if (node instanceof Var && !node.storage && kindOf(node)) locals.set(node.name, kindOf(node)!);
    if (node instanceof For) {
      const k = counterOf(node, counters);
      const inner = k ? new Set([...counters, k]) : counters;
      return visit(node.body, locals, inner);
    }
    if (node instanceof Assign || node instanceof Increment) {
      const v = node.variable;
      if (v instanceof VariableExpr && (locals.has(v.name) || privates.has(v.name))) {
        let kind = locals.get(v.name) ?? privates.get(v.name)!;
        for (let p: Any = v.postfix; p; p = p.postfix) {
          if (!(p instanceof ArrayIndex)) continue;
          if (!constant(p.index, counters)) out.push({ variable: v.name, line: node.line, into: kind });
          kind = "vector"; // an element of an array of vectors, indexed again
        }
      }
      return;
    }
    for (const k of ["body", "else", "elseif", "cases", "continuing"]) {
      if (node[k]) visit(node[k], locals, counters);
    }
  };
  for (const fn of ast) if (fn?.body) visit(fn.body, new Map(), new Set());
  return out;
}
