/**
 * The public API works as a plain module: a program in another directory that
 * imports lib/mod.ts by file URL, or by a relative path, passes `deno check`
 * and runs without taskq's deno.json (no import map, no lockfile, no
 * compiler options of this repository).
 *
 * Each program is written to a fresh temporary directory outside the
 * repository; it serves a master with `serve()` on 127.0.0.1:0 with a key,
 * connects with `connect()`, puts one item, gets it back, prints it and
 * closes both. The test runs `deno check` and `deno run` on it as
 * subprocesses with `--no-config`, the temporary directory as their working
 * directory and `DENO_NO_UPDATE_CHECK=1`, asserts that they exit 0 and print
 * the item, and removes the directory.
 *
 * @module
 */

import assert from "node:assert/strict";
import { relative } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root, as a file path. */
const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));

/** The public API module, as a file URL. */
const MOD_URL = new URL("../lib/mod.ts", import.meta.url);

/** Longest a `deno check` or `deno run` of the program may take. */
const STEP_TIMEOUT_MS = 120_000;

/** The item the program puts and expects back. */
const ITEM = { hello: "world", n: 42, list: [1, "two", null] };

/** The source of the program, importing the public API as `specifier`. */
function program(specifier: string, label: string): string {
  return `import { connect, serve } from ${JSON.stringify(specifier)};

const authkey = "mod-import-test-key";
const master = await serve({ listen: "127.0.0.1:0", authkey });
try {
  const client = await connect({
    address: \`127.0.0.1:\${master.address.port}\`,
    authkey,
    name: ${JSON.stringify(label)},
  });
  try {
    const queue = client.queue("greetings");
    await queue.put(${JSON.stringify(ITEM)});
    const job = await queue.get(10_000);
    if (job === null) throw new Error("the item did not come back");
    console.log(JSON.stringify({ via: ${JSON.stringify(label)}, value: job.value }));
  } finally {
    await client.close();
  }
} finally {
  await master.close();
}
`;
}

/** The result of one subprocess. */
interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `deno ARGS` in `cwd` without taskq's configuration, within {@link STEP_TIMEOUT_MS}. */
async function deno(cwd: string, args: string[]): Promise<Run> {
  const output = await new Deno.Command(Deno.execPath(), {
    args,
    cwd,
    env: { DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(STEP_TIMEOUT_MS),
  }).output();
  const text = new TextDecoder();
  return {
    code: output.code,
    stdout: text.decode(output.stdout),
    stderr: text.decode(output.stderr),
  };
}

/** Asserts that `run` (of `what`) exited 0, showing its output when it did not. */
function assertSucceeded(run: Run, what: string): void {
  assert.equal(
    run.code,
    0,
    `${what} exited with ${run.code}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`,
  );
}

/**
 * Writes the program importing `specifier(dir)` to a fresh temporary
 * directory `dir`, checks and runs it there, and removes the directory.
 * `specifier` returns undefined when there is no such import (nothing is run).
 */
async function checkAndRun(
  label: string,
  specifier: (dir: string) => string | undefined,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "taskq-mod-import-" });
  try {
    const imported = specifier(dir);
    if (imported === undefined) {
      console.log(`no ${label} from ${dir} to lib/mod.ts: skipped`);
      return;
    }
    assert.ok(
      relative(REPO_ROOT, dir).startsWith(".."),
      `the temporary directory ${dir} must be outside the repository`,
    );
    await Deno.writeTextFile(`${dir}/program.ts`, program(imported, label));

    const check = await deno(dir, ["check", "--no-config", "program.ts"]);
    assertSucceeded(check, `deno check of the program importing lib/mod.ts by ${label}`);

    const run = await deno(dir, [
      "run",
      "--no-config",
      "--allow-net=127.0.0.1",
      "--allow-env",
      "program.ts",
    ]);
    assertSucceeded(run, `deno run of the program importing lib/mod.ts by ${label}`);
    assert.deepEqual(
      run.stdout.trim().split("\n").map((line) => JSON.parse(line)),
      [{ via: label, value: ITEM }],
      `stdout of the program importing lib/mod.ts by ${label}`,
    );

    const left = [];
    for await (const entry of Deno.readDir(dir)) left.push(entry.name);
    assert.deepEqual(left, ["program.ts"], "no deno.json or lockfile was made or used");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("mod import: a program elsewhere imports lib/mod.ts by file URL, checks and runs without deno.json", async () => {
  await checkAndRun("file URL", () => MOD_URL.href);
});

Deno.test("mod import: a program elsewhere imports lib/mod.ts by relative path, checks and runs without deno.json", async () => {
  await checkAndRun("relative path", (dir) => {
    const path = relative(dir, fileURLToPath(MOD_URL)).replaceAll("\\", "/");
    // On Windows, a repository on another drive than the temporary directory has no relative path.
    if (/^[a-z]:/i.test(path) || path.startsWith("//")) return undefined;
    return path.startsWith(".") ? path : `./${path}`;
  });
});
