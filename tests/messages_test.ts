/**
 * Tests of lib/wire/messages.ts: strict validation of every message a master
 * receives (hello, auth, put, get, ack, nack, extend, stats, ping, and since
 * version 2 cancel, job, limit, progress and put's priority, group, keys and
 * keyHold) and every message a client receives (ok, error, challenge,
 * welcome, and since version 2 the `cancelled` notice and ok's existing,
 * cancelled, job and limits; and since version 3 items, requeue, drop,
 * purge, sessions and control, their replies and the `control` notice):
 * accepted shapes, and refusal (ProtocolError
 * "bad_request") of non-maps, missing or unknown ops, unknown fields, wrong
 * types, out-of-range numbers, bad queue names and oversized batches. Also
 * {@link limitChanges}, and that every job record the engine makes passes the
 * client's validation.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  checkQueueName,
  limitChanges,
  type LimitRequest,
  MAX_BATCH,
  MAX_DURATION_MS,
  MAX_FAILURE_TEXT,
  MAX_HELD_LISTED,
  MAX_ITEMS_PAGE,
  MAX_QUEUE_NAME_LENGTH,
  MAX_SESSION_TEXT,
  parseClientMessage,
  parseServerMessage,
  VERSION_3_OPS,
} from "../lib/wire/messages.ts";
import {
  JOB_STATES,
  MAX_CONCURRENCY,
  MAX_GROUP_LENGTH,
  MAX_KEY_LENGTH,
  MAX_PRIORITY,
  MAX_PROGRESS_MESSAGE,
  MAX_RATE_COUNT,
  MIN_PRIORITY,
} from "../lib/model/jobs.ts";
import { NONCE_BYTES, PROOF_BYTES } from "../lib/wire/auth.ts";
import { ProtocolError } from "../lib/errors.ts";
import { decode, encode } from "../lib/model/codec.ts";
import { Engine } from "../lib/engine/engine.ts";

const nonce = new Uint8Array(NONCE_BYTES).fill(1);
const proof = new Uint8Array(PROOF_BYTES).fill(2);

/** `fields` less those set to undefined (which a peer cannot send). */
function defined(fields: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined));
}

/** A message as the peer would see it: through the codec (fields set to undefined are left out). */
function wire(value: unknown): unknown {
  if (value !== null && typeof value === "object" && value.constructor === Object) {
    value = Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined));
  }
  return decode(encode(value));
}

function refusedBy(parse: (value: unknown) => unknown, value: unknown, pattern: RegExp): void {
  assert.throws(() => parse(wire(value)), (error: unknown) => {
    assert.ok(
      error instanceof ProtocolError,
      `expected a ProtocolError for ${Deno.inspect(value)}`,
    );
    assert.equal(error.code, "bad_request");
    assert.match(error.message, pattern, `for ${Deno.inspect(value)}`);
    return true;
  });
}

const refusedByMaster = (value: unknown, pattern: RegExp) =>
  refusedBy(parseClientMessage, value, pattern);
const refusedByClient = (value: unknown, pattern: RegExp) =>
  refusedBy(parseServerMessage, value, pattern);

Deno.test("messages: valid client messages are accepted as sent", () => {
  const valid: Record<string, unknown>[] = [
    { op: "hello", version: 1, nonce },
    { op: "hello", version: 1, nonce, name: "host:123" },
    { op: "auth", proof },
    { op: "put", rid: 0, queue: "q", items: [1] },
    { op: "put", rid: 1, queue: "q", items: [null, "x", { a: [1] }], delay: 5 },
    { op: "get", rid: 2, queue: "q", max: 1, timeout: 0 },
    { op: "get", rid: 3, queue: "q", max: MAX_BATCH, timeout: MAX_DURATION_MS, lease: 1 },
    { op: "ack", rid: 4, ids: [1, 2, 3] },
    { op: "nack", rid: 5, ids: [0] },
    { op: "nack", rid: 6, ids: [7], delay: 100 },
    { op: "extend", rid: 7, ids: [7], lease: 1000 },
    { op: "stats", rid: 8 },
    { op: "stats", rid: 9, queue: "q" },
    { op: "ping", rid: Number.MAX_SAFE_INTEGER },
  ];
  for (const message of valid) {
    const parsed = parseClientMessage(wire(message)) as unknown as Record<string, unknown>;
    for (const key in message) {
      const sent = message[key];
      const got = parsed[key];
      if (sent instanceof Uint8Array) assert.deepEqual([...(got as Uint8Array)], [...sent]);
      else assert.deepEqual(got, sent, `${message.op}.${key}`);
    }
    assert.deepEqual(Object.keys(parsed).sort(), Object.keys(message).sort());
  }
});

Deno.test("messages: a message must be a map with a known string op", () => {
  refusedByMaster([1, 2], /must be a msgpack map/);
  refusedByMaster("hello", /must be a msgpack map/);
  refusedByMaster(null, /must be a msgpack map/);
  refusedByMaster(7, /must be a msgpack map/);
  refusedByMaster(new Uint8Array(3), /must be a msgpack map/);
  refusedByMaster(new Date(0), /must be a msgpack map/);
  refusedByMaster({}, /needs a string "op"/);
  refusedByMaster({ rid: 1 }, /needs a string "op"/);
  refusedByMaster({ op: 5, rid: 1 }, /needs a string "op"/);
  refusedByMaster({ op: "frobnicate", rid: 1 }, /unknown message op "frobnicate"/);
  // Long unknown ops are cut short in the message.
  refusedByMaster({ op: "x".repeat(1000) }, /unknown message op "x{40}"$/);
  // Server messages are not client messages.
  refusedByMaster({ op: "ok", rid: 1 }, /unknown message op "ok"/);
});

Deno.test("messages: unknown fields are refused", () => {
  refusedByMaster({ op: "ping", rid: 1, extra: true }, /"ping" message has unknown field "extra"/);
  refusedByMaster(
    { op: "put", rid: 1, queue: "q", items: [1], prio: 3 },
    /"put" message has unknown field "prio"/,
  );
  refusedByMaster({ op: "cancel", rid: 1, ids: [1], all: true }, /"cancel" .*unknown field "all"/);
  refusedByMaster({ op: "job", rid: 1, id: 1, ids: [1] }, /"job" .*unknown field "ids"/);
  // The limits record's names are not the request's.
  refusedByMaster({ op: "limit", rid: 1, queue: "q", rateCount: 5 }, /unknown field "rateCount"/);
  refusedByMaster({ op: "progress", rid: 1, id: 1, at: 5 }, /"progress" .*unknown field "at"/);
  refusedByMaster({ op: "put", rid: 1, queue: "q", items: [1], key: "k" }, /unknown field "key"/);
  refusedByMaster({ op: "auth", proof, rid: 1 }, /unknown field "rid"/);
});

Deno.test("messages: handshake fields are checked", () => {
  refusedByMaster({ op: "hello", nonce }, /"version" must be an integer/);
  refusedByMaster({ op: "hello", version: -1, nonce }, /"version" must be an integer/);
  refusedByMaster({ op: "hello", version: 1 }, /"nonce" must be 32 bytes of binary/);
  refusedByMaster({ op: "hello", version: 1, nonce: new Uint8Array(31) }, /32 bytes/);
  refusedByMaster({ op: "hello", version: 1, nonce: "x".repeat(32) }, /32 bytes/);
  refusedByMaster({ op: "hello", version: 1, nonce, name: 5 }, /"name" must be a string/);
  refusedByMaster({ op: "hello", version: 1, nonce, name: "n".repeat(201) }, /at most 200/);
  refusedByMaster({ op: "auth", proof: new Uint8Array(33) }, /"proof" must be 32 bytes/);
});

Deno.test("messages: request ids must be non-negative safe integers", () => {
  for (const rid of [-1, 1.5, "1", null, 2 ** 53, undefined]) {
    refusedByMaster({ op: "ping", rid }, /"ping" field "rid" must be an integer/);
  }
});

Deno.test("messages: put fields are checked", () => {
  const put = (fields: Record<string, unknown>) => ({
    op: "put",
    rid: 1,
    queue: "q",
    items: [1],
    ...fields,
  });
  refusedByMaster(put({ queue: 5 }), /queue name must be/);
  refusedByMaster(put({ queue: undefined }), /"put" needs a "queue" field/);
  refusedByMaster(put({ queue: "" }), /queue name must be/);
  refusedByMaster(put({ queue: "a\nb" }), /without control characters/);
  refusedByMaster(put({ queue: "q".repeat(MAX_QUEUE_NAME_LENGTH + 1) }), /queue name must be/);
  refusedByMaster(put({ items: "x" }), /"items" must be an array of 1–65536/);
  refusedByMaster(put({ items: [] }), /"items" must be an array of 1–65536/);
  refusedByMaster(put({ items: { 0: 1 } }), /"items" must be an array/);
  refusedByMaster(put({ items: new Array(MAX_BATCH + 1).fill(0) }), /1–65536 elements/);
  refusedByMaster(put({ delay: -5 }), /"delay" must be an integer from 0 to 2147483647/);
  refusedByMaster(put({ delay: MAX_DURATION_MS + 1 }), /"delay" must be an integer/);
  refusedByMaster(put({ delay: "soon" }), /"delay" must be an integer/);
});

Deno.test("messages: get, ack, nack, extend and stats fields are checked", () => {
  const get = (fields: Record<string, unknown>) => ({
    op: "get",
    rid: 1,
    queue: "q",
    max: 1,
    timeout: 0,
    ...fields,
  });
  refusedByMaster(get({ max: 0 }), /"max" must be at least 1/);
  refusedByMaster(get({ max: MAX_BATCH + 1 }), /"max" must be an integer from 0 to 65536/);
  refusedByMaster(get({ max: undefined }), /"max" must be an integer/);
  refusedByMaster(get({ timeout: -1 }), /"timeout" must be an integer/);
  refusedByMaster(get({ timeout: 0.5 }), /"timeout" must be an integer/);
  refusedByMaster(get({ lease: -1 }), /"lease" must be an integer/);
  refusedByMaster(get({ queue: undefined }), /needs a "queue"/);
  refusedByMaster({ op: "ack", rid: 1, ids: [] }, /"ids" must be an array of 1–65536/);
  refusedByMaster({ op: "ack", rid: 1, ids: 5 }, /"ids" must be an array/);
  refusedByMaster({ op: "ack", rid: 1, ids: [1, -2] }, /non-negative integer ids/);
  refusedByMaster({ op: "ack", rid: 1, ids: ["1"] }, /non-negative integer ids/);
  refusedByMaster({ op: "ack", rid: 1, ids: [1.5] }, /non-negative integer ids/);
  refusedByMaster({ op: "nack", rid: 1, ids: [1], delay: -1 }, /"delay" must be an integer/);
  refusedByMaster({ op: "extend", rid: 1, ids: [1] }, /"lease" must be an integer/);
  refusedByMaster({ op: "stats", rid: 1, queue: 3 }, /queue name must be/);
});

Deno.test("messages: checkQueueName accepts names of 1 to 200 characters", () => {
  assert.equal(checkQueueName("tasks"), "tasks");
  assert.equal(checkQueueName("q".repeat(MAX_QUEUE_NAME_LENGTH)), "q".repeat(200));
  assert.equal(checkQueueName("ünïcødé queue/with:punctuation"), "ünïcødé queue/with:punctuation");
  for (const bad of ["", "a\u0000b", "tab\t", "del\u007f", 5, null]) {
    assert.throws(() => checkQueueName(bad), ProtocolError);
  }
});

Deno.test("messages: valid server messages are accepted", () => {
  assert.deepEqual(parseServerMessage(wire({ op: "ok", rid: 3 })), { op: "ok", rid: 3 });
  assert.deepEqual(parseServerMessage(wire({ op: "ok", rid: 3, ids: [1, 2] })), {
    op: "ok",
    rid: 3,
    ids: [1, 2],
  });
  assert.deepEqual(
    parseServerMessage(wire({ op: "ok", rid: 4, jobs: [{ id: 1, attempt: 2, value: null }] })),
    { op: "ok", rid: 4, jobs: [{ id: 1, attempt: 2, value: null }] },
  );
  assert.deepEqual(parseServerMessage(wire({ op: "ok", rid: 5, failed: [] })), {
    op: "ok",
    rid: 5,
    failed: [],
  });
  const error = { op: "error", rid: 6, code: "bad_request", message: "no" };
  assert.deepEqual(parseServerMessage(wire(error)), error);
  const unrelated = { op: "error", code: "shutting_down", message: "bye" };
  assert.deepEqual(parseServerMessage(wire(unrelated)), unrelated);
  const challenge = parseServerMessage(wire({ op: "challenge", version: 1, nonce }));
  assert.equal(challenge.op, "challenge");
  const welcome = parseServerMessage(
    wire({ op: "welcome", proof, maxFrameBytes: 1024, leaseMs: 30_000 }),
  );
  assert.equal(welcome.op === "welcome" && welcome.leaseMs, 30_000);
});

Deno.test("messages: stats replies carry every counter of every queue", () => {
  // The engine's own snapshot has every counter the reply must carry.
  const engine = new Engine();
  engine.put("q", [1, 2]);
  const queues = engine.stats();
  const reply = { op: "ok", rid: 1, queues, clients: 2 };
  assert.deepEqual(parseServerMessage(wire(reply)), reply);
  const { ready: _, ...missing } = queues[0];
  refusedByClient({ op: "ok", rid: 1, queues: [missing] }, /"ready" must be an integer/);
  refusedByClient({ op: "ok", rid: 1, queues: [{ ...queues[0], name: "" }] }, /queue name/);
  refusedByClient({ op: "ok", rid: 1, queues: [{ ...queues[0], bogus: 1 }] }, /"bogus"/);
  refusedByClient({ op: "ok", rid: 1, clients: -1 }, /"clients" must be an integer/);
});

Deno.test("messages: malformed server messages are refused", () => {
  refusedByClient([], /must be a msgpack map/);
  refusedByClient({ op: "put", rid: 1 }, /unknown reply op "put"/);
  refusedByClient({ rid: 1 }, /unknown reply op "undefined"/);
  refusedByClient({ op: "ok" }, /"ok" field "rid" must be an integer/);
  refusedByClient({ op: "ok", rid: 1, extra: 1 }, /unknown field "extra"/);
  refusedByClient({ op: "ok", rid: 1, jobs: [{ id: 1, attempt: 1 }] }, /job needs a "value"/);
  refusedByClient({ op: "ok", rid: 1, jobs: [{ id: -1, attempt: 1, value: 1 }] }, /"id"/);
  refusedByClient(
    { op: "ok", rid: 1, jobs: [{ id: 1, attempt: 1, value: 1, x: 0 }] },
    /unknown field "x"/,
  );
  refusedByClient({ op: "ok", rid: 1, jobs: "none" }, /"jobs" must be an array/);
  refusedByClient({ op: "error", code: "nope", message: "m" }, /unknown code/);
  refusedByClient({ op: "error", code: "internal", message: 5 }, /"message" must be a string/);
  refusedByClient({ op: "error", code: "internal", message: "m".repeat(4097) }, /at most 4096/);
  refusedByClient({ op: "challenge", version: 1, nonce: new Uint8Array(1) }, /32 bytes/);
  refusedByClient({ op: "welcome", proof, maxFrameBytes: -1, leaseMs: 1 }, /"maxFrameBytes"/);
  refusedByClient({ op: "welcome", proof, maxFrameBytes: 1, leaseMs: 2 ** 31 }, /"leaseMs"/);
});

// ------------------------------------------------------------------ version 2

/** A put of `items` on "q" with `fields`. */
const putWith = (fields: Record<string, unknown>, items: unknown[] = [1]) => ({
  op: "put",
  rid: 1,
  queue: "q",
  items,
  ...fields,
});

Deno.test("messages: version 2 requests are accepted as sent", () => {
  const long = (n: number) => "x".repeat(n);
  const valid: Record<string, unknown>[] = [
    putWith({ priority: MIN_PRIORITY }),
    putWith({ priority: MAX_PRIORITY }),
    putWith({ priority: 0, group: "g" }),
    putWith({ group: long(MAX_GROUP_LENGTH) }),
    putWith({ keys: ["a", long(MAX_KEY_LENGTH)] }, [1, 2]),
    putWith({ keys: ["a"], keyHold: 0 }),
    putWith({ keys: ["a"], keyHold: MAX_DURATION_MS, priority: -1, group: "g", delay: 5 }),
    { op: "cancel", rid: 2, ids: [0] },
    { op: "cancel", rid: 2, ids: new Array(MAX_BATCH).fill(7) },
    { op: "job", rid: 3, id: 0 },
    { op: "job", rid: 3, id: Number.MAX_SAFE_INTEGER },
    { op: "limit", rid: 4, queue: "q" },
    { op: "limit", rid: 4, queue: "q", rate: 0, concurrency: 0, groupConcurrency: 0 },
    { op: "limit", rid: 4, queue: "q", rate: MAX_RATE_COUNT, ratePeriod: 1 },
    { op: "limit", rid: 4, queue: "q", ratePeriod: MAX_DURATION_MS },
    { op: "limit", rid: 4, queue: "q", concurrency: MAX_CONCURRENCY },
    { op: "limit", rid: 4, queue: "q", groupConcurrency: MAX_CONCURRENCY },
    { op: "progress", rid: 5, id: 1 },
    { op: "progress", rid: 5, id: 1, percent: 0, message: "" },
    { op: "progress", rid: 5, id: 1, percent: 100, message: long(MAX_PROGRESS_MESSAGE) },
    { op: "progress", rid: 5, id: 1, percent: 33.25, lease: MAX_DURATION_MS },
  ];
  for (const message of valid) {
    assert.deepEqual(parseClientMessage(wire(message)), message, Deno.inspect(message));
  }
  // A nil key is no key.
  assert.deepEqual(
    parseClientMessage(wire(putWith({ keys: ["a", null, "a"] }, [1, 2, 3]))),
    putWith({ keys: ["a", undefined, "a"] }, [1, 2, 3]),
  );
});

Deno.test("messages: put's version 2 fields are checked", () => {
  for (const priority of [MIN_PRIORITY - 1, MAX_PRIORITY + 1, 1.5, "5", null, NaN, true]) {
    refusedByMaster(putWith({ priority }), /"put" field "priority": a priority must be an integer/);
  }
  for (const group of ["", "g".repeat(MAX_GROUP_LENGTH + 1), 5, null, ["g"]]) {
    refusedByMaster(
      putWith({ group }),
      /"put" field "group": a group must be a string of 1 to 256/,
    );
  }
  refusedByMaster(putWith({ keys: "k" }), /"keys" must be an array/);
  refusedByMaster(putWith({ keys: [] }), /"keys" must be an array/);
  refusedByMaster(putWith({ keys: ["a", "b"] }), /exactly one key \(or nil\) per item/);
  refusedByMaster(putWith({ keys: ["a"] }, [1, 2]), /"keys" must be an array of 2–65536/);
  for (const key of ["", "k".repeat(MAX_KEY_LENGTH + 1), 5, ["k"], { k: 1 }, false]) {
    refusedByMaster(putWith({ keys: [key] }), /"put" field "key": a key must be a string of 1 to/);
  }
  refusedByMaster(putWith({ keyHold: 5 }), /"keyHold" needs "keys"/);
  for (const keyHold of [-1, MAX_DURATION_MS + 1, 0.5, "1s"]) {
    refusedByMaster(putWith({ keys: ["a"], keyHold }), /"keyHold" must be an integer from 0 to/);
  }
});

Deno.test("messages: cancel, job, limit and progress fields are checked", () => {
  // cancel
  refusedByMaster({ op: "cancel", rid: 1 }, /"cancel" field "ids" must be an array of 1–65536/);
  refusedByMaster({ op: "cancel", rid: 1, ids: [] }, /"ids" must be an array of 1–65536/);
  refusedByMaster({ op: "cancel", rid: 1, ids: new Array(MAX_BATCH + 1).fill(1) }, /1–65536/);
  refusedByMaster({ op: "cancel", rid: 1, ids: [-1] }, /non-negative integer ids/);
  refusedByMaster({ op: "cancel", rid: 1, ids: ["1"] }, /non-negative integer ids/);
  refusedByMaster({ op: "cancel", ids: [1] }, /"cancel" field "rid" must be an integer/);
  // job
  for (const id of [undefined, -1, 1.5, "1", null, 2 ** 53]) {
    refusedByMaster({ op: "job", rid: 1, id }, /"job" field "id" must be an integer/);
  }
  // limit
  const limit = (fields: Record<string, unknown>) => ({
    op: "limit",
    rid: 1,
    queue: "q",
    ...fields,
  });
  refusedByMaster(limit({ queue: undefined }), /"limit" needs a "queue" field/);
  refusedByMaster(limit({ queue: "" }), /queue name must be/);
  for (const rate of [-1, MAX_RATE_COUNT + 1, 1.5, "5/s"]) {
    refusedByMaster(limit({ rate }), /"limit" field "rate" must be an integer from 0 to 1000000/);
  }
  refusedByMaster(limit({ ratePeriod: 0 }), /"ratePeriod" must be at least 1/);
  refusedByMaster(limit({ rate: 5, ratePeriod: 0 }), /"ratePeriod" must be at least 1/);
  for (const ratePeriod of [-1, MAX_DURATION_MS + 1, 0.5, "1s"]) {
    refusedByMaster(limit({ ratePeriod }), /"ratePeriod" must be an integer/);
  }
  for (const key of ["concurrency", "groupConcurrency"]) {
    for (const value of [-1, MAX_CONCURRENCY + 1, 2.5, "4", null]) {
      refusedByMaster(limit({ [key]: value }), new RegExp(`"${key}" must be an integer from 0 to`));
    }
  }
  // progress
  const progress = (fields: Record<string, unknown>) => ({
    op: "progress",
    rid: 1,
    id: 1,
    ...fields,
  });
  refusedByMaster(progress({ id: undefined }), /"progress" field "id" must be an integer/);
  refusedByMaster(progress({ id: -3 }), /"progress" field "id" must be an integer/);
  for (const percent of [100.0001, 101, -1, -0.5, NaN, Infinity, -Infinity, "50", null, true]) {
    refusedByMaster(progress({ percent }), /"percent" must be a number from 0 to 100/);
  }
  refusedByMaster(progress({ message: 5 }), /"message" must be a string/);
  refusedByMaster(progress({ message: null }), /"message" must be a string/);
  refusedByMaster(progress({ message: "m".repeat(MAX_PROGRESS_MESSAGE + 1) }), /at most 1024/);
  refusedByMaster(progress({ lease: -1 }), /"lease" must be an integer/);
  refusedByMaster(progress({ lease: MAX_DURATION_MS + 1 }), /"lease" must be an integer/);
  // The master's notice is not a client message.
  refusedByMaster({ op: "cancelled", ids: [1] }, /unknown message op "cancelled"/);
});

Deno.test("messages: limitChanges turns a limit request into the broker's changes", () => {
  const changes = (fields: Partial<LimitRequest>) =>
    limitChanges({ op: "limit", rid: 1, queue: "q", ...fields });
  assert.deepEqual(changes({}), {}, "no field: a read");
  assert.deepEqual(changes({ rate: 50 }), { rateCount: 50, ratePeriodMs: 1000 });
  assert.deepEqual(changes({ rate: 10, ratePeriod: 5000 }), { rateCount: 10, ratePeriodMs: 5000 });
  assert.deepEqual(changes({ rate: 0 }), { rateCount: 0, ratePeriodMs: 1000 }, "lifts the rate");
  assert.deepEqual(changes({ ratePeriod: 250 }), { ratePeriodMs: 250 }, "the period alone");
  assert.deepEqual(changes({ concurrency: 0, groupConcurrency: 3 }), {
    concurrency: 0,
    groupConcurrency: 3,
  });
  assert.deepEqual(
    changes({ rate: MAX_RATE_COUNT, ratePeriod: MAX_DURATION_MS, concurrency: MAX_CONCURRENCY }),
    { rateCount: MAX_RATE_COUNT, ratePeriodMs: MAX_DURATION_MS, concurrency: MAX_CONCURRENCY },
  );
  // A parsed request always makes valid changes.
  const parsed = parseClientMessage(
    wire({ op: "limit", rid: 1, queue: "q", rate: 7, groupConcurrency: 2 }),
  ) as LimitRequest;
  assert.deepEqual(limitChanges(parsed), { rateCount: 7, ratePeriodMs: 1000, groupConcurrency: 2 });
  // One built by hand out of range is refused by the model's check.
  assert.throws(() => changes({ rate: -1 }), RangeError);
  assert.throws(() => changes({ ratePeriod: 0 }), RangeError);
  assert.throws(() => changes({ concurrency: MAX_CONCURRENCY + 1 }), RangeError);
});

/** A complete job information record, every optional field present. */
const FULL_JOB = {
  id: 7,
  queue: "q",
  state: "leased",
  attempts: 2,
  priority: -3,
  createdAt: 1_767_225_600_000,
  group: "g",
  key: "k",
  value: { a: [1, null] },
  error: "it broke",
  result: null,
  progress: { at: 1_767_225_600_500, percent: 12.5, message: "working" },
  readyAt: 1_767_225_600_100,
  leasedAt: 1_767_225_600_200,
  leaseExpiresAt: 1_767_225_630_200,
  holder: { session: "4", name: "host:1", address: "[::1]:5000" },
  finishedAt: 1_767_225_600_900,
};

const LIMITS = {
  queue: "q",
  rateCount: 5,
  ratePeriodMs: 1000,
  concurrency: 2,
  groupConcurrency: 1,
};

Deno.test("messages: version 2 replies and the cancelled notice are accepted", () => {
  const valid: Record<string, unknown>[] = [
    { op: "ok", rid: 1, ids: [4, 4, 5], existing: [1] },
    { op: "ok", rid: 1, ids: [4], existing: [] },
    { op: "ok", rid: 2, cancelled: [1, 2], failed: [] },
    { op: "ok", rid: 2, cancelled: [], failed: [9] },
    { op: "ok", rid: 3, job: FULL_JOB },
    {
      op: "ok",
      rid: 3,
      job: { id: 1, queue: "q", state: "ready", attempts: 0, priority: 0, createdAt: 0 },
    },
    { op: "ok", rid: 3, job: { ...FULL_JOB, progress: { at: 1 } } },
    { op: "ok", rid: 3 },
    { op: "ok", rid: 4, limits: LIMITS },
    { op: "ok", rid: 4, limits: { ...LIMITS, rateCount: MAX_RATE_COUNT, concurrency: 0 } },
    { op: "cancelled", ids: [1] },
    { op: "cancelled", ids: [1, 2, 3] },
  ];
  for (const state of JOB_STATES) valid.push({ op: "ok", rid: 5, job: { ...FULL_JOB, state } });
  for (const message of valid) {
    assert.deepEqual(parseServerMessage(wire(message)), message, Deno.inspect(message));
  }
});

Deno.test("messages: malformed version 2 replies and notices are refused", () => {
  refusedByClient({ op: "ok", rid: 1, existing: [-1] }, /"existing" must hold non-negative/);
  refusedByClient({ op: "ok", rid: 1, existing: 1 }, /"existing" must be an array/);
  refusedByClient({ op: "ok", rid: 1, cancelled: [1.5] }, /"cancelled" must hold non-negative/);
  refusedByClient({ op: "ok", rid: 1, cancelled: null }, /"cancelled" must be an array/);
  // The cancelled notice: at least one id, no rid, nothing else.
  refusedByClient({ op: "cancelled", ids: [] }, /"cancelled" field "ids" must be an array of 1–/);
  refusedByClient({ op: "cancelled" }, /"cancelled" field "ids" must be an array/);
  refusedByClient({ op: "cancelled", ids: [-1] }, /non-negative integer ids/);
  refusedByClient({ op: "cancelled", ids: [1], rid: 1 }, /unknown field "rid"/);

  // Job information records.
  const job = (fields: Record<string, unknown>) => ({
    op: "ok",
    rid: 1,
    job: defined({ ...FULL_JOB, ...fields }),
  });
  refusedByClient({ op: "ok", rid: 1, job: [1] }, /must be a msgpack map/);
  refusedByClient({ op: "ok", rid: 1, job: null }, /must be a msgpack map/);
  for (const state of ["running", "", "READY", 3, undefined]) {
    refusedByClient(job({ state }), /job info has an unknown state/);
  }
  refusedByClient(job({ owner: "me" }), /job info has unknown field "owner"/);
  refusedByClient(job({ attempt: 1 }), /job info has unknown field "attempt"/);
  refusedByClient(job({ id: undefined }), /"id" must be an integer/);
  refusedByClient(job({ id: -1 }), /"id" must be an integer/);
  refusedByClient(job({ queue: undefined }), /queue name must be/);
  refusedByClient(job({ queue: "" }), /queue name must be/);
  refusedByClient(job({ attempts: undefined }), /"attempts" must be an integer/);
  refusedByClient(job({ priority: undefined }), /"priority": a priority must be an integer/);
  refusedByClient(job({ priority: MAX_PRIORITY + 1 }), /a priority must be an integer/);
  refusedByClient(job({ createdAt: undefined }), /"createdAt" must be an integer/);
  refusedByClient(job({ createdAt: -5 }), /"createdAt" must be an integer/);
  refusedByClient(job({ group: "" }), /a group must be a string of 1 to 256/);
  refusedByClient(job({ key: "k".repeat(MAX_KEY_LENGTH + 1) }), /a key must be a string of 1 to/);
  refusedByClient(job({ error: 5 }), /"error" must be a string/);
  refusedByClient(job({ error: "e".repeat(MAX_FAILURE_TEXT + 1) }), /"error" must be a string/);
  for (const key of ["readyAt", "leasedAt", "leaseExpiresAt", "finishedAt"]) {
    refusedByClient(job({ [key]: -1 }), new RegExp(`"${key}" must be an integer`));
    refusedByClient(job({ [key]: "soon" }), new RegExp(`"${key}" must be an integer`));
  }
  refusedByClient(job({ progress: 50 }), /must be a msgpack map/);
  refusedByClient(job({ progress: {} }), /"at" must be an integer/);
  refusedByClient(job({ progress: { at: 1, percent: 101 } }), /"percent" must be a number from 0/);
  refusedByClient(job({ progress: { at: 1, percent: NaN } }), /"percent" must be a number from 0/);
  refusedByClient(
    job({ progress: { at: 1, message: "m".repeat(MAX_PROGRESS_MESSAGE + 1) } }),
    /"message" must be a string of at most 1024/,
  );
  refusedByClient(job({ progress: { at: 1, done: true } }), /progress has unknown field "done"/);
  refusedByClient(job({ holder: "me" }), /must be a msgpack map/);
  refusedByClient(job({ holder: { session: "1", name: "n" } }), /"address" must be a string/);
  refusedByClient(job({ holder: { ...FULL_JOB.holder, name: 5 } }), /"name" must be a string/);
  refusedByClient(
    job({ holder: { ...FULL_JOB.holder, pid: 5 } }),
    /holder has unknown field "pid"/,
  );

  // Limits records.
  const limits = (fields: Record<string, unknown>) => ({
    op: "ok",
    rid: 1,
    limits: defined({ ...LIMITS, ...fields }),
  });
  refusedByClient({ op: "ok", rid: 1, limits: [] }, /must be a msgpack map/);
  refusedByClient(limits({ burst: 3 }), /limits has unknown field "burst"/);
  refusedByClient(limits({ rate: 3 }), /limits has unknown field "rate"/);
  refusedByClient(limits({ queue: undefined }), /queue name must be/);
  refusedByClient(limits({ rateCount: MAX_RATE_COUNT + 1 }), /"rateCount" must be an integer/);
  refusedByClient(limits({ ratePeriodMs: 0 }), /"ratePeriodMs" must be at least 1/);
  refusedByClient(limits({ ratePeriodMs: undefined }), /"ratePeriodMs" must be an integer/);
  refusedByClient(limits({ concurrency: -1 }), /"concurrency" must be an integer/);
  refusedByClient(limits({ groupConcurrency: undefined }), /"groupConcurrency" must be an integer/);
  refusedByClient(limits({ groupConcurrency: 1.5 }), /"groupConcurrency" must be an integer/);
});

Deno.test("messages: every job record the engine makes passes the client's validation", () => {
  let now = 1_767_225_600_000;
  const engine = new Engine({ clock: () => now, retry: { maxAttempts: 1 } });
  const worker = engine.connect("worker", "127.0.0.1:4000");
  const [leased, done, dead, cancelled] = engine.put("q", ["a", "b", "c", "d"]);
  const [ready] = engine.put("q", ["e"], 0, 0, undefined, undefined, {
    priority: MIN_PRIORITY,
    group: "g",
    keys: ["k"],
  });
  const [delayed] = engine.put("q", ["f"], 60_000);
  let taken: number[] = [];
  engine.get(worker, "q", 3, 0, 30_000, (items) => taken = items.map((item) => item.id));
  assert.deepEqual(taken, [leased, done, dead]);
  now += 100;
  assert.equal(engine.progress(worker, leased, { percent: 50, message: "half" }, 30_000), true);
  assert.deepEqual(engine.ack(worker, [done], { queue: "results", values: [{ ok: 1 }] }), []);
  assert.deepEqual(engine.fail(worker, [dead], "it broke"), []);
  assert.deepEqual(engine.cancel([cancelled]).cancelled, [cancelled]);

  const states = new Map<number, string>();
  for (const id of [leased, done, dead, cancelled, ready, delayed]) {
    const info = engine.job(id);
    assert.ok(info !== undefined, `item ${id} is known`);
    const reply = { op: "ok", rid: 1, job: info };
    assert.deepEqual(parseServerMessage(wire(reply)), reply, Deno.inspect(info));
    states.set(id, info.state);
  }
  assert.deepEqual([...states.values()], [
    "leased",
    "done",
    "dead",
    "cancelled",
    "ready",
    "delayed",
  ]);
  const limits = { queue: "q", ...engine.setLimits("q", { rateCount: 3, concurrency: 1 }) };
  assert.deepEqual(parseServerMessage(wire({ op: "ok", rid: 2, limits })), {
    op: "ok",
    rid: 2,
    limits,
  });
});

// ------------------------------------------------------------------ version 3

Deno.test("messages: version 3 requests are accepted as sent", () => {
  const valid: Record<string, unknown>[] = [
    { op: "items", rid: 1, queue: "q", state: "ready" },
    { op: "items", rid: 1, queue: "q.dead", state: "delayed", offset: 0, limit: 1 },
    {
      op: "items",
      rid: 1,
      queue: "q",
      state: "leased",
      offset: Number.MAX_SAFE_INTEGER,
      limit: MAX_ITEMS_PAGE,
    },
    { op: "requeue", rid: 2, queue: "q.dead", ids: [1, 2] },
    { op: "requeue", rid: 2, queue: "q.dead", all: true },
    { op: "drop", rid: 3, queue: "q", ids: [0] },
    { op: "drop", rid: 3, queue: "q.dead", all: true },
    { op: "purge", rid: 4, queue: "q" },
    { op: "sessions", rid: 5 },
    { op: "control", rid: 6, session: "1", action: "quiet" },
    { op: "control", rid: 6, session: "m1.7".padEnd(MAX_SESSION_TEXT, "x"), action: "stop" },
  ];
  for (const message of valid) {
    assert.deepEqual(parseClientMessage(wire(message)), message, Deno.inspect(message));
  }
  // Every version 3 op is among those tried.
  assert.deepEqual(new Set(valid.map((m) => m.op)), VERSION_3_OPS);
});

Deno.test("messages: items fields are checked", () => {
  const items = (fields: Record<string, unknown>) =>
    defined({ op: "items", rid: 1, queue: "q", state: "ready", ...fields });
  refusedByMaster(items({ queue: undefined }), /"items" needs a "queue" field/);
  refusedByMaster(items({ queue: "" }), /queue name must be/);
  refusedByMaster(items({ queue: 5 }), /queue name must be/);
  refusedByMaster(items({ queue: "a\nb" }), /queue name must be/);
  for (const state of [undefined, "done", "dead", "READY", "", 1, ["ready"]]) {
    refusedByMaster(items({ state }), /"state" must be one of "ready", "delayed", "leased"/);
  }
  for (const offset of [-1, 1.5, "0", null, Number.MAX_SAFE_INTEGER + 2]) {
    refusedByMaster(items({ offset }), /"offset" must be an integer from 0/);
  }
  refusedByMaster(items({ limit: 0 }), /"limit" must be from 1 to 500/);
  for (const limit of [MAX_ITEMS_PAGE + 1, -1, 2.5, "10", true]) {
    refusedByMaster(items({ limit }), /"limit" must be an integer from 0 to 500/);
  }
  refusedByMaster(items({ count: 5 }), /"items" message has unknown field "count"/);
  refusedByMaster(items({ rid: -1 }), /"rid" must be an integer/);
});

Deno.test("messages: requeue and drop take exactly one of ids and all", () => {
  for (const op of ["requeue", "drop"]) {
    const msg = (fields: Record<string, unknown>) =>
      defined({ op, rid: 1, queue: "q.dead", ...fields });
    refusedByMaster(msg({}), new RegExp(`"${op}" needs exactly one of "ids" and "all"`));
    refusedByMaster(
      msg({ ids: [1], all: true }),
      new RegExp(`"${op}" needs exactly one of "ids" and "all"`),
    );
    for (const all of [false, 1, "true", null]) {
      refusedByMaster(msg({ all }), /"all" must be true/);
    }
    refusedByMaster(msg({ ids: [] }), /"ids" must be an array of 1–65536 elements/);
    refusedByMaster(msg({ ids: 7 }), /"ids" must be an array/);
    refusedByMaster(msg({ ids: "1,2" }), /"ids" must be an array/);
    refusedByMaster(msg({ ids: [-1] }), /non-negative integer ids/);
    refusedByMaster(msg({ ids: [1.5] }), /non-negative integer ids/);
    refusedByMaster(msg({ ids: ["1"] }), /non-negative integer ids/);
    refusedByMaster(msg({ ids: [2 ** 53] }), /non-negative integer ids/);
    refusedByMaster(
      msg({ ids: new Array(MAX_BATCH + 1).fill(1) }),
      /"ids" must be an array of 1–65536 elements/,
    );
    refusedByMaster(msg({ queue: undefined, all: true }), new RegExp(`"${op}" needs a "queue"`));
    refusedByMaster(msg({ queue: "", all: true }), /queue name must be/);
    refusedByMaster(msg({ all: true, force: true }), /unknown field "force"/);
  }
  // A requeue names a dead-letter queue; a drop any queue.
  refusedByMaster(
    { op: "requeue", rid: 1, queue: "q", all: true },
    /"requeue" field "queue" must name a dead-letter queue \(NAME\.dead\)/,
  );
  refusedByMaster(
    { op: "requeue", rid: 1, queue: ".dead", all: true },
    /must name a dead-letter queue/,
  );
  assert.deepEqual(parseClientMessage(wire({ op: "drop", rid: 1, queue: "q", all: true })), {
    op: "drop",
    rid: 1,
    queue: "q",
    all: true,
  });
});

Deno.test("messages: purge, sessions and control fields are checked", () => {
  refusedByMaster({ op: "purge", rid: 1 }, /"purge" needs a "queue" field/);
  refusedByMaster({ op: "purge", rid: 1, queue: "x".repeat(201) }, /queue name must be/);
  refusedByMaster({ op: "purge", rid: 1, queue: "q", all: true }, /unknown field "all"/);
  refusedByMaster({ op: "sessions" }, /"rid" must be an integer/);
  refusedByMaster({ op: "sessions", rid: 1, queue: "q" }, /unknown field "queue"/);
  const control = (fields: Record<string, unknown>) =>
    defined({ op: "control", rid: 1, session: "1", action: "quiet", ...fields });
  for (const action of [undefined, "pause", "QUIET", "kill", "", 0, true]) {
    refusedByMaster(control({ action }), /"action" must be one of "quiet", "stop"/);
  }
  for (const session of [undefined, 1, null, ["1"]]) {
    refusedByMaster(control({ session }), /"session" must be a string of at most 400/);
  }
  refusedByMaster(control({ session: "" }), /"session" must not be empty/);
  refusedByMaster(
    control({ session: "s".repeat(MAX_SESSION_TEXT + 1) }),
    /"session" must be a string of at most 400/,
  );
  refusedByMaster(control({ grace: 5 }), /unknown field "grace"/);
});

/** A session record with every field. */
const FULL_SESSION = {
  id: "m1.7",
  name: "host:123",
  address: "127.0.0.1:5123",
  connectedAt: 1_767_225_600_000,
  lastSeenAt: 1_767_225_600_900,
  leased: 2,
  waiting: 1,
  holding: [
    { id: 4, queue: "q", leasedAt: 1_767_225_600_100, leaseExpiresAt: 1_767_225_630_100 },
    { id: 9, queue: "r.dead", leasedAt: 1_767_225_600_200, leaseExpiresAt: 1_767_225_630_200 },
  ],
  controlled: "quiet",
};

Deno.test("messages: version 3 replies and the control notice are accepted", () => {
  const valid: Record<string, unknown>[] = [
    { op: "ok", rid: 1, items: [], total: 0 },
    { op: "ok", rid: 1, items: [FULL_JOB, { ...FULL_JOB, id: 2, state: "ready" }], total: 7 },
    { op: "ok", rid: 2, ids: [] },
    { op: "ok", rid: 3, count: 0 },
    { op: "ok", rid: 3, count: 12 },
    { op: "ok", rid: 4, sessions: [] },
    {
      op: "ok",
      rid: 4,
      sessions: [FULL_SESSION, defined({ ...FULL_SESSION, controlled: undefined, holding: [] })],
    },
    { op: "ok", rid: 4, sessions: [{ ...FULL_SESSION, controlled: "stop" }] },
    { op: "ok", rid: 5, found: true },
    { op: "ok", rid: 5, found: false },
    { op: "control", action: "quiet" },
    { op: "control", action: "stop" },
  ];
  for (const message of valid) {
    assert.deepEqual(parseServerMessage(wire(message)), message, Deno.inspect(message));
  }
});

Deno.test("messages: malformed version 3 replies and notices are refused", () => {
  refusedByClient({ op: "ok", rid: 1, items: {} }, /"items" must be an array/);
  refusedByClient(
    { op: "ok", rid: 1, items: new Array(MAX_ITEMS_PAGE + 1).fill(FULL_JOB), total: 501 },
    /"items" lists more than 500 items/,
  );
  refusedByClient({ op: "ok", rid: 1, items: [{ ...FULL_JOB, state: "gone" }] }, /unknown state/);
  refusedByClient({ op: "ok", rid: 1, total: -1 }, /"total" must be an integer/);
  refusedByClient({ op: "ok", rid: 1, count: "3" }, /"count" must be an integer/);
  refusedByClient({ op: "ok", rid: 1, found: 1 }, /"found" must be a boolean/);
  refusedByClient({ op: "ok", rid: 1, found: null }, /"found" must be a boolean/);
  refusedByClient({ op: "ok", rid: 1, sessions: {} }, /"sessions" must be an array/);
  refusedByClient({ op: "ok", rid: 1, sessions: [5] }, /must be a msgpack map/);

  const session = (fields: Record<string, unknown>) => ({
    op: "ok",
    rid: 1,
    sessions: [defined({ ...FULL_SESSION, ...fields })],
  });
  refusedByClient(session({ pid: 5 }), /session record has unknown field "pid"/);
  for (const key of ["id", "name", "address"]) {
    refusedByClient(session({ [key]: undefined }), new RegExp(`"${key}" must be a string`));
    refusedByClient(session({ [key]: 7 }), new RegExp(`"${key}" must be a string`));
    refusedByClient(
      session({ [key]: "x".repeat(MAX_SESSION_TEXT + 1) }),
      new RegExp(`"${key}" must be a string of at most 400`),
    );
  }
  for (const key of ["connectedAt", "lastSeenAt", "leased", "waiting"]) {
    refusedByClient(session({ [key]: undefined }), new RegExp(`"${key}" must be an integer`));
    refusedByClient(session({ [key]: -1 }), new RegExp(`"${key}" must be an integer`));
    refusedByClient(session({ [key]: 1.5 }), new RegExp(`"${key}" must be an integer`));
  }
  refusedByClient(session({ controlled: "pause" }), /"controlled" must be one of "quiet", "stop"/);
  refusedByClient(session({ holding: undefined }), /"holding" must be an array/);
  refusedByClient(session({ holding: "4" }), /"holding" must be an array/);
  refusedByClient(
    session({ holding: new Array(MAX_HELD_LISTED + 1).fill(FULL_SESSION.holding[0]) }),
    /"holding" lists more than 100 items/,
  );
  const held = (fields: Record<string, unknown>) =>
    session({ holding: [defined({ ...FULL_SESSION.holding[0], ...fields })] });
  refusedByClient(held({ attempt: 1 }), /held item has unknown field "attempt"/);
  refusedByClient(held({ id: -1 }), /"id" must be an integer/);
  refusedByClient(held({ queue: "" }), /queue name must be/);
  refusedByClient(held({ leasedAt: undefined }), /"leasedAt" must be an integer/);
  refusedByClient(held({ leaseExpiresAt: "soon" }), /"leaseExpiresAt" must be an integer/);

  // The control notice: an action, no rid, nothing else.
  refusedByClient({ op: "control" }, /"action" must be one of "quiet", "stop"/);
  refusedByClient({ op: "control", action: "halt" }, /"action" must be one of/);
  refusedByClient({ op: "control", action: "quiet", rid: 1 }, /unknown field "rid"/);
  refusedByClient({ op: "control", action: "quiet", session: "1" }, /unknown field "session"/);
});
