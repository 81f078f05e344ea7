/**
 * The throwaway PostgreSQL helper (tests/_postgres.ts) itself: a cluster
 * starts, answers a query through the npm `postgres` client, survives a fast
 * stop and a start on the same port and data, and is destroyed (twice, which
 * is allowed). Ignored, saying why, when the server binaries are missing.
 *
 * @module
 */

import assert from "node:assert/strict";
import postgres from "postgres";
import { POSTGRES_MISSING, postgresAvailable, startPostgres } from "./_postgres.ts";

const available = postgresAvailable();
if (!available) console.log(`SKIPPED PostgreSQL tests: ${POSTGRES_MISSING}`);

/** Connects to `url`, runs `select 1` and a row written earlier, and closes. */
async function query(url: string): Promise<{ one: number; marks: string[] }> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql<{ one: number }[]>`select 1 as one`;
    await sql`create table if not exists marks (mark text not null)`;
    await sql`insert into marks values ('before restart')`;
    const marks = await sql<{ mark: string }[]>`select mark from marks order by mark`;
    return { one: row.one, marks: marks.map((m) => m.mark) };
  } finally {
    await sql.end();
  }
}

Deno.test({
  name: available
    ? "a throwaway PostgreSQL cluster answers, stops fast, starts again and is destroyed"
    : `a throwaway PostgreSQL cluster answers (SKIPPED: ${POSTGRES_MISSING})`,
  ignore: !available,
  fn: async () => {
    const cluster = await startPostgres();
    try {
      assert.equal(cluster.url, `postgres://taskq@127.0.0.1:${cluster.port}/taskq`);
      assert.deepEqual(await query(cluster.url), { one: 1, marks: ["before restart"] });

      await cluster.stop();
      await assert.rejects(
        Deno.connect({ hostname: "127.0.0.1", port: cluster.port }).then((conn) => conn.close()),
        "nothing listens once the server is stopped",
      );

      await cluster.start();
      // Same port, same data: the row written before the restart is still there.
      assert.deepEqual(await query(cluster.url), {
        one: 1,
        marks: ["before restart", "before restart"],
      });
    } finally {
      await cluster.destroy();
      await cluster.destroy();
    }
    await assert.rejects(Deno.stat(cluster.dataDir), Deno.errors.NotFound);
  },
});
