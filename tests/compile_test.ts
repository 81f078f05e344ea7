/**
 * The compiled binary: `deno compile` builds one executable that runs the demo
 * with nothing else present.
 *
 * `deno compile` downloads a runtime base binary; where that cannot be done
 * (no internet), the test is registered as ignored and says so plainly.
 *
 * @module
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { compileArgs } from "../scripts/compile.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const COMPILE_TIMEOUT_MS = 120_000;
const RESULT_LINES = 10;

interface Built {
  binary?: string;
  dir?: string;
  reason?: string;
}

async function build(): Promise<Built> {
  const dir = await Deno.makeTempDir({ prefix: "taskq-compile-" });
  const binary = `${dir}/taskq`;
  // The same command as `deno task compile` builds for this machine.
  const args = compileArgs(binary);
  const output = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
    signal: AbortSignal.timeout(COMPILE_TIMEOUT_MS),
  }).output().catch((error: Error) => ({
    success: false,
    stderr: new TextEncoder().encode(error.message),
  }));
  if (output.success) return { binary, dir };
  await Deno.remove(dir, { recursive: true });
  const text = new TextDecoder().decode(output.stderr);
  const reason = text.split("\n").find((line) => /error/i.test(line))?.trim() ?? "failed";
  return { reason };
}

const built = await build();
if (built.binary === undefined) {
  console.log(
    `SKIPPED compiled-binary test: deno compile could not build the executable here ` +
      `(${built.reason}); it needs to download Deno's runtime base binary.`,
  );
}

Deno.test({
  name: built.binary
    ? "compiled binary runs the demo"
    : "compiled binary runs the demo (SKIPPED: deno compile cannot download its runtime here)",
  ignore: built.binary === undefined,
  async fn() {
    try {
      const version = await new Deno.Command(built.binary!, { args: ["--version"] }).output();
      assert.equal(version.code, 0);
      const demo = await new Deno.Command(built.binary!, { args: ["demo"], cwd: built.dir })
        .output();
      assert.equal(demo.code, 0, new TextDecoder().decode(demo.stderr));
      const results = new TextDecoder().decode(demo.stdout).split("\n").filter((l) =>
        /^Result: (\d+) \* \1 = \d+$/.test(l)
      );
      assert.equal(results.length, RESULT_LINES);
    } finally {
      await Deno.remove(built.dir!, { recursive: true });
    }
  },
});
