/**
 * A PostgreSQL master's record of a session's leases stays bounded: a client
 * that takes items and never settles them (a crashed handler, a hostile
 * peer) does not grow the master. Leases that ran out long ago are
 * forgotten once the record grows (their acks would be refused by the
 * database anyway); live ones are kept.
 *
 * Ignored, saying why, when PostgreSQL's server binaries are missing.
 *
 * @module
 */

import assert from "node:assert/strict";
import { openPostgresBroker } from "../lib/broker/postgres/broker.ts";
import type { BrokerSession } from "../lib/broker/broker.ts";
import { POSTGRES_MISSING, postgresAvailable, startPostgres } from "./_postgres.ts";

const available = postgresAvailable();
if (!available) console.warn(`postgres lease tests ignored: ${POSTGRES_MISSING}`);

/** The session's own record of its leases (an internal field, read to check its size). */
function record(session: BrokerSession): Map<number, unknown> {
  return (session as unknown as { leases: Map<number, unknown> }).leases;
}

/** Takes `count` items of `queue` with leases of `leaseMs`, settling none; returns their ids. */
async function takeAll(
  session: BrokerSession,
  queue: string,
  count: number,
  leaseMs: number,
): Promise<number[]> {
  const ids: number[] = [];
  while (ids.length < count) {
    const got = await session.get(queue, { max: 1_000, timeoutMs: 5_000, leaseMs });
    assert.ok(got.length > 0, `items of ${queue} arrive (${ids.length} of ${count} so far)`);
    for (const item of got) ids.push(item.id);
  }
  return ids;
}

Deno.test({
  name: "a session that never settles leaves a bounded record of its leases",
  ignore: !available,
  async fn() {
    const cluster = await startPostgres();
    const broker = await openPostgresBroker({ url: cluster.url, schema: "leases" });
    try {
      const producer = await broker.open({ name: "producer", address: "" });
      const taker = await broker.open({ name: "never settles", address: "" });
      for (let i = 0; i < 5_000; i += 1_000) {
        await producer.put("old", Array.from({ length: 1_000 }, (_, k) => i + k));
      }
      const old = await takeAll(taker, "old", 5_000, 500);
      assert.equal(record(taker).size, 5_000, "every lease handed out is recorded");
      // Past the grace (5 s) after those leases ran out (0.5 s), new ones push the record over
      // its threshold, and the old ones go.
      await new Promise((resolve) => setTimeout(resolve, 6_000));
      for (let i = 0; i < 9_000; i += 1_000) {
        await producer.put("new", Array.from({ length: 1_000 }, (_, k) => i + k));
      }
      const fresh = await takeAll(taker, "new", 9_000, 60_000);
      const leases = record(taker);
      assert.ok(
        leases.size <= 9_000,
        `the record holds ${leases.size} leases, at most the 9,000 live`,
      );
      assert.ok(
        old.every((id) => !leases.has(id)),
        "the leases that ran out long ago are forgotten",
      );
      assert.ok(fresh.slice(-100).every((id) => leases.has(id)), "live leases are kept");
      // The live leases still settle.
      assert.deepEqual(await taker.ack(fresh.slice(-10)), [], "a live lease is acked");
    } finally {
      await broker.close();
      await cluster.destroy();
    }
  },
});
