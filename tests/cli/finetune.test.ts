// Fine-tuning and the Hugging Face round trip from the command line: `--config finetune-gpt2
// --init-from DIR` on a small random GPT-2-shaped directory (GPT-2's 50257-token vocabulary, the BPE
// tokenizer and its token cache), the loss falls and --resume continues exactly; a nanoGPT-architecture
// char model exports with `deno task export`, and sample.ts reads the exported directory like the
// checkpoint it came from; bad directories and unexportable models are one error line.

import assert from "node:assert/strict";
import { deno, fileTempDir, inspect, ROOT, runArgs, sample, TINY, train, writeData } from "./helpers.ts";
import { makeHFDir, writeHFFixture } from "../hf_fixture.ts";

const DIR = await fileTempDir();
const EXPORT = `${ROOT}export.ts`;
const HF = `${DIR}/gpt2-tiny`;
await writeHFFixture(
  HF,
  makeHFDir(
    { vocab: 50257, embd: 16, heads: 2, layers: 1, positions: 32, activation: "gelu_new" },
    "prefixed",
    "F16",
    3,
  ),
);
const TEXT = "First Citizen: Before we proceed any further, hear me speak. All: Speak, speak. ".repeat(12);
const DATA = await writeData(DIR, TEXT);
const FT = [
  "--config=finetune-gpt2",
  `--init-from=${HF}`,
  `--data=${DATA}`,
  "--block-size=16",
  "--grad-accum=1",
  "--lr=1e-2",
  "--eval-interval=4",
  "--eval-iters=2",
  "--log-interval=1",
  "--sample-tokens=0",
];

Deno.test("finetune-gpt2 from a GPT-2 directory: BPE tokens cached, the loss falls, --resume continues exactly", async () => {
  const out = `${DIR}/ft`;
  const r = await train(DIR, [...FT, `--out=${out}`, "--steps=4"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /starting from the Hugging Face GPT-2 in /);
  assert.match(
    r.stdout,
    /data: encoded [\d,]+ GPT-2 tokens in .* tokens\/s\); cached in .*data\.txt\.gpt2\.tokens/,
  );
  assert.match(r.stdout, /activation=gelu bias=true tied_head=true/);
  const a = await inspect(out);
  const [e0, e4] = a.evals as { train: number }[];
  assert.ok(e4.train < e0.train - 0.5, `train loss ${e0.train} -> ${e4.train} should fall`);
  // --resume from step 2 gives the uninterrupted run's steps 3 and 4 bit for bit; this second run
  // reads the cached token ids.
  const part = `${DIR}/ft-part`;
  const p = await train(DIR, [...FT, `--out=${part}`, "--steps=2"]);
  assert.equal(p.code, 0, p.stderr);
  assert.match(p.stdout, /data: [\d,]+ GPT-2 tokens from .*data\.txt\.gpt2\.tokens/);
  const res = await train(DIR, [
    `--data=${DATA}`,
    `--out=${part}`,
    "--resume",
    "--steps=4",
    "--sample-tokens=0",
  ]);
  assert.equal(res.code, 0, res.stderr);
  const b = await inspect(part);
  for (const s of [3, 4]) {
    assert.ok(Object.is(b.losses[s], a.losses[s]), `step ${s}: ${b.losses[s]} vs ${a.losses[s]}`);
  }
  // sample.ts reads the fine-tuned checkpoint with the BPE tokenizer (greedy: GPU sampling).
  const s = await sample(DIR, [
    `--checkpoint=${out}/model.safetensors`,
    "--max-new-tokens=5",
    "--temperature=0",
    "--start=Speak",
  ]);
  assert.equal(s.code, 0, s.stderr);
  assert.ok(s.stdout.startsWith("Speak") && s.stdout.length > 6, s.stdout);
});

Deno.test("export a nanoGPT-architecture char model; sample.ts reads the directory as the checkpoint", async () => {
  const out = `${DIR}/nano`;
  const charData = await writeData(`${DIR}`, TEXT);
  const t = await train(DIR, [...TINY, "--arch=nanogpt", `--data=${charData}`, `--out=${out}`, "--steps=3"]);
  assert.equal(t.code, 0, t.stderr);
  const hf = `${DIR}/nano-hf`;
  const e = await deno(runArgs(EXPORT, DIR, [`--checkpoint=${out}/model.safetensors`, `--out=${hf}`]));
  assert.equal(e.code, 0, e.stderr);
  assert.match(e.stdout, /wrote .*config\.json and .*model\.safetensors and tinygpt_chars\.json/);
  // (The test runner may not read /tmp: a child reads the config.)
  const c = await deno([
    "eval",
    `console.log(Deno.readTextFileSync(${JSON.stringify(`${hf}/config.json`)}))`,
  ]);
  const cfg = JSON.parse(c.stdout);
  assert.equal(cfg.model_type, "gpt2");
  assert.equal(cfg.activation_function, "gelu");
  const opts = ["--max-new-tokens=20", "--temperature=0", "--start=Speak"];
  const a = await sample(DIR, [`--checkpoint=${out}/model.safetensors`, ...opts]);
  const b = await sample(DIR, [`--checkpoint=${hf}`, ...opts]);
  assert.equal(a.code, 0, a.stderr);
  assert.equal(b.code, 0, b.stderr);
  assert.equal(b.stdout, a.stdout);
  // The course model (own head with a bias) is refused in one line.
  const course = `${DIR}/course`;
  assert.equal((await train(DIR, [...TINY, `--data=${charData}`, `--out=${course}`, "--steps=1"])).code, 0);
  const bad = await deno(
    runArgs(EXPORT, DIR, [`--checkpoint=${course}/model.safetensors`, `--out=${DIR}/x`]),
  );
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^error: .*cannot be exported as GPT-2: its head is not tied/);
  assert.equal(bad.stderr.trim().split("\n").length, 1);
});

Deno.test("bad Hugging Face directories: one error line, exit 2", async () => {
  const empty = `${DIR}/empty-dir`;
  await Deno.mkdir(empty);
  const bad = `${DIR}/bad-act`;
  const f = makeHFDir({ vocab: 50257, embd: 8, heads: 2, layers: 1, positions: 8, activation: "gelu_new" });
  await writeHFFixture(bad, {
    ...f,
    configText: JSON.stringify({ ...f.config, activation_function: "swish" }),
  });
  for (
    const [args, re] of [
      [
        [...FT, `--init-from=${empty}`, `--out=${DIR}/o1`],
        /is not a Hugging Face GPT-2 directory: .*config\.json is missing/,
      ],
      [[...FT, `--init-from=${bad}`, `--out=${DIR}/o2`], /activation_function "swish" is not supported/],
      [["--config=finetune-gpt2", `--data=${DATA}`, `--out=${DIR}/o3`], /finetune-gpt2 needs --init-from/],
      [[...FT, "--n-layer=3", `--out=${DIR}/o4`], /--n-layer does not apply with --init-from/],
    ] as [string[], RegExp][]
  ) {
    const r = await train(DIR, args);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, re);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  }
  const s = await sample(DIR, [`--checkpoint=${empty}`]);
  assert.equal(s.code, 2);
  assert.match(s.stderr, /is not a Hugging Face GPT-2 directory/);
});
