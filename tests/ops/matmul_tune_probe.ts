// Child process of tests/ops/matmul_tune.test.ts: the matmul tuner with the Deno cache
// (lib/tune_cache.ts) under whatever permissions the test grants. It runs one small product on the
// gpu family (--tune MODE), times its class, and prints one JSON line: classes timed, the class's
// variant, and the cache file's text afterwards (null when it cannot be read). Tuner lines go to
// stderr, as the CLIs print them.
//
// Usage: deno run [--allow-...] tests/ops/matmul_tune_probe.ts on|force|auto (timed: -1 = no tuner)

import { createRuntime } from "../../lib/backend.ts";
import { installTuner, tuneCacheDir } from "../../lib/tune_cache.ts";
import { matmul, type MatmulProblem, type TuneMode } from "../../ops/matmul.ts";
import { Tensor } from "../../ops/tensor.ts";
import { chooseVariant } from "../../ops/matmul/tune.ts";

const mode = Deno.args[0] as TuneMode | "auto";
const rt = await createRuntime({ kernels: "gpu", timestamps: true });
const tuner = await installTuner(rt, mode, (l) => console.error(l));
// The tuner tests' product (M, N <= 64: only 64-wide tiles are candidates).
const M = 33, N = 20, K = 24, batch = 2;
const t = (n: number) => Tensor.from(rt, new Float32Array(n).map((_, i) => Math.sin(i)));
const A = t(batch * M * K), B = t(batch * K * N), C = Tensor.empty(rt, [batch * M * N]), bias = t(N);
matmul(rt, A, B, C, M, N, K, { batch, bias, epilogue: "relu" });
const timed = tuner ? (await tuner.tunePending()).length : -1;
const p = { M, N, K, batch, transA: false, transB: false, rowSums: null } as unknown as MatmulProblem;
const d = tuneCacheDir();
const file = "dir" in d ? await Deno.readTextFile(`${d.dir}/matmul-tuning.json`).catch(() => null) : null;
console.log(JSON.stringify({ timed, variant: chooseVariant(rt, p).name, file }));
rt.destroy();
