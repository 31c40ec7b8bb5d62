// The bench's FLOP count (bench/step.ts stepFlops): attention counts the causal triangle the kernels
// compute, T(T+1)/2 query-key pairs per sequence and head, not the full T² grid.

import assert from "node:assert/strict";
import { stepFlops } from "../../bench/step.ts";

Deno.test("stepFlops: attention over the causal triangle, six products of hs multiply-adds per pair", () => {
  const cfg = { vocabSize: 65, nEmbd: 384, nHead: 6, nLayer: 6, blockSize: 256, dropout: 0.2 };
  const B = 3, T = 256, hs = 64;
  const pairs = B * cfg.nHead * T * (T + 1) / 2;
  const { attention, matmul } = stepFlops(cfg, B, T);
  assert.equal(attention, cfg.nLayer * pairs * 6 * 2 * hs);
  // About half of the full grid's 12·B·T²·C per layer.
  assert.ok(Math.abs(attention / (cfg.nLayer * 12 * B * T * T * cfg.nEmbd) - 0.5) < 0.01);
  // The Linears: 3 · (24·N·C² per layer + 2·N·C·V).
  const N = B * T, C = cfg.nEmbd;
  assert.equal(matmul, 3 * (cfg.nLayer * 24 * N * C * C + 2 * N * C * cfg.vocabSize));
});
