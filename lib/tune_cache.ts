// The matmul autotuner's cache in Deno (ops/matmul/tune.ts keeps the choices; this is where they
// live): matmul-tuning.json in the user's cache directory, tinygpt-webgpu/ under $XDG_CACHE_HOME or
// ~/.cache (Linux), ~/Library/Caches (macOS), %LOCALAPPDATA% (Windows); $TINYGPT_CACHE_DIR names the
// directory itself instead.
//
// Permissions are queried, never requested: no prompt ever comes from here. Without read access to
// the directory the run tunes in memory; without write access it reads the cache and keeps new
// choices in memory. Either way the tuner says so in one line. Writes are atomic (lib/fsutil.ts), so
// a reader never sees half a file.

import { join } from "node:path";
import { MatmulTuner, setMatmulTuner, type TuneMode, type TuneStore } from "../ops/matmul/tune.ts";
import { isCpuAdapter, type Runtime } from "../ops/runtime.ts";
import { GL_MAX_ARRAY_VEC4 } from "../ops/matmul/variants.ts";
import { atomicWrite } from "./fsutil.ts";
import { optionalEnv, type OptionalEnvName } from "./env.ts";

const FILE = "matmul-tuning.json";

function granted(desc: Deno.PermissionDescriptor): boolean {
  try {
    return Deno.permissions.querySync(desc).state === "granted";
  } catch {
    return false;
  }
}

/** The cache directory, or why it cannot be known (an environment variable we may not read). */
export function tuneCacheDir(): { dir: string } | { why: string } {
  const own = optionalEnv("TINYGPT_CACHE_DIR");
  if (own) return { dir: own };
  const os = Deno.build.os;
  const vars: OptionalEnvName[] = os === "windows"
    ? ["LOCALAPPDATA"]
    : os === "darwin"
    ? ["HOME"]
    : ["XDG_CACHE_HOME", "HOME"];
  for (const v of vars) {
    const x = optionalEnv(v);
    if (!x) continue;
    const base = v === "HOME" ? join(x, os === "darwin" ? "Library/Caches" : ".cache") : x;
    return { dir: join(base, "tinygpt-webgpu") };
  }
  return { why: `${vars.map((v) => "$" + v).join(" / ")} unset or not readable (--allow-env)` };
}

/**
 * The Deno store of the tuning cache, or null with the line saying why the run tunes in memory
 * (`say` gets it; the tuner is then made without a store).
 */
export function denoTuneStore(say: (line: string) => void): TuneStore | null {
  const d = tuneCacheDir();
  if ("why" in d) {
    say(`matmul tuning: no cache directory (${d.why}); tuning in memory for this run`);
    return null;
  }
  const { dir } = d;
  const path = join(dir, FILE);
  if (!granted({ name: "read", path: dir })) {
    say(
      `matmul tuning: no read access to ${dir} (add --allow-read=${dir} --allow-write=${dir} to keep ` +
        `the choices); tuning in memory for this run`,
    );
    return null;
  }
  const canWrite = granted({ name: "write", path: dir });
  return {
    where: path,
    async read() {
      try {
        return await Deno.readTextFile(path);
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) return null;
        throw e;
      }
    },
    async write(text: string) {
      if (!canWrite) throw new Error(`no write access (add --allow-write=${dir})`);
      await Deno.mkdir(dir, { recursive: true });
      await atomicWrite(path, text);
    },
  };
}

/**
 * Install the matmul tuner `--tune` asks for on `rt` (train.ts, sample.ts, bench.ts): none for "off",
 * on the cpu family (whose kernels are not tuned), or for "auto" on a CPU fallback adapter (lavapipe
 * runs the gpu family only when asked, and its timings say nothing about GPUs); else one with the
 * Deno cache (`denoTuneStore`). Lines go to `log`. Returns the tuner, or null.
 */
export async function installTuner(
  rt: Runtime,
  mode: TuneMode | "auto",
  log: (line: string) => void,
): Promise<MatmulTuner | null> {
  setMatmulTuner(rt, null);
  if (mode === "off" || rt.kernels !== "gpu") return null;
  if (mode === "auto" && isCpuAdapter(rt.adapter.info)) return null;
  const said: string[] = [];
  const store = denoTuneStore((l) => said.push(l));
  const gl = rt.backendName().startsWith("gl");
  const tuner = await MatmulTuner.create(rt, {
    mode: mode === "force" ? "force" : "on",
    store,
    log,
    maxArrayVec4: gl ? GL_MAX_ARRAY_VEC4 : Infinity,
  });
  for (const l of said) tuner.say(l);
  setMatmulTuner(rt, tuner);
  return tuner;
}
