// The Deno edge of ops/runtime.ts: which wgpu backend drives the adapter (WebGPU does not report it),
// and the runtime the CLIs open with that name. Browser code calls Runtime.create directly.

import { Runtime } from "../ops/runtime.ts";

/**
 * DENO_WEBGPU_BACKEND when set, else inferred: wgpu prefers Vulkan on Linux/Windows and Metal on
 * macOS; lavapipe reports 8-wide subgroups.
 */
export function denoBackendName(adapter: GPUAdapter): string {
  const env = Deno.env.get("DENO_WEBGPU_BACKEND");
  if (env) return `${env} (DENO_WEBGPU_BACKEND)`;
  const os = Deno.build.os;
  const guess = os === "darwin" ? "metal" : os === "windows" ? "vulkan or dx12" : "vulkan";
  return `${guess} (wgpu default, inferred${adapter.info.subgroupMaxSize === 8 ? "; 8-wide subgroups" : ""})`;
}

/** Runtime.create for the CLIs: the adapter line names the inferred wgpu backend. */
export function createRuntime(opts: { timestamps?: boolean } = {}): Promise<Runtime> {
  return Runtime.create({ ...opts, backend: denoBackendName });
}
