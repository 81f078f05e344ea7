/**
 * Regenerates the byte-level examples of docs/PROTOCOL.md with the real codec
 * (lib/wire/codec.ts) and the real HMAC code (lib/wire/auth.ts), using fixed
 * nonces and the key "abc".
 *
 * Each example lives in the document after a marker comment
 * `<!-- example:NAME:KIND -->` (KIND is `value`, `bytes` or `hmac`) followed by
 * a fenced `text` block; this script rewrites the contents of those blocks.
 *
 * ```sh
 * deno run --allow-env --allow-read --allow-write scripts/protocol_examples.ts  # rewrite
 * deno run --allow-env --allow-read scripts/protocol_examples.ts --check       # exit 1 if stale
 * ```
 *
 * tests/protocol_doc_test.ts checks the result independently of this script.
 *
 * @module
 */

import { encode } from "../lib/model/codec.ts";
import {
  CLIENT_LABEL,
  clientProof,
  PROTOCOL_VERSION,
  SERVER_LABEL,
  serverProof,
} from "../lib/wire/auth.ts";
import { DEFAULT_MAX_FRAME_BYTES, FRAME_HEADER_BYTES } from "../lib/wire/frame.ts";
import { DEFAULT_LEASE_MS } from "../lib/engine/engine.ts";

const DOC = new URL("../docs/PROTOCOL.md", import.meta.url);

/** The example key. */
const KEY_TEXT = "abc";
/** The example client nonce: bytes 0x00 to 0x1f. */
const CLIENT_NONCE = Uint8Array.from({ length: 32 }, (_, i) => i);
/** The example master nonce: bytes 0xa0 to 0xbf. */
const SERVER_NONCE = Uint8Array.from({ length: 32 }, (_, i) => 0xa0 + i);

const utf8 = new TextEncoder();
const KEY = utf8.encode(KEY_TEXT);
const CLIENT_PROOF = clientProof(KEY, CLIENT_NONCE, SERVER_NONCE);
const SERVER_PROOF = serverProof(KEY, CLIENT_NONCE, SERVER_NONCE);

/** The example's times: 2026-01-01 00:00:00 UTC, in ms since the epoch. */
const EXAMPLE_TIME = 1_767_225_600_000;

/** The example messages, in the order they cross the wire. */
const EXAMPLES: Array<{ name: string; direction: string; message: Record<string, unknown> }> = [
  {
    name: "hello",
    direction: "client → master",
    message: { op: "hello", version: PROTOCOL_VERSION, nonce: CLIENT_NONCE, name: "example" },
  },
  {
    name: "challenge",
    direction: "master → client",
    message: { op: "challenge", version: PROTOCOL_VERSION, nonce: SERVER_NONCE },
  },
  {
    name: "auth",
    direction: "client → master",
    message: { op: "auth", proof: CLIENT_PROOF },
  },
  {
    name: "welcome",
    direction: "master → client",
    message: {
      op: "welcome",
      proof: SERVER_PROOF,
      maxFrameBytes: DEFAULT_MAX_FRAME_BYTES,
      leaseMs: DEFAULT_LEASE_MS,
    },
  },
  {
    name: "put",
    direction: "client → master",
    message: { op: "put", rid: 1, queue: "tasks", items: [42] },
  },
  {
    name: "ok",
    direction: "master → client",
    message: { op: "ok", rid: 1, ids: [1] },
  },
  // Version 2, on the same connection: a second item, with a priority, a group and a key.
  {
    name: "put_v2",
    direction: "client → master",
    message: {
      op: "put",
      rid: 2,
      queue: "tasks",
      items: ["report 7", "report 7"],
      priority: 5,
      group: "acme",
      keys: ["report-7", "report-7"],
      keyHold: 60_000,
    },
  },
  {
    name: "put_v2_ok",
    direction: "master → client",
    message: { op: "ok", rid: 2, ids: [2, 2], existing: [1] },
  },
  {
    name: "get",
    direction: "client → master",
    message: { op: "get", rid: 3, queue: "tasks", max: 1, timeout: 0 },
  },
  {
    name: "get_ok",
    direction: "master → client",
    message: { op: "ok", rid: 3, jobs: [{ id: 2, attempt: 1, value: "report 7" }] },
  },
  {
    name: "progress",
    direction: "client → master",
    message: { op: "progress", rid: 4, id: 2, percent: 62.5, message: "page 5 of 8" },
  },
  {
    name: "progress_ok",
    direction: "master → client",
    message: { op: "ok", rid: 4, failed: [] },
  },
  {
    name: "job",
    direction: "client → master",
    message: { op: "job", rid: 5, id: 2 },
  },
  {
    name: "job_ok",
    direction: "master → client",
    message: {
      op: "ok",
      rid: 5,
      job: {
        id: 2,
        queue: "tasks",
        state: "leased",
        attempts: 1,
        priority: 5,
        createdAt: EXAMPLE_TIME,
        group: "acme",
        key: "report-7",
        value: "report 7",
        progress: { at: EXAMPLE_TIME + 480, percent: 62.5, message: "page 5 of 8" },
        leasedAt: EXAMPLE_TIME + 120,
        leaseExpiresAt: EXAMPLE_TIME + 480 + DEFAULT_LEASE_MS,
        holder: { session: "1", name: "example", address: "127.0.0.1:50412" },
      },
    },
  },
  {
    name: "limit",
    direction: "client → master",
    message: { op: "limit", rid: 6, queue: "tasks", rate: 50, concurrency: 4 },
  },
  {
    name: "limit_ok",
    direction: "master → client",
    message: {
      op: "ok",
      rid: 6,
      limits: {
        queue: "tasks",
        rateCount: 50,
        ratePeriodMs: 1_000,
        concurrency: 4,
        groupConcurrency: 0,
      },
    },
  },
  {
    name: "cancel",
    direction: "client → master",
    message: { op: "cancel", rid: 7, ids: [2, 99] },
  },
  {
    name: "cancelled",
    direction: "master → client",
    message: { op: "cancelled", ids: [2] },
  },
  {
    name: "cancel_ok",
    direction: "master → client",
    message: { op: "ok", rid: 7, cancelled: [2], failed: [99] },
  },
  // Version 3, on the same connection: item 1 (42) is still ready.
  {
    name: "items",
    direction: "client → master",
    message: { op: "items", rid: 8, queue: "tasks", state: "ready", limit: 10 },
  },
  {
    name: "items_ok",
    direction: "master → client",
    message: {
      op: "ok",
      rid: 8,
      items: [{
        id: 1,
        queue: "tasks",
        state: "ready",
        attempts: 0,
        priority: 0,
        createdAt: EXAMPLE_TIME,
        value: 42,
      }],
      total: 1,
    },
  },
  {
    name: "sessions",
    direction: "client → master",
    message: { op: "sessions", rid: 9 },
  },
  {
    name: "sessions_ok",
    direction: "master → client",
    message: {
      op: "ok",
      rid: 9,
      sessions: [{
        id: "1",
        name: "example",
        address: "127.0.0.1:50412",
        connectedAt: EXAMPLE_TIME - 20,
        lastSeenAt: EXAMPLE_TIME + 900,
        leased: 0,
        waiting: 0,
        holding: [],
      }],
    },
  },
  {
    name: "control",
    direction: "client → master",
    message: { op: "control", rid: 10, session: "1", action: "quiet" },
  },
  {
    name: "control_notice",
    direction: "master → client",
    message: { op: "control", action: "quiet" },
  },
  {
    name: "control_ok",
    direction: "master → client",
    message: { op: "ok", rid: 10, found: true },
  },
  {
    name: "drop",
    direction: "client → master",
    message: { op: "drop", rid: 11, queue: "tasks", ids: [1] },
  },
  {
    name: "drop_ok",
    direction: "master → client",
    message: { op: "ok", rid: 11, count: 1 },
  },
  {
    name: "purge",
    direction: "client → master",
    message: { op: "purge", rid: 12, queue: "tasks" },
  },
  {
    name: "purge_ok",
    direction: "master → client",
    message: { op: "ok", rid: 12, count: 0 },
  },
  {
    name: "requeue",
    direction: "client → master",
    message: { op: "requeue", rid: 13, queue: "tasks.dead", all: true },
  },
  {
    name: "requeue_ok",
    direction: "master → client",
    message: { op: "ok", rid: 13, ids: [] },
  },
];

const hex = (bytes: Uint8Array, sep = " ") =>
  [...bytes].map((b) => b.toString(16).padStart(2, "0")).join(sep);

// ------------------------------------------------------------ value notation

/** Writes a value as `{ key: value }` with `<bin HEX>` for binary data. */
function notation(value: unknown): string {
  if (value instanceof Uint8Array) return `<bin ${hex(value, "")}>`;
  if (Array.isArray(value)) return `[${value.map(notation).join(", ")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value).map(([k, v]) => `${k}: ${notation(v)}`);
    return `{ ${entries.join(", ")} }`;
  }
  return JSON.stringify(value);
}

/** Widest line of a value block. */
const VALUE_WIDTH = 78;

/**
 * A value in notation, on one line when it fits in {@link VALUE_WIDTH} after
 * `indent` spaces and `prefix` (and a trailing comma when nested); otherwise
 * one field (or element) per line, each formatted the same way.
 */
function formatValue(value: unknown, indent = 0, prefix = ""): string {
  const line = notation(value);
  const room = VALUE_WIDTH - indent - prefix.length - (indent > 0 ? 1 : 0);
  if (line.length <= room || value === null || typeof value !== "object") return line;
  if (value instanceof Uint8Array) return line;
  const inner = " ".repeat(indent + 2);
  const rows = Array.isArray(value)
    ? value.map((v) => `${inner}${formatValue(v, indent + 2)},`)
    : Object.entries(value).map(([k, v]) =>
      `${inner}${k}: ${formatValue(v, indent + 2, `${k}: `)},`
    );
  const [open, close] = Array.isArray(value) ? ["[", "]"] : ["{", "}"];
  return [open, ...rows, `${" ".repeat(indent)}${close}`].join("\n");
}

/** One field per line when the one-line form is too long (nested maps likewise). */
function formatMessage(message: Record<string, unknown>): string {
  return formatValue(message);
}

// ---------------------------------------------------------- annotated dumps

const BYTES_COLUMN = 48;
const BYTES_PER_LINE = 16;

class Dump {
  lines: string[] = [];
  add(bytes: Uint8Array, note: string): void {
    for (let i = 0; i < Math.max(bytes.length, 1); i += BYTES_PER_LINE) {
      const chunk = bytes.subarray(i, i + BYTES_PER_LINE);
      const text = i === 0 ? note : "";
      this.lines.push(`${hex(chunk).padEnd(BYTES_COLUMN)}| ${text}`.trimEnd());
    }
  }
}

/** Walks one msgpack value, adding a line per element; returns the offset after it. */
function walk(buf: Uint8Array, at: number, dump: Dump, indent: string, role: string): number {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const b = buf[at];
  const label = role ? `${role}: ` : "";
  const scalar = (size: number, what: string) => {
    dump.add(buf.subarray(at, at + size), `${indent}${label}${what}`);
    return at + size;
  };
  const str = (headerSize: number, length: number, kind: string) => {
    const text = new TextDecoder().decode(buf.subarray(at + headerSize, at + headerSize + length));
    const what = role === "key" ? `key ${JSON.stringify(text)}` : `${label}${JSON.stringify(text)}`;
    const unit = length === 1 ? "byte" : "bytes";
    dump.add(
      buf.subarray(at, at + headerSize + length),
      `${indent}${what} (${kind}, ${length} ${unit})`,
    );
    return at + headerSize + length;
  };
  const bin = (headerSize: number, length: number, kind: string) => {
    dump.add(buf.subarray(at, at + headerSize), `${indent}${label}${kind}, ${length} bytes:`);
    dump.add(buf.subarray(at + headerSize, at + headerSize + length), "");
    return at + headerSize + length;
  };
  const container = (
    headerSize: number,
    count: number,
    kind: "map" | "array",
    format: string,
  ) => {
    const plural = count === 1 ? "" : "s";
    const what = kind === "map" ? `${count} key/value pair${plural}` : `${count} element${plural}`;
    dump.add(buf.subarray(at, at + headerSize), `${indent}${label}${format}, ${what}`);
    let next = at + headerSize;
    for (let i = 0; i < count; i++) {
      if (kind === "map") {
        next = walk(buf, next, dump, indent + "  ", "key");
        next = walk(buf, next, dump, indent + "    ", "");
      } else {
        next = walk(buf, next, dump, indent + "  ", `[${i}]`);
      }
    }
    return next;
  };
  if (b <= 0x7f) return scalar(1, `${b} (positive fixint)`);
  if (b >= 0xe0) return scalar(1, `${b - 256} (negative fixint)`);
  if ((b & 0xf0) === 0x80) return container(1, b & 0x0f, "map", "fixmap");
  if ((b & 0xf0) === 0x90) return container(1, b & 0x0f, "array", "fixarray");
  if ((b & 0xe0) === 0xa0) return str(1, b & 0x1f, "fixstr");
  switch (b) {
    case 0xc0:
      return scalar(1, "nil");
    case 0xc2:
      return scalar(1, "false");
    case 0xc3:
      return scalar(1, "true");
    case 0xc4:
      return bin(2, buf[at + 1], "bin 8");
    case 0xc5:
      return bin(3, view.getUint16(at + 1), "bin 16");
    case 0xc6:
      return bin(5, view.getUint32(at + 1), "bin 32");
    case 0xca:
      return scalar(5, `${view.getFloat32(at + 1)} (float 32)`);
    case 0xcb:
      return scalar(9, `${view.getFloat64(at + 1)} (float 64)`);
    case 0xcc:
      return scalar(2, `${buf[at + 1]} (uint 8)`);
    case 0xcd:
      return scalar(3, `${view.getUint16(at + 1)} (uint 16)`);
    case 0xce:
      return scalar(5, `${view.getUint32(at + 1)} (uint 32)`);
    case 0xcf:
      return scalar(9, `${view.getBigUint64(at + 1)} (uint 64)`);
    case 0xd0:
      return scalar(2, `${view.getInt8(at + 1)} (int 8)`);
    case 0xd1:
      return scalar(3, `${view.getInt16(at + 1)} (int 16)`);
    case 0xd2:
      return scalar(5, `${view.getInt32(at + 1)} (int 32)`);
    case 0xd3:
      return scalar(9, `${view.getBigInt64(at + 1)} (int 64)`);
    case 0xd9:
      return str(2, buf[at + 1], "str 8");
    case 0xda:
      return str(3, view.getUint16(at + 1), "str 16");
    case 0xdb:
      return str(5, view.getUint32(at + 1), "str 32");
    case 0xdc:
      return container(3, view.getUint16(at + 1), "array", "array 16");
    case 0xdd:
      return container(5, view.getUint32(at + 1), "array", "array 32");
    case 0xde:
      return container(3, view.getUint16(at + 1), "map", "map 16");
    case 0xdf:
      return container(5, view.getUint32(at + 1), "map", "map 32");
  }
  throw new Error(
    `the example generator does not annotate msgpack byte 0x${hex(buf.subarray(at, at + 1))}`,
  );
}

/** The annotated dump of one whole frame: length prefix and payload. */
function frameDump(message: unknown, direction: string): string {
  const payload = encode(message);
  const header = new Uint8Array(FRAME_HEADER_BYTES);
  new DataView(header.buffer).setUint32(0, payload.length);
  const dump = new Dump();
  dump.add(
    header,
    `length prefix: ${payload.length}-byte payload follows (${direction})`,
  );
  const end = walk(payload, 0, dump, "", "");
  if (end !== payload.length) throw new Error("annotator lost its place");
  return dump.lines.join("\n");
}

/** The HMAC inputs and outputs of the example handshake. */
function hmacBlock(): string {
  const rows: Array<[string, string, string?]> = [
    ["key", hex(KEY, ""), `the UTF-8 bytes of ${JSON.stringify(KEY_TEXT)}`],
    ["client nonce", hex(CLIENT_NONCE, ""), "sent in hello"],
    ["server nonce", hex(SERVER_NONCE, ""), "sent in challenge"],
    ["client label", hex(utf8.encode(CLIENT_LABEL), ""), JSON.stringify(CLIENT_LABEL)],
    ["server label", hex(utf8.encode(SERVER_LABEL), ""), JSON.stringify(SERVER_LABEL)],
    [
      "client proof",
      hex(CLIENT_PROOF, ""),
      "HMAC-SHA256(key, client label ‖ client nonce ‖ server nonce)",
    ],
    [
      "server proof",
      hex(SERVER_PROOF, ""),
      "HMAC-SHA256(key, server label ‖ client nonce ‖ server nonce)",
    ],
  ];
  const lines: string[] = [];
  for (const [name, value, note] of rows) {
    lines.push(`${(name + ":").padEnd(14)}${value}`);
    if (note) lines.push(`${"".padEnd(14)}(${note})`);
  }
  return lines.join("\n");
}

/** Every generated block, by `NAME:KIND`. */
export function generatedBlocks(): Map<string, string> {
  const blocks = new Map<string, string>();
  for (const { name, direction, message } of EXAMPLES) {
    blocks.set(`${name}:value`, formatMessage(message));
    blocks.set(`${name}:bytes`, frameDump(message, direction));
  }
  blocks.set("handshake:hmac", hmacBlock());
  return blocks;
}

/** `doc` with every marked block replaced by its generated contents. */
export function rewrite(doc: string): string {
  const blocks = generatedBlocks();
  const seen = new Set<string>();
  const out = doc.replace(
    /(<!-- example:(\w+:\w+) -->\s*```text\n)[\s\S]*?(```)/g,
    (_all, open: string, id: string, close: string) => {
      const block = blocks.get(id);
      if (block === undefined) throw new Error(`unknown example block ${id}`);
      seen.add(id);
      return `${open}${block}\n${close}`;
    },
  );
  const missing = [...blocks.keys()].filter((id) => !seen.has(id));
  if (missing.length > 0) throw new Error(`document lacks example blocks: ${missing.join(", ")}`);
  return out;
}

if (import.meta.main) {
  const doc = await Deno.readTextFile(DOC);
  const updated = rewrite(doc);
  if (Deno.args.includes("--check")) {
    if (updated !== doc) {
      console.error("docs/PROTOCOL.md examples are stale: run scripts/protocol_examples.ts");
      Deno.exit(1);
    }
    console.log("docs/PROTOCOL.md examples are up to date");
  } else if (updated !== doc) {
    await Deno.writeTextFile(DOC, updated);
    console.log("docs/PROTOCOL.md examples rewritten");
  } else {
    console.log("docs/PROTOCOL.md examples already up to date");
  }
}
