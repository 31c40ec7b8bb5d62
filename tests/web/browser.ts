// A headless Chromium with a WebGPU adapter (SwiftShader), driven over the DevTools protocol with a
// small client on Deno's WebSocket: launch, open a page, evaluate, wait for a condition, set a file
// input, allow downloads, screenshot. If the browser cannot start, `launch` throws an Error with the
// reason (chromium's own last lines): the browser tests then FAIL, they are never skipped.

/** The flags measured to give headless Chromium a WebGPU adapter on a machine without a GPU. */
export const CHROMIUM_FLAGS = [
  "--headless=new",
  "--no-sandbox",
  "--enable-unsafe-webgpu",
  "--enable-features=Vulkan",
  "--use-webgpu-adapter=swiftshader",
];

type Json = Record<string, unknown>;

/** One attached page: commands go to its session. */
export class Page {
  constructor(private readonly browser: Browser, readonly sessionId: string) {}

  send<T = Json>(method: string, params: Json = {}): Promise<T> {
    return this.browser.send<T>(method, params, this.sessionId);
  }

  /** Evaluate `expression` in the page (promises awaited) and return its JSON value. */
  async eval<T = unknown>(expression: string): Promise<T> {
    const r = await this.send<
      { result: { value?: T }; exceptionDetails?: { exception?: Json; text: string } }
    >(
      "Runtime.evaluate",
      { expression, awaitPromise: true, returnByValue: true },
    );
    if (r.exceptionDetails) {
      const ex = r.exceptionDetails.exception as { description?: string } | undefined;
      throw new Error(`in the page: ${ex?.description ?? r.exceptionDetails.text}`);
    }
    return r.result.value as T;
  }

  /** Poll `expression` until it is truthy (returns its value) or `timeoutMs` passes (throws `what`). */
  async waitFor<T = unknown>(expression: string, timeoutMs: number, what: string): Promise<T> {
    const t0 = Date.now();
    while (true) {
      const v = await this.eval<T>(expression);
      if (v) return v;
      if (Date.now() - t0 > timeoutMs) {
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; page log:\n${this.log()}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** Load `url` and wait for its load event. */
  async goto(url: string): Promise<void> {
    const loaded = this.browser.once("Page.loadEventFired", this.sessionId);
    await this.send("Page.navigate", { url });
    await loaded;
  }

  /** Give the `<input type=file>` matched by `selector` these files (absolute paths). */
  async setFiles(selector: string, files: string[]): Promise<void> {
    const { root } = await this.send<{ root: { nodeId: number } }>("DOM.getDocument");
    const { nodeId } = await this.send<{ nodeId: number }>("DOM.querySelector", {
      nodeId: root.nodeId,
      selector,
    });
    if (!nodeId) throw new Error(`no element ${selector}`);
    await this.send("DOM.setFileInputFiles", { nodeId, files });
  }

  /** A PNG screenshot of the viewport. */
  async screenshot(): Promise<Uint8Array> {
    const { data } = await this.send<{ data: string }>("Page.captureScreenshot", { format: "png" });
    return Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  }

  /** The page's console output and uncaught exceptions so far (for failure messages). */
  log(): string {
    return (this.browser.logs.get(this.sessionId) ?? []).slice(-30).join("\n");
  }
}

export class Browser {
  readonly logs = new Map<string, string[]>();
  private nextId = 1;
  private pending = new Map<number, { resolve: (v: Json) => void; reject: (e: Error) => void }>();
  private waiters: { method: string; sessionId?: string; resolve: (p: Json) => void }[] = [];
  private downloadDir = "";

  private constructor(
    private readonly child: Deno.ChildProcess,
    private readonly ws: WebSocket,
    private readonly profile: string,
  ) {
    ws.onmessage = (ev) => this.onMessage(JSON.parse(ev.data as string));
    ws.onclose = () => {
      for (const p of this.pending.values()) {
        p.reject(new Error("the browser closed the DevTools connection"));
      }
      this.pending.clear();
    };
  }

  /** Start Chromium (`CHROMIUM` env overrides the binary) and connect to it. */
  static async launch(opts: { width?: number; height?: number } = {}): Promise<Browser> {
    const bin = Deno.env.get("CHROMIUM") ?? "chromium";
    const profile = await Deno.makeTempDir({ prefix: "tinygpt-chromium-" });
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(bin, {
        args: [
          ...CHROMIUM_FLAGS,
          "--remote-debugging-port=0",
          `--user-data-dir=${profile}`,
          `--window-size=${opts.width ?? 1200},${opts.height ?? 900}`,
          "--no-first-run",
          "--no-default-browser-check",
          "about:blank",
        ],
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
    } catch (e) {
      throw new Error(
        `cannot start the browser "${bin}": ${(e as Error).message} ` +
          `(install it: apt-get install chromium, or set CHROMIUM to its path)`,
      );
    }
    // Chromium prints "DevTools listening on ws://..." on stderr once it is ready.
    const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let err = "";
    const found = await Promise.race([
      (async () => {
        while (true) {
          const { value, done } = await reader.read();
          if (done) return null;
          err += value;
          const m = err.match(/DevTools listening on (ws:\/\/\S+)/);
          if (m) return m[1];
        }
      })(),
      new Promise<null>((r) => setTimeout(() => r(null), 60_000)),
    ]);
    if (!found) {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
      await Deno.remove(profile, { recursive: true }).catch(() => {});
      const tail = err.trim().split("\n").slice(-5).join(" | ");
      throw new Error(`the browser "${bin}" did not start: ${tail || "no output within 60 s"}`);
    }
    // Keep draining stderr so chromium never blocks on a full pipe.
    (async () => {
      while (!(await reader.read()).done) { /* discard */ }
    })().catch(() => {});
    const ws = new WebSocket(found);
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error(`cannot connect to the browser's DevTools at ${found}`));
    });
    return new Browser(child, ws, profile);
  }

  send<T = Json>(method: string, params: Json = {}, sessionId?: string): Promise<T> {
    const id = this.nextId++;
    this.ws.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: Json) => void, reject });
    });
  }

  /** The next event `method` (of `sessionId`'s page, when given). */
  once(method: string, sessionId?: string): Promise<Json> {
    return new Promise((resolve) => this.waiters.push({ method, sessionId, resolve }));
  }

  private onMessage(msg: Json): void {
    if (typeof msg.id === "number") {
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      const error = msg.error as { message: string } | undefined;
      if (error) p?.reject(new Error(`DevTools: ${error.message}`));
      else p?.resolve(msg.result as Json);
      return;
    }
    const method = msg.method as string, sessionId = msg.sessionId as string | undefined;
    const params = msg.params as Json;
    if (sessionId && (method === "Runtime.consoleAPICalled" || method === "Runtime.exceptionThrown")) {
      const log = this.logs.get(sessionId) ?? [];
      if (method === "Runtime.consoleAPICalled") {
        const args = params.args as { value?: unknown; description?: string }[];
        log.push(`[${params.type}] ${args.map((a) => a.value ?? a.description).join(" ")}`);
      } else {
        const d = params.exceptionDetails as { exception?: { description?: string }; text: string };
        log.push(`[exception] ${d.exception?.description ?? d.text}`);
      }
      this.logs.set(sessionId, log);
    }
    this.waiters = this.waiters.filter((w) => {
      if (w.method !== method || (w.sessionId && w.sessionId !== sessionId)) return true;
      w.resolve(params);
      return false;
    });
  }

  /** A new tab, attached, with page and runtime events on. */
  async newPage(): Promise<Page> {
    const { targetId } = await this.send<{ targetId: string }>("Target.createTarget", { url: "about:blank" });
    const { sessionId } = await this.send<{ sessionId: string }>("Target.attachToTarget", {
      targetId,
      flatten: true,
    });
    const page = new Page(this, sessionId);
    await page.send("Page.enable");
    await page.send("Runtime.enable");
    return page;
  }

  /** Let downloads land in `dir` (absolute path), under the name the page suggests. */
  async allowDownloads(dir: string): Promise<void> {
    this.downloadDir = dir;
    await this.send("Browser.setDownloadBehavior", {
      behavior: "allow",
      downloadPath: dir,
      eventsEnabled: true,
    });
  }

  /** The path of the next download, once it has completed (call before triggering it). */
  async waitForDownload(timeoutMs = 60_000): Promise<string> {
    const begin = this.once("Browser.downloadWillBegin");
    const finished = (async () => {
      const { guid, suggestedFilename } = await begin as { guid: string; suggestedFilename: string };
      while (true) {
        const p = await this.once("Browser.downloadProgress") as { guid: string; state: string };
        if (p.guid !== guid) continue;
        if (p.state === "completed") return `${this.downloadDir}/${suggestedFilename}`;
        if (p.state === "canceled") throw new Error(`the download of ${suggestedFilename} was canceled`);
      }
    })();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no download completed within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return await Promise.race([finished, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    try {
      await Promise.race([this.send("Browser.close"), new Promise((r) => setTimeout(r, 5000))]);
    } catch { /* the connection may already be gone */ }
    try {
      this.ws.close();
    } catch { /* closed */ }
    try {
      this.child.kill("SIGKILL");
    } catch { /* exited */ }
    await this.child.status;
    await Deno.remove(this.profile, { recursive: true }).catch(() => {});
  }
}
