// Kernel family selection: --kernels gpu|cpu|auto on train.ts, sample.ts and bench.ts, the
// TINYGPT_KERNELS environment variable as its default (the flag wins), "auto" choosing from the
// adapter, a bad value as one line (exit 2), and the adapter line naming the family that runs.

import assert from "node:assert/strict";
import { isCpuAdapter } from "../../ops/runtime.ts";
import { rt } from "../util.ts";
import {
  assertUserError,
  deno,
  ENV_FLAG,
  pool,
  ROOT,
  sample,
  SAMPLE_ADAPTER_LINE,
  tempDir,
  TINY,
  train,
  writeCheckpoint,
  writeData,
} from "./helpers.ts";

/** What "auto" picks on the adapter these tests run on. */
const AUTO = isCpuAdapter(rt.adapter.info) ? "cpu" : "gpu";

Deno.test("train.ts: --kernels and TINYGPT_KERNELS pick the family the adapter line names; the flag wins", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const data = await writeData(dir);
    const cases: { args: string[]; env: Record<string, string>; want: string }[] = [
      { args: ["--kernels=cpu"], env: {}, want: "cpu" },
      { args: ["--kernels=gpu"], env: { TINYGPT_KERNELS: "cpu" }, want: "gpu" },
      { args: [], env: { TINYGPT_KERNELS: "gpu" }, want: "gpu" },
      { args: ["--kernels=auto"], env: { TINYGPT_KERNELS: "gpu" }, want: AUTO },
      { args: [], env: { TINYGPT_KERNELS: "" }, want: AUTO },
    ];
    await pool(cases.map((c, i) => ({ ...c, i })), 2, async ({ args, env, want, i }) => {
      const r = await train(
        dir,
        [`--data=${data}`, `--out=${dir}/out${i}`, ...TINY, "--steps=1", ...args],
        env,
      );
      assert.equal(r.code, 0, `${args} ${JSON.stringify(env)}: ${r.stderr}`);
      const line = r.stdout.split("\n").find((l) => l.startsWith("adapter: "));
      assert.ok(line, r.stdout);
      assert.match(line, new RegExp(`, kernels ${want}\\]$`), `${args} ${JSON.stringify(env)}`);
      assert.match(r.stdout, /done: 1 steps/);
    });
    assertUserError(
      await train(dir, [`--data=${data}`, `--out=${dir}/bad`, ...TINY, "--steps=1"], {
        TINYGPT_KERNELS: "fast",
      }),
      /^error: TINYGPT_KERNELS must be one of "gpu", "cpu", "auto", got "fast"$/,
    );
    // A bad variable is not an error when the flag decides.
    const ok = await train(dir, [
      `--data=${data}`,
      `--out=${dir}/flag`,
      ...TINY,
      "--steps=1",
      "--kernels=cpu",
    ], {
      TINYGPT_KERNELS: "fast",
    });
    assert.equal(ok.code, 0, ok.stderr);
  } finally {
    await cleanup();
  }
});

Deno.test("sample.ts: --kernels and TINYGPT_KERNELS; the adapter line on stderr names the family", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    await writeCheckpoint(dir);
    const args = [`--checkpoint=${dir}/model.safetensors`, "--max-new-tokens=5", "--seed=1"];
    const texts: string[] = [];
    for (
      const [extra, env, want] of [[["--kernels=gpu"], {}, "gpu"], [
        [],
        { TINYGPT_KERNELS: "cpu" },
        "cpu",
      ]] as const
    ) {
      const r = await sample(dir, [...args, ...extra], env);
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stderr.trimEnd().split("\n");
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0], SAMPLE_ADAPTER_LINE);
      assert.match(lines[0], new RegExp(`, kernels ${want}\\]$`));
      texts.push(r.stdout);
    }
    assert.equal([...texts[0]].length, 1 + 5 + 1, "stdout is the text alone");
    assertUserError(
      await sample(dir, [...args, "--kernels=tpu"]),
      /--kernels must be one of "gpu", "cpu", "auto"/,
    );
    assertUserError(await sample(dir, args, { TINYGPT_KERNELS: "x" }), /TINYGPT_KERNELS must be one of/);
  } finally {
    await cleanup();
  }
});

/** A CLI of the project run with read access and the environment (enough for --help and flag errors). */
const cli = (script: string, ...args: string[]) =>
  deno([
    "run",
    "--no-config",
    "--no-lock",
    "--quiet",
    "--allow-read",
    ENV_FLAG,
    `${ROOT}${script}`,
    ...args,
  ]);

Deno.test("--help of train.ts, sample.ts and bench.ts documents --kernels and TINYGPT_KERNELS; bench refuses a bad value", async () => {
  for (const script of ["train.ts", "sample.ts", "bench.ts"]) {
    const r = await cli(script, "--help");
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /--kernels=<value> +kernel family: gpu \| cpu \| auto \(default: \$TINYGPT_KERNELS when env access to it is granted, as deno task does, else auto/,
      script,
    );
  }
  assertUserError(
    await cli("bench.ts", "--kernels=gpu2"),
    /--kernels must be one of "gpu", "cpu", "auto", got "gpu2"/,
  );
  assertUserError(
    await cli("bench.ts", "--config=gpt3"),
    /--config must be one of "lecture", "nanogpt-char", "finetune-gpt2", "gpt2", got "gpt3"/,
  );
});
