/**
 * Flag ranges (lib/cli/args.ts and each command's flags): every duration,
 * count and size flag has a documented minimum and maximum, and a value out
 * of range is refused with one line naming the flag and the range, exit code
 * 2, before anything starts (`--lease 0` used to dead-letter everything in
 * 40 ms).
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  durationFlag,
  intFlag,
  LEASE_RANGE,
  type Parsed,
  PERIOD_RANGE,
  secondsFlag,
} from "../lib/cli/args.ts";
import { ConfigError } from "../lib/errors.ts";
import { runTaskq } from "./_helpers.ts";

/** Parsed flags holding `name` = `value`. */
function flag(name: string, value: string): Parsed {
  return { values: { [name]: value }, positionals: [] };
}

Deno.test("secondsFlag: the range is enforced and named", () => {
  assert.equal(secondsFlag(flag("lease", "0.1"), "lease", 0, LEASE_RANGE), 100);
  assert.equal(secondsFlag(flag("lease", "86400"), "lease", 0, LEASE_RANGE), 86_400_000);
  for (const bad of ["0", "0.05", "86401", "-1", "", " ", "NaN", "Infinity", "1e9", "soon"]) {
    assert.throws(
      () => secondsFlag(flag("lease", bad), "lease", 0, LEASE_RANGE),
      (error: Error) =>
        error instanceof ConfigError &&
        error.message === `--lease takes seconds from 0.1 to 86400, not "${bad}"`,
      bad,
    );
  }
  // 0 means "never" where the range says so; just above it is still too little.
  assert.equal(secondsFlag(flag("summary-every", "0"), "summary-every", 1, PERIOD_RANGE), 0);
  assert.throws(
    () => secondsFlag(flag("summary-every", "0.01"), "summary-every", 1, PERIOD_RANGE),
    /--summary-every takes seconds from 0\.1 to 3600 \(or 0: off\), not "0\.01"/,
  );
  // Absent: the fallback, unchecked.
  assert.equal(
    secondsFlag({ values: {}, positionals: [] }, "lease", undefined, LEASE_RANGE),
    undefined,
  );
});

Deno.test("intFlag: only plain whole numbers within range", () => {
  assert.equal(intFlag(flag("count", "7"), "count", 1, 1, 10), 7);
  assert.equal(intFlag(flag("priority", "-5"), "priority", 0, -10, 10), -5);
  for (const bad of ["0", "11", "", "0x5", "1e1", "2.5", "five", "9007199254740993"]) {
    assert.throws(
      () => intFlag(flag("count", bad), "count", 1, 1, 10),
      (error: Error) =>
        error instanceof ConfigError &&
        error.message === `--count must be a whole number from 1 to 10, not "${bad}"`,
      bad,
    );
  }
});

Deno.test("durationFlag: units, and the range in the message", () => {
  assert.equal(durationFlag(flag("hold", "2m"), "hold", 0, { maxMs: 3_600_000 }), 120_000);
  assert.throws(
    () => durationFlag(flag("hold", "2h"), "hold", 0, { maxMs: 3_600_000 }),
    /--hold takes a duration \(.*\) from 0 to 3600 s, not "2h"/,
  );
});

/** Command lines with an out-of-range flag, and what their one line must say. */
const REFUSED: Array<[string[], RegExp]> = [
  [["master", "--memory", "--lease", "0"], /--lease takes seconds from 0\.1 to 86400, not "0"/],
  [["master", "--memory", "--lease", "1000000"], /--lease takes seconds from 0\.1 to 86400/],
  [["master", "--memory", "--retry-backoff", "301"], /--retry-backoff takes seconds from 0 to 300/],
  [
    ["master", "--memory", "--handshake-timeout", "0"],
    /--handshake-timeout takes seconds from 0\.1 to 3600/,
  ],
  [
    ["master", "--memory", "--max-queue-length", "0x10"],
    /--max-queue-length must be a whole number from 0 to 1000000000, not "0x10"/,
  ],
  [["master", "--memory", "--max-queues", "-1"], /--max-queues must be a whole number from 0 to/],
  [["master", "--memory", "--keep-jobs", "1e12"], /--keep-jobs must be a whole number from 0 to/],
  [["master", "--memory", "--max-frame", "10"], /--max-frame must be a whole number from 1024 to/],
  [
    ["master", "--memory", "--queue-max-attempts", "q=0"],
    /--queue-max-attempts takes NAME=N with N from 1 to \d+, not "q=0"/,
  ],
  [["worker", "--queue", "q", "--lease", "0", "--", "true"], /--lease takes seconds from 0\.1/],
  [["worker", "--queue", "q", "--timeout", "0", "--", "true"], /--timeout takes seconds from 0\.1/],
  [
    ["worker", "--queue", "q", "--exit-when-idle", "0.001", "--", "true"],
    /--exit-when-idle takes seconds from 0\.1/,
  ],
  [
    ["worker", "--queue", "q", "--grace", "7200", "--", "true"],
    /--grace takes seconds from 0 to 3600/,
  ],
  [
    ["worker", "--queue", "q", "--concurrency", "0", "--", "true"],
    /--concurrency must be a whole number from 1 to/,
  ],
  [["status", "--interval", "0"], /--interval takes seconds from 0\.1 to 3600, not "0"/],
  [
    ["put", "--queue", "q", "--max-attempts", "0", "x"],
    /--max-attempts must be a whole number from 1 to/,
  ],
];

Deno.test("out-of-range flags: one line naming the flag and its range, exit code 2", async () => {
  await Promise.all(REFUSED.map(async ([args, expected]) => {
    const run = await runTaskq([...args]);
    const lines = run.stderr.trim().split("\n");
    assert.equal(run.code, 2, `${args.join(" ")}: ${run.stderr}`);
    assert.equal(lines.length, 1, run.stderr);
    assert.match(lines[0], new RegExp(`^taskq ${args[0]}: `));
    assert.match(lines[0], expected);
  }));
});
