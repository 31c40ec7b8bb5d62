// The op tests of tests/ops (matmul with every transpose variant and epilogue, attention, layernorm,
// cross-entropy, embedding, SGD/AdamW; forward and backward vs the float64 references, same
// tolerances) run unchanged in headless Chromium: Dawn and its WGSL compiler Tint instead of wgpu and
// naga. Prints the worst relative error per check under Dawn.

import assert from "node:assert/strict";
import { openPage } from "./harness.ts";
import type { OpTestResult } from "./op_tests.ts";

Deno.test({
  name: "browser (Dawn/Tint): the op tests pass against the float64 references",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const h = await openPage({
      "/op_tests.js": new URL("./op_tests.ts", import.meta.url),
      "/mod.js": new URL("../../mod.ts", import.meta.url),
    });
    try {
      await h.page.goto(h.server.url);
      // The package's entry point imports in a browser (no Deno API anywhere in the core).
      const names = await h.page.eval<string[]>(`import("/mod.js").then((m) => Object.keys(m))`);
      for (const n of ["GPT", "Runtime", "Tokenizer", "matmul", "attentionForward", "parseModelCheckpoint"]) {
        assert.ok(names.includes(n), `mod.ts exports ${n} in the browser`);
      }
      await h.page.eval(`import("/op_tests.js")`);
      const r = await h.page.eval<
        { results: OpTestResult[]; worst: Record<string, number>; adapter: string }
      >(
        "runOpTests()",
      );
      console.log(`adapter: ${r.adapter}`);
      for (const t of r.results) {
        console.log(`  ${t.ok ? "ok  " : "FAIL"} ${(t.ms / 1000).toFixed(1)} s  ${t.name}`);
      }
      for (const [k, v] of Object.entries(r.worst)) console.log(`[err] ${k}: ${v.toExponential(2)}`);
      const failed = r.results.filter((t) => !t.ok);
      assert.equal(failed.length, 0, failed.map((t) => `${t.name}: ${t.error}`).join("\n"));
      assert.ok(r.results.length >= 30, `only ${r.results.length} op tests ran in the browser`);
    } finally {
      await h.close();
    }
  },
});
