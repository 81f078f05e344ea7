/**
 * The taskq command line: put, get, status, demo, help, and one clear line
 * (never a stack trace) with a non-zero exit for every error.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  freeLoopbackPort,
  keyEnv,
  REPO_ROOT,
  runTaskq,
  startMaster,
  type TaskqRun,
  TEST_KEY,
} from "./_helpers.ts";

const decoder = new TextDecoder();

/** Checks a failed run printed exactly one line on stderr and no stack trace. */
function assertOneLineError(run: TaskqRun, pattern: RegExp): void {
  assert.notEqual(run.code, 0, "exit code");
  const lines = run.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `one line on stderr, got:\n${run.stderr}`);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(run.stderr, /^\s+at /m, "no stack trace");
}

Deno.test("put from arguments and stdin, get as JSON lines, status", async () => {
  await using master = await startMaster();
  const connect = ["--connect", master.address];
  assert.equal(
    (await runTaskq(["put", ...connect, "--queue", "q", "--json", "1", '{"a":[2]}'])).code,
    0,
  );
  const fromStdin = await runTaskq(["put", ...connect, "--queue", "q"], {
    stdin: "three\n\nfour\r\nfive",
  });
  assert.equal(fromStdin.code, 0, fromStdin.stderr);

  const status = await runTaskq(["status", ...connect, "--json"]);
  assert.equal(status.code, 0, status.stderr);
  const parsed = JSON.parse(status.stdout);
  assert.equal(parsed.queues[0].name, "q");
  assert.equal(parsed.queues[0].ready, 5);

  const got = await runTaskq(["get", ...connect, "--queue", "q", "--count", "5"]);
  assert.equal(got.code, 0, got.stderr);
  const values = got.stdout.trimEnd().split("\n").map((line) => JSON.parse(line).value);
  assert.deepEqual(values, [1, { a: [2] }, "three", "four", "five"]);

  const table = await runTaskq(["status", ...connect]);
  assert.match(table.stdout, /^QUEUE\s+READY\s+LEASED\s+DELAYED\s+DEAD/m);
  assert.match(table.stdout, /^q\s+0\s+0\s+0\s+0/m);

  const empty = await runTaskq(["get", ...connect, "--queue", "q", "--timeout", "0.1"]);
  assertOneLineError(empty, /got 0 of 1 item before the timeout/);
});

Deno.test("a bad JSON item is refused before anything is put", async () => {
  await using master = await startMaster();
  const run = await runTaskq([
    "put",
    "--connect",
    master.address,
    "--queue",
    "q",
    "--json",
    "1",
    "{oops",
  ]);
  assertOneLineError(run, /item 2 is not valid JSON/);
  const status = JSON.parse(
    (await runTaskq(["status", "--connect", master.address, "--json"])).stdout,
  );
  assert.deepEqual(status.queues, []);
});

Deno.test("a wrong key exits non-zero with one clear line", async () => {
  await using master = await startMaster();
  for (const command of [["status"], ["put", "--queue", "q", "x"], ["get", "--queue", "q"]]) {
    const run = await runTaskq([...command, "--connect", master.address], { key: "not-the-key" });
    assertOneLineError(run, /rejected the key/);
  }
});

Deno.test("an unreachable master exits non-zero with one clear line", async () => {
  const port = freeLoopbackPort(); // now nothing listens there
  const run = await runTaskq(["status", "--connect", `127.0.0.1:${port}`]);
  assertOneLineError(run, /cannot reach master 127\.0\.0\.1:\d+/);
});

Deno.test("bad flags and commands exit non-zero with one clear line", async () => {
  assertOneLineError(
    await runTaskq(["status", "--bogus"]),
    /Unknown option '--bogus'.*taskq status --help/,
  );
  assertOneLineError(await runTaskq(["frobnicate"]), /unknown command "frobnicate"/);
  assertOneLineError(
    await runTaskq(["worker", "--queue", "q"]),
    /give the command to run after --/,
  );
  assertOneLineError(await runTaskq(["put", "x"]), /--queue NAME is required/);
  assertOneLineError(
    await runTaskq(["get", "--queue", "q", "--count", "zero"]),
    /--count must be a whole number/,
  );
  assertOneLineError(
    await runTaskq(["master", "--listen", "0.0.0.0:0"], { key: null }),
    /refusing to listen on 0\.0\.0\.0:0 without a key/,
  );
});

Deno.test("help and version", async () => {
  const help = await runTaskq(["--help"]);
  assert.equal(help.code, 0);
  for (const command of ["master", "worker", "put", "get", "status", "demo"]) {
    assert.match(help.stdout, new RegExp(`^  ${command} `, "m"));
    const own = await runTaskq([command, "--help"]);
    assert.equal(own.code, 0);
    assert.match(own.stdout, new RegExp(`^Usage: taskq ${command}`));
  }
  const version = await runTaskq(["--version"]);
  assert.match(version.stdout, /^taskq \d+\.\d+\.\d+/);
});

Deno.test("demo prints 10 tasks and 10 correct results, then exits 0", async () => {
  const run = await runTaskq(["demo"], { key: null });
  assert.equal(run.code, 0, run.stderr);
  const lines = run.stdout.trimEnd().split("\n");
  const puts = lines.filter((line) => /^Put task \d+\.\.\.$/.test(line));
  const results = lines.filter((line) => line.startsWith("Result: "));
  assert.equal(puts.length, 10);
  assert.equal(results.length, 10);
  const put = puts.map((line) => Number(/\d+/.exec(line)![0])).sort();
  const squared = results.map((line) => {
    const [, n, again, m] = /^Result: (\d+) \* (\d+) = (\d+)$/.exec(line)!;
    assert.equal(n, again);
    assert.equal(Number(m), Number(n) * Number(n));
    return Number(n);
  }).sort();
  assert.deepEqual(squared, put);
});

Deno.test("the deno.json master task has the permissions a durable master needs", async () => {
  const denoJson = JSON.parse(await Deno.readTextFile(`${REPO_ROOT}/deno.json`));
  const [deno, ...taskArgs] = (denoJson.tasks.master as string).split(/\s+/);
  assert.equal(deno, "deno");
  const dir = await Deno.makeTempDir({ prefix: "taskq-task-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: [...taskArgs, "--listen", "127.0.0.1:0", "--data", `${dir}/data`],
    cwd: REPO_ROOT,
    env: keyEnv(TEST_KEY),
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  try {
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const { value } = await reader.read();
    assert.match(value ?? "", /^taskq master listening on 127\.0\.0\.1:\d+/);
    await reader.cancel();
  } finally {
    child.kill("SIGTERM");
    const status = await child.status;
    const stderr = decoder.decode(await new Response(child.stderr).arrayBuffer());
    await Deno.remove(dir, { recursive: true });
    assert.equal(status.code, 0, stderr);
  }
});
