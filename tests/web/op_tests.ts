// Browser entry (bundled by tests/web/ops.test.ts): the op test files of tests/ops, unchanged, run
// in the page: matmul (every transpose variant and epilogue; today's kernel and one large variant;
// the tuner's IndexedDB store), attention, layernorm, cross-entropy,
// embedding, the optimizers and the decoding kernels (KV-cache attention, GPU sampling), forward and
// backward, against the float64 references (sampling: the host reference) with the same
// tolerances as under Deno; and GPT-2's BPE tokenizer. `runOpTests()` returns each test's outcome and the worst error per check.

import { registered } from "./deno_shim.ts";
import "../ops/matmul.test.ts";
import "../ops/matmul_variants.test.ts";
import "../ops/matmul_tune_page.ts";
import "../ops/attention.test.ts";
import "../ops/layernorm.test.ts";
import "../ops/cross_entropy.test.ts";
import "../ops/embedding.test.ts";
import "../ops/optim.test.ts";
import "../ops/decode.test.ts";
import "../ops/sampling.test.ts";
import "../lib/bpe.test.ts"; // GPT-2's BPE (the npm package, bundled) in the page
import { rt, worst } from "../util.ts";

/** One test's outcome in the browser. */
export interface OpTestResult {
  name: string;
  ok: boolean;
  error?: string;
  ms: number;
}

async function runOpTests(): Promise<
  { results: OpTestResult[]; worst: Record<string, number>; adapter: string }
> {
  const results: OpTestResult[] = [];
  for (const t of registered) {
    const t0 = performance.now();
    try {
      await t.fn();
      results.push({ name: t.name, ok: true, ms: performance.now() - t0 });
    } catch (e) {
      results.push({
        name: t.name,
        ok: false,
        error: String((e as Error)?.stack ?? e),
        ms: performance.now() - t0,
      });
    }
  }
  return { results, worst: Object.fromEntries(worst), adapter: rt.describe() };
}

(globalThis as unknown as { runOpTests: typeof runOpTests }).runOpTests = runOpTests;
