// deno task web — serve the page on 127.0.0.1: web/index.html, the browser entry point web/app.ts
// bundled on start (Deno's built-in bundler, to memory: nothing generated is written or committed)
// and the training text data/tinyshakespeare.txt. One port, printed; --port to change it.

import { fileURLToPath } from "node:url";
import { ensureReadPermission, fail, type FlagSpec, intFlag, parseFlags, runMain } from "../lib/cli.ts";

const FLAGS: FlagSpec[] = [
  { name: "port", type: "string", default: "8000", help: "TCP port on 127.0.0.1 (0 = any free port)" },
];
const USAGE = "deno task web [--port=N]\n\nServe the tinygpt page: train and sample in the browser (WebGPU).";

const here = (p: string) => new URL(p, import.meta.url);

interface BundleOutput {
  success: boolean;
  errors: { text: string }[];
  outputFiles?: { text(): string }[];
}
type BundleFn = (opts: {
  entrypoints: string[];
  platform: "browser";
  format: "esm";
  write: false;
  minify?: boolean;
}) => Promise<BundleOutput>;

/** `entry` (a file URL) and its imports as one browser ES module (Deno.bundle, --unstable-bundle). */
export async function bundle(entry: URL): Promise<string> {
  const fn = (Deno as unknown as { bundle?: BundleFn }).bundle;
  if (!fn) fail("Deno.bundle is unavailable: run with --unstable-bundle (deno task web does)");
  const r = await fn({ entrypoints: [entry.href], platform: "browser", format: "esm", write: false });
  const text = r.outputFiles?.[0]?.text();
  if (!r.success || text === undefined) {
    throw new Error(`bundling ${fileURLToPath(entry)} failed: ${r.errors.map((e) => e.text).join("; ")}`);
  }
  return text;
}

const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  txt: "text/plain; charset=utf-8",
};

export interface WebServer {
  /** e.g. http://127.0.0.1:8000/ */
  url: string;
  shutdown(): Promise<void>;
}

/**
 * Bundle the page's script (and `extraScripts`: URL path -> entry file URL, used by tests/web) and
 * serve them with index.html and the training text on 127.0.0.1:`port` (0 = a free port).
 */
export async function startServer(
  opts: { port: number; extraScripts?: Record<string, URL>; quiet?: boolean },
): Promise<WebServer> {
  const scripts = new Map<string, string>();
  scripts.set("/app.js", await bundle(here("./app.ts")));
  for (const [path, entry] of Object.entries(opts.extraScripts ?? {})) scripts.set(path, await bundle(entry));
  const files: Record<string, URL> = {
    "/": here("./index.html"),
    "/data/tinyshakespeare.txt": here("../data/tinyshakespeare.txt"),
  };
  const reply = (body: BodyInit, ext: string) =>
    new Response(body, { headers: { "content-type": TYPES[ext], "cache-control": "no-store" } });

  const { promise: listening, resolve } = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: opts.port,
    onListen: resolve,
    onError: (e) => new Response(`error: ${(e as Error).message}\n`, { status: 500 }),
  }, async (req) => {
    const path = new URL(req.url).pathname;
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("method not allowed\n", { status: 405 });
    }
    const js = scripts.get(path);
    if (js !== undefined) return reply(js, "js");
    const file = files[path];
    if (file) return reply(await Deno.readFile(file), path === "/" ? "html" : "txt");
    return new Response("not found\n", { status: 404 });
  });
  const addr = await listening;
  return { url: `http://127.0.0.1:${addr.port}/`, shutdown: () => server.shutdown() };
}

async function main(args: string[]): Promise<void> {
  const { values } = parseFlags(args, FLAGS, USAGE);
  const port = intFlag(values.port, "port", { min: 0, max: 65535 });
  // One question for the project folder when run without the task's --allow-read=. (the bundler
  // would otherwise ask once per source file it reads, dozens of times).
  const root = fileURLToPath(here("../"));
  await ensureReadPermission([root], `--allow-read=${root} (deno task web grants it)`);
  let server: WebServer;
  try {
    server = await startServer({ port });
  } catch (e) {
    if (e instanceof Deno.errors.AddrInUse) fail(`--port ${port} is in use: choose another with --port`);
    throw e;
  }
  console.log(`tinygpt web: open ${server.url} (Ctrl-C stops)`);
  console.log(`  URL contract: ${server.url}?model=gpt&steps=200&seed=1337&batch-size=64&autostart=1`);
}

if (import.meta.main) runMain(() => main(Deno.args));
