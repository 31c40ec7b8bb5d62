// Generated kernels, made once: every op family generates WGSL per variant (shape constants,
// workgroup size, epilogue, ...); the runtime caches pipelines by code, this caches the strings. Keys
// start with the op and kernel ("matmul/tiled/...", "attention/gpu/fwd/16", "elementwise/...").

const codes = new Map<string, string>();

/** The WGSL `make()` returns, generated once per `key` (a key names the file and the variant). */
export function cachedWGSL(key: string, make: () => string): string {
  let code = codes.get(key);
  if (code === undefined) {
    code = make();
    codes.set(key, code);
  }
  return code;
}
