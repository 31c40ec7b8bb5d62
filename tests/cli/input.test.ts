// Bad command lines and bad data: train.ts and sample.ts exit 2 with ONE `error: ...` line naming the
// problem, before touching the GPU. Each case is a child `deno run` with the tasks' narrow permissions.

import { MAX_HS } from "../../ops/attention.ts";
import {
  assertUserError,
  corpus,
  inspect,
  pool,
  sample,
  tempDir,
  TINY,
  train,
  VOCAB,
  writeCheckpoint,
  writeData,
} from "./helpers.ts";

Deno.test("train.ts: bad flags are one-line usage errors (exit 2)", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const data = await writeData(dir);
    const base = [`--data=${data}`, `--out=${dir}/out`, ...TINY, "--steps=2"];
    const cases: [string[], RegExp][] = [
      [["--steps=0"], /--steps must be >= 1, got 0/],
      [["--steps=1.5"], /--steps must be an integer, got "1\.5"/],
      [["--steps=-3"], /--steps must be >= 1/],
      [["--batch-size=0"], /--batch-size must be >= 1/],
      [["--batch-size=2.5"], /--batch-size must be an integer/],
      [["--block-size=0"], /--block-size must be >= 1/],
      [["--block-size=1e3"], /--block-size must be an integer/],
      [["--block-size=2000000"], /--block-size must be <= 1048576/],
      [["--kernels=fast"], /--kernels must be one of "gpu", "cpu", "auto", got "fast"/],
      [["--bogus"], /unknown flag --bogus/],
      [["--lr"], /--lr needs a value/],
      [["stray"], /unexpected argument "stray"/],
      [["--model=transformer"], /--model must be one of "gpt", "bigram-onehot", "bigram-embedding"/],
      [["--optimizer=adam"], /--optimizer must be one of "sgd", "adamw"/],
      [["--n-embd=15"], /--n-embd \(15\) must be divisible by --n-head \(2\)/],
      [
        [`--n-embd=${2 * MAX_HS}`, "--n-head=1"],
        new RegExp(`head size, ${2 * MAX_HS}\\) must be at most ${MAX_HS}`),
      ],
      [[`--out=${data}`], /--out: .*data\.txt exists and is not a directory/],
      [["--lr=-1"], /--lr must be > 0/],
      [["--lr=nan"], /--lr must be a finite number/],
      [["--dropout=1"], /--dropout must be < 1/],
    ];
    await pool(cases, 3, async ([extra, re]) => {
      assertUserError(await train(dir, [...base, ...extra]), re, extra.join(" "));
    });
    assertUserError(
      await train(dir, [`--data=${data}`, `--out=${dir}/out`, "--model=bigram-onehot", "--block-size=4"]),
      /--block-size applies only to --model gpt, not bigram-onehot/,
    );
  } finally {
    await cleanup();
  }
});

Deno.test("train.ts: missing, empty, non-UTF-8 or too short data is a one-line usage error", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    await Deno.writeFile(`${dir}/empty.txt`, new Uint8Array(0));
    await Deno.writeFile(`${dir}/latin1.txt`, new Uint8Array([0x63, 0x61, 0x66, 0xe9, 0x0a])); // "café" in Latin-1
    await Deno.writeTextFile(`${dir}/short.txt`, "abcdefghijklmnopqrstuvwxyz0123"); // val split: 3 < 9
    await Deno.writeTextFile(`${dir}/tiny.txt`, "abcdefgh"); // train split: 7 < 9
    await Deno.writeTextFile(`${dir}/one.txt`, "x");
    await Deno.mkdir(`${dir}/folder.txt`);
    const cases: [string[], RegExp][] = [
      [[`--data=${dir}/nope.txt`], /data file not found: .*nope\.txt/],
      [[`--data=${dir}/empty.txt`], /data file is empty: .*empty\.txt/],
      [[`--data=${dir}/latin1.txt`], /data file is not valid UTF-8: .*latin1\.txt/],
      [[`--data=${dir}/folder.txt`], /data file is a directory/],
      [[`--data=${dir}/short.txt`], /the val split .* has 3 characters, fewer than block size \+ 1 = 9/],
      [[`--data=${dir}/tiny.txt`], /the train split .* has 7 characters, fewer than block size \+ 1 = 9/],
      [
        [`--data=${dir}/one.txt`, "--model=bigram-onehot"],
        /has 1 character; a bigram model needs at least 2/,
      ],
    ];
    await pool(cases, 3, async ([extra, re]) => {
      const model = extra.some((a) => a.startsWith("--model")) ? [] : TINY;
      assertUserError(
        await train(dir, [`--out=${dir}/out`, "--steps=2", "--sample-tokens=0", ...model, ...extra]),
        re,
        extra.join(" "),
      );
    });
  } finally {
    await cleanup();
  }
});

Deno.test("sample.ts: bad flags and prompts are one-line usage errors (exit 2)", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    await writeCheckpoint(dir);
    const ck = `--checkpoint=${dir}/model.safetensors`;
    const cases: [string[], RegExp][] = [
      [["--start=zebra QX"], /--start: characters not in the vocabulary of .*: "z", "b", "Q", "X"/],
      [["--start="], /--start must contain at least one character/],
      [["--temperature=-1"], /--temperature must be >= 0, got -1/],
      [["--temperature=nan"], /--temperature must be a finite number, got "nan"/],
      [["--temperature=1e-9"], /--temperature must be 0 \(greedy\) or at least 1e-6/],
      [["--top-k=-1"], /--top-k must be >= 0, got -1/],
      [["--top-k=1.5"], /--top-k must be an integer/],
      [
        [`--top-k=${VOCAB.length + 1}`],
        new RegExp(`--top-k must be at most the vocabulary size \\(${VOCAB.length}\\)`),
      ],
      [["--top-p=0"], /--top-p must be > 0, got 0/],
      [["--top-p=1.5"], /--top-p must be <= 1, got 1\.5/],
      [["--top-p=-0.1"], /--top-p must be > 0/],
      [["--max-new-tokens=-1"], /--max-new-tokens must be >= 0/],
      [["--max-new-tokens=ten"], /--max-new-tokens must be an integer/],
      [["--seed=-1"], /--seed must be >= 0/],
      [["--nucleus=0.9"], /unknown flag --nucleus/],
    ];
    await pool(cases, 3, async ([extra, re]) => {
      assertUserError(await sample(dir, [ck, "--max-new-tokens=3", ...extra]), re, extra.join(" "));
    });
  } finally {
    await cleanup();
  }
});

Deno.test("train.ts --resume: flags that contradict the checkpoint are refused (exit 2)", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const data = await writeData(dir);
    await writeCheckpoint(`${dir}/out`); // tiny GPT, block size 8, SGD, from the same text
    const base = [`--data=${data}`, `--out=${dir}/out`, "--resume", "--steps=9", "--sample-tokens=0"];
    const cases: [string[], RegExp][] = [
      [["--block-size=16"], /--resume: --block-size 16 contradicts the checkpoint in .* \(block size 8\)/],
      [["--block-size=4"], /--resume: --block-size 4 contradicts .* \(block size 8\)/],
      [["--n-layer=2"], /--resume: --n-layer 2 contradicts .* \(n_layer 1\)/],
      [["--n-embd=32"], /--resume: --n-embd 32 contradicts .* \(n_embd 16\)/],
      [["--n-head=4"], /--resume: --n-head 4 contradicts .* \(n_head 2\)/],
      [["--dropout=0.2"], /--resume: --dropout 0\.2 contradicts .* \(dropout 0\.1\)/],
      [["--model=bigram-onehot"], /--resume: --model bigram-onehot contradicts .* \(a gpt model\)/],
      [["--optimizer=adamw"], /--resume: --optimizer adamw contradicts .* \(trained with sgd\)/],
    ];
    await pool(cases, 3, async ([extra, re]) => {
      assertUserError(await train(dir, [...base, ...extra]), re, extra.join(" "));
    });
    // Other text than the checkpoint was trained on.
    await Deno.writeTextFile(`${dir}/other.txt`, corpus() + " Zebra!");
    assertUserError(
      await train(dir, [...base.slice(1), `--data=${dir}/other.txt`]),
      /--resume: .*other\.txt is not the text the checkpoint was trained on \(characters not in its vocabulary: "!", "Z", "b"\)/,
    );
  } finally {
    await cleanup();
  }
});

Deno.test("train.ts: a new run never overwrites an existing checkpoint unless --force", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const data = await writeData(dir);
    const args = [`--data=${data}`, `--out=${dir}/out`, ...TINY, "--steps=2", "--sample-tokens=0"];
    const first = await train(dir, args);
    if (first.code !== 0) throw new Error(`first run failed: ${first.stderr}`);
    const before = (await inspect(`${dir}/out`)).model?.sha256;
    if (!before) throw new Error("the first run wrote no checkpoint");
    assertUserError(
      await train(dir, [...args, "--seed=7"]),
      /already holds a checkpoint: .*--resume.*--force/,
    );
    if ((await inspect(`${dir}/out`)).model?.sha256 !== before) {
      throw new Error("the refused run changed the checkpoint");
    }
    const forced = await train(dir, [...args, "--seed=7", "--force"]);
    if (forced.code !== 0) throw new Error(`--force run failed: ${forced.stderr}`);
    if ((await inspect(`${dir}/out`)).model?.sha256 === before) {
      throw new Error("--force did not write a new model");
    }
  } finally {
    await cleanup();
  }
});
