// A float64 bigram MLP composed of the op references: forward, the mean cross-entropy and the gradient
// of every parameter, as models/bigram.ts computes them (one-hot model: class-index targets;
// embedding model: one-hot probability targets, as the seed notebook trains them).

import type { BigramConfig, BigramKind } from "../../models/bigram.ts";
import { linearGradRef, linearRef } from "./matmul.ts";
import { embeddingGradRef, embeddingRef } from "./embedding.ts";
import { crossEntropyRef } from "./cross_entropy.ts";
import { leakyReluGradRef, leakyReluRef } from "./elementwise.ts";

export interface BigramRefResult {
  loss: number;
  logits: Float64Array;
  grads: Map<string, Float64Array>;
}

/** Forward + backward on the pairs (inputs[i] -> next[i]) with parameters keyed by name. */
export function bigramReference(
  kind: BigramKind,
  cfg: BigramConfig,
  params: Map<string, Float64Array>,
  inputs: ArrayLike<number>,
  next: ArrayLike<number>,
): BigramRefResult {
  const { vocabSize: V, hidden: Hd, embd: E } = cfg;
  const n = inputs.length, onehot = kind === "bigram-onehot", inp = onehot ? V : E;
  const p = (name: string) => params.get(name)!;
  const oneHot = (ids: ArrayLike<number>) => {
    const x = new Float64Array(n * V);
    for (let i = 0; i < n; i++) x[i * V + ids[i]] = 1;
    return x;
  };
  const x = onehot ? oneHot(inputs) : embeddingRef(inputs, p("token_embedding.weight"), E);
  const h = leakyReluRef(linearRef(x, p("fc1.weight"), p("fc1.bias"), n, Hd, inp));
  const logits = linearRef(h, p("fc2.weight"), p("fc2.bias"), n, V, Hd);
  const ce = crossEntropyRef(logits, onehot ? Uint32Array.from(next) : oneHot(next), n, V);
  const g2 = linearGradRef(ce.dlogits, h, p("fc2.weight"), n, V, Hd);
  const g1 = linearGradRef(leakyReluGradRef(g2.dx, h), x, p("fc1.weight"), n, Hd, inp);
  const grads = new Map([
    ["fc1.weight", g1.dW],
    ["fc1.bias", g1.db],
    ["fc2.weight", g2.dW],
    ["fc2.bias", g2.db],
  ]);
  if (!onehot) grads.set("token_embedding.weight", embeddingGradRef(inputs, g1.dx, V, E));
  return { loss: ce.loss, logits, grads };
}
