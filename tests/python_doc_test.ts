/**
 * Keeps docs/PYTHON.md honest: its allow-list, default name mapping, queue
 * methods and limits are the ones in the code.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ALLOWED_GLOBALS, MAX_INT_BYTES } from "../lib/python/wire/pickle_reader.ts";
import { DEFAULT_PYTHON_QUEUES } from "../lib/python/frontend.ts";
import { QUEUE_METHODS } from "../lib/python/session.ts";
import { PY_HANDSHAKE_MAX_BYTES } from "../lib/python/wire/frame.ts";
import { MAX_VALUE_DEPTH } from "../lib/model/codec.ts";
import { DEFAULT_MAX_FRAME_BYTES } from "../lib/wire/frame.ts";
import { DEFAULT_MAX_ATTEMPTS } from "../lib/engine/engine.ts";
import { REPO_ROOT } from "./_helpers.ts";

const DOC = Deno.readTextFileSync(`${REPO_ROOT}docs/PYTHON.md`);

/** The text of the section under `heading`, up to the next heading of its level. */
function section(heading: string): string {
  const start = DOC.indexOf(`${heading}\n`);
  assert.ok(start >= 0, `docs/PYTHON.md has a section "${heading}"`);
  const level = heading.split(" ")[0];
  const end = DOC.indexOf(`\n${level} `, start + heading.length);
  return DOC.slice(start, end < 0 ? undefined : end);
}

Deno.test("the allow-list in docs/PYTHON.md is the reader's", () => {
  const table = section("## Safety").split("\n").filter((line) => line.startsWith("| `"));
  const documented = new Set(
    table.flatMap((line) => [...line.split("|")[1].matchAll(/`([\w.]+)`/g)].map((m) => m[1])),
  );
  assert.deepEqual([...documented].sort(), [...ALLOWED_GLOBALS].sort());
});

Deno.test("the default name mapping in docs/PYTHON.md is the front-end's", () => {
  const rows = section("### Which queue a registered name stands for").split("\n")
    .map((line) => /^\| `(\w+)`\s*\| `([\w.-]+)`/.exec(line)).filter((m) => m !== null);
  assert.deepEqual(
    Object.fromEntries(rows.map((m) => [m[1], m[2]])),
    DEFAULT_PYTHON_QUEUES,
  );
});

Deno.test("the queue methods in docs/PYTHON.md are the ones exposed", () => {
  const text = section("### What a Python worker can call");
  const first = text.split("\n\n")[1];
  const documented = [...first.matchAll(/`(\w+)\(/g)].map((m) => m[1]);
  assert.deepEqual(documented.sort(), [...QUEUE_METHODS].sort());
});

Deno.test("the limits in docs/PYTHON.md are the code's", () => {
  const safety = section("## Safety");
  assert.match(safety, new RegExp(`integers are limited to\\s+${MAX_INT_BYTES} bytes`));
  assert.match(safety, new RegExp(`at most ${MAX_VALUE_DEPTH} levels deep`));
  assert.match(safety, new RegExp(`${PY_HANDSHAKE_MAX_BYTES} bytes during the\\s+handshake`));
  assert.match(safety, new RegExp(`\\(${DEFAULT_MAX_FRAME_BYTES / 2 ** 20} MiB by default\\)`));
  assert.match(
    section("## A Python master, taskq workers"),
    new RegExp(`\\(default ${DEFAULT_MAX_ATTEMPTS}\\)`),
  );
});
