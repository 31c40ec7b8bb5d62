// The matmul autotuner's cache in the page (ops/matmul/tune.ts TuneStore): one IndexedDB record per
// origin, the same JSON text the Deno cache file holds (lib/tune_cache.ts). An IndexedDB put is
// atomic, so a reader never sees half of it.

import type { TuneStore } from "../ops/matmul/tune.ts";

const STORE = "kv", KEY = "matmul-tuning";

function open(name: string): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const r = indexedDB.open(name, 1);
    r.onupgradeneeded = () => r.result.createObjectStore(STORE);
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

function request<T>(
  db: IDBDatabase,
  mode: IDBTransactionMode,
  f: (s: IDBObjectStore) => IDBRequest<T>,
): Promise<T> {
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
