// lib/env.ts: an optional variable is read only where env access to it is granted already; one that
// may not be read is unset, and reading it neither throws nor asks. Child processes, one per
// permission set (stdin is not a terminal here: tests/cli/prompts.test.ts checks the terminal, where Deno asks).

import assert from "node:assert/strict";
import { OPTIONAL_ENV } from "../../lib/env.ts";

const ENV = new URL("../../lib/env.ts", import.meta.url).href;
const BACKEND = new URL("../../lib/backend.ts", import.meta.url).href;

/**
 * Deno's cache directory, passed to every child: the tests set XDG_CACHE_HOME and HOME to dummy values,
 * from which a child without DENO_DIR would derive a cache folder inside the working directory.
 */
const DENO_DIR: string = Deno.env.get("DENO_DIR") ??
  JSON.parse(
    new TextDecoder().decode(new Deno.Command("deno", { args: ["info", "--json"] }).outputSync().stdout),
  )
    .denoDir;

/** Run `code` (read from stdin) under `perms`, in an environment of only `env` and `pass`'s variables. */
async function evalIn(
  code: string,
  perms: string[],
  env: Record<string, string>,
  pass = ["PATH", "HOME"],
): Promise<string> {
  const keep = pass.filter((k) => Deno.env.get(k) !== undefined);
  const child = new Deno.Command("deno", {
    args: ["run", "--no-config", "--no-lock", ...perms, "-"],
    clearEnv: true,
    env: { ...Object.fromEntries(keep.map((k) => [k, Deno.env.get(k)!])), DENO_DIR, ...env },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(code));
  await w.close();
  const out = await child.output();
  const dec = new TextDecoder();
  assert.equal(out.code, 0, dec.decode(out.stderr));
  return dec.decode(out.stdout).trim();
}

Deno.test("optionalEnv: the value where env access is granted, else unset; never an error", async () => {
  const code = `import { OPTIONAL_ENV, optionalEnv } from "${ENV}";
    console.log(JSON.stringify(Object.fromEntries(OPTIONAL_ENV.map((n) => [n, optionalEnv(n) ?? null]))));`;
  const read = async (perms: string[], env: Record<string, string>) =>
    JSON.parse(await evalIn(code, perms, env));
  const set: Record<string, string> = Object.fromEntries(OPTIONAL_ENV.map((n) => [n, `value of ${n}`]));
  const unset = Object.fromEntries(OPTIONAL_ENV.map((n) => [n, null]));
  assert.deepEqual(await read([], set), unset, "a bare deno run");
  assert.deepEqual(await read(["--deny-env"], set), unset);
  assert.deepEqual(await read(["--allow-env"], set), set);
  assert.deepEqual(await read([`--allow-env=${OPTIONAL_ENV.join(",")}`], set), set);
  assert.deepEqual(await read(["--allow-env=TINYGPT_KERNELS"], set), {
    ...unset,
    TINYGPT_KERNELS: "value of TINYGPT_KERNELS",
  });
  // HOME passes through to the child (Deno keeps its cache under it): granted and set, so read.
  assert.deepEqual(
    await read(["--allow-env"], {}),
    { ...unset, HOME: Deno.env.get("HOME") ?? null },
    "granted, not set: unset",
  );
});

Deno.test("createRuntime sets XDG_RUNTIME_DIR (to TMPDIR, else /tmp) only where env access is granted", async () => {
  const code = `import { createRuntime } from "${BACKEND}";
    (await createRuntime()).destroy();
    const q = Deno.permissions.querySync({ name: "env", variable: "XDG_RUNTIME_DIR" }).state;
    console.log(q === "granted" ? Deno.env.get("XDG_RUNTIME_DIR") ?? "unset" : q);`;
  // The suite's backend (DENO_WEBGPU_BACKEND=gl runs it on GL) is read by wgpu itself.
  const run = (perms: string[], env: Record<string, string>) =>
    evalIn(code, perms, env, ["PATH", "HOME", "DENO_DIR", "DENO_WEBGPU_BACKEND"]);
  const env = { TMPDIR: "/var/tmp" };
  assert.equal(await run(["--allow-env=XDG_RUNTIME_DIR,TMPDIR"], env), "/var/tmp");
  assert.equal(await run(["--allow-env=XDG_RUNTIME_DIR"], env), "/tmp", "TMPDIR not readable");
  assert.equal(await run(["--allow-env=XDG_RUNTIME_DIR"], { XDG_RUNTIME_DIR: "/run/x" }), "/run/x");
  assert.equal(await run([], env), "prompt", "a bare deno run: left alone, nothing asked");
});
