// Optional environment variables, read without ever asking. On a terminal, Deno.env.get of a variable
// the command line did not allow stops the program with a permission prompt; a setting the user may not
// even have made must not do that. So a variable is read only where env access to it is granted
// already, and one that may not be read counts as unset. The deno.json tasks grant exactly these
// (tests/cli/task.test.ts checks it); `deno run sample.ts` grants none and asks nothing for them.

/** Every environment variable the CLIs read, none of them required. */
export const OPTIONAL_ENV = [
  "TINYGPT_KERNELS", // the kernel family when --kernels is not given (lib/cli.ts kernelsChoice)
  "TINYGPT_DEBUG", // print the stack trace under an error line (lib/cli.ts runMain)
  "DENO_WEBGPU_BACKEND", // wgpu's backend, read natively by wgpu; named on the adapter line (lib/backend.ts)
  "XDG_RUNTIME_DIR", // set when unset, to quiet Mesa's Vulkan device-select layer (lib/backend.ts)
  "TMPDIR", // the value it is set to
  "TINYGPT_CACHE_DIR", // the matmul tuner's cache directory (lib/tune_cache.ts), else the user's cache directory:
  "XDG_CACHE_HOME", //   Linux, $XDG_CACHE_HOME/tinygpt-webgpu
  "HOME", //             Linux ~/.cache/tinygpt-webgpu, macOS ~/Library/Caches/tinygpt-webgpu
  "LOCALAPPDATA", //     Windows
] as const;

/** One of OPTIONAL_ENV: a new variable is added there first, so that the tasks grant it. */
export type OptionalEnvName = typeof OPTIONAL_ENV[number];

/** Whether env access to `name` is granted already (queried, never requested: no prompt). */
export function envGranted(name: OptionalEnvName): boolean {
  try {
    return Deno.permissions.querySync({ name: "env", variable: name }).state === "granted";
  } catch {
    return false;
  }
}

/** The variable's value when it is set and env access to it is granted; otherwise undefined. */
export function optionalEnv(name: OptionalEnvName): string | undefined {
  return envGranted(name) ? Deno.env.get(name) : undefined;
}
