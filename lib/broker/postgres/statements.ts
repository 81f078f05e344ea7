/**
 * The SQL of the PostgreSQL broker's hot path, one statement per batch.
 *
 * Counter rows are always upserted in queue-name order, so two batches in
 * flight at once lock them in the same order and never deadlock.
 *
 * Each statement does a whole step in one round trip and one transaction:
 * a put inserts its items, registers their queues, adds to the counters and
 * wakes the other masters (`pg_notify`, sent at commit); a claim picks the
 * front of a queue with `FOR UPDATE SKIP LOCKED` and leases each row to the
 * getter it is meant for; an ack deletes what its holders really held (id,
 * attempt and session must all match: the attempt is the lease's fencing
 * token) and inserts their results in the same statement. Rows are found by
 * `id = ANY(ids)`, so the plan is always the primary key's, never a scan of
 * every leased row however the statistics stand. Times are the
 * database's clock in milliseconds (`now_ms()`), so every master agrees on
 * them whatever its own clock says.
 *
 * @example
 * ```ts
 * import { statements } from "./statements.ts";
 * const sql = statements('"taskq"');
 * console.log(sql.claim.includes("SKIP LOCKED")); // true
 * ```
 *
 * @module
 */

/** Rows of a queue's front moved by one return-to-front, at most: the spacing of front keys. */
export const FRONT_SPACING = 1_048_576;

/** The hot-path statements of schema `s` (already quoted). */
export interface Statements {
  /**
   * Puts: `$1` queues, `$2` values, `$3` delays (ms), `$4` max attempts,
   * `$5` master, `$6` channel, `$7` notification prefix, `$8` counter lane.
   * Returns `id`s in put order.
   */
  readonly put: string;
  /**
   * Claims: `$1` queue, `$2` most rows, `$3` owner per row, `$4` lease (ms)
   * per row, `$5` master, `$6` most bytes. Returns `id, attempts, value, n, lease_until`.
   */
  readonly claim: string;
  /**
   * Acks: `$1` ids, `$2` attempts, `$3` owners, `$4` result source ids,
   * `$5` result queues, `$6` result values, `$7` master, `$8` channel,
   * `$9` notification prefix, `$10` result source attempts, `$11` result
   * source owners, `$12` counter lane. Returns the leases acked: `id, attempts, lease_owner`
   * (a result is kept only with the very lease it came with: a stale ack of
   * the same id in the same batch adds nothing).
   */
  readonly ack: string;
  /**
   * Nacks: `$1` ids, `$2` attempts, `$3` owner, `$4` delay (ms), `$5` master,
   * `$6` channel, `$7` notification prefix, `$8` counter lane. Returns `id, queue`.
   */
  readonly nack: string;
  /** Extends: `$1` ids, `$2` attempts, `$3` owner, `$4` lease (ms). Returns `id, lease_until`. */
  readonly extend: string;
  /** The database's clock, in ms since the epoch: `now`. */
  readonly now: string;
}

/** Adds `put` and `bytes` per queue of CTE `rows(queue, bytes)` to the counters of `master` and `lane`. */
function countPuts(s: string, rows: string, master: string, lane: string): string {
  return `INSERT INTO ${s}.counters (queue, master, lane, put, bytes)
    SELECT queue, ${master}, ${lane}, n, b
    FROM (SELECT queue, count(*) AS n, sum(bytes) AS b FROM ${rows} GROUP BY queue) g ORDER BY queue
    ON CONFLICT (queue, master, lane) DO UPDATE SET put = ${s}.counters.put + excluded.put,
      bytes = ${s}.counters.bytes + excluded.bytes`;
}

/** Sends one notification per distinct queue of CTE `rows(queue)`, when there are any. */
function notifyQueues(rows: string, channel: string, prefix: string): string {
  return `(SELECT count(pg_notify(${channel}, ${prefix} || q)) FROM (SELECT DISTINCT queue AS q FROM ${rows}) d)`;
}

/**
 * The statements of schema `s`, a quoted identifier (see `quoteSchema`).
 *
 * @example
 * ```ts
 * import { statements } from "./statements.ts";
 * console.log(statements('"jobs"').put.includes('"jobs".items')); // true
 * ```
 */
export function statements(s: string): Statements {
  const now = `(SELECT t FROM now)`;
  return {
    now: `SELECT ${s}.now_ms() AS now`,
    put: `WITH now AS MATERIALIZED (SELECT ${s}.now_ms() AS t),
ins AS (
  INSERT INTO ${s}.items (id, queue, ready_at, seq, max_attempts, value)
  SELECT n.id, n.queue, ${now} + n.delay, n.id, n.max, n.value
  FROM (SELECT nextval('${s}.ids') AS id, u.queue, u.value, u.delay, u.max
        FROM unnest($1::text[], $2::bytea[], $3::bigint[], $4::int[])
          WITH ORDINALITY AS u(queue, value, delay, max, ord)
        ORDER BY u.ord) n
  RETURNING id, queue, octet_length(value) AS bytes
),
reg AS (INSERT INTO ${s}.queues (name) SELECT DISTINCT queue FROM ins ON CONFLICT DO NOTHING),
cnt AS (${countPuts(s, "ins", "$5::bigint", "$8::smallint")})
SELECT id, ${notifyQueues("ins", "$6::text", "$7::text")} AS notified FROM ins ORDER BY id`,
    claim: `WITH now AS MATERIALIZED (SELECT ${s}.now_ms() AS t),
picked AS (
  SELECT id, ready_at, seq, octet_length(value) AS bytes FROM ${s}.items
  WHERE queue = $1 AND lease_owner IS NULL AND ready_at <= ${now}
    AND NOT EXISTS (SELECT 1 FROM ${s}.paused WHERE name = $1)
  ORDER BY ready_at, seq LIMIT $2 FOR UPDATE SKIP LOCKED
),
numbered AS (
  SELECT id, row_number() OVER w AS n, sum(bytes) OVER w AS running
  FROM picked WINDOW w AS (ORDER BY ready_at, seq)
),
batch AS MATERIALIZED (SELECT nextval('${s}.fronts') AS base)
UPDATE ${s}.items i SET lease_owner = o.owner, lease_master = $5,
  lease_until = ${now} + o.lease, attempts = i.attempts + 1,
  taken = (SELECT base FROM batch) * ${FRONT_SPACING} + nb.n
FROM numbered nb JOIN unnest($3::text[], $4::bigint[]) WITH ORDINALITY AS o(owner, lease, n)
  ON o.n = nb.n
WHERE i.id = nb.id AND (nb.n = 1 OR nb.running <= $6)
RETURNING i.id, i.attempts, i.value, nb.n, i.lease_until`,
    ack: `WITH now AS MATERIALIZED (SELECT ${s}.now_ms() AS t),
done AS (
  DELETE FROM ${s}.items i
  WHERE i.id = ANY($1::bigint[])
    AND (i.id, i.attempts, i.lease_owner) IN (SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[]))
  RETURNING i.id, i.attempts, i.lease_owner, i.queue, octet_length(i.value) AS bytes
),
res AS (
  INSERT INTO ${s}.items (id, queue, ready_at, seq, value)
  SELECT n.id, n.queue, ${now}, n.id, n.value
  FROM (SELECT nextval('${s}.ids') AS id, r.queue, r.value
        FROM unnest($4::bigint[], $5::text[], $6::bytea[], $10::int[], $11::text[])
          WITH ORDINALITY AS r(src, queue, value, att, owner, ord)
        WHERE (r.src, r.att, r.owner) IN (SELECT id, attempts, lease_owner FROM done)
        ORDER BY r.ord) n
  RETURNING queue, octet_length(value) AS bytes
),
reg AS (INSERT INTO ${s}.queues (name) SELECT DISTINCT queue FROM res ON CONFLICT DO NOTHING),
cnt AS (
  INSERT INTO ${s}.counters (queue, master, lane, acked, put, bytes)
  SELECT queue, $7::bigint, $12::smallint, sum(acked), sum(put), sum(bytes) FROM (
    SELECT queue, count(*) AS acked, 0 AS put, -sum(bytes) AS bytes FROM done GROUP BY queue
    UNION ALL SELECT queue, 0, count(*), sum(bytes) FROM res GROUP BY queue) c
  GROUP BY queue ORDER BY queue
  ON CONFLICT (queue, master, lane) DO UPDATE SET acked = ${s}.counters.acked + excluded.acked,
    put = ${s}.counters.put + excluded.put, bytes = ${s}.counters.bytes + excluded.bytes
)
SELECT id, attempts, lease_owner, ${notifyQueues("res", "$8::text", "$9::text")} AS notified
FROM done`,
    nack: `WITH now AS MATERIALIZED (SELECT ${s}.now_ms() AS t),
u AS (
  SELECT u.id, u.att, nextval('${s}.ids') AS seq
  FROM unnest($1::bigint[], $2::int[]) WITH ORDINALITY AS u(id, att, ord) ORDER BY u.ord
),
upd AS (
  UPDATE ${s}.items i SET lease_owner = NULL, lease_master = NULL, lease_until = NULL,
    taken = NULL, ready_at = ${now} + $4::bigint, seq = u.seq
  FROM u WHERE i.id = ANY($1::bigint[]) AND i.id = u.id AND i.attempts = u.att
    AND i.lease_owner = $3
  RETURNING i.id, i.queue
),
cnt AS (
  INSERT INTO ${s}.counters (queue, master, lane, nacked)
  SELECT queue, $5::bigint, $8::smallint, count(*) FROM upd
  GROUP BY queue ORDER BY queue
  ON CONFLICT (queue, master, lane) DO UPDATE SET nacked = ${s}.counters.nacked + excluded.nacked
)
SELECT id, queue, ${notifyQueues("upd", "$6::text", "$7::text")} AS notified FROM upd`,
    extend: `UPDATE ${s}.items i SET lease_until = ${s}.now_ms() + $4::bigint
FROM unnest($1::bigint[], $2::int[]) AS u(id, att)
WHERE i.id = ANY($1::bigint[]) AND i.id = u.id AND i.attempts = u.att AND i.lease_owner = $3
RETURNING i.id, i.lease_until`,
  };
}
