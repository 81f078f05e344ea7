/**
 * Keeps docs/PROTOCOL.md honest.
 *
 * The document's worked example (§13) is a set of fenced blocks, each after a
 * marker comment `<!-- example:NAME:KIND -->`: `value` blocks give a message in
 * `{ field: value }` notation (`<bin HEX>` for binary), `bytes` blocks give the
 * frame as an annotated hex dump (bytes left of `|`), and the `handshake:hmac`
 * block gives the key, nonces, labels and proofs. These tests check that:
 *
 * - each documented frame is well framed, is standard msgpack (read by a small
 *   independent reader below, not by msgpackr), decodes with lib/wire/codec.ts
 *   to the documented message, is exactly what our encoder produces for it,
 *   and passes the reference validation of lib/wire/messages.ts;
 * - the documented proofs are what lib/wire/auth.ts computes for the documented
 *   key and nonces, and what plain WebCrypto HMAC-SHA256 gives for the
 *   documented 78-byte input, and the example frames carry those values;
 * - the frames our real client and master exchange (captured by a recording
 *   TCP proxy between `connect()` and `serve()`, for a handshake and a put of 42
 *   on "tasks") have exactly the documented structure: same keys, same msgpack
 *   type per field; the live proofs verify; the put and its reply are byte for
 *   byte the documented ones;
 * - the error-code table and the limits table match the code (one limits row,
 *   `maxQueueLength`, is checked against a default {@link Engine}'s value).
 *
 * @module
 */

import assert from "node:assert/strict";
import { decode, encode, MAX_VALUE_DEPTH } from "../lib/model/codec.ts";
import {
  CLIENT_LABEL,
  clientProof,
  NONCE_BYTES,
  PROOF_BYTES,
  PROTOCOL_VERSION,
  SERVER_LABEL,
  serverProof,
} from "../lib/wire/auth.ts";
import { DEFAULT_MAX_FRAME_BYTES, FRAME_HEADER_BYTES } from "../lib/wire/frame.ts";
import {
  MAX_ATTEMPTS_LIMIT,
  MAX_BATCH,
  MAX_CLIENT_NAME_LENGTH,
  MAX_DURATION_MS,
  MAX_FAILURE_TEXT,
  parseClientMessage,
  parseServerMessage,
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
  MAX_TAKE_BYTES,
} from "../lib/engine/engine.ts";
import { connect } from "../lib/client/client.ts";

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
const EXAMPLES = [
  { name: "hello", parse: parseClientMessage },
  { name: "challenge", parse: parseServerMessage },
  { name: "auth", parse: parseClientMessage },
  { name: "welcome", parse: parseServerMessage },
  { name: "put", parse: parseClientMessage },
  { name: "ok", parse: parseServerMessage },
] as const;

// -------------------------------------------------------------------- tests

Deno.test("documented example frames decode to the documented messages", async () => {
  const doc = await readDoc();
  for (const { name, parse } of EXAMPLES) {
    const payload = documentedPayload(doc, name);
    const message = parseNotation(block(doc, `${name}:value`)) as Record<string, unknown>;
    assert.equal(message.op, name, `${name}: the value block is another message`);
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

  // (c) Same keys and the same msgpack type for every field as the documented frames.
  for (const { name } of EXAMPLES) {
    const node = live.get(name) as Node;
    const documented = readMsgpack(documentedPayload(doc, name));
    assert.deepEqual(shape(node), shape(documented), `live ${name} differs from the document`);
    assert.equal((toValue(node) as Record<string, unknown>).op, name);
  }

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
  };
  const rows = tableAfter(doc.text, "<!-- limits -->");
  const seen = new Set<string>();
  for (const [limit, value, where] of rows) {
    const name = /`(\w+)`/.exec(where)?.[1];
    assert.ok(name !== undefined && name in constants, `unknown constant for "${limit}": ${where}`);
    const number = /^\d[\d ]*/.exec(value)?.[0].replaceAll(" ", "");
    assert.equal(Number(number), constants[name], `"${limit}" is documented as ${value}`);
    seen.add(name);
  }
  assert.deepEqual(
    [...seen].sort(),
    Object.keys(constants).sort(),
    "limits missing from the table",
  );
});
