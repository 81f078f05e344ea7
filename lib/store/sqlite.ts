/**
 * The durable store: SQLite (through the runtime's built-in `node:sqlite`) in
 * WAL mode with full fsync, one row per live item.
 *
 * Changes are collected as the engine makes them and written in one
 * transaction per turn of the event loop (group commit); replies that promise
 * durability wait for {@link SqliteStore.commit}. Changes that cancel out
 * before a commit (an item put and acked in the same window) never touch the
 * disk. Deleted rows' pages are returned to the file system (incremental
 * vacuum) and the WAL is truncated after large drains, so the files shrink
 * back as queues empty.
 *
 * Each row keeps all of an item's {@link StoredItem} fields: besides its value
 * and delivery state, its priority, group, unique key, key hold and creation
 * time. A database of schema version 1 (written before those were kept) is
 * upgraded in place when it is opened, in one transaction that keeps every
 * item: its items load with no group or key, priority 0 and no creation time.
 *
 * It also keeps each queue's counters (put, acked, nacked, expired, failed,
 * dead) in a table of their own, so they survive a restart: each commit
 * saves, in its transaction, the counters of the queues its changes touched
 * (one row a queue, read from the engine through
 * {@link SqliteStore.readCounters}); a commit whose changes cancelled out
 * leaves them for the next one, or for {@link SqliteStore.close}. A database
 * of schema 2 gains the table when opened; its queues count from zero.
 *
 * A commit that fails (the disk is full, an I/O error) rolls its transaction
 * back and discards the batch: its changes are never written, not even with
 * a later commit, so the replies that waited for it can truthfully say "not
 * stored". The items the batch inserted go to {@link SqliteStore.onDiscard}
 * first. The next commit carries only the changes made after the failure.
 *
 * The database is opened in exclusive locking mode: a second master on the
 * same directory fails at once with {@link StoreLockedError}. A file that is
 * not a taskq database, is damaged (down to a single item whose value cannot be
 * decoded), was emptied to 0 bytes, or comes from a newer taskq is refused
 * with a named error (lib/store/errors.ts) and never overwritten. Opening
 * checks every table but the items (`PRAGMA quick_check` of each); the items'
 * pages, all of them, are checked as the load reads them, so damage there
 * fails the load (a full quick_check at open took 0.35 s a million items).
 *
 * The load streams ({@link SqliteStore.load}): items come a page of 8,192 at
 * a time, in columns ({@link ItemBatch}), their values as the msgpack bytes
 * stored, read with one aggregating statement a page rather than a row at a
 * time (node:sqlite costs microseconds a row: 9 s for a million rows read as
 * objects, against under 1 s this way).
 *
 * SQLite was chosen over Deno KV by measurement on this machine: 785,000
 * inserts/s against 204,000 with 1,000 per transaction, 6,800/s against
 * 2,300/s one per transaction, and it needs no unstable flag.
 *
 * @module
 */

import { DatabaseSync, type StatementSync } from "node:sqlite";
import { clearImmediate, setImmediate } from "node:timers";
import { checkEncoded, encode, encodedEnd } from "../model/codec.ts";
import { ProtocolError } from "../errors.ts";
import { StoreCorruptError, StoreError, StoreLockedError, StoreVersionError } from "./errors.ts";
import type {
  ItemBatch,
  LoadedState,
  RareFields,
  Store,
  StoredCounters,
  StoredItem,
} from "./store.ts";

/** File name of the database inside the data directory. */
export const DATABASE_FILE = "taskq.db";

/** Marks a SQLite file as taskq's ("tq" + schema family), in `PRAGMA application_id`. */
export const APPLICATION_ID = 0x74710001;

/**
 * Version of the schema this release writes, in `PRAGMA user_version`:
 * 1 kept an item's value and delivery state; 2 adds its priority, group,
 * unique key, key hold and creation time; 3 adds the queues' counters.
 * Older versions are upgraded when opened ({@link MIGRATIONS}); newer ones
 * are refused.
 */
export const SCHEMA_VERSION = 3;

/** The queues' counters (schema 3), in a new database and added to an older one. */
const COUNTERS_TABLE = `
  CREATE TABLE counters (
    queue TEXT PRIMARY KEY,
    put INTEGER NOT NULL DEFAULT 0,
    acked INTEGER NOT NULL DEFAULT 0,
    nacked INTEGER NOT NULL DEFAULT 0,
    expired INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    dead INTEGER NOT NULL DEFAULT 0
  );
`;

/**
 * The statements that upgrade a database from the version each is keyed by to
 * the next one, run in the transaction that opens it. Added columns get the
 * values that mean "none", so every item kept reads back as it was.
 */
const MIGRATIONS: Readonly<Record<number, string>> = {
  1: `
    ALTER TABLE items ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE items ADD COLUMN grp TEXT;
    ALTER TABLE items ADD COLUMN ukey TEXT;
    ALTER TABLE items ADD COLUMN key_hold INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE items ADD COLUMN created_at INTEGER;
  `,
  2: COUNTERS_TABLE,
};

/** Free pages above which a commit gives space back to the file system. */
const VACUUM_FREE_PAGES = 256;

/** Rows written by one multi-row INSERT (measured: twice the speed of one per row). */
const INSERT_CHUNK = 64;

/** Ids removed by one multi-row DELETE. */
const DELETE_CHUNK = 256;

/** The items table's columns, in the order a full INSERT binds them. */
const ITEM_COLUMNS = [
  "id",
  "queue",
  "value",
  "attempts",
  "ready_at",
  "max_attempts",
  "last_error",
  "priority",
  "grp",
  "ukey",
  "key_hold",
  "created_at",
];

/**
 * The columns a plain item's INSERT binds: one with no priority, group, key
 * or key hold (most items), whose other columns take their defaults, which
 * mean "none". Binding 8 parameters a row instead of 12 keeps inserts as fast
 * as before those fields were kept (measured: the full row costs a fifth more).
 */
const PLAIN_COLUMNS = ITEM_COLUMNS.filter((column) =>
  !["priority", "grp", "ukey", "key_hold"].includes(column)
);

/** A value bound to a statement's parameter. */
type Param = string | number | Uint8Array | null;

/** WAL size (bytes) kept after a checkpoint. */
const WAL_SIZE_LIMIT = 16 * 1024 * 1024;

/**
 * For tests only: an environment variable that, when set to a positive whole
 * number of pages, is taken as {@link SqliteStoreOptions.maxPageCount} by a
 * store opened without that option, so that a real `taskq master` process
 * meets SQLITE_FULL as on a full disk (tests/hostile_more_test.ts). Read only
 * when the process may read it without a prompt; never set it in production.
 */
export const TEST_MAX_PAGES_ENV = "TASKQ_TEST_SQLITE_MAX_PAGES";

/** {@link TEST_MAX_PAGES_ENV}'s value, if it is set and may be read. */
function testMaxPageCount(): number | undefined {
  try {
    if (
      Deno.permissions.querySync({ name: "env", variable: TEST_MAX_PAGES_ENV }).state !== "granted"
    ) {
      return undefined;
    }
    const text = Deno.env.get(TEST_MAX_PAGES_ENV);
    return text === undefined || text === "" ? undefined : Number(text);
  } catch {
    return undefined; // no permission to read the environment: not a test
  }
}

/** Options of a {@link SqliteStore}. */
export interface SqliteStoreOptions {
  /**
   * For tests: the most pages (of 4 KiB) the database file may grow to
   * (`PRAGMA max_page_count`), so that writes past it fail with SQLITE_FULL
   * as on a full disk. No limit beyond SQLite's own by default.
   */
  maxPageCount?: number;
}

type Change = "insert" | "update" | "delete";

/** One page of items as {@link SqliteStore} reads it: each column aggregated. */
interface PageRow {
  n: number;
  /** How many rows are not of the page's last row's queue. */
  mixed: number | null;
  /** Above 0 when some row is not a plain ready item ({@link NOT_PLAIN}). */
  notPlain: number | null;
  /** Every value's bytes, one after the other. */
  bytes: Uint8Array | null;
  /** Each creation time (ms since the epoch), comma-separated; "n" for none. */
  created: string | null;
  /** The ids, comma-separated (read only when they are not consecutive). */
  ids?: string | null;
}

/** A row that is not a plain ready item, as a load reads it on its own. */
interface RareRow {
  id: number;
  attempts: number;
  max_attempts: number;
  ready_at: number;
  last_error: string | null;
  priority: number;
  /** The item's group; NULL for none. */
  grp: string | null;
  /** The item's unique key; NULL for none. */
  ukey: string | null;
  key_hold: number;
}

/** Rows a load reads per page (per batch). */
const LOAD_PAGE_ROWS = 8192;

/**
 * Above 0 for a row that is not a plain, never-delivered, ready item (SQL;
 * every term is 0 for such a row and never negative). One scalar `max` is
 * cheaper per row than a chain of ORs (measured: about 0.3 s a million rows).
 */
const NOT_PLAIN = "max(attempts, max_attempts, ready_at, key_hold, abs(priority), " +
  "last_error IS NOT NULL, grp IS NOT NULL, ukey IS NOT NULL)";

/** Separates queue names in a page's aggregate: a control character, never in a valid name. */
const QUEUE_SEPARATOR = 0x1f;

/** The character code of ",", between the numbers of a list. */
const COMMA = 0x2c;

/**
 * Reads the comma-separated numbers of `text` into `out` ("n" as NaN);
 * returns how many there were (more than `out` holds: not stored).
 */
function parseNumbers(text: string, out: Float64Array | Uint32Array): number {
  if (text === "") return 0;
  let count = 0;
  let value = 0;
  let negative = false;
  let start = 0;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : COMMA;
    if (c >= 0x30 && c <= 0x39) {
      value = value * 10 + (c - 0x30);
    } else if (c === COMMA) {
      if (count < out.length) out[count] = negative ? -value : value;
      count++;
      value = 0;
      negative = false;
      start = i + 1;
    } else if (c === 0x2d && i === start) {
      negative = true;
    } else {
      // Anything else ("n", a fraction, an exponent): this number the slow way.
      let stop = text.indexOf(",", i);
      if (stop < 0) stop = text.length;
      const word = text.slice(start, stop);
      if (count < out.length) out[count] = word === "n" ? NaN : Number(word);
      count++;
      value = 0;
      negative = false;
      i = stop;
      start = stop + 1;
    }
  }
  return count;
}

/** The index of `id` in the ascending `ids`, or -1. */
function indexOf(ids: Float64Array, id: number): number {
  let low = 0;
  let high = ids.length - 1;
  while (low <= high) {
    const mid = (low + high) >>> 1;
    if (ids[mid] < id) low = mid + 1;
    else if (ids[mid] > id) high = mid - 1;
    else return mid;
  }
  return -1;
}

/** The schema of a new database: version {@link SCHEMA_VERSION}. */
const SCHEMA = `
  CREATE TABLE items (
    id INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    value BLOB NOT NULL,
    attempts INTEGER NOT NULL,
    ready_at INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    last_error TEXT,
    priority INTEGER NOT NULL DEFAULT 0,
    grp TEXT,
    ukey TEXT,
    key_hold INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER
  );
  CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
  ${COUNTERS_TABLE}
`;

/** Pages in the database file: 0 for a new, empty file. */
function pageCount(db: DatabaseSync): number {
  return (db.prepare("PRAGMA page_count").get() as { page_count: number }).page_count;
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** An INSERT of rows of some columns of `items`: one row, and {@link INSERT_CHUNK} rows. */
interface InsertStatements {
  /** Inserts (or replaces) one row. */
  one: StatementSync;
  /** Inserts (or replaces) {@link INSERT_CHUNK} rows. */
  many: StatementSync;
  /** Parameters per row: the number of columns. */
  width: number;
}

/** Prepares the INSERTs of rows of `columns`. */
function prepareInsert(db: DatabaseSync, columns: readonly string[]): InsertStatements {
  const into = `INSERT OR REPLACE INTO items (${columns.join(", ")}) VALUES `;
  const row = `(${columns.map(() => "?").join(", ")})`;
  return {
    one: db.prepare(into + row),
    many: db.prepare(into + Array(INSERT_CHUNK).fill(row).join(", ")),
    width: columns.length,
  };
}

function sqliteMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The file beside the database that says a store was created in this directory. */
export const CREATED_MARKER_FILE = "taskq.created";

/**
 * Refuses a database file of 0 bytes in a directory where a store was
 * created ({@link CREATED_MARKER_FILE}): taskq's file holds its first page
 * from the moment the store is created, so an empty one there was emptied
 * (truncated), and starting afresh would silently lose every item (opening
 * it would also make SQLite delete the WAL file beside it). A missing file,
 * or an empty one where no store was ever created, is a new store.
 * @throws {StoreCorruptError} for an emptied file.
 */
function refuseEmptied(path: string, marker: string): void {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw new StoreError(`cannot open ${path}: ${sqliteMessage(error)}`);
  }
  if (info.isFile && info.size === 0 && exists(marker)) {
    throw new StoreCorruptError(
      `${path} is empty (0 bytes), which a taskq database never is: it was truncated and ` +
        `the items it held are lost; it was left untouched: restore a backup, or remove it ` +
        `to start with an empty store`,
    );
  }
}

/** A store in a SQLite database inside a data directory. */
export class SqliteStore implements Store {
  /** Always true: committed changes survive the process. */
  readonly durable = true;
  /** Path of the database file. */
  readonly path: string;
  readonly #db: DatabaseSync;
  readonly #insert: InsertStatements;
  readonly #insertPlain: InsertStatements;
  readonly #update: StatementSync;
  readonly #delete: StatementSync;
  readonly #deleteMany: StatementSync;
  readonly #setNextId: StatementSync;
  readonly #saveCounters: StatementSync;
  readonly #deleteCounters: StatementSync;
  /** Queues whose counters the next commit saves. */
  #counted = new Set<string>();
  /** The queue last added to {@link #counted} (most changes in a row are to one queue). */
  #lastCounted: string | undefined = undefined;
  readonly #freelistCount: StatementSync;
  readonly #pageCount: StatementSync;
  /** Pending change per item, collapsed (insert+delete = nothing). */
  #pending = new Map<number, { change: Change; item: StoredItem }>();
  #nextId = 1;
  #committedNextId = 1;
  #waiters: PromiseWithResolvers<void> | undefined;
  #timer: ReturnType<typeof setImmediate> | undefined;
  #closed = false;
  /** Commit durations in ms, for metrics; the latest few hundred. */
  readonly commitTimes: number[] = [];
  /** Called after each commit with its duration in ms (the master's metrics). */
  onCommit: ((ms: number) => void) | undefined = undefined;
  /** Set by the engine: a queue's counters as they are now (`undefined`: it is no more). */
  readCounters: ((queue: string) => StoredCounters | undefined) | undefined = undefined;
  /** Called when a commit fails, with the items its discarded batch inserted. */
  onDiscard: ((inserted: readonly StoredItem[]) => void) | undefined = undefined;

  /**
   * Opens (creating if needed) the store in directory `dir`.
   * @throws {StoreLockedError | StoreCorruptError | StoreVersionError | StoreError}
   */
  constructor(dir: string, options: SqliteStoreOptions = {}) {
    try {
      Deno.mkdirSync(dir, { recursive: true });
    } catch (error) {
      throw new StoreError(`cannot create data directory ${dir}: ${sqliteMessage(error)}`);
    }
    this.path = `${dir}/${DATABASE_FILE}`;
    const marker = `${dir}/${CREATED_MARKER_FILE}`;
    refuseEmptied(this.path, marker);
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(this.path);
    } catch (error) {
      throw new StoreError(`cannot open ${this.path}: ${sqliteMessage(error)}`);
    }
    try {
      this.#open(db);
    } catch (error) {
      db.close();
      throw error;
    }
    this.#db = db;
    const maxPageCount = options.maxPageCount ?? testMaxPageCount();
    if (maxPageCount !== undefined) {
      if (!Number.isSafeInteger(maxPageCount) || maxPageCount < 1) {
        db.close();
        throw new RangeError(
          `maxPageCount must be a positive whole number of pages, not ${maxPageCount}`,
        );
      }
      db.prepare(`PRAGMA max_page_count = ${maxPageCount}`).get();
    }
    if (!exists(marker)) Deno.writeTextFileSync(marker, "a taskq store was created here\n");
    this.#insert = prepareInsert(db, ITEM_COLUMNS);
    this.#insertPlain = prepareInsert(db, PLAIN_COLUMNS);
    this.#update = db.prepare(
      "UPDATE items SET attempts = ?, ready_at = ?, max_attempts = ?, last_error = ?, " +
        "priority = ?, grp = ?, ukey = ?, key_hold = ?, created_at = ? WHERE id = ?",
    );
    this.#delete = db.prepare("DELETE FROM items WHERE id = ?");
    this.#deleteMany = db.prepare(
      `DELETE FROM items WHERE id IN (${Array(DELETE_CHUNK).fill("?").join(", ")})`,
    );
    this.#freelistCount = db.prepare("PRAGMA freelist_count");
    this.#pageCount = db.prepare("PRAGMA page_count");
    this.#setNextId = db.prepare(
      "INSERT INTO meta (key, value) VALUES ('next_id', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    );
    this.#saveCounters = db.prepare(
      `INSERT OR REPLACE INTO counters (queue, put, acked, nacked, expired, failed, dead)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    );
    this.#deleteCounters = db.prepare("DELETE FROM counters WHERE queue = ?");
  }

  #open(db: DatabaseSync): void {
    const where = this.path;
    let version: number;
    try {
      // Exclusive locking: the lock is taken by the first access and held until close.
      db.exec("PRAGMA locking_mode = EXCLUSIVE");
      // Identified before anything is written: another program's file, or a
      // newer taskq's, is never changed (not even switched to WAL).
      version = this.#identify(db);
      // Incremental vacuum can only be chosen for a new file, and before the
      // switch to WAL (which writes the file's first page).
      if (version === 0) db.exec("PRAGMA auto_vacuum = INCREMENTAL");
      db.exec("PRAGMA journal_mode = WAL");
      db.exec("PRAGMA synchronous = FULL");
      db.exec(`PRAGMA journal_size_limit = ${WAL_SIZE_LIMIT}`);
      db.exec("BEGIN IMMEDIATE");
    } catch (error) {
      if (error instanceof StoreError) throw error;
      const message = sqliteMessage(error);
      if (/locked|busy/i.test(message)) {
        throw new StoreLockedError(
          `data directory in use: ${where} is locked by another running master ` +
            `(stop it, or give this one another --data directory)`,
        );
      }
      throw new StoreCorruptError(
        `${where} is not a usable taskq database (${message}); it was left untouched: ` +
          `move it away or choose another --data directory`,
      );
    }
    try {
      if (version === 0) {
        db.exec(SCHEMA);
        db.exec(`PRAGMA application_id = ${APPLICATION_ID}`);
        db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
      } else {
        // Every table but the items (their pages are checked as the load reads them,
        // every one: a full quick_check costs 0.35 s a million items, 4 s for ten).
        const problems: string[] = [];
        const tables = db.prepare(
          "SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'items' ORDER BY name",
        ).all() as { name: string }[];
        for (const { name } of tables) {
          const check = db.prepare(`PRAGMA quick_check("${name}")`).all() as {
            quick_check: string;
          }[];
          for (const row of check) if (row.quick_check !== "ok") problems.push(row.quick_check);
        }
        if (problems.length > 0) {
          throw new StoreCorruptError(
            `${where} is damaged (${problems.slice(0, 3).join("; ")}); ` +
              `it was left untouched: restore a backup or move it away`,
          );
        }
        this.#migrate(db, version);
      }
      db.exec("COMMIT");
    } catch (error) {
      try {
        db.exec("ROLLBACK");
      } catch {
        // nothing to roll back
      }
      if (error instanceof StoreError) throw error;
      throw new StoreCorruptError(
        `${where} is damaged (${sqliteMessage(error)}); it was left untouched: ` +
          `restore a backup or move it away`,
      );
    }
  }

  /**
   * Upgrades a database of schema `from` to {@link SCHEMA_VERSION}, inside the
   * transaction that opens it: either every step and the new version are
   * committed, or (the transaction rolled back) none.
   * @throws {StoreError} when a step fails (a full disk, an I/O error).
   */
  #migrate(db: DatabaseSync, from: number): void {
    for (let version = from; version < SCHEMA_VERSION; version++) {
      try {
        db.exec(MIGRATIONS[version]);
        db.exec(`PRAGMA user_version = ${version + 1}`);
      } catch (error) {
        throw new StoreError(
          `cannot upgrade ${this.path} from schema ${version} to ${version + 1}: ` +
            `${sqliteMessage(error)}; it was left as it was (if the disk is full, free space ` +
            `for the data directory)`,
          { cause: error },
        );
      }
    }
  }

  /**
   * Reads (only) the file's identity: its schema version, or 0 for a new file
   * (empty, or a SQLite file with no table and no mark).
   * @throws {StoreCorruptError} for another program's SQLite database, or a
   * taskq mark with no schema version.
   * @throws {StoreVersionError} for a database written by a newer taskq.
   */
  #identify(db: DatabaseSync): number {
    if (pageCount(db) === 0) return 0;
    const where = this.path;
    const appId = (db.prepare("PRAGMA application_id").get() as { application_id: number })
      .application_id;
    const version = (db.prepare("PRAGMA user_version").get() as { user_version: number })
      .user_version;
    const tables = db.prepare("SELECT count(*) AS n FROM sqlite_master").get() as { n: number };
    if (appId === 0 && version === 0 && tables.n === 0) return 0;
    if (appId !== APPLICATION_ID) {
      throw new StoreCorruptError(
        `${where} is a SQLite database but not taskq's; it was left untouched: ` +
          `choose another --data directory`,
      );
    }
    if (version > SCHEMA_VERSION) {
      throw new StoreVersionError(
        `${where} was written by a newer taskq (schema ${version}, this release reads ` +
          `${SCHEMA_VERSION}); upgrade taskq to use it`,
      );
    }
    if (version < 1) {
      // taskq marks a file and sets its version in the transaction that creates it.
      throw new StoreCorruptError(
        `${where} is marked as taskq's but has no schema version (${version}); it was left ` +
          `untouched: move it away or choose another --data directory`,
      );
    }
    return version;
  }

  /** Whether changes are waiting for a commit. */
  get dirty(): boolean {
    return this.#pending.size > 0 || this.#nextId !== this.#committedNextId;
  }

  /**
   * Reads the next id to use and the queues' counters; the live items, in id
   * order, are read a page at a time as {@link LoadedState.batches} is
   * iterated ({@link #pages}).
   */
  load(): Promise<LoadedState> {
    try {
      return Promise.resolve(this.#read());
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #read(): LoadedState {
    const meta = this.#db.prepare("SELECT value FROM meta WHERE key = 'next_id'").get() as
      | { value: number }
      | undefined;
    const top = this.#db.prepare("SELECT max(id) AS id FROM items").get() as { id: number | null };
    const maxId = top.id ?? 0;
    const nextId = Math.max(meta?.value ?? 1, maxId + 1);
    this.#nextId = this.#committedNextId = nextId;
    const batches = this.#pages(maxId);
    const counters = this.#db.prepare(
      "SELECT queue, put, acked, nacked, expired, failed, dead FROM counters ORDER BY queue",
    ).all() as unknown as StoredCounters[];
    if (counters.length === 0) return { batches, nextId };
    return {
      batches,
      nextId,
      counters: counters.map((row) => ({
        queue: String(row.queue),
        put: Number(row.put),
        acked: Number(row.acked),
        nacked: Number(row.nacked),
        expired: Number(row.expired),
        failed: Number(row.failed),
        dead: Number(row.dead),
      })),
    };
  }

  /**
   * The items with ids up to `maxId` (the largest at load: rows inserted
   * since are the engine's own), {@link LOAD_PAGE_ROWS} at a time, each page
   * read when it is pulled.
   *
   * node:sqlite costs microseconds a row returned (measured: 9 s for
   * 1,000,000 rows as objects), so a page is read by one statement that
   * aggregates each column in SQL: ids and creation times as comma-separated
   * numbers, the values as one BLOB (`group_concat` keeps their bytes as they
   * are), split again where each msgpack value ends ({@link encodedEnd},
   * which also checks that each is well formed; none is decoded). The
   * aggregates step over the page's rows in rowid order (a range scan of the primary key; the ids, when returned, are
   * checked to ascend). Rows with anything but a plain ready item's state
   * (attempts, a delay, a priority, group, key, error) are few: they are read
   * again one by one.
   * @throws {StoreCorruptError} from the iteration when a page does not add up
   *   or a value is not valid.
   */
  *#pages(maxId: number): Generator<ItemBatch> {
    try {
      yield* this.#readPages(maxId);
    } catch (error) {
      if (error instanceof StoreError) throw error;
      throw new StoreCorruptError(
        `${this.path} is damaged (${sqliteMessage(error)}); it was left untouched: ` +
          `restore a backup or move it away`,
        { cause: error },
      );
    }
  }

  /** {@link #pages}, with SQLite's errors as they come. */
  *#readPages(maxId: number): Generator<ItemBatch> {
    const db = this.#db;
    const pageEnd = db.prepare(
      `SELECT id, queue FROM items WHERE id > ? ORDER BY id LIMIT 1 OFFSET ${LOAD_PAGE_ROWS - 1}`,
    );
    const lastRow = db.prepare(
      "SELECT id, queue FROM items WHERE id > ? AND id <= ? ORDER BY id DESC LIMIT 1",
    );
    const aggregates = `count(*) AS n, sum(queue != ?) AS mixed, max(${NOT_PLAIN}) AS notPlain,
      CAST(group_concat(value, x'') AS BLOB) AS bytes,
      group_concat(coalesce(created_at, 'n')) AS created`;
    const dense = db.prepare(`SELECT ${aggregates} FROM items WHERE id > ? AND id <= ?`);
    const sparse = db.prepare(
      `SELECT ${aggregates}, group_concat(id) AS ids FROM items WHERE id > ? AND id <= ?`,
    );
    const queues = db.prepare(
      `SELECT group_concat(queue, char(${QUEUE_SEPARATOR})) AS names FROM items WHERE id > ? AND id <= ?`,
    );
    const queueRows = db.prepare("SELECT queue FROM items WHERE id > ? AND id <= ? ORDER BY id");
    const rare = db.prepare(
      `SELECT id, attempts, max_attempts, ready_at, last_error, priority, grp, ukey, key_hold
       FROM items WHERE id > ? AND id <= ? AND ${NOT_PLAIN} > 0 ORDER BY id`,
    );
    let after = 0;
    while (after < maxId) {
      const end = pageEnd.get(after) as { id: number; queue: string } | undefined;
      let to: number;
      let queue: string;
      let full: boolean; // whether the page holds LOAD_PAGE_ROWS rows (else the rest, fewer)
      if (end !== undefined && end.id <= maxId) {
        to = end.id;
        queue = end.queue;
        full = true;
      } else {
        const last = lastRow.get(after, maxId) as { id: number; queue: string } | undefined;
        if (last === undefined) return; // nothing more
        to = last.id;
        queue = last.queue;
        full = false;
      }
      // A full page whose ids span exactly its rows: they are after + 1 to `to`.
      const isDense = full && to - after === LOAD_PAGE_ROWS;
      const page = (isDense ? dense : sparse).get(queue, after, to) as unknown as PageRow;
      const batch = this.#batch(page, after, to, queue, isDense, queues, queueRows, rare);
      after = to;
      if (batch !== undefined) yield batch;
    }
  }

  /** One page's rows as a batch (`undefined` for none); see {@link #pages}. */
  #batch(
    page: PageRow,
    after: number,
    to: number,
    queue: string,
    isDense: boolean,
    queues: StatementSync,
    queueRows: StatementSync,
    rare: StatementSync,
  ): ItemBatch | undefined {
    const n = Number(page.n);
    if (n === 0) return undefined;
    const damaged = (what: string) =>
      new StoreCorruptError(
        `${this.path} is damaged: the items with ids ${after + 1} to ${to} do not read back ` +
          `as stored (${what}); it was left untouched: restore a backup or move it away`,
      );
    const ids = new Float64Array(n);
    if (isDense) {
      if (n !== LOAD_PAGE_ROWS) throw damaged("ids");
      for (let i = 0; i < n; i++) ids[i] = after + 1 + i;
    } else {
      if (parseNumbers(page.ids ?? "", ids) !== n) throw damaged("ids");
      let previous = after;
      for (let i = 0; i < n; i++) {
        if (!(ids[i] > previous) || ids[i] > to) throw damaged("ids out of order");
        previous = ids[i];
      }
    }
    const values = page.bytes ?? new Uint8Array(0);
    const createdAt = new Float64Array(n);
    if (parseNumbers(page.created ?? "", createdAt) !== n) throw damaged("creation times");
    let names: string[] = [queue];
    const queueOf = new Uint32Array(n);
    if (Number(page.mixed) > 0) names = this.#queuesOf(after, to, queueOf, queues, queueRows);
    const attempts = new Uint32Array(n);
    const maxAttempts = new Uint32Array(n);
    const readyAt = new Float64Array(n);
    let rareFields: Map<number, RareFields> | undefined;
    if (Number(page.notPlain) > 0) {
      for (const row of rare.iterate(after, to) as Iterable<RareRow>) {
        const i = isDense ? row.id - after - 1 : indexOf(ids, row.id);
        if (i < 0) throw damaged(`item ${row.id} missing`);
        attempts[i] = row.attempts;
        maxAttempts[i] = row.max_attempts;
        readyAt[i] = row.ready_at;
        let fields: RareFields | undefined;
        // A field at its "none" value (NULL, 0 or "") is left out, as StoredItem allows.
        if (row.last_error !== null) (fields ??= {}).lastError = row.last_error;
        if (row.priority !== 0) (fields ??= {}).priority = row.priority;
        if (row.grp !== null && row.grp !== "") (fields ??= {}).group = row.grp;
        if (row.ukey !== null) (fields ??= {}).key = row.ukey;
        if (row.key_hold !== 0) (fields ??= {}).keyHoldMs = row.key_hold;
        if (fields !== undefined) (rareFields ??= new Map()).set(i, fields);
      }
    }
    // The values are split where each ends, which checks each is valid msgpack.
    const valueEnds = new Uint32Array(n);
    let start = 0;
    let split = 0; // values split off
    try {
      for (; split < n && start < values.length; split++) {
        start = valueEnds[split] = encodedEnd(values, start);
      }
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
    }
    if (split !== n || start !== values.length) {
      throw this.#damagedValue(after, to) ?? damaged("values do not split one per item");
    }
    return {
      length: n,
      ids,
      queues: names,
      queueOf,
      values,
      valueEnds,
      attempts,
      maxAttempts,
      readyAt,
      createdAt,
      rare: rareFields,
    };
  }

  /**
   * The error that names the first item with an id in (`after`, `to`] whose
   * value is not valid msgpack, read one row at a time (only once a page's
   * values did not split); `undefined` if each is valid.
   */
  #damagedValue(after: number, to: number): StoreCorruptError | undefined {
    const rows = this.#db.prepare(
      "SELECT id, queue, value FROM items WHERE id > ? AND id <= ? ORDER BY id",
    ).iterate(after, to) as Iterable<{ id: number; queue: string; value: Uint8Array }>;
    for (const row of rows) {
      try {
        checkEncoded(row.value);
      } catch (error) {
        if (!(error instanceof ProtocolError)) throw error;
        return new StoreCorruptError(
          `${this.path} is damaged: item ${row.id} of queue ${
            JSON.stringify(String(row.queue).slice(0, 200))
          } holds a value that cannot be decoded (${error.message}); it was left untouched: ` +
            `restore a backup or move it away`,
          { cause: error },
        );
      }
    }
    return undefined;
  }

  /**
   * Fills `queueOf` with the queue of each row with an id in (`after`, `to`]
   * and returns the names it indexes: split from one aggregate, or (should
   * a name hold the separator) read row by row.
   */
  #queuesOf(
    after: number,
    to: number,
    queueOf: Uint32Array,
    queues: StatementSync,
    queueRows: StatementSync,
  ): string[] {
    const joined = (queues.get(after, to) as { names: string | null }).names ?? "";
    let each = joined.split(String.fromCharCode(QUEUE_SEPARATOR));
    if (each.length !== queueOf.length) {
      each = (queueRows.all(after, to) as { queue: string }[]).map((row) => row.queue);
    }
    const names: string[] = [];
    const index = new Map<string, number>();
    for (let i = 0; i < queueOf.length; i++) {
      let q = index.get(each[i]);
      if (q === undefined) {
        q = names.push(each[i]) - 1;
        index.set(each[i], q);
      }
      queueOf[i] = q;
    }
    return names;
  }

  #record(change: Change, item: StoredItem, queue: string | undefined): void {
    if (queue !== this.#lastCounted && queue !== undefined) {
      this.#lastCounted = queue;
      this.#counted.add(queue);
    }
    const pending = this.#pending.get(item.id);
    if (pending === undefined) {
      this.#pending.set(item.id, { change, item });
    } else if (change === "delete") {
      if (pending.change === "insert") this.#pending.delete(item.id);
      else pending.change = "delete";
    } else {
      // The latest state wins; an insert not yet written stays an insert.
      pending.item = item;
      if (change === "insert") pending.change = "insert";
      else if (pending.change === "delete") pending.change = "update";
    }
    this.#schedule();
  }

  /** Records a new item. */
  insert(item: StoredItem): void {
    if (item.id >= this.#nextId) this.#nextId = item.id + 1;
    this.#record("insert", item, item.queue);
  }

  /** Records a changed item. */
  update(item: StoredItem): void {
    this.#record("update", item, item.queue);
  }

  /** Records that an item of `queue` (when given) is gone. */
  remove(id: number, queue?: string): void {
    this.#record("delete", { id } as StoredItem, queue);
  }

  /** Records that the counters of `queue` changed, or that it is no more. */
  countersChanged(queue: string): void {
    this.#counted.add(queue);
    this.#lastCounted = queue;
  }

  /**
   * Saves the counters of the queues {@link #counted} names (in the caller's
   * transaction); returns the names, to be named again if it rolls back.
   */
  #writeCounters(): Set<string> {
    const counted = this.#counted;
    this.#counted = new Set();
    this.#lastCounted = undefined;
    const read = this.readCounters;
    if (read === undefined) return counted;
    for (const queue of counted) {
      const c = read(queue);
      if (c === undefined) this.#deleteCounters.run(queue);
      else this.#saveCounters.run(queue, c.put, c.acked, c.nacked, c.expired, c.failed, c.dead);
    }
    return counted;
  }

  /** Names `queues` again, for the next commit to save (their commit failed). */
  #recount(queues: Set<string>): void {
    for (const queue of queues) this.#counted.add(queue);
    this.#lastCounted = undefined;
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#closed) return;
    // After the I/O of this turn of the event loop: what arrived together commits
    // together. (setTimeout(0) would be clamped to milliseconds; this is not.)
    this.#timer = setImmediate(() => {
      this.#timer = undefined;
      this.#flush();
    });
  }

  /** Resolves once every change recorded so far is durable. */
  commit(): Promise<void> {
    if (!this.dirty) return Promise.resolve();
    this.#waiters ??= Promise.withResolvers<void>();
    this.#schedule();
    return this.#waiters.promise;
  }

  #flush(): void {
    const waiters = this.#waiters;
    this.#waiters = undefined;
    if (!this.dirty) {
      waiters?.resolve();
      return;
    }
    const pending = this.#pending;
    this.#pending = new Map();
    const started = performance.now();
    let counted = new Set<string>();
    try {
      this.#db.exec("BEGIN");
      counted = this.#writeCounters();
      // Rows to insert, in the columns of ITEM_COLUMNS and of PLAIN_COLUMNS.
      const full: Param[] = [];
      const plain: Param[] = [];
      const deletes: number[] = [];
      for (const { change, item } of pending.values()) {
        if (change === "delete") {
          deletes.push(item.id);
        } else if (change === "insert") {
          const priority = item.priority ?? 0;
          const group = item.group || null; // "" is no group
          const key = item.key ?? null;
          const keyHold = item.keyHoldMs ?? 0;
          if (priority === 0 && group === null && key === null && keyHold === 0) {
            plain.push(
              item.id,
              item.queue,
              encode(item.value),
              item.attempts,
              item.readyAt,
              item.maxAttempts ?? 0,
              item.lastError ?? null,
              item.createdAt ?? null,
            );
          } else {
            full.push(
              item.id,
              item.queue,
              encode(item.value),
              item.attempts,
              item.readyAt,
              item.maxAttempts ?? 0,
              item.lastError ?? null,
              priority,
              group,
              key,
              keyHold,
              item.createdAt ?? null,
            );
          }
        } else {
          this.#update.run(
            item.attempts,
            item.readyAt,
            item.maxAttempts ?? 0,
            item.lastError ?? null,
            item.priority ?? 0,
            item.group || null,
            item.key ?? null,
            item.keyHoldMs ?? 0,
            item.createdAt ?? null,
            item.id,
          );
        }
      }
      this.#runInserts(this.#insert, full);
      this.#runInserts(this.#insertPlain, plain);
      this.#runChunked(this.#deleteMany, this.#delete, deletes, DELETE_CHUNK, 1);
      if (this.#nextId !== this.#committedNextId) this.#setNextId.run(this.#nextId);
      this.#db.exec("COMMIT");
      this.#committedNextId = this.#nextId;
    } catch (error) {
      try {
        this.#db.exec("ROLLBACK");
      } catch {
        // the failed statement already ended the transaction
      }
      this.#recount(counted);
      // The batch is discarded, never written later: the replies that waited
      // for it say "not stored", so a retry must not find it stored after all.
      const inserted: StoredItem[] = [];
      for (const { change, item } of pending.values()) if (change === "insert") inserted.push(item);
      const failure = new StoreError(
        `cannot write ${this.path}: ${sqliteMessage(error)}; the changes of this commit ` +
          `were not stored (if the disk is full, free space for the data directory)`,
        { cause: error },
      );
      try {
        if (inserted.length > 0) this.onDiscard?.(inserted);
      } finally {
        waiters?.reject(failure);
      }
      return;
    }
    this.#recordCommitTime(performance.now() - started);
    try {
      this.#reclaim();
    } catch {
      // Giving space back is best effort (it may fail on a full disk); the commit stands.
    }
    waiters?.resolve();
  }

  /** Inserts the rows whose parameters `params` holds, one after the other, with `insert`. */
  #runInserts(insert: InsertStatements, params: Param[]): void {
    this.#runChunked(insert.many, insert.one, params, INSERT_CHUNK * insert.width, insert.width);
  }

  /**
   * Runs `many` (a statement taking `chunk` parameters) over full chunks of
   * `params`, and `one` (taking `width`) over the rest: far fewer calls into
   * SQLite than one statement per row.
   */
  #runChunked(
    many: StatementSync,
    one: StatementSync,
    params: Param[],
    chunk: number,
    width: number,
  ): void {
    let at = 0;
    for (; at + chunk <= params.length; at += chunk) many.run(...params.slice(at, at + chunk));
    for (; at < params.length; at += width) one.run(...params.slice(at, at + width));
  }

  #recordCommitTime(ms: number): void {
    this.commitTimes.push(ms);
    this.onCommit?.(ms);
    if (this.commitTimes.length > 1024) this.commitTimes.splice(0, 512);
  }

  /**
   * Gives free pages back to the file system and trims the WAL after large
   * drains: when most of the file is free. (While queues churn, SQLite reuses
   * free pages by itself; reclaiming then would only cost time.)
   */
  #reclaim(): void {
    const free = (this.#freelistCount.get() as { freelist_count: number }).freelist_count;
    if (free < VACUUM_FREE_PAGES) return;
    const pages = (this.#pageCount.get() as { page_count: number }).page_count;
    if (free * 2 < pages) return;
    // Each step of this pragma frees one page: step it to the end (exec() steps only once).
    this.#db.prepare("PRAGMA incremental_vacuum").all();
    this.#db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  }

  /** Commits what is pending and closes the database (releasing the lock). */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    if (this.#timer !== undefined) clearImmediate(this.#timer);
    this.#timer = undefined;
    this.#flush();
    this.#closed = true;
    if (this.#counted.size > 0) {
      // Counters whose changes cancelled out in the last commits: saved before closing.
      try {
        this.#db.exec("BEGIN");
        this.#writeCounters();
        this.#db.exec("COMMIT");
      } catch {
        try {
          this.#db.exec("ROLLBACK");
        } catch {
          // the failed statement already ended the transaction
        }
      }
    }
    try {
      this.#db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    } catch {
      // closing checkpoints anyway
    }
    this.#db.close();
    return Promise.resolve();
  }
}
