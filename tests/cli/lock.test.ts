// One run per --out directory: two real train.ts processes started together into one --out (one
// trains, the other exits 2 naming the first one's pid), a lock held by a live process, and the
// lock file a killed run leaves behind (taken over with a note).

import assert from "node:assert/strict";
import {
  assertUserError,
  inspect,
  runArgs,
  Running,
  tempDir,
  TINY,
  TRAIN,
  train,
  writeData,
} from "./helpers.ts";

const LOCKED =
  /^error: .* is in use by another train\.ts run \(pid (\d+), started [0-9T:.Z-]+\): wait for it to finish, stop it, or use another --out$/;

Deno.test("two train.ts runs started together into one --out: one trains, the other exits 2 naming its pid", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const data = await writeData(dir);
    const args = runArgs(TRAIN, dir, [
      `--data=${data}`,
      ...TINY,
      `--out=${dir}/out`,
      "--steps=100000",
      "--eval-interval=100000",
      "--log-interval=1",
    ]);
    const runs = [new Running(args), new Running(args)];
    // The loser exits on its own (within its start-up); the winner trains until it is stopped.
    const loser = await Promise.race(runs.map((r, i) => r.result().then(() => i)));
    const winner = runs[1 - loser];
    const lost = await runs[loser].result();
    assertUserError(lost, LOCKED, "the second run");
    assert.equal(
      Number(lost.stderr.trim().match(LOCKED)![1]),
      winner.child.pid,
      "names the running one's pid",
    );
    assert.equal(lost.stdout, "", "the loser printed nothing else");
    await winner.waitFor(/^step 2\/100000 /m);
    winner.kill("SIGINT");
    const won = await winner.result();
    assert.equal(won.code, 0, won.stderr);
    assert.match(won.stdout, /interrupted: saved step \d+/);
    const info = await inspect(`${dir}/out`);
    assert.ok(info.model && info.resume, "the winner's checkpoint loads");
    assert.equal(info.badLines, 0, "metrics.jsonl has one writer");
    assert.ok(!info.files.includes("train.lock"), `the lock is removed at exit: ${info.files}`);
  } finally {
    await cleanup();
  }
});

Deno.test("a lock held by a live process is refused; a dead run's lock file is taken over with a note", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const data = await writeData(dir);
    const out = `${dir}/out`;
    const base = [`--data=${data}`, ...TINY, `--out=${out}`, "--steps=2"];
    await Deno.mkdir(out);
    // This test process holds the lock, as a running train.ts would.
    const f = await Deno.open(`${out}/train.lock`, { write: true, create: true });
    await f.lock(true);
    await f.write(
      new TextEncoder().encode(JSON.stringify({ pid: 4242, started: "2026-01-01T00:00:00.000Z" })),
    );
    const held = await train(dir, base);
    assertUserError(held, LOCKED);
    assert.match(held.stderr, /pid 4242, started 2026-01-01T00:00:00\.000Z/);
    f.close(); // the "owner" dies: the kernel drops its lock, the file stays, as after SIGKILL

    const r = await train(dir, base);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /^note: took over the lock in .*out left by a run that is no longer running \(pid 4242, started 2026-01-01T00:00:00\.000Z\)$/m,
    );
    const info = await inspect(out);
    assert.equal(info.model?.step, 2);
    assert.deepEqual(info.files, [
      "loss.svg",
      "metrics.jsonl",
      "model.optim.safetensors",
      "model.safetensors",
    ]);
  } finally {
    await cleanup();
  }
});
