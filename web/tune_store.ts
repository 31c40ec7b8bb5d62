// The matmul autotuner's cache in the page (ops/matmul/tune.ts TuneStore): one IndexedDB record per
// origin, the same JSON text the Deno cache file holds (lib/tune_cache.ts). An IndexedDB put is
// atomic, so a reader never sees half of it. (The few IndexedDB types used are declared here: this
// module is also type-checked under Deno's lib, which has no IndexedDB.)

import type { TuneStore } from "../ops/matmul/tune.ts";

interface Req<T> {
  result: T;
  error: unknown;
  onsuccess: (() => void) | null;
  onerror: (() => void) | null;
}
interface Store {
  get(key: string): Req<unknown>;
  put(value: string, key: string): Req<unknown>;
}
interface Tx {
  objectStore(name: string): Store;
  error: unknown;
  oncomplete: (() => void) | null;
  onerror: (() => void) | null;
  onabort: (() => void) | null;
}
interface DB {
  createObjectStore(name: string): unknown;
  transaction(name: string, mode: "readonly" | "readwrite"): Tx;
  close(): void;
}
interface Factory {
  open(name: string, version: number): Req<DB> & { onupgradeneeded: (() => void) | null };
}

const STORE = "kv", KEY = "matmul-tuning";

function open(name: string): Promise<DB> {
  const idb = (globalThis as unknown as { indexedDB: Factory }).indexedDB;
  return new Promise((resolve, reject) => {
    const r = idb.open(name, 1);
    r.onupgradeneeded = () => r.result.createObjectStore(STORE);
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

function request<T>(db: DB, mode: "readonly" | "readwrite", f: (s: Store) => Req<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, mode);
    const r = f(tx.objectStore(STORE));
    tx.oncomplete = () => resolve(r.result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

/** The page's tuning store: database `name` (default "tinygpt-webgpu") of this origin's IndexedDB. */
export function idbTuneStore(name = "tinygpt-webgpu"): TuneStore {
  return {
    where: `IndexedDB ${name}`,
    async read() {
      const db = await open(name);
      try {
        const v = await request(db, "readonly", (s) => s.get(KEY));
        return typeof v === "string" ? v : null;
      } finally {
        db.close();
      }
    },
    async write(text: string) {
      const db = await open(name);
      try {
        await request(db, "readwrite", (s) => s.put(text, KEY));
      } finally {
        db.close();
      }
    },
  };
}
