/**
 * Tests of lib/server/telemetry.ts: the cumulative histogram (bounds,
 * cumulative counts, sum and count) and the error counters by code.
 *
 * @module
 */

import assert from "node:assert/strict";
import { COMMIT_SECONDS_BUCKETS, Histogram, Telemetry } from "../lib/broker/telemetry.ts";

Deno.test("a histogram counts observations cumulatively per upper bound", () => {
  const h = new Histogram([1, 5, 10]);
  for (const value of [0.5, 1, 3, 7, 100]) h.observe(value);
  assert.deepEqual(h.cumulative(), [2, 3, 4]);
  assert.equal(h.count, 5);
  assert.equal(h.sum, 111.5);
  assert.throws(() => new Histogram([1, 1]), RangeError);
});

Deno.test("telemetry counts errors by code and commit times in seconds", () => {
  const t = new Telemetry();
  t.countError("auth_failed");
  t.countError("auth_failed");
  t.countError("frame_too_large");
  assert.equal(t.errors.get("auth_failed"), 2);
  assert.equal(t.errors.get("frame_too_large"), 1);
  assert.equal(t.errors.get("bad_request"), undefined);
  t.observeCommit(2); // 2 ms
  assert.equal(t.commitSeconds.count, 1);
  assert.equal(t.commitSeconds.sum, 0.002);
  const at = COMMIT_SECONDS_BUCKETS.indexOf(0.0025);
  assert.equal(t.commitSeconds.cumulative()[at], 1);
  assert.equal(t.commitSeconds.cumulative()[at - 1], 0);
});
