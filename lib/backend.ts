// The Deno edge of ops/runtime.ts: which wgpu backend drives the adapter (WebGPU does not report it),
// and the runtime the CLIs open with that name. Browser code calls Runtime.create directly.

import { type KernelFamily, Runtime } from "../ops/runtime.ts";

/**
 * The wgpu backend behind an adapter, from what it reports (WebGPU itself does not say). wgpu's GL
 * backend cannot query subgroups and reports the whole allowed range, 4..128, and it offers no
 * shader-f16; Vulkan and Metal report the device's real subgroup sizes. Anything else: "unknown".
 */
export function inferBackend(
  info: { subgroupMinSize?: number; subgroupMaxSize?: number },
  features: { has(f: string): boolean },
  os: string,
): string {
  const min = info.subgroupMinSize, max = info.subgroupMaxSize;
  if (min === 4 && max === 128 && !features.has("shader-f16")) {
    return "gl (inferred: no subgroup size reported)";
  }
  if (min && max) {
    const native = os === "darwin" ? "metal" : os === "windows" ? "vulkan or dx12" : "vulkan";
    return `${native} (inferred: ${min === max ? `${min}` : `${min}..${max}`}-wide subgroups reported)`;
  }
  return "unknown (WebGPU does not report it; wgpu tries Vulkan first, then GL)";
}

/**
 * With XDG_RUNTIME_DIR unset, the Vulkan loader's window-system code prints "error: XDG_RUNTIME_DIR is
 * invalid or not set in the environment." (twice) on every start, which reads like a failure though
 * compute needs no display. Point it at the temp directory first (nothing is created there).
 */
function quietLoaderWarnings(): void {
  try {
    if (Deno.env.get("XDG_RUNTIME_DIR")) return;
    Deno.env.set("XDG_RUNTIME_DIR", Deno.env.get("TMPDIR") || "/tmp");
  } catch {
    // no --allow-env: leave the environment alone
  }
}

/** DENO_WEBGPU_BACKEND when set, else inferBackend's guess from what the adapter reports. */
export function denoBackendName(adapter: GPUAdapter): string {
  const env = Deno.env.get("DENO_WEBGPU_BACKEND");
  if (env) return `${env} (DENO_WEBGPU_BACKEND)`;
  return inferBackend(adapter.info, adapter.features, Deno.build.os);
}

/**
 * Runtime.create for the CLIs: no loader noise, the adapter line names the inferred wgpu backend, and
 * `kernels` (lib/cli.ts kernelsChoice: --kernels, else TINYGPT_KERNELS, else "auto") picks the family.
 */
export function createRuntime(
  opts: { timestamps?: boolean; kernels?: KernelFamily | "auto" } = {},
): Promise<Runtime> {
  quietLoaderWarnings();
  return Runtime.create({ ...opts, backend: denoBackendName });
}
