// lib/plot.ts: the SVG is well-formed (balanced tags, escaped text), has one curve per non-empty
// series, axis and tick labels, and survives single points, empty series and non-finite values.

import assert from "node:assert/strict";
import { lossSvg, type Series } from "../../lib/plot.ts";

/** Minimal XML well-formedness: balanced tags, quoted attributes, no raw `<`/`&` in text. */
function checkXml(svg: string): void {
  assert.ok(svg.startsWith("<svg "), "starts with <svg");
  assert.ok(svg.trimEnd().endsWith("</svg>"), "ends with </svg>");
  const stack: string[] = [];
  const tag = /<(\/?)([a-zA-Z][\w-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/y;
  let i = 0;
  while (i < svg.length) {
    const lt = svg.indexOf("<", i);
    const text = svg.slice(i, lt === -1 ? svg.length : lt);
    assert.ok(!/&(?!(#\d+|amp|lt|gt|quot|apos);)/.test(text), `bare & in text: ${text}`);
    if (lt === -1) break;
    tag.lastIndex = lt;
    const m = tag.exec(svg);
    assert.ok(m, `malformed tag at ${lt}: ${svg.slice(lt, lt + 60)}`);
    const [all, close, name, , selfClose] = m;
    if (close) assert.equal(stack.pop(), name, `closing </${name}>`);
    else if (!selfClose) stack.push(name);
    i = lt + all.length;
  }
  assert.deepEqual(stack, [], "all tags closed");
  assert.ok(!/NaN|Infinity|undefined/.test(svg), "no NaN/Infinity/undefined");
}

const count = (s: string, re: RegExp) => (s.match(re) ?? []).length;
const texts = (svg: string) => [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]);

Deno.test("two curves: paths, legend, title, axis labels and tick labels", () => {
  const train: [number, number][] = Array.from(
    { length: 200 },
    (_, i) => [i * 10, 4.2 * Math.exp(-i / 50) + 1],
  );
  const val: [number, number][] = Array.from(
    { length: 20 },
    (_, i) => [i * 100, 4.3 * Math.exp(-i / 5) + 1.1],
  );
  const svg = lossSvg(
    [{ name: "train", points: train }, { name: "val", points: val, color: "#ff0000" }],
    "GPT",
  );
  checkXml(svg);
  assert.equal(count(svg, /<path /g), 2);
  assert.ok(svg.includes('stroke="#ff0000"'));
  const t = texts(svg);
  for (const s of ["GPT", "step", "loss", "train", "val"]) assert.ok(t.includes(s), s);
  assert.ok(t.includes("0") && t.some((s) => /^[12]\d00$/.test(s)), `x tick labels: ${t}`);
  assert.ok(t.some((s) => /^[1-5](\.\d+)?$/.test(s)), "y tick labels");
  // Coordinates stay inside the canvas.
  for (const m of svg.matchAll(/[ML](-?[\d.]+) (-?[\d.]+)/g)) {
    const x = Number(m[1]), y = Number(m[2]);
    assert.ok(x >= 0 && x <= 800 && y >= 0 && y <= 480, `${x},${y}`);
  }
});

Deno.test("a single point, an empty series, and all-empty input", () => {
  const one = lossSvg([{ name: "only", points: [[5, 2.5]] }], "one point");
  checkXml(one);
  assert.equal(count(one, /<path /g), 1);
  assert.equal(count(one, /<circle /g), 1);
  const mixed = lossSvg(
    [{ name: "empty", points: [] }, { name: "full", points: [[0, 1], [1, 0.5]] }],
    "mixed",
  );
  checkXml(mixed);
  assert.equal(count(mixed, /<path /g), 1);
  assert.ok(texts(mixed).includes("empty (no data)"));
  const none = lossSvg([], "nothing");
  checkXml(none);
  assert.equal(count(none, /<path /g), 0);
  checkXml(lossSvg([{ name: "e", points: [] }], "empty"));
});

Deno.test("non-finite values are skipped and break the line", () => {
  const pts: [number, number][] = [[0, 3], [1, NaN], [2, 2], [3, 1.5], [4, Infinity], [NaN, 1], [
    5,
    -Infinity,
  ], [6, 1]];
  const svg = lossSvg([{ name: "diverging", points: pts }, {
    name: "all bad",
    points: [[0, NaN], [1, Infinity]],
  }], "x");
  checkXml(svg);
  assert.equal(count(svg, /<path /g), 1);
  const d = svg.match(/<path d="([^"]*)"/)![1];
  assert.equal(count(d, /M/g), 3, d); // [0] | [2, 3] | [6]
  assert.equal(count(d, /L/g), 1, d);
  assert.equal(count(svg, /<circle /g), 2); // the lone points 0 and 6
  assert.ok(texts(svg).includes("all bad (no data)"));
  checkXml(lossSvg([{ name: "huge", points: [[0, 1e308], [1, -1e308], [2, 1]] }], "huge"));
});

Deno.test("constant, negative, tiny and large values; escaped names", () => {
  const cases: Series[][] = [
    [{ name: "flat", points: [[0, 2], [10, 2], [20, 2]] }],
    [{ name: "zero", points: [[0, 0], [1, 0]] }],
    [{ name: "neg", points: [[-5, -1], [5, -3]] }],
    [{ name: "tiny", points: [[0, 1e-7], [1, 3e-7]] }],
    [{ name: "big", points: [[0, 1e9], [1e6, 2e9]] }],
    [{ name: `<b>&"quotes"'`, points: [[0, 1], [1, 2]], color: 'red" onload="x' }],
  ];
  for (const s of cases) {
    const svg = lossSvg(s, `title <${s[0].name}> & more`);
    checkXml(svg);
    assert.equal(count(svg, /<path /g), 1, s[0].name);
    assert.ok(texts(svg).length >= 6, "ticks present");
  }
  const esc = lossSvg(cases[5], "t");
  assert.ok(esc.includes("&#60;b&#62;&#38;&#34;quotes&#34;&#39;"));
  assert.ok(!esc.includes('onload="x'));
});

Deno.test("many points stay fast", () => {
  const pts: [number, number][] = Array.from({ length: 200_000 }, (_, i) => [i, 1 + 1 / (i + 1)]);
  const t0 = performance.now();
  const svg = lossSvg([{ name: "long", points: pts }], "long");
  assert.ok(performance.now() - t0 < 2000);
  assert.ok(svg.length > 0 && !svg.includes("NaN"));
});
