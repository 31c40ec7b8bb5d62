// A command run as a user types it on a terminal, for the permission-prompt tests: Deno asks its
// permission questions only when stdin and stderr are terminals, and Deno has no pseudo-terminal API,
// so util-linux `script` (package bsdutils, Essential on Debian: on every Debian system) gives the
// command one, relays what we write to the command's input and copies what it prints to our stdout.
// Every question is answered "y", so a run that asks too often still finishes and says what it asked.

import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

export interface TerminalRun {
  code: number;
  /** Everything the terminal showed, colours stripped, line ends as "\n". */
  transcript: string;
  /** What each permission question asked for, in order, e.g. `read access to "out/model.safetensors"`. */
  prompts: string[];
}

const ANSI = new RegExp(String.raw`\x1b\[[0-9;?]*[A-Za-z]`, "g"); // colours and cursor codes
const QUESTION = /Deno requests (.+?)\.\n/g;
const ANSWERED = /(Granted|Denied) [a-z]+ access/g;
const count = (s: string, re: RegExp) => s.match(re)?.length ?? 0;

/**
 * Run `command` (a shell command line) in `cwd` on a pseudo-terminal, with `deno` meaning the binary
 * this test runs under and a plain user environment (`env` added), answering "y" to every permission
 * question. With `interruptOn`, types Ctrl-C once the terminal shows a match (a server's "listening"
 * line). Fails after `timeoutMs`, with the transcript so far.
 */
export async function onTerminal(
  command: string,
  opts: { cwd: string; env?: Record<string, string>; timeoutMs?: number; interruptOn?: RegExp },
): Promise<TerminalRun> {
  const pass = ["PATH", "HOME", "DENO_DIR", "XDG_CACHE_HOME", "DENO_WEBGPU_BACKEND"];
  const env: Record<string, string> = {};
  for (const k of pass) {
    const v = Deno.env.get(k);
    if (v !== undefined) env[k] = v;
  }
  env.PATH = `${dirname(Deno.execPath())}:${env.PATH ?? "/usr/bin:/bin"}`;
  Object.assign(env, { SHELL: "/bin/sh", TERM: "xterm-256color" }, opts.env);
  // -q: no "Script started" lines; -e: script's exit status is the command's; /dev/null: no log file.
  const child = new Deno.Command("script", {
    args: ["-q", "-e", "-c", command, "/dev/null"],
    cwd: opts.cwd,
    clearEnv: true,
    env,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const input = child.stdin.getWriter();
  const enc = new TextEncoder();
  let raw = "";
  let seen = 0, seenAt = 0; // questions on screen, and when the last one appeared
  let answeredAt = 0, interrupted = false;
  const text = () => raw.replace(ANSI, "").replace(/\r\n?/g, "\n");
  // Deno empties the terminal's input right after printing a question, so an answer typed too soon is
  // lost: answer a question once it has been on screen for a moment, and again every second until Deno
  // takes it (a later question would empty the input again, so a repeat never answers the wrong one).
  const answer = () => {
    const t = text();
    const asked = count(t, /Allow\? \[y\/n\/A\]/g), done = count(t, ANSWERED), now = Date.now();
    if (asked > seen) [seen, seenAt] = [asked, now];
    if (opts.interruptOn && !interrupted && opts.interruptOn.test(t)) {
      interrupted = true;
      input.write(enc.encode("\x03")).catch(() => {});
    }
    if (asked > done && now - seenAt >= 100 && now - answeredAt >= 1000) {
      answeredAt = now;
      input.write(enc.encode("y\r")).catch(() => {});
    }
  };
  const ticker = setInterval(answer, 50);
  const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 60_000);
  const stderr = new Response(child.stderr).text();
  try {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) raw += chunk;
    const status = await child.status;
    const transcript = text();
    if (status.signal === "SIGKILL") {
      throw new Error(`timed out on a terminal: ${command}\n${transcript}`);
    }
    const err = await stderr;
    if (err.trim()) throw new Error(`script: ${err}`);
    return { code: status.code, transcript, prompts: [...transcript.matchAll(QUESTION)].map((m) => m[1]) };
  } finally {
    clearInterval(ticker);
    clearTimeout(timer);
    await input.close().catch(() => {});
  }
}

/**
 * Copy what `entries` (project-relative scripts) load from the project at `root`, with deno.json,
 * deno.lock and the `extra` files, into `dir`: a checkout of the project as a user has it.
 */
export async function copyProject(root: string, dir: string, entries: string[], extra: string[] = []) {
  const files = new Set(["deno.json", "deno.lock", ...extra]);
  for (const entry of entries) {
    const out = await new Deno.Command("deno", {
      args: ["info", "--json", join(root, entry)],
      cwd: root,
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) throw new Error(`deno info ${entry}: ${new TextDecoder().decode(out.stderr)}`);
    const info = JSON.parse(new TextDecoder().decode(out.stdout)) as { modules: { specifier: string }[] };
    for (const m of info.modules) {
      if (m.specifier.startsWith("file://")) files.add(relative(root, fileURLToPath(m.specifier)));
    }
  }
  for (const f of files) {
    await Deno.mkdir(dirname(join(dir, f)), { recursive: true });
    await Deno.copyFile(join(root, f), join(dir, f));
  }
}
