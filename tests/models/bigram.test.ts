// The two bigram MLPs, each through both kernel families: loss, logits and every gradient against the
// float64 reference (tests/reference/bigram.ts), one SGD and one AdamW update against the float64
// optimizers, training, and greedy generation. V = 67 and n = 157 pairs cross the workgroup and tile
// sizes; the hidden (8) and embedding (5) widths are the seed notebook's.

import { assertClose, familyTest, relErr, Rng, rt, Tensor } from "../util.ts";
import {
  BigramActivations,
  BigramEmbeddingMLP,
  type BigramMLP,
  BigramOneHotMLP,
} from "../../models/bigram.ts";
import { LossHistory, Optimizer, StepState } from "../../models/common.ts";
import { bigramReference } from "../reference/bigram.ts";
import { adamwRef, sgdRef } from "../reference/optim.ts";

const V = 67, n = 157;
const rng = new Rng(8);
const ids = Uint32Array.from({ length: n + 1 }, (_, i) => (i * 7 + rng.int(3)) % V);

function setup(model: BigramMLP): BigramActivations {
  const a = new BigramActivations(rt, model.kind, model.cfg, n);
  for (const t of Object.values(a)) if (t instanceof Tensor && t.dtype === "f32") t.poison();
  model.setInputs(a, ids.subarray(0, n));
  if (model.kind === "bigram-onehot") a.targets.write(ids.slice(1));
  else {
    const t = new Float32Array(n * V);
    for (let i = 0; i < n; i++) t[i * V + ids[i + 1]] = 1;
    a.targets.write(t);
  }
  return a;
}

/** Forward + backward on the GPU (gradients poisoned first); the loss, and the float64 reference. */
async function forwardBackward(model: BigramMLP, a: BigramActivations) {
  const p0 = await model.params.readAll();
  const p64 = new Map([...p0].map(([k, v]) => [k, Float64Array.from(v)]));
  for (const t of model.params.list) t.grad!.poison(); // (the padding between parameters stays 0)
  const hist = new LossHistory(rt, 1);
  model.forward(a);
  model.backward(a);
  hist.push(a.loss);
  const loss = (await hist.drain())[0];
  return { loss, p0, ref: bigramReference(model.kind, model.cfg, p64, ids.subarray(0, n), ids.subarray(1)) };
}

/** name -> per-parameter values laid out like the ParamStore's flat buffer (padding 0). */
function flat(model: BigramMLP, values: Map<string, ArrayLike<number>>): Float64Array {
  const store = model.params, out = new Float64Array(store.params.size);
  store.list.forEach((t, k) => out.set(values.get(t.name)!, store.offsets[k]));
  return out;
}

for (const make of [() => new BigramOneHotMLP(rt, V, 1), () => new BigramEmbeddingMLP(rt, V, 1)]) {
  const name = make().kind;

  familyTest(`${name}: loss, logits and every gradient match float64`, async () => {
    const model = make();
    const a = setup(model);
    const { loss, ref } = await forwardBackward(model, a);
    assertClose([loss], [ref.loss], 1e-5, `${name} loss`);
    assertClose(await a.logits.read(), ref.logits, 1e-5, `${name} logits`);
    const grads = await model.params.readGrads();
    if (grads.size !== ref.grads.size) {
      throw new Error(`${grads.size} gradients, reference ${ref.grads.size}`);
    }
    for (const [k, g] of grads) assertClose(g, ref.grads.get(k)!, 1e-4, `${name} grad ${k}`);
  });

  familyTest(
    `${name}: one SGD step and one AdamW step equal float64 updates of the reference gradient`,
    async () => {
      for (const kind of ["sgd", "adamw"] as const) {
        const model = make();
        const a = setup(model);
        const lr = kind === "sgd" ? 0.5 : 1e-2;
        const opt = new Optimizer(rt, model.params, kind, lr);
        // AdamW from warm moments, so the update is smooth in the gradient (at t = 1 it is ≈ lr·sign(g)).
        const size = model.params.params.size;
        const m0 = rng.uniformArray(size, -1e-3, 1e-3), v0 = rng.uniformArray(size, 1e-5, 1e-4);
        opt.writeState(new Map([["adam.m", m0], ["adam.v", v0]]));
        const st = new StepState(rt, 0);
        st.set(3);
        const { ref, p0 } = await forwardBackward(model, a);
        opt.step(st.tensor);
        const p = flat(model, p0), g = flat(model, ref.grads);
        let want: Float64Array;
        if (kind === "sgd") want = sgdRef(p, g, lr);
        else {
          const s = { p: Float64Array.from(p), m: Float64Array.from(m0), v: Float64Array.from(v0) };
          adamwRef(s, g, 3, opt.adamw);
          want = s.p;
        }
        // The update is far above the tolerance, so a step not taken (or taken twice) fails.
        if (!(relErr(want, p) > 1e-3)) throw new Error(`${kind}: the update is too small to check`);
        assertClose(await model.params.params.read(), want, 1e-5, `${name} ${kind} step`);
      }
    },
  );

  for (const kind of ["sgd", "adamw"] as const) {
    familyTest(`${name} trains below its initial loss with ${kind}`, async () => {
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

  familyTest(`${name}: greedy generate follows the argmax chain`, async () => {
    const model = make();
    const out = await model.generate(3, 6);
    if (out.length !== 6 || out.some((i) => i < 0 || i >= V)) throw new Error(`bad ids ${out}`);
    const again = await model.generate(out[0], 5);
    if (again.join() !== out.slice(1).join()) throw new Error("greedy chain is not deterministic/Markov");
  });
}
