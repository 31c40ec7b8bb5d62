// Child-process helper for tests/cli (not a test): describes the --out directory given as the first
// argument as one JSON object on stdout (see Inspection in helpers.ts). The model file is decoded and
// loaded onto the GPU exactly as sample.ts does; the resume file is read as --resume does.

import { decodeSafetensors } from "../../lib/safetensors.ts";
import { firstNonFiniteParam } from "../../models/checkpoint.ts";
import { loadModel, readResume } from "../../models/files.ts";
import { Runtime } from "../../ops/runtime.ts";

const dir = Deno.args[0];
const ckpt = `${dir}/model.safetensors`;
const out: Record<string, unknown> = {
  files: [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
};

try {
  const bytes = await Deno.readFile(ckpt);
  const { metadata } = decodeSafetensors(bytes, ckpt);
  const sha256 = Array.from(
    new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  const rt = await Runtime.create();
  const m = await loadModel(rt, ckpt);
  const values = await m.model.params.readAll();
  out.model = {
    step: m.step,
    kind: m.kind,
    finite: firstNonFiniteParam(values) === null,
    sha256,
    trainConfig: metadata.train_config === undefined ? undefined : JSON.parse(metadata.train_config),
  };
  rt.destroy();
} catch (e) {
  out.modelError = String(e);
}

try {
  const r = await readResume(ckpt);
  out.resume = { step: r.step, finite: firstNonFiniteParam(r.params) === null, settings: r.settings };
} catch (e) {
  out.resumeError = String(e);
}

const losses: (number | null)[] = [];
const evals: unknown[] = [];
let badLines = 0;
let text = "";
try {
  text = await Deno.readTextFile(`${dir}/metrics.jsonl`);
} catch { /* no metrics */ }
for (const line of text.split("\n")) {
  if (!line) continue;
  try {
    const m = JSON.parse(line);
    if (m.eval) evals.push(m.eval);
    if (Array.isArray(m.losses)) {
      m.losses.forEach((l: number, i: number) => {
        const s = m.step - m.losses.length + 1 + i;
        if (losses[s] !== undefined && losses[s] !== null) badLines++;
        losses[s] = l;
      });
    }
  } catch {
    badLines++;
  }
}
out.losses = Array.from(losses, (x) => x ?? null);
out.evals = evals;
out.badLines = badLines;
console.log(JSON.stringify(out));
