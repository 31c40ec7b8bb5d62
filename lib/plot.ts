// Loss curves as a standalone SVG line chart (no dependencies): step on x, loss on y, tick labels,
// a legend and a title. Non-finite (or |v| > 1e300) points are skipped (the line breaks there); a lone point is drawn
// as a dot; an empty series appears in the legend as "(no data)". Output never contains NaN.

export interface Series {
  name: string;
  points: [number, number][];
  color?: string;
}

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
const W = 800, H = 480;
const M = { left: 72, right: 24, top: 44, bottom: 56 };

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A coordinate with at most 2 decimals. */
const num = (v: number): string => String(Math.round(v * 100) / 100);

/** A tick label: short, no floating-point noise, no "-0". */
function label(v: number): string {
  if (v === 0 || Object.is(v, -0)) return "0";
  const a = Math.abs(v);
  if (a >= 1e6 || a < 1e-4) return v.toExponential(1).replace("e+", "e");
  return String(Number(v.toPrecision(6)));
}

/** The data range padded to a non-empty interval. */
function domain(vals: number[], pad: number): [number, number] {
  if (vals.length === 0) return [0, 1];
  let lo = Math.min(...vals), hi = Math.max(...vals);
  if (hi - lo <= Math.abs(hi) * 1e-12) {
    const d = Math.abs(hi) * 0.1 || 1;
    return [lo - d, hi + d];
  }
  const d = (hi - lo) * pad;
  lo -= d;
  hi += d;
  return [lo, hi];
}

/** About `count` round-numbered ticks inside [lo, hi]. */
function ticks(lo: number, hi: number, count = 6): number[] {
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  const out: number[] = [];
  for (let k = Math.ceil(lo / step); k * step <= hi + step * 1e-9; k++) {
    out.push(Number((k * step).toPrecision(12)));
  }
  return out;
}

function minMax(vals: number[]): number[] {
  let lo = Infinity, hi = -Infinity;
  for (const v of vals) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return vals.length ? [lo, hi] : [];
}

/** Plottable: finite and not so large that the axis arithmetic overflows. */
const ok = (v: number): boolean => Number.isFinite(v) && Math.abs(v) <= 1e300;

/** A standalone SVG line chart of loss curves (x: step, y: loss). */
export function lossSvg(series: Series[], title: string): string {
  const finite = series.map((s) => s.points.filter(([x, y]) => ok(x) && ok(y)));
  const xs = minMax(finite.flatMap((p) => p.map(([x]) => x)));
  const ys = minMax(finite.flatMap((p) => p.map(([, y]) => y)));
  const [x0, x1] = domain(xs, 0);
  const [y0, y1] = domain(ys, 0.05);
  const pw = W - M.left - M.right, ph = H - M.top - M.bottom;
  const sx = (x: number) => M.left + ((x - x0) / (x1 - x0)) * pw;
  const sy = (y: number) => M.top + (1 - (y - y0) / (y1 - y0)) * ph;

  const o: string[] = [];
  o.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
      `font-family="sans-serif" font-size="12">`,
  );
  o.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="white"/>`);
  o.push(`<text x="${W / 2}" y="24" text-anchor="middle" font-size="16">${esc(title)}</text>`);

  // Grid, ticks and tick labels.
  for (const t of ticks(x0, x1)) {
    const x = num(sx(t));
    o.push(`<line x1="${x}" y1="${M.top}" x2="${x}" y2="${M.top + ph}" stroke="#e5e5e5"/>`);
    o.push(`<text x="${x}" y="${M.top + ph + 18}" text-anchor="middle">${label(t)}</text>`);
  }
  for (const t of ticks(y0, y1)) {
    const y = num(sy(t));
    o.push(`<line x1="${M.left}" y1="${y}" x2="${M.left + pw}" y2="${y}" stroke="#e5e5e5"/>`);
    o.push(
      `<text x="${M.left - 8}" y="${y}" text-anchor="end" dominant-baseline="middle">${label(t)}</text>`,
    );
  }
  o.push(`<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  o.push(`<text x="${M.left + pw / 2}" y="${H - 14}" text-anchor="middle">step</text>`);
  o.push(
    `<text x="18" y="${M.top + ph / 2}" text-anchor="middle" transform="rotate(-90 18 ${M.top + ph / 2})">` +
      `loss</text>`,
  );

  // Curves: one path per non-empty series, a new subpath after each skipped (non-finite) point.
  series.forEach((s, i) => {
    const color = esc(s.color ?? PALETTE[i % PALETTE.length]);
    if (finite[i].length === 0) return;
    let d = "", run: [number, number][] = [];
    const dots: [number, number][] = [];
    const flush = () => {
      if (run.length === 1) dots.push(run[0]);
      run.forEach(([x, y], k) => (d += `${k === 0 ? "M" : "L"}${num(sx(x))} ${num(sy(y))} `));
      run = [];
    };
    for (const p of s.points) {
      if (ok(p[0]) && ok(p[1])) run.push(p);
      else flush();
    }
    flush();
    o.push(
      `<path d="${d.trim()}" fill="none" stroke="${color}" stroke-width="1.5" stroke-linejoin="round"/>`,
    );
    for (const [x, y] of dots) {
      o.push(`<circle cx="${num(sx(x))}" cy="${num(sy(y))}" r="3" fill="${color}"/>`);
    }
  });

  // Legend, top right inside the plot.
  const lw = 16 + Math.max(0, ...series.map((s, i) => (s.name.length + (finite[i].length ? 0 : 10)) * 7)) +
    28;
  const lx = M.left + pw - lw - 8;
  if (series.length) {
    o.push(
      `<rect x="${lx}" y="${M.top + 8}" width="${lw}" height="${series.length * 18 + 8}" ` +
        `fill="white" fill-opacity="0.85" stroke="#ccc"/>`,
    );
  }
  series.forEach((s, i) => {
    const y = M.top + 8 + 4 + i * 18 + 9;
    const color = esc(s.color ?? PALETTE[i % PALETTE.length]);
    o.push(`<line x1="${lx + 8}" y1="${y}" x2="${lx + 28}" y2="${y}" stroke="${color}" stroke-width="2"/>`);
    const name = esc(s.name) + (finite[i].length ? "" : " (no data)");
    o.push(`<text x="${lx + 34}" y="${y}" dominant-baseline="middle">${name}</text>`);
  });
  o.push("</svg>");
  return o.join("\n") + "\n";
}
