/**
 * Tests of lib/broker/postgres/arrays.ts: array literals built by hand must
 * mean, to a real PostgreSQL server, exactly the values they were built from
 * (quotes, backslashes, commas, braces, NULL, Unicode, empty strings, bytes
 * of every value), on a fresh connection as on a used one.
 *
 * @module
 */

import assert from "node:assert/strict";
import postgres from "postgres";
import { byteaArray, intArray, textArray } from "../lib/broker/postgres/arrays.ts";
import { POSTGRES_MISSING, postgresAvailable, startPostgres } from "./_postgres.ts";

const ignore = !postgresAvailable();
if (ignore) console.warn(`pg_arrays tests ignored: ${POSTGRES_MISSING}`);

Deno.test("intArray and textArray build literals without a server", () => {
  assert.equal(intArray([]), "{}");
  assert.equal(intArray([1, -2, 2 ** 40, 2.6]), "{1,-2,1099511627776,3}");
  assert.equal(textArray([]), "{}");
  assert.equal(textArray(["a", null, ""]), '{"a",NULL,""}');
  assert.equal(textArray(['q"\\']), '{"q\\"\\\\"}');
  assert.equal(byteaArray([new Uint8Array(0)]), '{"\\\\x"}');
});

Deno.test({
  name: "a real server reads the literals back as the values they came from",
  ignore,
  async fn() {
    const cluster = await startPostgres();
    // Fresh connections each time: the client's own array handling differs before its type lookup.
    const sql = postgres(cluster.url, { max: 4, onnotice: () => {} });
    try {
      const texts = [
        "plain",
        "",
        'with "quotes"',
        "back\\slash",
        "comma,brace{}",
        "NULL",
        " spaced ",
        "héllo ✓ 𝄞",
        "new\nline",
        null,
      ];
      const read = await sql.unsafe(
        "SELECT v, v IS NULL AS missing FROM unnest($1::text[]) WITH ORDINALITY AS u(v, o) ORDER BY o",
        [textArray(texts)],
      );
      assert.deepEqual(read.map((r) => r.missing ? null : r.v), texts);
      const ints = [0, 1, -1, 2 ** 53 - 1, -(2 ** 40)];
      const [n] = await sql.unsafe("SELECT $1::bigint[]::text[] AS v", [intArray(ints)]);
      assert.deepEqual(n.v, ints.map(String));
      const every = new Uint8Array(256).map((_, i) => i);
      const blobs = [every, new Uint8Array(0), every.subarray(250, 253)];
      const rows = await sql.unsafe(
        "SELECT encode(b, 'hex') AS hex FROM unnest($1::bytea[]) WITH ORDINALITY AS u(b, o) ORDER BY o",
        [byteaArray(blobs)],
      );
      const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
      assert.deepEqual(rows.map((r) => r.hex), blobs.map(hex));
      // Many statements at once on a growing pool: every one reads its arrays right.
      const results = await Promise.all(
        Array.from(
          { length: 20 },
          (_, i) =>
            sql.unsafe("SELECT cardinality($1::text[]) AS n, $2::bigint[] AS ids", [
              textArray(Array.from({ length: i + 1 }, (_, k) => `${i}.${k}`)),
              intArray([i, i + 1]),
            ]),
        ),
      );
      results.forEach(([row], i) => assert.equal(Number(row.n), i + 1));
    } finally {
      await sql.end();
      await cluster.destroy();
    }
  },
});
