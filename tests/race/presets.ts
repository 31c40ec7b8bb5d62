// The kernels a real run of each preset dispatches, planned at full size without running (ops/runtime.ts
// startCapture("plan")): a training step at the preset's batch, an evaluation forward, and decoding one
// sequence (cached passes, then a window pass). The race check asserts it executed each of them.

import type { CapturedDispatch, Runtime } from "../../ops/runtime.ts";
import { GPT } from "../../models/gpt.ts";
import { Optimizer } from "../../models/common.ts";
import { GPTStep } from "../../train/step.ts";
import { parseRun } from "../../train/config.ts";

/** The presets whose kernels the race check must cover. */
export const PRESET_NAMES = ["lecture", "nanogpt-char"];

/** What `rt.dispatch` receives in a real run of `preset` (family: `rt.kernels`); nothing runs. */
export async function plannedKernels(rt: Runtime, preset: string): Promise<CapturedDispatch[]> {
  const run = await parseRun(["--config", preset]);
  const cfg = { ...run.gpt!, vocabSize: 65 }; // TinyShakespeare's characters
  rt.startCapture("plan");
  try {
    const model = new GPT(rt, cfg, run.seed);
    const opt = new Optimizer(rt, model.params, run.optimizer, run.lr, {
      beta1: run.beta1,
      beta2: run.beta2,
      weightDecay: run.weightDecay,
      decayParams: run.decayParams,
      gradClip: run.gradClip,
    });
    const step = new GPTStep(rt, model, opt, run.batch, run.gradAccum, run.seed);
    const n = run.batch * cfg.blockSize;
    step.record(1, run.lr, () => ({ x: new Uint32Array(n), y: new Uint32Array(n) }));
    model.forward(step.acts, step.state.tensor, false);
    // A one-id prompt decodes through cached passes; a longer one starts with a window pass.
    await model.generate([1], 2, { temperature: 0.8 });
    const long = model.decoder(1).prefillMax + 1;
    await model.generate(Array.from({ length: long }, () => 1), 1, { temperature: 0.8, topK: 5, topP: 0.9 });
  } finally {
    // stopCapture ends the capture even if the planning failed.
  }
  return await rt.stopCapture();
}
