// metrics.jsonl and loss.svg: one JSON line per loss readback ({step, loss, losses}) and per eval
// ({step, eval}), and the plot of both. A resumed run keeps the lines up to its step (a killed run
// may have logged steps after its last checkpoint; those steps run again) and plots them too.

import { join } from "node:path";
import { appendLine, atomicWrite, writing } from "../lib/fsutil.ts";
import { lossSvg } from "../lib/plot.ts";

export interface EvalResult {
  train: number;
  val?: number;
}

interface MetricsLine {
  step: number;
  eval?: { step: number } & EvalResult;
  losses?: number[];
}

/** metrics.jsonl lines up to `upTo` (later ones belong to steps the checkpoint does not have). */
async function readMetrics(path: string, upTo: number): Promise<{ raw: string[]; parsed: MetricsLine[] }> {
  let text = "";
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const raw: string[] = [], parsed: MetricsLine[] = [];
  for (const line of text.split("\n")) {
    let m: MetricsLine;
    try {
      m = JSON.parse(line);
    } catch {
      continue; // empty, or the torn last line of a killed run
    }
    if (typeof m?.step !== "number" || m.step > upTo) continue;
    raw.push(line);
    parsed.push(m);
  }
  return { raw, parsed };
}

export class Metrics {
  readonly path: string;
  readonly plotPath: string;
  private readonly evals: ({ step: number } & EvalResult)[] = [];
  private readonly batchLosses: [number, number][] = [];

  constructor(readonly out: string, readonly title: string) {
    this.path = join(out, "metrics.jsonl");
    this.plotPath = join(out, "loss.svg");
  }

  /** Start the file: empty for a new run, cut back to `resumeStep` for a resumed one. */
  async start(resumeStep: number | null): Promise<void> {
    const prior = resumeStep !== null ? await readMetrics(this.path, resumeStep) : { raw: [], parsed: [] };
    for (const m of prior.parsed) {
      if (m.eval) this.evals.push(m.eval);
      if (Array.isArray(m.losses)) {
        m.losses.forEach((l, i) => this.batchLosses.push([m.step - m.losses!.length + 1 + i, l]));
      }
    }
    await writing(this.path, () => atomicWrite(this.path, prior.raw.map((l) => l + "\n").join("")));
  }

  /** Per-step losses of steps firstStep .. firstStep + losses.length - 1. */
  async losses(firstStep: number, losses: number[]): Promise<void> {
    losses.forEach((l, i) => this.batchLosses.push([firstStep + i, l]));
    const step = firstStep + losses.length - 1;
    const line = JSON.stringify({ step, loss: losses[losses.length - 1], losses });
    await writing(this.path, () => appendLine(this.path, line));
  }

  async eval(step: number, r: EvalResult): Promise<void> {
    this.evals.push({ step, ...r });
    await writing(this.path, () => appendLine(this.path, JSON.stringify({ step, eval: { step, ...r } })));
  }

  async plot(): Promise<void> {
    const series = [{ name: "batch loss", points: this.batchLosses, color: "#bbb" }];
    series.push({
      name: "train",
      points: this.evals.map((e) => [e.step, e.train] as [number, number]),
      color: "#1f77b4",
    });
    if (this.evals.some((e) => e.val !== undefined)) {
      series.push({
        name: "val",
        points: this.evals.map((e) => [e.step, e.val!] as [number, number]),
        color: "#d62728",
      });
    }
    await writing(this.plotPath, () => atomicWrite(this.plotPath, lossSvg(series, this.title)));
  }
}
