/**
 * The taskq command line: put, get, status, demo, help, and one clear line
 * (never a stack trace) with a non-zero exit for every error.
 *
 * @module
 */

import assert from "node:assert/strict";
import { keyEnv, REPO_ROOT, startMaster, TEST_KEY } from "./_helpers.ts";

const decoder = new TextDecoder();

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `taskq ARGS` from source with the given key (or none) and stdin text. */
async function taskq(args: string[], key: string | null = TEST_KEY, stdin?: string): Promise<Run> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-env",
      "--allow-read",
      "--allow-run",
      "--allow-sys=hostname",
      `${REPO_ROOT}/main.ts`,
      ...args,
    ],
    env: keyEnv(key),
    clearEnv: true,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
  }
  const out = await child.output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** Checks a failed run printed exactly one line on stderr and no stack trace. */
function assertOneLineError(run: Run, pattern: RegExp): void {
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
    (await taskq(["put", ...connect, "--queue", "q", "--json", "1", '{"a":[2]}'])).code,
    0,
  );
  const fromStdin = await taskq(
    ["put", ...connect, "--queue", "q"],
    TEST_KEY,
    "three\n\nfour\r\nfive",
  );
  assert.equal(fromStdin.code, 0, fromStdin.stderr);

  const status = await taskq(["status", ...connect, "--json"]);
  assert.equal(status.code, 0, status.stderr);
  const parsed = JSON.parse(status.stdout);
  assert.equal(parsed.queues[0].name, "q");
  assert.equal(parsed.queues[0].ready, 5);

  const got = await taskq(["get", ...connect, "--queue", "q", "--count", "5"]);
  assert.equal(got.code, 0, got.stderr);
  const values = got.stdout.trimEnd().split("\n").map((line) => JSON.parse(line).value);
  assert.deepEqual(values, [1, { a: [2] }, "three", "four", "five"]);

  const table = await taskq(["status", ...connect]);
  assert.match(table.stdout, /^QUEUE\s+READY\s+LEASED\s+DELAYED\s+DEAD/m);
  assert.match(table.stdout, /^q\s+0\s+0\s+0\s+0/m);

  const empty = await taskq(["get", ...connect, "--queue", "q", "--timeout", "0.1"]);
  assertOneLineError(empty, /got 0 of 1 item before the timeout/);
});

Deno.test("a bad JSON item is refused before anything is put", async () => {
  await using master = await startMaster();
  const run = await taskq([
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
    (await taskq(["status", "--connect", master.address, "--json"])).stdout,
  );
  assert.deepEqual(status.queues, []);
});

Deno.test("a wrong key exits non-zero with one clear line", async () => {
  await using master = await startMaster();
  for (const command of [["status"], ["put", "--queue", "q", "x"], ["get", "--queue", "q"]]) {
    const run = await taskq([...command, "--connect", master.address], "not-the-key");
    assertOneLineError(run, /rejected the key/);
  }
});

Deno.test("an unreachable master exits non-zero with one clear line", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close(); // now nothing listens there
  const run = await taskq(["status", "--connect", `127.0.0.1:${port}`]);
  assertOneLineError(run, /cannot reach master 127\.0\.0\.1:\d+/);
});

Deno.test("bad flags and commands exit non-zero with one clear line", async () => {
  assertOneLineError(
    await taskq(["status", "--bogus"]),
    /Unknown option '--bogus'.*taskq status --help/,
  );
  assertOneLineError(await taskq(["frobnicate"]), /unknown command "frobnicate"/);
  assertOneLineError(await taskq(["worker", "--queue", "q"]), /give the command to run after --/);
  assertOneLineError(await taskq(["put", "x"]), /--queue NAME is required/);
  assertOneLineError(
    await taskq(["get", "--queue", "q", "--count", "zero"]),
    /--count must be a whole number/,
  );
  assertOneLineError(
    await taskq(["master", "--listen", "0.0.0.0:0"], null),
    /refusing to listen on 0\.0\.0\.0:0 without a key/,
  );
});

Deno.test("help and version", async () => {
  const help = await taskq(["--help"]);
  assert.equal(help.code, 0);
  for (const command of ["master", "worker", "put", "get", "status", "demo"]) {
    assert.match(help.stdout, new RegExp(`^  ${command} `, "m"));
    const own = await taskq([command, "--help"]);
    assert.equal(own.code, 0);
    assert.match(own.stdout, new RegExp(`^Usage: taskq ${command}`));
  }
  const version = await taskq(["--version"]);
  assert.match(version.stdout, /^taskq \d+\.\d+\.\d+/);
});

Deno.test("demo prints 10 tasks and 10 correct results, then exits 0", async () => {
  const run = await taskq(["demo"], null);
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
