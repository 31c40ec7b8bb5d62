// Decoding speed of two or more source trees of this project, timed interleaved in one process (so
// the machine's load hits every tree alike): lecture config, random-init weights, KV cache and GPU
// sampling, medians over --rounds. Compare against an older commit with
//
//   git archive 7f1a9e9 | tar -x -C /tmp/base
//   deno run --allow-read=.,/tmp/base --allow-env --allow-sys=loadavg bench/decode_ab.ts --trees /tmp/base,.

import { fail, type FlagSpec, intFlag, parseFlags, runMain } from "../lib/cli.ts";

const USAGE = `Decoding speed (chars/s) of several source trees, interleaved in one process.

Usage: deno run --allow-read=.,TREE --allow-env [--allow-sys=loadavg] bench/decode_ab.ts --trees TREE,TREE [flags]`;

const FLAGS: FlagSpec[] = [
  { name: "trees", type: "string", help: "comma-separated project folders to compare (required)" },
  {
    name: "rounds",
    type: "string",
    default: "3",
    help: "timed runs of each case per tree (median reported)",
  },
];

const CASES: { name: string; chars: number; samples: number }[] = [
  { name: "1 -> 31", chars: 31, samples: 1 },
  { name: "1 -> 500", chars: 500, samples: 1 },
  { name: "8 samples, 1 -> 8 x 500", chars: 500, samples: 8 },
];

interface Decoding {
  generateBatch(start: number[], n: number, samples: number, opts: object): Promise<number[][]>;
}

async function load(tree: string): Promise<Decoding> {
  const base = new URL(`${tree.replace(/\/$/, "")}/`, `file://${Deno.cwd()}/`);
  const { Runtime } = await import(new URL("ops/runtime.ts", base).href);
  const { GPT, GPT_REFERENCE } = await import(new URL("models/gpt.ts", base).href);
  return new GPT(await Runtime.create(), { vocabSize: 65, ...GPT_REFERENCE }, 1337);
}

async function main(): Promise<void> {
  const { values: v } = parseFlags(Deno.args, FLAGS, USAGE);
  const trees = String(v.trees ?? "").split(",").filter((t) => t);
  if (trees.length < 1) fail("--trees needs at least one project folder (see --help)");
  const rounds = intFlag(v.rounds, "rounds", { min: 1, max: 100 });
  const models = await Promise.all(trees.map(load));
  const opts = { temperature: 0.8, seed: 1 };
  const secs = trees.map(() => CASES.map((): number[] => []));
  for (let r = 0; r < rounds; r++) {
    for (const [i, m] of models.entries()) {
      for (const [j, c] of CASES.entries()) {
        await m.generateBatch([1], 3, c.samples, opts); // compiles the pipelines, allocates
        const t0 = performance.now();
        await m.generateBatch([1], c.chars, c.samples, opts);
        secs[i][j].push((performance.now() - t0) / 1000);
      }
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  for (const [j, c] of CASES.entries()) {
    for (const [i, tree] of trees.entries()) {
      const s = median(secs[i][j]);
      console.log(
        `${c.name.padEnd(24)} ${tree.padEnd(24)} ${s.toFixed(2).padStart(6)} s ${
          ((c.chars * c.samples) / s).toFixed(0).padStart(5)
        } chars/s  (all: ${secs[i][j].map((x) => x.toFixed(2)).join(" ")})`,
      );
    }
  }
  // Only where --allow-sys=loadavg grants it: asking on a terminal would stop the run at its end.
  if (Deno.permissions.querySync({ name: "sys", kind: "loadavg" }).state === "granted") {
    console.log(`load average ${Deno.loadavg().map((x) => x.toFixed(1)).join(" ")}`);
  }
}

if (import.meta.main) runMain(main);
