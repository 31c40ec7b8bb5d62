// The user-error type shared by the core (browser-safe: no Deno APIs) and the CLIs. lib/cli.ts
// re-exports it and maps it to exit status 2; the web page shows its message.

/** Bad user input: reported as one `error: <message>` line and exit status 2, never a stack trace. */
export class UsageError extends Error {
  /** The class name, also when only the name survives (e.g. across realms). */
  override name = "UsageError";
}

/** Throw a UsageError. */
export function fail(msg: string): never {
  throw new UsageError(msg);
}
