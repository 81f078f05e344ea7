/**
 * The PostgreSQL broker's schema: its tables, created and migrated by taskq
 * itself in a schema of its own (`taskq` by default), and versioned.
 *
 * One row per live item in `items`, deleted when the item is acked, so the hot
 * table stays as small as the work waiting. The state of an item is in its
 * columns: leased while `lease_owner` is set (with the lease's expiry and
 * master), delayed while `ready_at` lies ahead, ready otherwise. Queue order
 * is `(ready_at, seq)`: a put's `ready_at` is the database's clock (plus its
 * delay), so a delayed item joins the back of its queue when its delay ends;
 * an item going back to the front gets a negative `ready_at`, smaller for
 * each return. The claim path reads one partial index (`items_claimable`)
 * that holds only the unleased rows.
 *
 * Counters are kept per queue, per master and per lane (`counters`): each
 * statement a master may have in flight at once adds to a row of its own
 * (a put batch in lane 0 or 1, an ack batch in 2 or 3, ...), so no two ever
 * wait for each other's commit on a counter row; they are added up when read. `masters` holds each live
 * master's heartbeat, `sessions` each connection's, `paused` the paused
 * queues (every master honours them), `queues` the queues that exist (for
 * the queue cap and the listing).
 *
 * A database whose schema is newer than this release is refused with
 * {@link StoreVersionError} and never altered; an older one is migrated in
 * one transaction under an advisory lock, so masters starting together
 * migrate once.
 *
 * @example
 * ```ts ignore
 * import postgres from "postgres";
 * import { migrate, schemaSql } from "./schema.ts";
 * const sql = postgres("postgres://taskq@127.0.0.1:5432/taskq");
 * await migrate(sql, "taskq");
 * console.log(schemaSql("taskq").includes("items_claimable")); // true
 * await sql.end();
 * ```
 *
 * @module
 */

// deno-lint-ignore no-import-prefix
import type postgres from "npm:postgres@3.4.9";
import { ConfigError } from "../../errors.ts";
import { StoreVersionError } from "../../store/errors.ts";

/** Version of the schema this release writes (`meta.version`). */
export const PG_SCHEMA_VERSION = 1;

/** The schema taskq uses unless told otherwise (`--pg-schema`). */
export const DEFAULT_PG_SCHEMA = "taskq";

/** Longest schema name PostgreSQL keeps (NAMEDATALEN - 1), in bytes. */
const MAX_IDENTIFIER_BYTES = 63;

/** Advisory lock key (two int4) held while migrating: "tq" and the schema family. */
const MIGRATION_LOCK = [0x7471, 0x0001] as const;

/**
 * The schema name, quoted for SQL.
 * @throws {ConfigError} when it is not a plain identifier (letters, digits, `_`; not starting
 *   with a digit; at most 63 bytes).
 *
 * @example
 * ```ts
 * import { quoteSchema } from "./schema.ts";
 * console.log(quoteSchema("taskq")); // "taskq"
 * ```
 */
export function quoteSchema(name: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) || name.length > MAX_IDENTIFIER_BYTES) {
    throw new ConfigError(
      `--pg-schema must be a plain name (letters, digits and _, not starting with a digit, ` +
        `at most ${MAX_IDENTIFIER_BYTES} characters), not "${name}"`,
    );
  }
  return `"${name}"`;
}

/**
 * The statements that create version {@link PG_SCHEMA_VERSION} of the schema
 * `schema` from nothing (each `IF NOT EXISTS`).
 *
 * Autovacuum on `items` is set to run after 1% of its rows changed (at least
 * 1,000) without cost-based pauses: rows are inserted and deleted at the rate
 * of the work, and a table left to the default 20% would bloat between runs.
 *
 * @example
 * ```ts
 * import { schemaSql } from "./schema.ts";
 * console.log(schemaSql("taskq").startsWith("CREATE SCHEMA")); // true
 * ```
 */
export function schemaSql(schema: string): string {
  const s = quoteSchema(schema);
  return `
CREATE SCHEMA IF NOT EXISTS ${s};
CREATE TABLE IF NOT EXISTS ${s}.meta (key text PRIMARY KEY, value text NOT NULL);
CREATE SEQUENCE IF NOT EXISTS ${s}.ids;
CREATE SEQUENCE IF NOT EXISTS ${s}.fronts;
CREATE TABLE IF NOT EXISTS ${s}.items (
  id bigint PRIMARY KEY,
  queue text NOT NULL,
  ready_at bigint NOT NULL,
  seq bigint NOT NULL,
  attempts integer NOT NULL DEFAULT 0,
  max_attempts integer NOT NULL DEFAULT 0,
  last_error text,
  lease_owner text,
  lease_master bigint,
  lease_until bigint,
  taken bigint,
  value bytea NOT NULL
) WITH (
  fillfactor = 90,
  autovacuum_vacuum_scale_factor = 0.01,
  autovacuum_vacuum_threshold = 1000,
  autovacuum_vacuum_insert_scale_factor = 0.01,
  autovacuum_analyze_scale_factor = 0.02,
  autovacuum_vacuum_cost_delay = 0
);
CREATE INDEX IF NOT EXISTS items_claimable ON ${s}.items (queue, ready_at, seq)
  WHERE lease_owner IS NULL;
CREATE INDEX IF NOT EXISTS items_leased ON ${s}.items (lease_until) WHERE lease_owner IS NOT NULL;
CREATE TABLE IF NOT EXISTS ${s}.queues (name text PRIMARY KEY);
CREATE TABLE IF NOT EXISTS ${s}.paused (name text PRIMARY KEY);
CREATE TABLE IF NOT EXISTS ${s}.counters (
  queue text NOT NULL,
  master bigint NOT NULL,
  lane smallint NOT NULL DEFAULT 0,
  put bigint NOT NULL DEFAULT 0,
  acked bigint NOT NULL DEFAULT 0,
  nacked bigint NOT NULL DEFAULT 0,
  expired bigint NOT NULL DEFAULT 0,
  failed bigint NOT NULL DEFAULT 0,
  dead bigint NOT NULL DEFAULT 0,
  bytes bigint NOT NULL DEFAULT 0,
  removed bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (queue, master, lane)
) WITH (fillfactor = 50, autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_cost_delay = 0);
CREATE TABLE IF NOT EXISTS ${s}.masters (
  id bigserial PRIMARY KEY,
  name text NOT NULL,
  started_at bigint NOT NULL,
  seen_at bigint NOT NULL,
  waiting jsonb NOT NULL DEFAULT '{}'
) WITH (fillfactor = 50);
CREATE TABLE IF NOT EXISTS ${s}.sessions (
  id text PRIMARY KEY,
  master bigint NOT NULL,
  name text NOT NULL,
  address text NOT NULL,
  connected_at bigint NOT NULL,
  last_seen bigint NOT NULL,
  waiting integer NOT NULL DEFAULT 0
) WITH (fillfactor = 50);
CREATE INDEX IF NOT EXISTS sessions_master ON ${s}.sessions (master);
CREATE OR REPLACE FUNCTION ${s}.now_ms() RETURNS bigint LANGUAGE sql VOLATILE
  AS 'SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint';
`;
}

/**
 * Creates or migrates the schema `schema` to {@link PG_SCHEMA_VERSION}.
 * @throws {StoreVersionError} when the database holds a newer version (it is left as it is).
 */
export async function migrate(sql: postgres.Sql, schema: string): Promise<void> {
  const s = quoteSchema(schema);
  await sql.begin(async (tx) => {
    await tx.unsafe(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK[0]}, ${MIGRATION_LOCK[1]})`);
    const [exists] = await tx.unsafe(
      `SELECT to_regclass($1) IS NOT NULL AS present`,
      [`${s}.meta`],
    );
    if (exists.present) {
      const rows = await tx.unsafe(`SELECT value FROM ${s}.meta WHERE key = 'version'`);
      const found = rows.length === 0 ? 0 : Number(rows[0].value);
      if (!Number.isInteger(found) || found > PG_SCHEMA_VERSION) {
        throw new StoreVersionError(
          `the database's schema "${schema}" is taskq schema version ${rows[0]?.value}, newer ` +
            `than this taskq understands (${PG_SCHEMA_VERSION}); upgrade taskq on this machine ` +
            `(nothing in the database was changed)`,
        );
      }
      if (found === PG_SCHEMA_VERSION) return;
    }
    await tx.unsafe(schemaSql(schema));
    await tx.unsafe(
      `INSERT INTO ${s}.meta (key, value) VALUES ('version', $1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
      [String(PG_SCHEMA_VERSION)],
    );
  });
}
