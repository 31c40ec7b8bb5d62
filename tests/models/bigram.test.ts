import { assertClose, Rng, rt } from "../util.ts";
import {
  BigramActivations,
  BigramEmbeddingMLP,
  type BigramMLP,
  BigramOneHotMLP,
} from "../../models/bigram.ts";
import { LossHistory, Optimizer, StepState } from "../../models/common.ts";
import { linearRef } from "../reference/matmul.ts";

const V = 13, n = 57;
const rng = new Rng(8);
const ids = Uint32Array.from({ length: n + 1 }, (_, i) => (i * 7 + rng.int(3)) % V);

function setup(model: BigramMLP): BigramActivations {
  const a = new BigramActivations(rt, model.kind, model.cfg, n);
  model.setInputs(a, ids.subarray(0, n));
  if (model.kind === "bigram-onehot") a.targets.write(ids.slice(1));
  else {
    const t = new Float32Array(n * V);
    for (let i = 0; i < n; i++) t[i * V + ids[i + 1]] = 1;
    a.targets.write(t);
  }
  return a;
}

for (const make of [() => new BigramOneHotMLP(rt, V, 1), () => new BigramEmbeddingMLP(rt, V, 1)]) {
  const name = make().kind;
  Deno.test(`${name}: logits match a float64 forward of the same weights`, async () => {
    const model = make();
    const a = setup(model);
    model.forward(a, true, false);
    const p = await model.params.readAll();
    let x: Float64Array;
    if (model.kind === "bigram-onehot") {
      x = new Float64Array(n * V);
      for (let i = 0; i < n; i++) x[i * V + ids[i]] = 1;
    } else {
      const E = model.cfg.embd, tab = p.get("token_embedding.weight")!;
      x = new Float64Array(n * E);
      for (let i = 0; i < n; i++) for (let e = 0; e < E; e++) x[i * E + e] = tab[ids[i] * E + e];
    }
    const inp = x.length / n, Hd = model.cfg.hidden;
    const h = linearRef(x, p.get("fc1.weight")!, p.get("fc1.bias")!, n, Hd, inp).map((
      v,
    ) => (v > 0 ? v : 0.01 * v));
    const logits = linearRef(h, p.get("fc2.weight")!, p.get("fc2.bias")!, n, V, Hd);
    assertClose(await a.logits.read(), logits, 1e-5, `${name} logits`);
  });

  for (const kind of ["sgd", "adamw"] as const) {
    Deno.test(`${name} trains below its initial loss with ${kind}`, async () => {
      const model = make();
      const a = setup(model);
      const opt = new Optimizer(rt, model.params, kind, kind === "sgd" ? 0.5 : 1e-2);
      const st = new StepState(rt, 0);
      const hist = new LossHistory(rt, 200);
      for (let s = 1; s <= 200; s++) {
        st.set(s);
        model.forward(a);
        model.backward(a);
        opt.step(st.tensor);
        hist.push(a.loss);
        rt.submit();
      }
      const l = await hist.drain();
      if (!(l[199] < l[0] - 0.3)) throw new Error(`${kind}: loss ${l[0]} -> ${l[199]} did not drop by 0.3`);
    });
  }

  Deno.test(`${name}: greedy generate follows the argmax chain`, async () => {
    const model = make();
    const out = await model.generate(3, 6);
    if (out.length !== 6 || out.some((i) => i < 0 || i >= V)) throw new Error(`bad ids ${out}`);
    const again = await model.generate(out[0], 5);
    if (again.join() !== out.slice(1).join()) throw new Error("greedy chain is not deterministic/Markov");
  });
}
