/**
 * The PostgreSQL broker's schema: its tables, created and migrated by taskq
 * itself in a schema of its own (`taskq` by default), and versioned.
 *
 * One row per live item in `items`, deleted when the item is acked, so the hot
 * table stays as small as the work waiting. The state of an item is in its
 * columns: leased while `lease_owner` is set (with the lease's expiry and
 * master), delayed while `ready_at` lies ahead, ready otherwise. Queue order
 * is `(priority DESC, ready_at, seq)`: a put's `ready_at` is the database's
 * clock (plus its delay), so a delayed item joins the back of its priority
 * when its delay ends; an item going back to the front gets a negative
 * `ready_at`, smaller for each return. The claim path reads one partial index
 * (`items_claimable`) that holds only the unleased rows without a group;
 * grouped rows are in one of their own (`items_grouped`, by group first), so
 * a queue that never sees a group pays nothing for them. Leased rows are in
 * `items_leased` by queue (a concurrency limit counts them there); a unique
 * partial index on `(queue, ukey)` enforces unique keys across masters and
 * holds nothing for items without a key.
 *
 * Counters are kept per queue, per master and per lane (`counters`): each
 * statement a master may have in flight at once adds to a row of its own
 * (a put batch in lane 0 or 1, an ack batch in 2 or 3, ...), so no two ever
 * wait for each other's commit on a counter row; they are added up when read. `masters` holds each live
 * master's heartbeat, `sessions` each connection's, `paused` the paused
 * queues (every master honours them), `queues` the queues that exist (for
 * the queue cap and the listing).
 *
 * Version 2 added what issue #13 asked for: `limits` (a queue's rate and
 * concurrency limits, and its rate limit's theoretical arrival time, GCRA),
 * `groups` (when each group of a queue was last served, for round-robin),
 * `finished` (the history of finished jobs, for lookup), `key_holds` (unique
 * keys kept taken after their item finished), and the functions of the
 * claim path of queues with limits or groups (`claim_special`), which locks
 * the queue's `limits` row so that its limits hold across masters.
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
export const PG_SCHEMA_VERSION = 2;

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

/** Rows of a queue's front moved by one return-to-front, at most: the spacing of front keys. */
export const FRONT_SPACING = 1_048_576;

/**
 * The statements that create version {@link PG_SCHEMA_VERSION} of the schema
 * `schema` from nothing (each `IF NOT EXISTS`, functions `OR REPLACE`).
 *
 * Autovacuum on `items` is set to run after 1% of its rows changed (at least
 * 1,000) without cost-based pauses: rows are inserted and deleted at the rate
 * of the work, and a table left to the default 20% would bloat between runs.
 *
 * @example
 * ```ts
 * import { schemaSql } from "./schema.ts";
 * console.log(schemaSql("taskq").startsWith("\nCREATE SCHEMA")); // true
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
  value bytea NOT NULL,
  priority smallint NOT NULL DEFAULT 0,
  grp text,
  ukey text,
  key_hold bigint,
  created_at bigint NOT NULL DEFAULT 0,
  leased_at bigint,
  progress_percent double precision,
  progress_message text,
  progress_at bigint
) WITH (
  fillfactor = 90,
  autovacuum_vacuum_scale_factor = 0.01,
  autovacuum_vacuum_threshold = 1000,
  autovacuum_vacuum_insert_scale_factor = 0.01,
  autovacuum_analyze_scale_factor = 0.02,
  autovacuum_vacuum_cost_delay = 0
);
CREATE INDEX IF NOT EXISTS items_claimable ON ${s}.items (queue, priority DESC, ready_at, seq)
  WHERE lease_owner IS NULL AND grp IS NULL;
CREATE INDEX IF NOT EXISTS items_grouped ON ${s}.items (queue, grp, priority DESC, ready_at, seq)
  WHERE lease_owner IS NULL AND grp IS NOT NULL;
CREATE INDEX IF NOT EXISTS items_leased ON ${s}.items (queue, lease_until)
  WHERE lease_owner IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS items_ukey ON ${s}.items (queue, ukey) WHERE ukey IS NOT NULL;
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
CREATE TABLE IF NOT EXISTS ${s}.limits (
  queue text PRIMARY KEY,
  rate_count integer NOT NULL DEFAULT 0,
  rate_period_ms integer NOT NULL DEFAULT 1000,
  concurrency integer NOT NULL DEFAULT 0,
  group_concurrency integer NOT NULL DEFAULT 0,
  tat double precision NOT NULL DEFAULT 0
) WITH (fillfactor = 50);
CREATE TABLE IF NOT EXISTS ${s}.groups (
  queue text NOT NULL,
  grp text NOT NULL,
  last_served bigint NOT NULL,
  PRIMARY KEY (queue, grp)
) WITH (fillfactor = 50);
CREATE TABLE IF NOT EXISTS ${s}.finished (
  id bigint PRIMARY KEY,
  queue text NOT NULL,
  state text NOT NULL,
  attempts integer NOT NULL,
  priority smallint NOT NULL DEFAULT 0,
  grp text,
  ukey text,
  error text,
  value bytea,
  result bytea,
  progress_percent double precision,
  progress_message text,
  progress_at bigint,
  created_at bigint NOT NULL,
  finished_at bigint NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_cost_delay = 0);
CREATE INDEX IF NOT EXISTS finished_at ON ${s}.finished (finished_at, id);
CREATE TABLE IF NOT EXISTS ${s}.key_holds (
  queue text NOT NULL,
  ukey text NOT NULL,
  id bigint NOT NULL,
  until bigint NOT NULL,
  PRIMARY KEY (queue, ukey)
);
CREATE OR REPLACE FUNCTION ${s}.now_ms() RETURNS bigint LANGUAGE sql VOLATILE
  AS 'SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint';
${functionsSql(s)}`;
}

/**
 * The plpgsql of `claim_special` that fetches the next candidates of the group
 * whose index is the variable `g` (up to `k`, after those it fetched before,
 * in serve order) into the candidate arrays: the same step whether a
 * priority's rotation is being rebuilt or a group's turn came with its
 * candidates used up.
 */
function refillCandidates(s: string, g: string): string {
  return `FOR r IN
    SELECT i.id, i.priority, i.ready_at, i.seq, octet_length(i.value) AS bytes
    FROM ${s}.items i
    WHERE i.queue = q AND i.lease_owner IS NULL AND i.ready_at <= t
      AND i.grp = names[${g}]
    UNION ALL
    SELECT i.id, i.priority, i.ready_at, i.seq, octet_length(i.value) AS bytes
    FROM ${s}.items i
    WHERE names[${g}] = '' AND i.queue = q AND i.lease_owner IS NULL
      AND i.grp IS NULL AND i.ready_at <= t
    ORDER BY 2 DESC, 3, 4 LIMIT k OFFSET fetched[${g}]
  LOOP
    cnt[${g}] := cnt[${g}] + 1;
    x := (${g} - 1) * k + cnt[${g}];
    cid[x] := r.id;
    cpri[x] := r.priority;
    crd[x] := r.ready_at;
    cseq[x] := r.seq;
    cby[x] := r.bytes;
  END LOOP;
  fetched[${g}] := fetched[${g}] + cnt[${g}];
  more[${g}] := cnt[${g}] = k;`;
}

/**
 * The functions of schema `s` (quoted): whether a queue has limits or
 * grouped items (the plain claim calls it: a function's own plans are
 * cached, so the claim's planning stays as cheap as it was), the claim of
 * queues with limits or groups, and the two walks of a queue's priorities that count its delayed
 * items and find the next one's time through the index.
 */
function functionsSql(s: string): string {
  return `
CREATE OR REPLACE FUNCTION ${s}.queue_special(q text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
  RETURN EXISTS (SELECT 1 FROM ${s}.limits l WHERE l.queue = q)
    OR EXISTS (SELECT 1 FROM ${s}.items i
               WHERE i.queue = q AND i.grp IS NOT NULL AND i.lease_owner IS NULL);
END
$fn$;

CREATE OR REPLACE FUNCTION ${s}.claim_special(q text, owners text[], leases bigint[],
  master_id bigint, max_bytes bigint, burst_ms integer)
RETURNS TABLE (c_id bigint, c_attempts integer, c_value bytea, c_n bigint, c_lease_until bigint,
  c_hold boolean, c_next_at bigint, c_special boolean, c_slots boolean, c_blocked boolean)
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
  t bigint := ${s}.now_ms();
  want integer := coalesce(array_length(owners, 1), 0);
  lim record;
  has_lim boolean;
  grouped boolean;
  gcon integer := 0;
  allowed integer;
  rate_left integer;
  period double precision;
  burst integer;
  base double precision;
  new_tat double precision;
  leased integer;
  picked integer := 0;
  got integer := 0;
  running bigint := 0;
  front bigint;
  -- Groups, by index: name, when last served, items leased, served by this claim.
  names text[];
  lasts bigint[];
  held integer[];
  served boolean[];
  ng integer;
  -- Each group's next ready items (candidates), in a region of k slots of these arrays.
  k integer;
  cid bigint[];
  cpri integer[];
  crd bigint[];
  cseq bigint[];
  cby integer[];
  cnt integer[];
  ptr integer[];
  fetched integer[];
  more boolean[];
  chosen bigint[] := '{}';
  -- This priority's rotation: group indexes, the next to serve at rh.
  rot integer[];
  rh integer;
  level integer;
  best integer;
  bx integer;
  x integer;
  r record;
BEGIN
  c_special := true;
  c_blocked := false;
  SELECT * INTO lim FROM ${s}.limits l WHERE l.queue = q FOR UPDATE;
  has_lim := FOUND;
  c_slots := has_lim AND (lim.concurrency > 0 OR lim.group_concurrency > 0);
  grouped := EXISTS (SELECT 1 FROM ${s}.items i
    WHERE i.queue = q AND i.grp IS NOT NULL AND i.lease_owner IS NULL);
  IF has_lim THEN gcon := lim.group_concurrency; END IF;
  IF NOT has_lim AND NOT grouped THEN
    c_special := false;
    c_n := 0;
    RETURN NEXT;
    RETURN;
  END IF;
  IF EXISTS (SELECT 1 FROM ${s}.paused p WHERE p.name = q) THEN
    c_n := 0;
    RETURN NEXT;
    RETURN;
  END IF;
  IF NOT has_lim THEN
    -- Round-robin needs one claim at a time per queue; a limits row serializes them otherwise.
    PERFORM pg_advisory_xact_lock(hashtextextended(q, 7472));
  END IF;
  allowed := want;
  IF has_lim AND lim.concurrency > 0 THEN
    -- Counted up to the limit only: a limit far above what is leased costs what is leased.
    SELECT count(*) INTO leased FROM (
      SELECT 1 FROM ${s}.items i WHERE i.queue = q AND i.lease_owner IS NOT NULL
      LIMIT lim.concurrency) c;
    allowed := least(allowed, lim.concurrency - leased);
    c_blocked := allowed < want;
  END IF;
  IF has_lim AND lim.rate_count > 0 THEN
    period := lim.rate_period_ms::double precision / lim.rate_count;
    burst := greatest(1, floor(lim.rate_count::double precision * burst_ms / lim.rate_period_ms)::integer);
    base := greatest(lim.tat, t::double precision);
    rate_left := greatest(0, floor(((burst - 1) * period - (base - t)) / period + 1e-9)::integer + 1);
    allowed := least(allowed, rate_left);
  END IF;
  IF allowed > 0 THEN
    front := nextval('${s}.fronts');
    IF NOT grouped AND gcon = 0 THEN
      -- As the plain claim does, for the rows the limits allow.
      FOR r IN
        WITH p AS (
          SELECT i.id, i.priority, i.ready_at, i.seq, octet_length(i.value) AS bytes
          FROM ${s}.items i
          WHERE i.queue = q AND i.lease_owner IS NULL AND i.grp IS NULL AND i.ready_at <= t
          ORDER BY i.priority DESC, i.ready_at, i.seq LIMIT allowed FOR UPDATE SKIP LOCKED
        ),
        nb AS (
          SELECT p.id, row_number() OVER w AS n, sum(p.bytes) OVER w AS running
          FROM p WINDOW w AS (ORDER BY p.priority DESC, p.ready_at, p.seq)
        )
        UPDATE ${s}.items i SET lease_owner = o.owner, lease_master = master_id,
          lease_until = t + o.lease, leased_at = t, attempts = i.attempts + 1,
          taken = front * ${FRONT_SPACING} + nb.n
        FROM nb JOIN unnest(owners, leases) WITH ORDINALITY AS o(owner, lease, n) ON o.n = nb.n
        WHERE i.id = nb.id AND (nb.n = 1 OR nb.running <= max_bytes)
        RETURNING i.id, i.attempts, i.value, nb.n, i.lease_until, i.key_hold IS NOT NULL AS hold
      LOOP
        got := got + 1;
        c_id := r.id;
        c_attempts := r.attempts;
        c_value := r.value;
        c_n := r.n;
        c_lease_until := r.lease_until;
        c_hold := r.hold;
        RETURN NEXT;
      END LOOP;
    ELSE
      -- Each group's first ready item (its head), one index probe per group; and the first
      -- of the items without a group (the last "group", named '').
      names := '{}';
      lasts := '{}';
      cid := '{}';
      cpri := '{}';
      crd := '{}';
      cseq := '{}';
      cby := '{}';
      FOR r IN
        WITH RECURSIVE h AS (
          (SELECT i.grp, i.id, i.priority, i.ready_at, i.seq, octet_length(i.value) AS bytes
           FROM ${s}.items i
           WHERE i.queue = q AND i.grp IS NOT NULL AND i.lease_owner IS NULL AND i.ready_at <= t
           ORDER BY i.grp, i.priority DESC, i.ready_at, i.seq LIMIT 1)
          UNION ALL
          SELECT n.* FROM h CROSS JOIN LATERAL (
            SELECT i.grp, i.id, i.priority, i.ready_at, i.seq, octet_length(i.value) AS bytes
            FROM ${s}.items i
            WHERE i.queue = q AND i.grp IS NOT NULL AND i.grp > h.grp AND i.lease_owner IS NULL
              AND i.ready_at <= t
            ORDER BY i.grp, i.priority DESC, i.ready_at, i.seq LIMIT 1) n
        ),
        u AS (
          SELECT h.* FROM h
          UNION ALL
          (SELECT '', i.id, i.priority, i.ready_at, i.seq, octet_length(i.value)
           FROM ${s}.items i
           WHERE i.queue = q AND i.grp IS NULL AND i.lease_owner IS NULL AND i.ready_at <= t
           ORDER BY i.priority DESC, i.ready_at, i.seq LIMIT 1)
        )
        SELECT u.*, gr.last_served FROM u
          LEFT JOIN ${s}.groups gr ON gr.queue = q AND gr.grp = u.grp
      LOOP
        names := names || r.grp;
        lasts := lasts || r.last_served;
        cid := cid || r.id;
        cpri := cpri || r.priority;
        crd := crd || r.ready_at;
        cseq := cseq || r.seq;
        cby := cby || r.bytes;
      END LOOP;
      ng := coalesce(array_length(names, 1), 0);
      IF ng > 0 THEN
        IF gcon > 0 THEN
          SELECT array_agg(coalesce(c.n, 0)::integer ORDER BY u.ord) INTO held
          FROM unnest(names) WITH ORDINALITY AS u(g, ord)
            LEFT JOIN (SELECT coalesce(i.grp, '') AS g, count(*) AS n FROM ${s}.items i
                       WHERE i.queue = q AND i.lease_owner IS NOT NULL GROUP BY 1) c ON c.g = u.g;
        ELSE
          held := array_fill(0, ARRAY[ng]);
        END IF;
        served := array_fill(false, ARRAY[ng]);
        cnt := array_fill(1, ARRAY[ng]);
        fetched := array_fill(1, ARRAY[ng]);
        more := array_fill(true, ARRAY[ng]);
        ptr := array_fill(0, ARRAY[ng]);
        -- Each group's candidates are in a region of k slots: its head first; when they run
        -- out while it may have more, its next k, looked up when it is needed.
        k := least(allowed, ceil(allowed::numeric / ng)::integer + 1);
        IF k > 1 THEN
          SELECT array_agg(CASE WHEN p = 1 THEN cid[g] END ORDER BY g, p),
                 array_agg(CASE WHEN p = 1 THEN cpri[g] END ORDER BY g, p),
                 array_agg(CASE WHEN p = 1 THEN crd[g] END ORDER BY g, p),
                 array_agg(CASE WHEN p = 1 THEN cseq[g] END ORDER BY g, p),
                 array_agg(CASE WHEN p = 1 THEN cby[g] END ORDER BY g, p)
            INTO cid, cpri, crd, cseq, cby
          FROM generate_series(1, ng) AS g, generate_series(1, k) AS p;
        END IF;
        rot := '{}';
        rh := 1;
        LOOP
          EXIT WHEN picked >= allowed;
          IF rh > coalesce(array_length(rot, 1), 0) THEN
            -- This priority's turn is over. Groups served whose candidates ran out show
            -- their next; then the next highest priority's rotation, the group served
            -- longest ago first (one never served, or that left the rotation, by its first
            -- item's put), a group at its group concurrency left out.
            FOR gx IN 1..ng LOOP
              IF ptr[gx] >= cnt[gx] AND more[gx] THEN
                ptr[gx] := 0;
                cnt[gx] := 0;
                ${refillCandidates(s, "gx")}
              END IF;
            END LOOP;
            SELECT max(cpri[(gj - 1) * k + ptr[gj] + 1]) INTO level
            FROM generate_series(1, ng) AS gj
            WHERE ptr[gj] < cnt[gj] AND NOT (gcon > 0 AND held[gj] >= gcon);
            EXIT WHEN level IS NULL;
            SELECT array_agg(c.gj ORDER BY coalesce(lasts[c.gj], cseq[c.pos]), crd[c.pos],
                cseq[c.pos])
              INTO rot
            FROM (SELECT gj, (gj - 1) * k + ptr[gj] + 1 AS pos FROM generate_series(1, ng) AS gj
                  WHERE ptr[gj] < cnt[gj] AND NOT (gcon > 0 AND held[gj] >= gcon)) c
            WHERE cpri[c.pos] = level;
            rh := 1;
          END IF;
          best := rot[rh];
          rh := rh + 1;
          IF ptr[best] >= cnt[best] THEN
            -- Its turn came with its candidates used up: its next ones, if it has more.
            CONTINUE WHEN NOT more[best];
            ptr[best] := 0;
            cnt[best] := 0;
            ${refillCandidates(s, "best")}
            CONTINUE WHEN cnt[best] = 0 OR cpri[(best - 1) * k + 1] <> level;
          END IF;
          bx := (best - 1) * k + ptr[best] + 1;
          EXIT WHEN picked > 0 AND running + cby[bx] > max_bytes;
          picked := picked + 1;
          running := running + cby[bx];
          chosen := chosen || cid[bx];
          ptr[best] := ptr[best] + 1;
          held[best] := held[best] + 1;
          lasts[best] := nextval('${s}.ids');
          served[best] := true;
          -- Served, it goes to the back of the rotation while it has items at this priority
          -- (or may have: then its turn looks).
          IF NOT (gcon > 0 AND held[best] >= gcon) AND (
            (ptr[best] < cnt[best] AND cpri[(best - 1) * k + ptr[best] + 1] = level)
            OR (ptr[best] >= cnt[best] AND more[best])) THEN
            rot := rot || best;
          END IF;
        END LOOP;
        IF gcon > 0 AND EXISTS (SELECT 1 FROM generate_series(1, ng) AS gj
                                WHERE (ptr[gj] < cnt[gj] OR more[gj]) AND held[gj] >= gcon) THEN
          c_blocked := true;
        END IF;
      IF picked > 0 THEN
        FOR r IN
          UPDATE ${s}.items i SET lease_owner = o.owner, lease_master = master_id,
            lease_until = t + o.lease, leased_at = t, attempts = i.attempts + 1,
            taken = front * ${FRONT_SPACING} + o.n
          FROM unnest(chosen, owners[1:picked], leases[1:picked]) WITH ORDINALITY
            AS o(id, owner, lease, n)
          WHERE i.id = o.id AND i.lease_owner IS NULL
          RETURNING i.id, i.attempts, i.value, o.n, i.lease_until, i.key_hold IS NOT NULL AS hold
        LOOP
          got := got + 1;
          c_id := r.id;
          c_attempts := r.attempts;
          c_value := r.value;
          c_n := r.n;
          c_lease_until := r.lease_until;
          c_hold := r.hold;
          RETURN NEXT;
        END LOOP;
      END IF;
        -- A served group that ran out of ready items leaves the rotation: when it has items
        -- again it takes its place by its first item's put, as a new group does.
        DELETE FROM ${s}.groups gr
        USING unnest(names, served, cnt, ptr, more) AS u(g, s, c, p, m)
        WHERE gr.queue = q AND gr.grp = u.g AND u.s AND u.p >= u.c AND NOT u.m;
        INSERT INTO ${s}.groups (queue, grp, last_served)
        SELECT q, u.g, u.l FROM unnest(names, lasts, served, cnt, ptr, more) AS u(g, l, s, c, p, m)
        WHERE u.s AND NOT (u.p >= u.c AND NOT u.m) ORDER BY u.g
        ON CONFLICT (queue, grp) DO UPDATE SET last_served = excluded.last_served;
      END IF;
    END IF;
  END IF;
  c_id := NULL;
  c_attempts := NULL;
  c_value := NULL;
  c_lease_until := NULL;
  c_hold := NULL;
  c_n := 0;
  IF has_lim AND lim.rate_count > 0 THEN
    new_tat := CASE WHEN got > 0 THEN base + got * period ELSE lim.tat END;
    IF got > 0 THEN
      UPDATE ${s}.limits l SET tat = new_tat WHERE l.queue = q;
    END IF;
    IF got < want AND got >= rate_left THEN
      c_next_at := greatest(t + 1, ceil(new_tat - (burst - 1) * period)::bigint);
    END IF;
  END IF;
  RETURN NEXT;
END
$fn$;

CREATE OR REPLACE FUNCTION ${s}.queue_delayed(q text, t bigint) RETURNS bigint
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
  p integer;
  total bigint := 0;
  c bigint;
BEGIN
  SELECT i.priority INTO p FROM ${s}.items i
  WHERE i.queue = q AND i.lease_owner IS NULL AND i.grp IS NULL
  ORDER BY i.priority DESC LIMIT 1;
  WHILE p IS NOT NULL LOOP
    SELECT count(*) INTO c FROM ${s}.items i
    WHERE i.queue = q AND i.lease_owner IS NULL AND i.grp IS NULL AND i.priority = p
      AND i.ready_at > t;
    total := total + c;
    SELECT max(i.priority) INTO p FROM ${s}.items i
    WHERE i.queue = q AND i.lease_owner IS NULL AND i.grp IS NULL AND i.priority < p;
  END LOOP;
  SELECT count(*) INTO c FROM ${s}.items i
  WHERE i.queue = q AND i.lease_owner IS NULL AND i.grp IS NOT NULL AND i.ready_at > t;
  RETURN total + c;
END
$fn$;

CREATE OR REPLACE FUNCTION ${s}.next_ready(q text, t bigint) RETURNS bigint
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
  p integer;
  best bigint;
  at bigint;
BEGIN
  SELECT i.priority INTO p FROM ${s}.items i
  WHERE i.queue = q AND i.lease_owner IS NULL AND i.grp IS NULL
  ORDER BY i.priority DESC LIMIT 1;
  WHILE p IS NOT NULL LOOP
    SELECT min(i.ready_at) INTO at FROM ${s}.items i
    WHERE i.queue = q AND i.lease_owner IS NULL AND i.grp IS NULL AND i.priority = p
      AND i.ready_at > t;
    best := least(best, at);
    SELECT max(i.priority) INTO p FROM ${s}.items i
    WHERE i.queue = q AND i.lease_owner IS NULL AND i.grp IS NULL AND i.priority < p;
  END LOOP;
  SELECT min(i.ready_at) INTO at FROM ${s}.items i
  WHERE i.queue = q AND i.lease_owner IS NULL AND i.grp IS NOT NULL AND i.ready_at > t;
  RETURN least(best, at);
END
$fn$;
`;
}

/**
 * The statements that take schema `schema` from version `from` to the one
 * before {@link schemaSql} completes it: version 1 had no priorities, groups,
 * unique keys, limits, history or progress, and its claim index had no
 * priority. Its rows keep their order (priority 0 for all) and get the time
 * of the migration as the time they were put.
 *
 * @example
 * ```ts
 * import { migrationSql } from "./schema.ts";
 * console.log(migrationSql("taskq", 1).includes("ADD COLUMN")); // true
 * ```
 */
export function migrationSql(schema: string, from: number): string {
  const s = quoteSchema(schema);
  if (from !== 1) return "";
  return `
ALTER TABLE ${s}.items
  ADD COLUMN IF NOT EXISTS priority smallint NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS grp text,
  ADD COLUMN IF NOT EXISTS ukey text,
  ADD COLUMN IF NOT EXISTS key_hold bigint,
  ADD COLUMN IF NOT EXISTS created_at bigint NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS leased_at bigint,
  ADD COLUMN IF NOT EXISTS progress_percent double precision,
  ADD COLUMN IF NOT EXISTS progress_message text,
  ADD COLUMN IF NOT EXISTS progress_at bigint;
UPDATE ${s}.items SET created_at = ${s}.now_ms();
DROP INDEX IF EXISTS ${s}.items_claimable;
DROP INDEX IF EXISTS ${s}.items_leased;
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
      for (let version = found; version >= 1 && version < PG_SCHEMA_VERSION; version++) {
        const steps = migrationSql(schema, version);
        if (steps !== "") await tx.unsafe(steps);
      }
    }
    await tx.unsafe(schemaSql(schema));
    await tx.unsafe(
      `INSERT INTO ${s}.meta (key, value) VALUES ('version', $1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
      [String(PG_SCHEMA_VERSION)],
    );
  });
}
