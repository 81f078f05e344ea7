/**
 * Names peers give are shown safely:
 *
 * - `printable` (lib/util/printable.ts) turns C0 and C1 controls, DEL, ESC
 *   sequences and bidi overrides into visible escapes, keeps other text, and
 *   is idempotent; `printableJson` keeps JSON parseable to the same value;
 * - a Python `accept_connection` name is cut to the native limit (200
 *   characters, never splitting a character) and escaped, so an 8 MiB name
 *   reaches neither the broker nor `/api/state` whole; a native `hello` name
 *   is escaped too;
 * - `taskq status` (its tables, and `--json`) never prints a raw control
 *   character, even when the master it reads hands it one; end to end with a
 *   real master, `taskq status --http` shows hostile names as escapes.
 *
 * @module
 */

import assert from "node:assert/strict";
import { printable, printableJson } from "../lib/util/printable.ts";
import { clientName } from "../lib/python/session.ts";
import { clientsTable, renderSnapshot, statusTable } from "../lib/cli/status.ts";
import { serve } from "../lib/server/master.ts";
import { pythonFrontEnd } from "../lib/python/frontend.ts";
import { PythonManagerClient } from "../lib/python/client.ts";
import { takeState } from "../lib/http/state.ts";
import { RateTracker } from "../lib/http/rates.ts";
import { MAX_CLIENT_NAME_LENGTH } from "../lib/wire/messages.ts";
import { connect } from "../lib/mod.ts";
import { MASTER_PERMISSIONS, runTaskq, startMaster, TEST_KEY, waitFor } from "./_helpers.ts";
import { PYTHON_LISTENING } from "./_python.ts";

/** Any character a terminal may act on: C0, DEL, C1, and the bidi and line-separator controls. */
const RAW_CONTROL =
  // deno-lint-ignore no-control-regex
  /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/;

/** A name meant to recolour, retitle and clear a terminal, with an 8-bit CSI and a bidi override. */
const HOSTILE = "evil\x1b[31m\x1b]0;owned\x07\x1b[2J\u009b1m\u202etxt.exe\r\n\x00end";

/** Bytes in 8 MiB. */
const EIGHT_MIB = 8 * 1024 * 1024;

const HTTP_LINE = /^taskq http listening on (\S+)$/;

Deno.test("printable: controls become visible escapes, other text stays", () => {
  assert.equal(
    printable(HOSTILE),
    "evil\\x1b[31m\\x1b]0;owned\\x07\\x1b[2J\\x9b1m\\u202etxt.exe\\r\\n\\x00end",
  );
  assert.equal(printable("héllo wörld ✓ 日本 🙂 back\\slash"), "héllo wörld ✓ 日本 🙂 back\\slash");
  assert.equal(printable("\x7f\u0085\u2028\u2066"), "\\x7f\\x85\\u2028\\u2066");
  for (let code = 0; code < 0x3000; code++) {
    const char = String.fromCharCode(code);
    assert.doesNotMatch(printable(char), RAW_CONTROL, `U+${code.toString(16)}`);
    assert.equal(printable(printable(char)), printable(char), "idempotent");
  }
});

Deno.test("printableJson: escapes what JSON.stringify leaves raw, same value", () => {
  const value = { name: HOSTILE, list: ["\u0085", "\u202e", "plain"] };
  const text = printableJson(JSON.stringify(value));
  assert.doesNotMatch(text, RAW_CONTROL);
  assert.deepEqual(JSON.parse(text), value);
});

Deno.test("clientName: cut to the native limit without splitting a character, then escaped", () => {
  assert.equal(clientName("x".repeat(EIGHT_MIB)).length, MAX_CLIENT_NAME_LENGTH);
  const emoji = "a" + "🙂".repeat(150); // a surrogate pair would be split at 200
  const cut = clientName(emoji);
  assert.equal(cut.length, MAX_CLIENT_NAME_LENGTH - 1);
  assert.ok(cut.endsWith("🙂"));
  assert.equal(clientName("MainThread"), "MainThread");
  assert.equal(clientName("\x1b[2J"), "\\x1b[2J");
});

Deno.test("status: the tables and the JSON never print a raw control character", () => {
  const now = Date.now();
  const worker = {
    id: "1",
    name: HOSTILE,
    address: "127.0.0.1:1\x1b[K",
    held: 0,
    connectedAt: now,
    lastSeenAt: now,
  };
  const table = clientsTable([worker], now);
  assert.doesNotMatch(table, RAW_CONTROL);
  assert.match(table, /^evil\\x1b\[31m\\x1b\]0;owned\\x07/m);
  const row = {
    name: "q\x1b[1m",
    ready: 0,
    leased: 0,
    delayed: 0,
    deadLetters: 0,
    waiting: 0,
    put: 0,
    acked: 0,
    nacked: 0,
    expired: 0,
    failed: 0,
    dead: 0,
  };
  assert.doesNotMatch(statusTable([row], 1), RAW_CONTROL);
  const text = renderSnapshot({ now, queues: [row], clients: 1, workers: [worker] });
  assert.doesNotMatch(text, RAW_CONTROL);
});

Deno.test("python: an 8 MiB accept_connection name is cut and escaped before anyone sees it", async () => {
  const master = await serve({
    listen: "127.0.0.1:0",
    authkey: TEST_KEY,
    frontEnds: [pythonFrontEnd({ listen: "127.0.0.1:0" })],
  });
  try {
    const manager = new PythonManagerClient({
      address: master.frontEnds[0].address,
      authkey: TEST_KEY,
    });
    const huge = await manager.openCalls(HOSTILE + "x".repeat(EIGHT_MIB));
    const hostile = await manager.openCalls(HOSTILE);
    const native = await connect({ address: master.address, authkey: TEST_KEY, name: HOSTILE });
    try {
      // The broker session opens at the first put.
      await huge.call("tasks", "put", ["a"]);
      await hostile.call("tasks", "put", ["b"]);
      const sessions = await master.broker.sessions();
      const names = sessions.map((s) => s.name);
      assert.equal(names.length, 3, names.join("\n"));
      for (const name of names) {
        assert.doesNotMatch(name, RAW_CONTROL);
        assert.ok(name.length < 400, `${name.length} characters`);
      }
      assert.ok(names.includes(printable(HOSTILE)), "the native hello name, escaped");
      assert.ok(names.some((n) => n.endsWith(` ${printable(HOSTILE)}`)), "the Python one");
      const rates = new RateTracker();
      const state = await takeState(master, rates, Date.now());
      assert.doesNotMatch(JSON.stringify(state.workers), RAW_CONTROL);
      assert.ok(state.workers.every((w) => w.name.length < 400));
    } finally {
      huge.close();
      hostile.close();
      await native.close();
    }
  } finally {
    await master.close();
  }
});

Deno.test("taskq status --http shows hostile names as escapes, in the table and in JSON", async () => {
  await using master = await startMaster({
    args: ["--http", "127.0.0.1:0", "--python", "127.0.0.1:0"],
  });
  const base = (await master.proc.waitForLine(HTTP_LINE))[1];
  const python = (await master.proc.waitForLine(PYTHON_LISTENING))[1];
  const host = new URL(base).host;
  const manager = new PythonManagerClient({ address: python, authkey: TEST_KEY });
  const calls = await manager.openCalls(HOSTILE + "y".repeat(EIGHT_MIB));
  const native = await connect({ address: master.address, authkey: TEST_KEY, name: HOSTILE });
  try {
    await calls.call("tasks", "put", ["a"]);
    const status = (args: string[]) =>
      runTaskq(["status", "--http", host, ...args], {
        key: TEST_KEY,
        permissions: MASTER_PERMISSIONS,
      });
    await waitFor("both clients", async () => (await status(["--json"])).stdout.includes("yyy"));
    const table = await status([]);
    assert.equal(table.code, 0, table.stderr);
    assert.doesNotMatch(table.stdout, RAW_CONTROL);
    assert.match(table.stdout, /^evil\\x1b\[31m\\x1b\]0;owned\\x07\\x1b\[2J\\x9b1m\\u202etxt/m);
    assert.ok(table.stdout.length < 10_000, `${table.stdout.length} characters`);
    const json = await status(["--json"]);
    assert.doesNotMatch(json.stdout, RAW_CONTROL);
    const names = JSON.parse(json.stdout).workers.map((w: { name: string }) => w.name);
    assert.ok(names.includes(printable(HOSTILE)), names.join("\n"));
  } finally {
    calls.close();
    await native.close();
  }
});
