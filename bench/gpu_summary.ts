// bench/gpu.sh's summary: every `<config>-<family>.json` the bench wrote into DIR, as one table
// (config x family: ms/step, dispatches/step, workgroup sizes, GFLOP/s, allocations; PyTorch CUDA
// where it ran) on stdout and as DIR/summary.json, then the matmul tuning table of the gpu runs: per
// shape class the winning variant's GFLOP/s against today's kernel (64x64 k8 4x4). A run that wrote nothing (timed out, failed) is
// listed as missing, with the last line of its log.
//
// Usage: deno run --allow-read=DIR --allow-write=DIR bench/gpu_summary.ts DIR

import { join } from "node:path";

interface Row {
  config: string;
  family: string;
  adapter: string;
  batch: number | null;
  msPerStep: number | null;
  dispatchesPerStep: number | null;
  workgroupSizes: string;
  gflops: number | null;
  allocsAfterFirstStep: number | null;
  note: string;
}

const fmt = (x: number | null, d = 1) => (x === null || !Number.isFinite(x) ? "-" : x.toFixed(d));

/** One shape class of a bench's `tuning` table. */
interface Tuned {
  config: string;
  shape: string;
  winner: string;
  gflops: number;
  today: number | null;
}

async function main(dir: string): Promise<void> {
  const rows: Row[] = [];
  const tuned: Tuned[] = [];
  for (const config of ["lecture", "nanogpt-char"]) {
    for (const family of ["gpu", "cpu"]) {
      const name = `${config}-${family}`;
      let j;
      try {
        j = JSON.parse(await Deno.readTextFile(join(dir, `${name}.json`)));
      } catch {
        const log = await Deno.readTextFile(join(dir, `${name}.log`)).catch(() => "");
        const last = log.trimEnd().split("\n").pop() ?? "";
        rows.push({
          config,
          family,
          adapter: "",
          batch: null,
          msPerStep: null,
          dispatchesPerStep: null,
          workgroupSizes: "",
          gflops: null,
          allocsAfterFirstStep: null,
          note: `no result: ${last.trim() || "not run"}`,
        });
        continue;
      }
      const c = j.configs[0];
      for (const t of j.tuning ?? []) {
        const g = (v: string) =>
          t.candidates.find((x: { variant: string }) => x.variant === v)?.gflops ?? null;
        tuned.push({
          config,
          shape: t.shape,
          winner: t.winner,
          gflops: g(t.winner),
          today: g("64x64 k8 4x4"),
        });
      }
      rows.push({
        config,
        family: c.family,
        adapter: j.adapter.description,
        batch: c.training.batch,
        msPerStep: c.msPerStep,
        dispatchesPerStep: c.dispatchesPerStep,
        workgroupSizes: `${c.workgroupSizes.min}..${c.workgroupSizes.max}`,
        gflops: c.step.gflops,
        allocsAfterFirstStep: Object.values(c.alloc as Record<string, number>).reduce((a, b) => a + b, 0),
        note: c.note,
      });
      const t = c.torch?.result;
      if (t) {
        rows.push({
          config,
          family: `torch ${t.device}`,
          adapter: "",
          batch: c.training.batch,
          msPerStep: t.ms_per_step_median,
          dispatchesPerStep: null,
          workgroupSizes: "",
          gflops: c.step.flops.total / t.ms_per_step_median / 1e6,
          allocsAfterFirstStep: null,
          note: `PyTorch ${t.torch} eager, median of ${t.steps}`,
        });
      } else if (c.torch?.error) {
        rows.push({ ...rows[rows.length - 1], family: "torch", msPerStep: null, note: c.torch.error });
      }
    }
  }
  const adapter = rows.find((r) => r.adapter)?.adapter ?? "no adapter";
  console.log(`\nsummary: ${adapter}`);
  const head = [
    "config",
    "family",
    "batch",
    "ms/step",
    "dispatches",
    "workgroup",
    "GFLOP/s",
    "allocs",
    "note",
  ];
  const w = [14, 34, 6, 10, 11, 10, 9, 7, 0];
  const line = (cells: string[]) =>
    cells.map((c, i) => (i < 2 ? c.padEnd(w[i]) : c.padStart(w[i]))).join(" ");
  console.log(line(head));
  for (const r of rows) {
    console.log(line([
      r.config,
      r.family,
      r.batch === null ? "-" : String(r.batch),
      fmt(r.msPerStep),
      r.dispatchesPerStep === null ? "-" : String(r.dispatchesPerStep),
      r.workgroupSizes || "-",
      fmt(r.gflops, 1),
      r.allocsAfterFirstStep === null ? "-" : String(r.allocsAfterFirstStep),
      r.note,
    ]));
  }
  if (tuned.length) {
    console.log(`\nmatmul tuning (gpu family, GFLOP/s): winner per shape class vs today's 64x64 k8 4x4`);
    for (const t of tuned) {
      const x = t.today ? ` x${(t.gflops / t.today).toFixed(2)}` : "";
      console.log(
        `${t.config.padEnd(13)} ${t.shape.padEnd(44)} ${t.winner.padEnd(26)} ${fmt(t.gflops)} (today ${
          fmt(t.today)
        })${x}`,
      );
    }
  }
  await Deno.writeTextFile(
    join(dir, "summary.json"),
    JSON.stringify({ adapter, rows, tuned }, null, 2) + "\n",
  );
}

if (import.meta.main) {
  const dir = Deno.args[0];
  if (!dir) {
    console.error("usage: bench/gpu_summary.ts DIR");
    Deno.exit(2);
  }
  await main(dir);
}
