// Ctrl-C (or SIGTERM) asks the loop to finish the current step, save it and exit 0; a second one
// exits at once with 130 (the last checkpoint on disk is whole either way: every write is atomic).

export class Interrupt {
  requested = false;
  private readonly signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  private readonly handler = () => {
    if (this.requested) {
      console.error(
        "error: interrupted again; exiting without saving this step (the last checkpoint is intact)",
      );
      Deno.exit(130);
    }
    this.requested = true;
  };

  constructor() {
    for (const s of this.signals) Deno.addSignalListener(s, this.handler);
  }

  dispose(): void {
    for (const s of this.signals) Deno.removeSignalListener(s, this.handler);
  }
}
