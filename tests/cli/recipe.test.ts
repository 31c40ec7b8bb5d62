// The nanoGPT-style recipe through the CLI: presets and JSON config files, the resolved config printed
// and stored in both checkpoint files, and --resume staying exact with the lr schedule, clipping,
// decay groups and gradient accumulation all on (10 steps + --resume to 20 == 20 steps straight).

import assert from "node:assert/strict";
import {
  assertSameLosses,
  assertUserError,
  fileTempDir,
  inspect,
  type Inspection,
  resumeArgs,
  TINY,
  train,
  writeData,
} from "./helpers.ts";

const ROOT_DIR = await fileTempDir();
const DATA = await writeData(ROOT_DIR);
const STEPS = 20;
/** Everything on: warm-up into a cosine, clipping, matmul-only decay, 2 micro-batches, dropout. */
const RECIPE = [
  "--lr=3e-3",
  "--warmup-iters=4",
  "--lr-decay-iters=16",
  "--min-lr=3e-4",
  "--beta2=0.99",
  "--weight-decay=0.1",
  "--decay-params=matmul",
  "--grad-clip=0.5",
  "--grad-accum=2",
];
const RUN = [`--data=${DATA}`, ...TINY, "--dropout=0.1", "--eval-interval=5", "--log-interval=3", ...RECIPE];

async function trainOk(out: string, extra: string[]): Promise<{ info: Inspection; stdout: string }> {
  const r = await train(ROOT_DIR, [...RUN, `--out=${out}`, ...extra]);
  assert.equal(r.code, 0, `train ${extra.join(" ")}: ${r.stderr}`);
  assert.equal(r.stderr, "");
  return { info: await inspect(out), stdout: r.stdout };
}

Deno.test("10 steps + --resume to 20 == 20 straight, with schedule, clipping, decay groups and accumulation", async () => {
  const [a, plain] = await Promise.all([
    trainOk(`${ROOT_DIR}/straight`, [`--steps=${STEPS}`]),
    train(ROOT_DIR, [`--data=${DATA}`, ...TINY, "--eval-interval=5", `--out=${ROOT_DIR}/plain`, "--steps=3"]),
  ]);
  assert.equal(plain.code, 0, plain.stderr);
  // The resolved config is printed, and stored in both files.
  assert.match(
    a.stdout,
    /^config lecture: gpt .* warmup_iters=4 lr_decay_iters=16 min_lr=0\.0003 grad_clip=0\.5 .*beta2=0\.99 weight_decay=0\.1 decay_params=matmul .*grad_accum=2$/m,
  );
  assert.equal(a.info.resume?.settings?.["grad-accum"], 2);
  assert.equal(a.info.model?.trainConfig?.["decay-params"], "matmul");
  // Without a terminal, a progress line at every loss readback: after --log-interval (3) steps, and at
  // each eval (every 5), which starts the next interval.
  const progress = [...a.stdout.matchAll(/^step (\d+)\/20 {2}loss/gm)].map((m) => Number(m[1]));
  assert.deepEqual(progress, [3, 5, 8, 10, 13, 15, 18, 20]);

  const out = `${ROOT_DIR}/resumed`;
  await trainOk(out, ["--steps=10"]);
  // The resume names none of the recipe's flags: the checkpoint supplies them.
  const r = await train(ROOT_DIR, resumeArgs(DATA, out, STEPS));
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /grad_clip=0\.5 .*decay_params=matmul .*grad_accum=2/);
  const b = await inspect(out);
  assertSameLosses(b, a.info, "resumed with the recipe", STEPS);
  assert.deepEqual(b.evals, a.info.evals);
  assert.equal(b.model?.sha256, a.info.model?.sha256, "same final weights");
  // ... and the recipe is not a no-op: the plain lecture run differs from the first step on.
  const p = await inspect(`${ROOT_DIR}/plain`);
  assert.notEqual(p.losses[1], a.info.losses[1]);
});

Deno.test("--config nanogpt-char: the preset's values, explicit flags override, JSON files hold any flags", async () => {
  const out = `${ROOT_DIR}/preset`;
  // nanogpt-char shrunk to the tiny model by explicit flags: the rest of the preset stays.
  const r = await train(ROOT_DIR, [
    `--data=${DATA}`,
    "--config=nanogpt-char",
    ...TINY,
    "--steps=2",
    "--eval-interval=2",
    "--log-interval=1",
    `--out=${out}`,
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stdout,
    /^config nanogpt-char: gpt n_embd=16 n_head=2 n_layer=1 block_size=8 dropout=0\.2 activation=gelu_erf bias=false tied_head=true embd_dropout=true init=gpt2 steps=2 adamw lr=0\.001 warmup_iters=100 lr_decay_iters=5000 min_lr=0\.0001 grad_clip=1 seed=1337 beta1=0\.9 beta2=0\.99 weight_decay=0\.1 decay_params=2d batch_size=4 grad_accum=1$/m,
  );
  assert.equal((await inspect(out)).resume?.settings?.config, "nanogpt-char");

  const file = `${ROOT_DIR}/recipe.json`;
  await Deno.writeTextFile(
    file,
    JSON.stringify({
      config: "nanogpt-char",
      "n-embd": 16,
      "n-head": 2,
      "n-layer": 1,
      "block-size": 8,
      "batch-size": 4,
      "grad-clip": 2,
    }),
  );
  const f = await train(ROOT_DIR, [
    `--data=${DATA}`,
    `--config=${file}`,
    "--eval-iters=1",
    "--sample-tokens=0",
    "--steps=1",
    "--grad-clip=3", // the command line beats the file
    `--out=${ROOT_DIR}/file`,
  ]);
  assert.equal(f.code, 0, f.stderr);
  assert.match(
    f.stdout,
    /^config .*recipe\.json: gpt n_embd=16 .*dropout=0\.2 .*warmup_iters=100 .*grad_clip=3 /m,
  );

  await Deno.writeTextFile(`${ROOT_DIR}/bad.json`, JSON.stringify({ "n-embd": 16, "learning-rate": 1 }));
  for (
    const [arg, re] of [
      [`--config=${ROOT_DIR}/bad.json`, /--config: .*bad\.json: unknown flag "learning-rate"/],
      [
        `--config=${ROOT_DIR}/none.json`,
        /--config: .*none\.json is neither a preset \(lecture, nanogpt-char, finetune-gpt2\) nor a file/,
      ],
      [
        "--config=lecture --warmup-iters=10 --lr-decay-iters=10",
        /--lr-decay-iters \(10\) must be larger than/,
      ],
      ["--config=lecture --min-lr=0.1", /--min-lr must be <= 0\.001, got 0\.1/],
      ["--model=bigram-onehot --grad-accum=2", /--grad-accum applies only to --model gpt/],
      ["--optimizer=sgd --beta2=0.9", /--beta2 applies only to --optimizer adamw, not sgd/],
      ["--decay-params=some", /--decay-params must be one of "all", "matmul", "2d"/],
    ] as const
  ) {
    const res = await train(ROOT_DIR, [`--data=${DATA}`, ...arg.split(" "), `--out=${ROOT_DIR}/bad`]);
    assertUserError(res, re, arg);
  }
});
