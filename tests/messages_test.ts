/**
 * Tests of lib/wire/messages.ts: strict validation of every message a master
 * receives (hello, auth, put, get, ack, nack, extend, stats, ping) and every
 * message a client receives (ok, error, challenge, welcome): accepted shapes,
 * and refusal (ProtocolError "bad_request") of non-maps, missing or unknown
 * ops, unknown fields, wrong types, out-of-range numbers, bad queue names and
 * oversized batches.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  checkQueueName,
  MAX_BATCH,
  MAX_DURATION_MS,
  MAX_QUEUE_NAME_LENGTH,
  parseClientMessage,
  parseServerMessage,
} from "../lib/wire/messages.ts";
import { NONCE_BYTES, PROOF_BYTES } from "../lib/wire/auth.ts";
import { ProtocolError } from "../lib/errors.ts";
import { decode, encode } from "../lib/model/codec.ts";
import { Engine } from "../lib/engine/engine.ts";

const nonce = new Uint8Array(NONCE_BYTES).fill(1);
const proof = new Uint8Array(PROOF_BYTES).fill(2);

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
    { op: "put", rid: 1, queue: "q", items: [1], priority: 3 },
    /unknown field "priority"/,
  );
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
