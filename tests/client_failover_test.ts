/**
 * Clients fail over between several masters (issue #12; lib/client/client.ts
 * `connect`, lib/cli/args.ts `connectFromFlags`):
 *
 * - given a list, the first connection skips masters it cannot use (a refused
 *   port, one that never answers, something that is not a master) and
 *   reaches the live one, with or without `reconnect`; none reachable is one
 *   error naming each; a wrong key is final, on the first master tried;
 * - clients start at a random master of the list, so many spread over them;
 * - a client whose master dies reconnects to the next one at once and carries
 *   on there, and so does `taskq worker --connect A,B` (a real process);
 * - a bad list (an empty entry, a bad port) is refused with the entry named,
 *   by the library and by the command line;
 * - `TASKQ_ADDR` with a list works for `taskq put`, `get` and `status`.
 *
 * The masters run in this process (each its own memory store, standing in for
 * masters sharing a database), on loopback ephemeral ports.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Master, serve } from "../lib/server/master.ts";
import { AuthenticationError, type Client, connect, ConnectionLostError } from "../lib/mod.ts";
import { ConfigError } from "../lib/errors.ts";
import {
  freeLoopbackPort,
  type ResultRecord,
  runTaskq,
  startTaskq,
  type TaskqRun,
  TEST_KEY,
  waitFor,
} from "./_helpers.ts";

/** Time the tests give a first connection over a list with a silent master in it. */
const LIST_TIMEOUT_MS = 2_000;

/** Clients connected at once to see them spread over two masters. */
const SPREAD_CLIENTS = 20;

/** A master on a loopback ephemeral port, in memory, with the test key. */
function startMaster(): Promise<Master> {
  return serve({ listen: "127.0.0.1:0", authkey: TEST_KEY });
}

/** `HOST:PORT` of an in-process master. */
function addressOf(master: Master): string {
  return `127.0.0.1:${master.address.port}`;
}

/** An address where nothing listens (a master that died). */
function deadAddress(): string {
  return `127.0.0.1:${freeLoopbackPort()}`;
}

/** Items ready on `queue` of `master`. */
async function ready(master: Master, queue: string): Promise<number> {
  return (await master.broker.stats(queue)).queues[0]?.ready ?? 0;
}

/** Authenticated clients on `master`. */
async function clientsOn(master: Master): Promise<number> {
  return (await master.broker.stats()).clients;
}

/**
 * A listener that accepts connections and then runs `onConn` on each (never
 * answering like a master), closed with everything it accepted.
 */
class NotAMaster implements AsyncDisposable {
  readonly #listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  readonly #conns = new Set<Deno.TcpConn>();
  readonly #accepting: Promise<void>;

  constructor(onConn: (conn: Deno.TcpConn) => void) {
    this.#accepting = (async () => {
      for (;;) {
        let conn: Deno.TcpConn;
        try {
          conn = await this.#listener.accept();
        } catch {
          return;
        }
        this.#conns.add(conn);
        onConn(conn);
      }
    })();
  }

  get address(): string {
    return `127.0.0.1:${this.#listener.addr.port}`;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#listener.close();
    await this.#accepting;
    for (const conn of this.#conns) {
      try {
        conn.close();
      } catch {
        // closed already
      }
    }
  }
}

/** Checks a failed run printed exactly one line on stderr, matching `pattern`, and exited 2. */
function assertUsageError(run: TaskqRun, pattern: RegExp): void {
  assert.equal(run.code, 2, `exit code; stderr:\n${run.stderr}`);
  const lines = run.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `one line on stderr, got:\n${run.stderr}`);
  assert.match(lines[0], pattern);
}

Deno.test("failover: a list with dead masters first still reaches the live one", async () => {
  const live = await startMaster();
  // Silent: takes the connection, never says a word (the handshake times out).
  await using silent = new NotAMaster(() => {});
  // Not a master: hangs up at once.
  await using hangsUp = new NotAMaster((conn) => conn.close());
  try {
    const list = [deadAddress(), silent.address, hangsUp.address, addressOf(live)];
    // Whatever master each starts at, with reconnect on (retries) or off (one round).
    for (const reconnect of [true, false, true, false, true, false]) {
      const start = Date.now();
      const client = await connect({
        address: list.join(","),
        authkey: TEST_KEY,
        reconnect,
        timeoutMs: LIST_TIMEOUT_MS,
      });
      try {
        assert.ok(Date.now() - start < LIST_TIMEOUT_MS, "within the connect timeout");
        assert.equal(client.address, addressOf(live));
        assert.deepEqual(client.addresses, list);
        await client.queue("q").put(reconnect);
      } finally {
        await client.close();
      }
    }
    assert.equal(await ready(live, "q"), 6);
    // The array form, one address per entry, works the same.
    const client = await connect({ address: [deadAddress(), live.address], authkey: TEST_KEY });
    assert.equal(client.address, addressOf(live));
    await client.close();
  } finally {
    await live.close();
  }
});

Deno.test("failover: no master reachable is one error naming each master's failure", async () => {
  const [a, b] = [deadAddress(), deadAddress()];
  const start = Date.now();
  await assert.rejects(
    connect({ address: `${a},${b}`, authkey: TEST_KEY, reconnect: false }),
    (error: unknown) => {
      assert.ok(error instanceof ConnectionLostError, String(error));
      assert.match(error.message, /none of the 2 masters could be reached/);
      assert.ok(error.message.includes(`cannot reach master ${a}`), error.message);
      assert.ok(error.message.includes(`cannot reach master ${b}`), error.message);
      return true;
    },
  );
  assert.ok(Date.now() - start < 1_000, "refused ports, no retries: at once");
});

Deno.test("failover: a wrong key is final, on the first master tried", async () => {
  const masters = [await startMaster(), await startMaster()];
  try {
    await assert.rejects(
      connect({ address: masters.map(addressOf).join(","), authkey: "wrong" }),
      AuthenticationError,
    );
    const tried = masters.map((m) => m.telemetry.errors.get("auth_failed") ?? 0);
    assert.equal(tried[0] + tried[1], 1, `one attempt in all, got ${tried}`);
  } finally {
    for (const master of masters) await master.close();
  }
});

Deno.test("failover: clients start at a random master of the list", async () => {
  const masters = [await startMaster(), await startMaster()];
  const clients: Client[] = [];
  try {
    const address = masters.map(addressOf).join(",");
    for (let i = 0; i < SPREAD_CLIENTS; i++) {
      clients.push(await connect({ address, authkey: TEST_KEY }));
    }
    const counts = await Promise.all(masters.map(clientsOn));
    assert.equal(counts[0] + counts[1], SPREAD_CLIENTS);
    // All on one master would happen 2 times in 2^20.
    assert.ok(counts[0] > 0 && counts[1] > 0, `clients per master: ${counts}`);
  } finally {
    for (const client of clients) await client.close();
    for (const master of masters) await master.close();
  }
});

Deno.test("failover: when its master dies, a client moves to the next one and carries on", async () => {
  const masters = [await startMaster(), await startMaster()];
  const list = masters.map(addressOf);
  const reconnected: string[] = [];
  const disconnects: Error[] = [];
  const client = await connect({
    address: list.join(","),
    authkey: TEST_KEY,
    onDisconnect: (reason) => disconnects.push(reason),
    onReconnect: (_attempt, address) => reconnected.push(address),
  });
  const first = list.indexOf(client.address);
  const [dying, other] = [masters[first], masters[1 - first]];
  try {
    assert.notEqual(first, -1, `connected to ${client.address}`);
    await client.queue("tasks").put("before");
    assert.equal(await ready(dying, "tasks"), 1);

    await dying.close();
    const closedAt = Date.now();
    await waitFor("the client to reconnect", () => reconnected.length > 0);
    // The dead master is tried after the live one: only the first round's short backoff.
    assert.ok(Date.now() - closedAt < 2_000, `reconnected after ${Date.now() - closedAt} ms`);
    assert.deepEqual(reconnected, [addressOf(other)]);
    assert.equal(client.address, addressOf(other));
    assert.equal(client.sessionNumber, 2);
    assert.match(disconnects[0].message, new RegExp(`master ${list[first]}`));

    await client.queue("tasks").put("after");
    assert.equal(await ready(other, "tasks"), 1, "the put after the failover lands on the other");
    const job = await client.queue("tasks").get(1_000);
    assert.equal(job?.value, "after");
    await client.queue("tasks").ack(job!);
  } finally {
    await client.close();
    for (const master of masters) await master.close();
  }
});

Deno.test("failover: taskq worker --connect A,B moves to B when A dies and carries on", async () => {
  const masters = [await startMaster(), await startMaster()];
  const list = masters.map(addressOf);
  await using worker = startTaskq("worker", [
    "worker",
    "--connect",
    list.join(","),
    "--queue",
    "tasks",
    "--results",
    "results",
    "--",
    "sh",
    "-c",
    'echo "done $1"',
    "sh",
    "{}",
  ]);
  try {
    // The worker starts at a random one of the two: find which.
    const first = await waitFor("the worker to connect", async () => {
      const counts = await Promise.all(masters.map(clientsOn));
      return counts[0] + counts[1] === 1 ? String(counts.indexOf(1)) : undefined;
    }).then(Number);
    const [a, b] = [masters[first], masters[1 - first]];

    // Work on A.
    const onA = await connect({ address: a.address, authkey: TEST_KEY, reconnect: false });
    await onA.queue("tasks").putMany([1, 2, 3]);
    await waitFor("the results on A", async () => await ready(a, "results") === 3);
    await onA.close();

    // A dies; work put on B is done there.
    await a.close();
    const onB = await connect({ address: b.address, authkey: TEST_KEY });
    try {
      await onB.queue("tasks").putMany([4, 5, 6]);
      await waitFor("the results on B", async () => await ready(b, "results") === 3);
      const results = await onB.queue("results").getMany(3, 0);
      const outputs = results.map((job) => (job.value as ResultRecord).output.trim()).sort();
      assert.deepEqual(outputs, ["done 4", "done 5", "done 6"]);
      await onB.queue("results").ack(results);
    } finally {
      await onB.close();
    }
    assert.match(worker.stderr, new RegExp(`reconnected to the master.*${list[1 - first]}`));
  } finally {
    await worker.stop("SIGTERM");
    for (const master of masters) await master.close();
  }
});

Deno.test("failover: a bad list is refused with the bad entry named", async () => {
  const bad: [string, RegExp][] = [
    ["127.0.0.1:1,,127.0.0.1:2", /"127\.0\.0\.1:1,,127\.0\.0\.1:2": entry 2 is empty/],
    ["127.0.0.1:1,", /entry 2 is empty/],
    ["a:notaport", /bad address "a:notaport": expected HOST:PORT/],
    ["127.0.0.1:1,a:notaport", /bad address "a:notaport".*\(entry 2 of/],
    ["127.0.0.1:1,b:0", /bad address "b:0": a master's port is 1–65535 \(entry 2 of/],
    ["127.0.0.1:70000", /bad address "127\.0\.0\.1:70000": a master's port is 1–65535$/],
  ];
  for (const [address, pattern] of bad) {
    await assert.rejects(connect({ address, authkey: TEST_KEY }), (error: unknown) => {
      assert.ok(error instanceof ConfigError, `${address}: ${error}`);
      assert.match(error.message, pattern);
      return true;
    });
  }
  await assert.rejects(connect({ address: [], authkey: TEST_KEY }), RangeError);
  await assert.rejects(
    connect({ address: ["127.0.0.1:1,127.0.0.1:2"], authkey: TEST_KEY }),
    /address\[0\] "127\.0\.0\.1:1,127\.0\.0\.1:2" names several masters/,
  );
  await assert.rejects(
    connect({ address: ["127.0.0.1:1", { hostname: "127.0.0.1", port: 0 }] }),
    /address\[1\]\.port/,
  );

  // The command line names the entry and where the list came from.
  assertUsageError(
    await runTaskq(["status", "--connect", "127.0.0.1:1,,127.0.0.1:2"]),
    /^taskq status: --connect: bad address list .*entry 2 is empty/,
  );
  assertUsageError(
    await runTaskq(["put", "--queue", "q", "x"], { env: { TASKQ_ADDR: "a:notaport" } }),
    /^taskq put: TASKQ_ADDR: bad address "a:notaport"/,
  );
  assertUsageError(
    await runTaskq(["worker", "--connect", "127.0.0.1:1,a:x", "--queue", "q", "--", "true"]),
    /^taskq worker: --connect: bad address "a:x".*\(entry 2 of/,
  );
});

Deno.test("failover: TASKQ_ADDR with a list works for taskq put, get and status", async () => {
  const live = await startMaster();
  try {
    const env = { TASKQ_ADDR: `${deadAddress()},${addressOf(live)}` };
    const put = await runTaskq(["put", "--queue", "q", "one", "two"], { env });
    assert.equal(put.code, 0, put.stderr);
    assert.equal(await ready(live, "q"), 2);

    const status = await runTaskq(["status", "--json"], { env });
    assert.equal(status.code, 0, status.stderr);
    assert.equal(JSON.parse(status.stdout).queues[0].ready, 2);

    const got = await runTaskq(["get", "--queue", "q", "--count", "2"], { env });
    assert.equal(got.code, 0, got.stderr);
    assert.deepEqual(got.stdout.trimEnd().split("\n").map((l) => JSON.parse(l).value), [
      "one",
      "two",
    ]);
  } finally {
    await live.close();
  }
});
