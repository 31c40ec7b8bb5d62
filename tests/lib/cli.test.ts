// lib/cli.ts: flag parsing and the typed getters (in process), and the behaviour that exits the
// process (--help, runMain's one-line errors and exit codes, permission checks) in child processes.

import assert from "node:assert/strict";
import {
  choiceFlag,
  ensureReadPermission,
  ensureWritePermission,
  fail,
  type FlagSpec,
  floatFlag,
  formatUsage,
  intFlag,
  parseFlags,
  UsageError,
} from "../../lib/cli.ts";

const CLI = new URL("../../lib/cli.ts", import.meta.url).href;

/** Run a TypeScript snippet as its own `deno run` with the given permission flags; stdin is null. */
async function child(
  code: string,
  opts: { perms?: string[]; args?: string[]; env?: Record<string, string> } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "tinygpt-cli-test-" });
  try {
    const file = `${dir}/main.ts`;
    await Deno.writeTextFile(file, code);
    const out = await new Deno.Command("deno", {
      args: ["run", "--no-config", "--no-lock", "--quiet", ...(opts.perms ?? []), file, ...(opts.args ?? [])],
      env: { TINYGPT_DEBUG: "", NO_COLOR: "1", ...opts.env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const SPEC: FlagSpec[] = [
  { name: "steps", type: "string", default: "100", help: "training steps" },
  { name: "lr", type: "string", help: "learning rate" },
  { name: "model", type: "string", default: "gpt", help: "which model" },
  { name: "profile", type: "boolean", help: "print kernel timings" },
  { name: "resume", type: "boolean", default: false, help: "continue from the checkpoint" },
];
const USAGE = formatUsage("usage: train.ts [flags]", SPEC);

function usageError(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof UsageError, `expected UsageError, got ${e}`);
    assert.match(e.message, re);
    assert.ok(!e.message.includes("\n"), "one line");
    return true;
  });
}

Deno.test("parseFlags: defaults, both value forms, booleans, negative values, last one wins", () => {
  assert.deepEqual(parseFlags([], SPEC, USAGE).values, {
    steps: "100",
    lr: undefined,
    model: "gpt",
    profile: false,
    resume: false,
  });
  const f =
    parseFlags(["--steps", "5", "--lr=-1e-3", "--profile", "--model=mlp", "--steps=7"], SPEC, USAGE).values;
  assert.deepEqual(f, { steps: "7", lr: "-1e-3", model: "mlp", profile: true, resume: false });
  assert.equal(parseFlags(["--lr", "-2"], SPEC, USAGE).values.lr, "-2");
  assert.equal(parseFlags(["--model="], SPEC, USAGE).values.model, "");
});

Deno.test("parseFlags: bad command lines are one-line UsageErrors naming the flag", () => {
  usageError(() => parseFlags(["--bogus"], SPEC, USAGE), /unknown flag --bogus/);
  usageError(() => parseFlags(["--bogus=3"], SPEC, USAGE), /unknown flag --bogus/);
  usageError(() => parseFlags(["-x"], SPEC, USAGE), /unknown flag -x/);
  usageError(() => parseFlags(["--lr"], SPEC, USAGE), /--lr needs a value/);
  usageError(() => parseFlags(["--lr", "--steps", "3"], SPEC, USAGE), /--lr needs a value/);
  usageError(() => parseFlags(["--profile=yes"], SPEC, USAGE), /--profile does not take a value/);
  usageError(() => parseFlags(["stray"], SPEC, USAGE), /unexpected argument "stray"/);
  usageError(() => parseFlags(["--", "--steps"], SPEC, USAGE), /unexpected argument "--steps"/);
});

Deno.test("formatUsage lists every flag with its help and default", () => {
  for (const f of SPEC) assert.ok(USAGE.includes(`--${f.name}`) && USAGE.includes(f.help), f.name);
  assert.match(USAGE, /^usage: train\.ts \[flags\]/);
  assert.match(USAGE, /--steps=<value> +training steps \(default: 100\)/);
  assert.match(USAGE, /--model=<value> +which model \(default: gpt\)/);
  assert.match(USAGE, /--lr=<value> +learning rate$/m);
  assert.match(USAGE, /-h, --help/);
});

Deno.test("intFlag accepts plain decimal integers only, within bounds", () => {
  assert.equal(intFlag("12", "steps"), 12);
  assert.equal(intFlag("-3", "seed"), -3);
  assert.equal(intFlag("+4", "seed"), 4);
  assert.equal(intFlag("007", "seed"), 7);
  assert.equal(intFlag("5", "steps", { min: 5, max: 5 }), 5);
  for (
    const bad of ["1.5", "abc", "", " ", "1e3", "0x10", "1_000", "12abc", "9007199254740993", "Infinity"]
  ) {
    usageError(() => intFlag(bad, "steps"), /--steps must be an integer|--steps needs an integer/);
  }
  usageError(() => intFlag(undefined, "steps"), /--steps needs an integer value/);
  usageError(() => intFlag(true, "steps"), /--steps needs an integer value/);
  usageError(() => intFlag("0", "steps", { min: 1 }), /--steps must be >= 1, got 0/);
  usageError(() => intFlag("11", "batch", { max: 10 }), /--batch must be <= 10, got 11/);
});

Deno.test("floatFlag accepts finite decimals, rejects NaN/inf/garbage, honours exclusive bounds", () => {
  assert.equal(floatFlag("3e-4", "lr"), 3e-4);
  assert.equal(floatFlag(".5", "lr"), 0.5);
  assert.equal(floatFlag("1.", "lr"), 1);
  assert.equal(floatFlag("-0.25", "x"), -0.25);
  assert.equal(floatFlag("2E+2", "x"), 200);
  for (const bad of ["nan", "NaN", "inf", "-Infinity", "1e999", "0x1", "", "1,5", "1.2.3", "e5", "."]) {
    usageError(() => floatFlag(bad, "lr"), /--lr (must be a finite number|needs a number)/);
  }
  usageError(() => floatFlag(undefined, "lr"), /--lr needs a number value/);
  assert.equal(floatFlag("0", "dropout", { min: 0, max: 1, maxExclusive: true }), 0);
  usageError(
    () => floatFlag("1", "dropout", { min: 0, max: 1, maxExclusive: true }),
    /--dropout must be < 1, got 1/,
  );
  usageError(() => floatFlag("0", "lr", { min: 0, minExclusive: true }), /--lr must be > 0, got 0/);
  usageError(() => floatFlag("-0.1", "dropout", { min: 0 }), /--dropout must be >= 0, got -0\.1/);
  usageError(() => floatFlag("2", "dropout", { max: 1 }), /--dropout must be <= 1, got 2/);
});

Deno.test("choiceFlag", () => {
  const models = ["bigram", "mlp", "gpt"] as const;
  const m: "bigram" | "mlp" | "gpt" = choiceFlag("mlp", "model", models);
  assert.equal(m, "mlp");
  usageError(
    () => choiceFlag("GPT", "model", models),
    /--model must be one of "bigram", "mlp", "gpt", got "GPT"/,
  );
  usageError(() => choiceFlag(undefined, "model", models), /--model needs a value/);
});

Deno.test("fail throws a UsageError", () => {
  usageError(() => fail("nope"), /^nope$/);
});

Deno.test("ensureRead/WritePermission pass for granted paths", async () => {
  await ensureReadPermission([".", "lib/cli.ts"], "--allow-read=.");
  await ensureWritePermission(["/tmp"], "--allow-write=/tmp");
});

Deno.test("ensureOutputFile: a missing or non-directory parent is a UsageError before any work", async () => {
  // In a child with read and write access to /tmp (the suite itself may only write there).
  const r = await child(
    `import { ensureOutputFile, UsageError } from "${CLI}";
     const dir = await Deno.makeTempDir({ dir: "/tmp" });
     await Deno.writeTextFile(dir + "/file", "x");
     const lines = [];
     for (const p of [dir + "/out.json", dir + "/missing/out.json", dir + "/file/out.json"]) {
       try { await ensureOutputFile(p, "--json", "--allow-write"); lines.push("ok"); }
       catch (e) { lines.push(e instanceof UsageError ? e.message.replaceAll(dir, "D") : "other: " + e); }
     }
     await Deno.remove(dir, { recursive: true });
     console.log(lines.join("\\n"));`,
    { perms: ["--allow-read=/tmp", "--allow-write=/tmp"] },
  );
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.stdout.trimEnd().split("\n"), [
    "ok",
    "--json D/missing/out.json: the directory D/missing does not exist",
    "--json D/file/out.json: D/file is not a directory",
  ]);
});

Deno.test("--help prints the usage (with the flag list) to stdout and exits 0", async () => {
  const r = await child(
    `import { parseFlags, formatUsage } from "${CLI}";
     const spec = [{ name: "steps", type: "string", default: "3", help: "how many steps" }] as const;
     parseFlags(Deno.args, [...spec], formatUsage("usage: demo.ts", [...spec]));
     console.log("not reached");`,
    { args: ["--steps=1", "--help"] },
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^usage: demo\.ts/);
  assert.match(r.stdout, /--steps=<value> +how many steps \(default: 3\)/);
  assert.ok(!r.stdout.includes("not reached"));
  const h = await child(
    `import { parseFlags } from "${CLI}"; parseFlags(Deno.args, [], "short usage");`,
    { args: ["-h"] },
  );
  assert.equal(h.code, 0, h.stderr);
  assert.equal(h.stdout, formatUsage("short usage", []) + "\n");
  // A bare title gets the flag list appended.
  const t = await child(
    `import { parseFlags } from "${CLI}";
     parseFlags(Deno.args, [{ name: "seed", type: "string", default: "0", help: "the seed" }], "Title.");`,
    { args: ["--help"] },
  );
  assert.equal(t.code, 0, t.stderr);
  assert.match(t.stdout, /^Title\.\n\nFlags:\n {2}--seed=<value> +the seed \(default: 0\)\n {2}-h, --help/);
  assert.equal(t.stdout.match(/Flags:/g)?.length, 1);
});

const MAIN = (body: string) =>
  `import { runMain, fail } from "${CLI}";
   class GPUFailure extends Error { override name = "GPUFailure"; }
   class CheckpointError extends Error { override name = "CheckpointError"; }
   void fail; void GPUFailure; void CheckpointError;
   await runMain(async () => { ${body} });
   console.log("done");`;

Deno.test("runMain: one stderr line and the documented exit code for each kind of failure", async () => {
  const cases: [string, number, RegExp][] = [
    [`fail("--steps must be >= 1, got 0");`, 2, /^error: --steps must be >= 1, got 0\n$/],
    [`throw new CheckpointError("out/x.safetensors: header is not valid JSON");`, 2, /^error: out\/x\.safe/],
    [`throw new GPUFailure("the GPU device was lost: oops");`, 1, /^error: GPU failure: the GPU device/],
    [`throw new Error("two\\n  lines");`, 1, /^error: two lines\n$/],
    [`throw "a string";`, 1, /^error: a string\n$/],
    [`await Deno.readTextFile("/etc/hostname");`, 2, /^error: permission denied: .*read access/i],
  ];
  for (const [body, code, re] of cases) {
    const r = await child(MAIN(body));
    assert.equal(r.code, code, `${body}: ${r.stderr}`);
    assert.match(r.stderr, re, body);
    assert.equal(r.stderr.trimEnd().split("\n").length, 1, `one line for ${body}: ${r.stderr}`);
    assert.equal(r.stdout, "", body);
  }
  const ok = await child(MAIN(`console.log("hi");`));
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(ok.stdout, "hi\ndone\n");
});

Deno.test("runMain prints the stack trace only with TINYGPT_DEBUG", async () => {
  const body = `throw new Error("boom");`;
  const quiet = await child(MAIN(body), { perms: ["--allow-env"] });
  assert.equal(quiet.stderr, "error: boom\n");
  const loud = await child(MAIN(body), { perms: ["--allow-env"], env: { TINYGPT_DEBUG: "1" } });
  assert.equal(loud.code, 1);
  assert.match(loud.stderr, /^error: boom\nError: boom\n\s+at /);
  // Without --allow-env the debug switch is simply unavailable, not a second error.
  const noEnv = await child(MAIN(body), { env: { TINYGPT_DEBUG: "1" } });
  assert.equal(noEnv.stderr, "error: boom\n");
});

Deno.test("ensureReadPermission / ensureWritePermission without a terminal: UsageError naming the flag", async () => {
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "tinygpt-perm-" });
  try {
    const r = await child(
      `import { ensureReadPermission, ensureWritePermission, runMain } from "${CLI}";
       await runMain(async () => {
         await ensureReadPermission([${JSON.stringify(dir)}], "--allow-read=x");
         await ensureWritePermission([${JSON.stringify(dir + "/sub")}], "--allow-write=x");
         console.log("granted ok");
         await ensureReadPermission(["/definitely/not/allowed"], "--allow-read=out");
       });`,
      { perms: [`--allow-read=${dir}`, `--allow-write=${dir}`] },
    );
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stdout, "granted ok\n");
    assert.equal(r.stderr, "error: read access to /definitely/not/allowed is needed: add --allow-read=out\n");
    const w = await child(
      `import { ensureWritePermission, runMain } from "${CLI}";
       await runMain(() => ensureWritePermission(["out"], "--allow-write=out"));`,
      { perms: [`--allow-read=${dir}`] },
    );
    assert.equal(w.code, 2, w.stderr);
    assert.equal(w.stderr, "error: write access to out is needed: add --allow-write=out\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
