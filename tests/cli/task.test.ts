// `deno task train` runs with exactly the permissions deno.json grants: the project folder, read and
// write, so `--out runs/a` (any --out, --data or --config inside the project) works with no terminal
// to answer a prompt, and the matmul tuner's cache directory (lib/tune_cache.ts; the task shell
// expands $HOME and $XDG_CACHE_HOME). Checked by running train.ts with the task's own flags from a
// scratch folder standing in for the project.

import assert from "node:assert/strict";
import { ENV_FLAG, tempDir, TINY, TRAIN, writeData } from "./helpers.ts";

const config = JSON.parse(await Deno.readTextFile(new URL("../../deno.json", import.meta.url)));
const task: string = config.tasks.train;
/** The tuner's cache directory on Linux and macOS, as the tasks grant it (read and write). */
const CACHE =
  "$HOME/.cache/tinygpt-webgpu,$HOME/Library/Caches/tinygpt-webgpu,$XDG_CACHE_HOME/tinygpt-webgpu";
/** A task's flag with $VARs expanded as deno task does (unset: empty). */
const expand = (flag: string) => flag.replace(/\$(\w+)/g, (_, v) => Deno.env.get(v) ?? "");

Deno.test("deno.json: the CLI tasks grant env access to the optional variables (lib/env.ts) and no others", () => {
  for (const name of ["train", "sample", "bench"]) {
    const flags = (config.tasks[name] as string).split(" ").filter((f) => f.startsWith("--allow-env"));
    assert.deepEqual(flags, [ENV_FLAG], name);
  }
  // The page's server reads none (lib/cli.ts's TINYGPT_DEBUG counts as unset there).
  assert.doesNotMatch(config.tasks.web, /--allow-env/);
});

Deno.test("deno task train's permissions: --out runs/a works without a terminal; outside the folder, one line", async () => {
  const m = task.match(/^deno run (.*) train\.ts$/);
  assert.ok(m, task);
  const flags = m[1].split(" ");
  assert.deepEqual(flags, [`--allow-read=.,${CACHE}`, `--allow-write=.,${CACHE}`, ENV_FLAG], task);
  const perms = flags.map(expand);
  const { dir, cleanup } = await tempDir();
  try {
    await writeData(dir);
    const run = (out: string) =>
      new Deno.Command("deno", {
        args: [
          "run",
          "--no-config",
          "--no-lock",
          "--quiet",
          ...perms,
          TRAIN,
          "--data=data.txt",
          ...TINY,
          "--steps=1",
          `--out=${out}`,
        ],
        cwd: dir,
        env: { NO_COLOR: "1", XDG_RUNTIME_DIR: "/tmp", TINYGPT_DEBUG: "" },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
    const ok = await run("runs/a");
    const dec = new TextDecoder();
    assert.equal(ok.code, 0, dec.decode(ok.stderr));
    assert.match(dec.decode(ok.stdout), /done: 1 steps/);
    const outside = await run("/nonexistent-outside/out");
    assert.equal(outside.code, 2);
    assert.equal(
      dec.decode(outside.stderr).trim(),
      "error: read access to /nonexistent-outside/out is needed: add --allow-read=/nonexistent-outside/out",
    );
  } finally {
    await cleanup();
  }
});
