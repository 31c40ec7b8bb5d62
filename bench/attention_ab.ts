// Attention forward and backward speed of two or more source trees of this project, timed
// interleaved in one process (so the machine's load hits every tree alike): ms per call at the
// nanogpt-char head shape (T 256, C 384, H 6, dropout 0.2) for batches 1 to 4 by default, medians
// over --rounds. Trees from before flash attention (probs / dscores of [B, H, T, T]) are run
// through their own signature. Compare against an older commit with
//
//   git archive 77e770c | tar -x -C /tmp/base
//   deno run --allow-read=.,/tmp/base --allow-env bench/attention_ab.ts --trees /tmp/base,.

import { fail, type FlagSpec, intFlag, parseFlags, runMain } from "../lib/cli.ts";

const USAGE = `Attention fwd/bwd ms per call of several source trees, interleaved in one process.

Usage: deno run --allow-read=.,TREE --allow-env bench/attention_ab.ts --trees TREE,TREE [flags]`;

const FLAGS: FlagSpec[] = [
  { name: "trees", type: "string", help: "comma-separated project folders to compare (required)" },
  { name: "batches", type: "string", default: "1,2,3,4", help: "comma-separated batch sizes" },
  { name: "block", type: "string", default: "256", help: "sequence length T" },
  { name: "embd", type: "string", default: "384", help: "C" },
  { name: "heads", type: "string", default: "6", help: "H" },
  { name: "kernels", type: "string", default: "auto", help: "kernel family: auto, gpu or cpu" },
  {
    name: "rounds",
    type: "string",
    default: "5",
    help: "timed calls of each case per tree (median reported)",
  },
];

// deno-lint-ignore no-explicit-any
type Any = any;

interface Tree {
  rt: Any;
  Tensor: Any;
  fwd: Any;
  bwd: Any;
  flash: boolean;
}

async function load(tree: string, kernels: string): Promise<Tree> {
  const base = new URL(`${tree.replace(/\/$/, "")}/`, `file://${Deno.cwd()}/`);
  const { Runtime } = await import(new URL("ops/runtime.ts", base).href);
  const { Tensor } = await import(new URL("ops/tensor.ts", base).href);
  const a = await import(new URL("ops/attention.ts", base).href);
  const rt = await Runtime.create({ kernels });
  // The flash API takes (dout, qkv, out, lse, dqkv, delta, ...): one argument more.
  return {
    rt,
    Tensor,
    fwd: a.attentionForward,
    bwd: a.attentionBackward,
    flash: a.attentionBackward.length === 15,
  };
}

/** Build the case's buffers on tree `t`; returns closures running one forward / one backward. */
function setup(t: Tree, B: number, T: number, C: number, H: number) {
  const { rt, Tensor } = t;
  const rnd = (n: number) => Float32Array.from({ length: n }, () => Math.random() - 0.5);
  const qkv = Tensor.from(rt, rnd(B * T * 3 * C)), dout = Tensor.from(rt, rnd(B * T * C));
  const out = Tensor.empty(rt, [B * T * C]), dqkv = Tensor.empty(rt, [B * T * 3 * C]);
  const stat = Tensor.empty(rt, [t.flash ? B * H * T : B * H * T * T]);
  const scratch = Tensor.empty(rt, [t.flash ? B * H * T : B * H * T * T]);
  const state = Tensor.from(rt, new Uint32Array([1, 1, 0, 0]), [4]);
  const p = 0.2;
  return {
    fwd: () => t.fwd(rt, qkv, out, stat, B, T, C, H, p, state, 0, true),
    bwd: () =>
      t.flash
        ? t.bwd(rt, dout, qkv, out, stat, dqkv, scratch, B, T, C, H, p, state, 0, true)
        : t.bwd(rt, dout, qkv, stat, dqkv, scratch, B, T, C, H, p, state, 0, true),
  };
}

async function time(rt: Any, f: () => void): Promise<number> {
  const t0 = performance.now();
  f();
  await rt.sync();
  return performance.now() - t0;
}

async function main(): Promise<void> {
  const { values: v } = parseFlags(Deno.args, FLAGS, USAGE);
  const trees = String(v.trees ?? "").split(",").filter((t) => t);
  if (trees.length < 1) fail("--trees needs at least one project folder (see --help)");
  const rounds = intFlag(v.rounds, "rounds", { min: 1, max: 100 });
  const T = intFlag(v.block, "block", { min: 1 }), C = intFlag(v.embd, "embd", { min: 1 });
  const H = intFlag(v.heads, "heads", { min: 1 });
  const batches = String(v.batches).split(",").map((b) => intFlag(b, "batches", { min: 1 }));
  const loaded = [];
  for (const tree of trees) loaded.push(await load(tree, String(v.kernels)));
  console.log(`kernels ${loaded[0].rt.kernels}, T ${T}, C ${C}, H ${H}, dropout 0.2`);
  for (const B of batches) {
    const cases = loaded.map((t) => setup(t, B, T, C, H));
    for (const [i, c] of cases.entries()) { // compile, warm up
      await time(loaded[i].rt, c.fwd);
      await time(loaded[i].rt, c.bwd);
    }
    const ms = cases.map(() => ({ fwd: [] as number[], bwd: [] as number[] }));
    for (let r = 0; r < rounds; r++) {
      for (const [i, c] of cases.entries()) {
        ms[i].fwd.push(await time(loaded[i].rt, c.fwd));
        ms[i].bwd.push(await time(loaded[i].rt, c.bwd));
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    for (const [i, tree] of trees.entries()) {
      console.log(
        `B ${B}  ${tree.padEnd(20)} fwd ${median(ms[i].fwd).toFixed(1).padStart(7)} ms  bwd ${
          median(ms[i].bwd).toFixed(1).padStart(7)
        } ms  (${loaded[i].flash ? "flash" : "probs"})`,
      );
    }
  }
}

if (import.meta.main) runMain(main);
