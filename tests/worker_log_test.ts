/**
 * The worker's log lines (lib/cli/worker.ts, lib/worker/worker.ts, lib/log.ts):
 * with `--log-format json` every stderr line is one JSON object; one line per
 * failure, a periodic progress summary, and a fatal error as well; `--quiet`
 * keeps warnings only (still one line per failure) and `--verbose` adds one
 * line per item done.
 *
 * @module
 */

import assert from "node:assert/strict";
import { connect } from "../lib/mod.ts";
import {
  freeLoopbackPort,
  type MasterProcess,
  runTaskq,
  startMaster,
  TEST_KEY,
} from "./_helpers.ts";

interface LogLine {
  time: string;
  level: string;
  msg: string;
  [field: string]: unknown;
}

/** Runs a worker over 4 good items and 1 bad one; returns its parsed log lines. */
async function workerLog(
  master: MasterProcess,
  queue: string,
  flags: string[],
): Promise<LogLine[]> {
  const client = await connect({ address: master.address, authkey: TEST_KEY });
  await client.queue(queue).putMany(["ok1", "ok2", "ok3", "ok4", "bad"]);
  await client.close();
  const { code, stderr } = await runTaskq([
    "worker",
    "--connect",
    master.address,
    "--queue",
    queue,
    "--exit-when-idle",
    "0.6",
    "--log-format",
    "json",
    ...flags,
    "--",
    "sh",
    "-c",
    'sleep 0.1; test "$1" != bad',
    "sh",
    "{}",
  ]);
  assert.equal(code, 0, stderr);
  return stderr.trimEnd().split("\n").filter((line) => line !== "").map((line) => {
    const parsed = JSON.parse(line) as LogLine; // every line is one JSON object
    assert.match(parsed.time, /^\d{4}-\d\d-\d\dT/);
    return parsed;
  });
}

Deno.test("worker log lines: JSON, one per failure, a periodic summary, quiet and verbose", async () => {
  await using master = await startMaster({ args: ["--max-attempts", "1"] });

  const normal = await workerLog(master, "a", ["--summary-every", "0.15"]);
  const failures = normal.filter((l) => l.msg === "task failed");
  assert.equal(failures.length, 1, JSON.stringify(normal));
  assert.equal(failures[0].level, "warn");
  assert.match(String(failures[0].error), /exited with code 1/);
  assert.ok(normal.some((l) => l.msg === "worker started"));
  const progress = normal.filter((l) => l.msg === "progress");
  assert.ok(progress.length >= 1, "a periodic summary");
  assert.ok(progress.every((l) => typeof l.done === "number" && typeof l.perSecond === "number"));
  const stopped = normal.find((l) => l.msg === "worker stopped")!;
  assert.deepEqual([stopped.done, stopped.failed], [4, 1]);
  assert.equal(normal.filter((l) => l.msg === "task done").length, 0);

  const quiet = await workerLog(master, "b", ["--quiet", "--summary-every", "0.15"]);
  assert.deepEqual(quiet.map((l) => [l.level, l.msg]), [["warn", "task failed"]]);

  const verbose = await workerLog(master, "c", ["--verbose", "--summary-every", "0"]);
  const done = verbose.filter((l) => l.msg === "task done");
  assert.equal(done.length, 4);
  assert.ok(done.every((l) => l.level === "debug" && typeof l.id === "number"));
  assert.equal(verbose.filter((l) => l.msg === "progress").length, 0, "--summary-every 0: none");
});

Deno.test("with --log-format json, a command's fatal error (--fail-fast, no master) is one JSON line too", async () => {
  const port = freeLoopbackPort(); // nothing listens there now
  const out = await runTaskq([
    "worker",
    "--connect",
    `127.0.0.1:${port}`,
    "--queue",
    "q",
    "--log-format",
    "json",
    "--fail-fast",
    "--",
    "true",
  ]);
  assert.equal(out.code, 1);
  const lines = out.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1);
  const line = JSON.parse(lines[0]);
  assert.equal(line.level, "error");
  assert.equal(line.command, "worker");
  assert.match(line.msg, /cannot reach master/);
});
