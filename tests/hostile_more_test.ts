/**
 * More of the issue "Hostile networks", end to end with real processes, in
 * the manner of tests/hostile_test.ts (whose harness is copied here in part:
 * importing that module would register and run its tests as well):
 *
 * 1. eight Python connections each queue eight messages of ~16 MiB behind a
 *    blocking `get` on an empty queue: the master reads no more than its
 *    buffers cap allows, its RSS stays within `--max-memory` plus the runtime
 *    allowance, and a good native client is served within a second;
 * 2. one Python request of 16 MB of EMPTY_SET opcodes, and one of a list of
 *    16.7 million empty dicts (`] ( }…} e`): refused (a `#TRACEBACK` reply or
 *    a closed connection), with the same checks;
 * 3. a full disk: a real master whose SQLite file may not grow (the test-only
 *    `TASKQ_TEST_SQLITE_MAX_PAGES`): a put answered `internal` ("not saved")
 *    is not there (stats, get), nor after a restart without the limit; puts
 *    acknowledged before are; the master stays up;
 * 4. a damaged data directory: a stored value that is not msgpack, and a
 *    `taskq.db` truncated to 0 bytes where a store was created: `taskq master`
 *    exits 3 with one clear line and leaves the file as it was;
 * 5. the native accept loop out of descriptors (`ulimit -n 256`): 400 raw
 *    connections that never authenticate, then connections that do and hold
 *    their descriptors: the failed accept is logged once, the master does not
 *    spin (its CPU time over 2 s of exhaustion), it logs that it accepts again
 *    once they close, and a good client then round-trips within a second.
 *
 * Every test stops only the processes it started (by their handles) and
 * removes its temp dirs.
 *
 * @module
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { connect, RemoteError } from "../lib/mod.ts";
import {
  durableMasterArgs,
  hostPort,
  keyEnv,
  masterArgs,
  type MasterProcess,
  pause,
  Proc,
  RawConn,
  runTaskq,
  startMaster,
  TASKQ_PERMISSIONS,
  TEST_KEY,
  waitFor,
  withDeadline,
} from "./_helpers.ts";
import { managerPreamble, type Python, PYTHON_LISTENING, PYTHONS, runPython } from "./_python.ts";
import {
  assertFast,
  assertKept,
  assertWithinBudget,
  BUDGET_ARGS,
  doneLine,
  keepItems,
  MIB,
  mib,
  report,
  ROUND_TRIP_BOUND_MS,
  roundTrip,
  scenario,
} from "./_hostile.ts";

/** The first Python installed (the Python tests are ignored without one). */
const PYTHON: Python | undefined = PYTHONS.find((p) => p.available);

// ---------------------------------------------------------------------------
// 1. Eight Python connections queue big messages behind a blocking get

/** Python connections, messages each, and the size of each message's pickle. */
const BIG_CONNS = 8;
const BIG_MESSAGES = 8;
const BIG_MESSAGE_BYTES = 16 * MIB - 4096;

/** How long each connection's get blocks on the empty queue (the messages wait behind it). */
const BLOCKING_GET_S = 3;

/**
 * The Python attacker of test 1: `conns` connections (Python's own client and
 * handshake), each sends a blocking get on the empty queue "tasks", then
 * `messages` put requests of `bytes` bytes each without waiting for replies
 * (each put carries `timeout=-1`, which Python's queue refuses with
 * ValueError, so that nothing is stored once the get is over and the master
 * reads them). A reader thread per connection counts the replies.
 */
function bigMessagesAttacker(address: string): string {
  return `${managerPreamble(address, TEST_KEY)}
import json, pickle, threading
from multiprocessing.connection import Client

def say(what, **fields):
    print(json.dumps({"what": what, **fields}, separators=(",", ":")), flush=True)

conns_n, messages, size, get_s = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
item = bytes(size - 64)
put = pickle.dumps(("tasks", "put", (item, True, -1), {}), protocol=4)
assert len(put) <= size, len(put)
get = pickle.dumps(("tasks", "get", (True, get_s), {}), protocol=4)
del item
conns = [Client(ADDRESS, authkey=KEY) for _ in range(conns_n)]
started = time.monotonic()
replies = [dict() for _ in conns]
sent = [0] * conns_n
first_reply_ms = [None] * conns_n
sent_all_ms = [None] * conns_n

def send(i):
    try:
        conns[i].send_bytes(get)
        sent[i] += 1
        for _ in range(messages):
            conns[i].send_bytes(put)
            sent[i] += 1
        sent_all_ms[i] = round((time.monotonic() - started) * 1000)
    except Exception as e:
        replies[i]["send " + type(e).__name__] = 1

def read(i):
    for n in range(messages + 1):
        try:
            kind, value = conns[i].recv()
            what = kind + " " + type(value).__name__
        except EOFError:
            what = "closed"
        except Exception as e:
            what = "recv " + type(e).__name__
        if first_reply_ms[i] is None:
            first_reply_ms[i] = round((time.monotonic() - started) * 1000)
        replies[i][what] = replies[i].get(what, 0) + 1
        if what == "closed" or what.startswith("recv "):
            return

threads = [threading.Thread(target=f, args=(i,)) for i in range(conns_n) for f in (send, read)]
for t in threads: t.start()
say("sending", conns=conns_n, messages=messages, bytes=len(put))
for t in threads: t.join()
for c in conns: c.close()
total = {}
for r in replies:
    for k, v in r.items(): total[k] = total.get(k, 0) + v
say("done", replies=total, perConn=replies, sent=sum(sent), messageBytes=len(put),
    firstReplyMs=first_reply_ms, sentAllMs=sent_all_ms,
    ms=round((time.monotonic() - started) * 1000))
`;
}

Deno.test({
  name: "hostile more: 8 Python connections queue 8 × 16 MiB behind a blocking get",
  ignore: PYTHON === undefined,
  fn: async () => {
    await scenario(
      "1 Python big messages behind a blocking get",
      ["--python", "127.0.0.1:0"],
      async (master) => {
        const address = (await master.proc.waitForLine(PYTHON_LISTENING))[1];
        const attacker = await runPython(
          PYTHON!,
          "python big messages",
          bigMessagesAttacker(address),
          {
            args: [BIG_CONNS, BIG_MESSAGES, BIG_MESSAGE_BYTES, BLOCKING_GET_S].map(String),
          },
        );
        const finished = doneLine(attacker).then((done) => {
          const replies = done.replies as Record<string, number>;
          // Each connection: queue.Empty for its get after the timeout, then
          // ValueError for each put; a connection the master closed instead
          // counts "closed". Nothing else.
          for (const kind of Object.keys(replies)) {
            assert.ok(
              ["#ERROR Empty", "#ERROR ValueError", "closed"].includes(kind),
              `unexpected reply ${kind}: ${attacker.describe()}`,
            );
          }
          assert.equal(done.sent, BIG_CONNS * (BIG_MESSAGES + 1), attacker.describe());
          const firstReplies = done.firstReplyMs as number[];
          return {
            conns: BIG_CONNS,
            messagesEach: BIG_MESSAGES,
            messageBytes: done.messageBytes,
            replies,
            earliestReplyMs: Math.min(...firstReplies),
            sentAllMs: done.sentAllMs,
            attackMs: done.ms,
          };
        });
        return { attacker, finished };
      },
      async (_master, client) => {
        const [tasks] = (await client.stats("tasks")).queues;
        assert.ok(tasks === undefined || tasks.put === 0, `tasks: ${JSON.stringify(tasks)}`);
        return {};
      },
    );
  },
});

// ---------------------------------------------------------------------------
// 2. One Python request of 16 MB of EMPTY_SET, one of 16.7 million empty dicts

/** EMPTY_SET opcodes in the first request, empty dicts in the second. */
const EMPTY_SETS = 16_000_000;
const EMPTY_DICTS = 16_700_000;

/**
 * The Python attacker of test 2: on a connection with Python's handshake,
 * `(None, 'put', (<sets…>), {})` with the sets as bare EMPTY_SET opcodes, and
 * `(None, 'put', ([{}, {}, …],), {})` as EMPTY_LIST MARK EMPTY_DICT… APPENDS,
 * each sent as it is; then a `dummy` call on the same connection (or, if the
 * master closed it, on a new one).
 */
function opcodeFloodAttacker(address: string): string {
  return `${managerPreamble(address, TEST_KEY)}
import json
from multiprocessing.connection import Client

def say(what, **fields):
    print(json.dumps({"what": what, **fields}, separators=(",", ":")), flush=True)

sets, dicts = int(sys.argv[1]), int(sys.argv[2])
head = b"\\x80\\x04(N\\x8c\\x03put("
requests = {
    "sets": head + b"\\x8f" * sets + b"t}t.",
    "dicts": head + b"](" + b"}" * dicts + b"et}t.",
}
conn = Client(ADDRESS, authkey=KEY)
outcomes = {}
for name, request in requests.items():
    started = time.monotonic()
    try:
        conn.send_bytes(request)
        kind, value = conn.recv()
        outcome = {"kind": kind, "text": str(value)[-300:]}
    except (EOFError, OSError) as e:
        outcome = {"kind": "closed", "text": type(e).__name__}
        conn.close()
        conn = Client(ADDRESS, authkey=KEY)
    outcome["ms"] = round((time.monotonic() - started) * 1000)
    outcome["bytes"] = len(request)
    outcomes[name] = outcome
conn.send((None, "dummy", (), {}))
after = conn.recv()
conn.close()
say("done", outcomes=outcomes, after=repr(after))
`;
}

Deno.test({
  name: "hostile more: Python requests of 16 MB of EMPTY_SET and 16.7 M empty dicts are refused",
  ignore: PYTHON === undefined,
  fn: async () => {
    await scenario(
      "2 Python EMPTY_SET and empty-dict floods",
      ["--python", "127.0.0.1:0"],
      async (master) => {
        const address = (await master.proc.waitForLine(PYTHON_LISTENING))[1];
        const attacker = await runPython(
          PYTHON!,
          "python opcode floods",
          opcodeFloodAttacker(address),
          { args: [String(EMPTY_SETS), String(EMPTY_DICTS)] },
        );
        const finished = doneLine(attacker).then((done) => {
          const outcomes = done.outcomes as Record<string, { kind: string; text: string }>;
          for (const [name, outcome] of Object.entries(outcomes)) {
            assert.ok(
              outcome.kind === "#TRACEBACK" || outcome.kind === "closed",
              `the ${name} request was not refused: ${JSON.stringify(outcome)}`,
            );
          }
          assert.equal(done.after, "('#RETURN', None)", attacker.describe());
          return { outcomes };
        });
        return { attacker, finished };
      },
      async (_master, client) => {
        const [tasks] = (await client.stats("tasks")).queues;
        assert.ok(tasks === undefined || tasks.put === 0, `tasks: ${JSON.stringify(tasks)}`);
        return {};
      },
    );
  },
});

// ---------------------------------------------------------------------------
// 3. A full disk

/** The test-only variable (lib/store/sqlite.ts) that caps the database file, in 4 KiB pages. */
const MAX_PAGES_ENV = "TASKQ_TEST_SQLITE_MAX_PAGES";

/** Pages the capped master's file may take (256 KiB): room for the kept items and little more. */
const MAX_PAGES = 64;

/** A put too large for {@link MAX_PAGES}: 1 MiB of text. */
const TOO_BIG = "x".repeat(MIB);

/** Starts a durable master on `dataDir` with `env` added to its environment. */
async function startMasterWithEnv(
  dataDir: string,
  env: Record<string, string>,
): Promise<MasterProcess> {
  const proc = new Proc(
    "durable master (capped file)",
    durableMasterArgs("127.0.0.1:0", dataDir, BUDGET_ARGS),
    keyEnv(TEST_KEY, env),
  );
  let address: string;
  try {
    address = (await proc.waitForLine(/^taskq master listening on (\S+)$/, 15_000))[1];
  } catch (error) {
    await proc.dispose();
    throw error;
  }
  return {
    proc,
    address,
    key: TEST_KEY,
    async stop() {
      const status = await proc.stop("SIGTERM");
      if (status.code !== 0) {
        throw new Error(`master did not shut down cleanly: ${proc.describe()}`);
      }
    },
    [Symbol.asyncDispose]: () => proc.dispose(),
  };
}

Deno.test("hostile more: a full disk: a put answered internal is not stored, now or after a restart", async () => {
  const started = performance.now();
  const dataDir = await Deno.makeTempDir({ prefix: "taskq-hostile-more-" });
  const figures: Record<string, unknown> = {};
  try {
    {
      await using master = await startMasterWithEnv(dataDir, {
        [MAX_PAGES_ENV]: String(MAX_PAGES),
      });
      const client = await connect({ address: master.address, authkey: TEST_KEY });
      try {
        await keepItems(client);
        const full = client.queue("full");
        await full.put("before-1");
        // Five puts too big for the file, each between small ones that fit.
        const refusals: string[] = [];
        for (let i = 0; i < 5; i++) {
          await assert.rejects(full.put({ big: i, text: TOO_BIG }), (error: unknown) => {
            assert.ok(error instanceof RemoteError, String(error));
            assert.equal(error.code, "internal", error.message);
            assert.match(error.message, /not saved: .*(disk is full|database or disk is full)/);
            refusals.push(error.message);
            return true;
          });
          await full.put(`after-${i}`);
        }
        figures.refusal = refusals[0].slice(0, 200);
        assert.equal(client.connected, true, "the connection stays open");
        assert.equal(master.proc.exited, undefined, "the master is up");
        // Not there: stats count only the small ones, and a get finds only them.
        const [row] = (await client.stats("full")).queues;
        assert.deepEqual(
          [row.ready, row.leased, row.delayed],
          [6, 0, 0],
          `"full" after the refusals: ${JSON.stringify(row)}`,
        );
        const jobs = await full.getMany(100, 200);
        assert.deepEqual(
          jobs.map((j) => j.value),
          ["before-1", ...Array.from({ length: 5 }, (_, i) => `after-${i}`)],
        );
        await full.nack(jobs);
        await assertKept(client, "after the refusals");
        figures.tripAfterMs = Math.round(
          assertFast([await roundTrip(client)], "after the refusals"),
        );
        figures.rss = mib(assertWithinBudget(master, "after the refusals"));
      } finally {
        await client.close();
      }
      await master.stop();
    }
    // Restarted without the limit: the refused puts are not there; the acknowledged ones are.
    const restarted = performance.now();
    await using again = await startMaster({ dataDir, args: BUDGET_ARGS });
    figures.restartMs = Math.round(performance.now() - restarted);
    const client = await connect({ address: again.address, authkey: TEST_KEY });
    try {
      await assertKept(client, "after the restart");
      const full = client.queue("full");
      const jobs = await full.getMany(100, 200);
      assert.deepEqual(
        jobs.map((j) => j.value),
        ["before-1", ...Array.from({ length: 5 }, (_, i) => `after-${i}`)],
        "after the restart",
      );
      await full.ack(jobs);
      // Without the limit the same put is stored.
      await full.put({ big: 0, text: TOO_BIG });
      assert.equal((await client.stats("full")).queues[0].ready, 1);
    } finally {
      await client.close();
    }
    await again.stop();
    figures.totalMs = Math.round(performance.now() - started);
    report("3 full disk", figures);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

// ---------------------------------------------------------------------------
// 4. A damaged data directory

/** Runs `taskq master --data DIR` to its end (it should refuse to start). */
function runMasterOn(dataDir: string) {
  return withDeadline(
    runTaskq(
      ["master", "--data", dataDir, "--listen", "127.0.0.1:0", ...BUDGET_ARGS],
      { permissions: [...TASKQ_PERMISSIONS, `--allow-write=${dataDir}`] },
    ),
    30_000,
    "taskq master to exit",
  );
}

/** Creates a store in `dataDir` with a real master and three items, and stops it. */
async function createStore(dataDir: string): Promise<void> {
  await using master = await startMaster({ dataDir, args: BUDGET_ARGS });
  const client = await connect({ address: master.address, authkey: TEST_KEY });
  try {
    await client.queue("kept").putMany(["one", "two", "three"]);
  } finally {
    await client.close();
  }
  await master.stop();
}

/** The lines of `text`, without blank ones. */
function linesIn(text: string): string[] {
  return text.split("\n").filter((line) => line.trim() !== "");
}

Deno.test("hostile more: a stored value that is not msgpack, and an emptied taskq.db: exit 3", async () => {
  const figures: Record<string, unknown> = {};
  const dataDir = await Deno.makeTempDir({ prefix: "taskq-hostile-more-" });
  try {
    // A value that is not msgpack (0xc1 is never used) in the second item's row.
    await createStore(dataDir);
    const path = `${dataDir}/taskq.db`;
    const db = new DatabaseSync(path);
    try {
      const change = db.prepare(
        "UPDATE items SET value = ? WHERE id = (SELECT id FROM items ORDER BY id LIMIT 1 OFFSET 1)",
      ).run(new Uint8Array([0xc1, 0xc1, 0xff]));
      assert.equal(Number(change.changes), 1);
    } finally {
      db.close();
    }
    const before = await Deno.readFile(path);
    const run = await runMasterOn(dataDir);
    assert.equal(run.code, 3, `exit code: ${run.stderr}`);
    const lines = linesIn(run.stderr);
    assert.equal(lines.length, 1, `one line:\n${run.stderr}`);
    assert.match(
      lines[0],
      /damaged: item \d+ of queue "kept" holds a value that cannot be decoded/,
    );
    assert.doesNotMatch(run.stdout, /listening/);
    assert.deepEqual(await Deno.readFile(path), before, "the file was left untouched");
    figures.garbage = lines[0].slice(0, 240);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }

  const emptied = await Deno.makeTempDir({ prefix: "taskq-hostile-more-" });
  try {
    await createStore(emptied);
    const path = `${emptied}/taskq.db`;
    await Deno.truncate(path, 0);
    const entries = () => [...Deno.readDirSync(emptied)].map((e) => e.name).sort();
    const listing = entries();
    assert.ok(listing.includes("taskq.created"), `the marker: ${listing}`);
    const run = await runMasterOn(emptied);
    assert.equal(run.code, 3, `exit code: ${run.stderr}`);
    const lines = linesIn(run.stderr);
    assert.equal(lines.length, 1, `one line:\n${run.stderr}`);
    assert.match(lines[0], /is empty \(0 bytes\).*truncated.*left untouched/);
    assert.equal((await Deno.stat(path)).size, 0, "the file is still empty");
    assert.deepEqual(entries(), listing, "nothing was created or removed beside it");
    figures.emptied = lines[0].slice(0, 240);
  } finally {
    await Deno.remove(emptied, { recursive: true });
  }
  report("4 damaged data directory", figures);
});

// ---------------------------------------------------------------------------
// 5. The native accept loop out of file descriptors

/** The file descriptor limit of the master. */
const FD_LIMIT = 256;

/** Raw connections opened in each phase. */
const HELD = 400;

/** Clock ticks per second of /proc/PID/stat. */
function clockTicks(): number {
  const out = new Deno.Command("getconf", { args: ["CLK_TCK"], stderr: "null" }).outputSync();
  return Number(new TextDecoder().decode(out.stdout).trim()) || 100;
}

/** CPU time (user + system) process `pid` has used, in ms (via `cat /proc/PID/stat`). */
function cpuMsOf(pid: number, ticks: number): number {
  const out = new Deno.Command("cat", { args: [`/proc/${pid}/stat`], stderr: "null" }).outputSync();
  const stat = new TextDecoder().decode(out.stdout);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields 14 and 15 of the file (utime, stime) are 12th and 13th after the name.
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / ticks;
}

/** Descriptors process `pid` has open (via `ls /proc/PID/fd`). */
function fdsOf(pid: number): number {
  const out = new Deno.Command("ls", { args: [`/proc/${pid}/fd`], stderr: "null" }).outputSync();
  return new TextDecoder().decode(out.stdout).split("\n").filter((l) => l !== "").length;
}

function countLines(text: string, pattern: RegExp): number {
  return text.split("\n").filter((line) => pattern.test(line)).length;
}

/** Opens a TCP connection to `address`, or `undefined` if that takes over 2 s (backlog full). */
async function openRaw(address: string): Promise<Deno.TcpConn | undefined> {
  try {
    return await withDeadline(Deno.connect(hostPort(address)), 2_000, "connect");
  } catch {
    return undefined;
  }
}

/** Closes every connection (already closed ones are fine). */
async function closeRaw(conns: (Deno.TcpConn | RawConn)[]): Promise<void> {
  for (const conn of conns) {
    if (conn instanceof RawConn) await conn.close();
    else {
      try {
        conn.close();
      } catch {
        // closed by the master
      }
    }
  }
}

Deno.test("hostile more: the native accept loop out of descriptors logs once, idles, recovers", async () => {
  const started = performance.now();
  const ticks = clockTicks();
  const figures: Record<string, unknown> = {};
  await using master = await (async (): Promise<MasterProcess> => {
    const proc = new Proc(
      `master (ulimit -n ${FD_LIMIT})`,
      [
        "-c",
        `ulimit -n ${FD_LIMIT} && exec "$0" "$@"`,
        Deno.execPath(),
        ...masterArgs("127.0.0.1:0"),
      ],
      keyEnv(TEST_KEY),
      "sh",
    );
    try {
      const address = (await proc.waitForLine(/^taskq master listening on (\S+)$/, 15_000))[1];
      return {
        proc,
        address,
        key: TEST_KEY,
        async stop() {
          const status = await proc.stop("SIGTERM");
          if (status.code !== 0) throw new Error(`unclean stop: ${proc.describe()}`);
        },
        [Symbol.asyncDispose]: () => proc.dispose(),
      };
    } catch (error) {
      await proc.dispose();
      throw error;
    }
  })();
  const pid = master.proc.pid; // sh exec'd deno: the same process
  const client = await connect({ address: master.address, authkey: TEST_KEY, name: "good" });
  const held: (Deno.TcpConn | RawConn)[] = [];
  try {
    await client.queue("kept").putMany(["a", "b", "c"]);
    assertFast([await roundTrip(client)], "before");
    figures.fdsBefore = fdsOf(pid);

    // Phase A: 400 connections that never authenticate, held for 2 s.
    const stderrA = master.proc.stderr.length;
    for (let i = 0; i < HELD; i += 50) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(50, HELD - i) }, () => openRaw(master.address)),
      );
      for (const conn of batch) if (conn) held.push(conn);
    }
    figures.unauthOpened = held.length;
    await pause(300);
    const cpuA = cpuMsOf(pid, ticks);
    figures.fdsUnauth = fdsOf(pid);
    const tripsA = [];
    for (let i = 0; i < 3; i++) tripsA.push(await roundTrip(client));
    await pause(2_000);
    figures.unauthCpuMsOver2s = Math.round(cpuMsOf(pid, ticks) - cpuA);
    figures.unauthSlowestTripMs = Math.round(assertFast(tripsA, "among unauthenticated ones"));
    await closeRaw(held.splice(0));
    const logA = master.proc.stderr.slice(stderrA);
    figures.unauthCannotAcceptLines = countLines(logA, /cannot accept/);
    figures.unauthDropLines = countLines(logA, /unauthenticated connections/);
    assert.ok(
      countLines(logA, /cannot accept/) <= 1,
      `at most one line for failed accepts:\n${logA}`,
    );
    assert.ok(
      (figures.unauthCpuMsOver2s as number) < 1_000,
      `the master spun: ${figures.unauthCpuMsOver2s} ms of CPU in 2 s`,
    );
    await pause(500);

    // Phase B: connections that authenticate (and so are not dropped to make
    // room) until the master cannot accept more, then more raw ones, held 2 s.
    const stderrB = master.proc.stderr.length;
    let authenticated = 0;
    for (let i = 0; i < HELD; i++) {
      if (/cannot accept/.test(master.proc.stderr.slice(stderrB))) break;
      const raw = await RawConn.open(master.address);
      held.push(raw);
      const shaking = raw.handshake();
      shaking.catch(() => {});
      try {
        await withDeadline(shaking, 1_000, "a handshake");
        authenticated++;
      } catch {
        break; // not accepted: out of descriptors
      }
    }
    figures.authenticated = authenticated;
    for (let i = held.length; i < HELD; i += 50) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(50, HELD - i) }, () => openRaw(master.address)),
      );
      for (const conn of batch) if (conn) held.push(conn);
    }
    figures.heldB = held.length;
    await waitFor(
      "the master to run out of descriptors",
      () => /cannot accept connections/.test(master.proc.stderr.slice(stderrB)),
      { timeoutMs: 5_000 },
    );
    figures.fdsExhausted = fdsOf(pid);
    const cpuB = cpuMsOf(pid, ticks);
    // The good client's open connection goes on working meanwhile.
    const tripsB = [];
    for (let i = 0; i < 3; i++) tripsB.push(await roundTrip(client));
    await pause(2_000);
    figures.exhaustedCpuMsOver2s = Math.round(cpuMsOf(pid, ticks) - cpuB);
    figures.exhaustedSlowestTripMs = Math.round(assertFast(tripsB, "while out of descriptors"));
    assert.equal(master.proc.exited, undefined, "the master is up");
    assert.ok(
      (figures.exhaustedCpuMsOver2s as number) < 1_000,
      `the master spun: ${figures.exhaustedCpuMsOver2s} ms of CPU in 2 s of exhaustion`,
    );
    await closeRaw(held.splice(0));
    const closedAt = performance.now();
    await waitFor(
      "the master to accept again",
      () => /accepting connections again/.test(master.proc.stderr.slice(stderrB)),
      { timeoutMs: 5_000 },
    );
    figures.acceptAgainMs = Math.round(performance.now() - closedAt);
    const logB = master.proc.stderr.slice(stderrB);
    figures.exhaustedCannotAcceptLines = countLines(logB, /cannot accept/);
    assert.equal(
      countLines(logB, /cannot accept/),
      1,
      `one line for the failed accepts, not a flood:\n${logB}`,
    );
    const connectStarted = performance.now();
    const fresh = await connect({ address: master.address, authkey: TEST_KEY, name: "fresh" });
    try {
      const trip = await roundTrip(fresh);
      figures.freshConnectAndTripMs = Math.round(performance.now() - connectStarted);
      assertFast([trip], "of a new client after");
      assert.ok(
        (figures.freshConnectAndTripMs as number) < ROUND_TRIP_BOUND_MS,
        `a new client took ${figures.freshConnectAndTripMs} ms to connect and round-trip`,
      );
    } finally {
      await fresh.close();
    }
    const jobs = await client.queue("kept").getMany(10, 500);
    assert.deepEqual(jobs.map((j) => j.value), ["a", "b", "c"]);
    await client.queue("kept").ack(jobs);
  } finally {
    await closeRaw(held);
    await client.close();
  }
  await master.stop();
  figures.totalMs = Math.round(performance.now() - started);
  report("5 native accept out of descriptors", figures);
});
