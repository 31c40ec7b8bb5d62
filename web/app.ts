// The page's entry point (bundled by web/serve.ts): controls, the live chart, sampling, model
// download / upload. Training itself is web/session.ts.
//
// URL contract (any script can drive the page): ?model=gpt|bigram-onehot|bigram-embedding, steps,
// seed, batch-size, lr, eval-interval, eval-iters, autostart=1. The run's state is on #status:
// data-state idle|training|done|error, data-step, data-loss (the last batch loss), data-held ("1" while
// a paused run holds, its data-step final; "0" once it resumes), data-error, and
// on a finished run data-losses (every step's batch loss, a JSON array). #sample has data-state
// idle|sampling|done|error too. #status gets data-ready="1" once WebGPU and the text are loaded.

/// <reference lib="dom" />

import { Runtime } from "../ops/runtime.ts";
import { MatmulTuner, setMatmulTuner } from "../ops/matmul/tune.ts";
import { idbTuneStore } from "./tune_store.ts";
import {
  GPT2_VOCAB_SIZE,
  StreamDecoder,
  type TextTokenizer,
  Tokenizer,
  type TokenizerKind,
  TOKENIZERS,
} from "../lib/tokenizer.ts";
import { Gpt2Tokenizer } from "../lib/bpe.ts";
import { HF_CHARS, HF_CONFIG, HF_WEIGHTS, importHFGpt2 } from "../models/hf_gpt2.ts";
import { GPT } from "../models/gpt.ts";
import { fail, UsageError } from "../lib/errors.ts";
import { decodeText } from "../lib/data.ts";
import {
  type AnyModel,
  buildModel,
  MODEL_KINDS,
  modelBytes,
  type ModelKind,
  parseModelCheckpoint,
} from "../models/checkpoint.ts";
import { defaults, type Eval, generate, type RunConfig, Session } from "./session.ts";
import { fmtTime } from "../train/progress.ts";
import { type ChartSeries, drawChart } from "./chart.ts";

const $ = <T extends HTMLElement = HTMLInputElement>(id: string) => document.getElementById(id) as T;
const status = $<HTMLDivElement>("status");

/** The model that Sample and Download use: the last trained or loaded one. */
interface Current {
  kind: ModelKind;
  model: AnyModel;
  tok: TextTokenizer;
  step: number;
}

let rt: Runtime;
let text = "";
let current: Current | null = null;
let paused = false;

function setStatus(state: "idle" | "training" | "done" | "error", fields: Record<string, string> = {}): void {
  status.dataset.state = state;
  for (const [k, v] of Object.entries(fields)) status.dataset[k] = v;
  status.textContent = state === "error" ? `error: ${fields.error}` : state;
}

function showError(e: unknown): void {
  const msg = e instanceof Error ? e.message : String(e);
  $("message").textContent = msg;
  $("message").classList.add("shown");
  setStatus("error", { error: msg });
}

/** A positive (or, with min 0, non-negative) integer URL parameter / input value. */
function intValue(s: string, name: string, min = 1): number {
  const v = Number(s);
  if (!/^\d+$/.test(s.trim()) || !Number.isSafeInteger(v) || v < min) {
    fail(`${name} must be an integer >= ${min}, got "${s}"`);
  }
  return v;
}

function numValue(s: string, name: string, ok: (x: number) => boolean, range: string): number {
  const v = Number(s);
  if (s.trim() === "" || !ok(v)) fail(`${name} must be ${range}, got "${s}"`);
  return v;
}

/** The run the controls describe. */
function runConfig(): RunConfig {
  const model = $("model").value as ModelKind;
  const d = defaults(model);
  return {
    ...d,
    steps: intValue($("steps").value, "steps"),
    batch: intValue($("batch-size").value, "batch size"),
    lr: numValue($("lr").value, "lr", (x) => x > 0 && x <= 10, "in (0, 10]"),
    seed: intValue($("seed").value, "seed", 0),
    evalInterval: evalOverride.interval ?? d.evalInterval,
    evalIters: evalOverride.iters ?? d.evalIters,
    tokenizer: $<HTMLSelectElement>("tokenizer").value as TokenizerKind,
  };
}
const evalOverride: { interval?: number; iters?: number } = {};

/** Fill the controls from the URL (validated: a bad value is the page's error). */
function applyUrl(q: URLSearchParams): void {
  const model = q.get("model") ?? "gpt";
  if (!MODEL_KINDS.includes(model as ModelKind)) {
    fail(`model must be one of ${MODEL_KINDS.join(", ")}, got "${model}"`);
  }
  setDefaults(model as ModelKind);
  for (
    const [key, id] of [["steps", "steps"], ["batch-size", "batch-size"], ["lr", "lr"], ["seed", "seed"]]
  ) {
    const v = q.get(key);
    if (v !== null) $(id).value = v;
  }
  if (q.get("eval-interval") !== null) {
    evalOverride.interval = intValue(q.get("eval-interval")!, "eval-interval");
  }
  if (q.get("eval-iters") !== null) evalOverride.iters = intValue(q.get("eval-iters")!, "eval-iters");
  const tokenizer = q.get("tokenizer");
  if (tokenizer !== null) {
    if (!TOKENIZERS.includes(tokenizer as TokenizerKind)) {
      fail(`tokenizer must be char or gpt2, got "${tokenizer}"`);
    }
    $("tokenizer").value = tokenizer;
  }
  runConfig(); // validate now, before anything runs
}

function setDefaults(model: ModelKind): void {
  const d = defaults(model);
  $("model").value = model;
  $("steps").value = String(d.steps);
  $("batch-size").value = String(d.batch);
  $("batch-size").disabled = model !== "gpt";
  $("lr").value = String(d.lr);
  $("seed").value = String(d.seed);
}

function setBusy(busy: boolean, training = false): void {
  for (
    const id of [
      "train",
      "sample-btn",
      "download",
      "load",
      "load-hf",
      "model",
      "steps",
      "lr",
      "seed",
      "text-file",
    ]
  ) {
    $(id).disabled = busy || ((id === "sample-btn" || id === "download") && !current);
  }
  $("batch-size").disabled = busy || $("model").value !== "gpt";
  $("tokenizer").disabled = busy || $("model").value !== "gpt";
  $("pause").disabled = !training;
}

async function train(): Promise<void> {
  let cfg: RunConfig;
  try {
    cfg = runConfig();
  } catch (e) {
    return showError(e);
  }
  $("message").classList.remove("shown");
  const session = new Session(rt, cfg, text);
  const batch: [number, number][] = [], trainEv: [number, number][] = [], valEv: [number, number][] = [];
  const series: ChartSeries[] = [
    { name: "batch loss", color: "#b0b0b0", points: batch, width: 1 },
    { name: "train", color: "#1f77b4", points: trainEv, width: 2.5 },
    { name: "val", color: "#d62728", points: valEv, width: 2.5 },
  ];
  const chart = $<HTMLCanvasElement>("chart");
  const redraw = () => drawChart(chart, cfg.model === "gpt" ? series : series.slice(0, 2), cfg.steps);
  redraw();
  paused = false;
  $("pause").textContent = "Pause";
  setBusy(true, true);
  delete status.dataset.losses;
  delete status.dataset.error;
  delete status.dataset.held;
  setStatus("training", { step: "0", loss: "" });
  const floor = session.floor !== undefined ? ` · bigram entropy floor ${session.floor.toFixed(4)}` : "";
  let last = "";
  try {
    const losses = await session.train({
      readEvery: cfg.model === "gpt" ? 1 : 20,
      paused: () => paused,
      onHold: (held) => (status.dataset.held = held ? "1" : "0"),
      onProgress: (p) => {
        p.losses.forEach((l, i) => batch.push([p.step - p.losses.length + 1 + i, l]));
        const loss = p.losses[p.losses.length - 1];
        setStatus("training", { step: String(p.step), loss: String(loss) });
        last = `step ${p.step}/${cfg.steps} · loss ${loss.toFixed(4)} · ${
          Math.round(p.tokensPerSec).toLocaleString("en")
        } tok/s · ETA ${fmtTime(p.etaSec)}`;
        $("stats").textContent = last + floor;
        redraw();
      },
      onEval: (e: Eval) => {
        trainEv.push([e.step, e.train]);
        if (e.val !== undefined) valEv.push([e.step, e.val]);
        $("stats").textContent = `${last || `step ${e.step}`} · eval: train ${e.train.toFixed(4)}${
          e.val !== undefined ? `, val ${e.val.toFixed(4)}` : ""
        }${floor}`;
        redraw();
      },
    });
    current = { kind: cfg.model, model: session.model, tok: session.tok, step: session.step };
    $("model-info").textContent = `trained in this tab: ${cfg.model}, step ${session.step}`;
    setStatus("done", { step: String(session.step), losses: JSON.stringify(losses) });
  } catch (e) {
    showError(e);
  } finally {
    setBusy(false);
  }
}

async function sample(): Promise<void> {
  const out = $<HTMLPreElement>("sample");
  if (!current) return;
  const { model, tok } = current;
  try {
    const temperature = numValue(
      $("temperature").value,
      "temperature",
      (x) => x === 0 || (x >= 1e-6 && x <= 1e6),
      "0 (greedy) or in [1e-6, 1e6]",
    );
    const topK = intValue($("top-k").value, "top-k", 0);
    if (topK > tok.vocabSize) fail(`top-k must be at most the vocabulary size (${tok.vocabSize})`);
    const topP = numValue($("top-p").value, "top-p", (x) => x > 0 && x <= 1, "in (0, 1]");
    const n = intValue($("max-new-tokens").value, "tokens");
    const seed = intValue($("sample-seed").value, "seed", 0);
    const prompt = $("start").value || "\n";
    const start = tok.encode(prompt);
    setBusy(true);
    out.dataset.state = "sampling";
    out.textContent = prompt;
    const stream = new StreamDecoder(tok);
    await generate(model, start, n, {
      temperature,
      topK,
      topP,
      seed,
      onToken: (id) => out.append(stream.push(id)),
    });
    out.append(stream.flush());
    out.dataset.state = "done";
  } catch (e) {
    out.dataset.state = "error";
    out.textContent = `error: ${e instanceof UsageError || e instanceof Error ? e.message : String(e)}`;
  } finally {
    setBusy(false);
  }
}

async function download(): Promise<void> {
  if (!current) return;
  const tok = { kind: current.tok.kind, vocab: current.tok.chars };
  const bytes = await modelBytes(current.kind, current.model, tok, current.step);
  const url = URL.createObjectURL(new Blob([bytes as BlobPart], { type: "application/octet-stream" }));
  const a = Object.assign(document.createElement("a"), { href: url, download: "model.safetensors" });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

async function load(file: File): Promise<void> {
  try {
    const ckpt = parseModelCheckpoint(new Uint8Array(await file.arrayBuffer()), file.name);
    current = {
      kind: ckpt.kind,
      model: buildModel(rt, ckpt),
      tok: ckpt.tokenizer === "gpt2" ? new Gpt2Tokenizer() : new Tokenizer(ckpt.vocab),
      step: ckpt.step,
    };
    const vocab = ckpt.tokenizer === "gpt2" ? "GPT-2 BPE" : `${ckpt.vocab.length} characters`;
    $("model-info").textContent = `loaded ${file.name}: ${ckpt.kind}, step ${ckpt.step}, ${vocab}`;
    $("message").classList.remove("shown");
  } catch (e) {
    showError(e);
  } finally {
    setBusy(false);
  }
}

/** A Hugging Face GPT-2 directory's files, picked together: config.json, model.safetensors (+ tinygpt_chars.json). */
async function loadHF(files: File[]): Promise<void> {
  try {
    const byName = new Map(files.map((f) => [f.name, f]));
    const cfg = byName.get(HF_CONFIG), weights = byName.get(HF_WEIGHTS), chars = byName.get(HF_CHARS);
    if (!cfg || !weights) fail(`pick both ${HF_CONFIG} and ${HF_WEIGHTS} of a Hugging Face GPT-2 directory`);
    const hf = importHFGpt2(
      await cfg!.text(),
      new Uint8Array(await weights!.arrayBuffer()),
      "(picked files)",
      {},
      chars ? await chars.text() : null,
    );
    if (!hf.chars && hf.config.vocabSize < GPT2_VOCAB_SIZE) {
      fail(
        `vocab_size ${hf.config.vocabSize} is below GPT-2's ${GPT2_VOCAB_SIZE} and there is no ${HF_CHARS}`,
      );
    }
    const model = new GPT(rt, hf.config);
    model.params.writeAll(hf.params);
    const tok = hf.chars ? new Tokenizer(hf.chars) : new Gpt2Tokenizer();
    current = { kind: "gpt", model, tok, step: 0 };
    const c = hf.config;
    $("model-info").textContent = `loaded GPT-2: ${c.nLayer} layers, ${c.nHead} heads, n_embd ${c.nEmbd}, ` +
      `${hf.chars ? `${hf.chars.length} characters` : "GPT-2 BPE"}`;
    $("message").classList.remove("shown");
  } catch (e) {
    showError(e);
  } finally {
    setBusy(false);
  }
}

/** What the user needs to get WebGPU, or null when an adapter is there. */
async function missingWebGPU(): Promise<string | null> {
  if (!("gpu" in navigator) || !navigator.gpu) {
    return "This browser does not support WebGPU (navigator.gpu is missing): use a recent Chrome, Edge or " +
      "Safari, or Firefox with WebGPU enabled (on Linux, Chrome needs --enable-unsafe-webgpu).";
  }
  if (!(await navigator.gpu.requestAdapter())) {
    return "This browser supports WebGPU but found no GPU adapter: turn on hardware acceleration in its " +
      "settings, or update the GPU driver.";
  }
  return null;
}

/** WebGPU does not say which implementation runs it; the browser does. */
function browserBackend(): string {
  const ua = navigator.userAgent;
  if (/Firefox\//.test(ua)) return "wgpu (Firefox)";
  if (/Chrome\//.test(ua)) return "Dawn (Chromium)";
  if (/Safari\//.test(ua)) return "WebKit";
  return "browser";
}

async function main(): Promise<void> {
  const q = new URLSearchParams(location.search);
  try {
    applyUrl(q);
  } catch (e) {
    return showError(e);
  }
  $("model").addEventListener("change", () => setDefaults($("model").value as ModelKind));
  drawChart($<HTMLCanvasElement>("chart"), [], 1);
  const missing = await missingWebGPU();
  if (missing) return showError(missing);
  try {
    rt = await Runtime.create({ backend: browserBackend, timestamps: true });
    $("adapter").textContent = `Adapter: ${rt.describe()}.`;
    // The gpu family's matmul autotuner, its choices kept in this origin's IndexedDB (?tune=off: none).
    if (rt.kernels === "gpu" && q.get("tune") !== "off") {
      const store = "indexedDB" in globalThis ? idbTuneStore() : null;
      const mode = q.get("tune") === "force" ? "force" : "on";
      setMatmulTuner(rt, await MatmulTuner.create(rt, { mode, store, log: (l) => console.info(l) }));
    }
    const res = await fetch("data/tinyshakespeare.txt");
    if (!res.ok) fail(`cannot load data/tinyshakespeare.txt: HTTP ${res.status}`);
    text = await res.text();
  } catch (e) {
    return showError(e);
  }
  $("train").addEventListener("click", train);
  $("pause").addEventListener("click", () => {
    paused = !paused;
    $("pause").textContent = paused ? "Resume" : "Pause";
  });
  $("sample-btn").addEventListener("click", sample);
  $("download").addEventListener("click", download);
  $("load").addEventListener("change", () => {
    const f = $("load").files?.[0];
    if (f) load(f);
  });
  $("load-hf").addEventListener("change", () => {
    const fs = [...($("load-hf").files ?? [])];
    if (fs.length) loadHF(fs);
  });
  $("text-file").addEventListener("change", async () => {
    const f = $("text-file").files?.[0];
    if (!f) return;
    try {
      text = decodeText(new Uint8Array(await f.arrayBuffer()), f.name);
      $("text-info").textContent = `${f.name} (${text.length.toLocaleString("en")} characters)`;
      $("message").classList.remove("shown");
    } catch (e) {
      showError(e);
    }
  });
  setBusy(false);
  status.dataset.ready = "1";
  if (q.get("autostart") === "1" || q.get("autostart") === "true") await train();
}

main();
