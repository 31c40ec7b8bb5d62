// The README's commands as a user types them on a terminal, in a scratch copy of the project: after
// `deno task train`, `deno run --unstable-webgpu sample.ts --temperature 0.8` asks exactly one
// permission question, read access to the checkpoint, and prints a sample. Optional environment
// variables (TINYGPT_KERNELS, DENO_WEBGPU_BACKEND, XDG_RUNTIME_DIR, ...) are read only where env
// access is granted already (lib/env.ts), so they never ask. The tasks ask nothing.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { tempDir, TINY } from "./helpers.ts";
import { copyProject, onTerminal, type TerminalRun } from "./terminal.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
// A terminal in a login session has XDG_RUNTIME_DIR set; without it, and without env access to set it,
// Mesa's Vulkan device-select layer prints two lines of its own (lib/backend.ts), which ask nothing.
const SESSION = { XDG_RUNTIME_DIR: "/tmp" };
// wgpu reads DENO_WEBGPU_BACKEND itself, without Deno's permissions: the GL run of the suite runs GL.
const GL = Deno.env.get("DENO_WEBGPU_BACKEND") === "gl";

const context = (r: TerminalRun) => `exit ${r.code}; the terminal showed:\n${r.transcript}`;

Deno.test("on a terminal: after `deno task train`, the README's sample command asks one question and prints a sample", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const DATA = "data/tinyshakespeare.txt"; // the default --data
    await copyProject(ROOT, dir, ["sample.ts", "train.ts"], [DATA]);

    // The task grants what training needs (the project folder, the optional variables): no question.
    // A tiny GPT, two steps, on the default data (a vocabulary of 65 characters, as users have).
    const train = await onTerminal(`deno task train ${TINY.join(" ")} --steps=2`, {
      cwd: dir,
      env: SESSION,
    });
    assert.equal(train.code, 0, context(train));
    assert.deepEqual(train.prompts, [], context(train));
    assert.match(train.transcript, /^done: 2 steps .*checkpoint out\/model\.safetensors$/m, context(train));
    // The task may read DENO_WEBGPU_BACKEND, so the adapter line names it when it is set.
    const named = Deno.env.get("DENO_WEBGPU_BACKEND")
      ? /\[backend \S+ \(DENO_WEBGPU_BACKEND\)/
      : /\[backend /;
    assert.match(train.transcript, new RegExp(`^adapter: .*${named.source}`, "m"), context(train));

    // A TINYGPT_KERNELS it may not read is unset: were it read, this value would be an error line.
    const sample = await onTerminal("deno run --unstable-webgpu sample.ts --temperature 0.8", {
      cwd: dir,
      env: { ...SESSION, TINYGPT_KERNELS: "not-a-family" },
    });
    const ctx = context(sample);
    assert.deepEqual(sample.prompts, ['read access to "out/model.safetensors"'], ctx);
    assert.equal(sample.code, 0, ctx);
    // The question, its answer, the adapter line, then the text: the start "\n", 500 characters
    // of the checkpoint's vocabulary, "\n". Nothing else (no warnings, no second question).
    const m = sample.transcript.match(
      /^┏ .*Deno requests read access to "out\/model\.safetensors"\.\n(?:┠.*\n)*┗ .*\n✅ Granted read access to "out\/model\.safetensors"\.\n(adapter: .*)\n([^]*)$/,
    );
    assert.ok(m, ctx);
    const [, adapter, text] = m;
    // Without env access the backend is inferred from what the adapter reports (GL: no subgroup sizes).
    assert.match(adapter, GL ? /\[backend gl \(inferred: / : /\[backend (vulkan|gl) \(inferred: /, ctx);
    assert.match(adapter, /, kernels (cpu|gpu)\]$/, ctx);
    assert.ok(text.startsWith("\n") && text.endsWith("\n"), ctx);
    const chars = [...text.slice(1, -1)];
    assert.equal(chars.length, 500, ctx);
    const vocab = new Set(await Deno.readTextFile(`${ROOT}${DATA}`));
    assert.deepEqual(chars.filter((c) => !vocab.has(c)), [], ctx);
  } finally {
    await cleanup();
  }
});

Deno.test("on a terminal: `deno task web` asks nothing; web/serve.ts run directly asks for the folder and the port", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    await copyProject(ROOT, dir, ["web/serve.ts", "web/app.ts"], [
      "web/index.html",
      "data/tinyshakespeare.txt",
    ]);
    const listening = /^tinygpt web: open http:\/\/127\.0\.0\.1:\d+\/ \(Ctrl-C stops\)$/m;
    // Ctrl-C once the server listens, as a user stops it.
    const task = await onTerminal("deno task web --port=0", { cwd: dir, interruptOn: listening });
    assert.deepEqual(task.prompts, [], context(task));
    assert.match(task.transcript, listening, context(task));
    // Without the task's flags: one question for the project folder (not one per file the bundler
    // reads), one for the port.
    const direct = await onTerminal("deno run --unstable-bundle web/serve.ts --port=0", {
      cwd: dir,
      interruptOn: listening,
    });
    assert.deepEqual(
      direct.prompts,
      [`read access to "${dir}"`, 'net access to "127.0.0.1:0"'],
      context(direct),
    );
    assert.match(direct.transcript, listening, context(direct));
  } finally {
    await cleanup();
  }
});

Deno.test("on a terminal: `deno task bench` asks nothing", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    await copyProject(ROOT, dir, ["bench.ts"]);
    const flags =
      "--config=lecture --steps=1 --warmup=1 --profile-steps=1 --batch-size=2 --mm-kernels= --no-torch";
    const r = await onTerminal(`deno task bench ${flags}`, { cwd: dir, env: SESSION });
    assert.equal(r.code, 0, context(r));
    assert.deepEqual(r.prompts, [], context(r));
    assert.match(r.transcript, /^summary /m, context(r));
  } finally {
    await cleanup();
  }
});
