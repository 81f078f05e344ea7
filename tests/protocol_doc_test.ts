/**
 * Keeps docs/PROTOCOL.md honest.
 *
 * The document's worked example (§13) is a set of fenced blocks, each after a
 * marker comment `<!-- example:NAME:KIND -->`: `value` blocks give a message in
 * `{ field: value }` notation (`<bin HEX>` for binary), `bytes` blocks give the
 * frame as an annotated hex dump (bytes left of `|`), and the `handshake:hmac`
 * block gives the key, nonces, labels and proofs. The example covers the
 * handshake and a put (§13.1–13.7) and every message version 2 added: a put
 * with priority, group and keys and its reply with `existing`, get, progress,
 * job (with a job information record), limit, cancel and the `cancelled`
 * notice (§13.8–13.13), and every message version 3 added: items, sessions,
 * control and the `control` notice, drop, purge and requeue (§13.14–13.19).
 * These tests check that:
 *
 * - each documented frame is well framed, is standard msgpack (read by a small
 *   independent reader below, not by msgpackr), decodes with lib/wire/codec.ts
 *   to the documented message, is exactly what our encoder produces for it,
 *   and passes the reference validation of lib/wire/messages.ts;
 * - the handshake example offers and agrees on {@link PROTOCOL_VERSION};
 * - the documented proofs are what lib/wire/auth.ts computes for the documented
 *   key and nonces, and what plain WebCrypto HMAC-SHA256 gives for the
 *   documented 78-byte input, and the example frames carry those values;
 * - the frames our real client and master exchange (captured by a recording
 *   TCP proxy between `connect()` and `serve()`, for a handshake and a put of 42
 *   on "tasks") have exactly the documented structure: same keys, same msgpack
 *   type per field; the live proofs verify; the put and its reply are byte for
 *   byte the documented ones;
 * - the requests of §13.6–13.19, sent in that order on a fresh master over a
 *   raw connection that opens with the documented `hello`, get exactly the
 *   documented frames back (the records' times and addresses aside);
 * - the version negotiation of §6.6 holds on a real master: `hello` version 1
 *   gets `challenge` 1 and version 2 and 3 requests and version 2 `put`
 *   fields are refused (`bad_request`), and such a connection gets no
 *   `cancelled` notice; 2 gets 2, its version 3 requests are refused and it
 *   gets no `control` notice; 3 gets 3; a newer version (7) gets 3; 0 gets
 *   `unsupported_version`;
 * - the error-code table and the limits table match the code (two limits rows
 *   are checked against behaviour instead of a constant: `maxQueueLength`
 *   against a default {@link Engine}, `ratePeriodMs` against
 *   {@link limitChanges}).
 *
 * @module
 */

import assert from "node:assert/strict";
import { decode, encode, MAX_VALUE_DEPTH } from "../lib/model/codec.ts";
import {
  CLIENT_LABEL,
  clientProof,
  MIN_PROTOCOL_VERSION,
  newNonce,
  NONCE_BYTES,
  PROOF_BYTES,
  PROTOCOL_VERSION,
  SERVER_LABEL,
  serverProof,
} from "../lib/wire/auth.ts";
import { DEFAULT_MAX_FRAME_BYTES, FRAME_HEADER_BYTES } from "../lib/wire/frame.ts";
import {
  DEFAULT_ITEMS_PAGE,
  MAX_ATTEMPTS_LIMIT,
  MAX_BATCH,
  MAX_CLIENT_NAME_LENGTH,
  MAX_DURATION_MS,
  MAX_FAILURE_TEXT,
  MAX_HELD_LISTED,
  MAX_ITEMS_PAGE,
  MAX_SESSION_TEXT,
  parseClientMessage,
  parseServerMessage,
  VERSION_2_OPS,
  VERSION_2_PUT_FIELDS,
  VERSION_3_OPS,
} from "../lib/wire/messages.ts";
import { MAX_QUEUE_NAME_LENGTH } from "../lib/model/queue_names.ts";
import {
  DEFAULT_HARD_LIMIT_BYTES,
  DEFAULT_HIGH_WATER_BYTES,
  SLOW_CONSUMER_MS,
} from "../lib/wire/connection.ts";
import { STATS_QUEUE_LIMIT } from "../lib/broker/broker.ts";
import { MAX_PENDING_REQUESTS } from "../lib/server/native_session.ts";
import { ERROR_CODES } from "../lib/errors.ts";
import {
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_MAX_PENDING_HANDSHAKES,
  HANDSHAKE_MAX_FRAME_BYTES,
  serve,
} from "../lib/server/master.ts";
import {
  DEFAULT_BACKOFF_BASE_MS,
  DEFAULT_BACKOFF_MAX_MS,
  DEFAULT_LEASE_MS,
  DEFAULT_MAX_ATTEMPTS,
  DEFAULT_MAX_QUEUES,
  Engine,
  IDLE_QUEUE_SWEEP_THRESHOLD,
  MAX_HISTORY_BYTES,
  MAX_TAKE_BYTES,
} from "../lib/engine/engine.ts";
import {
  DEFAULT_HISTORY_COUNT,
  DEFAULT_HISTORY_MS,
  DEFAULT_PRIORITY,
  MAX_CONCURRENCY,
  MAX_GROUP_LENGTH,
  MAX_HISTORY_VALUE_BYTES,
  MAX_KEY_LENGTH,
  MAX_PRIORITY,
  MAX_PROGRESS_MESSAGE,
  MAX_RATE_COUNT,
  MIN_PRIORITY,
  RATE_BURST_MS,
} from "../lib/model/jobs.ts";
import { limitChanges } from "../lib/wire/messages.ts";
import { connect } from "../lib/client/client.ts";
import { asError, frameOf, RawConn, show, TEST_KEY } from "./_helpers.ts";
import type { ServerMessage } from "../lib/wire/messages.ts";

const DOC_URL = new URL("../docs/PROTOCOL.md", import.meta.url);
const utf8 = new TextEncoder();

// ------------------------------------------------------------------ helpers

function fromHex(hex: string): Uint8Array<ArrayBuffer> {
  assert.match(hex, /^(?:[0-9a-f]{2})*$/, `not lowercase hex: ${hex}`);
  return Uint8Array.from(hex.match(/../g) ?? [], (pair) => parseInt(pair, 16));
}

/** Bytes as hex, for comparing byte strings whatever their class (msgpackr returns Buffers). */
function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
}

function concat(chunks: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

/** Splits a byte stream into frame payloads; the stream must end on a frame boundary. */
function splitFrames(stream: Uint8Array): Uint8Array[] {
  const view = new DataView(stream.buffer, stream.byteOffset, stream.byteLength);
  const frames: Uint8Array[] = [];
  let at = 0;
  while (at < stream.length) {
    assert.ok(stream.length - at >= FRAME_HEADER_BYTES, "stream ends inside a length prefix");
    const length = view.getUint32(at);
    const end = at + FRAME_HEADER_BYTES + length;
    assert.ok(end <= stream.length, "stream ends inside a frame");
    frames.push(stream.subarray(at + FRAME_HEADER_BYTES, end));
    at = end;
  }
  return frames;
}

// ------------------------------------------- an independent msgpack reader

/** A msgpack value with its wire type, as read by {@link readMsgpack}. */
type Node =
  | { type: "nil" | "bool" | "int" | "float" | "str" | "bin" | "timestamp"; value: unknown }
  | { type: "array"; items: Node[] }
  | { type: "map"; entries: Array<[string, Node]> };

/**
 * Reads exactly one msgpack value filling `bytes`, keeping each element's type
 * family. Written from the msgpack spec, independently of msgpackr, so that the
 * documented bytes are checked against the standard and not just against our
 * own codec. Map keys must be strings (as the protocol requires).
 */
function readMsgpack(bytes: Uint8Array): Node {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const take = (n: number): number => {
    assert.ok(at + n <= bytes.length, "truncated msgpack");
    const start = at;
    at += n;
    return start;
  };
  const str = (n: number): Node => {
    const start = take(n);
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(start, at));
    return { type: "str", value: text };
  };
  const bin = (n: number): Node => {
    const start = take(n);
    return { type: "bin", value: bytes.slice(start, at) };
  };
  const array = (n: number): Node => {
    const items: Node[] = [];
    for (let i = 0; i < n; i++) items.push(read());
    return { type: "array", items };
  };
  const map = (n: number): Node => {
    const entries: Array<[string, Node]> = [];
    for (let i = 0; i < n; i++) {
      const key = read();
      assert.equal(key.type, "str", "map keys must be strings");
      entries.push([(key as { value: string }).value, read()]);
    }
    return { type: "map", entries };
  };
  const ext = (n: number): Node => {
    const type = view.getInt8(take(1));
    assert.equal(type, -1, `only the timestamp extension (-1) is plain data, not ${type}`);
    const start = take(n);
    let ms: number;
    if (n === 4) ms = view.getUint32(start) * 1000;
    else if (n === 8) {
      const hi = view.getUint32(start);
      ms = (hi >>> 2) / 1e6 + ((hi & 3) * 2 ** 32 + view.getUint32(start + 4)) * 1000;
    } else {
      assert.equal(n, 12, "timestamps are 4, 8 or 12 bytes");
      ms = view.getUint32(start) / 1e6 + Number(view.getBigInt64(start + 4)) * 1000;
    }
    return { type: "timestamp", value: new Date(ms) };
  };
  const read = (): Node => {
    const b = bytes[take(1)];
    if (b <= 0x7f) return { type: "int", value: b };
    if (b >= 0xe0) return { type: "int", value: b - 256 };
    if ((b & 0xf0) === 0x80) return map(b & 0x0f);
    if ((b & 0xf0) === 0x90) return array(b & 0x0f);
    if ((b & 0xe0) === 0xa0) return str(b & 0x1f);
    switch (b) {
      case 0xc0:
        return { type: "nil", value: null };
      case 0xc2:
        return { type: "bool", value: false };
      case 0xc3:
        return { type: "bool", value: true };
      case 0xc4:
        return bin(view.getUint8(take(1)));
      case 0xc5:
        return bin(view.getUint16(take(2)));
      case 0xc6:
        return bin(view.getUint32(take(4)));
      case 0xc7:
        return ext(view.getUint8(take(1)));
      case 0xc8:
        return ext(view.getUint16(take(2)));
      case 0xc9:
        return ext(view.getUint32(take(4)));
      case 0xca:
        return { type: "float", value: view.getFloat32(take(4)) };
      case 0xcb:
        return { type: "float", value: view.getFloat64(take(8)) };
      case 0xcc:
        return { type: "int", value: view.getUint8(take(1)) };
      case 0xcd:
        return { type: "int", value: view.getUint16(take(2)) };
      case 0xce:
        return { type: "int", value: view.getUint32(take(4)) };
      case 0xcf:
        return { type: "int", value: Number(view.getBigUint64(take(8))) };
      case 0xd0:
        return { type: "int", value: view.getInt8(take(1)) };
      case 0xd1:
        return { type: "int", value: view.getInt16(take(2)) };
      case 0xd2:
        return { type: "int", value: view.getInt32(take(4)) };
      case 0xd3:
        return { type: "int", value: Number(view.getBigInt64(take(8))) };
      case 0xd4:
        return ext(1);
      case 0xd5:
        return ext(2);
      case 0xd6:
        return ext(4);
      case 0xd7:
        return ext(8);
      case 0xd8:
        return ext(16);
      case 0xd9:
        return str(view.getUint8(take(1)));
      case 0xda:
        return str(view.getUint16(take(2)));
      case 0xdb:
        return str(view.getUint32(take(4)));
      case 0xdc:
        return array(view.getUint16(take(2)));
      case 0xdd:
        return array(view.getUint32(take(4)));
      case 0xde:
        return map(view.getUint16(take(2)));
      case 0xdf:
        return map(view.getUint32(take(4)));
    }
    assert.fail(`byte 0x${b.toString(16)} is not valid msgpack (0xc1 is reserved)`);
  };
  const node = read();
  assert.equal(at, bytes.length, "trailing bytes after the msgpack value");
  return node;
}

/** The plain value of a node. */
function toValue(node: Node): unknown {
  if (node.type === "array") return node.items.map(toValue);
  if (node.type === "map") return Object.fromEntries(node.entries.map(([k, v]) => [k, toValue(v)]));
  return node.value;
}

/** The structure of a node: maps of keys to shapes, arrays of shapes, type names for scalars. */
function shape(node: Node): unknown {
  if (node.type === "array") return node.items.map(shape);
  if (node.type === "map") return Object.fromEntries(node.entries.map(([k, v]) => [k, shape(v)]));
  return node.type;
}

/** Asserts two nodes have the same shape, map keys in the same order included. */
function assertSameShape(actual: Node, expected: Node, what: string): void {
  const text = (node: Node) => JSON.stringify(shape(node));
  assert.equal(text(actual), text(expected), `${what} differs from the document`);
}

// ------------------------------------------------------- reading the document

interface Documented {
  /** Every marked block's contents, by `NAME:KIND`. */
  blocks: Map<string, string>;
  /** The whole text. */
  text: string;
}

async function readDoc(): Promise<Documented> {
  const text = await Deno.readTextFile(DOC_URL);
  const blocks = new Map<string, string>();
  for (const match of text.matchAll(/<!-- example:(\w+:\w+) -->\s*```text\r?\n([\s\S]*?)```/g)) {
    assert.ok(!blocks.has(match[1]), `example block ${match[1]} appears twice`);
    blocks.set(match[1], match[2]);
  }
  return { blocks, text };
}

function block(doc: Documented, id: string): string {
  const text = doc.blocks.get(id);
  assert.ok(text !== undefined, `docs/PROTOCOL.md has no example block <!-- example:${id} -->`);
  return text;
}

/** The bytes of an annotated hex dump: everything left of `|` on each line. */
function parseDump(text: string): Uint8Array {
  const bytes: number[] = [];
  for (const line of text.split("\n")) {
    const hexPart = line.split("|")[0].trim();
    if (hexPart === "") continue;
    for (const token of hexPart.split(/\s+/)) {
      assert.match(token, /^[0-9a-f]{2}$/, `bad byte "${token}" in hex dump line: ${line}`);
      bytes.push(parseInt(token, 16));
    }
  }
  return Uint8Array.from(bytes);
}

/** A value in the document's `{ field: value }` notation, with `<bin HEX>` for binary. */
function parseNotation(text: string): unknown {
  const json = text
    .replace(/<bin ([0-9a-f]*)>/g, (_all, hex: string) => JSON.stringify({ $bin: hex }))
    .replace(
      /([{,]\s*)([A-Za-z_]\w*)\s*:/g,
      (_all, before: string, key: string) => `${before}"${key}":`,
    )
    .replace(/,(\s*[}\]])/g, "$1");
  return JSON.parse(
    json,
    (_key, value) =>
      value !== null && typeof value === "object" && typeof value.$bin === "string"
        ? fromHex(value.$bin)
        : value,
  );
}

/** The payload of a documented frame, after checking its length prefix. */
function documentedPayload(doc: Documented, name: string): Uint8Array {
  const frame = parseDump(block(doc, `${name}:bytes`));
  assert.ok(frame.length > FRAME_HEADER_BYTES, `${name}: frame too short`);
  const length = new DataView(frame.buffer).getUint32(0);
  assert.equal(length, frame.length - FRAME_HEADER_BYTES, `${name}: length prefix is wrong`);
  return frame.subarray(FRAME_HEADER_BYTES);
}

/** The named values of the `handshake:hmac` block (`name: HEX` lines). */
function hmacValues(doc: Documented): Map<string, Uint8Array<ArrayBuffer>> {
  const values = new Map<string, Uint8Array<ArrayBuffer>>();
  for (const line of block(doc, "handshake:hmac").split("\n")) {
    const match = /^([a-z][a-z ]*):\s+([0-9a-f]+)\s*$/.exec(line);
    if (match) values.set(match[1], fromHex(match[2]));
  }
  return values;
}

function hmacValue(
  values: Map<string, Uint8Array<ArrayBuffer>>,
  name: string,
): Uint8Array<ArrayBuffer> {
  const value = values.get(name);
  assert.ok(value !== undefined, `the handshake:hmac block lacks "${name}"`);
  return value;
}

/** The cells of the table that follows `marker`, header and separator rows excluded. */
function tableAfter(text: string, marker: string): string[][] {
  const at = text.indexOf(marker);
  assert.ok(at >= 0, `docs/PROTOCOL.md lacks ${marker}`);
  const lines = text.slice(at + marker.length).split("\n").map((l) => l.trim());
  let i = 0;
  while (lines[i] === "") i++;
  const rows: string[][] = [];
  for (; i < lines.length && lines[i].startsWith("|"); i++) {
    rows.push(lines[i].slice(1, -1).split("|").map((cell) => cell.trim()));
  }
  assert.ok(rows.length > 2, `no table after ${marker}`);
  return rows.slice(2);
}

/** Which side sends each documented example, and how the receiver validates it. */
const CLIENT = parseClientMessage;
const MASTER = parseServerMessage;

/** Every documented example: its block name, its `op`, and the receiver's validation. */
const EXAMPLES = [
  { name: "hello", op: "hello", parse: CLIENT },
  { name: "challenge", op: "challenge", parse: MASTER },
  { name: "auth", op: "auth", parse: CLIENT },
  { name: "welcome", op: "welcome", parse: MASTER },
  { name: "put", op: "put", parse: CLIENT },
  { name: "ok", op: "ok", parse: MASTER },
  { name: "put_v2", op: "put", parse: CLIENT },
  { name: "put_v2_ok", op: "ok", parse: MASTER },
  { name: "get", op: "get", parse: CLIENT },
  { name: "get_ok", op: "ok", parse: MASTER },
  { name: "progress", op: "progress", parse: CLIENT },
  { name: "progress_ok", op: "ok", parse: MASTER },
  { name: "job", op: "job", parse: CLIENT },
  { name: "job_ok", op: "ok", parse: MASTER },
  { name: "limit", op: "limit", parse: CLIENT },
  { name: "limit_ok", op: "ok", parse: MASTER },
  { name: "cancel", op: "cancel", parse: CLIENT },
  { name: "cancelled", op: "cancelled", parse: MASTER },
  { name: "cancel_ok", op: "ok", parse: MASTER },
  { name: "items", op: "items", parse: CLIENT },
  { name: "items_ok", op: "ok", parse: MASTER },
  { name: "sessions", op: "sessions", parse: CLIENT },
  { name: "sessions_ok", op: "ok", parse: MASTER },
  { name: "control", op: "control", parse: CLIENT },
  { name: "control_notice", op: "control", parse: MASTER },
  { name: "control_ok", op: "ok", parse: MASTER },
  { name: "drop", op: "drop", parse: CLIENT },
  { name: "drop_ok", op: "ok", parse: MASTER },
  { name: "purge", op: "purge", parse: CLIENT },
  { name: "purge_ok", op: "ok", parse: MASTER },
  { name: "requeue", op: "requeue", parse: CLIENT },
  { name: "requeue_ok", op: "ok", parse: MASTER },
] as const;

/** The examples of the live handshake test: the opening and one put (§13.2–13.7). */
const HANDSHAKE_EXAMPLES = ["hello", "challenge", "auth", "welcome", "put", "ok"] as const;

/**
 * The requests of §13.6–13.19 in the order they are sent, each with the
 * documented frames the master answers it with, in order.
 */
const SESSION: ReadonlyArray<{ request: string; answers: readonly string[] }> = [
  { request: "put", answers: ["ok"] },
  { request: "put_v2", answers: ["put_v2_ok"] },
  { request: "get", answers: ["get_ok"] },
  { request: "progress", answers: ["progress_ok"] },
  { request: "job", answers: ["job_ok"] },
  { request: "limit", answers: ["limit_ok"] },
  { request: "cancel", answers: ["cancelled", "cancel_ok"] },
  { request: "items", answers: ["items_ok"] },
  { request: "sessions", answers: ["sessions_ok"] },
  { request: "control", answers: ["control_notice", "control_ok"] },
  { request: "drop", answers: ["drop_ok"] },
  { request: "purge", answers: ["purge_ok"] },
  { request: "requeue", answers: ["requeue_ok"] },
];

// -------------------------------------------------------------------- tests

Deno.test("documented example frames decode to the documented messages", async () => {
  const doc = await readDoc();
  const documented = new Set([...doc.blocks.keys()].map((id) => id.split(":")[0]));
  documented.delete("handshake");
  assert.deepEqual(
    [...documented].sort(),
    EXAMPLES.map((e) => e.name).sort(),
    "every documented example is checked here",
  );
  for (const { name, op, parse } of EXAMPLES) {
    const payload = documentedPayload(doc, name);
    const message = parseNotation(block(doc, `${name}:value`)) as Record<string, unknown>;
    assert.equal(message.op, op, `${name}: the value block is another message`);
    // Standard msgpack, read without msgpackr.
    assert.deepEqual(toValue(readMsgpack(payload)), message, `${name}: bytes ≠ value`);
    // Our codec reads it the same way and writes exactly these bytes.
    assert.deepEqual(decode(payload), message, `${name}: codec decodes something else`);
    assert.equal(hex(encode(message)), hex(payload), `${name}: codec encodes other bytes`);
    // And the receiving side's validation accepts it unchanged.
    assert.deepEqual(parse(decode(payload)), message, `${name}: refused by validation`);
  }
});

Deno.test("documented proofs are the HMAC-SHA256 values lib/wire/auth.ts computes", async () => {
  const doc = await readDoc();
  const values = hmacValues(doc);
  const key = hmacValue(values, "key");
  const cn = hmacValue(values, "client nonce");
  const sn = hmacValue(values, "server nonce");
  const documentedClientProof = hmacValue(values, "client proof");
  const documentedServerProof = hmacValue(values, "server proof");

  assert.deepEqual(key, utf8.encode("abc"));
  assert.equal(cn.length, NONCE_BYTES);
  assert.equal(sn.length, NONCE_BYTES);
  assert.deepEqual(hmacValue(values, "client label"), utf8.encode(CLIENT_LABEL));
  assert.deepEqual(hmacValue(values, "server label"), utf8.encode(SERVER_LABEL));
  assert.equal(CLIENT_LABEL, "taskq/1 client");
  assert.equal(SERVER_LABEL, "taskq/1 server");

  assert.equal(hex(clientProof(key, cn, sn)), hex(documentedClientProof));
  assert.equal(hex(serverProof(key, cn, sn)), hex(documentedServerProof));

  // The documented construction, computed with WebCrypto instead of auth.ts:
  // HMAC-SHA256(key, label ‖ clientNonce ‖ serverNonce), a 78-byte message.
  const hmacKey = await crypto.subtle.importKey(
    "raw",
    key,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  for (
    const [label, documented] of [
      [CLIENT_LABEL, documentedClientProof],
      [SERVER_LABEL, documentedServerProof],
    ] as const
  ) {
    const input = concat([utf8.encode(label), cn, sn]);
    assert.equal(input.length, 78);
    const mac = new Uint8Array(await crypto.subtle.sign("HMAC", hmacKey, input));
    assert.equal(hex(mac), hex(documented), `proof with label "${label}"`);
    assert.equal(mac.length, PROOF_BYTES);
  }

  // The example frames carry exactly these values.
  const frame = (name: string) => decode(documentedPayload(doc, name)) as Record<string, unknown>;
  assert.deepEqual(frame("hello").nonce, cn);
  assert.equal(frame("hello").version, PROTOCOL_VERSION);
  assert.deepEqual(frame("challenge").nonce, sn);
  assert.equal(frame("challenge").version, PROTOCOL_VERSION);
  assert.deepEqual(frame("auth").proof, documentedClientProof);
  assert.deepEqual(frame("welcome").proof, documentedServerProof);
});

/** What a recording proxy saw in each direction. */
interface Recording {
  toMaster: Uint8Array[];
  toClient: Uint8Array[];
}

/** Copies `from` to `to`, keeping a copy of every chunk, until `from` ends. */
async function relay(from: Deno.Conn, to: Deno.Conn, chunks: Uint8Array[]): Promise<void> {
  const buf = new Uint8Array(64 * 1024);
  try {
    for (;;) {
      const n = await from.read(buf);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
      for (let offset = 0; offset < n;) offset += await to.write(buf.subarray(offset, n));
    }
  } catch {
    // reset by a peer: the recording ends here
  }
  try {
    await to.closeWrite();
  } catch {
    // the other side is gone already
  }
}

Deno.test("live handshake and put frames have the documented structure", async () => {
  const doc = await readDoc();
  const key = "abc";
  const master = await serve({ listen: "127.0.0.1:0", authkey: utf8.encode(key) });
  const proxy = Deno.listen({ hostname: "127.0.0.1", port: 0, transport: "tcp" });
  const recording: Recording = { toMaster: [], toClient: [] };
  const proxied = (async () => {
    const down = await proxy.accept();
    const up = await Deno.connect({
      hostname: master.address.hostname,
      port: master.address.port,
    });
    await Promise.all([
      relay(down, up, recording.toMaster),
      relay(up, down, recording.toClient),
    ]);
    down.close();
    up.close();
  })();
  try {
    const client = await connect({
      address: { hostname: "127.0.0.1", port: proxy.addr.port },
      authkey: key,
      name: "example",
    });
    try {
      assert.equal(await client.queue("tasks").put(42), 1);
    } finally {
      await client.close();
    }
    await proxied;
  } finally {
    proxy.close();
    await master.close();
  }

  const sent = splitFrames(concat(recording.toMaster)).map(readMsgpack);
  const received = splitFrames(concat(recording.toClient)).map(readMsgpack);
  assert.equal(sent.length, 3, "the client sends hello, auth, put");
  assert.equal(received.length, 3, "the master sends challenge, welcome, ok");
  const live = new Map<string, Node>([
    ["hello", sent[0]],
    ["auth", sent[1]],
    ["put", sent[2]],
    ["challenge", received[0]],
    ["welcome", received[1]],
    ["ok", received[2]],
  ]);

  // (c) Same keys, in the same order, and the same msgpack type for every field as the
  // documented frames.
  for (const name of HANDSHAKE_EXAMPLES) {
    const node = live.get(name) as Node;
    const documented = readMsgpack(documentedPayload(doc, name));
    assertSameShape(node, documented, `live ${name}`);
    assert.equal((toValue(node) as Record<string, unknown>).op, name);
  }
  // The client offers the newest version, and the master agrees to it.
  assert.equal(
    (toValue(live.get("hello") as Node) as { version: number }).version,
    PROTOCOL_VERSION,
  );
  assert.equal(
    (toValue(live.get("challenge") as Node) as { version: number }).version,
    PROTOCOL_VERSION,
  );

  // The live proofs follow the documented construction for the live nonces.
  const value = (name: string) => toValue(live.get(name) as Node) as Record<string, Uint8Array>;
  const cn = value("hello").nonce;
  const sn = value("challenge").nonce;
  assert.equal(cn.length, NONCE_BYTES);
  assert.equal(sn.length, NONCE_BYTES);
  assert.notDeepEqual(cn, sn);
  assert.equal(hex(value("auth").proof), hex(clientProof(utf8.encode(key), cn, sn)));
  assert.equal(hex(value("welcome").proof), hex(serverProof(utf8.encode(key), cn, sn)));
  assert.deepEqual(toValue(live.get("welcome") as Node), {
    ...value("welcome"),
    maxFrameBytes: DEFAULT_MAX_FRAME_BYTES,
    leaseMs: DEFAULT_LEASE_MS,
  });

  // Nothing random in the put and its reply: they are the documented bytes exactly.
  const frames = [
    ...splitFrames(concat(recording.toMaster)),
    ...splitFrames(concat(recording.toClient)),
  ];
  assert.equal(hex(frames[2]), hex(documentedPayload(doc, "put")));
  assert.equal(hex(frames[5]), hex(documentedPayload(doc, "ok")));
});

// ------------------------------------------------- raw connections to a master

/** Longest wait for one frame from a master, in ms. */
const FRAME_TIMEOUT_MS = 5_000;

/** Bytes read from the socket at most at once. */
const READ_CHUNK_BYTES = 64 * 1024;

/**
 * A raw TCP connection to a master that keeps the exact bytes of every frame
 * it receives (tests/_helpers.ts's RawConn keeps them decoded).
 */
class ByteConn implements AsyncDisposable {
  readonly #conn: Deno.TcpConn;
  #buffered: Uint8Array = new Uint8Array(0);

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }

  /** Connects to a master. */
  static async open(address: { hostname: string; port: number }): Promise<ByteConn> {
    return new ByteConn(await Deno.connect({ hostname: address.hostname, port: address.port }));
  }

  /** This end's port, as the master sees it. */
  get localPort(): number {
    return this.#conn.localAddr.port;
  }

  /** Writes all of `bytes`. */
  async write(bytes: Uint8Array): Promise<void> {
    for (let offset = 0; offset < bytes.length;) {
      offset += await this.#conn.write(bytes.subarray(offset));
    }
  }

  /** Sends `message` as one frame. */
  send(message: unknown): Promise<void> {
    return this.write(frameOf(encode(message)));
  }

  /**
   * The payload of the next frame from the master.
   * @throws {Error} when the connection ends or no frame comes in time.
   */
  async frame(): Promise<Uint8Array> {
    const deadline = Date.now() + FRAME_TIMEOUT_MS;
    for (;;) {
      const buffered = this.#buffered;
      if (buffered.length >= FRAME_HEADER_BYTES) {
        const length = new DataView(buffered.buffer, buffered.byteOffset).getUint32(0);
        const end = FRAME_HEADER_BYTES + length;
        if (buffered.length >= end) {
          this.#buffered = buffered.slice(end);
          return buffered.slice(FRAME_HEADER_BYTES, end);
        }
      }
      const chunk = new Uint8Array(READ_CHUNK_BYTES);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error("no frame from the master in time")),
          Math.max(0, deadline - Date.now()),
        );
      });
      const n = await Promise.race([this.#conn.read(chunk), late]).finally(() =>
        clearTimeout(timer)
      );
      if (n === null) throw new Error("the master closed the connection");
      this.#buffered = concat([buffered, chunk.subarray(0, n)]);
    }
  }

  /** The next frame, decoded and validated as a client validates it. */
  async message(): Promise<ServerMessage> {
    return parseServerMessage(decode(await this.frame()));
  }

  /** Closes the connection. */
  close(): void {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}

/** What the `job` reply of §13.11 may differ in from run to run; asserts the rest is documented. */
function assertDocumentedJobReply(live: Uint8Array, documented: Uint8Array, port: number): void {
  assertSameShape(readMsgpack(live), readMsgpack(documented), "live job reply");
  type Reply = { op: string; rid: number; job: Record<string, unknown> };
  type Times = { createdAt: number; leasedAt: number; leaseExpiresAt: number };
  type Progress = { at: number; percent: number; message: string };
  type Holder = { session: string; name: string; address: string };
  const split = (reply: Reply) => {
    const { createdAt, leasedAt, leaseExpiresAt, progress, holder, ...rest } = reply.job;
    const times = { createdAt, leasedAt, leaseExpiresAt } as Times;
    return {
      rest: { ...reply, job: rest },
      times,
      progress: progress as Progress,
      holder: holder as Holder,
    };
  };
  const got = split(toValue(readMsgpack(live)) as Reply);
  const want = split(toValue(readMsgpack(documented)) as Reply);
  assert.deepEqual(got.rest, want.rest, "the job record's fixed fields");
  assert.deepEqual({ ...got.progress, at: 0 }, { ...want.progress, at: 0 }, "its progress");
  assert.deepEqual({ ...got.holder, address: "" }, { ...want.holder, address: "" }, "its holder");
  assert.equal(got.holder.address, `127.0.0.1:${port}`, "the holder's address is the client's");
  // The times are those of this run, in the order the document's are, the lease renewed by the
  // progress report to run the default lease from it.
  for (const { times, progress } of [got, want]) {
    assert.ok(times.createdAt <= times.leasedAt, "put before leased");
    assert.ok(times.leasedAt <= progress.at, "leased before the progress report");
    assert.equal(times.leaseExpiresAt, progress.at + DEFAULT_LEASE_MS);
  }
  assert.ok(Math.abs(got.times.createdAt - Date.now()) < 60_000, "createdAt is now, in ms");
}

/**
 * Asserts that a live reply is the documented one but for the fields at
 * `varying` (paths of map keys and array indexes), which differ from run to
 * run: it has the documented shape (keys in order, msgpack types), and equals
 * the documented value once those fields are blanked in both. Resolves with
 * the live value.
 */
function assertDocumentedBut(
  live: Uint8Array,
  documented: Uint8Array,
  varying: readonly (readonly (string | number)[])[],
  what: string,
): Record<string, unknown> {
  assertSameShape(readMsgpack(live), readMsgpack(documented), what);
  const blank = (value: unknown) => {
    const copy = structuredClone(value) as Record<string | number, unknown>;
    for (const path of varying) {
      let at = copy;
      for (const key of path.slice(0, -1)) at = at[key] as Record<string | number, unknown>;
      at[path[path.length - 1]] = "(varies)";
    }
    return copy;
  };
  const got = toValue(readMsgpack(live));
  assert.deepEqual(blank(got), blank(toValue(readMsgpack(documented))), what);
  return got as Record<string, unknown>;
}

/** The checks of the live replies whose records hold times and addresses (§13.14, §13.15). */
const VARYING_REPLIES: Readonly<
  Record<string, (live: Uint8Array, documented: Uint8Array, port: number) => void>
> = {
  items_ok(live, documented) {
    const reply = assertDocumentedBut(live, documented, [["items", 0, "createdAt"]], "items");
    const [item] = reply.items as { createdAt: number }[];
    assert.ok(Math.abs(item.createdAt - Date.now()) < 60_000, "createdAt is now, in ms");
  },
  sessions_ok(live, documented, port) {
    const varying = ["address", "connectedAt", "lastSeenAt"].map((key) => ["sessions", 0, key]);
    const reply = assertDocumentedBut(live, documented, varying, "sessions");
    const [session] = reply.sessions as { address: string; connectedAt: number }[];
    assert.equal(session.address, `127.0.0.1:${port}`, "the session's address is the client's");
    assert.ok(Math.abs(session.connectedAt - Date.now()) < 60_000, "connectedAt is now, in ms");
  },
};

Deno.test("the documented session replays byte for byte on a live master", async () => {
  const doc = await readDoc();
  const key = utf8.encode("abc");
  const master = await serve({ listen: "127.0.0.1:0", authkey: key });
  try {
    await using conn = await ByteConn.open(master.address);
    // The documented hello, byte for byte (its nonce is fixed: the master does not mind).
    await conn.write(parseDump(block(doc, "hello:bytes")));
    const challenge = readMsgpack(await conn.frame());
    assertSameShape(challenge, readMsgpack(documentedPayload(doc, "challenge")), "live challenge");
    const { version, nonce: sn } = toValue(challenge) as { version: number; nonce: Uint8Array };
    assert.equal(version, PROTOCOL_VERSION, "the master agrees to the offered version");
    const cn = (decode(documentedPayload(doc, "hello")) as { nonce: Uint8Array }).nonce;
    await conn.send({ op: "auth", proof: clientProof(key, cn, sn) });
    assert.deepEqual(toValue(readMsgpack(await conn.frame())), {
      op: "welcome",
      proof: serverProof(key, cn, sn),
      maxFrameBytes: DEFAULT_MAX_FRAME_BYTES,
      leaseMs: DEFAULT_LEASE_MS,
    });

    for (const { request, answers } of SESSION) {
      await conn.write(parseDump(block(doc, `${request}:bytes`)));
      for (const answer of answers) {
        const live = await conn.frame();
        const documented = documentedPayload(doc, answer);
        const varying = VARYING_REPLIES[answer];
        if (answer === "job_ok") assertDocumentedJobReply(live, documented, conn.localPort);
        else if (varying !== undefined) varying(live, documented, conn.localPort);
        else assert.equal(hex(live), hex(documented), `answer to ${request}: ${answer}`);
      }
    }

    // What §13.13 says follows: the cancelled item's settling fails, and it is found cancelled.
    await conn.send({ op: "ack", rid: 14, ids: [2] });
    assert.deepEqual(await conn.message(), { op: "ok", rid: 14, failed: [2] });
    await conn.send({ op: "job", rid: 15, id: 2 });
    const after = await conn.message();
    assert.ok(after.op === "ok" && after.job !== undefined, show(after));
    assert.equal(after.job.state, "cancelled");
    assert.equal(typeof after.job.finishedAt, "number");
    // Its key stays taken for the put's keyHold after it finished (§10.11).
    await conn.send({ op: "put", rid: 16, queue: "tasks", items: [0], keys: ["report-7"] });
    assert.deepEqual(await conn.message(), { op: "ok", rid: 16, ids: [2], existing: [0] });
    // What §13.16 says: the session asked to go quiet is recorded so, and still served.
    await conn.send({ op: "sessions", rid: 17 });
    const listed = await conn.message();
    assert.ok(listed.op === "ok" && listed.sessions?.length === 1, show(listed));
    assert.equal(listed.sessions[0].controlled, "quiet");
  } finally {
    await master.close();
  }
});

/** The first answer of a master to a `hello` offering `version`, on a new raw connection. */
async function offer(
  address: { hostname: string; port: number },
  version: number,
): Promise<{ raw: RawConn; nonce: Uint8Array; answer: ServerMessage }> {
  const raw = await RawConn.open(`${address.hostname}:${address.port}`);
  const nonce = newNonce();
  await raw.send({ op: "hello", version, nonce, name: `offers version ${version}` });
  return { raw, nonce, answer: parseServerMessage(await raw.next()) };
}

/**
 * A raw connection that offered `version` and completed the handshake (the
 * proofs are those of every version); returns it with the agreed version.
 */
async function session(
  address: { hostname: string; port: number },
  version: number,
): Promise<{ raw: RawConn; agreed: number }> {
  const { raw, nonce, answer } = await offer(address, version);
  try {
    assert.ok(answer.op === "challenge", `a challenge for version ${version}: ${show(answer)}`);
    const key = utf8.encode(TEST_KEY);
    await raw.send({ op: "auth", proof: clientProof(key, nonce, answer.nonce) });
    const welcome = parseServerMessage(await raw.next());
    assert.ok(welcome.op === "welcome", show(welcome));
    assert.equal(hex(welcome.proof), hex(serverProof(key, nonce, answer.nonce)));
    return { raw, agreed: answer.version };
  } catch (error) {
    await raw.close();
    throw error;
  }
}

/** A valid request of each version 3 op. */
const VERSION_3_REQUESTS: Record<string, Record<string, unknown>> = {
  items: { op: "items", rid: 5, queue: "q", state: "ready" },
  requeue: { op: "requeue", rid: 5, queue: "q.dead", all: true },
  drop: { op: "drop", rid: 5, queue: "q", ids: [1] },
  purge: { op: "purge", rid: 5, queue: "q" },
  sessions: { op: "sessions", rid: 5 },
  control: { op: "control", rid: 5, session: "1", action: "quiet" },
};

/** A valid request of each version 2 op, and of each version 2 `put` field. */
const VERSION_2_REQUESTS: Record<string, Record<string, unknown>> = {
  cancel: { op: "cancel", rid: 5, ids: [1] },
  job: { op: "job", rid: 5, id: 1 },
  limit: { op: "limit", rid: 5, queue: "q" },
  progress: { op: "progress", rid: 5, id: 1, percent: 1 },
  priority: { op: "put", rid: 5, queue: "q", items: [1], priority: 1 },
  group: { op: "put", rid: 5, queue: "q", items: [1], group: "g" },
  keys: { op: "put", rid: 5, queue: "q", items: [1], keys: ["k"] },
  keyHold: { op: "put", rid: 5, queue: "q", items: [1], keys: ["k"], keyHold: 1 },
};

Deno.test("the master negotiates versions as §6.6 says", async () => {
  const master = await serve({ listen: "127.0.0.1:0", authkey: TEST_KEY });
  const address = master.address;
  try {
    // Every version-2 op and put field is covered below.
    assert.deepEqual(
      Object.keys(VERSION_2_REQUESTS).sort(),
      [...VERSION_2_OPS, ...VERSION_2_PUT_FIELDS].sort(),
    );
    for (const request of Object.values(VERSION_2_REQUESTS)) parseClientMessage(request);

    // Version 0 is below the oldest the master speaks.
    {
      const { raw, answer } = await offer(address, 0);
      await using _ = raw;
      const error = asError(answer, "unsupported_version");
      assert.equal(error.rid, undefined);
      assert.deepEqual(await raw.closedByPeer(), [], "the master closes after the error");
    }

    // Every version-3 op is covered below.
    assert.deepEqual(Object.keys(VERSION_3_REQUESTS).sort(), [...VERSION_3_OPS].sort());
    for (const request of Object.values(VERSION_3_REQUESTS)) parseClientMessage(request);

    // Version 1: agreed; version 1 requests work; each version 2 request or field is refused.
    {
      const { raw, agreed } = await session(address, MIN_PROTOCOL_VERSION);
      await using _ = raw;
      assert.equal(agreed, 1);
      await raw.send({ op: "put", rid: 1, queue: "q", items: ["v1"] });
      assert.deepEqual(await raw.next(), { op: "ok", rid: 1, ids: [1] });
    }
    for (const [what, request] of Object.entries(VERSION_2_REQUESTS)) {
      const { raw, agreed } = await session(address, 1);
      await using _ = raw;
      assert.equal(agreed, 1);
      await raw.send(request);
      const error = asError(await raw.next(), "bad_request");
      assert.equal(error.rid, 5, `the refusal of ${what} names its request`);
      assert.match(error.message, /version 2/, what);
      assert.deepEqual(await raw.closedByPeer(), [], `the master closes after refusing ${what}`);
    }

    // Versions 1 and 2 refuse each version 3 request, naming version 3.
    for (const offered of [1, 2]) {
      for (const [what, request] of Object.entries(VERSION_3_REQUESTS)) {
        const { raw, agreed } = await session(address, offered);
        await using _ = raw;
        assert.equal(agreed, offered);
        await raw.send(request);
        const error = asError(await raw.next(), "bad_request");
        assert.equal(error.rid, 5, `the refusal of ${what} names its request`);
        assert.match(
          error.message,
          new RegExp(`needs protocol version 3.*version ${offered}`),
          what,
        );
        assert.deepEqual(await raw.closedByPeer(), [], `the master closes after refusing ${what}`);
      }
    }

    // Version 2, and any newer version, speaks the version 2 requests.
    for (const offered of [2, 3, 7, Number.MAX_SAFE_INTEGER]) {
      const { raw, agreed } = await session(address, offered);
      await using _ = raw;
      assert.equal(agreed, Math.min(offered, PROTOCOL_VERSION), `offering ${offered}`);
      await raw.send({ op: "job", rid: 1, id: 12345 });
      assert.deepEqual(await raw.next(), { op: "ok", rid: 1 }, "no such item: no job field");
      await raw.send({ op: "limit", rid: 2, queue: "q" });
      assert.deepEqual(await raw.next(), {
        op: "ok",
        rid: 2,
        limits: {
          queue: "q",
          rateCount: 0,
          ratePeriodMs: 1000,
          concurrency: 0,
          groupConcurrency: 0,
        },
      });
    }

    // A version 1 holder gets no `cancelled` notice; it learns of the cancel when it settles.
    {
      const holder = await session(address, 1);
      await using _holder = holder.raw;
      const other = await session(address, 2);
      await using _other = other.raw;
      await holder.raw.send({ op: "put", rid: 1, queue: "held", items: ["x"] });
      const put = await holder.raw.next() as { ids: number[] };
      const [id] = put.ids;
      await holder.raw.send({ op: "get", rid: 2, queue: "held", max: 1, timeout: 0 });
      assert.deepEqual(await holder.raw.next(), {
        op: "ok",
        rid: 2,
        jobs: [{ id, attempt: 1, value: "x" }],
      });
      await other.raw.send({ op: "cancel", rid: 1, ids: [id] });
      assert.deepEqual(await other.raw.next(), { op: "ok", rid: 1, cancelled: [id], failed: [] });
      // A notice would have been written before the cancel's reply, so before this ping's.
      await holder.raw.send({ op: "ping", rid: 3 });
      assert.deepEqual(await holder.raw.next(), { op: "ok", rid: 3 }, "no notice first");
      await holder.raw.send({ op: "ack", rid: 4, ids: [id] });
      assert.deepEqual(await holder.raw.next(), { op: "ok", rid: 4, failed: [id] });
    }

    // Version 3, and any newer version, agrees on 3; version 3 requests work.
    for (const offered of [3, 7, Number.MAX_SAFE_INTEGER]) {
      const { raw, agreed } = await session(address, offered);
      await using _ = raw;
      assert.equal(agreed, 3, `offering ${offered}`);
      await raw.send({ op: "items", rid: 1, queue: "empty", state: "delayed" });
      assert.deepEqual(await raw.next(), { op: "ok", rid: 1, items: [], total: 0 });
      await raw.send({ op: "control", rid: 2, session: "no-such-session", action: "stop" });
      assert.deepEqual(await raw.next(), { op: "ok", rid: 2, found: false });
    }

    // A version 2 session gets no `control` notice; a version 3 one does.
    for (const offered of [2, 3]) {
      const target = await session(address, offered);
      await using _target = target.raw;
      const admin = await session(address, 3);
      await using _admin = admin.raw;
      await admin.raw.send({ op: "sessions", rid: 1 });
      const listed = parseServerMessage(await admin.raw.next());
      assert.ok(listed.op === "ok" && listed.sessions !== undefined, show(listed));
      // The target's session is the one at its address.
      const where = `127.0.0.1:${target.raw.conn.localAddr.port}`;
      const id = listed.sessions.find((s) => s.address === where)?.id;
      assert.ok(id !== undefined, show(listed));
      await admin.raw.send({ op: "control", rid: 2, session: id, action: "quiet" });
      assert.deepEqual(await admin.raw.next(), { op: "ok", rid: 2, found: true });
      // A notice would have been written before the control's reply, so before this ping's.
      await target.raw.send({ op: "ping", rid: 3 });
      assert.deepEqual(
        await target.raw.next(),
        offered === 3 ? { op: "control", action: "quiet" } : { op: "ok", rid: 3 },
        `a version ${offered} session`,
      );
    }
  } finally {
    await master.close();
  }
});

Deno.test("documented error codes are exactly the wire error codes", async () => {
  const doc = await readDoc();
  const codes = tableAfter(doc.text, "<!-- error-codes -->").map((row) => {
    const match = /^`([a-z_]+)`$/.exec(row[0]);
    assert.ok(match, `bad error-code cell: ${row[0]}`);
    return match[1];
  });
  assert.deepEqual(new Set(codes), ERROR_CODES);
  assert.equal(codes.length, ERROR_CODES.size, "an error code is listed twice");
});

Deno.test("documented limits and defaults match the code", async () => {
  const doc = await readDoc();
  const constants: Record<string, number> = {
    PROTOCOL_VERSION,
    MIN_PROTOCOL_VERSION,
    NONCE_BYTES,
    PROOF_BYTES,
    FRAME_HEADER_BYTES,
    DEFAULT_MAX_FRAME_BYTES,
    HANDSHAKE_MAX_FRAME_BYTES,
    DEFAULT_HIGH_WATER_BYTES,
    MAX_PENDING_REQUESTS,
    MAX_VALUE_DEPTH,
    DEFAULT_HANDSHAKE_TIMEOUT_MS,
    DEFAULT_MAX_PENDING_HANDSHAKES,
    MAX_BATCH,
    MAX_DURATION_MS,
    MAX_QUEUE_NAME_LENGTH,
    MAX_CLIENT_NAME_LENGTH,
    MAX_FAILURE_TEXT,
    MAX_ATTEMPTS_LIMIT,
    DEFAULT_LEASE_MS,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_BACKOFF_BASE_MS,
    DEFAULT_BACKOFF_MAX_MS,
    // Not a named constant: the engine's default when no maximum is given.
    maxQueueLength: new Engine().maxQueueLength,
    DEFAULT_HARD_LIMIT_BYTES,
    SLOW_CONSUMER_MS,
    MAX_TAKE_BYTES,
    STATS_QUEUE_LIMIT,
    DEFAULT_MAX_QUEUES,
    IDLE_QUEUE_SWEEP_THRESHOLD,
    MIN_PRIORITY,
    MAX_PRIORITY,
    DEFAULT_PRIORITY,
    MAX_KEY_LENGTH,
    MAX_GROUP_LENGTH,
    MAX_PROGRESS_MESSAGE,
    MAX_RATE_COUNT,
    MAX_CONCURRENCY,
    // Not a named constant: the period a `limit` with `rate` alone sets.
    ratePeriodMs: limitChanges({ op: "limit", rid: 0, queue: "q", rate: 1 }).ratePeriodMs ?? NaN,
    RATE_BURST_MS,
    DEFAULT_HISTORY_COUNT,
    DEFAULT_HISTORY_MS,
    MAX_HISTORY_BYTES,
    MAX_HISTORY_VALUE_BYTES,
    DEFAULT_ITEMS_PAGE,
    MAX_ITEMS_PAGE,
    MAX_HELD_LISTED,
    MAX_SESSION_TEXT,
  };
  const rows = tableAfter(doc.text, "<!-- limits -->");
  const seen = new Set<string>();
  for (const [limit, value, where] of rows) {
    const name = /`(\w+)`/.exec(where)?.[1];
    assert.ok(name !== undefined && name in constants, `unknown constant for "${limit}": ${where}`);
    // Numbers are written with spaces between thousands, and a minus sign (U+2212) when negative.
    const number = /^[−-]?\d[\d ]*/.exec(value)?.[0].replaceAll(" ", "").replace("−", "-");
    assert.equal(Number(number), constants[name], `"${limit}" is documented as ${value}`);
    seen.add(name);
  }
  assert.deepEqual(
    [...seen].sort(),
    Object.keys(constants).sort(),
    "limits missing from the table",
  );
});
