// The page's live loss chart: batch loss (grey), train and val loss estimates (blue, red) against the
// step, on a <canvas>, with axes, ticks and a legend. Redrawn whole on every update (a few thousand
// points at most).

/// <reference lib="dom" />

export interface ChartSeries {
  name: string;
  color: string;
  points: [number, number][];
  width: number;
}

export const CHART_BACKGROUND = "#ffffff";

/** "Nice" tick values (1, 2, 5 x 10^k) covering [lo, hi]. */
function ticks(lo: number, hi: number, n: number): number[] {
  const span = hi - lo || 1;
  const raw = span / n, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * span; v += step) out.push(+v.toPrecision(12));
  return out;
}

export function drawChart(canvas: HTMLCanvasElement, series: ChartSeries[], maxStep: number): void {
  const dpr = globalThis.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * dpr)) canvas.width = Math.round(w * dpr);
  if (canvas.height !== Math.round(h * dpr)) canvas.height = Math.round(h * dpr);
  const g = canvas.getContext("2d")!;
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.fillStyle = CHART_BACKGROUND;
  g.fillRect(0, 0, w, h);

  const pad = { l: 48, r: 12, t: 12, b: 28 };
  const all = series.flatMap((s) => s.points);
  g.font = "12px system-ui, sans-serif";
  g.fillStyle = "#666";
  if (all.length === 0) {
    g.fillText("loss will appear here", pad.l + 8, pad.t + 20);
    return;
  }
  let ylo = Math.min(...all.map((p) => p[1])), yhi = Math.max(...all.map((p) => p[1]));
  if (yhi - ylo < 1e-3) [ylo, yhi] = [ylo - 0.05, yhi + 0.05];
  const xhi = Math.max(1, maxStep);
  const X = (s: number) => pad.l + (s / xhi) * (w - pad.l - pad.r);
  const Y = (v: number) => pad.t + (1 - (v - ylo) / (yhi - ylo)) * (h - pad.t - pad.b);

  g.strokeStyle = "#e5e5e5";
  g.lineWidth = 1;
  g.textAlign = "right";
  g.textBaseline = "middle";
  for (const v of ticks(ylo, yhi, 5)) {
    g.beginPath();
    g.moveTo(pad.l, Y(v));
    g.lineTo(w - pad.r, Y(v));
    g.stroke();
    g.fillText(String(v), pad.l - 6, Y(v));
  }
  g.textAlign = "center";
  g.textBaseline = "top";
  for (const s of ticks(0, xhi, 6)) g.fillText(String(s), X(s), h - pad.b + 6);
  g.strokeStyle = "#999";
  g.strokeRect(pad.l, pad.t, w - pad.l - pad.r, h - pad.t - pad.b);

  for (const s of series) {
    if (s.points.length === 0) continue;
    g.strokeStyle = s.color;
    g.fillStyle = s.color;
    g.lineWidth = s.width;
    g.beginPath();
    s.points.forEach(([x, y], i) => (i ? g.lineTo(X(x), Y(y)) : g.moveTo(X(x), Y(y))));
    g.stroke();
    if (s.points.length === 1) g.fillRect(X(s.points[0][0]) - 2, Y(s.points[0][1]) - 2, 4, 4);
  }
  // Legend, top right.
  g.textAlign = "left";
  g.textBaseline = "middle";
  let lx = w - pad.r - 8 - series.reduce((a, s) => a + g.measureText(s.name).width + 30, 0);
  for (const s of series) {
    g.fillStyle = s.color;
    g.fillRect(lx, pad.t + 12, 14, 3);
    g.fillStyle = "#333";
    g.fillText(s.name, lx + 18, pad.t + 13);
    lx += g.measureText(s.name).width + 30;
  }
}
