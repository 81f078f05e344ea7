/**
 * Runs the broker conformance suite (tests/broker_conformance.ts), unchanged,
 * against the PostgreSQL broker (lib/broker/postgres/): a throwaway cluster
 * of our own for the whole file, and a fresh schema per opened broker (its
 * reopenings share it; it is dropped after the test), so every test starts
 * on empty data and the durability tests reopen the same data.
 *
 * The suite's memory budget (`maxMemoryBytes`) is the budget of bytes the
 * database may hold for the queues (`maxStoredBytes`): a database broker's
 * items live in its tables, not in the master's memory.
 *
 * Ignored, with the reason, when PostgreSQL's server binaries are missing.
 *
 * @module
 */

import postgres from "postgres";
import type { Broker } from "../lib/broker/broker.ts";
import { openPostgresBroker } from "../lib/broker/postgres/broker.ts";
import { DEFAULT_HISTORY_COUNT } from "../lib/model/jobs.ts";
import {
  brokerConformance,
  type BrokerFactory,
  type ConformanceOptions,
} from "./broker_conformance.ts";
import { type PgCluster, POSTGRES_MISSING, postgresAvailable, startPostgres } from "./_postgres.ts";

const available = postgresAvailable();
let cluster: PgCluster | undefined;
let schemas = 0;

/** The cluster, started on first use. */
async function database(): Promise<PgCluster> {
  cluster ??= await startPostgres();
  return cluster;
}

/** Opens a broker on `schema` with the suite's options. */
async function open(schema: string, options: ConformanceOptions): Promise<Broker> {
  const { maxMemoryBytes, ...rest } = options;
  return await openPostgresBroker({
    url: (await database()).url,
    schema,
    // The suite looks finished jobs up: keep them, as `--keep-jobs` does (none by default here).
    historyCount: DEFAULT_HISTORY_COUNT,
    ...rest,
    ...(maxMemoryBytes === undefined ? {} : { maxStoredBytes: maxMemoryBytes }),
    pollMs: 200,
    poolSize: 4,
  });
}

/** The factory: one schema per opened broker, shared by its reopenings. */
function postgresFactory(): BrokerFactory {
  const data = new Map<Broker, { schema: string; options: ConformanceOptions }>();
  return {
    name: "postgres broker",
    durable: true,
    async open(options) {
      const schema = `conformance_${Deno.pid}_${++schemas}`;
      const broker = await open(schema, options);
      data.set(broker, { schema, options });
      return broker;
    },
    async reopen(closed) {
      const entry = data.get(closed);
      if (entry === undefined) throw new Error("reopen: not a broker of this factory");
      const broker = await open(entry.schema, entry.options);
      data.set(broker, entry);
      return broker;
    },
    async cleanup(opened) {
      const entry = data.get(opened);
      if (entry === undefined) return;
      for (const [broker, other] of data) if (other === entry) data.delete(broker);
      const sql = postgres((await database()).url, { max: 1, onnotice: () => {} });
      try {
        await sql.unsafe(`DROP SCHEMA "${entry.schema}" CASCADE`);
      } finally {
        await sql.end();
      }
    },
  };
}

if (available) {
  brokerConformance(postgresFactory());
  Deno.test({
    name: "postgres broker: (the throwaway cluster stops)",
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => {
      await cluster?.destroy();
    },
  });
} else {
  Deno.test({ name: "postgres broker conformance", ignore: true, fn: () => {} });
  console.warn(`postgres broker conformance ignored: ${POSTGRES_MISSING}`);
}
