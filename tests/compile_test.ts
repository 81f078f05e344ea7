/**
 * `deno task compile` (scripts/compile.ts): what it embeds (main.ts's own
 * npm packages, none of the tests' or scripts'), and a real build: where
 * Deno's runtime base cannot be had (no internet, as on our machines; a
 * proxy that refuses makes it so elsewhere too) the build must fail with one
 * line and no stack trace; where it can (a cached runtime base), the binary
 * must run the demo.
 *
 * @module
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { measure, npmClosure, pruneLockfile } from "../scripts/compile.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const COMPILE_TIMEOUT_MS = 120_000;
const RESULT_LINES = 10;
/** Most bytes main.ts's modules and npm packages may embed (7.7 MB measured; 16.75 MB before). */
const MAX_EMBEDDED_BYTES = 10_000_000;
/** A proxy address nothing listens on: downloads through it fail at once. */
const REFUSING_PROXY = "http://127.0.0.1:9";
/** Packages only tests and scripts use. */
const TEST_ONLY = ["playwright-core", "pg", "@types/pg", "@types/node"];

Deno.test("compile embeds main.ts's npm packages and none of the tests'", async () => {
  const embedded = await measure();
  const names = embedded.packages.map((key) => key.slice(0, key.lastIndexOf("@")));
  for (const needed of ["msgpackr", "postgres", "@peculiar/x509", "reflect-metadata"]) {
    assert.ok(names.includes(needed), `${needed} is embedded`);
  }
  for (const testOnly of TEST_ONLY) assert.ok(!names.includes(testOnly), `${testOnly} is left out`);
  const total = embedded.moduleBytes + embedded.packageBytes;
  console.log(
    `embedded: ${embedded.moduleBytes} bytes of modules + ${embedded.packageBytes} of npm`,
  );
  assert.ok(total < MAX_EMBEDDED_BYTES, `${total} bytes embedded`);
});

Deno.test("a pruned lockfile keeps a package's dependencies and drops the rest", () => {
  const lock = {
    version: "5",
    specifiers: { "npm:a@1": "1.0.0", "npm:@s/c@~3": "3.0.0" },
    npm: {
      "a@1.0.0": { dependencies: ["b"], optionalDependencies: ["@s/d"] },
      "b@2.0.0": {},
      "@s/c@3.0.0": {},
      "@s/d@4.0.0": {},
    },
    workspace: { dependencies: ["npm:@s/c@~3"] },
  };
  const keep = npmClosure(lock, ["a@1.0.0"]);
  assert.deepEqual([...keep].sort(), ["@s/d@4.0.0", "a@1.0.0", "b@2.0.0"]);
  assert.deepEqual(pruneLockfile(lock, keep), {
    version: "5",
    specifiers: { "npm:a@1": "1.0.0" },
    npm: { "a@1.0.0": lock.npm["a@1.0.0"], "b@2.0.0": {}, "@s/d@4.0.0": {} },
  });
});

Deno.test("deno task compile: one clear line when the runtime base cannot be had, else a working binary", async () => {
  const env: Record<string, string> = {
    NO_COLOR: "1",
    HTTPS_PROXY: REFUSING_PROXY,
    HTTP_PROXY: REFUSING_PROXY,
  };
  delete (env as { DENORT_BIN?: string }).DENORT_BIN;
  const task = await new Deno.Command(Deno.execPath(), {
    args: ["task", "compile"],
    cwd: ROOT,
    env,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(COMPILE_TIMEOUT_MS),
  }).output();
  const stderr = new TextDecoder().decode(task.stderr);
  const lines = stderr.split("\n").filter((line) => line.trim() !== "" && !/^Task /.test(line));
  if (!task.success) {
    assert.equal(task.code, 1);
    assert.equal(lines.length, 1, stderr);
    assert.match(
      lines[0],
      /^deno task compile: cannot get Deno's runtime base denort-[\w-]+\.zip for [\w-]+ \(download from dl\.deno\.land failed: .+\); put .+ or point DENORT_BIN at a denort binary$/,
    );
    assert.doesNotMatch(stderr, /Stack backtrace|\n\s+at /);
    return;
  }
  // The runtime base was cached: the build must work.
  const binary = `${ROOT}dist/taskq`;
  const dir = await Deno.makeTempDir({ prefix: "taskq-compiled-" });
  try {
    const demo = await new Deno.Command(binary, { args: ["demo"], cwd: dir }).output();
    assert.equal(demo.code, 0, new TextDecoder().decode(demo.stderr));
    const results = new TextDecoder().decode(demo.stdout).split("\n").filter((l) =>
      /^Result: (\d+) \* \1 = \d+$/.test(l)
    );
    assert.equal(results.length, RESULT_LINES);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
