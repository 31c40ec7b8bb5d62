// Generated kernels, made once: every op family generates WGSL per variant (shape constants,
// workgroup size, epilogue, ...); the runtime caches pipelines by code, this caches the strings. Keys
// start with the op and kernel ("matmul/tiled/...", "attention/gpu/fwd/16", "elementwise/...").

const codes = new Map<string, string>();
const keys = new Map<string, string>();

/** The WGSL `make()` returns, generated once per `key` (a key names the file and the variant). */
export function cachedWGSL(key: string, make: () => string): string {
  let code = codes.get(key);
  if (code === undefined) {
    code = make();
    codes.set(key, code);
    keys.set(code, key);
  }
  return code;
}

/** The key `code` was generated under by `cachedWGSL` (undefined for a kernel not generated there). */
export function variantKey(code: string): string | undefined {
  return keys.get(code);
}
