// Dispatches per training step grow with n_layer only: at most 60 per layer plus 40, on both kernel
// families, whatever n_embd and block size (issue 8). Counted from the dispatch trace of one recorded
// GPTStep (train.ts's step, AdamW with the preset's settings), at the lecture config and at nanoGPT's
// shakespeare-char width (n_embd 384, 6 heads, block 256) with 1 and 2 layers (batch 1 keeps it quick).

import assert from "node:assert/strict";
import { familyTest, rt } from "../util.ts";
import { BenchStep, presetSettings } from "../../bench/step.ts";

const budget = (layers: number) => 60 * layers + 40;

/**
 * Dispatches of one training step (the step also runs, so a broken kernel fails here too), and the
 * kernels with the most dispatches ("matmul NN 256x384x1536 x 256, ...": what a failure is made of).
 */
async function dispatches(...args: Parameters<typeof presetSettings>): Promise<{ n: number; most: string }> {
  const s = presetSettings(...args);
  const step = new BenchStep(rt, s);
  const trace = step.trace();
  await rt.sync();
  const loss = (await step.step.acts.loss.read())[0];
  assert.ok(Number.isFinite(loss), `loss ${loss}`);
  assert.ok(trace.every((k) => k.family === rt.kernels), "every dispatch of the family under test");
  const byName = new Map<string, number>();
  for (const k of trace) byName.set(k.name, (byName.get(k.name) ?? 0) + 1);
  const top = [...byName].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([k, n]) => `${k} x ${n}`);
  return { n: trace.length, most: top.join(", ") };
}

familyTest("dispatches per step at the lecture config: <= 60 per layer + 40", async (family) => {
  const { n, most } = await dispatches("lecture");
  console.log(`[${family}] lecture (4 layers, batch 64): ${n} dispatches per step`);
  assert.ok(
    n <= budget(4),
    `${n} dispatches per step > ${budget(4)} (most: ${most})`,
  );
});

const WIDTHS = {
  "lecture width": { nEmbd: 64, nHead: 4, blockSize: 32 },
  "nanogpt-char width": { nEmbd: 384, nHead: 6, blockSize: 256 },
};

familyTest(
  "dispatches per step at n_embd 384 / block 256 grow with n_layer only, <= 60 per layer + 40",
  async (family) => {
    const counts: Record<string, number> = {}, most: Record<string, string> = {};
    for (const [name, shape] of Object.entries(WIDTHS)) {
      for (const nLayer of [1, 2]) {
        // nanogpt-char's optimizer (clipping, decay groups) at both widths, so only the shape differs.
        const key = `${name} L${nLayer}`;
        ({ n: counts[key], most: most[key] } = await dispatches("nanogpt-char", {
          batch: 1,
          cfg: { ...shape, nLayer },
        }));
      }
    }
    console.log(`[${family}] dispatches per step: ${JSON.stringify(counts)}`);
    for (const [k, n] of Object.entries(counts)) {
      const L = Number(k.slice(-1));
      assert.ok(
        n <= budget(L),
        `${k}: ${n} dispatches per step > ${budget(L)} (60 per layer + 40); most: ${most[k]}`,
      );
    }
    // Per width: each layer adds at most 60, and what is not per-layer (embeddings, final
    // LayerNorm, head, loss, optimizer) is at most 40. (The counts may differ between widths: the
    // cpu family's matmul keeps its multi-dispatch window plans where they fit, at small widths.)
    for (const name of Object.keys(WIDTHS)) {
      const perLayer = counts[`${name} L2`] - counts[`${name} L1`];
      const fixed = counts[`${name} L1`] - perLayer;
      assert.ok(perLayer > 0 && perLayer <= 60, `${name}: ${perLayer} dispatches per layer`);
      assert.ok(fixed <= 40, `${name}: ${fixed} dispatches outside the layers`);
    }
    assert.ok(counts["nanogpt-char width L2"] > counts["nanogpt-char width L1"], "grows with n_layer");
  },
);
