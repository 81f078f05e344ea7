/**
 * Compile-safety without `deno compile` (whose runtime base cannot be
 * downloaded on our machines): main.ts bundled into one file by
 * `deno bundle`, then run from a directory holding nothing but that file (no
 * sources, no deno.json, no lockfile; `--no-config --no-remote
 * --cached-only`), as a master, a worker and a put/get round trip. What would
 * break a compiled binary (a file read relative to the sources, a module
 * left out of the graph, an npm package fetched at run time) breaks this.
 *
 * @module
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { Proc, TEST_KEY } from "./_helpers.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
/** Time the bundling may take, in ms (under a second here). */
const BUNDLE_TIMEOUT_MS = 60_000;
/** Items sent round the trip. */
const ITEMS = [2, 3, 4];
/** Time allowed for the results to come back, in seconds. */
const GET_TIMEOUT_S = 15;
/** The line a master prints once it listens. */
const LISTENING = /taskq master listening on (\S+)/;
/** Run the bundle as the compiled binary would: nothing read from beside it, nothing fetched. */
const RUN_FLAGS = ["run", "--no-config", "--no-lock", "--no-remote", "--cached-only"];
const PERMISSIONS = ["--allow-net", "--allow-env", "--allow-read", "--allow-run", "--allow-sys"];

/** The environment of a bundled taskq: the test key, no address from outside. */
function env(): Record<string, string> {
  const out = { ...Deno.env.toObject(), TASKQ_AUTHKEY: TEST_KEY, NO_COLOR: "1" };
  delete (out as { TASKQ_ADDR?: string }).TASKQ_ADDR;
  return out;
}

/** Runs the bundled `taskq ARGS` in `dir` to its end. */
async function runBundled(dir: string, args: string[]): Promise<Deno.CommandOutput> {
  return await new Deno.Command(Deno.execPath(), {
    args: [...RUN_FLAGS, ...PERMISSIONS, "taskq.js", ...args],
    cwd: dir,
    env: env(),
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
}

/** Starts the bundled `taskq ARGS` in `dir`. */
function startBundled(label: string, dir: string, args: string[]): Proc {
  return new Proc(
    label,
    [...RUN_FLAGS, ...PERMISSIONS, "taskq.js", ...args],
    env(),
    Deno.execPath(),
    dir,
  );
}

Deno.test("main.ts bundled into one file runs a master, a worker and a round trip with no sources", async () => {
  const dir = await Deno.makeTempDir({ prefix: "taskq-bundle-" });
  try {
    const bundle = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--quiet", "-o", `${dir}/taskq.js`, "main.ts"],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(BUNDLE_TIMEOUT_MS),
    }).output();
    assert.ok(bundle.success, new TextDecoder().decode(bundle.stderr));
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["taskq.js"]);

    const version = await runBundled(dir, ["--version"]);
    assert.equal(version.code, 0, new TextDecoder().decode(version.stderr));
    assert.match(new TextDecoder().decode(version.stdout), /^taskq \d+\.\d+\.\d+/);

    await using master = startBundled("bundled master", dir, [
      "master",
      "--memory",
      "--listen",
      "127.0.0.1:0",
    ]);
    const address = (await master.waitForLine(LISTENING))[1];
    await using worker = startBundled("bundled worker", dir, [
      "worker",
      "--connect",
      address,
      "--queue",
      "squares",
      "--results",
      "results",
      "--",
      "sh",
      "-c",
      'read n; echo "$((n * n))"',
    ]);
    const put = await runBundled(dir, [
      "put",
      "--connect",
      address,
      "--queue",
      "squares",
      ...ITEMS.map(String),
    ]);
    assert.equal(put.code, 0, new TextDecoder().decode(put.stderr));
    const get = await runBundled(dir, [
      "get",
      "--connect",
      address,
      "--queue",
      "results",
      "--count",
      String(ITEMS.length),
      "--timeout",
      String(GET_TIMEOUT_S),
    ]);
    const text = new TextDecoder().decode(get.stdout);
    assert.equal(get.code, 0, `${text}\n${new TextDecoder().decode(get.stderr)}`);
    const outputs = text.trim().split("\n").map((line) => JSON.parse(line).value.output.trim())
      .sort();
    assert.deepEqual(outputs, ITEMS.map((n) => String(n * n)).sort());
    await worker.stop("SIGTERM");
    const status = await master.stop("SIGTERM");
    assert.equal(status.code, 0, master.describe());
    // Nothing was written beside the bundle.
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["taskq.js"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
