// One run per --out directory: an exclusive lock file `train.lock` in it, holding the owner's pid and
// start time. The lock is the operating system's (flock via Deno.FsFile.tryLock), taken atomically
// and released by the kernel when the process dies, however it dies; the file's contents only say
// who holds it. A lock file left by a dead process (SIGKILL, power loss) is therefore free to take,
// and the new owner says so. A second run into a locked directory fails with the owner's pid.
//
// Removing the file on release could race with a run that opened it just before: after locking,
// the new owner checks that the path still names the file it locked, and starts over if not.

import { join } from "node:path";
import { fail } from "../lib/cli.ts";

export const LOCK_NAME = "train.lock";

interface Owner {
  pid?: number;
  started?: string;
}

export interface OutLock {
  /** A note for the user when a stale lock was taken over (null otherwise). */
  note: string | null;
  /** Remove the lock file and unlock it. */
  release(): void;
}

function parseOwner(text: string): Owner | null {
  try {
    const o = JSON.parse(text);
    return typeof o === "object" && o !== null ? o : null;
  } catch {
    return null;
  }
}

async function readOwner(f: Deno.FsFile): Promise<string> {
  await f.seek(0, Deno.SeekMode.Start);
  const buf = new Uint8Array(4096);
  const n = await f.read(buf);
  return new TextDecoder().decode(buf.subarray(0, n ?? 0));
}

const who = (o: Owner | null) => `pid ${o?.pid ?? "unknown"}${o?.started ? `, started ${o.started}` : ""}`;

/** Take the lock of directory `out` (which must exist), or fail (exit 2) naming the run holding it. */
export async function lockOutDir(out: string): Promise<OutLock> {
  const path = join(out, LOCK_NAME);
  for (let attempt = 0; attempt < 20; attempt++) {
    const f = await Deno.open(path, { read: true, write: true, create: true });
    if (!(await f.tryLock(true))) {
      // Held. The owner writes its pid right after locking: give it a moment if it has not yet.
      let owner: Owner | null = null;
      for (let i = 0; i < 20 && !owner; i++) {
        owner = parseOwner(await readOwner(f));
        if (!owner) await new Promise((r) => setTimeout(r, 25));
      }
      f.close();
      fail(
        `${out} is in use by another train.ts run (${who(owner)}): ` +
          `wait for it to finish, stop it, or use another --out`,
      );
    }
    const [mine, now] = [await f.stat(), await Deno.stat(path).catch(() => null)];
    if (!now || now.ino !== mine.ino || now.dev !== mine.dev) {
      f.close(); // the previous owner removed it while we opened it: try again on the new file
      continue;
    }
    const prev = (await readOwner(f)).trim();
    const note = prev
      ? `note: took over the lock in ${out} left by a run that is no longer running (${
        who(parseOwner(prev))
      })`
      : null;
    await f.truncate(0);
    await f.seek(0, Deno.SeekMode.Start);
    const owner: Owner = { pid: Deno.pid, started: new Date().toISOString() };
    await f.write(new TextEncoder().encode(JSON.stringify(owner) + "\n"));
    await f.sync();
    let released = false;
    return {
      note,
      release() {
        if (released) return;
        released = true;
        try {
          Deno.removeSync(path);
        } catch { /* already gone */ }
        f.close();
      },
    };
  }
  throw new Error(`could not take the lock ${path}: it kept being replaced`);
}
