// Evaluated first in the browser bundle of the op tests (tests/web/op_tests.ts): a `Deno` global
// with just what tests/ops and tests/util.ts use, so the very same test files run in the page.

/** A registered `Deno.test`. */
export interface RegisteredTest {
  name: string;
  fn: () => unknown;
}

/** Every `Deno.test` the imported test files registered, in order. */
export const registered: RegisteredTest[] = [];

type TestArgs = [string, () => unknown] | [{ name: string; fn: () => unknown }];

(globalThis as unknown as { Deno: unknown }).Deno = {
  test: (...args: TestArgs) => {
    registered.push(typeof args[0] === "string" ? { name: args[0], fn: args[1]! } : args[0]);
  },
  env: { get: (_: string) => undefined },
};
