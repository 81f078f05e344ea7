/**
 * Tests of lib/store/sqlite.ts, the durable store, on temp directories (no
 * sockets): items of every value type survive commit, close and reopen, and
 * so do their priority, group, key, key hold and creation time (inserted and
 * updated, "none" values left out when loaded); a database of schema version
 * 1 is upgraded in place keeping every item, then takes the new fields;
 * changes that cancel out before a commit never reach the disk and the latest
 * state of an item wins; ids are never reused; a fill-and-drain of 100,000
 * items gives the space back; damaged, foreign and newer files are refused
 * with a named error and left byte for byte as they were; and a second store
 * on a directory in use is refused until the first one closes. Queues'
 * counters are saved with the commits that touch their queue (those of a
 * failed commit by the next one), loaded, and a schema 2 database gains them.
 * The load streams: pages of items in columns, every field and the value's
 * bytes as stored, in id order across dense, sparse and mixed-queue pages;
 * only the items there were at load, a page as it is pulled; a damaged value
 * in a later page is named.
 *
 * @module
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import {
  APPLICATION_ID,
  CREATED_MARKER_FILE,
  DATABASE_FILE,
  SCHEMA_VERSION,
  SqliteStore,
} from "../lib/store/sqlite.ts";
import {
  StoreCorruptError,
  StoreError,
  StoreLockedError,
  StoreVersionError,
} from "../lib/store/errors.ts";
import {
  type StoredCounters,
  type StoredItem,
  storedItemsOf,
  valueBytes,
} from "../lib/store/store.ts";
import { encode } from "../lib/model/codec.ts";
import { EXIT_DATA, ProtocolError } from "../lib/errors.ts";
import { plain, randomBytes, seededRandom } from "./_helpers.ts";

/** Items in the fill-and-drain test. */
const FILL_ITEMS = 100_000;

/** Items per committed batch while filling. */
const FILL_BATCH = 1_000;

/** Slack allowed over twice the empty size after a drain (a few pages). */
const DRAINED_MARGIN_BYTES = 64 * 1024;

/** Size of a SQLite page as taskq's files use it (SQLite's default). */
const PAGE_BYTES = 4096;

/**
 * Items of the new-fields round trip: enough for multi-row INSERTs (64 rows)
 * and single rows of both kinds, plain (a fifth of them) and with fields.
 */
const FIELD_ITEMS = 700;

/** The schema version 1 databases have: what taskq wrote before it kept priorities and the rest. */
const V1_SCHEMA = `
  CREATE TABLE items (
    id INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    value BLOB NOT NULL,
    attempts INTEGER NOT NULL,
    ready_at INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    last_error TEXT
  );
  CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
`;

/** Rows of the version 1 database in the upgrade test. */
const V1_ITEMS = 500;

/** The next id the version 1 database in the upgrade test records (above its items' ids). */
const V1_NEXT_ID = 1_000;

/** Runs `body` with a fresh temp dir, removed afterwards whatever happens. */
async function withTempDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "taskq-sqlite-test-" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Opens a store on `dir`, runs `body`, and closes it whatever happens. */
async function withStore<T>(dir: string, body: (store: SqliteStore) => Promise<T>): Promise<T> {
  const store = new SqliteStore(dir);
  try {
    return await body(store);
  } finally {
    await store.close();
  }
}

/** What a store loads, with its items read out of the batches as objects. */
interface Loaded {
  items: StoredItem[];
  nextId: number;
  counters?: StoredCounters[];
}

/** What `store` loads, its items read out (while it is open) as objects. */
async function loadAll(store: SqliteStore): Promise<Loaded> {
  const { batches, ...rest } = await store.load();
  return { items: [...storedItemsOf(batches)], ...rest };
}

/** The items and next id a fresh store on `dir` loads. */
function reload(dir: string): Promise<Loaded> {
  return withStore(dir, loadAll);
}

/** Total size of the database files (the database and its WAL, when present). */
async function databaseBytes(dir: string): Promise<number> {
  let total = 0;
  for (const suffix of ["", "-wal"]) {
    try {
      total += (await Deno.stat(`${dir}/${DATABASE_FILE}${suffix}`)).size;
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  return total;
}

/** Names in `dir`, sorted. */
async function listing(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names.sort();
}

function item(id: number, value: unknown, extra: Partial<StoredItem> = {}): StoredItem {
  return { id, queue: "q", value, attempts: 0, readyAt: 0, ...extra };
}

/**
 * Checks that opening a store on `dir` fails with `kind` (a data error, exit
 * code 3, one line naming the file) and leaves every file's bytes and the
 * directory's listing as they were. With `atLoad`, opening may pass and
 * loading must fail (the items' pages are checked as the load reads them).
 */
async function assertRefusedUntouched(
  dir: string,
  kind: new (...args: never[]) => StoreError,
  pattern: RegExp,
  atLoad = false,
): Promise<void> {
  const names = await listing(dir);
  const before = await Promise.all(names.map((name) => Deno.readFile(`${dir}/${name}`)));
  const refused = (error: unknown) => {
    assert.ok(error instanceof kind, `expected ${kind.name}, got ${error}`);
    assert.equal(error.exitCode, EXIT_DATA);
    assert.ok(error.message.includes(`${dir}/${DATABASE_FILE}`), error.message);
    assert.match(error.message, pattern);
    assert.ok(!error.message.includes("\n"), "one line");
    return true;
  };
  if (atLoad) {
    // The items' pages are checked as the load reads them: opening may pass.
    let store: SqliteStore | undefined;
    try {
      store = new SqliteStore(dir);
    } catch (error) {
      refused(error);
    }
    if (store !== undefined) {
      try {
        await assert.rejects(loadAll(store), refused);
      } finally {
        await store.close();
      }
    }
  } else {
    assert.throws(() => new SqliteStore(dir), refused);
  }
  assert.deepEqual(await listing(dir), names, "no file was created or removed");
  for (const [i, name] of names.entries()) {
    assert.deepEqual(await Deno.readFile(`${dir}/${name}`), before[i], `${name} is unchanged`);
  }
}

Deno.test("sqlite: items of every value type survive commit, close and reopen", async () => {
  await withTempDir(async (dir) => {
    const random = seededRandom(7);
    const values: unknown[] = [
      null,
      true,
      false,
      0,
      -1,
      2 ** 40,
      Number.MAX_SAFE_INTEGER,
      -0.25,
      "",
      "text with ünïcödé, emoji 🎉 and\nnewlines",
      "x".repeat(100_000),
      new Uint8Array(0),
      randomBytes(random, 70_000),
      [],
      [1, "two", [3, [4, null]], new Uint8Array([5, 6])],
      {},
      {
        a: 1,
        nested: { deeper: { list: [{ k: "v" }, new Uint8Array([255, 0])] } },
        "": "empty key",
      },
      new Date(Date.UTC(2024, 1, 29, 12, 30)),
    ];
    const items = values.map((value, i) =>
      item(i + 1, value, {
        queue: i % 2 === 0 ? "even" : "odd.queue",
        attempts: i % 3,
        readyAt: i === 4 ? Date.now() + 60_000 : 0,
        maxAttempts: i % 4,
        ...(i === 5 ? { lastError: "command exited with code 1: boom" } : {}),
      })
    );
    await withStore(dir, async (store) => {
      assert.deepEqual(await loadAll(store), { items: [], nextId: 1 });
      for (const it of items) store.insert(it);
      assert.ok(store.dirty);
      await store.commit();
      assert.ok(!store.dirty);
    });
    const loaded = await reload(dir);
    assert.equal(loaded.nextId, items.length + 1);
    assert.equal(loaded.items.length, items.length);
    for (const [i, got] of loaded.items.entries()) {
      const want = items[i];
      assert.deepEqual(
        { ...got, value: plain(got.value) },
        { ...want, value: plain(want.value) },
        `item ${want.id}`,
      );
    }
  });
});

Deno.test("sqlite: close commits what is pending; updates and removals persist", async () => {
  await withTempDir(async (dir) => {
    await withStore(dir, async (store) => {
      await loadAll(store);
      for (let id = 1; id <= 4; id++) store.insert(item(id, `v${id}`));
      await store.commit();
      store.update(item(2, "v2", { attempts: 2, readyAt: 1234, lastError: "late" }));
      store.remove(3);
      // Not committed: close() must write it.
    });
    const { items, nextId } = await reload(dir);
    assert.equal(nextId, 5);
    assert.deepEqual(items, [
      item(1, "v1", { maxAttempts: 0 }),
      item(2, "v2", { attempts: 2, readyAt: 1234, maxAttempts: 0, lastError: "late" }),
      item(4, "v4", { maxAttempts: 0 }),
    ]);
  });
});

Deno.test("sqlite: an item put and removed before a commit never reaches the disk", async () => {
  await withTempDir(async (dir) => {
    const big = new Uint8Array(2 * 1024 * 1024).fill(0x5a);
    await withStore(dir, async (store) => {
      await loadAll(store);
      await store.commit();
      const before = await databaseBytes(dir);
      store.insert(item(1, big));
      store.update(item(1, big, { attempts: 1 }));
      store.remove(1);
      await store.commit();
      const after = await databaseBytes(dir);
      assert.ok(
        after - before < big.length / 8,
        `a 2 MiB item that cancelled out grew the files by ${after - before} bytes`,
      );
    });
    const { items, nextId } = await reload(dir);
    assert.deepEqual(items, []);
    assert.equal(nextId, 2, "its id stays used");
  });
});

Deno.test("sqlite: the latest state of an item wins, before and after its insert is written", async () => {
  await withTempDir(async (dir) => {
    await withStore(dir, async (store) => {
      await loadAll(store);
      // Updated before its insert was written: one insert with the new state.
      store.insert(item(1, "a"));
      store.update(item(1, "a", { attempts: 3, readyAt: 99, lastError: "e1" }));
      // The same object mutated in place (as the engine does).
      const mutable = item(2, "b");
      store.insert(mutable);
      mutable.attempts = 1;
      store.update(mutable);
      await store.commit();
      // Two updates in one window after the insert was written: the last wins.
      store.update(item(2, "b", { attempts: 2 }));
      store.update(item(2, "b", { attempts: 4, maxAttempts: 9 }));
      await store.commit();
    });
    assert.deepEqual((await reload(dir)).items, [
      item(1, "a", { attempts: 3, readyAt: 99, lastError: "e1", maxAttempts: 0 }),
      item(2, "b", { attempts: 4, maxAttempts: 9 }),
    ]);
  });
});

Deno.test("sqlite: the next id never goes back, even once every item is gone", async () => {
  await withTempDir(async (dir) => {
    await withStore(dir, async (store) => {
      await loadAll(store);
      for (let id = 1; id <= 10; id++) store.insert(item(id, id));
      await store.commit();
      for (let id = 1; id <= 10; id++) store.remove(id);
      await store.commit();
    });
    assert.deepEqual(await reload(dir), { items: [], nextId: 11 });
    // Again after a reopen, with ids handed out past the loaded next id.
    await withStore(dir, async (store) => {
      assert.equal((await loadAll(store)).nextId, 11);
      store.insert(item(11, "x"));
      store.insert(item(20, "y"));
      store.remove(11);
      store.remove(20);
      await store.commit();
    });
    assert.deepEqual(await reload(dir), { items: [], nextId: 21 });
  });
});

Deno.test("sqlite: a fill-and-drain of 100,000 items gives the space back", async () => {
  await withTempDir(async (dir) => {
    const emptyDir = `${dir}/empty`;
    const dataDir = `${dir}/data`;
    // A fresh empty store, open and committed, as the baseline.
    const emptyBytes = await withStore(emptyDir, async (store) => {
      await loadAll(store);
      await store.commit();
      return await databaseBytes(emptyDir);
    });
    const payload = "p".repeat(60);
    await withStore(dataDir, async (store) => {
      await loadAll(store);
      for (let first = 1; first <= FILL_ITEMS; first += FILL_BATCH) {
        for (let id = first; id < first + FILL_BATCH; id++) {
          store.insert(item(id, { n: id, payload }));
        }
        await store.commit();
      }
      const filledBytes = await databaseBytes(dataDir);
      assert.ok(filledBytes > 4 * 1024 * 1024, `filled: ${filledBytes} bytes`);
      for (let id = 1; id <= FILL_ITEMS; id++) store.remove(id);
      await store.commit();
      const drainedBytes = await databaseBytes(dataDir);
      const limit = 2 * emptyBytes + DRAINED_MARGIN_BYTES;
      assert.ok(
        drainedBytes < limit,
        `drained: ${drainedBytes} bytes, empty: ${emptyBytes}, filled: ${filledBytes}`,
      );
      assert.ok(drainedBytes * 20 < filledBytes, `drained ${drainedBytes} vs ${filledBytes}`);
    });
    const closedBytes = await databaseBytes(dataDir);
    assert.ok(closedBytes < 2 * emptyBytes + DRAINED_MARGIN_BYTES, `closed: ${closedBytes}`);
    assert.deepEqual(await reload(dataDir), { items: [], nextId: FILL_ITEMS + 1 });
  });
});

Deno.test("sqlite: a file of garbage bytes is refused and left untouched", async () => {
  await withTempDir(async (dir) => {
    const random = seededRandom(11);
    await Deno.writeFile(`${dir}/${DATABASE_FILE}`, randomBytes(random, 64 * 1024));
    await assertRefusedUntouched(dir, StoreCorruptError, /not a usable taskq database/);
  });
});

Deno.test("sqlite: a text file in place of the database is refused and left untouched", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/${DATABASE_FILE}`, "my notes, not a database\n".repeat(300));
    await assertRefusedUntouched(dir, StoreCorruptError, /untouched/);
  });
});

Deno.test("sqlite: a taskq database with damaged pages in the middle is refused, untouched", async () => {
  await withTempDir(async (dir) => {
    await withStore(dir, async (store) => {
      await loadAll(store);
      for (let id = 1; id <= 2_000; id++) store.insert(item(id, { id, text: "t".repeat(100) }));
      await store.commit();
    });
    const path = `${dir}/${DATABASE_FILE}`;
    const bytes = await Deno.readFile(path);
    const pages = bytes.length / PAGE_BYTES;
    assert.ok(pages >= 20, `${pages} pages`);
    // Overwrite two pages in the middle (table pages in use) with junk.
    const junk = randomBytes(seededRandom(3), 2 * PAGE_BYTES);
    bytes.set(junk, Math.floor(pages / 2) * PAGE_BYTES);
    await Deno.writeFile(path, bytes);
    await assertRefusedUntouched(dir, StoreCorruptError, /damaged/, true);
  });
});

Deno.test("sqlite: another program's SQLite database is refused and left untouched", async () => {
  await withTempDir(async (dir) => {
    const db = new DatabaseSync(`${dir}/${DATABASE_FILE}`);
    db.exec("CREATE TABLE contacts (name TEXT, phone TEXT)");
    db.exec("INSERT INTO contacts VALUES ('Ada', '555-0100'), ('Alan', '555-0101')");
    db.close();
    await assertRefusedUntouched(dir, StoreCorruptError, /not taskq's/);
  });
});

Deno.test("sqlite: a WAL-mode database of another program is refused and left untouched", async () => {
  await withTempDir(async (dir) => {
    const db = new DatabaseSync(`${dir}/${DATABASE_FILE}`);
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA application_id = 42");
    db.exec("CREATE TABLE t (x)");
    db.exec("INSERT INTO t VALUES (1)");
    db.close();
    await assertRefusedUntouched(dir, StoreCorruptError, /not taskq's/);
  });
});

Deno.test("sqlite: an empty file is a new store", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeFile(`${dir}/${DATABASE_FILE}`, new Uint8Array(0));
    await withStore(dir, async (store) => {
      assert.deepEqual(await loadAll(store), { items: [], nextId: 1 });
      store.insert(item(1, "first"));
    });
    assert.deepEqual((await reload(dir)).items, [item(1, "first", { maxAttempts: 0 })]);
  });
});

Deno.test("sqlite: a database from a newer schema is refused with StoreVersionError", async () => {
  await withTempDir(async (dir) => {
    await withStore(dir, async (store) => {
      await loadAll(store);
      store.insert(item(1, "kept"));
    });
    const db = new DatabaseSync(`${dir}/${DATABASE_FILE}`);
    assert.equal(
      (db.prepare("PRAGMA application_id").get() as { application_id: number }).application_id,
      APPLICATION_ID,
    );
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    await assertRefusedUntouched(dir, StoreVersionError, /newer taskq/);
  });
});

Deno.test("sqlite: a second store on a directory in use is refused until the first closes", async () => {
  await withTempDir(async (dir) => {
    const first = new SqliteStore(dir);
    try {
      await loadAll(first);
      first.insert(item(1, "held"));
      await first.commit();
      assert.throws(() => new SqliteStore(dir), (error: unknown) => {
        assert.ok(error instanceof StoreLockedError, `expected StoreLockedError, got ${error}`);
        assert.equal(error.exitCode, EXIT_DATA);
        assert.match(error.message, /in use/);
        assert.match(error.message, /locked by another running master/);
        return true;
      });
      // The refusal did not disturb the first store.
      first.insert(item(2, "still writable"));
      await first.commit();
    } finally {
      await first.close();
    }
    const { items } = await reload(dir);
    assert.deepEqual(items.map((it) => it.value), ["held", "still writable"]);
  });
});

Deno.test("sqlite: a fresh store's directory is created, nested", async () => {
  await withTempDir(async (dir) => {
    const nested = `${dir}/a/b/c`;
    await withStore(nested, async (store) => {
      await loadAll(store);
      assert.equal(store.path, `${nested}/${DATABASE_FILE}`);
    });
    assert.ok((await Deno.stat(`${nested}/${DATABASE_FILE}`)).isFile);
  });
});

Deno.test("sqlite: a database file emptied to 0 bytes is refused and left untouched", async () => {
  await withTempDir(async (dir) => {
    await withStore(dir, async (store) => {
      await loadAll(store);
      store.insert(item(1, "lost if the file is emptied"));
    });
    await Deno.truncate(`${dir}/${DATABASE_FILE}`, 0);
    // A WAL left beside it (SQLite would delete it on open) is kept as well.
    await Deno.writeFile(`${dir}/${DATABASE_FILE}-wal`, randomBytes(seededRandom(5), 4096));
    await assertRefusedUntouched(dir, StoreCorruptError, /empty \(0 bytes\)/);
    assert.ok(StoreCorruptError.prototype instanceof StoreError);
  });
});

Deno.test("sqlite: a missing database file, in a new or an existing directory, is a new store", async () => {
  await withTempDir(async (dir) => {
    await withStore(dir, async (store) => {
      assert.deepEqual(await loadAll(store), { items: [], nextId: 1 });
    });
    await Deno.remove(`${dir}/${DATABASE_FILE}`);
    await withStore(dir, async (store) => {
      assert.deepEqual(await loadAll(store), { items: [], nextId: 1 });
      store.insert(item(1, "first"));
    });
    assert.deepEqual((await reload(dir)).items, [item(1, "first", { maxAttempts: 0 })]);
  });
});

Deno.test("sqlite: a stored value that cannot be decoded is a StoreError (exit 3), not a ProtocolError", async () => {
  await withTempDir(async (dir) => {
    await withStore(dir, async (store) => {
      await loadAll(store);
      store.insert(item(1, "fine"));
      store.insert(item(2, "about to be damaged"));
    });
    const db = new DatabaseSync(`${dir}/${DATABASE_FILE}`);
    // 0xc1 is the one byte msgpack never uses.
    db.prepare("UPDATE items SET value = ? WHERE id = 2").run(new Uint8Array([0xc1]));
    db.close();
    const store = new SqliteStore(dir);
    try {
      await assert.rejects(loadAll(store), (error: unknown) => {
        assert.ok(error instanceof StoreCorruptError, `expected StoreCorruptError, got ${error}`);
        assert.ok(error instanceof StoreError);
        assert.ok(!(error instanceof ProtocolError), "not a protocol error");
        assert.ok(error.cause instanceof ProtocolError, "the codec's error is the cause");
        assert.equal(error.exitCode, EXIT_DATA);
        assert.ok(error.message.includes(`${dir}/${DATABASE_FILE}`), error.message);
        assert.match(error.message, /item 2 of queue "q"/);
        assert.match(error.message, /cannot be decoded/);
        assert.ok(!error.message.includes("\n"), "one line");
        return true;
      });
    } finally {
      await store.close();
    }
    // Nothing was dropped or rewritten: the damaged row is still there as it was.
    const check = new DatabaseSync(`${dir}/${DATABASE_FILE}`);
    try {
      const rows = check.prepare("SELECT id, value FROM items ORDER BY id").all() as {
        id: number;
        value: Uint8Array;
      }[];
      assert.deepEqual(rows.map((row) => row.id), [1, 2]);
      assert.deepEqual([...rows[1].value], [0xc1]);
    } finally {
      check.close();
    }
  });
});

/**
 * An item as the engine hands it to the store: every new field set, "none"
 * being priority 0, group "", key undefined and key hold 0.
 */
function engineItem(id: number, fields: Partial<StoredItem> = {}): StoredItem {
  return {
    ...item(id, { n: id }),
    maxAttempts: 0,
    priority: 0,
    group: "",
    key: undefined,
    keyHoldMs: 0,
    createdAt: 1_700_000_000_000 + id,
    ...fields,
  };
}

/** `it` as a store loads it: the fields at their "none" value left out. */
function asLoaded(it: StoredItem): StoredItem {
  const loaded: StoredItem = { ...it, maxAttempts: it.maxAttempts ?? 0 };
  if (loaded.priority === 0) delete loaded.priority;
  if (loaded.group === "" || loaded.group === undefined) delete loaded.group;
  if (loaded.key === undefined) delete loaded.key;
  if (loaded.keyHoldMs === 0) delete loaded.keyHoldMs;
  if (loaded.createdAt === undefined) delete loaded.createdAt;
  return loaded;
}

/** The new fields of item `id` in the new-fields round trip (a mix of set and "none"). */
function fieldsOf(id: number): Partial<StoredItem> {
  switch (id % 5) {
    case 0: // none of them: the common case
      return {};
    case 1:
      return { priority: id % 7 - 3, group: `g${id % 3}` };
    case 2:
      return { key: `key-${id}`, keyHoldMs: 60_000 };
    case 3:
      return { key: "", group: "tenant ünï 🎉" };
    default:
      return { priority: 2 ** 40, group: "g", key: `k${id}`, keyHoldMs: 1, createdAt: 0 };
  }
}

/** The rows of `items` on `dir`'s database as SQLite holds them, read directly. */
function rawRows(dir: string): Record<string, unknown>[] {
  const db = new DatabaseSync(`${dir}/${DATABASE_FILE}`);
  try {
    return db.prepare("SELECT * FROM items ORDER BY id").all() as Record<string, unknown>[];
  } finally {
    db.close();
  }
}

/** `PRAGMA user_version` of `dir`'s database, read directly. */
function userVersion(dir: string): number {
  const db = new DatabaseSync(`${dir}/${DATABASE_FILE}`);
  try {
    return (db.prepare("PRAGMA user_version").get() as { user_version: number }).user_version;
  } finally {
    db.close();
  }
}

Deno.test("sqlite: priority, group, key, key hold and creation time survive close and reopen", async () => {
  await withTempDir(async (dir) => {
    const items: StoredItem[] = [];
    for (let id = 1; id <= FIELD_ITEMS; id++) items.push(engineItem(id, fieldsOf(id)));
    await withStore(dir, async (store) => {
      await loadAll(store);
      for (const it of items) store.insert(it);
      await store.commit();
    });
    assert.equal(SCHEMA_VERSION, 3);
    assert.equal(userVersion(dir), SCHEMA_VERSION);
    const loaded = await reload(dir);
    assert.equal(loaded.nextId, FIELD_ITEMS + 1);
    assert.deepEqual(loaded.items, items.map(asLoaded));
    // An item with no priority, group, key or hold (id 5) loads with none of them.
    assert.deepEqual(Object.keys(loaded.items[4]).sort(), [
      "attempts",
      "createdAt",
      "id",
      "maxAttempts",
      "queue",
      "readyAt",
      "value",
    ]);
    // "" is no group: stored as NULL; a key of "" is a key (id 3).
    const raw = rawRows(dir);
    assert.equal(raw[4].grp, null, 'group "" is stored as NULL');
    assert.equal(raw[4].ukey, null);
    assert.equal(raw[2].ukey, "");
    assert.equal(raw[2].grp, "tenant ünï 🎉");

    // Updates write the new fields: set, changed, and back to "none".
    const updated = [
      engineItem(1, { attempts: 1, priority: 9, group: "late", key: "k", keyHoldMs: 5 }),
      engineItem(2, { attempts: 2, readyAt: 1234, lastError: "e" }), // every field back to none
      engineItem(3, { priority: -1, group: "", key: undefined, createdAt: 42 }),
    ];
    await withStore(dir, async (store) => {
      await loadAll(store);
      for (const it of updated) store.update(it);
      // One inserted and updated in the same window: its latest state is inserted.
      const late = engineItem(FIELD_ITEMS + 1);
      store.insert(late);
      late.priority = 3;
      late.group = "after insert";
      store.update(late);
      updated.push(late);
    });
    const again = await reload(dir);
    const want = new Map(items.map((it) => [it.id, asLoaded(it)]));
    for (const it of updated) want.set(it.id, asLoaded(it));
    assert.deepEqual(again.items, [...want.values()]);
    assert.deepEqual(
      again.items[1],
      item(2, { n: 2 }, {
        attempts: 2,
        readyAt: 1234,
        lastError: "e",
        maxAttempts: 0,
        createdAt: 1_700_000_000_002,
      }),
    );
  });
});

Deno.test("sqlite: a version 1 database is upgraded in place, keeping every item, and takes the new fields", async () => {
  await withTempDir(async (dir) => {
    // A database as the release before schema 2 wrote it.
    const v1 = new DatabaseSync(`${dir}/${DATABASE_FILE}`);
    v1.exec("PRAGMA auto_vacuum = INCREMENTAL");
    v1.exec("PRAGMA journal_mode = WAL");
    v1.exec("BEGIN");
    v1.exec(V1_SCHEMA);
    v1.exec(`PRAGMA application_id = ${APPLICATION_ID}`);
    v1.exec("PRAGMA user_version = 1");
    v1.exec("COMMIT");
    const want: StoredItem[] = [];
    const insert = v1.prepare("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?)");
    v1.exec("BEGIN");
    for (let id = 1; id <= V1_ITEMS; id++) {
      const it = item(id, { n: id, text: "v1 ".repeat(id % 4) }, {
        queue: `q${id % 3}`,
        attempts: id % 4,
        readyAt: id % 10 === 0 ? 1_800_000_000_000 : 0,
        maxAttempts: id % 6,
        ...(id % 7 === 0 ? { lastError: `failure ${id}` } : {}),
      });
      insert.run(
        it.id,
        it.queue,
        encode(it.value),
        it.attempts,
        it.readyAt,
        it.maxAttempts ?? 0,
        it.lastError ?? null,
      );
      want.push(it);
    }
    v1.prepare("INSERT INTO meta (key, value) VALUES ('next_id', ?)").run(V1_NEXT_ID);
    v1.exec("COMMIT");
    v1.close();
    await Deno.writeTextFile(`${dir}/${CREATED_MARKER_FILE}`, "a taskq store was created here\n");

    // Opened by this release: every item loads as it was, with none of the new fields.
    await withStore(dir, async (store) => {
      const loaded = await loadAll(store);
      assert.equal(loaded.nextId, V1_NEXT_ID);
      assert.deepEqual(loaded.items.map((it) => ({ ...it, value: plain(it.value) })), want);
      for (const it of loaded.items) {
        for (const field of ["priority", "group", "key", "keyHoldMs", "createdAt"]) {
          assert.ok(!(field in it), `item ${it.id} has no ${field}`);
        }
      }
    });
    assert.equal(userVersion(dir), SCHEMA_VERSION, "upgraded in place");
    const raw = rawRows(dir);
    assert.equal(raw.length, V1_ITEMS);
    assert.deepEqual(
      { ...raw[0], value: undefined },
      {
        id: 1,
        queue: "q1",
        value: undefined,
        attempts: 1,
        ready_at: 0,
        max_attempts: 1,
        last_error: null,
        priority: 0,
        grp: null,
        ukey: null,
        key_hold: 0,
        created_at: null,
      },
    );

    // The upgraded database takes the new fields, on old items and new ones.
    const updated = { ...want[0], attempts: 2, priority: 5, group: "g", key: "k1", keyHoldMs: 10 };
    const added = engineItem(V1_NEXT_ID, { priority: -2, key: "new", createdAt: 1_234 });
    const addedPlain = engineItem(V1_NEXT_ID + 1);
    await withStore(dir, async (store) => {
      await loadAll(store);
      store.update(updated);
      store.remove(2);
      store.insert(added);
      store.insert(addedPlain);
    });
    const { items, nextId } = await reload(dir);
    assert.equal(nextId, V1_NEXT_ID + 2);
    assert.equal(items.length, V1_ITEMS + 1);
    const plainValues = items.map((it) => ({ ...it, value: plain(it.value) }));
    assert.deepEqual(plainValues[0], asLoaded(updated));
    assert.deepEqual(plainValues.slice(1, V1_ITEMS - 1), want.slice(2));
    assert.deepEqual(plainValues.slice(V1_ITEMS - 1), [asLoaded(added), asLoaded(addedPlain)]);
  });
});

Deno.test("sqlite: a file marked as taskq's with no schema version is refused and left untouched", async () => {
  await withTempDir(async (dir) => {
    const db = new DatabaseSync(`${dir}/${DATABASE_FILE}`);
    db.exec(V1_SCHEMA);
    db.exec(`PRAGMA application_id = ${APPLICATION_ID}`);
    db.close();
    await assertRefusedUntouched(dir, StoreCorruptError, /no schema version/);
  });
});

/** The counters of `queue` with `fields` set, the others zero. */
function counted(queue: string, fields: Partial<StoredCounters> = {}): StoredCounters {
  return { queue, put: 0, acked: 0, nacked: 0, expired: 0, failed: 0, dead: 0, ...fields };
}

Deno.test("sqlite: counters are saved with the commits that touch their queue, and loaded", async () => {
  await withTempDir(async (dir) => {
    const live = new Map<string, StoredCounters>();
    await withStore(dir, async (store) => {
      await loadAll(store);
      store.readCounters = (queue) => live.get(queue);
      live.set("q", counted("q", { put: 2 }));
      store.insert(item(1, "a"));
      store.insert(item(2, "b"));
      await store.commit();
      live.set("q", counted("q", { put: 2, acked: 1 }));
      store.remove(1, "q");
      await store.commit();
      // Put and acked in one window: nothing to write, counted with the next commit or the close.
      live.set("r", counted("r", { put: 1, acked: 1 }));
      store.insert(item(3, "c", { queue: "r" }));
      store.remove(3, "r");
      await store.commit();
      // A queue forgotten: its row goes.
      live.set("gone", counted("gone", { put: 7 }));
      store.countersChanged("gone");
      store.insert(item(4, "d", { queue: "q" }));
      live.set("q", counted("q", { put: 3, acked: 1 }));
      await store.commit();
      live.delete("gone");
      store.countersChanged("gone");
    });
    const loaded = await reload(dir);
    assert.deepEqual(loaded.counters, [
      counted("q", { put: 3, acked: 1 }),
      counted("r", { put: 1, acked: 1 }),
    ]);
    assert.deepEqual(loaded.items.map((it) => it.id), [2, 4]);
  });
});

/** Pages the database may grow to in the failed-commit test: room for small items only. */
const SMALL_DB_PAGES = 64;

Deno.test("sqlite: a failed commit's counters are saved by the next one", async () => {
  await withTempDir(async (dir) => {
    const live = new Map<string, StoredCounters>([["q", counted("q", { put: 1 })]]);
    const store = new SqliteStore(dir, { maxPageCount: SMALL_DB_PAGES });
    try {
      await loadAll(store);
      store.readCounters = (queue) => live.get(queue);
      store.insert(item(1, new Uint8Array(SMALL_DB_PAGES * PAGE_BYTES)));
      await assert.rejects(store.commit(), StoreError, "the database is full");
      live.set("r", counted("r", { put: 1 }));
      store.insert(item(2, "small", { queue: "r" }));
      await store.commit();
    } finally {
      await store.close();
    }
    const loaded = await reload(dir);
    assert.deepEqual(loaded.items.map((it) => it.id), [2]);
    assert.deepEqual(loaded.counters, [counted("q", { put: 1 }), counted("r", { put: 1 })]);
  });
});

Deno.test("sqlite: a version 2 database is upgraded in place to keep counters", async () => {
  await withTempDir(async (dir) => {
    await withStore(dir, async (store) => {
      await loadAll(store);
      store.insert(item(1, "kept"));
    });
    // Back to schema 2, as the release before counters wrote it.
    const db = new DatabaseSync(`${dir}/${DATABASE_FILE}`);
    db.exec("DROP TABLE counters");
    db.exec("PRAGMA user_version = 2");
    db.close();
    const live = new Map([["q", counted("q", { put: 5, failed: 2 })]]);
    await withStore(dir, async (store) => {
      const loaded = await loadAll(store);
      assert.deepEqual(loaded.items.map((it) => it.value), ["kept"]);
      assert.equal(loaded.counters, undefined, "its queues count from zero");
      store.readCounters = (queue) => live.get(queue);
      store.remove(1, "q");
    });
    assert.equal(userVersion(dir), SCHEMA_VERSION);
    assert.deepEqual((await reload(dir)).counters, [counted("q", { put: 5, failed: 2 })]);
  });
});

/** Rows a load reads per page (lib/store/sqlite.ts's LOAD_PAGE_ROWS), to span pages. */
const PAGE_ROWS = 8_192;

/** Items of the streaming-load test: three full pages and a partial one. */
const STREAM_ITEMS = 3 * PAGE_ROWS + 123;

/** The value of item `id` of the streaming-load test: each kind, binary with every byte. */
function streamValue(id: number, random: () => number): unknown {
  switch (id % 6) {
    case 0:
      return id;
    case 1:
      return `s${id}`;
    case 2:
      return randomBytes(random, id % 300); // every byte value, 0x00 and invalid UTF-8 included
    case 3:
      return { id, list: [id, "\u0000 and 🎉", null], blob: new Uint8Array([0, 255, 0xc1]) };
    case 4:
      return -id / 4;
    default:
      return id % 1000 === 5 ? "x".repeat(70_000) : [];
  }
}

/** The queue of item `id` of the streaming-load test: one queue a page, or a mix. */
function streamQueue(id: number): string {
  if (id <= PAGE_ROWS || id > 2 * PAGE_ROWS) return "q";
  // The second page mixes queues, one with the separator the load uses between names.
  return ["a", "bé", "c\u001fd"][id % 3];
}

/** The rare fields and state of item `id` of the streaming-load test. */
function streamFields(id: number): Partial<StoredItem> {
  const fields: Partial<StoredItem> = {};
  if (id % 11 === 0) Object.assign(fields, { attempts: 2, lastError: `boom ${id}` });
  if (id % 13 === 0) fields.readyAt = 1_800_000_000_000 + id;
  if (id % 17 === 0) fields.priority = id % 2 === 0 ? -3 : 1000;
  if (id % 19 === 0) fields.group = `g${id % 4}`;
  if (id % 23 === 0) Object.assign(fields, { key: `k${id}`, keyHoldMs: 500 });
  if (id % 29 === 0) fields.maxAttempts = 7;
  if (id % 31 !== 0) fields.createdAt = 1_700_000_000_000 + id; // else none (NULL)
  return fields;
}

Deno.test("sqlite: a streaming load reads every field back over many pages, in id order", async () => {
  await withTempDir(async (dir) => {
    const random = seededRandom(15);
    const want: StoredItem[] = [];
    await withStore(dir, async (store) => {
      await loadAll(store);
      for (let id = 1; id <= STREAM_ITEMS; id++) {
        const it = item(id, streamValue(id, random), {
          queue: streamQueue(id),
          ...streamFields(id),
        });
        store.insert(it);
        // Gaps in the third page: its ids are not consecutive.
        if (id > 2 * PAGE_ROWS && id % 7 === 0) store.remove(id, it.queue);
        else want.push(asLoaded(it));
      }
      await store.commit();
    });
    await withStore(dir, async (store) => {
      const state = await store.load();
      assert.equal(state.nextId, STREAM_ITEMS + 1);
      let previous = 0;
      let batches = 0;
      let at = 0;
      for (const batch of state.batches) {
        batches++;
        assert.ok(batch.length >= 1 && batch.length <= PAGE_ROWS, `${batch.length} rows`);
        assert.equal(batch.ids.length, batch.length);
        assert.equal(batch.valueEnds[batch.length - 1], batch.values.length);
        for (let i = 0; i < batch.length; i++, at++) {
          assert.ok(batch.ids[i] > previous, "ids ascend across batches");
          previous = batch.ids[i];
          assert.equal(batch.ids[i], want[at].id);
          assert.equal(batch.queues[batch.queueOf[i]], want[at].queue);
          // The bytes as they were stored: nothing decoded and encoded again.
          assert.deepEqual(
            valueBytes(batch, i),
            new Uint8Array(encode(want[at].value)),
            `value of ${want[at].id}`,
          );
        }
      }
      assert.equal(at, want.length, "every item");
      assert.equal(batches, Math.ceil(want.length / PAGE_ROWS), "full pages but the last");
    });
    const loaded = await reload(dir);
    assert.equal(loaded.items.length, want.length);
    for (const [i, got] of loaded.items.entries()) {
      assert.deepEqual(got, want[i], `item ${want[i].id}`);
    }
  });
});

Deno.test("sqlite: a streaming load reads the items there were at load, a page as it is pulled", async () => {
  await withTempDir(async (dir) => {
    const before = 2 * PAGE_ROWS + 10;
    await withStore(dir, async (store) => {
      await loadAll(store);
      for (let id = 1; id <= before; id++) store.insert(item(id, id));
      await store.commit();
    });
    await withStore(dir, async (store) => {
      const state = await store.load();
      const pages = state.batches[Symbol.iterator]();
      const firstPage = pages.next();
      assert.ok(!firstPage.done);
      assert.equal(firstPage.value.length, PAGE_ROWS);
      // Changes the engine makes while the rest is still to be read: new items
      // (above every stored id) and the removal of a loaded one.
      for (let id = before + 1; id <= before + 100; id++) store.insert(item(id, id));
      store.remove(1, "q");
      await store.commit();
      const ids: number[] = [...firstPage.value.ids];
      for (let next = pages.next(); !next.done; next = pages.next()) ids.push(...next.value.ids);
      assert.deepEqual(ids, Array.from({ length: before }, (_, i) => i + 1));
    });
    const loaded = await reload(dir);
    assert.equal(loaded.items.length, before + 100 - 1);
    assert.equal(loaded.items[0].id, 2);
  });
});

Deno.test("sqlite: a damaged value in a later page names its item", async () => {
  await withTempDir(async (dir) => {
    await withStore(dir, async (store) => {
      await loadAll(store);
      for (let id = 1; id <= PAGE_ROWS + 50; id++) store.insert(item(id, `v${id}`));
      await store.commit();
    });
    const bad = PAGE_ROWS + 20;
    const db = new DatabaseSync(`${dir}/${DATABASE_FILE}`);
    // A string header promising more bytes than the value has.
    db.prepare("UPDATE items SET value = ? WHERE id = ?").run(new Uint8Array([0xa5, 0x61]), bad);
    db.close();
    await withStore(dir, async (store) => {
      await assert.rejects(loadAll(store), (error: unknown) => {
        assert.ok(error instanceof StoreCorruptError, `expected StoreCorruptError, got ${error}`);
        assert.match(error.message, new RegExp(`item ${bad} of queue "q"`));
        return true;
      });
    });
  });
});

Deno.test("sqlite: a last page with gaps reads its ids, whatever their span", async () => {
  await withTempDir(async (dir) => {
    // Ids 1 to PAGE_ROWS but 2: the last page spans a full page's ids, but holds one fewer.
    const ids = Array.from({ length: PAGE_ROWS }, (_, i) => i + 1).filter((id) => id !== 2);
    await withStore(dir, async (store) => {
      await loadAll(store);
      for (const id of ids) store.insert(item(id, id));
      await store.commit();
    });
    const loaded = await reload(dir);
    assert.deepEqual(loaded.items.map((it) => it.id), ids);
    assert.deepEqual(loaded.items.map((it) => it.value), ids);
    assert.equal(loaded.nextId, PAGE_ROWS + 1);
  });
});
