/**
 * Tests of lib/util/arguments.ts, the checks of a local caller's own
 * arguments (a wrong type is a TypeError, a value out of range a RangeError,
 * each naming the argument), and of the worker loop's option checks, which
 * refuse bad options before anything is taken from a queue.
 *
 * @module
 */

import assert from "node:assert/strict";
import { checkIntegerArgument, describeValue } from "../lib/util/arguments.ts";
import { runWorker, type WorkerOptions } from "../lib/worker/worker.ts";
import type { Client } from "../lib/client/client.ts";
import { ProtocolError, TaskqError } from "../lib/errors.ts";

Deno.test("arguments: describeValue names a value in a few characters", () => {
  assert.equal(describeValue("abc"), '"abc"');
  assert.equal(describeValue("a\nb"), '"a\\nb"');
  assert.equal(describeValue("x".repeat(100)), `"${"x".repeat(40)}…"`);
  assert.equal(describeValue(-1), "-1");
  assert.equal(describeValue(NaN), "NaN");
  assert.equal(describeValue(undefined), "undefined");
  assert.equal(describeValue(null), "null");
  assert.equal(describeValue(true), "true");
  assert.equal(describeValue(5n), "5n");
  assert.equal(describeValue(() => 1), "a function");
  assert.equal(describeValue(Symbol("s")), "a symbol");
  assert.equal(describeValue([1]), "an array");
  assert.equal(describeValue({ a: 1 }), "an object");
  assert.equal(describeValue(Object.create(null)), "an object");
  assert.equal(describeValue(new Map()), "a Map");
});

Deno.test("arguments: checkIntegerArgument refuses a non-number with TypeError, the rest with RangeError", () => {
  assert.equal(checkIntegerArgument("count", 3, 1, 10), 3);
  assert.equal(checkIntegerArgument("count", 1, 1, 10), 1);
  assert.equal(checkIntegerArgument("count", 10, 1, 10), 10);
  assert.throws(() => checkIntegerArgument("count", "3", 1, 10), {
    name: "TypeError",
    message: 'count must be a number, not "3"',
  });
  for (const bad of [0, 11, 1.5, NaN, Infinity, -Infinity]) {
    assert.throws(() => checkIntegerArgument("count", bad, 1, 10), (error: unknown) => {
      assert.ok(error instanceof RangeError);
      assert.equal(error.message, `count must be a whole number from 1 to 10, not ${bad}`);
      return true;
    });
  }
  assert.throws(
    () => checkIntegerArgument("timeoutMs", -1, 0, 100, " of milliseconds"),
    /timeoutMs must be a whole number of milliseconds from 0 to 100, not -1/,
  );
});

/** A client the worker must never reach: bad options are refused before it is used. */
const untouchable = new Proxy({}, {
  get(_target, key) {
    throw new Error(`the client was used (${String(key)}) despite bad options`);
  },
}) as Client;

Deno.test("arguments: runWorker refuses bad options before it takes anything", async () => {
  const base: WorkerOptions = { client: untouchable, queue: "tasks", handler: () => null };
  const cases: [Partial<WorkerOptions>, typeof TypeError | typeof RangeError, RegExp][] = [
    [{ handler: undefined }, TypeError, /handler must be a function, not undefined/],
    [{ queue: "" }, RangeError, /bad queue name ""/],
    [{ queue: 7 as unknown as string }, TypeError, /queue name must be a string/],
    [{ results: "bad\nname" }, RangeError, /bad queue name "bad\\nname"/],
    [{ concurrency: 0 }, RangeError, /concurrency must be a whole number from 1 to 65536/],
    [{ concurrency: 2.5 }, RangeError, /concurrency/],
    [{ concurrency: "4" as unknown as number }, TypeError, /concurrency must be a number/],
    [{ prefetch: -1 }, RangeError, /prefetch/],
    [
      { concurrency: 65_536, prefetch: 1 },
      RangeError,
      /prefetch must be a whole number from 0 to 0/,
    ],
    [{ leaseMs: -5 }, RangeError, /leaseMs/],
    [{ leaseMs: 2 ** 31 }, RangeError, /leaseMs must be a whole number of milliseconds/],
    [{ exitWhenIdleMs: NaN }, RangeError, /exitWhenIdleMs/],
    [{ graceMs: "1" as unknown as number }, TypeError, /graceMs/],
    [{ summaryIntervalMs: 0.5 }, RangeError, /summaryIntervalMs/],
  ];
  for (const [options, kind, pattern] of cases) {
    await assert.rejects(runWorker({ ...base, ...options }), (error: unknown) => {
      assert.ok(error instanceof kind, `${Deno.inspect(options)}: got ${error}`);
      assert.ok(!(error instanceof TaskqError) && !(error instanceof ProtocolError));
      assert.match(error.message, pattern);
      return true;
    });
  }
});
