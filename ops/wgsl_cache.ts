// Generated kernels, made once: the row families generate WGSL per variant (C, workgroup size,
// target kind); the runtime caches pipelines by code, this caches the strings.

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
