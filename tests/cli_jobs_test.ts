/**
 * The command line of issue #13, as real processes: `taskq put --priority
 * --group --key --key-hold --ids`, `taskq cancel ID…`, `taskq job ID
 * [--json]`, `taskq limit NAME [--rate] [--concurrency]
 * [--group-concurrency]`, and `taskq master --queue-rate
 * --queue-concurrency --queue-group-concurrency --keep-jobs --keep-jobs-for`:
 * every bad value is refused with exit code 2 and one clear line, the
 * master's flags reach the broker, and the commands round-trip through it.
 *
 * @module
 */

import assert from "node:assert/strict";
import { runTaskq, startMaster, startTaskq, type TaskqRun } from "./_helpers.ts";

/** Exit code of a usage error. */
const EXIT_USAGE = 2;

/** Exit code of `taskq cancel` with ids not cancelled, and of `taskq job` with no such item. */
const EXIT_NOT_FOUND = 1;

/** Time a master refusing its flags has to exit. */
const MASTER_REFUSAL_MS = 15_000;

/** Checks a failed run printed exactly one line on stderr, no stack trace, and `code`. */
function assertRefused(run: TaskqRun, pattern: RegExp, code = EXIT_USAGE): void {
  assert.equal(run.code, code, `exit code; stderr:\n${run.stderr}`);
  const lines = run.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `one line on stderr, got:\n${run.stderr}`);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(run.stderr, /^\s+at /m, "no stack trace");
}

/** Checks a run succeeded, showing its stderr otherwise. */
function assertOk(run: TaskqRun, what: string): void {
  assert.equal(run.code, 0, `${what}: exit ${run.code}; stderr:\n${run.stderr}`);
}

/** The ids a `--ids` run printed. */
function idsOf(run: TaskqRun): number[] {
  return run.stdout.trimEnd().split("\n").filter((line) => line !== "").map(Number);
}

/** Runs `taskq master ARGS` that must refuse its flags, and returns how it ended. */
async function masterRefusal(args: string[]): Promise<TaskqRun> {
  await using proc = startTaskq("master", [
    "master",
    "--memory",
    "--listen",
    "127.0.0.1:0",
    ...args,
  ]);
  const status = await proc.finished(MASTER_REFUSAL_MS);
  return { code: status.code, stdout: proc.stdout, stderr: proc.stderr };
}

Deno.test("bad values of the new flags exit 2 with one clear line, before connecting", async () => {
  // No master runs: each must be refused before any connection is tried.
  const cases: [string[], RegExp, string?][] = [
    [
      ["put", "--queue", "q", "--priority", "1001", "x"],
      /--priority must be a whole number from -1000 to 1000/,
    ],
    [
      ["put", "--queue", "q", "--priority", "-1001", "x"],
      /--priority must be a whole number from -1000 to 1000/,
    ],
    [["put", "--queue", "q", "--priority", "high", "x"], /--priority must be a whole number/],
    [["put", "--queue", "q", "--priority", "1.5", "x"], /--priority must be a whole number/],
    [
      ["put", "--queue", "q", "--key", "k", "a", "b"],
      /--key applies to a put of exactly one item \(2 given\)/,
    ],
    [
      ["put", "--queue", "q", "--key", "k"],
      /--key applies to a put of exactly one item \(more than one line on standard input\)/,
      "a\nb\n",
    ],
    [
      ["put", "--queue", "q", "--key", "k"],
      /--key applies to a put of exactly one item \(none on standard input\)/,
      "",
    ],
    [
      ["put", "--queue", "q", "--key", "", "x"],
      /--key: a key must be a string of 1 to 256 characters/,
    ],
    [
      ["put", "--queue", "q", "--group", "g".repeat(257), "x"],
      /--group: a group must be a string of 1 to 256/,
    ],
    [["put", "--queue", "q", "--key-hold", "1m", "x"], /--key-hold needs --key/],
    [
      ["put", "--queue", "q", "--key", "k", "--key-hold", "soon", "x"],
      /--key-hold takes a duration/,
    ],
    [["put", "--queue", "q", "--ids=yes", "x"], /--ids/],
    [["limit", "q", "--rate", "5/fortnight"], /--rate: a rate is N\/s, N\/min, N\/h/],
    [["limit", "q", "--rate", "fast"], /--rate: a rate is/],
    [["limit", "q", "--concurrency", "-1"], /--concurrency must be a whole number from 0 to/],
    [["limit", "q", "--group-concurrency", "many"], /--group-concurrency must be a whole number/],
    [["limit"], /give one queue name \(0 given/],
    [["limit", "a", "b"], /give one queue name \(2 given/],
    [["limit", "q", "--bogus"], /Unknown option '--bogus'.*taskq limit --help/],
    [["cancel"], /give the ids of the items to cancel/],
    [["cancel", "1", "two"], /"two" is not a job id/],
    [["cancel", "-3"], /Unknown option|not a job id/],
    [["cancel", "--bogus", "1"], /Unknown option '--bogus'.*taskq cancel --help/],
    [["job"], /give one item id \(0 given/],
    [["job", "1", "2"], /give one item id \(2 given/],
    [["job", "1e3"], /"1e3" is not a job id/],
    [["job", "--bogus", "1"], /Unknown option '--bogus'.*taskq job --help/],
  ];
  for (const [args, pattern, stdin] of cases) {
    const run = await runTaskq([...args, "--connect", "127.0.0.1:1"], { stdin });
    assertRefused(run, pattern);
  }
});

Deno.test("bad values of the master's job flags exit 2 with one clear line", async () => {
  const cases: [string[], RegExp][] = [
    [["--queue-rate", "mail=fast"], /--queue-rate mail=fast: a rate is N\/s/],
    [["--queue-rate", "mail"], /--queue-rate takes NAME=RATE, not "mail"/],
    [["--queue-rate", "=50/s"], /--queue-rate takes NAME=RATE/],
    [["--queue-concurrency", "mail=-1"], /--queue-concurrency takes NAME=M with M a whole number/],
    [["--queue-concurrency", "mail=3.5"], /--queue-concurrency takes NAME=M/],
    [["--queue-group-concurrency", "mail=x"], /--queue-group-concurrency takes NAME=M/],
    [["--queue-concurrency", "bad\u0007name=3"], /not a valid queue name/],
    [["--keep-jobs", "-1"], /--keep-jobs must be a whole number from 0/],
    [["--keep-jobs", "lots"], /--keep-jobs must be a whole number/],
    [["--keep-jobs-for", "forever"], /--keep-jobs-for takes a duration/],
    [["--keep-jobs-for", "30d"], /--keep-jobs-for takes a duration .* from 0 to 2147483.647 s/],
  ];
  for (const [args, pattern] of cases) assertRefused(await masterRefusal(args), pattern);
});

Deno.test("help lists the new commands and each has its own", async () => {
  const help = await runTaskq(["--help"]);
  assert.equal(help.code, 0);
  for (const command of ["job", "cancel", "limit"]) {
    assert.match(help.stdout, new RegExp(`^  ${command} `, "m"));
    const own = await runTaskq([command, "--help"]);
    assert.equal(own.code, 0);
    assert.match(own.stdout, new RegExp(`^Usage: taskq ${command}`));
    assert.match(own.stdout, /--connect HOST:PORT/, "the connection flags");
    assert.match(own.stdout, /Exit codes|Options/);
  }
  const put = await runTaskq(["put", "--help"]);
  for (const flag of ["--priority", "--group", "--key", "--key-hold", "--ids"]) {
    assert.match(put.stdout, new RegExp(`^  ${flag} `, "m"));
  }
  const master = await runTaskq(["master", "--help"]);
  for (
    const flag of [
      "--queue-rate",
      "--queue-concurrency",
      "--queue-group-concurrency",
      "--keep-jobs",
      "--keep-jobs-for",
    ]
  ) {
    assert.match(master.stdout, new RegExp(`^  ${flag} `, "m"));
  }
});

Deno.test("the master's limit flags reach the broker; taskq limit shows and changes them", async () => {
  await using master = await startMaster({
    args: [
      "--queue-rate",
      "mail=50/s",
      "--queue-concurrency",
      "mail=3",
      "--queue-group-concurrency",
      "mail=2",
      "--queue-rate",
      "slow=10/5s",
    ],
  });
  const connect = ["--connect", master.address];
  const shown = await runTaskq(["limit", "mail", ...connect]);
  assertOk(shown, "limit mail");
  assert.match(shown.stdout, /^queue mail$/m);
  assert.match(shown.stdout, /^ {2}rate: +50\/s$/m);
  assert.match(shown.stdout, /^ {2}concurrency: +3$/m);
  assert.match(shown.stdout, /^ {2}group concurrency: +2$/m);

  const slow = await runTaskq(["limit", "slow", "--json", ...connect]);
  assertOk(slow, "limit slow --json");
  assert.deepEqual(JSON.parse(slow.stdout), {
    queue: "slow",
    rateCount: 10,
    ratePeriodMs: 5_000,
    concurrency: 0,
    groupConcurrency: 0,
  });

  // A change keeps the limits it does not name, and answers with those now in force.
  const changed = await runTaskq(
    ["limit", "mail", "--rate", "0", "--concurrency", "5", "--json", ...connect],
  );
  assertOk(changed, "limit mail --rate 0 --concurrency 5");
  assert.deepEqual(JSON.parse(changed.stdout), {
    queue: "mail",
    rateCount: 0,
    ratePeriodMs: 1_000,
    concurrency: 5,
    groupConcurrency: 2,
  });
  // The address may come from TASKQ_ADDR, as for put, get and status.
  const again = await runTaskq(["limit", "mail"], { env: { TASKQ_ADDR: master.address } });
  assertOk(again, "limit mail with TASKQ_ADDR");
  assert.match(again.stdout, /^ {2}rate: +none$/m);
  assert.match(again.stdout, /^ {2}concurrency: +5$/m);

  const none = await runTaskq(["limit", "other", ...connect]);
  assertOk(none, "limit other");
  assert.match(
    none.stdout,
    /^ {2}rate: +none\n {2}concurrency: +none\n {2}group concurrency: +none$/m,
  );
});

Deno.test("put --ids prints each id; a key put twice answers the same id and says so", async () => {
  await using master = await startMaster();
  const connect = ["--connect", master.address];
  const three = await runTaskq(["put", "--queue", "q", "--ids", "a", "b", "c", ...connect]);
  assertOk(three, "put --ids a b c");
  const ids = idsOf(three);
  assert.equal(ids.length, 3);
  assert.equal(new Set(ids).size, 3);
  assert.equal(three.stderr, "");

  const first = await runTaskq(
    ["put", "--queue", "q", "--key", "invoice-42", "--ids", "--json", '{"n":1}', ...connect],
  );
  assertOk(first, "first keyed put");
  assert.equal(first.stderr, "", "nothing existed");
  const [id] = idsOf(first);
  assert.ok(!ids.includes(id));

  // From standard input, with a hold: still the same item.
  const second = await runTaskq(
    [
      "put",
      "--queue",
      "q",
      "--key",
      "invoice-42",
      "--key-hold",
      "1m",
      "--ids",
      "--json",
      ...connect,
    ],
    { stdin: '{"n":2}\n' },
  );
  assertOk(second, "second keyed put");
  assert.deepEqual(idsOf(second), [id]);
  assert.match(
    second.stderr,
    new RegExp(`^taskq put: nothing added: key "invoice-42" is taken by job ${id}\n$`),
  );

  // Without --ids, the put still says on stderr that the key was taken.
  const quiet = await runTaskq(["put", "--queue", "q", "--key", "invoice-42", "x", ...connect]);
  assertOk(quiet, "third keyed put");
  assert.equal(quiet.stdout, "");
  assert.match(quiet.stderr, /key "invoice-42" is taken by job/);

  const status = JSON.parse((await runTaskq(["status", "--json", ...connect])).stdout);
  assert.equal(status.queues[0].ready, 4, "a b c and the one keyed item");

  const keyed = JSON.parse((await runTaskq(["job", String(id), "--json", ...connect])).stdout);
  assert.equal(keyed.key, "invoice-42");
  assert.deepEqual(keyed.value, { n: 1 });
});

Deno.test("put --ids from standard input prints every id in line order, across batches", async () => {
  await using master = await startMaster();
  const connect = ["--connect", master.address];
  const count = 2_500; // more than one batch of standard input
  const input = Array.from({ length: count }, (_, i) => `line ${i + 1}`).join("\n");
  const run = await runTaskq(["put", "--queue", "q", "--ids", ...connect], { stdin: input });
  assertOk(run, "put --ids from stdin");
  const ids = idsOf(run);
  assert.equal(ids.length, count);
  assert.equal(new Set(ids).size, count);
  for (const [index, line] of [[0, "line 1"], [1_000, "line 1001"], [count - 1, `line ${count}`]]) {
    const job = await runTaskq(["job", String(ids[index as number]), "--json", ...connect]);
    assertOk(job, `job of line ${index}`);
    assert.equal(JSON.parse(job.stdout).value, line);
  }
});

Deno.test("priority and group reach the item: a higher priority is served first", async () => {
  await using master = await startMaster();
  const connect = ["--connect", master.address];
  const low = await runTaskq([
    "put",
    "--queue",
    "q",
    "--priority",
    "-5",
    "--ids",
    "low",
    ...connect,
  ]);
  assertOk(low, "put --priority -5");
  const high = await runTaskq(
    ["put", "--queue", "q", "--priority=7", "--group", "tenant-a", "--ids", "high", ...connect],
  );
  assertOk(high, "put --priority=7 --group");
  const shown = await runTaskq(["job", ...idsOf(high).map(String), ...connect]);
  assertOk(shown, "job");
  assert.match(shown.stdout, /^ {2}priority: +7$/m);
  assert.match(shown.stdout, /^ {2}group: +tenant-a$/m);
  const lowInfo = JSON.parse(
    (await runTaskq(["job", String(idsOf(low)[0]), "--json", ...connect])).stdout,
  );
  assert.equal(lowInfo.priority, -5);

  const got = await runTaskq(["get", "--queue", "q", "--count", "2", ...connect]);
  assertOk(got, "get");
  const values = got.stdout.trimEnd().split("\n").map((line) => JSON.parse(line).value);
  assert.deepEqual(values, ["high", "low"]);
});

Deno.test("job and cancel round trip: ready, cancelled, done, missing", async () => {
  await using master = await startMaster();
  const connect = ["--connect", master.address];
  const [a, b] = idsOf(await runTaskq(["put", "--queue", "q", "--ids", "a", "b", ...connect]));

  const ready = await runTaskq(["job", String(a), ...connect]);
  assertOk(ready, "job a");
  assert.match(ready.stdout, new RegExp(`^job ${a}$`, "m"));
  assert.match(ready.stdout, /^ {2}queue: +q$/m);
  assert.match(ready.stdout, /^ {2}state: +ready$/m);
  assert.match(ready.stdout, /^ {2}attempts: +0$/m);
  assert.match(ready.stdout, /^ {2}created: +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/m);

  const json = JSON.parse((await runTaskq(["job", String(a), "--json", ...connect])).stdout);
  for (const key of ["id", "queue", "state", "attempts", "error", "result"]) {
    assert.ok(key in json, `--json has "${key}": ${JSON.stringify(json)}`);
  }
  assert.equal(json.id, a);
  assert.equal(json.queue, "q");
  assert.equal(json.state, "ready");
  assert.equal(json.attempts, 0);
  assert.equal(json.error, null);
  assert.equal(json.result, null);

  const cancelled = await runTaskq(["cancel", String(a), ...connect]);
  assertOk(cancelled, "cancel a");
  assert.equal(cancelled.stdout, `${a}\n`);
  const after = JSON.parse((await runTaskq(["job", String(a), "--json", ...connect])).stdout);
  assert.equal(after.state, "cancelled");

  // Already cancelled, and never put: each named on stderr, exit 1; b is cancelled all the same.
  const unknown = 9_999_999;
  const mixed = await runTaskq(["cancel", String(a), String(b), String(unknown), ...connect]);
  assert.equal(mixed.code, EXIT_NOT_FOUND, mixed.stderr);
  assert.equal(mixed.stdout, `${b}\n`);
  assert.match(mixed.stderr, new RegExp(`^taskq cancel: ${a}: no such live item`, "m"));
  assert.match(mixed.stderr, new RegExp(`^taskq cancel: ${unknown}: no such live item`, "m"));
  assert.match(mixed.stderr, /^taskq cancel: 2 of 3 ids were not cancelled$/m);
  assert.doesNotMatch(mixed.stderr, /^\s+at /m, "no stack trace");

  const status = JSON.parse((await runTaskq(["status", "--json", ...connect])).stdout);
  assert.equal(status.queues[0].ready, 0, "both cancelled items are gone");

  // Done: taken and acked by taskq get.
  const [c] = idsOf(await runTaskq(["put", "--queue", "q", "--ids", "c", ...connect]));
  assertOk(await runTaskq(["get", "--queue", "q", ...connect]), "get c");
  const done = JSON.parse((await runTaskq(["job", String(c), "--json", ...connect])).stdout);
  assert.equal(done.state, "done");
  assert.equal(done.attempts, 1);
  assert.equal(typeof done.finishedAt, "number");

  assertRefused(
    await runTaskq(["job", String(unknown), ...connect]),
    new RegExp(`^taskq job: no item ${unknown}: never put, or finished`),
    EXIT_NOT_FOUND,
  );
});

Deno.test("--keep-jobs 0 keeps no finished item's record", async () => {
  await using master = await startMaster({ args: ["--keep-jobs", "0", "--keep-jobs-for", "1h"] });
  const connect = ["--connect", master.address];
  const [id] = idsOf(await runTaskq(["put", "--queue", "q", "--ids", "x", ...connect]));
  assertOk(await runTaskq(["job", String(id), ...connect]), "job of a live item");
  assertOk(await runTaskq(["get", "--queue", "q", ...connect]), "get");
  assertRefused(await runTaskq(["job", String(id), ...connect]), /no item/, EXIT_NOT_FOUND);
});
