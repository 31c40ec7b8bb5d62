// No WebGPU adapter, or a device lost mid-run: one `error: GPU failure: ...` line saying what to
// install / that the device was lost, exit 1, and the last checkpoint stays loadable.

import assert from "node:assert/strict";
import {
  assertOneLine,
  deno,
  inspect,
  runArgs,
  sample,
  tempDir,
  TINY,
  train,
  writeCheckpoint,
  writeData,
} from "./helpers.ts";

const LOSE = new URL("./fixtures/lose_device.ts", import.meta.url).pathname;

// A Vulkan-only wgpu with no Vulkan driver to load: exactly what a machine without a GPU driver and
// without Mesa's lavapipe sees.
const NO_ADAPTER = {
  DENO_WEBGPU_BACKEND: "vulkan",
  VK_ICD_FILENAMES: "/nonexistent/icd.json",
  VK_DRIVER_FILES: "/nonexistent/icd.json",
};

Deno.test("no WebGPU adapter: one line saying what to install, exit 1", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const data = await writeData(dir);
    await writeCheckpoint(`${dir}/ck`);
    const re = /^error: GPU failure: no WebGPU adapter found: install .*mesa-vulkan-drivers/;
    const t = await train(dir, [`--data=${data}`, `--out=${dir}/out`, ...TINY, "--steps=2"], NO_ADAPTER);
    assertOneLine(t, re, 1, "train.ts");
    const s = await sample(dir, [`--checkpoint=${dir}/ck/model.safetensors`], NO_ADAPTER);
    assertOneLine(s, re, 1, "sample.ts");
    assert.equal(s.stdout, "", "nothing sampled");
  } finally {
    await cleanup();
  }
});

Deno.test("device lost while training: one line, exit 1, the last checkpoint is intact", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const data = await writeData(dir);
    const out = `${dir}/out`;
    const args = [
      `--data=${data}`,
      `--out=${out}`,
      ...TINY,
      "--steps=100",
      "--eval-interval=3",
      "--log-interval=1",
    ];
    // A step is one submit plus one for its loss readback; evals and saves add a few more.
    const r = await deno(runArgs(LOSE, dir, ["train", "30", ...args]));
    assertOneLine(r, /^error: GPU failure: the GPU device was lost: simulated device loss$/, 1);
    const info = await inspect(out);
    assert.ok(info.model, info.modelError);
    assert.ok(info.model.step >= 3 && info.model.step % 3 === 0, `checkpoint step ${info.model.step}`);
    assert.equal(info.resume?.step, info.model.step, info.resumeError);

    const s = await deno(
      runArgs(LOSE, dir, ["sample", "3", `--checkpoint=${out}/model.safetensors`, "--max-new-tokens=50"]),
    );
    assertOneLine(s, /^error: GPU failure: the GPU device was lost: simulated device loss$/, 1, "sample.ts");
  } finally {
    await cleanup();
  }
});

Deno.test("start-up: no loader noise without XDG_RUNTIME_DIR; the adapter line names the backend that runs", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const data = await writeData(dir);
    const args = runArgs(new URL("../../train.ts", import.meta.url).pathname, dir, [
      `--data=${data}`,
      ...TINY,
      "--steps=1",
    ]);
    // A bare environment: no XDG_RUNTIME_DIR, no DENO_WEBGPU_BACKEND (only what deno itself needs).
    const keep = ["PATH", "HOME", "DENO_DIR", "TMPDIR"].filter((k) => Deno.env.get(k) !== undefined);
    const bare = Object.fromEntries(keep.map((k) => [k, Deno.env.get(k)!]));
    const run = async (out: string, env: Record<string, string>) => {
      const o = await new Deno.Command("deno", {
        args: [...args, `--out=${dir}/${out}`],
        clearEnv: true,
        env: { ...bare, NO_COLOR: "1", ...env },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const dec = new TextDecoder();
      return { code: o.code, stdout: dec.decode(o.stdout), stderr: dec.decode(o.stderr) };
    };
    const vk = await run("vk", {});
    assert.equal(vk.code, 0, vk.stderr);
    assert.equal(vk.stderr, "", "nothing on stderr (the Vulkan loader's XDG_RUNTIME_DIR complaint is gone)");
    assert.match(vk.stdout, /^adapter: .*\[backend (vulkan|gl) \(inferred: /m);
    // No Vulkan driver: wgpu falls back to GL, and the adapter line says so (it used to say vulkan).
    const gl = await run("gl", {
      VK_ICD_FILENAMES: "/nonexistent/icd.json",
      VK_DRIVER_FILES: "/nonexistent/icd.json",
    });
    assert.equal(gl.code, 0, gl.stderr);
    assert.equal(gl.stderr, "");
    assert.match(gl.stdout, /^adapter: .*\[backend gl \(inferred: no subgroup size reported\)/m);
  } finally {
    await cleanup();
  }
});
