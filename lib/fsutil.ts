// Crash-safe file writes. `atomicWrite` writes a temp file next to the target, fsyncs it, renames it
// over the target and (best effort) fsyncs the directory, so a reader or a crash sees either the old
// file or the new one, never a mix. `appendLine` appends one line (metrics.jsonl).
//
// Permissions: Deno.rename needs read AND write access to the directory (e.g. --allow-read=out
// --allow-write=out). The directory fsync is only attempted when read access is already granted, so
// it never triggers a permission prompt.

import { basename, dirname, join } from "node:path";

const encoder = new TextEncoder();

function tempPath(path: string): string {
  const rand = Array.from(crypto.getRandomValues(new Uint8Array(6)), (b) => b.toString(16).padStart(2, "0"))
    .join("");
  return join(dirname(path), `.${basename(path)}.tmp-${Deno.pid}-${rand}`);
}

const toBytes = (
  data: Uint8Array | string,
): Uint8Array => (typeof data === "string" ? encoder.encode(data) : data);

function canRead(path: string): boolean {
  try {
    return Deno.permissions.querySync({ name: "read", path }).state === "granted";
  } catch {
    return false;
  }
}

function syncDirSync(dir: string): void {
  if (!canRead(dir)) return;
  try {
    const d = Deno.openSync(dir, { read: true });
    try {
      d.syncSync();
    } finally {
      d.close();
    }
  } catch {
    // best effort: some platforms/filesystems cannot fsync a directory
  }
}

async function syncDir(dir: string): Promise<void> {
  if (!canRead(dir)) return;
  try {
    const d = await Deno.open(dir, { read: true });
    try {
      await d.sync();
    } finally {
      d.close();
    }
  } catch {
    // best effort
  }
}

async function writeAll(f: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await f.write(bytes.subarray(off));
}

function writeAllSync(f: Deno.FsFile, bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.length) off += f.writeSync(bytes.subarray(off));
}

/** Replace `path` with `data` atomically (temp file + fsync + rename + directory fsync). */
export async function atomicWrite(path: string, data: Uint8Array | string): Promise<void> {
  const bytes = toBytes(data);
  const tmp = tempPath(path);
  let created = false;
  try {
    const f = await Deno.open(tmp, { write: true, createNew: true });
    created = true;
    try {
      await writeAll(f, bytes);
      await f.sync();
    } finally {
      f.close();
    }
    await Deno.rename(tmp, path);
    created = false;
  } finally {
    if (created) await Deno.remove(tmp).catch(() => {});
  }
  await syncDir(dirname(path));
}

/** Synchronous `atomicWrite` (for places that cannot await, e.g. a signal handler). */
export function atomicWriteSync(path: string, data: Uint8Array | string): void {
  const bytes = toBytes(data);
  const tmp = tempPath(path);
  let created = false;
  try {
    const f = Deno.openSync(tmp, { write: true, createNew: true });
    created = true;
    try {
      writeAllSync(f, bytes);
      f.syncSync();
    } finally {
      f.close();
    }
    Deno.renameSync(tmp, path);
    created = false;
  } finally {
    if (created) {
      try {
        Deno.removeSync(tmp);
      } catch {
        // already gone
      }
    }
  }
  syncDirSync(dirname(path));
}

/** Append `line` plus a newline to `path` (created if missing); `line` must not contain a newline. */
export async function appendLine(path: string, line: string): Promise<void> {
  if (line.includes("\n")) throw new Error("appendLine: the line contains a newline");
  const f = await Deno.open(path, { append: true, create: true });
  try {
    await writeAll(f, encoder.encode(line + "\n"));
  } finally {
    f.close();
  }
}

/** A write that failed, naming the file: "could not write out/model.safetensors: No space left ...". */
export class WriteError extends Error {
  override name = "WriteError";
  constructor(readonly file: string, cause: unknown) {
    super(`could not write ${file}: ${cause instanceof Error ? cause.message : String(cause)}`);
  }
}

/** Run `fn`, which writes `file`, turning a failure into a WriteError naming it. */
export async function writing<T>(file: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw e instanceof WriteError ? e : new WriteError(file, e);
  }
}
