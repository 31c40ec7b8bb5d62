// The page in headless Chromium (Dawn/Tint on SwiftShader), driven through its URL contract and
// #status, against the CLIs under Deno (wgpu/naga on lavapipe or GL):
//   - 20 reference-config GPT steps at seed 1337 from the URL: per-step batch losses within 1e-4
//     (relative) of the same 20 steps of train.ts;
//   - a screenshot after training shows the chart (train-line and val-line pixels are there);
//   - the page-trained model, downloaded as model.safetensors, samples in sample.ts, greedy, the same
//     text as the page samples from it;
//   - a CLI-trained checkpoint loaded with the file picker samples, greedy, what sample.ts prints;
//   - without WebGPU, or without an adapter, and with a bad URL value: one clear message.

import assert from "node:assert/strict";
import { deno, ROOT, sample, tempDir, train } from "../cli/helpers.ts";
import { openPage, STATUS, type Status, waitForRun } from "./harness.ts";
import type { Page } from "./browser.ts";
import { decodePng } from "./png.ts";

const STEPS = 20, SEED = 1337;
// The reference config except the batch: SwiftShader runs a batch-64 step in ~20 s on 2 cores.
const BATCH = 8;
const GREEDY_CHARS = 120;
/** Steps of the tiny CLI-trained GPT: enough (at lr 1e-2) for a greedy sample that is not one letter. */
const TINY_STEPS = 300;
/** Steps of the bigram run that is paused and resumed. */
const BIGRAM_STEPS = 60;
/** Where the screenshot is left for a person to look at. */
const SCREENSHOT = "/tmp/tinygpt-web-screenshot.png";

/** The per-step batch losses train.ts logs to metrics.jsonl (read by a child: tests may not read /tmp). */
async function denoLosses(out: string): Promise<number[]> {
  const code = `for (const l of Deno.readTextFileSync(${
    JSON.stringify(`${out}/metrics.jsonl`)
  }).split("\\n")) {
    if (l) for (const x of JSON.parse(l).losses ?? []) console.log(x);
  }`;
  const r = await deno(["eval", "--no-config", code]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim().split("\n").map(Number);
}

/** Greedy-sample `n` characters from the page's current model; the #sample text (prompt included). */
async function pageGreedy(page: Page, n: number): Promise<string> {
  await page.eval(`(() => {
    const set = (id, v) => { document.getElementById(id).value = v; };
    set("temperature", "0"); set("max-new-tokens", "${n}"); set("start", "");
    document.getElementById("sample-btn").click();
  })()`);
  const state = await page.waitFor<string>(
    `(() => { const s = document.getElementById("sample").dataset.state; return s !== "sampling" && s !== "idle" && s; })()`,
    300_000,
    "sampling to finish",
  );
  const text = await page.eval<string>(`document.getElementById("sample").textContent`);
  assert.equal(state, "done", text);
  return text;
}

Deno.test({
  name: "browser: the page trains, samples and exchanges checkpoints like the CLIs",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const { dir, cleanup } = await tempDir();
    const h = await openPage();
    try {
      await Deno.copyFile(`${ROOT}data/tinyshakespeare.txt`, `${dir}/data.txt`);
      const common = [`--data=${dir}/data.txt`, "--eval-iters=1", "--sample-tokens=0", "--log-interval=1"];
      // Under Deno, meanwhile: the same 20 steps, and a tiny GPT for the checkpoint test.
      const denoRuns = Promise.all([
        train(dir, [
          ...common,
          `--out=${dir}/ref`,
          `--steps=${STEPS}`,
          `--seed=${SEED}`,
          `--batch-size=${BATCH}`,
          `--eval-interval=${STEPS}`,
        ]),
        train(dir, [
          ...common,
          `--out=${dir}/tiny`,
          `--steps=${TINY_STEPS}`,
          "--lr=1e-2",
          "--batch-size=16",
          "--block-size=16",
          "--n-embd=32",
          "--n-head=2",
          "--n-layer=1",
          `--eval-interval=${TINY_STEPS}`,
        ]),
        train(dir, [
          ...common,
          `--out=${dir}/bigram`,
          "--model=bigram-onehot",
          `--steps=${BIGRAM_STEPS}`,
          `--eval-interval=${BIGRAM_STEPS}`,
        ]),
      ]);

      await t.step(
        "20 GPT steps from the URL at seed 1337: the losses of the same steps under Deno",
        async () => {
          await h.page.goto(
            `${h.server.url}?model=gpt&steps=${STEPS}&seed=${SEED}&batch-size=${BATCH}&eval-iters=1&autostart=1`,
          );
          const t0 = performance.now();
          const s = await waitForRun(h.page, 600_000);
          const secs = (performance.now() - t0) / 1000;
          const page: number[] = JSON.parse(s.losses!);
          for (const r of await denoRuns) assert.equal(r.code, 0, r.stderr);
          const ref = await denoLosses(`${dir}/ref`);
          assert.equal(page.length, STEPS);
          assert.equal(ref.length, STEPS);
          assert.equal(Number(s.step), STEPS);
          assert.equal(Number(s.loss), page[STEPS - 1]);
          let worst = 0;
          page.forEach((l, i) => {
            const rel = Math.abs(l - ref[i]) / Math.abs(ref[i]);
            worst = Math.max(worst, rel);
            assert.ok(
              rel <= 1e-4,
              `step ${i + 1}: page ${l} vs Deno ${ref[i]} (relative ${rel.toExponential(2)})`,
            );
          });
          assert.ok(page[STEPS - 1] < page[0] - 0.3, `the loss fell: ${page[0]} -> ${page[STEPS - 1]}`);
          console.log(
            `20 steps in the page: ${secs.toFixed(0)} s; worst relative loss difference vs Deno ${
              worst.toExponential(2)
            }`,
          );
          console.log(`  page: ${page.map((x) => x.toFixed(6)).join(" ")}`);
          console.log(`  deno: ${ref.map((x) => x.toFixed(6)).join(" ")}`);
        },
      );

      await t.step("the screenshot after training shows the loss chart", async () => {
        const png = await h.page.screenshot();
        await Deno.writeFile(SCREENSHOT, png);
        const img = decodePng(png);
        const r = await h.page.eval<{ x: number; y: number; w: number; h: number; dpr: number }>(`(() => {
          const b = document.getElementById("chart").getBoundingClientRect();
          return { x: b.x, y: b.y, w: b.width, h: b.height, dpr: devicePixelRatio };
        })()`);
        const count = { drawn: 0, train: 0, val: 0, total: 0 };
        const near = (p: Uint8Array, c: number[]) => c.every((v, i) => Math.abs(p[i] - v) < 40);
        for (let y = Math.ceil(r.y * r.dpr) + 2; y < Math.floor((r.y + r.h) * r.dpr) - 2; y++) {
          for (let x = Math.ceil(r.x * r.dpr) + 2; x < Math.floor((r.x + r.w) * r.dpr) - 2; x++) {
            const p = img.rgba.subarray(4 * (y * img.width + x), 4 * (y * img.width + x) + 4);
            count.total++;
            if (p[0] + p[1] + p[2] < 3 * 250) count.drawn++; // the background is white
            if (near(p, [0x1f, 0x77, 0xb4])) count.train++;
            if (near(p, [0xd6, 0x27, 0x28])) count.val++;
          }
        }
        console.log(`chart pixels: ${JSON.stringify(count)} (screenshot: ${SCREENSHOT})`);
        assert.ok(count.total > 100_000, `the chart is on screen (${count.total} pixels)`);
        assert.ok(count.drawn > 0.01 * count.total, `the chart has drawn pixels: ${count.drawn}`);
        // Each line spans the chart's width at 2.5 px: well over a thousand pixels apiece.
        assert.ok(count.train > 1000, `train loss line pixels: ${count.train}`);
        assert.ok(count.val > 1000, `val loss line pixels: ${count.val}`);
      });

      await t.step("the page-trained model.safetensors samples in sample.ts as in the page", async () => {
        const downloads = `${dir}/downloads`;
        await Deno.mkdir(downloads);
        await h.browser.allowDownloads(downloads);
        const done = h.browser.waitForDownload();
        await h.page.eval(`document.getElementById("download").click()`);
        const file = await done;
        assert.equal(file, `${downloads}/model.safetensors`);
        const cli = await sample(dir, [
          `--checkpoint=${file}`,
          "--temperature=0",
          `--max-new-tokens=${GREEDY_CHARS}`,
        ]);
        assert.equal(cli.code, 0, cli.stderr);
        const text = await pageGreedy(h.page, GREEDY_CHARS);
        assert.equal(text.length, GREEDY_CHARS + 1);
        assert.equal(cli.stdout, text + "\n");
      });

      await t.step("a CLI-trained checkpoint samples greedily in the page as in sample.ts", async () => {
        const ckpt = `${dir}/tiny/model.safetensors`;
        const cli = await sample(dir, [
          `--checkpoint=${ckpt}`,
          "--temperature=0",
          `--max-new-tokens=${GREEDY_CHARS}`,
        ]);
        assert.equal(cli.code, 0, cli.stderr);
        await h.page.setFiles("#load", [ckpt]);
        const info = await h.page.waitFor<string>(
          `(() => { const t = document.getElementById("model-info").textContent; return t.startsWith("loaded") && t; })()`,
          60_000,
          "the checkpoint to load",
        );
        assert.equal(info, `loaded model.safetensors: gpt, step ${TINY_STEPS}, 65 characters`);
        const text = await pageGreedy(h.page, GREEDY_CHARS);
        assert.equal(cli.stdout, text + "\n");
        const distinct = new Set(text).size;
        assert.ok(distinct >= 6, `a greedy sample with ${distinct} distinct characters is too weak a check`);
        console.log(`greedy sample of the CLI checkpoint, page = sample.ts:\n${text}`);
      });

      await t.step(
        "pause holds the run, resume finishes it: the same losses as train.ts uninterrupted",
        async () => {
          await h.page.goto(`${h.server.url}?model=bigram-onehot&steps=${BIGRAM_STEPS}&autostart=1`);
          const step = async () => Number((await h.page.eval<Status>(STATUS)).step ?? 0);
          await h.page.waitFor(`Number(${STATUS}.step) >= 20`, 120_000, "the bigram run to start");
          await h.page.eval(`document.getElementById("pause").click()`);
          assert.equal(await h.page.eval(`document.getElementById("pause").textContent`), "Resume");
          // Pausing reads back the pending losses; data-held="1" once they are shown (data-step is
          // then the step the run holds at). A fixed wait here lost the race under load.
          await h.page.waitFor(`${STATUS}.held === "1"`, 120_000, "the paused run to hold");
          const held = await step();
          await new Promise((r) => setTimeout(r, 2000));
          assert.equal(await step(), held, "no step while paused");
          assert.equal((await h.page.eval<Status>(STATUS)).state, "training");
          assert.ok(held < BIGRAM_STEPS, `paused before the end (step ${held})`);
          await h.page.eval(`document.getElementById("pause").click()`);
          const s = await waitForRun(h.page, 300_000);
          const page: number[] = JSON.parse(s.losses!);
          const ref = await denoLosses(`${dir}/bigram`);
          assert.equal(page.length, BIGRAM_STEPS);
          assert.equal(ref.length, BIGRAM_STEPS);
          let worst = 0;
          page.forEach((l, i) => (worst = Math.max(worst, Math.abs(l - ref[i]) / Math.abs(ref[i]))));
          assert.ok(worst <= 1e-4, `bigram losses: worst relative difference ${worst.toExponential(2)}`);
          console.log(
            `paused at step ${held}; bigram ${BIGRAM_STEPS} steps: worst relative difference vs Deno ${
              worst.toExponential(2)
            }`,
          );
        },
      );

      await t.step("no WebGPU, no adapter, a bad URL value: one clear message each", async () => {
        const cases: [string, string, RegExp][] = [
          [
            `Object.defineProperty(Navigator.prototype, "gpu", { get: () => undefined });`,
            "",
            /^This browser does not support WebGPU \(navigator\.gpu is missing\)/,
          ],
          [
            `GPU.prototype.requestAdapter = async () => null;`,
            "",
            /^This browser supports WebGPU but found no GPU adapter/,
          ],
          ["", "?model=gpt&steps=1.5", /^steps must be an integer >= 1, got "1\.5"$/],
          ["", "?model=transformer", /^model must be one of gpt, bigram-onehot, bigram-embedding/],
        ];
        for (const [script, query, re] of cases) {
          const page = await h.browser.newPage();
          if (script) await page.send("Page.addScriptToEvaluateOnNewDocument", { source: script });
          await page.goto(h.server.url + query);
          const s = await page.waitFor<Status>(
            `(() => { const s = ${STATUS}; return s.state === "error" && s; })()`,
            60_000,
            `the error for ${query || script}`,
          );
          assert.match(s.error!, re);
          assert.equal(await page.eval(`document.getElementById("message").textContent`), s.error);
          assert.equal(await page.eval(`document.getElementById("train").disabled`), true);
        }
      });
    } finally {
      await h.close();
      await cleanup();
    }
  },
});
