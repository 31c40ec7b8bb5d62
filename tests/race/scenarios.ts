// What the race check runs: every model's whole step (forward, backward, optimizer with clipping and
// weight-decay masks, gradient accumulation, evaluation), every decoding path (KV-cache passes,
// window passes past block_size, GPU sampling greedy and filtered, one and several sequences), and the
// ops no model calls, at small awkward shapes, in the kernel family `rt.kernels` names. The race test
// captures what `rt.dispatch` receives while these run (ops/runtime.ts startCapture), so a kernel a
// model or the decoder starts using is checked without a new test.

import type { Runtime } from "../../ops/runtime.ts";
import { Tensor } from "../../ops/tensor.ts";
import { Rng } from "../../lib/rng.ts";
import { COURSE_ARCH, GPT, GPT2_ARCH, type GPTArch, type GPTConfig, NANOGPT_ARCH } from "../../models/gpt.ts";
import { BigramEmbeddingMLP, BigramOneHotMLP } from "../../models/bigram.ts";
import { Optimizer, StepState } from "../../models/common.ts";
import { BigramActivations } from "../../models/bigram.ts";
import { GPTStep } from "../../train/step.ts";
import { type Epilogue, matmul, type MatmulKernel, type MatmulOpts, sumRows } from "../../ops/matmul.ts";
import { GEMV_MAX_M } from "../../ops/matmul/cpu_gemv.ts";
import { addInto } from "../../ops/elementwise.ts";
import { headLoss } from "../../ops/head.ts";
import { embeddingBackward, embeddingForward } from "../../ops/embedding.ts";
import {
  geluBackward,
  geluForward,
  leakyReluBackward,
  leakyReluForward,
  reluForward,
} from "../../ops/activation.ts";
import { dispatchEveryVariant, variantsToCheck } from "../ops/matmul_variant_forms.ts";
import { sampleTokens } from "../../ops/sampling.ts";

/**
 * A GPT the check runs: the lecture width (head size 16, the course's model) with gradient
 * accumulation, nanoGPT's shakespeare-char width (head size 64, nanoGPT's model: exact GELU, no
 * biases, tied head) and an odd head size (33, GPT-2's model: tanh GELU, every bias), each with one
 * layer (every layer runs the same kernels) and a block that is not a multiple of any tile (5 or 9).
 */
export interface GptCase {
  name: string;
  nEmbd: number;
  nHead: number;
  vocabSize: number;
  blockSize: number;
  batch: number;
  /** Micro-batches per step. */
  accum: number;
  /** Also decode two sequences at once (the presets' runs decode one; the lecture case covers two). */
  batchDecode: boolean;
  /** The architecture options. */
  arch: GPTArch;
}
export const GPT_CASES: GptCase[] = [
  {
    name: "lecture",
    nEmbd: 64,
    nHead: 4,
    vocabSize: 67,
    blockSize: 9,
    batch: 2,
    accum: 2,
    batchDecode: true,
    arch: COURSE_ARCH,
  },
  {
    name: "nanogpt-char",
    nEmbd: 384,
    nHead: 6,
    vocabSize: 65,
    blockSize: 5,
    batch: 1,
    accum: 1,
    batchDecode: false,
    arch: NANOGPT_ARCH,
  },
  {
    name: "odd",
    nEmbd: 99,
    nHead: 3,
    vocabSize: 67,
    blockSize: 5,
    batch: 1,
    accum: 1,
    batchDecode: false,
    arch: GPT2_ARCH,
  },
];

const rand = (rng: Rng, n: number, s = 1) =>
  Float32Array.from({ length: n }, () => (rng.uniform() * 2 - 1) * s);

/**
 * One GPT: two training steps (AdamW, clipping, decay on matmul weights; gradient accumulation when
 * the case has it), an evaluation forward, and decoding: cached passes and window passes past
 * block_size, sampling greedy and with temperature, top-k and top-p, one sequence and (batchDecode) two.
 */
export async function gptScenario(rt: Runtime, c: GptCase, seed = 1): Promise<void> {
  const cfg: GPTConfig = {
    vocabSize: c.vocabSize,
    nEmbd: c.nEmbd,
    nHead: c.nHead,
    nLayer: 1,
    blockSize: c.blockSize,
    dropout: 0.1,
    ...c.arch,
  };
  const model = new GPT(rt, cfg, seed);
  const opt = new Optimizer(rt, model.params, "adamw", 1e-3, { decayParams: "matmul", gradClip: 1 });
  const B = c.batch, T = cfg.blockSize;
  const step = new GPTStep(rt, model, opt, B, c.accum, seed);
  const rng = new Rng(seed);
  const batch = () => ({
    x: Uint32Array.from({ length: B * T }, () => rng.int(cfg.vocabSize)),
    y: Uint32Array.from({ length: B * T }, () => rng.int(cfg.vocabSize)),
  });
  for (let s = 1; s <= 2; s++) step.record(s, 1e-3, batch);
  step.acts.idx.write(batch().x);
  model.forward(step.acts, step.state.tensor, false);
  await rt.sync();
  await model.generate([1, 2], T, { temperature: 0.8, topK: 5, topP: 0.9, seed });
  await model.generate([1], 2, { temperature: 0 });
  if (!c.batchDecode) return;
  await model.generateBatch([4], 2, 2, { temperature: 1, seed });
  // More sequences than the small-M matmul takes: the cached passes' products through the window
  // kernel's many-row tiles (the presets' window passes use them; this model's one has no layer).
  await model.generateBatch([4], 2, GEMV_MAX_M + 1, { temperature: 1, seed });
  await model.generateBatch(Array.from({ length: T + 1 }, (_, i) => i + 1), 1, 2, { temperature: 0 });
}

/** Both bigram MLPs: forward, backward, an SGD step and an AdamW step, and sampling. */
export async function bigramScenario(rt: Runtime, seed = 1): Promise<void> {
  const V = 67, n = 37;
  const rng = new Rng(seed);
  const ids = Uint32Array.from({ length: n + 1 }, () => rng.int(V));
  for (const model of [new BigramOneHotMLP(rt, V, seed), new BigramEmbeddingMLP(rt, V, seed)]) {
    const acts = new BigramActivations(rt, model.kind, model.cfg, n);
    model.setInputs(acts, ids.subarray(0, n));
    if (model.kind === "bigram-onehot") acts.targets.write(ids.slice(1));
    else {
      const t = new Float32Array(n * V);
      for (let i = 0; i < n; i++) t[i * V + ids[i + 1]] = 1;
      acts.targets.write(t);
    }
    const state = new StepState(rt, seed);
    for (const kind of ["sgd", "adamw"] as const) {
      const opt = new Optimizer(rt, model.params, kind, 0.1);
      state.set(1);
      model.forward(acts, true, true);
      model.backward(acts);
      opt.step(state.tensor);
    }
    await rt.sync();
    await model.generate(ids[0], 3, { temperature: 0.8, seed });
  }
}

/** The product forms the check runs in every transposition (ops/matmul.ts MatmulOpts). */
const EVERY_TRANSPOSITION: MatmulOpts[] = [{}, { accumulate: true }, { alpha: 0.5, batch: 2 }];
/** The epilogues, with a bias and without, in the transpositions a Linear uses (x · Wᵀ; and x · W). */
const EPILOGUES: Epilogue[] = ["none", "relu", "leaky_relu", "gelu", "gelu_erf"];

/**
 * Every op form at small awkward sizes, whether a model uses it or not: products in every
 * transposition (plain, accumulating, batched with alpha), each epilogue with a bias, all-scalar (7 x 13 x 9) and all-vec4 (8 x 12 x 16) shapes, the bias gradient fused
 * (rowSums) with a short K and a K long enough to be split, through each kernel of the family; then
 * the fused head in chunks, sumRows, addInto and the activations. Small products are the cheapest instances of the kernels the
 * models use, so the check runs those instead of the models' larger ones.
 */
export async function opsScenario(rt: Runtime, seed = 1): Promise<void> {
  const rng = new Rng(seed);
  const t = (n: number) => Tensor.from(rt, rand(rng, n), [n]);
  const kernels: MatmulKernel[] = rt.kernels === "gpu" ? ["tiled"] : ["window", "storage"];
  for (const [M, N, K] of [[7, 13, 9], [8, 12, 16]]) {
    const a = t(2 * M * K), b = t(2 * K * N), c = Tensor.empty(rt, [2 * M * N]), bias = t(N), rows = t(M);
    for (const kernel of kernels) {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          for (const o of EVERY_TRANSPOSITION) matmul(rt, a, b, c, M, N, K, { ...o, transA, transB, kernel });
        }
      }
      for (const transB of [false, true]) {
        for (const epilogue of EPILOGUES) {
          matmul(rt, a, b, c, M, N, K, { bias, epilogue, transB, kernel });
          if (epilogue !== "none") matmul(rt, a, b, c, M, N, K, { epilogue, transB, kernel });
        }
      }
      for (const accumulate of [false, true]) {
        matmul(rt, a, b, c, M, N, K, { transA: true, rowSums: rows, accumulate, kernel });
      }
    }
  }
  // A weight gradient whose K (tokens) does not fit one window (CPU family: the window kernel splits
  // it over dispatches, each summing 5 window pairs, the later ones adding to C).
  const M = 8, N = 64, K = 2100;
  const a = t(M * K), b = t(K * N), c = Tensor.empty(rt, [M * N]), rows = t(M);
  for (const kernel of kernels) {
    for (const accumulate of [false, true]) {
      matmul(rt, a, b, c, M, N, K, { transA: true, rowSums: rows, accumulate, kernel });
    }
  }
  // Every variant of the gpu family's tiled matmul (the autotuner may pick any), in every form; where
  // big workgroup arrays take minutes to compile (GL, the page), today's kernel and a large variant.
  if (rt.kernels === "gpu") dispatchEveryVariant(rt, variantsToCheck(rt));
  // The fused head and loss in three chunks of rows (8, 8, 5: the cross-entropy rows past row0, the
  // weight gradient accumulating over chunks), with a bias and without, training and evaluation.
  {
    const Nh = 21, Vh = 13, Ch = 24, R = 8;
    const W = t(Vh * Ch).reshape([Vh, Ch]),
      targets = Tensor.from(rt, Uint32Array.from({ length: Nh }, (_, i) => i % Vh));
    const loss = {
      targets,
      rowLoss: Tensor.empty(rt, [Nh]),
      loss: Tensor.empty(rt, [1]),
      logits: Tensor.empty(rt, [R, Vh]),
      rows: R,
    };
    for (const bias of [t(Vh), null]) {
      const h = { xf: t(Nh * Ch), W, bias, N: Nh };
      const grads = {
        dlogits: Tensor.empty(rt, [R, Vh]),
        dxf: Tensor.empty(rt, [Nh, Ch]),
        dW: Tensor.empty(rt, [Vh, Ch]),
        db: bias ? Tensor.empty(rt, [Vh]) : null,
      };
      headLoss(rt, h, loss, grads);
      headLoss(rt, h, loss, null);
    }
  }
  const x = t(7 * 13), dy = t(7 * 13), y = Tensor.empty(rt, [7 * 13]);
  sumRows(rt, x, Tensor.empty(rt, [13]), 7, 13);
  addInto(rt, y, x);
  reluForward(rt, x, y);
  leakyReluForward(rt, x, y);
  leakyReluBackward(rt, dy, x, y);
  for (const form of ["gelu", "gelu_erf"] as const) {
    geluForward(rt, x, y, form);
    geluBackward(rt, dy, x, y, form);
  }
  // The sampler's 32-invocation shape (ops/sampling.ts), which the cpu family uses from V ~ 24,000
  // on (GPT-2's 50257: too slow to interpret), forced at V = 97 (3 or 4 tokens an invocation) with
  // tied logits, filtered by top-k and top-p so that both searches run and both cuts fall inside tie
  // groups. (The decode scenarios dispatch the family's shape at V = 67, filtered first: the capture
  // the check runs, as it runs each kernel's smallest.)
  if (rt.kernels === "cpu") {
    const V = 97, B = 2;
    const logits = Tensor.from(rt, rand(rng, B * V).map((v) => Math.round(v * 4)), [B * V]);
    const state = Tensor.from(rt, new Uint32Array([seed, 0, 0, 0]), [4]);
    const probs = Tensor.empty(rt, [B * V]), ids = Tensor.empty(rt, [B], "u32");
    sampleTokens(rt, logits, probs, ids, state, {
      B,
      V,
      temperature: 0.9,
      topK: 20,
      topP: 0.8,
      workgroupSize: 32,
    });
  }
  await rt.sync();
}

/**
 * The paths past one binding, on a runtime whose cap is set to 16 KiB: chunked products (gathered
 * blocks, column blocks scattered into C with and without accumulation, a bias gradient scattered
 * from an unaligned block) and the embedding over a table bound a block of rows at a time.
 */
export async function cappedScenario(rt: Runtime, seed = 1): Promise<void> {
  const rng = new Rng(seed);
  const t = (n: number) => Tensor.from(rt, rand(rng, n), [n]);
  const before = rt.maxBindingBytes;
  rt.maxBindingBytes = 16 << 10;
  try {
    const [M, N, K] = [9, 200, 40]; // W [200, 40] is 32 KB: the head's three products cut it
    const x = t(M * K), w = t(N * K), y = t(M * N), bias = t(N), dw = t(N * K), rows = t(N);
    matmul(rt, x, w, y, M, N, K, { transB: true, bias });
    matmul(rt, x, w, y, M, N, K, { transB: true, accumulate: true });
    matmul(rt, y, w, x, M, K, N, {});
    matmul(rt, y, x, dw, N, K, M, { transA: true, rowSums: rows });
    const V = 130, C = 40, n = 11; // a 20.8 KB table, blocks of 96 rows
    const table = t(V * C).reshape([V, C]), dtable = t(V * C).reshape([V, C]), out = t(n * C);
    const idx = Tensor.from(rt, Uint32Array.from({ length: n }, (_, i) => (i * 37) % (V + 2)), [n]);
    for (const acc of [false, true]) {
      embeddingForward(rt, idx, table, out, acc);
      embeddingBackward(rt, idx, out, dtable, acc);
    }
    await rt.sync();
  } finally {
    rt.maxBindingBytes = before;
  }
}
