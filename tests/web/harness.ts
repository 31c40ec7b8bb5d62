// What every browser test starts with: the page's server (web/serve.ts, plus any extra bundled test
// scripts) on a free port, and a headless Chromium with a tab on it.

import { startServer, type WebServer } from "../../web/serve.ts";
import { Browser, type Page } from "./browser.ts";

export interface Harness {
  server: WebServer;
  browser: Browser;
  page: Page;
  close(): Promise<void>;
}

export async function openPage(extraScripts: Record<string, URL> = {}): Promise<Harness> {
  const server = await startServer({ port: 0, extraScripts });
  let browser: Browser;
  try {
    browser = await Browser.launch();
  } catch (e) {
    await server.shutdown();
    throw e;
  }
  const page = await browser.newPage();
  return {
    server,
    browser,
    page,
    async close() {
      await browser.close();
      await server.shutdown();
    },
  };
}

/** The #status element's data-* attributes. */
export interface Status {
  state: string;
  ready?: string;
  step?: string;
  loss?: string;
  error?: string;
  losses?: string;
}

export const STATUS = `({ ...document.getElementById("status").dataset })`;

/** Wait until the run on the page is done or failed; a failure is thrown with the page's error. */
export async function waitForRun(page: Page, timeoutMs: number): Promise<Status> {
  const s = await page.waitFor<Status>(
    `(() => { const s = ${STATUS}; return ["done", "error"].includes(s.state) && s; })()`,
    timeoutMs,
    "the run to finish (#status data-state done or error)",
  );
  if (s.state === "error") throw new Error(`the page reports: ${s.error}\npage log:\n${page.log()}`);
  return s;
}
