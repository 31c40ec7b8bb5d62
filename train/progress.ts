// What the run prints: one line per message, and the progress line (step, loss, tokens/s, ms/step,
// ETA) after every loss readback, i.e. every --log-interval steps. On a terminal the progress line
// is redrawn in place; otherwise each one is its own line (a log file gets every interval).

export function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return "?";
  const m = Math.floor(s / 60), h = Math.floor(m / 60);
  return h
    ? `${h}h${String(m % 60).padStart(2, "0")}m`
    : m
    ? `${m}m${String(Math.round(s % 60)).padStart(2, "0")}s`
    : `${s.toFixed(0)}s`;
}

export class Progress {
  readonly isTTY = Deno.stdout.isTerminal();
  private readonly t0 = performance.now();

  constructor(readonly startStep: number, readonly steps: number, readonly tokensPerStep: number) {}

  /** A message on its own line (clearing a progress line being redrawn on a terminal). */
  log(s: string): void {
    console.log((this.isTTY ? "\r\x1b[2K" : "") + s);
  }

  /** Seconds since the loop started. */
  get seconds(): number {
    return (performance.now() - this.t0) / 1000;
  }

  /** The progress line after `step` with its loss. */
  async update(step: number, loss: number): Promise<void> {
    const dt = this.seconds, done = step - this.startStep;
    const tps = (done * this.tokensPerStep) / dt;
    const eta = ((this.steps - step) * dt) / done;
    const line =
      `step ${step}/${this.steps}  loss ${loss.toFixed(4)}  ${Math.round(tps).toLocaleString()} tok/s  ` +
      `${(1000 * dt / done).toFixed(0)} ms/step  ETA ${fmtTime(eta)}`;
    if (this.isTTY) await Deno.stdout.write(new TextEncoder().encode("\r\x1b[2K" + line));
    else console.log(line);
  }
}
