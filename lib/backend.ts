// The Deno edge of ops/runtime.ts: which wgpu backend drives the adapter (WebGPU does not report it),
// and the runtime the CLIs open with that name. Browser code calls Runtime.create directly.

import { type KernelFamily, Runtime } from "../ops/runtime.ts";
import { envGranted, optionalEnv } from "./env.ts";

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
 * With XDG_RUNTIME_DIR unset, Mesa's Vulkan device-select layer (which asks libwayland for a display
 * while the loader enumerates devices) prints "error: XDG_RUNTIME_DIR is invalid or not set in the
 * environment." twice on every start, which reads like a failure though compute needs no display.
 * Point it at the temp directory first (nothing is created there). Only where env access to it is
 * granted already (the deno.json tasks grant --allow-env): setting a variable needs the permission
 * that reading it does, and a prompt for it would be worse than the two lines.
 */
function quietLoaderWarnings(): void {
  if (!envGranted("XDG_RUNTIME_DIR") || Deno.env.get("XDG_RUNTIME_DIR")) return;
  Deno.env.set("XDG_RUNTIME_DIR", optionalEnv("TMPDIR") || "/tmp");
}

/**
 * DENO_WEBGPU_BACKEND when set (and readable without a prompt: lib/env.ts), else inferBackend's guess
 * from what the adapter reports. wgpu reads the variable natively, so it picks the backend either way.
 */
export function denoBackendName(adapter: GPUAdapter): string {
  const env = optionalEnv("DENO_WEBGPU_BACKEND");
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
