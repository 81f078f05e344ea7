/**
 * The issue "Hostile networks", end to end with real processes: each test
 * starts a real `taskq master` (durable in a temp dir, with a small
 * `--max-memory`), has a good client put items the master acknowledges, runs
 * one hostile input from another process (a Deno attacker script or Python),
 * and meanwhile and afterwards checks, with a good native client in this
 * process:
 *
 * - a put/get/ack round trip completes within a second, during the attack and
 *   after it (each measured; the first one after the attack may reconnect);
 * - the master process is still alive, and its RSS (`/proc/PID/status`
 *   VmRSS) stays within `--max-memory` plus {@link RUNTIME_ALLOWANCE_BYTES};
 * - every acknowledged item is still there (counted), and after a SIGTERM
 *   and a restart on the same data dir it is there again.
 *
 * The inputs, scaled to run in seconds on two busy cores:
 *
 * 1. native puts of 65,536 items of 240 empty maps each (15.9 MB frames);
 * 2. Python: `q.put([{} for _ in range(N)])` from an unmodified-style
 *    BaseManager client, and a pickle hash bomb (a 1 MiB bytes key set again
 *    2,000 times) over the Python wire;
 * 3. 100,000 queue names by pipelined gets with timeout 0, with `/metrics`;
 * 4. consumers that never read their socket, pipelining gets of 1 MiB items
 *    and stats requests;
 * 5. 200,000 pipelined waiting gets on one connection;
 * 6. an unauthenticated connection flood (12,000 connections opened and
 *    closed, some held idle).
 *
 * Every test stops only the processes it started (by their handles, which
 * signal their PIDs) and removes its temp dirs.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { Client } from "../lib/mod.ts";
import { httpToken } from "../lib/http/token.ts";
import {
  type MasterProcess,
  pause,
  type Proc,
  REPO_ROOT,
  spawnClient,
  TEST_KEY,
  waitFor,
} from "./_helpers.ts";
import { managerPreamble, PYTHON_LISTENING, PYTHONS, runPython } from "./_python.ts";
import {
  assertFast,
  doneLine,
  goodClient,
  MIB,
  mib,
  ROUND_TRIP_BOUND_MS,
  roundTrip,
  rssOf,
  scenario,
} from "./_hostile.ts";

// ---------------------------------------------------------------------------
// The attacker: a Deno script speaking the native protocol by hand

/** The attacker's source; its first argument names the attack, the second the master. */
const ATTACKER = `
import { decode, encode } from "${REPO_ROOT}lib/model/codec.ts";
import { FrameReader } from "${REPO_ROOT}lib/wire/frame.ts";
import { clientProof, newNonce } from "${REPO_ROOT}lib/wire/auth.ts";

const [mode, address, ...rest] = Deno.args;
const numbers = rest.map(Number);
const key = new TextEncoder().encode(Deno.env.get("ATTACK_KEY") ?? "");
const at = address.lastIndexOf(":");
const target = { hostname: address.slice(0, at), port: Number(address.slice(at + 1)) };
const say = (what, fields = {}) => console.log(JSON.stringify({ what, ...fields }));

function frame(payload) {
  const out = new Uint8Array(4 + payload.length);
  new DataView(out.buffer).setUint32(0, payload.length);
  out.set(payload, 4);
  return out;
}

function frames(values) {
  const parts = values.map((v) => frame(encode(v)));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

class Peer {
  reader = new FrameReader(64 * 1024 * 1024);
  written = 0;
  constructor(conn) { this.conn = conn; }
  async write(bytes) {
    let offset = 0;
    while (offset < bytes.length) {
      const n = await this.conn.write(bytes.subarray(offset));
      offset += n;
      this.written += n;
    }
  }
  /** The next message, or undefined at the end of the stream. */
  async next() {
    for (;;) {
      const f = this.reader.next();
      if (f !== undefined) return decode(f);
      const n = await this.conn.read(this.reader.space());
      if (n === null) return undefined;
      this.reader.written(n);
    }
  }
  close() { try { this.conn.close(); } catch { /* closed */ } }
}

async function open() {
  const peer = new Peer(await Deno.connect(target));
  const nonce = newNonce();
  await peer.write(frame(encode({ op: "hello", version: 1, nonce, name: "attacker" })));
  const challenge = await peer.next();
  if (challenge?.op !== "challenge") throw new Error("no challenge: " + JSON.stringify(challenge));
  await peer.write(frame(encode({ op: "auth", proof: clientProof(key, nonce, challenge.nonce) })));
  const welcome = await peer.next();
  if (welcome?.op !== "welcome") throw new Error("no welcome: " + JSON.stringify(welcome));
  return peer;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

if (mode === "putflood") {
  // count puts of 65,536 items, each an array of 240 empty maps: 15.9 MB of frame
  const [count] = numbers;
  const item = new Uint8Array(243);
  item.set([0xdc, 0x00, 240]);
  item.fill(0x80, 3);
  const head = [0x84, ...encode("op"), ...encode("put"), ...encode("rid"), ...encode(1),
    ...encode("queue"), ...encode("flood"), ...encode("items"), 0xdd, 0, 1, 0, 0];
  const payload = new Uint8Array(head.length + 65536 * item.length);
  payload.set(head);
  for (let i = 0, at = head.length; i < 65536; i++, at += item.length) payload.set(item, at);
  const bytes = frame(payload);
  say("start", { frameBytes: payload.length });
  const outcomes = {};
  for (let i = 0; i < count; i++) {
    const peer = await open();
    const started = performance.now();
    const reply = peer.next().then((m) => m === undefined ? "closed" : (m.op === "error" ? "error:" + m.code : "reply:" + m.op),
      () => "reset");
    let wrote = true;
    try { await peer.write(bytes); } catch { wrote = false; }
    const outcome = await reply;
    const closed = await (outcome === "closed" || outcome === "reset" ? Promise.resolve(true) :
      peer.next().then((m) => m === undefined, () => true));
    peer.close();
    say("put", { i, outcome, wrote, closed, ms: Math.round(performance.now() - started) });
    outcomes[outcome + (closed ? " then closed" : " open")] = (outcomes[outcome + (closed ? " then closed" : " open")] ?? 0) + 1;
  }
  say("done", { puts: count, frameBytes: payload.length, outcomes });
} else if (mode === "names") {
  // count gets with timeout 0, each on a new queue name, pipelined on one connection
  const [count] = numbers;
  const peer = await open();
  const started = performance.now();
  let ok = 0, errors = 0, items = 0, lastError;
  const reading = (async () => {
    while (ok + errors < count) {
      const m = await peer.next();
      if (m === undefined) break;
      if (m.op === "ok") { ok++; items += m.jobs?.length ?? 0; } else { errors++; lastError = m; }
    }
  })();
  const chunk = 1000;
  for (let i = 0; i < count; i += chunk) {
    const batch = [];
    for (let j = i; j < Math.min(count, i + chunk); j++) {
      batch.push({ op: "get", rid: j, queue: "name-" + j, max: 1, timeout: 0 });
    }
    await peer.write(frames(batch));
  }
  say("written", { count, ms: Math.round(performance.now() - started) });
  await reading;
  peer.close();
  say("done", { names: count, ok, errors, items, lastError, ms: Math.round(performance.now() - started) });
} else if (mode === "noread") {
  // conns connections, each pipelining gets of the big items and stats requests, never reading
  const [conns, gets, holdMs] = numbers;
  const peers = [];
  const writes = [];
  for (let c = 0; c < conns; c++) {
    const peer = await open();
    peers.push(peer);
    const requests = [];
    for (let i = 0; i < gets; i++) {
      requests.push(i % 2 === 0
        ? { op: "get", rid: i, queue: "big", max: 4, timeout: 0, lease: 120000 }
        : { op: "stats", rid: i });
    }
    writes.push(peer.write(frames(requests)).catch(() => {}));
  }
  say("writing", { conns, gets });
  await sleep(holdMs);
  say("done", { conns, requestsPerConn: gets, bytesWritten: peers.map((p) => p.written) });
  for (const peer of peers) peer.close();
  Deno.exit(0);
} else if (mode === "waiters") {
  // count gets with a long timeout on an empty queue, pipelined on one connection
  const [count, holdMs] = numbers;
  const peer = await open();
  let replies = 0;
  const reading = (async () => {
    for (;;) { const m = await peer.next(); if (m === undefined) break; replies++; }
  })().catch(() => {});
  let framesWritten = 0;
  const writing = (async () => {
    const chunk = 1000;
    for (let i = 0; i < count; i += chunk) {
      const batch = [];
      for (let j = i; j < Math.min(count, i + chunk); j++) {
        batch.push({ op: "get", rid: j, queue: "empty", max: 1, timeout: 600000 });
      }
      await peer.write(frames(batch));
      framesWritten += batch.length;
    }
  })().catch(() => {});
  say("writing", { count });
  await sleep(holdMs);
  say("done", { gets: count, framesWritten, bytesWritten: peer.written, replies });
  peer.close();
  Deno.exit(0);
} else if (mode === "connflood") {
  // total connections opened and closed by concurrency loops, plus idle ones held open
  const [total, concurrency, idle] = numbers;
  const started = performance.now();
  const held = [];
  let failed = 0, opened = 0, heldFailed = 0;
  for (let i = 0; i < idle; i++) {
    try { held.push(await Deno.connect(target)); } catch { heldFailed++; }
  }
  say("idle", { held: held.length, heldFailed });
  let next = 0;
  const hello = frame(encode({ op: "hello", version: 1, nonce: newNonce(), name: "flood" }));
  const loop = async () => {
    while (next < total) {
      const i = next++;
      try {
        const conn = await Deno.connect(target);
        opened++;
        // a third send nothing, a third half a hello, a third a whole hello
        if (i % 3 === 1) await conn.write(hello.subarray(0, 10)).catch(() => {});
        if (i % 3 === 2) await conn.write(hello).catch(() => {});
        conn.close();
      } catch {
        failed++;
      }
      if (i % 5000 === 0) say("progress", { i, ms: Math.round(performance.now() - started) });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  const ms = Math.round(performance.now() - started);
  for (const conn of held) { try { conn.close(); } catch { /* closed by the master */ } }
  say("done", { total, opened, failed, idle: held.length, heldFailed, ms });
  Deno.exit(0);
} else {
  throw new Error("unknown mode " + mode);
}
`;

/** Starts the attacker with `mode` against `master`; its end resolves with its "done" line. */
async function startAttacker(
  master: MasterProcess,
  mode: string,
  numbers: number[],
): Promise<{ attacker: Proc; finished: Promise<Record<string, unknown>> }> {
  const attacker = await spawnClient(`attacker-${mode}`, ATTACKER, {
    args: [mode, master.address, ...numbers.map(String)],
    env: { ATTACK_KEY: TEST_KEY },
  });
  return { attacker, finished: doneLine(attacker) };
}

/** The parsed JSON lines `proc` printed with `what`. */
function linesOf(proc: Proc, what: string): Record<string, unknown>[] {
  return proc.lines.filter((l) => l.startsWith(`{"what":"${what}"`)).map((l) => JSON.parse(l));
}

// ---------------------------------------------------------------------------
// 1. A flood of puts whose frames decode to huge trees

Deno.test("hostile: puts of 65,536 items of 240 empty maps are refused; the master stays up", async () => {
  const PUTS = 10;
  await scenario(
    "1 put flood of huge-decoded frames",
    [],
    async (master) => {
      const { attacker, finished } = await startAttacker(master, "putflood", [PUTS]);
      return {
        attacker,
        finished: finished.then((done) => ({ ...done, ...checkPutFlood(attacker, PUTS) })),
      };
    },
    async (_master, client) => {
      // Nothing of the flood was stored.
      const [flood] = (await client.stats("flood")).queues;
      assert.ok(flood === undefined || flood.put === 0, `flood stored: ${JSON.stringify(flood)}`);
      return {};
    },
  );
});

/** Asserts the put flood's outcomes: each put refused with an error or a closed connection. */
function checkPutFlood(attacker: Proc, count: number): Record<string, unknown> {
  const puts = linesOf(attacker, "put");
  assert.equal(puts.length, count, attacker.describe());
  for (const put of puts) {
    assert.ok(
      String(put.outcome).startsWith("error:") || put.outcome === "closed" ||
        put.outcome === "reset",
      `a flood put was not refused: ${JSON.stringify(put)}`,
    );
    assert.ok(put.closed, `the connection stayed open after a refused put: ${JSON.stringify(put)}`);
  }
  return { putMs: puts.map((p) => p.ms) };
}

// ---------------------------------------------------------------------------
// 2. Python: a huge list of empty dicts, and a pickle hash bomb

/** Empty dicts in the Python client's put (the 8,000,000). */
const PYTHON_DICTS = 8_000_000;

/** Hash bombs sent, and how often each sets its 1 MiB key again. */
const HASH_BOMBS = 40;
const HASH_BOMB_TIMES = 2_000;

/** The Python attacker: a BaseManager client's big put, then hash bombs on a raw connection. */
function pythonAttacker(python: string): string {
  return `${managerPreamble(python, TEST_KEY)}
import json, struct
from multiprocessing.connection import Client

def say(what, **fields):
    print(json.dumps({"what": what, **fields}, separators=(",", ":")), flush=True)

dicts, bombs, times = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
m = QueueManager(address=ADDRESS, authkey=KEY)
m.connect()
q = m.get_task_queue()
started = time.monotonic()
big = [{} for _ in range(dicts)]
say("built", ms=round((time.monotonic() - started) * 1000))
started = time.monotonic()
try:
    q.put(big)
    put = "stored"
except Exception as e:
    put = type(e).__name__ + ": " + str(e)[:400]
put_ms = round((time.monotonic() - started) * 1000)
del big
say("put", put=put, ms=put_ms)
qsize = q.qsize()  # the proxy's connection still works

# A dict whose 1 MiB bytes key is memoized, then set again as a key \`times\` times,
# inside the request (None, 'put', (item,), {}), sent as it is.
key = bytes(1 << 20)
item = b"}" + b"B" + struct.pack("<I", len(key)) + key + b"\\x94Ns" + b"h\\x00Ns" * times
request = b"\\x80\\x04(N\\x8c\\x03put(" + item + b"t}t."
conn = Client(ADDRESS, authkey=KEY)
kinds = {}
last = ""
started = time.monotonic()
for i in range(bombs):
    conn.send_bytes(request)
    kind, value = conn.recv()
    kinds[kind] = kinds.get(kind, 0) + 1
    last = str(value)[-300:]
bomb_ms = round((time.monotonic() - started) * 1000)
conn.send((None, "dummy", (), {}))
after = conn.recv()
conn.close()
say("done", put=put, putMs=put_ms, qsize=qsize, bombs=kinds, bombReply=last, bombMs=bomb_ms,
    bombBytes=len(request), after=repr(after))
`;
}

Deno.test({
  name: "hostile: Python's huge put and a pickle hash bomb are refused; natives are served",
  ignore: !PYTHONS.some((p) => p.available),
  fn: async () => {
    const python = PYTHONS.find((p) => p.available)!;
    await scenario(
      "2 Python huge put and hash bomb",
      ["--python", "127.0.0.1:0"],
      async (master) => {
        const address = (await master.proc.waitForLine(PYTHON_LISTENING))[1];
        const attacker = await runPython(
          python,
          "python attacker",
          pythonAttacker(address),
          { args: [String(PYTHON_DICTS), String(HASH_BOMBS), String(HASH_BOMB_TIMES)] },
        );
        const finished = doneLine(attacker).then((done) => {
          assert.match(
            String(done.put),
            /^RemoteError: .*more than a pickle may build/s,
            attacker.describe(),
          );
          assert.deepEqual(done.bombs, { "#TRACEBACK": HASH_BOMBS }, attacker.describe());
          assert.match(String(done.bombReply), /to hash/, attacker.describe());
          assert.equal(done.after, "('#RETURN', None)");
          const built = linesOf(attacker, "built")[0];
          return {
            dicts: PYTHON_DICTS,
            pythonBuildMs: built?.ms,
            put: /taskq master refused[^\n]*/.exec(String(done.put))?.[0].slice(0, 160),
            putMs: done.putMs,
            bombs: HASH_BOMBS,
            bombBytes: done.bombBytes,
            bombMs: done.bombMs,
          };
        });
        return { attacker, finished };
      },
      async (_master, client) => {
        // The refused put stored nothing on the task queue.
        const [tasks] = (await client.stats("tasks")).queues;
        assert.ok(tasks === undefined || tasks.put === 0, `tasks: ${JSON.stringify(tasks)}`);
        return {};
      },
    );
  },
});

// ---------------------------------------------------------------------------
// 3. 100,000 queue names by gets that do not wait

/** Queue names the attacker asks for. */
const NAMES = 100_000;

/** Most `/metrics` may take, in bytes. */
const METRICS_BOUND_BYTES = 1_000_000;

/** Fetches `/metrics`; resolves with its size, duration and queue count. */
async function metrics(url: string): Promise<{ bytes: number; ms: number; queues: number }> {
  const started = performance.now();
  const response = await fetch(`${url}/metrics`, {
    headers: { authorization: `Bearer ${httpToken(new TextEncoder().encode(TEST_KEY))}` },
  });
  const text = await response.text();
  const ms = performance.now() - started;
  assert.equal(response.status, 200, text.slice(0, 200));
  const match = /^taskq_queues (\d+)$/m.exec(text);
  assert.ok(match, "taskq_queues in /metrics");
  return { bytes: text.length, ms, queues: Number(match[1]) };
}

Deno.test("hostile: 100,000 queue names by gets with timeout 0 keep memory and /metrics small", async () => {
  let url = "";
  await scenario(
    "3 100,000 queue names",
    ["--http", "127.0.0.1:0"],
    async (master) => {
      url = (await master.proc.waitForLine(/^taskq http listening on (\S+)$/))[1].replace(
        /\/$/,
        "",
      );
      const { attacker, finished } = await startAttacker(master, "names", [NAMES]);
      // /metrics during the attack, every 200 ms until the attacker is done.
      const during: { bytes: number; ms: number; queues: number }[] = [];
      let over = false;
      const polling = (async () => {
        while (!over) {
          during.push(await metrics(url));
          await pause(200);
        }
      })();
      return {
        attacker,
        finished: finished.finally(() => over = true).then(async (done) => {
          await polling;
          assert.equal(done.ok, NAMES, JSON.stringify(done));
          assert.equal(done.errors, 0, JSON.stringify(done));
          for (const m of during) {
            assert.ok(m.bytes < METRICS_BOUND_BYTES, `/metrics of ${m.bytes} bytes`);
            assert.ok(m.ms < ROUND_TRIP_BOUND_MS, `/metrics took ${m.ms} ms`);
          }
          return {
            names: NAMES,
            attackMs: done.ms,
            metricsDuring: during.length,
            slowestMetricsMs: Math.round(Math.max(...during.map((m) => m.ms))),
            largestMetricsBytes: Math.max(...during.map((m) => m.bytes)),
          };
        }),
      };
    },
    async () => {
      const after = await metrics(url);
      assert.ok(after.bytes < METRICS_BOUND_BYTES, `/metrics of ${after.bytes} bytes`);
      assert.ok(after.ms < ROUND_TRIP_BOUND_MS, `/metrics took ${after.ms} ms`);
      // "kept" and "probe" (and maybe the not-yet-forgotten ones): not 100,000.
      assert.ok(after.queues < 100, `${after.queues} queues after the attack`);
      return {
        metricsAfter: after.bytes,
        metricsAfterMs: Math.round(after.ms),
        queuesAfter: after.queues,
      };
    },
  );
});

// ---------------------------------------------------------------------------
// 4. Consumers that never read

/** Items of {@link BIG_ITEM_BYTES} each on the queue "big". */
const BIG_ITEMS = 40;
const BIG_ITEM_BYTES = MIB;

/** Asserts all of "big" is back, ready. */
async function assertBigBack(client: Client, when: string): Promise<void> {
  const [big] = (await client.stats("big")).queues;
  assert.ok(big, `queue "big" is gone ${when}`);
  assert.equal(big.ready, BIG_ITEMS, `ready items of "big" ${when}: ${JSON.stringify(big)}`);
}

Deno.test("hostile: consumers that never read stay within the buffers cap; the master serves", async () => {
  await scenario(
    "4 consumers that never read",
    [],
    async (master, client) => {
      for (let i = 0; i < BIG_ITEMS; i++) {
        await client.queue("big").put(new Uint8Array(BIG_ITEM_BYTES).fill(i));
      }
      // 6 connections × (5,000 gets of up to 4 items + 5,000 stats), none read, for 6 s.
      return await startAttacker(master, "noread", [6, 10_000, 6_000]);
    },
    async (_master, client) => {
      // Once the attacker is gone, every item it had leased is back.
      await waitFor("the big items to come back", async () => {
        const [big] = (await client.stats("big")).queues;
        return big?.ready === BIG_ITEMS;
      });
      return {};
    },
    (client) => assertBigBack(client, "after the restart"),
  );
});

// ---------------------------------------------------------------------------
// 5. Many waiting gets on one connection

/** Gets the attacker pipelines. */
const WAITERS = 200_000;

/** The master's cap on one connection's outstanding requests. */
const MAX_PENDING_REQUESTS = 4096;

Deno.test("hostile: 200,000 waiting gets on one connection are capped and go with it", async () => {
  // Checked last, so that every other check of the scenario runs first.
  let leftWaiting = -1;
  await scenario(
    "5 200,000 waiting gets",
    [],
    async (master, client) => {
      const { attacker, finished } = await startAttacker(master, "waiters", [WAITERS, 5_000]);
      let over = false;
      let mostWaiting = 0;
      const polling = (async () => {
        while (!over) {
          const [empty] = (await client.stats("empty")).queues;
          mostWaiting = Math.max(mostWaiting, empty?.waiting ?? 0);
          await pause(100);
        }
      })();
      return {
        attacker,
        finished: finished.finally(() => over = true).then(async (done) => {
          await polling;
          // The master read at most its cap (and a bounded read-ahead), then cut
          // the connection: the attacker could not write all its gets.
          assert.ok(Number(done.framesWritten) < WAITERS, JSON.stringify(done));
          assert.ok(mostWaiting <= MAX_PENDING_REQUESTS, `${mostWaiting} gets waiting at once`);
          // None of the gets is answered; at most the one error that closes the
          // connection (it kept sending past the cap) reaches the attacker.
          assert.ok(Number(done.replies) <= 1, JSON.stringify(done));
          return {
            mostWaiting,
            framesWritten: done.framesWritten,
            bytesWritten: done.bytesWritten,
          };
        }),
      };
    },
    async (_master, client) => {
      // The connection closed: nothing of it is left waiting.
      const deadline = Date.now() + 5_000;
      do {
        const [empty] = (await client.stats("empty")).queues;
        leftWaiting = empty?.waiting ?? 0;
        if (leftWaiting === 0) break;
        await pause(100);
      } while (Date.now() < deadline);
      return { leftWaiting5sAfterClose: leftWaiting };
    },
  );
  assert.equal(
    leftWaiting,
    0,
    `${leftWaiting} gets still waiting 5 s after their connection closed: paused at the ` +
      "request cap with its read-ahead full, the master never reads the peer's end of stream",
  );
});

// ---------------------------------------------------------------------------
// 6. An unauthenticated connection flood

/** Connections opened and closed, how many at once, and how many held idle meanwhile. */
const FLOOD_CONNECTIONS = 12_000;
const FLOOD_CONCURRENCY = 64;
const FLOOD_IDLE = 500;

/** How much the master's RSS may stay above its level before the flood, once it is over. */
const FLOOD_RSS_SLACK_BYTES = 160 * MIB;

Deno.test("hostile: 12,000 unauthenticated connections; good clients still connect", async () => {
  let baseline = 0;
  await scenario(
    "6 unauthenticated connection flood",
    [],
    async (master) => {
      baseline = rssOf(master.proc.pid);
      const { attacker, finished } = await startAttacker(master, "connflood", [
        FLOOD_CONNECTIONS,
        FLOOD_CONCURRENCY,
        FLOOD_IDLE,
      ]);
      // New good clients during the flood: connect (retrying), one round trip, close.
      let over = false;
      const connects: { retries: number; ms: number; trip: number }[] = [];
      const reasons = new Set<string>();
      const connecting = (async () => {
        while (!over) {
          const started = performance.now();
          const { client, retries, reasons: why } = await goodClient(master);
          const ms = performance.now() - started;
          try {
            connects.push({ retries, ms, trip: await roundTrip(client) });
          } finally {
            await client.close();
          }
          for (const reason of why) reasons.add(reason.replace(/\d+/g, "N"));
          await pause(100);
        }
      })();
      return {
        attacker,
        finished: finished.finally(() => over = true).then(async (done) => {
          await connecting;
          assert.ok(connects.length > 0, "no good client connected during the flood");
          assertFast(connects.map((c) => c.trip), "of a new good client during the flood");
          return {
            ...done,
            goodConnects: connects.length,
            goodConnectRetries: connects.reduce((n, c) => n + c.retries, 0),
            slowestGoodConnectMs: Math.round(Math.max(...connects.map((c) => c.ms))),
            retryReasons: [...reasons],
          };
        }),
      };
    },
    async (master) => {
      // RSS once the flood is over: the lowest of 2 s of samples, within the stated bound.
      let settled = Infinity;
      for (let i = 0; i < 10; i++, await pause(200)) {
        settled = Math.min(settled, rssOf(master.proc.pid));
      }
      assert.ok(
        settled <= baseline + FLOOD_RSS_SLACK_BYTES,
        `RSS ${mib(settled)} after the flood, ${mib(baseline)} before: more than ${
          mib(FLOOD_RSS_SLACK_BYTES)
        } above`,
      );
      return { rssBeforeFlood: mib(baseline), rssSettled: mib(settled) };
    },
  );
});
