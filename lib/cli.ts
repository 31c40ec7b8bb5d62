// Command-line plumbing shared by the CLIs: flag parsing (over node:util parseArgs) with validated
// typed getters, --help text, permission checks that name the missing --allow flag, and `runMain`,
// which turns every failure into ONE `error: ...` line on stderr and an exit code:
//   0  success (and --help)
//   1  a runtime failure: GPUFailure (no/lost GPU, WebGPU error) or any unexpected error
//   2  a user error: UsageError (bad flags, missing data), CheckpointError (bad checkpoint file),
//      or a Deno permission problem (NotCapable / PermissionDenied), fixed by changing the command line
// Set TINYGPT_DEBUG=1 to also print the stack trace (read only where env access to it is granted, as
// under deno task: lib/env.ts).

import { dirname } from "node:path";
import { parseArgs } from "node:util";
import { fail, UsageError } from "./errors.ts";
import { optionalEnv } from "./env.ts";
import type { KernelFamily } from "../ops/runtime.ts";
import { TUNE_MODES, type TuneMode } from "../ops/matmul/tune.ts";

export { fail, UsageError };

/** The message collapsed onto one line. */
function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, " ").trim();
}

function debugEnabled(): boolean {
  return !!optionalEnv("TINYGPT_DEBUG"); // not readable (no --allow-env): no debug output
}

/** The exit status `runMain` uses for a thrown value (see the header comment). */
export function exitCodeFor(e: unknown): number {
  if (e instanceof UsageError) return 2;
  if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) return 2;
  if (e instanceof Error && e.name === "CheckpointError") return 2;
  return 1;
}

/** The one line `runMain` prints for a thrown value. */
export function errorLine(e: unknown): string {
  if (e instanceof Error) {
    const msg = oneLine(e.message) || e.name;
    if (e.name === "GPUFailure") return `error: GPU failure: ${msg}`;
    if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
      return `error: permission denied: ${msg}`;
    }
    return `error: ${msg}`;
  }
  return `error: ${oneLine(String(e))}`;
}

/**
 * Run a CLI's main function. Any thrown error becomes one `error: ...` line on stderr and a nonzero
 * exit (2 for user errors, 1 otherwise; see the header comment). Returns normally on success.
 */
export async function runMain(main: () => Promise<void>): Promise<void> {
  try {
    await main();
  } catch (e) {
    console.error(errorLine(e));
    if (debugEnabled() && e instanceof Error && e.stack) console.error(e.stack);
    Deno.exit(exitCodeFor(e));
  }
}

/**
 * The error to report for `e`, thrown while using a GPU runtime: when the device was lost (or reported
 * an error) on the way, that GPUFailure ("the GPU device was lost: ...") rather than whatever
 * secondary error the loss caused (a rejected mapAsync, a validation error on a dead device).
 */
export async function gpuCause(
  rt: { readonly device: GPUDevice; throwIfFailed(): void } | null,
  e: unknown,
): Promise<unknown> {
  if (!rt || (e instanceof Error && ["GPUFailure", "UsageError", "CheckpointError"].includes(e.name))) {
    return e;
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  // device.lost settles asynchronously; give it a moment to arrive before asking.
  await Promise.race([
    rt.device.lost.then(() => new Promise((r) => setTimeout(r, 0))),
    new Promise((r) => (timer = setTimeout(r, 100))),
  ]);
  clearTimeout(timer);
  try {
    rt.throwIfFailed();
  } catch (g) {
    return g;
  }
  return e;
}

// ---------------------------------------------------------------------------------------------
// Flags

export interface FlagSpec {
  /** Long name without dashes, e.g. "batch-size" (used as `--batch-size` and as the key in the result). */
  name: string;
  type: "string" | "boolean";
  default?: string | boolean;
  help: string;
}

/** Flag values keyed by FlagSpec.name: strings (undefined when unset without a default) or booleans. */
export type FlagValues = Record<string, string | boolean | undefined>;

/** What parseFlags returns (shaped like node:util parseArgs' result; positionals are always rejected). */
export interface ParsedFlags<T extends FlagValues = FlagValues> {
  values: T;
  /** The flags given on the command line (FlagSpec names), as opposed to left at their defaults. */
  given: Set<string>;
}

const dashed = (name: string): string => (name.startsWith("-") ? name : `--${name}`);

/**
 * Parse `args` against `spec`; the values are in `.values`. Unknown flags, missing values, values
 * given to boolean flags and positional arguments are UsageErrors naming the flag. A repeated flag
 * keeps its last value; boolean flags default to false. `--help` / `-h` prints the help to stdout
 * and exits 0: `usage` itself if it is already a `formatUsage` text, otherwise
 * `formatUsage(usage, spec)` (so `usage` may be just the title / intro).
 */
export function parseFlags<T extends FlagValues = FlagValues>(
  args: string[],
  spec: FlagSpec[],
  usage: string,
): ParsedFlags<T> {
  const byName = new Map(spec.map((f) => [f.name, f]));
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {};
  for (const f of spec) options[f.name] = { type: f.type };
  if (!byName.has("help")) options.help = { type: "boolean", short: "h" };
  const { tokens } = parseArgs({ args, options, strict: false, allowPositionals: true, tokens: true });

  const out: FlagValues = {};
  for (const f of spec) out[f.name] = f.default ?? (f.type === "boolean" ? false : undefined);
  const given = new Set<string>();
  let help = false;
  for (const t of tokens ?? []) {
    if (t.kind === "positional") fail(`unexpected argument "${t.value}" (flags look like --name=value)`);
    if (t.kind !== "option") continue;
    if (t.name === "help" && !byName.has("help")) {
      help = true;
      continue;
    }
    const f = byName.get(t.name);
    if (!f) fail(`unknown flag ${t.rawName} (see --help)`);
    given.add(f.name);
    if (f.type === "boolean") {
      if (t.value !== undefined) fail(`${t.rawName} does not take a value (got "${t.value}")`);
      out[f.name] = true;
    } else {
      // Non-strict parseArgs swallows the next argument even when it is another flag.
      if (t.value === undefined || (!t.inlineValue && t.value.startsWith("--"))) {
        fail(`${t.rawName} needs a value`);
      }
      out[f.name] = t.value;
    }
  }
  if (help) {
    console.log(usage.includes(FLAGS_HEADING) ? usage : formatUsage(usage, spec));
    Deno.exit(0);
  }
  return { values: out as T, given };
}

const FLAGS_HEADING = "\n\nFlags:\n";

/** A --help text: the title, then one line per flag with its value kind, help and default. */
export function formatUsage(title: string, spec: FlagSpec[]): string {
  const rows = spec.map((f) => [
    `  --${f.name}${f.type === "string" ? "=<value>" : ""}`,
    f.help + (f.default !== undefined && f.default !== "" ? ` (default: ${f.default})` : ""),
  ]);
  rows.push(["  -h, --help", "show this help and exit"]);
  const w = Math.max(...rows.map((r) => r[0].length)) + 2;
  return `${title.trimEnd()}${FLAGS_HEADING}${rows.map(([a, b]) => a.padEnd(w) + b).join("\n")}`;
}

function needString(value: string | boolean | undefined, name: string, what: string): string {
  if (typeof value !== "string" || value.trim() === "") fail(`${dashed(name)} needs ${what} value`);
  return value.trim();
}

/** A plain decimal integer flag (e.g. "12", "-3"; not "1.5", "1e3", "0x10", "") within [min, max]. */
export function intFlag(
  value: string | boolean | undefined,
  name: string,
  opts: { min?: number; max?: number } = {},
): number {
  const s = needString(value, name, "an integer");
  const v = Number(s);
  if (!/^[+-]?\d+$/.test(s) || !Number.isSafeInteger(v)) {
    fail(`${dashed(name)} must be an integer, got "${s}"`);
  }
  if (opts.min !== undefined && v < opts.min) fail(`${dashed(name)} must be >= ${opts.min}, got ${v}`);
  if (opts.max !== undefined && v > opts.max) fail(`${dashed(name)} must be <= ${opts.max}, got ${v}`);
  return v;
}

/** A finite decimal number flag (e.g. "3e-4", "-0.5", ".5"; not "nan", "inf", "0x1", "") within bounds. */
export function floatFlag(
  value: string | boolean | undefined,
  name: string,
  opts: { min?: number; max?: number; minExclusive?: boolean; maxExclusive?: boolean } = {},
): number {
  const s = needString(value, name, "a number");
  const v = Number(s);
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s) || !Number.isFinite(v)) {
    fail(`${dashed(name)} must be a finite number, got "${s}"`);
  }
  const { min, max } = opts;
  if (min !== undefined && (opts.minExclusive ? !(v > min) : !(v >= min))) {
    fail(`${dashed(name)} must be ${opts.minExclusive ? ">" : ">="} ${min}, got ${s}`);
  }
  if (max !== undefined && (opts.maxExclusive ? !(v < max) : !(v <= max))) {
    fail(`${dashed(name)} must be ${opts.maxExclusive ? "<" : "<="} ${max}, got ${s}`);
  }
  return v;
}

/** One of `choices` (exact match). */
export function choiceFlag<C extends string>(
  value: string | boolean | undefined,
  name: string,
  choices: readonly C[],
): C {
  const list = choices.map((c) => `"${c}"`).join(", ");
  if (typeof value !== "string") fail(`${dashed(name)} needs a value, one of ${list}`);
  if (!(choices as readonly string[]).includes(value)) {
    fail(`${dashed(name)} must be one of ${list}, got "${value}"`);
  }
  return value as C;
}

// ---------------------------------------------------------------------------------------------
// Kernel family (train.ts, sample.ts, bench.ts)

/** The values --kernels and TINYGPT_KERNELS take. */
export const KERNEL_CHOICES = ["gpu", "cpu", "auto"] as const;
/** What the runtime is asked for: a family, or "auto" (chosen from the adapter by Runtime.create). */
export type KernelChoice = KernelFamily | "auto";

/** The one --kernels flag definition the CLIs share. */
export const KERNELS_FLAG: FlagSpec = {
  name: "kernels",
  type: "string",
  help: "kernel family: gpu | cpu | auto (default: $TINYGPT_KERNELS when env access to it is granted, " +
    "as deno task does, else auto = cpu on a CPU fallback adapter such as llvmpipe / lavapipe / " +
    "SwiftShader, gpu on every other adapter)",
};

/**
 * The kernel family to run: the --kernels flag when given, else the TINYGPT_KERNELS environment
 * variable when set and readable without a prompt (lib/env.ts optionalEnv), else "auto". A bad value is one UsageError line naming its source.
 */
export function kernelsChoice(flag: string | boolean | undefined): KernelChoice {
  if (flag !== undefined) return choiceFlag(flag, "kernels", KERNEL_CHOICES);
  const env = optionalEnv("TINYGPT_KERNELS"); // not readable without --allow-env: the flag still works
  if (env === undefined || env === "") return "auto";
  if (!(KERNEL_CHOICES as readonly string[]).includes(env)) {
    fail(`TINYGPT_KERNELS must be one of ${KERNEL_CHOICES.map((c) => `"${c}"`).join(", ")}, got "${env}"`);
  }
  return env as KernelChoice;
}

// ---------------------------------------------------------------------------------------------
// Matmul autotuning (train.ts, sample.ts, bench.ts)

/** The one --tune flag definition the CLIs share. */
export const TUNE_FLAG: FlagSpec = {
  name: "tune",
  type: "string",
  help: "matmul autotuning of the gpu kernel family: off (today's kernel) | on (time each product shape " +
    "class once per adapter, keep the fastest variant in the user's cache directory) | force (time " +
    "every class again) (default: on for the gpu family on a GPU; off on a CPU fallback adapter such as " +
    "lavapipe, and the cpu family is never tuned)",
};

/** --tune as given, or "auto" (on for the gpu family on a GPU, else off; lib/tune_cache.ts installTuner). */
export function tuneChoice(flag: string | boolean | undefined): TuneMode | "auto" {
  return flag === undefined ? "auto" : choiceFlag(flag, "tune", TUNE_MODES);
}

// ---------------------------------------------------------------------------------------------
// Permissions

async function ensurePermission(
  name: "read" | "write",
  paths: string[],
  flagHint: string,
): Promise<void> {
  for (const path of paths) {
    const desc = { name, path } as const;
    let { state } = await Deno.permissions.query(desc);
    if (state === "prompt" && Deno.stdin.isTerminal()) state = (await Deno.permissions.request(desc)).state;
    if (state !== "granted") fail(`${name} access to ${path} is needed: add ${flagHint}`);
  }
}

/**
 * Make sure each path is readable under Deno's permissions, asking interactively when stdin is a
 * terminal; otherwise a UsageError naming the flag to add (`flagHint`, e.g. "--allow-read=out").
 */
export async function ensureReadPermission(paths: string[], flagHint: string): Promise<void> {
  await ensurePermission("read", paths, flagHint);
}

/** As `ensureReadPermission`, for write access (e.g. flagHint "--allow-write=out"). */
export async function ensureWritePermission(paths: string[], flagHint: string): Promise<void> {
  await ensurePermission("write", paths, flagHint);
}

/**
 * Check, before any work, that an output file (written atomically: a temp file beside it, then a
 * rename) can be written: read and write permission, and an existing parent directory. Otherwise one
 * UsageError line naming `flag`, so a long run never ends in a failed write.
 */
export async function ensureOutputFile(path: string, flag: string, flagHint: string): Promise<void> {
  await ensureReadPermission([path], flagHint);
  await ensureWritePermission([path], flagHint);
  const dir = dirname(path);
  try {
    if (!(await Deno.stat(dir)).isDirectory) fail(`${flag} ${path}: ${dir} is not a directory`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) fail(`${flag} ${path}: the directory ${dir} does not exist`);
    if (!(e instanceof Deno.errors.PermissionDenied)) throw e; // unreadable parent: the write will tell
  }
}
