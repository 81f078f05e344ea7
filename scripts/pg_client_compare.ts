/**
 * Which npm PostgreSQL client is faster on a job queue's hot path under Deno:
 * `postgres` (postgres.js) or `pg` (node-postgres)?
 *
 * One throwaway cluster (tests/_postgres.ts) with fsync on, as production would
 * run it. For each client, on a fresh `jobs` table:
 *
 * - **insert**: 100,000 rows in batches of 500, one
 *   `INSERT ... SELECT ... FROM unnest($1::bytea[])` per batch, one after
 *   another on one connection;
 * - **consume**: 4 consumer loops, each on a connection of its own, claim 100
 *   rows per statement (`FOR UPDATE SKIP LOCKED`, setting `owner`) and then
 *   delete them by id, until the queue is empty.
 *
 * Every statement is prepared (postgres: `sql.unsafe(text, params,
 * { prepare: true })`; pg: a named query config) and runs in its own
 * transaction, so each is one commit and one WAL flush, as a queue's would be.
 *
 * Prints one line per client per phase, the ratio of the two clients, and how
 * each returns `bigint` and `bytea` columns. Rounds alternate which client
 * goes first. `--fsync-off` runs the cluster without fsync, which leaves
 * mostly the clients' own cost.
 *
 * ```sh
 * deno run -A scripts/pg_client_compare.ts [--rounds N] [--fsync-off]
 * ```
 *
 * @module
 */

// deno-lint-ignore-file no-import-prefix -- pg is pinned here, not in deno.json: only this script uses it

import { Buffer } from "node:buffer";
import process from "node:process";
import { parseArgs } from "node:util";
import postgres from "postgres";
// @ts-types="npm:@types/pg@8.23.1"
import pg from "npm:pg@8.23.1";
import { startPostgres } from "../tests/_postgres.ts";

/** The two clients' names, as {@link Client.name} gives them. */
const POSTGRES_JS = "postgres@3.4.9";
const NODE_POSTGRES = "pg@8.23.1";

/** Rows inserted per client per round. */
const TOTAL_ROWS = 100_000;

/** Rows per INSERT statement. */
const INSERT_BATCH_ROWS = 500;

/** Concurrent consumer loops, each on its own connection. */
const CONSUMERS = 4;

/** Rows claimed per claim statement. */
const CLAIM_ROWS = 100;

/** Size of each job's payload, in bytes (a small msgpack'd task). */
const VALUE_BYTES = 128;

/** Each payload byte is this much more than the one before it (mod 256): every byte value occurs. */
const PAYLOAD_STEP = 7;

/** The queue every job goes to. */
const QUEUE = "tasks";

/** Rounds by default; each round runs both clients, the first one alternating. */
const DEFAULT_ROUNDS = 2;

const SCHEMA = [
  "DROP TABLE IF EXISTS jobs",
  `CREATE TABLE jobs (
    id bigserial PRIMARY KEY,
    queue text NOT NULL,
    run_at bigint NOT NULL DEFAULT 0,
    value bytea NOT NULL,
    owner text
  )`,
  "CREATE INDEX jobs_ready ON jobs (queue, run_at, id) WHERE owner IS NULL",
];

const INSERT_SQL = "INSERT INTO jobs (queue, value) SELECT $2, v FROM unnest($1::bytea[]) AS t(v)";

const CLAIM_SQL = `WITH c AS (
  SELECT id FROM jobs WHERE queue = $1 AND owner IS NULL
  ORDER BY run_at, id LIMIT ${CLAIM_ROWS} FOR UPDATE SKIP LOCKED
) UPDATE jobs j SET owner = $2 FROM c WHERE j.id = c.id RETURNING j.id, j.value`;

const DELETE_SQL = "DELETE FROM jobs WHERE id = ANY($1::bigint[])";

/** A row as a client returns it: whatever types it chose for `id` and `value`. */
interface ClaimedRow {
  id: unknown;
  value: unknown;
}

/** One client, behind the few operations the measurement needs. */
interface Client {
  readonly name: string;
  /** Runs plain SQL (schema, checkpoints), unprepared. */
  exec(text: string): Promise<void>;
  /** Inserts one batch of payloads. */
  insert(values: Buffer[]): Promise<void>;
  /** Opens a consumer on a connection of its own. */
  consumer(): Promise<Consumer>;
  /** Counts the jobs left. */
  count(): Promise<number>;
  close(): Promise<void>;
}

interface Consumer {
  claim(owner: string): Promise<ClaimedRow[]>;
  remove(ids: unknown[]): Promise<void>;
  close(): Promise<void>;
}

function postgresJs(url: string): Client {
  const options = { max: 1, onnotice: () => {} };
  const sql = postgres(url, options);
  return {
    name: POSTGRES_JS,
    exec: async (text) => {
      await sql.unsafe(text);
    },
    insert: async (values) => {
      // A plain Buffer[] would be sent as one bytea (the type of its first
      // element): sql.array() declares it as bytea[].
      await sql.unsafe(INSERT_SQL, [sql.array(values), QUEUE], { prepare: true });
    },
    consumer: async () => {
      const own = postgres(url, options);
      // postgres.js connects on first use (and then reads the array types):
      // do that now, outside the timed phase, as pg's connect() does.
      await own.unsafe("SELECT 1");
      return {
        claim: (owner) =>
          own.unsafe(CLAIM_SQL, [QUEUE, owner], { prepare: true }) as Promise<ClaimedRow[]>,
        remove: async (ids) => {
          await own.unsafe(DELETE_SQL, [ids as string[]], { prepare: true });
        },
        close: () => own.end(),
      };
    },
    count: async () => {
      const [row] = await sql.unsafe("SELECT count(*)::int AS n FROM jobs");
      return row.n as number;
    },
    close: () => sql.end(),
  };
}

function nodePostgres(url: string): Client {
  const main = new pg.Client({ connectionString: url });
  let connected: Promise<unknown> | undefined;
  const ready = () => connected ??= main.connect();
  return {
    name: NODE_POSTGRES,
    exec: async (text) => {
      await ready();
      await main.query(text);
    },
    insert: async (values) => {
      await ready();
      await main.query({ name: "insert", text: INSERT_SQL, values: [values, QUEUE] });
    },
    consumer: async () => {
      const own = new pg.Client({ connectionString: url });
      await own.connect();
      return {
        claim: async (owner) =>
          (await own.query<ClaimedRow>({ name: "claim", text: CLAIM_SQL, values: [QUEUE, owner] }))
            .rows,
        remove: async (ids) => {
          await own.query({ name: "delete", text: DELETE_SQL, values: [ids] });
        },
        close: () => own.end(),
      };
    },
    count: async () => {
      await ready();
      const result = await main.query<{ n: number }>("SELECT count(*)::int AS n FROM jobs");
      return result.rows[0].n;
    },
    close: () => main.end(),
  };
}

/** The outcome of one client's round. */
interface RoundResult {
  insertPerSecond: number;
  consumePerSecond: number;
  /** This process's CPU time (user + system) per inserted row, in microseconds. */
  insertCpuUs: number;
  /** This process's CPU time (user + system) per consumed job, in microseconds. */
  consumeCpuUs: number;
  /** How the client returned `id` and `value`, e.g. `id: string, value: Buffer`. */
  types: string;
}

function typeName(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "object") return (value as object).constructor.name;
  return typeof value;
}

function payloads(n: number, seed: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const value = Buffer.alloc(VALUE_BYTES);
    // Every byte value occurs, zero, backslash and double quote included.
    for (let j = 0; j < VALUE_BYTES; j++) value[j] = (seed + i * 31 + j * PAYLOAD_STEP) & 0xff;
    out.push(value);
  }
  return out;
}

/** Whether `value` is a payload of {@link payloads}, byte for byte (each byte 7 more than the last). */
function intact(value: unknown): boolean {
  if (!(value instanceof Uint8Array) || value.length !== VALUE_BYTES) return false;
  for (let j = 1; j < VALUE_BYTES; j++) {
    if (((value[j] - value[j - 1]) & 0xff) !== PAYLOAD_STEP) return false;
  }
  return true;
}

async function measure(client: Client): Promise<RoundResult> {
  for (const statement of SCHEMA) await client.exec(statement);
  // Start each phase without a checkpoint of the previous client's writes pending.
  await client.exec("CHECKPOINT");

  const batches: Buffer[][] = [];
  for (let done = 0; done < TOTAL_ROWS; done += INSERT_BATCH_ROWS) {
    batches.push(payloads(Math.min(INSERT_BATCH_ROWS, TOTAL_ROWS - done), done));
  }
  const insertStart = performance.now();
  const insertCpu = process.cpuUsage();
  for (const batch of batches) await client.insert(batch);
  const insertSeconds = (performance.now() - insertStart) / 1000;
  const insertCpuUs = cpuMicroseconds(process.cpuUsage(insertCpu)) / TOTAL_ROWS;
  const inserted = await client.count();
  if (inserted !== TOTAL_ROWS) throw new Error(`${client.name}: inserted ${inserted} rows`);

  await client.exec("VACUUM ANALYZE jobs");
  await client.exec("CHECKPOINT");
  const consumers = await Promise.all(Array.from({ length: CONSUMERS }, () => client.consumer()));
  let consumed = 0;
  let types = "";
  const consumeStart = performance.now();
  const consumeCpu = process.cpuUsage();
  try {
    await Promise.all(consumers.map(async (consumer, index) => {
      const owner = `worker-${index}`;
      for (;;) {
        const rows = await consumer.claim(owner);
        if (rows.length === 0) return;
        for (const row of rows) {
          if (!intact(row.value)) {
            throw new Error(`${client.name}: a claimed value came back changed: ${row.value}`);
          }
        }
        types ||= `id: ${typeName(rows[0].id)} (e.g. ${JSON.stringify(rows[0].id)}), value: ` +
          typeName(rows[0].value);
        await consumer.remove(rows.map((row) => row.id));
        consumed += rows.length;
      }
    }));
  } finally {
    await Promise.all(consumers.map((consumer) => consumer.close()));
  }
  const consumeSeconds = (performance.now() - consumeStart) / 1000;
  const consumeCpuUs = cpuMicroseconds(process.cpuUsage(consumeCpu)) / TOTAL_ROWS;
  const left = await client.count();
  if (consumed !== TOTAL_ROWS || left !== 0) {
    throw new Error(`${client.name}: consumed ${consumed} jobs, ${left} left`);
  }
  return {
    insertPerSecond: TOTAL_ROWS / insertSeconds,
    consumePerSecond: TOTAL_ROWS / consumeSeconds,
    insertCpuUs,
    consumeCpuUs,
    types,
  };
}

function cpuMicroseconds(usage: { user: number; system: number }): number {
  return usage.user + usage.system;
}

function rate(perSecond: number): string {
  return Math.round(perSecond).toLocaleString("en-US").padStart(9);
}

/** The phases measured, with the unit of their rate. */
const PHASES = [
  { label: "insert ", unit: "rows/s", rate: "insertPerSecond", cpu: "insertCpuUs" },
  { label: "consume", unit: "jobs/s", rate: "consumePerSecond", cpu: "consumeCpuUs" },
] as const;

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: { rounds: { type: "string" }, "fsync-off": { type: "boolean" } },
  });
  const rounds = Number(values.rounds ?? DEFAULT_ROUNDS);
  if (!Number.isInteger(rounds) || rounds < 1) {
    throw new Error("--rounds must be a positive integer");
  }
  const durable = !values["fsync-off"];

  const cluster = await startPostgres({ durable, database: "compare" });
  try {
    console.log(
      `PostgreSQL at ${cluster.url} (fsync ${durable ? "on" : "off"}); ${TOTAL_ROWS} jobs of ` +
        `${VALUE_BYTES} B, inserts in batches of ${INSERT_BATCH_ROWS}, ${CONSUMERS} consumers ` +
        `claiming ${CLAIM_ROWS} at a time; cpu = this process's CPU time per row`,
    );
    const makers = [postgresJs, nodePostgres];
    const all = new Map<string, RoundResult[]>();
    for (let round = 1; round <= rounds; round++) {
      const order = round % 2 === 1 ? makers : [...makers].reverse();
      const results = new Map<string, RoundResult>();
      for (const make of order) {
        const client = make(cluster.url);
        try {
          const result = await measure(client);
          results.set(client.name, result);
          all.set(client.name, [...all.get(client.name) ?? [], result]);
          for (const phase of PHASES) {
            console.log(
              `round ${round}  ${client.name.padEnd(15)} ${phase.label} ` +
                `${rate(result[phase.rate])} ${phase.unit}  cpu ${
                  result[phase.cpu].toFixed(1).padStart(5)
                } us` + (phase.label === "consume" ? `  (${result.types})` : ""),
            );
          }
        } finally {
          await client.close();
        }
      }
      const a = results.get(POSTGRES_JS)!;
      const b = results.get(NODE_POSTGRES)!;
      console.log(
        `round ${round}  postgres/pg ratio: ` +
          PHASES.map((p) => `${p.label.trim()} ${(a[p.rate] / b[p.rate]).toFixed(2)}x`).join(", "),
      );
    }
    if (rounds > 1) {
      const mean = (name: string, key: keyof RoundResult) => {
        const list = all.get(name)!;
        return list.reduce((sum, r) => sum + (r[key] as number), 0) / list.length;
      };
      for (const phase of PHASES) {
        const a = mean(POSTGRES_JS, phase.rate);
        const b = mean(NODE_POSTGRES, phase.rate);
        console.log(
          `mean of ${rounds} rounds, ${phase.label}: postgres ${rate(a)} ${phase.unit} ` +
            `(cpu ${mean(POSTGRES_JS, phase.cpu).toFixed(1)} us), pg ${rate(b)} ${phase.unit} ` +
            `(cpu ${mean(NODE_POSTGRES, phase.cpu).toFixed(1)} us), ratio ${(a / b).toFixed(2)}x`,
        );
      }
    }
  } finally {
    await cluster.destroy();
  }
}

if (import.meta.main) await main();
