// The matmul autotuner (ops/matmul/tune.ts) and what --tune promises:
// - off: today's kernel. The default variant equals today's kernel (frozen in tests/reference) bit for
//   bit in every form the models use, so runs without a tuner reproduce today's losses bit for bit.
// - the tuner times every candidate, keeps the fastest, stores it; a run with the cache times nothing
//   and is deterministic; force re-times; a corrupt or foreign cache is ignored with one warning line
//   and left as it is; a cache that cannot be written keeps the choices in memory and says so once;
//   without timestamp-query whole submits are timed (and it says so).
// - force vs off agree within float32 rounding over a few GPT steps (split-K weight gradients and
//   large tiles against today's kernel), and split-K keeps a step within 60 dispatches per layer.
// - the Deno cache file (lib/tune_cache.ts), in child processes with the permissions under test:
//   written, then read back; corrupt; no write permission; a read-only directory; no read permission.
// The page's IndexedDB store is checked in the browser (tests/ops/matmul_tune_page.ts).

import assert from "node:assert/strict";
import { poisoned, Rng, rt, Tensor } from "../util.ts";
import {
  DEFAULT_VARIANT,
  type Epilogue,
  matmul,
  type MatmulProblem,
  MatmulTuner,
  setMatmulTuner,
  shapeClass,
  type TuneStore,
} from "../../ops/matmul.ts";
import { candidates, GL_MAX_ARRAY_VEC4 } from "../../ops/matmul/variants.ts";
import { slowCompiles } from "./matmul_variant_forms.ts";
import { isCpuAdapter, Runtime } from "../../ops/runtime.ts";
import { matmulToday } from "../reference/matmul_today.ts";
import { BenchStep, presetSettings } from "../../bench/step.ts";

const rng = new Rng(99);
const bits = (x: Float32Array) => new Uint32Array(x.buffer);

interface Form {
  M: number;
  N: number;
  K: number;
  batch?: number;
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  bias?: boolean;
  epilogue?: Epilogue;
  accumulate?: boolean;
  rowSums?: boolean;
}

Deno.test("[gpu] --tune off: the default variant is today's kernel, bit for bit, in the models' forms", async () => {
  // Linear forward (bias, relu, leaky_relu), its dx (accumulated or not) and dW with the bias
  // gradient, a batched product; aligned and unaligned widths, more than one tile each way.
  const forms: Form[] = [
    { M: 130, N: 96, K: 68, transB: true, bias: true, epilogue: "relu" },
    { M: 70, N: 65, K: 33, transB: true, bias: true, epilogue: "leaky_relu" },
    { M: 130, N: 68, K: 96, accumulate: true },
    { M: 70, N: 33, K: 65 },
    { M: 96, N: 68, K: 130, transA: true, rowSums: true },
    { M: 65, N: 33, K: 70, transA: true, rowSums: true, accumulate: true },
    { M: 33, N: 20, K: 24, batch: 3, alpha: 0.5 },
  ];
  for (const f of forms) {
    const { M, N, K } = f, batch = f.batch ?? 1;
    const A = Tensor.from(rt, rng.uniformArray(batch * M * K)),
      B = Tensor.from(rt, rng.uniformArray(batch * K * N));
    const bias = Tensor.from(rt, rng.uniformArray(N)),
      c0 = rng.uniformArray(batch * M * N),
      r0 = rng.uniformArray(M);
    const out: Float32Array[][] = [];
    for (const today of [true, false]) {
      const C = f.accumulate ? Tensor.from(rt, c0) : poisoned([batch * M * N]);
      const rs = f.rowSums ? (f.accumulate ? Tensor.from(rt, r0) : poisoned([M])) : null;
      const p: MatmulProblem = {
        A,
        B,
        C,
        M,
        N,
        K,
        batch,
        transA: !!f.transA,
        transB: !!f.transB,
        alpha: f.alpha ?? 1,
        bias: f.bias ? bias : null,
        epilogue: f.epilogue ?? "none",
        accumulate: !!f.accumulate,
        rowSums: rs,
        norm: null,
      };
      if (today) matmulToday(rt, p);
      else matmul(rt, A, B, C, M, N, K, { ...p, kernel: "tiled", variant: DEFAULT_VARIANT });
      out.push([await C.read(), ...(rs ? [await rs.read()] : [])]);
    }
    out[0].forEach((x, i) => {
      assert.ok(bits(x).every((w, j) => w === bits(out[1][i])[j]), `${JSON.stringify(f)}: differs`);
    });
  }
});

/** A TuneStore in memory, counting writes. */
class MemoryStore implements TuneStore {
  where = "memory";
  writes = 0;
  constructor(public text: string | null = null, readonly failWrites = false) {}
  read(): Promise<string | null> {
    return Promise.resolve(this.text);
  }
  write(text: string): Promise<void> {
    if (this.failWrites) return Promise.reject(new Error("Permission denied (os error 13)"));
    this.writes++;
    this.text = text;
    return Promise.resolve();
  }
}

// The tuner tests' product: batched, bias + relu, widths a multiple of 4 (the variant tests' NN form),
// M and N <= 64 so that only the 64-wide tiles are candidates.
const M = 33, N = 20, K = 24, batch = 2;
const A = Tensor.from(rt, rng.uniformArray(batch * M * K)),
  B = Tensor.from(rt, rng.uniformArray(batch * K * N));
const bias = Tensor.from(rt, rng.uniformArray(N));
const product = (C = Tensor.empty(rt, [batch * M * N])) =>
  matmul(rt, A, B, C, M, N, K, { batch, bias, epilogue: "relu", kernel: "tiled" });
const CLASS = shapeClass({ M, N, K, batch, transA: false, transB: false });
/** On GL, tune among small-array variants only (as installTuner does there). */
const maxArrayVec4 = slowCompiles(rt) ? GL_MAX_ARRAY_VEC4 : Infinity;

/** Run `fn` with `tuner` installed on the shared runtime. */
async function withTuner<T>(tuner: MatmulTuner, fn: () => Promise<T>): Promise<T> {
  setMatmulTuner(rt, tuner);
  try {
    return await fn();
  } finally {
    setMatmulTuner(rt, null);
  }
}

Deno.test("[gpu] tuner: times every candidate, keeps the fastest, stores it; the cache is read back and timed no more", async () => {
  const store = new MemoryStore(), lines: string[] = [];
  const log = (l: string) => lines.push(l);
  const t1 = await MatmulTuner.create(rt, { mode: "on", store, log, maxArrayVec4 });
  const r = await withTuner(t1, async () => {
    product();
    assert.ok(t1.hasPending && t1.queued.has(CLASS));
    const [r] = await t1.tunePending();
    product(); // the winner, now
    await rt.sync();
    return r;
  });
  const want = candidates({ M, N, K, batch, transA: false, transB: false }, rt.device.limits, maxArrayVec4)
    .map((v) => v.name);
  assert.deepEqual(r.candidates.map((c) => c.variant), want);
  assert.ok(want.length >= (maxArrayVec4 < Infinity ? 2 : 4), want.join(", "));
  assert.ok(want.includes(DEFAULT_VARIANT.name), want.join(", "));
  assert.ok(r.candidates.every((c) => c.ms > 0 && c.gflops > 0), JSON.stringify(r));
  const best = Math.min(...r.candidates.map((c) => c.ms));
  assert.equal(r.candidates.find((c) => c.variant === r.winner)!.ms, best);
  assert.equal(store.writes, 1);
  assert.equal(JSON.parse(store.text!).adapters[t1.adapter].choices[CLASS], r.winner);
  assert.equal(lines.length, 1, lines.join("\n"));
  assert.match(lines[0], /^matmul tuning: 1 shape class timed in .* s \(timestamp queries(; .*)?\)$/);

  // A second run with the cache: the same choice, nothing timed or written.
  const t2 = await MatmulTuner.create(rt, { mode: "on", store, log });
  await withTuner(t2, async () => {
    product();
    assert.equal(t2.hasPending, false);
    assert.deepEqual(await t2.tunePending(), []);
  });
  assert.equal(t2.known, 1);
  assert.equal(store.writes, 1);
  // force: the cached choice is ignored, the class timed again and stored.
  const t3 = await MatmulTuner.create(rt, { mode: "force", store, log: () => {}, maxArrayVec4 });
  await withTuner(t3, async () => {
    product();
    assert.ok(t3.hasPending);
    assert.equal((await t3.tunePending()).length, 1);
  });
  assert.equal(store.writes, 2);
});

Deno.test("[gpu] tuner: a corrupt or foreign cache is ignored with one warning line and left as it is", async () => {
  for (const text of ["{not json", JSON.stringify({ format: "someone else's", adapters: {} })]) {
    const store = new MemoryStore(text), lines: string[] = [];
    const t = await MatmulTuner.create(rt, { mode: "on", store, log: (l) => lines.push(l), maxArrayVec4 });
    await withTuner(t, async () => {
      product();
      await t.tunePending();
    });
    assert.equal(store.text, text, "left as it was");
    assert.equal(store.writes, 0);
    assert.equal(lines.filter((l) => l.startsWith("warning:")).length, 1, lines.join("\n"));
    assert.match(
      lines[0],
      /^warning: ignoring the matmul tuning cache memory \((not JSON|not a ".*" file)\)/,
    );
    assert.equal(t.known, 1, "tuned in memory");
  }
});

Deno.test("[gpu] tuner: a cache that cannot be written keeps the choices in memory and says so once", async () => {
  const store = new MemoryStore(null, true), lines: string[] = [];
  const t = await MatmulTuner.create(rt, { mode: "on", store, log: (l) => lines.push(l), maxArrayVec4 });
  await withTuner(t, async () => {
    product();
    await t.tunePending();
    // A second class (not batched), timed later: no second warning.
    matmul(rt, A, B, Tensor.empty(rt, [M * N]), M, N, K, { bias, epilogue: "relu", kernel: "tiled" });
    await t.tunePending();
  });
  assert.equal(t.known, 2);
  const warn = lines.filter((l) => l.includes("cannot write"));
  assert.equal(warn.length, 1, lines.join("\n"));
  assert.match(
    warn[0],
    /^matmul tuning: cannot write memory \(Permission denied \(os error 13\)\); the choices are kept/,
  );
});

Deno.test("[gpu] tuner: without timestamp-query it times whole submits, and says so", async () => {
  const bare = await Runtime.create({ timestamps: false, kernels: "gpu" });
  try {
    assert.equal(bare.hasTimestamps, false);
    const lines: string[] = [];
    const t = await MatmulTuner.create(bare, {
      mode: "on",
      store: null,
      log: (l) => lines.push(l),
      reps: 2,
      maxArrayVec4,
    });
    setMatmulTuner(bare, t);
    const t2 = (x: Float32Array) => Tensor.from(bare, x);
    matmul(
      bare,
      t2(rng.uniformArray(M * K)),
      t2(rng.uniformArray(K * N)),
      Tensor.empty(bare, [M * N]),
      M,
      N,
      K,
      {
        kernel: "tiled",
      },
    );
    const [r] = await t.tunePending();
    assert.ok(r.candidates.length >= 2 && r.candidates.every((c) => c.ms > 0), JSON.stringify(r));
    assert.match(lines.join("\n"), /whole submits timed on the host \(no timestamp-query\)/);
  } finally {
    bare.destroy();
  }
});

/** Losses of `steps` GPT steps (lecture width, 1 or 2 layers, batch 2) and the dispatches of one. */
async function gptLosses(nLayer: number, steps: number): Promise<{ losses: number[]; dispatches: number }> {
  const s = presetSettings("lecture", { batch: 2, cfg: { nLayer, blockSize: 16 } });
  const b = new BenchStep(rt, s);
  const losses: number[] = [];
  let dispatches = 0;
  for (let i = 0; i < steps; i++) {
    const trace = b.trace();
    dispatches = trace.length;
    losses.push((await b.step.acts.loss.read())[0]);
  }
  return { losses, dispatches };
}

Deno.test("[gpu] --tune force vs off: GPT losses within float32 rounding; split-K within 60 dispatches a layer; deterministic given the cache", async () => {
  const before = rt.kernels;
  rt.kernels = "gpu";
  try {
    const off = await gptLosses(2, 3);
    // The classes of the step, then a cache choosing split-K for the weight gradients and large
    // tiles elsewhere (as a tuner might on a large GPU; GL: small workgroup arrays only).
    const probe = await MatmulTuner.create(rt, { mode: "on", store: null, log: () => {} });
    await withTuner(probe, () => gptLosses(2, 1));
    const choices: Record<string, string> = {};
    const big = maxArrayVec4 === Infinity;
    for (const [cls, p] of probe.queued) {
      const other = !big ? "64x64 k8 4x4 v4" : p.M > 64 ? "128x64 k16 8x4 v4 db" : "64x64 k16 8x8 v4";
      choices[cls] = p.transA ? "64x64 k8 4x4 v4 s4" : other;
    }
    const text = JSON.stringify({
      format: "tinygpt-webgpu matmul tuning",
      adapters: { [probe.adapter]: { version: 1, choices } },
    });
    const forced = async (nLayer: number, steps: number) => {
      const t = await MatmulTuner.create(rt, { mode: "on", store: new MemoryStore(text), log: () => {} });
      const r = await withTuner(t, () => gptLosses(nLayer, steps));
      assert.equal(
        t.hasPending,
        false,
        `every class was cached: ${[...t.queued.keys()]} of ${Object.keys(choices)}`,
      );
      return r;
    };
    const on = await forced(2, 3), again = await forced(2, 3);
    for (let i = 0; i < off.losses.length; i++) {
      const e = Math.abs(on.losses[i] - off.losses[i]) / Math.abs(off.losses[i]);
      assert.ok(e < 1e-5, `step ${i + 1}: loss ${on.losses[i]} (tuned) vs ${off.losses[i]} (off), ${e}`);
    }
    assert.deepEqual(again.losses, on.losses, "the same cache, the same losses bit for bit");
    // Split-K adds one reduction per weight gradient: the step stays within 60 dispatches a layer.
    const perLayer = on.dispatches - (await forced(1, 1)).dispatches;
    assert.ok(perLayer <= 60, `${perLayer} dispatches per layer with split-K`);
    assert.ok(on.dispatches > off.dispatches, "the split-K reductions are dispatched");
  } finally {
    rt.kernels = before;
  }
});

// ---------------------------------------------------------------- the Deno cache file, in a child

const PROBE = new URL("./matmul_tune_probe.ts", import.meta.url).pathname;
const ROOT = new URL("../../", import.meta.url).pathname;

async function probe(perms: string[], env: Record<string, string>, mode = "on") {
  const out = await new Deno.Command("deno", {
    args: ["run", "--no-config", "--no-lock", "--quiet", ...perms, PROBE, mode],
    env: { NO_COLOR: "1", XDG_RUNTIME_DIR: "/tmp", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder(), stderr = dec.decode(out.stderr);
  assert.equal(out.code, 0, stderr);
  const lines = stderr.split("\n").filter((l) => l.trim());
  return {
    ...JSON.parse(dec.decode(out.stdout)) as { timed: number; variant: string; file: string | null },
    lines,
  };
}

Deno.test("Deno tuning cache: written, then read back; corrupt: one warning, kept; no write permission: in memory, one line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tinygpt-tune-" });
  try {
    const rw = [`--allow-read=${ROOT},${dir}`, `--allow-write=${dir}`, "--allow-env"];
    const env = { TINYGPT_CACHE_DIR: dir };
    const first = await probe(rw, env);
    assert.equal(first.timed, 1);
    assert.deepEqual(first.lines.length, 1, first.lines.join("\n"));
    assert.ok(
      first.file && JSON.parse(first.file).format === "tinygpt-webgpu matmul tuning",
      String(first.file),
    );
    const second = await probe(rw, env);
    assert.equal(second.timed, 0, "read back: nothing timed");
    assert.equal(second.variant, first.variant);
    assert.equal(second.file, first.file);
    assert.deepEqual(second.lines, []);

    await Deno.writeTextFile(`${dir}/matmul-tuning.json`, "garbage{");
    const corrupt = await probe(rw, env);
    assert.equal(corrupt.timed, 1);
    assert.equal(corrupt.file, "garbage{", "a file that is not ours is never overwritten");
    assert.equal(corrupt.lines.filter((l) => /warning|cannot/.test(l)).length, 1, corrupt.lines.join("\n"));
    assert.match(
      corrupt.lines[0],
      /^warning: ignoring the matmul tuning cache .*matmul-tuning\.json \(not JSON\)/,
    );

    await Deno.remove(`${dir}/matmul-tuning.json`);
    const ro = await probe([`--allow-read=${ROOT},${dir}`, "--allow-env"], env);
    assert.equal(ro.timed, 1);
    assert.equal(ro.file, null, "nothing written");
    assert.equal(ro.lines.filter((l) => l.includes("cannot write")).length, 1, ro.lines.join("\n"));
    assert.match(ro.lines.join("\n"), /no write access \(add --allow-write=/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Deno tuning cache: a read-only directory tunes in memory and warns once; no read permission: one line, no prompt", async () => {
  // /sys/fs refuses new files even to root (chmod 555 does not stop root); Deno lets only
  // --allow-all touch /sys.
  const ro = await probe(["--allow-all"], { TINYGPT_CACHE_DIR: "/sys/fs" });
  assert.equal(ro.timed, 1);
  assert.equal(ro.lines.length, 2, ro.lines.join("\n")); // the timing line and one warning
  assert.match(
    ro.lines[1],
    /^matmul tuning: cannot write \/sys\/fs\/matmul-tuning\.json \(.*\); the choices are kept in memory/,
  );
  const none = await probe([`--allow-read=${ROOT}`, "--allow-env"], {
    TINYGPT_CACHE_DIR: "/tmp/tinygpt-never",
  });
  assert.equal(none.timed, 1);
  assert.match(none.lines[0], /^matmul tuning: no read access to \/tmp\/tinygpt-never \(add --allow-read=/);
  assert.equal(none.lines.length, 2, none.lines.join("\n"));
  // No --tune: on for the gpu family on a GPU; on a CPU adapter (lavapipe, these tests) off.
  const auto = await probe([`--allow-read=${ROOT}`, "--allow-env"], {}, "auto");
  assert.equal(auto.timed, isCpuAdapter(rt.adapter.info) ? -1 : 1);
  if (isCpuAdapter(rt.adapter.info)) assert.deepEqual(auto.lines, []);
});
