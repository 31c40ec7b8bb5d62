// sample.ts --num-samples: N samples decoded as one batch, printed one after another with nanoGPT's
// separator line; sample 0 is the single-sample output of the same seed; bad values are usage errors.

import assert from "node:assert/strict";
import { assertAdapterLineOnly, assertUserError, sample, tempDir, writeCheckpoint } from "./helpers.ts";

Deno.test("sample.ts --num-samples 3: three separated samples, the first one equals --num-samples 1", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    await writeCheckpoint(dir);
    const args = [`--checkpoint=${dir}/model.safetensors`, "--max-new-tokens=30", "--seed=4", "--start=the "];
    const one = await sample(dir, args);
    assert.equal(one.code, 0, one.stderr);
    const three = await sample(dir, [...args, "--num-samples=3"]);
    assert.equal(three.code, 0, three.stderr);
    assertAdapterLineOnly(three.stderr);
    const parts = three.stdout.split("---------------\n");
    assert.equal(parts.length, 4, JSON.stringify(three.stdout));
    assert.equal(parts[3], "");
    assert.equal(parts[0], one.stdout, "sample 0 of 3 is the single sample");
    for (const p of parts.slice(0, 3)) {
      assert.ok(p.startsWith("the ") && [...p].length === 4 + 30 + 1, JSON.stringify(p));
    }
    assert.notEqual(parts[1], parts[2], "samples differ");
    assert.equal(
      (await sample(dir, [...args, "--num-samples=3"])).stdout,
      three.stdout,
      "same seed, same samples",
    );
    for (
      const [n, re] of [["0", /--num-samples must be >= 1, got 0/], ["x", /--num-samples must be an integer/]]
    ) {
      assertUserError(await sample(dir, [...args, `--num-samples=${n}`]), re as RegExp, `--num-samples=${n}`);
    }
  } finally {
    await cleanup();
  }
});
