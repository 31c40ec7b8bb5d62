// The race check (issue 16), run by ./gpu.test.ts and ./cpu.test.ts, one kernel family each. What both kernel families dispatch while the models train, evaluate and
// decode and while the ops run in every form (./scenarios.ts) is captured through the runtime
// (Runtime.startCapture records what rt.dispatch receives, with the bytes of its bindings before and
// after), and each distinct kernel is executed on the CPU by the race detector (./detector.ts): no
// data race, no out-of-bounds access, no barrier divergence, and the same results as the GPU. A
// kernel a model starts to use is checked without a new test, and every kernel a real run of a
// preset dispatches (planned at full size, ./presets.ts) must be among those checked.
//
// One kernel: one WGSL text, except the CPU family's window matmul, which unrolls its loop over `np`
// window pairs, a count its planner picks from the product's size: variants that differ only in it
// are one kernel. The check runs the capture of each kernel that binds the fewest bytes.

import assert from "node:assert";
import { rt } from "../util.ts";
import type { CapturedDispatch, KernelFamily } from "../../ops/runtime.ts";
import { variantKey } from "../../ops/wgsl_cache.ts";
import { bigramScenario, cappedScenario, GPT_CASES, gptScenario, opsScenario } from "./scenarios.ts";
import { checkDispatch, dynamicIndexWrites } from "./detector.ts";
import { ALLOWED } from "./allowed.ts";
import { plannedKernels, PRESET_NAMES } from "./presets.ts";

/** The kernel a WGSL text is (see the file comment). */
export const kernelOf = (code: string): string =>
  (variantKey(code) ?? code).replace(/^(matmul\/window\/\{)"np":\d+,/, "$1");

/** Bytes a captured dispatch binds. */
const bytes = (d: CapturedDispatch) => d.bindings.reduce((a, b) => a + b.before.byteLength, 0);

/**
 * The race check of one kernel family, as a Deno test (one module per family, so that `deno test
 * --parallel` runs them side by side).
 */
export function raceCheck(family: KernelFamily): void {
  Deno.test(`race check [${family}]: every kernel, executed by the race detector`, async (t) => {
    const before = rt.kernels;
    rt.kernels = family;
    try {
      await check(t);
    } finally {
      rt.kernels = before;
    }
  });
}

async function check(t: Deno.TestContext): Promise<void> {
  const kernels = new Map<string, CapturedDispatch[]>();
  rt.startCapture();
  for (const c of GPT_CASES) await gptScenario(rt, c);
  await bigramScenario(rt);
  await opsScenario(rt);
  await cappedScenario(rt);
  for (const d of await rt.stopCapture()) {
    const k = kernelOf(d.code);
    if (!kernels.has(k)) kernels.set(k, []);
    kernels.get(k)!.push(d);
  }

  await t.step("every kernel of a real lecture and nanogpt-char run is among them", async () => {
    const missing = new Set<string>();
    for (const preset of PRESET_NAMES) {
      for (const d of await plannedKernels(rt, preset)) {
        if (!kernels.has(kernelOf(d.code))) missing.add(`${preset}: ${d.label} ${kernelOf(d.code)}`);
      }
    }
    assert(
      missing.size === 0,
      `kernels of real runs the scenarios do not reach:\n${[...missing].join("\n")}`,
    );
  });

  await t.step("no write into a private vector or array through an index computed at run time", () => {
    const found = [...kernels.values()].flatMap(([d]) =>
      dynamicIndexWrites(d.code).map((w) => `${d.label}: ${w.into} ${w.variable}, line ${w.line}`)
    );
    assert.deepEqual(found, []);
  });

  await t.step("no races, out-of-bounds accesses or divergent barriers; the GPU's results", () => {
    const problems: string[] = [];
    const used = new Set<string>();
    let shapes = 0, steps = 0;
    for (const list of kernels.values()) {
      shapes += list.length;
      const d = list.reduce((a, b) => (bytes(b) < bytes(a) ? b : a));
      const t0 = performance.now();
      const r = checkDispatch(d);
      steps += r.steps;
      if (Deno.env.get("RACE_PROFILE")) {
        console.log(
          `${d.family} ${d.label} ${d.workgroups} ${r.steps} steps ${(performance.now() - t0).toFixed(0)} ms`,
        );
      }
      for (const f of r.findings) {
        const allow = ALLOWED.find((a) =>
          a.family === rt.kernels && d.label.startsWith(a.kernel) && a.variable === f.variable &&
          a.kind === f.kind
        );
        if (allow) used.add(`${allow.kernel}/${allow.variable}`);
        else problems.push(`${d.label}: ${f.kind}: ${f.message}`);
      }
    }
    console.log(
      `race check [${rt.kernels}]: ${kernels.size} kernels (${shapes} kernel-shape pairs captured), ` +
        `${steps} interpreter steps`,
    );
    const mine = ALLOWED.filter((a) => a.family === rt.kernels);
    const stale = mine.filter((a) => !used.has(`${a.kernel}/${a.variable}`));
    assert(
      stale.length === 0,
      `allowed findings that no longer occur: ${stale.map((a) => a.kernel + "/" + a.variable)}`,
    );
    assert(problems.length === 0, `${problems.length} findings:\n${problems.join("\n")}`);
  });
}
