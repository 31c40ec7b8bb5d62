// Fast GPT decoding: a KV cache, sampling on the GPU, and N sequences decoded as one batch.
//
// Every generated character sees exactly the last block_size characters, as nanoGPT's `generate`
// (and GPT.generateRecompute, the slow reference path) crop the context:
//
// * While the context is shorter than block_size, each new character costs one position's work per
//   layer: the previous positions' keys and values stay on the GPU, in the [B*T, 3C] qkv buffers of
//   the window pass (`win`), which are the KV cache; `step` holds one position per sequence. A prompt
//   of up to block_size/8 characters is fed the same way, a longer one in one window pass.
// * Past block_size the window slides, and with absolute position embeddings every position's
//   embedding (so every key and value) changes: each character is then a fresh, exact forward pass
//   over the window (cached keys would be wrong, not approximate). Only each sequence's newest row
//   feeds the sampler, so the last layer after its qkv, ln_f and lm_head run on that row alone.
// * The passes are this file's decode forward, not GPT.forward: eval-mode residual adds fused with
//   the next LayerNorm, the embeddings with the first one (ops/decode.ts), and the matmul operands
//   (activations and a copy of the weights) in buffers the window matmul binds in place. The CPU
//   family goes further: each LayerNorm that feeds a Linear runs inside it (on weights with the
//   affine folded in) and each residual add in the epilogue of the Linear before it; a cached pass
//   of at most GEMV_MAX_M sequences runs its LayerNorms on their own instead (readsFolded), so that
//   a short-prompt generate() never folds the weights.
// * With GPU sampling (ops/sampling.ts) the host records `chunk` characters per command buffer
//   (sample, append to the context window and to the history, next pass), submits once, and reads
//   the chunk's ids back while the GPU runs the next chunk (two staging buffers): no per-character
//   readback. Host sampling instead reads each character's logits rows back (sampleLogits).
//
// Seeds: sample i of N draws its n-th character with u = sampleUniform(seed, i, n) on both paths, so
// each sample is reproducible from (seed, i), and sample 0 of N is the single-sample output.

import { type Recording, type Runtime, STORAGE } from "../ops/runtime.ts";
import { numel, Tensor } from "../ops/tensor.ts";
import {
  addLayernorm,
  appendTokens,
  attentionDecode,
  embedLayernorm,
  type FoldedLinear,
  foldLayernorm,
  layernormLinear,
  type LinearWeights,
  residualLinear,
} from "../ops/decode.ts";
import { type Epilogue, linearForward, WINDOW } from "../ops/matmul.ts";
import { GEMV_MAX_M } from "../ops/matmul/cpu_gemv.ts";
import { zeroBias } from "../ops/layernorm.ts";
import { attentionForward } from "../ops/attention.ts";
import { gpuSamplingExact, sampleTokens, sampleUniform } from "../ops/sampling.ts";
import { type GenerateOptions, sampleLogits } from "./common.ts";
import { type GPT, GPTActivations } from "./gpt.ts";

/** GenerateOptions plus the decoder's switches (the defaults are the fast path). */
export interface DecodeOptions extends GenerateOptions {
  /** KV cache while the context is shorter than block_size (default true). */
  cache?: boolean;
  /** Sample on the GPU and read ids back per chunk (default true where its kernel is exact, see ops/sampling.ts). */
  gpuSampling?: boolean;
  /** Characters per command buffer / readback with GPU sampling (default 16). */
  chunk?: number;
  /** Each sample's ids as each chunk arrives. */
  onTokens?: (sample: number, ids: number[]) => void;
}

/** Characters per command buffer and readback when the output is not a terminal. */
export const DEFAULT_CHUNK = 16;
const MAX_CHUNK = 256;

// The window matmul (ops/matmul.ts) reads its operands through 64 KiB uniform windows: bound in place
// when the operand's buffer has UNIFORM usage and room for a whole window after it, else copied into
// a staging area first (two copies per product, each ending the compute pass). The decoder's matmul
// operands (activations that feed a Linear, and its copy of the weights) are allocated that way.
const UNIFORM = 0x40;
const SLACK = WINDOW * 4;
const OPERANDS = new Set(["res0", "xn1", "att", "xn2", "h", "xf"]);

const align = (floats: number) => Math.ceil(floats / 64) * 64;

function operand(rt: Runtime, shape: readonly number[], name: string): Tensor {
  return new Tensor(
    rt,
    rt.createBuffer(numel(shape) * 4 + SLACK, STORAGE | UNIFORM, name),
    0,
    shape,
    "f32",
    name,
  );
}

/** Decodes B sequences of one GPT at once: KV cache, exact window passes past block_size, GPU sampling. */
export class GPTDecoder {
  /** The window pass [B, T]: idx = the context windows; the layers' qkv buffers are the KV cache. */
  readonly win: GPTActivations;
  /** One position per sequence: idx = the last ids, pos = their positions. */
  readonly step: GPTActivations;
  /** The sampling kernel's filtered probabilities [B, V]. */
  readonly probs: Tensor;
  /** [seed, n of the chunk's first draw, 0, 0]. */
  readonly state: Tensor;
  /** [B, MAX_CHUNK] ids of the current chunk. */
  readonly hist: Tensor;
  private readonly staging: GPUBuffer[];
  private readonly rt: Runtime;
  private readonly weights: Tensor[]; // the decoder's copy of model.params, per shard (syncWeights)
  private readonly w = new Map<string, Tensor>(); // parameter name -> its view in `weights`
  // Each pass's commands, recorded the first time it runs (kernel family / window or cached / t):
  // the same pass at the same position binds the same buffers and parameters every time, so it is
  // replayed without redoing the host work of its ~30 op calls (about a tenth of a character's time
  // on lavapipe at the lecture config).
  private readonly passes = new Map<string, Recording>();
  // The Linears that follow a LayerNorm with its affine folded in (foldLayernorm), for the CPU
  // family's fused passes only: "qkv.l" (l >= 1), "fc.l", "lm_head". Allocated by the first
  // syncWeights in the CPU family (a GPU-family decoder never needs them) and refreshed by each.
  private folded: Map<string, FoldedLinear> | null = null;
  private foldStale = true; // the weights changed (syncWeights) since the last foldWeights
  private winLogits: Tensor | null = null;

  /** Prompts up to this length are fed through cached passes instead of a window pass. */
  readonly prefillMax: number;

  /** Buffers for decoding `B` sequences of `model` (allocated once; generate() reuses them). */
  constructor(readonly model: GPT, readonly B: number) {
    const rt = this.rt = model.rt;
    const { blockSize: T, vocabSize: V } = model.cfg;
    this.prefillMax = Math.max(1, Math.floor(T / 8));
    const make = (
      shape: number[],
      name: string,
    ) => (OPERANDS.has(name) ? operand(rt, shape, name) : undefined);
    this.win = new GPTActivations(rt, model.cfg, B, T, make);
    this.step = new GPTActivations(rt, model.cfg, B, 1, make, { logits: true });
    this.weights = model.params.shards.map((s) => {
      const copy = operand(rt, s.params.shape, "decode-weights");
      for (const i of s.members) {
        const p = model.params.list[i];
        this.w.set(p.name, new Tensor(rt, copy.buffer, p.offset, p.shape, "f32", p.name));
      }
      return copy;
    });
    this.probs = Tensor.empty(rt, [B * V], "f32", "sample-probs");
    this.state = Tensor.empty(rt, [4], "u32", "sample-state");
    this.hist = Tensor.empty(rt, [B * MAX_CHUNK], "u32", "sample-history");
    const bytes = this.hist.byteLength;
    this.staging = [0, 1].map(() => rt.createBuffer(bytes, 0x01 | 0x08, "sample-staging")); // MAP_READ | COPY_DST
  }

  /**
   * The full window pass over win.idx (the training forward, no loss) and every row's logits, in a
   * [B·T, V] buffer allocated on the first call: the tests' reference.
   */
  windowPass(): Tensor {
    const { rt, model, win } = this;
    this.winLogits ??= Tensor.empty(rt, [win.N, model.cfg.vocabSize], "f32", "window-logits");
    model.forward(win, this.state, false, false);
    model.logits(win, this.winLogits);
    return this.winLogits;
  }

  /** Copy the model's parameters into the decoder's copy, which the passes below read (generate does it). */
  syncWeights(): void {
    this.model.params.shards.forEach((s, i) => this.rt.copy(s.params, this.weights[i]));
    this.foldStale = true;
  }

  /**
   * Whether the CPU family's pass reads folded weights: a window pass, or a cached pass of more
   * sequences than the small-M matmul takes. A cached pass of up to GEMV_MAX_M sequences composes
   * each LayerNorm-Linear (layernormForward on B rows, one dispatch of a few µs, then the GEMV
   * kernel on the weights as they are), so generating after a short prompt never folds: folding
   * GPT-2's weights took ~0.5 s per generate(), 3 tokens' time.
   */
  private readsFolded(window: boolean): boolean {
    return this.rt.kernels === "cpu" && (window || this.B > GEMV_MAX_M);
  }

  /** Fold the LayerNorms into the Linears after them (the CPU family's fused passes read them). */
  private foldWeights(): void {
    this.foldStale = false;
    this.folded ??= this.allocateFolded();
    const fold = (ln: string, lin: string, name: string) => {
      const { w, b } = this.ln(ln);
      const weights = { W: this.P(`${lin}.weight`), bias: this.bias(`${lin}.bias`) };
      foldLayernorm(this.rt, w, b, weights, this.foldedLinear(name));
    };
    for (let l = 0; l < this.model.cfg.nLayer; l++) {
      if (l > 0) fold(`blocks.${l}.ln1`, `blocks.${l}.attn.qkv`, `qkv.${l}`);
      fold(`blocks.${l}.ln2`, `blocks.${l}.mlp.fc`, `fc.${l}`);
    }
    fold("ln_f", "lm_head", "lm_head");
  }

  /** The folded Linears' buffers, one store with each view at a 256-byte offset (storage bindings). */
  private allocateFolded(): Map<string, FoldedLinear> {
    const { rt } = this;
    const { nEmbd: C, nLayer: L, vocabSize: V } = this.model.cfg;
    const shapes: [string, number][] = [];
    for (let l = 0; l < L; l++) {
      if (l > 0) shapes.push([`qkv.${l}`, 3 * C]);
      shapes.push([`fc.${l}`, 4 * C]);
    }
    shapes.push(["lm_head", V]);
    const floats = shapes.reduce((n, [, rows]) => n + align(rows * C) + 2 * align(rows), 0);
    const store = operand(rt, [floats], "decode-folded");
    let at = 0;
    const view = (shape: number[], name: string) => {
      const t = new Tensor(rt, store.buffer, at * 4, shape, "f32", name);
      at += align(numel(shape));
      return t;
    };
    const folded = new Map<string, FoldedLinear>();
    for (const [name, rows] of shapes) {
      folded.set(name, {
        W: view([rows, C], name),
        bias: view([rows], `${name}.bias`),
        colSums: view([rows], `${name}.colsums`),
      });
    }
    return folded;
  }

  /** The decoder's copy of parameter `name`; a tied model's lm_head.weight is its token embedding. */
  private P(name: string): Tensor {
    if (name === "lm_head.weight" && this.model.arch.tiedHead) name = "token_embedding.weight";
    const t = this.w.get(name);
    if (!t) throw new Error(`GPTDecoder: no parameter ${name}`);
    return t;
  }

  /** A Linear's bias, or null when the model has none. */
  private bias(name: string): Tensor | null {
    return this.w.get(name) ?? null;
  }

  /** A LayerNorm's weight and bias (zeros when the model has no LayerNorm biases). */
  private ln(name: string): { w: Tensor; b: Tensor } {
    return {
      w: this.P(`${name}.weight`),
      b: this.bias(`${name}.bias`) ?? zeroBias(this.rt, this.model.cfg.nEmbd),
    };
  }

  /** The MLP's activation as a matmul epilogue (GELU fused into the fc product: eval needs no pre-activation). */
  private get act(): Epilogue {
    return this.model.arch.activation;
  }

  /** A folded Linear by name ("qkv.l", "fc.l", "lm_head"); syncWeights must have folded them. */
  private foldedLinear(name: string): FoldedLinear {
    const f = this.folded?.get(name);
    if (!f) throw new Error(`GPTDecoder: no folded ${name} (syncWeights runs first in the CPU family)`);
    return f;
  }

  /**
   * The window pass of generation: every row of win through layers 0..L-2 and through the last
   * layer's qkv (so every layer's KV cache holds positions 0..t), then only row t of each sequence,
   * as nanoGPT's `lm_head(x[:, [-1], :])`: its attention over the window's keys, projection, MLP,
   * final LayerNorm and lm_head, in step's [B]-row buffers. Logits: step.logits [B, V].
   */
  lastRowPass(t: number): void {
    this.decodeForward(true, t);
  }

  /** One position per sequence (step.idx at step.pos = t), attending over the cached rows 0..t. */
  cachedPass(t: number): void {
    this.decodeForward(false, t);
  }

  /**
   * The decode forward (eval: no dropout). Residual adds are fused with the next LayerNorm
   * (addLayernorm) and the embeddings with the first one (embedLayernorm): a layer is 7 dispatches
   * instead of 9, the embeddings 1 instead of 3 (the CPU family's encodeFusedForward: 5 a layer).
   * `window`: rows of win, the last layer on row t only; else rows of step (one position each)
   * attending over the cache in win. Each (family, window, t) is encoded once and replayed after.
   */
  private decodeForward(window: boolean, t: number): void {
    const key = `${this.rt.kernels}/${window}/${t}`;
    if (this.foldStale && this.readsFolded(window)) this.foldWeights();
    const done = this.passes.get(key);
    if (done) this.rt.replay(done);
    else {
      const encode = this.rt.kernels === "cpu" ? this.encodeFusedForward : this.encodeForward;
      this.passes.set(key, this.rt.record(() => encode.call(this, window, t)));
    }
  }

  /**
   * The CPU family's decode forward: as encodeForward, with the residual stream updated in place in
   * the matmuls' epilogues (residualLinear) and each LayerNorm that feeds a Linear inside that
   * Linear (layernormLinear, on the folded weights): 5 dispatches per layer instead of 7. The last
   * layer of a window pass, which runs on each sequence's row t only, is encodeForward's.
   */
  private encodeFusedForward(window: boolean, t: number): void {
    const { model, rt, B, win, step } = this;
    const { nEmbd: C, nHead: H, nLayer: L, blockSize: T } = model.cfg;
    const P = (n: string) => this.P(n);
    const src = window ? win : step;
    const R = src.N;
    const fused = this.readsFolded(window); // else each LayerNorm-Linear composed (readsFolded)
    const x = src.layers[0].res; // the residual stream [R, C], updated in place
    const lin = (l: number, n: string): LinearWeights => ({
      W: P(`blocks.${l}.${n}.weight`),
      bias: this.bias(`blocks.${l}.${n}.bias`),
    });
    const ln = (n: string) => this.ln(n);
    const tok = P("token_embedding.weight"), pos = P("position_embedding.weight");
    const ln10 = ln("blocks.0.ln1");
    embedLayernorm(rt, src.idx, src.pos, tok, pos, ln10.w, ln10.b, x, src.layers[0].xn1, R);
    for (let l = 0; l < L; l++) {
      const a = src.layers[l];
      const scratch = { xn: a.xn1, mean: a.mean1, rstd: a.rstd1 };
      const qkv = lin(l, "attn.qkv");
      if (l === 0) {
        linearForward(rt, a.xn1, qkv.W, qkv.bias, a.qkv, R); // embedLayernorm wrote xn1 already
      } else {
        const folded = fused ? this.foldedLinear(`qkv.${l}`) : null;
        layernormLinear(rt, x, ln(`blocks.${l}.ln1`), qkv, folded, a.qkv, R, "none", scratch);
      }
      if (window && l === L - 1) {
        this.lastLayerRows(x, t);
        return;
      }
      if (window) attentionForward(rt, a.qkv, a.att, a.lse, B, T, C, H, 0, this.state, 3 * l, false);
      else attentionDecode(rt, a.qkv, win.layers[l].qkv, a.att, B, T, C, H, t);
      residualLinear(rt, a.att, lin(l, "attn.proj"), x, R, a.proj);
      const scratch2 = { xn: a.xn2, mean: a.mean2, rstd: a.rstd2 };
      const fc = fused ? this.foldedLinear(`fc.${l}`) : null;
      layernormLinear(rt, x, ln(`blocks.${l}.ln2`), lin(l, "mlp.fc"), fc, a.h, R, this.act, scratch2);
      residualLinear(rt, a.h, lin(l, "mlp.proj"), x, R, a.mlp);
    }
    const f = { xn: step.xf, mean: step.meanf, rstd: step.rstdf };
    const head = { W: P("lm_head.weight"), bias: this.bias("lm_head.bias") };
    const headFolded = fused ? this.foldedLinear("lm_head") : null;
    layernormLinear(rt, x, ln("ln_f"), head, headFolded, step.logits, B, "none", f);
  }

  /** The decode forward of the GPU family (see decodeForward): embeddings, layers, lm_head. */
  private encodeForward(window: boolean, t: number): void {
    const { model, rt, B, win, step } = this;
    const { nEmbd: C, nHead: H, nLayer: L, blockSize: T } = model.cfg;
    const P = (n: string) => this.P(n);
    const B_ = (n: string) => this.bias(n);
    const src = window ? win : step;
    const R = src.N;
    const first = src.layers[0];
    const ln1 = (l: number) => {
      const { w, b } = this.ln(`blocks.${l}.ln1`);
      return [w, b];
    };
    const [w0, b0] = ln1(0);
    const [tok, pos] = [P("token_embedding.weight"), P("position_embedding.weight")];
    embedLayernorm(rt, src.idx, src.pos, tok, pos, w0, b0, first.res, first.xn1, R);
    for (let l = 0; l < L; l++) {
      const w = (n: string) => P(`blocks.${l}.${n}`);
      const b = (n: string) => B_(`blocks.${l}.${n}`);
      const ln2 = this.ln(`blocks.${l}.ln2`);
      const a = src.layers[l]; // the layer's input (res, xn1) and everything after, on src's rows
      linearForward(rt, a.xn1, w("attn.qkv.weight"), b("attn.qkv.bias"), a.qkv, R);
      if (window && l === L - 1) {
        this.lastLayerRows(a.res, t);
        return;
      }
      if (window) attentionForward(rt, a.qkv, a.att, a.lse, B, T, C, H, 0, this.state, 3 * l, false);
      else attentionDecode(rt, a.qkv, win.layers[l].qkv, a.att, B, T, C, H, t);
      linearForward(rt, a.att, w("attn.proj.weight"), b("attn.proj.bias"), a.proj, R);
      addLayernorm(rt, a.res, a.proj, ln2.w, ln2.b, a.res2, a.xn2, R, C);
      linearForward(rt, a.xn2, w("mlp.fc.weight"), b("mlp.fc.bias"), a.h, R, this.act);
      linearForward(rt, a.h, w("mlp.proj.weight"), b("mlp.proj.bias"), a.mlp, R);
      const next = src.layers[l + 1];
      const lnf = this.ln("ln_f");
      const [lw, lb] = next ? ln1(l + 1) : [lnf.w, lnf.b];
      addLayernorm(rt, a.res2, a.mlp, lw, lb, next ? next.res : step.out, next ? next.xn1 : step.xf, R, C);
    }
    linearForward(rt, step.xf, P("lm_head.weight"), B_("lm_head.bias"), step.logits, B);
  }

  /**
   * The last layer of a window pass after its qkv (which ran on every row: the KV cache), on each
   * sequence's row t only: its attention over the window, the projection, the residual (row t of
   * `res`, the window's [B·T, C] residual rows), the MLP, ln_f and lm_head -> step.logits.
   */
  private lastLayerRows(res: Tensor, t: number): void {
    const { model, rt, B, win, step } = this;
    const { nEmbd: C, nHead: H, nLayer: L, blockSize: T } = model.cfg;
    const w = (n: string) => this.P(`blocks.${L - 1}.${n}`);
    const b = (n: string) => this.bias(`blocks.${L - 1}.${n}`);
    const ln2 = this.ln(`blocks.${L - 1}.ln2`), lnf = this.ln("ln_f");
    const o = step.layers[L - 1];
    attentionDecode(rt, null, win.layers[L - 1].qkv, o.att, B, T, C, H, t);
    linearForward(rt, o.att, w("attn.proj.weight"), b("attn.proj.bias"), o.proj, B);
    addLayernorm(rt, res, o.proj, ln2.w, ln2.b, o.res2, o.xn2, B, C, T, t);
    linearForward(rt, o.xn2, w("mlp.fc.weight"), b("mlp.fc.bias"), o.h, B, this.act);
    linearForward(rt, o.h, w("mlp.proj.weight"), b("mlp.proj.bias"), o.mlp, B);
    addLayernorm(rt, o.res2, o.mlp, lnf.w, lnf.b, step.out, step.xf, B, C);
    linearForward(rt, step.xf, this.P("lm_head.weight"), this.bias("lm_head.bias"), step.logits, B);
  }

  /**
   * Generate maxNew ids after `start` for each of the B sequences (all start from the same prompt).
   * Returns one array of ids per sequence.
   */
  async generate(start: number[], maxNew: number, opts: DecodeOptions = {}): Promise<number[][]> {
    const { B, rt } = this;
    const { blockSize: T, vocabSize: V } = this.model.cfg;
    // GPU sampling by default, on the host where the sampling kernel is not exact (a large vocabulary
    // on llvmpipe: ops/sampling.ts); both draw the same ids from the same logits.
    const exact = gpuSamplingExact(rt, V, (opts.temperature ?? 1) === 0);
    const { cache = true, gpuSampling = exact, seed = 0 } = opts;
    const chunk = Math.min(MAX_CHUNK, Math.max(1, Math.floor(opts.chunk ?? DEFAULT_CHUNK)));
    const ctx = start.length ? start.slice(-T) : [0];
    this.syncWeights(); // recorded into the first command buffer
    const win = new Uint32Array(B * T);
    for (let b = 0; b < B; b++) win.set(ctx, b * T);
    this.win.idx.write(win);
    const out: number[][] = Array.from({ length: B }, () => []);
    const emit = (ids: number[][]) => {
      ids.forEach((s, b) => {
        out[b].push(...s);
        opts.onTokens?.(b, s);
      });
      if (opts.onToken) { for (const id of ids[0]) opts.onToken(id); }
    };
    const sampling = { temperature: opts.temperature ?? 1, topK: opts.topK ?? 0, topP: opts.topP ?? 1 };
    // Decoding state: `len` ids are in each window; `cached` when the KV cache holds positions
    // 0..len-2 and the newest id (at len-1) has not been through the model yet.
    let len = ctx.length, cached = false;
    if (cache && len <= this.prefillMax) {
      // A short prompt goes in one position at a time (a window pass costs block_size positions):
      // positions 0..len-2 here, one submit each (the host writes each one's id); the chunk loop's
      // first pass takes the last one.
      const feed = (t: number) => {
        this.step.idx.write(new Uint32Array(B).fill(ctx[t]));
        this.step.pos.write(new Uint32Array(B).fill(t));
      };
      for (let t = 0; t < len - 1; t++) {
        feed(t);
        this.cachedPass(t);
        rt.submit();
      }
      feed(len - 1);
      cached = true;
    }
    // Either pass leaves each sequence's next-token logits in step.logits [B, V].
    const pass = () => (cached ? this.cachedPass(len - 1) : this.lastRowPass(len - 1));
    const advance = () => {
      cached = cache && len < T;
      len = Math.min(len + 1, T);
    };

    if (!gpuSampling) {
      const host = Array.from({ length: B }, () => [...ctx]);
      for (let n = 0; n < maxNew; n++) {
        pass();
        const rows = await this.step.logits.read();
        const ids = host.map((_, b) =>
          sampleLogits(rows.subarray(b * V, (b + 1) * V), {
            uniform: () => sampleUniform(seed, b, n),
          }, sampling)
        );
        ids.forEach((id, b) => {
          host[b].push(id);
          if (host[b].length > T) host[b].shift();
        });
        advance();
        if (cached) {
          this.step.idx.write(Uint32Array.from(ids));
          this.step.pos.write(new Uint32Array(B).fill(len - 1));
        } else {
          host.forEach((h, b) => win.set(h, b * T));
          this.win.idx.write(win);
        }
        emit(ids.map((id) => [id]));
      }
      return out;
    }

    // GPU sampling: chunks of `chunk` draws per submit, read back one chunk behind.
    let pending: { map: Promise<void>; buf: GPUBuffer; m: number } | null = null;
    const collect = async () => {
      if (!pending) return;
      const { map, buf, m } = pending;
      pending = null;
      await map;
      const words = new Uint32Array(buf.getMappedRange(0, this.hist.byteLength).slice(0));
      buf.unmap();
      rt.throwIfFailed();
      emit(Array.from({ length: B }, (_, b) => Array.from(words.subarray(b * MAX_CHUNK, b * MAX_CHUNK + m))));
    };
    for (let n = 0, c = 0; n < maxNew; n += chunk, c++) {
      const m = Math.min(chunk, maxNew - n);
      this.state.write(new Uint32Array([seed >>> 0, n, 0, 0]));
      for (let j = 0; j < m; j++) {
        pass();
        sampleTokens(rt, this.step.logits, this.probs, this.step.idx, this.state, {
          ...sampling,
          B,
          V,
          step: j,
        });
        appendTokens(rt, this.step.idx, this.win.idx, this.hist, this.step.pos, B, T, len, MAX_CHUNK, j);
        advance();
      }
      const buf = this.staging[c % 2];
      rt.copy(this.hist, { buffer: buf, offset: 0, byteLength: this.hist.byteLength });
      rt.submit();
      rt.stats.readbacks++;
      const map = buf.mapAsync(1 /* GPUMapMode.READ */);
      map.catch(() => {}); // awaited in collect(); if the loop throws first, no unhandled rejection
      await collect(); // the previous chunk, while the GPU runs this one
      pending = { map, buf, m };
    }
    await collect();
    return out;
  }
}
