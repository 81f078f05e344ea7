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
 * token), inserts their results and, unless history is off, a record of
 * each in `finished`, in the same statement. A queue with limits or grouped
 * items claims through the `claim_special` function (schema.ts) instead; the
 * plain claim sees such a queue in the same statement and leaves it alone,
 * so no master can pass a limit on a stale belief (when it claims nothing, the
 * master asks whether that is why). Rows are found by
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

import { MAX_HISTORY_VALUE_BYTES } from "../../model/jobs.ts";
import { FRONT_SPACING } from "./schema.ts";

export { FRONT_SPACING };

/** The hot-path statements of schema `s` (already quoted). */
export interface Statements {
  /**
   * Puts: `$1` queues, `$2` values, `$3` delays (ms), `$4` max attempts,
   * `$5` master, `$6` channel, `$7` notification prefix, `$8` counter lane,
   * `$9` priorities (or NULL: all the default), `$10` groups (or NULL: none).
   * Returns `id`s in put order.
   */
  readonly put: string;
  /**
   * Puts with unique keys, to one queue: `$1` queue, `$2` values, `$3` keys
   * (NULL for a value without one; no key twice), `$4` delay (ms), `$5` max
   * attempts, `$6` priority, `$7` group (or NULL), `$8` key hold (ms, or
   * NULL), `$9` master, `$10` channel, `$11` notification prefix, `$12`
   * counter lane. Returns `kind, id, ukey, bytes`: kind `n` for each row
   * added, `l` for each live item that already had one of the keys.
   */
  readonly putKeyed: string;
  /**
   * Claims of a queue without limits or groups: `$1` queue, `$2` most rows,
   * `$3` owner per row, `$4` lease (ms) per row, `$5` master, `$6` most
   * bytes. Returns `id, attempts, value, n, lease_until, hold` (whether the
   * item's unique key is held after it finishes). A queue with limits or
   * grouped items claims nothing here (it claims with
   * {@link claimSpecial}); {@link special} tells, when a claim got nothing.
   */
  readonly claim: string;
  /** Whether queue `$1` has limits or grouped items: `yes`. */
  readonly special: string;
  /**
   * Claims of a queue with limits or groups (the `claim_special` function):
   * `$1` queue, `$2` owner per row, `$3` lease (ms) per row, `$4` master,
   * `$5` most bytes, `$6` the rate limit's burst (ms). Returns
   * `id, attempts, value, n, lease_until, hold` per row leased, and last one row
   * with no id that says whether the queue still needs this claim
   * (`special`), when its rate limit allows the next delivery (`next_at`,
   * or NULL), whether it has a concurrency or group concurrency limit
   * (`slots`) and whether that held this claim back (`blocked`).
   */
  readonly claimSpecial: string;
  /**
   * Acks, by {@link ackVariant}: `$1` ids, `$2` attempts, `$3` owners, `$4`
   * result source ids, `$5` result queues, `$6` result values, `$7` master,
   * `$8` channel, `$9` notification prefix, `$10` result source attempts,
   * `$11` result source owners, `$12` counter lane. Returns the leases
   * acked: `id, attempts, lease_owner, queue` (a result is kept only with
   * the very lease it came with: a stale ack of the same id in the same
   * batch adds nothing).
   */
  readonly acks: readonly string[];
  /**
   * Nacks: `$1` ids, `$2` attempts, `$3` owner, `$4` delay (ms), `$5` master,
   * `$6` channel, `$7` notification prefix, `$8` counter lane. Returns `id, queue`.
   */
  readonly nack: string;
  /** Extends: `$1` ids, `$2` attempts, `$3` owner, `$4` lease (ms). Returns `id, lease_until`. */
  readonly extend: string;
  /**
   * Progress: `$1` id, `$2` attempt, `$3` owner, `$4` percent (or NULL),
   * `$5` message (or NULL), `$6` lease (ms). Returns `lease_until` when held.
   */
  readonly progress: string;
  /** The database's clock, in ms since the epoch: `now`. */
  readonly now: string;
}

/**
 * Which of {@link Statements.acks} acks a batch: one that records each item
 * in the history when `history`, one that holds unique keys when `holds`
 * (some item of the batch was put with a key hold).
 *
 * @example
 * ```ts
 * import { ackVariant } from "./statements.ts";
 * console.log(ackVariant(false, false), ackVariant(true, true)); // 0 3
 * ```
 */
export function ackVariant(history: boolean, holds: boolean): number {
  return (history ? 2 : 0) + (holds ? 1 : 0);
}

/** Adds `put` and `bytes` per queue of CTE `rows(queue, bytes)` to the counters of `master` and `lane`. */
function countPuts(s: string, rows: string, master: string, lane: string): string {
  return `INSERT INTO ${s}.counters (queue, master, lane, put, bytes)
    SELECT queue, ${master}, ${lane}, n, b
    FROM (SELECT queue, count(*) AS n, sum(bytes) AS b FROM ${rows} GROUP BY queue) g ORDER BY queue
    ON CONFLICT (queue, master, lane) DO UPDATE SET put = ${s}.counters.put + excluded.put,
      bytes = ${s}.counters.bytes + excluded.bytes`;
}

/** Sends one notification per distinct queue of `rows(queue)` (a CTE or subquery), when there are any. */
function notifyQueues(rows: string, channel: string, prefix: string): string {
  return `(SELECT count(pg_notify(${channel}, ${prefix} || q)) FROM (SELECT DISTINCT queue AS q FROM ${rows} r) d)`;
}

/**
 * The ack statement of schema `s`: with a record of each acked item in the
 * history when `history`, and with its unique key held for its key hold
 * when `holds` (an item put with one). Each part is planned with every
 * execution (the statement's plans are custom, for its arrays' sizes), so
 * the plain ack leaves out what it does not need.
 */
function ackSql(s: string, history: boolean, holds: boolean): string {
  const now = `(SELECT t FROM now)`;
  const ctes = [
    `now AS MATERIALIZED (SELECT ${s}.now_ms() AS t)`,
    `done AS (
  DELETE FROM ${s}.items i
  WHERE i.id = ANY($1::bigint[])
    AND (i.id, i.attempts, i.lease_owner) IN (SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[]))
  RETURNING i.id, i.attempts, i.lease_owner, i.queue, octet_length(i.value) AS bytes${
      history
        ? `, i.priority, i.grp, i.ukey, i.last_error, i.created_at, i.leased_at, i.progress_percent,
    i.progress_message, i.progress_at, i.value`
        : ""
    }${holds ? `, i.ukey AS hold_key, i.key_hold` : ""}
)`,
    `res AS (
  INSERT INTO ${s}.items (id, queue, ready_at, seq, value, created_at)
  SELECT n.id, n.queue, ${now}, n.id, n.value, ${now}
  FROM (SELECT nextval('${s}.ids') AS id, r.queue, r.value
        FROM unnest($4::bigint[], $5::text[], $6::bytea[], $10::int[], $11::text[])
          WITH ORDINALITY AS r(src, queue, value, att, owner, ord)
        WHERE (r.src, r.att, r.owner) IN (SELECT id, attempts, lease_owner FROM done)
        ORDER BY r.ord) n
  RETURNING queue, octet_length(value) AS bytes
)`,
  ];
  if (history) {
    ctes.push(`hist AS (
  INSERT INTO ${s}.finished (id, queue, state, attempts, priority, grp, ukey, error, value, result,
    progress_percent, progress_message, progress_at, created_at, finished_at)
  SELECT d.id, d.queue, 'done', d.attempts, d.priority, d.grp, d.ukey, d.last_error,
    CASE WHEN d.bytes + coalesce(octet_length(x.value), 0) <= ${MAX_HISTORY_VALUE_BYTES}
      THEN d.value END,
    CASE WHEN d.bytes + coalesce(octet_length(x.value), 0) <= ${MAX_HISTORY_VALUE_BYTES}
      THEN x.value END,
    ${currentProgress("d")}, d.created_at, ${now}
  FROM done d LEFT JOIN unnest($4::bigint[], $6::bytea[], $10::int[], $11::text[])
      AS x(src, value, att, owner)
    ON x.src = d.id AND x.att = d.attempts AND x.owner = d.lease_owner
)`);
  }
  if (holds) {
    ctes.push(`holds AS (
  INSERT INTO ${s}.key_holds (queue, ukey, id, until)
  SELECT d.queue, d.hold_key, d.id, ${now} + d.key_hold FROM done d
  WHERE d.hold_key IS NOT NULL AND d.key_hold > 0 ORDER BY 1, 2
  ON CONFLICT (queue, ukey) DO UPDATE SET id = excluded.id, until = excluded.until
)`);
  }
  ctes.push(
    `reg AS (INSERT INTO ${s}.queues (name) SELECT DISTINCT queue FROM res ON CONFLICT DO NOTHING)`,
    `cnt AS (
  INSERT INTO ${s}.counters (queue, master, lane, acked, put, bytes)
  SELECT queue, $7::bigint, $12::smallint, sum(acked), sum(put), sum(bytes) FROM (
    SELECT queue, count(*) AS acked, 0 AS put, -sum(bytes) AS bytes FROM done GROUP BY queue
    UNION ALL SELECT queue, 0, count(*), sum(bytes) FROM res GROUP BY queue) c
  GROUP BY queue ORDER BY queue
  ON CONFLICT (queue, master, lane) DO UPDATE SET acked = ${s}.counters.acked + excluded.acked,
    put = ${s}.counters.put + excluded.put, bytes = ${s}.counters.bytes + excluded.bytes
)`,
  );
  return `WITH ${ctes.join(",\n")}
SELECT id, attempts, lease_owner, queue, ${notifyQueues("res", "$8::text", "$9::text")} AS notified
FROM done`;
}

/**
 * The progress columns of row `r` (percent, message, time) as its current
 * lease reported them: progress reported under an earlier lease is not the
 * current work's, so it reads as none (a new lease reports its own, and the
 * claim path never writes for it).
 *
 * @example
 * ```ts
 * import { currentProgress } from "./statements.ts";
 * console.log(currentProgress("i").split(", ").length); // 3
 * ```
 */
export function currentProgress(r: string): string {
  const current = `${r}.progress_at >= ${r}.leased_at`;
  return `CASE WHEN ${current} THEN ${r}.progress_percent END, CASE WHEN ${current} THEN ${r}.progress_message END, CASE WHEN ${current} THEN ${r}.progress_at END`;
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
  INSERT INTO ${s}.items (id, queue, ready_at, seq, max_attempts, value, priority, grp, created_at)
  SELECT n.id, n.queue, ${now} + n.delay, n.id, n.max, n.value, coalesce(n.pri, 0), n.grp, ${now}
  FROM (SELECT nextval('${s}.ids') AS id, u.queue, u.value, u.delay, u.max, u.pri, u.grp
        FROM unnest($1::text[], $2::bytea[], $3::bigint[], $4::int[], $9::smallint[], $10::text[])
          WITH ORDINALITY AS u(queue, value, delay, max, pri, grp, ord)
        ORDER BY u.ord) n
  RETURNING id, queue, octet_length(value) AS bytes
),
reg AS (INSERT INTO ${s}.queues (name) SELECT DISTINCT queue FROM ins ON CONFLICT DO NOTHING),
cnt AS (${countPuts(s, "ins", "$5::bigint", "$8::smallint")})
SELECT id, ${notifyQueues("ins", "$6::text", "$7::text")} AS notified FROM ins ORDER BY id`,
    putKeyed: `WITH now AS MATERIALIZED (SELECT ${s}.now_ms() AS t),
ins AS (
  INSERT INTO ${s}.items (id, queue, ready_at, seq, max_attempts, value, priority, grp, ukey,
    key_hold, created_at)
  SELECT n.id, $1::text, ${now} + $4::bigint, n.id, $5::int, n.value, $6::smallint, $7::text, n.key,
    $8::bigint, ${now}
  FROM (SELECT m.* FROM (SELECT nextval('${s}.ids') AS id, u.value, u.key
          FROM unnest($2::bytea[], $3::text[]) WITH ORDINALITY AS u(value, key, ord)
          ORDER BY u.ord) m
        ORDER BY m.key NULLS FIRST, m.id) n
  ON CONFLICT (queue, ukey) WHERE ukey IS NOT NULL DO NOTHING
  RETURNING id, queue, ukey, octet_length(value) AS bytes
),
reg AS (INSERT INTO ${s}.queues (name) SELECT DISTINCT queue FROM ins ON CONFLICT DO NOTHING),
cnt AS (${countPuts(s, "ins", "$9::bigint", "$12::smallint")}),
live AS (
  SELECT i.id, i.ukey FROM ${s}.items i WHERE i.queue = $1::text AND i.ukey = ANY($3::text[])
)
SELECT 'n' AS kind, id, ukey, bytes, ${
      notifyQueues("ins", "$10::text", "$11::text")
    } AS notified FROM ins
UNION ALL SELECT 'l', id, ukey, 0, 0 FROM live`,
    claim: `WITH now AS MATERIALIZED (SELECT ${s}.now_ms() AS t),
picked AS (
  SELECT id, priority, ready_at, seq, octet_length(value) AS bytes FROM ${s}.items
  WHERE queue = $1 AND lease_owner IS NULL AND grp IS NULL AND ready_at <= ${now}
    AND NOT EXISTS (SELECT 1 FROM ${s}.paused WHERE name = $1)
    AND NOT ${s}.queue_special($1)
  ORDER BY priority DESC, ready_at, seq LIMIT $2 FOR UPDATE SKIP LOCKED
),
numbered AS (
  SELECT id, row_number() OVER w AS n, sum(bytes) OVER w AS running
  FROM picked WINDOW w AS (ORDER BY priority DESC, ready_at, seq)
),
batch AS MATERIALIZED (SELECT nextval('${s}.fronts') AS base)
UPDATE ${s}.items i SET lease_owner = o.owner, lease_master = $5,
  lease_until = ${now} + o.lease, leased_at = ${now}, attempts = i.attempts + 1,
  taken = (SELECT base FROM batch) * ${FRONT_SPACING} + nb.n
FROM numbered nb JOIN unnest($3::text[], $4::bigint[]) WITH ORDINALITY AS o(owner, lease, n)
  ON o.n = nb.n
WHERE i.id = nb.id AND (nb.n = 1 OR nb.running <= $6)
RETURNING i.id, i.attempts, i.value, nb.n, i.lease_until, i.key_hold IS NOT NULL AS hold`,
    special: `SELECT ${s}.queue_special($1) AS yes`,
    claimSpecial: `SELECT c_id AS id, c_attempts AS attempts, c_value AS value, c_n AS n,
  c_lease_until AS lease_until, c_hold AS hold, c_next_at AS next_at, c_special AS special,
  c_slots AS slots, c_blocked AS blocked
FROM ${s}.claim_special($1::text, $2::text[], $3::bigint[], $4::bigint, $5::bigint, $6::int)`,
    acks: [
      ackSql(s, false, false),
      ackSql(s, false, true),
      ackSql(s, true, false),
      ackSql(s, true, true),
    ],
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
    progress: `WITH now AS MATERIALIZED (SELECT ${s}.now_ms() AS t)
UPDATE ${s}.items i SET progress_percent = $4::double precision, progress_message = $5::text,
  progress_at = ${now}, lease_until = ${now} + $6::bigint
WHERE i.id = $1::bigint AND i.attempts = $2::int AND i.lease_owner = $3::text
RETURNING i.lease_until`,
  };
}
