// lib/fsutil.ts. The test runner may only write /tmp, not read it, and Deno.rename needs both, so each
// case runs as a child `deno run` allowed to read and write one fresh temp directory.

import assert from "node:assert/strict";

const FS = new URL("../../lib/fsutil.ts", import.meta.url).href;

/** Run `body` (with `dir`, `assert` and the fsutil exports in scope) in a child; it must exit 0. */
async function inChild(body: string): Promise<void> {
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "tinygpt-fsutil-test-" });
  try {
    const file = `${dir}/.case.ts`;
    await Deno.writeTextFile(
      file,
      `import assert from "node:assert/strict";
       import { appendLine, atomicWrite, atomicWriteSync } from "${FS}";
       void assert; void appendLine; void atomicWrite; void atomicWriteSync;
       const dir = ${JSON.stringify(dir)};
       const listing = () => [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n !== ".case.ts").sort();
       void listing;
       ${body}
       console.log("child ok");`,
    );
    const out = await new Deno.Command("deno", {
      args: [
        "run",
        "--no-config",
        "--no-lock",
        "--quiet",
        `--allow-read=${dir}`,
        `--allow-write=${dir}`,
        file,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const dec = new TextDecoder();
    const stdout = dec.decode(out.stdout), stderr = dec.decode(out.stderr);
    assert.equal(out.code, 0, `child failed:\n${stdout}\n${stderr}`);
    assert.match(stdout, /child ok\n$/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("atomicWrite / atomicWriteSync create and replace files, strings and bytes, no temp files left", async () => {
  await inChild(`
    const p = dir + "/ckpt.bin";
    await atomicWrite(p, new Uint8Array([1, 2, 3]));
    assert.deepEqual(Deno.readFileSync(p), new Uint8Array([1, 2, 3]));
    await atomicWrite(p, "héllo");
    assert.equal(Deno.readTextFileSync(p), "héllo");
    atomicWriteSync(p, "sync");
    assert.equal(Deno.readTextFileSync(p), "sync");
    atomicWriteSync(dir + "/new.json", new Uint8Array(0));
    assert.equal(Deno.readFileSync(dir + "/new.json").length, 0);
    const big = new Uint8Array(5_000_000).map((_, i) => i * 7);
    await atomicWrite(p, big);
    assert.deepEqual(Deno.readFileSync(p), big);
    assert.deepEqual(listing(), ["ckpt.bin", "new.json"]);
  `);
});

Deno.test("concurrent readers never see a partial file", async () => {
  await inChild(`
    const p = dir + "/state.json";
    const A = "a".repeat(1_000_000), B = "b".repeat(1_500_000); // a plain write tears at this size
    await atomicWrite(p, A);
    let done = false, reads = 0;
    const reader = async () => {
      while (!done) {
        const s = await Deno.readTextFile(p);
        if (s !== A && s !== B) throw new Error("torn read of length " + s.length);
        reads++;
      }
    };
    const readers = [reader(), reader(), reader()];
    for (let i = 0; i < 20; i++) await atomicWrite(p, i % 2 ? A : B);
    done = true;
    await Promise.all(readers);
    assert.ok(reads > 10, "reads: " + reads);
    assert.deepEqual(listing(), ["state.json"]);
  `);
});

Deno.test("a failed write keeps the old content and removes the temp file", async () => {
  await inChild(`
    const p = dir + "/ckpt.bin";
    await atomicWrite(p, "old content");
    const proto = Deno.FsFile.prototype;
    const write = proto.write, writeSync = proto.writeSync;
    // Write half, then fail (a full disk, say).
    proto.write = async function (this: Deno.FsFile, b: Uint8Array) {
      await write.call(this, b.subarray(0, b.length >> 1));
      throw new Error("disk full");
    };
    proto.writeSync = function (this: Deno.FsFile, b: Uint8Array) {
      writeSync.call(this, b.subarray(0, b.length >> 1));
      throw new Error("disk full");
    };
    await assert.rejects(atomicWrite(p, "new content that is longer"), /disk full/);
    assert.equal(Deno.readTextFileSync(p), "old content");
    assert.deepEqual(listing(), ["ckpt.bin"]);
    assert.throws(() => atomicWriteSync(p, "new content"), /disk full/);
    assert.equal(Deno.readTextFileSync(p), "old content");
    assert.deepEqual(listing(), ["ckpt.bin"]);
    proto.write = write;
    proto.writeSync = writeSync;
    // A failed rename (the target is a non-empty directory) also cleans up.
    Deno.mkdirSync(dir + "/taken");
    Deno.writeTextFileSync(dir + "/taken/x", "x");
    await assert.rejects(atomicWrite(dir + "/taken", "data"));
    assert.throws(() => atomicWriteSync(dir + "/taken", "data"));
    assert.deepEqual(listing(), ["ckpt.bin", "taken"]);
    // A missing directory is an error, not a silent success.
    await assert.rejects(atomicWrite(dir + "/no/such/file", "x"), Deno.errors.NotFound);
  `);
});

Deno.test("appendLine appends one line at a time and creates the file", async () => {
  await inChild(`
    const p = dir + "/metrics.jsonl";
    await appendLine(p, JSON.stringify({ step: 1, loss: 4.2 }));
    await appendLine(p, JSON.stringify({ step: 2, loss: 3.9 }));
    await Promise.all(Array.from({ length: 50 }, (_, i) => appendLine(p, JSON.stringify({ i }))));
    const lines = Deno.readTextFileSync(p).split("\\n");
    assert.equal(lines.pop(), "");
    assert.equal(lines.length, 52);
    assert.deepEqual(JSON.parse(lines[1]), { step: 2, loss: 3.9 });
    assert.deepEqual(lines.slice(2).map((l) => JSON.parse(l).i).sort((a, b) => a - b), [...Array(50).keys()]);
    await assert.rejects(appendLine(p, "a\\nb"), /newline/);
  `);
});
