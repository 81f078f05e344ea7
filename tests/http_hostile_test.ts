/**
 * Fault tests of the HTTP side against a hostile network, each with a real
 * master process (`main.ts master --memory --http`), none needing the key:
 *
 * - **Slowloris**: 400 connections each send half a request head and wait.
 *   The master keeps serving a good client (native put/get and
 *   `GET /api/state`, each round trip within a second) while they hang on,
 *   closes them all by the header deadline (shortened for the test with
 *   `TASKQ_HTTP_HEADER_TIMEOUT_MS`), and serves the good client after.
 * - **Out of file descriptors**: the master runs under `ulimit -n 256` and
 *   more HTTP connections are opened than it can hold. It stays up, logs the
 *   failed accept once (not once per try), keeps serving the native client
 *   already connected, accepts again once the connections close, and then
 *   serves a good client's round trip.
 *
 * In both, every item put before the attack is still there after it.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Client, connect } from "../lib/mod.ts";
import { httpToken } from "../lib/http/token.ts";
import { HEADER_TIMEOUT_ENV } from "../lib/http/server.ts";
import { hostPort, keyEnv, masterArgs, Proc, TEST_KEY, waitFor, withDeadline } from "./_helpers.ts";

const LISTENING = /^taskq master listening on (\S+)$/;
const HTTP_LISTENING = /^taskq http listening on http:\/\/(\S+)\/$/;

/** Idle connections of the attacks. */
const ATTACKERS = 400;

/** Items put before an attack that must all be there after it. */
const KEPT_ITEMS = 50;

/** A good client's round trip must take less than this, in ms. */
const ROUND_TRIP_MS = 1_000;

/** The header deadline of the slowloris test's master, in ms. */
const TEST_HEADER_TIMEOUT_MS = 2_000;

/** The file descriptor limit of the exhaustion test's master. */
const FD_LIMIT = 256;

const TOKEN = httpToken(new TextEncoder().encode(TEST_KEY));
const encoder = new TextEncoder();

/** A master subprocess with its native and HTTP addresses. */
interface Rig extends AsyncDisposable {
  proc: Proc;
  native: string;
  http: string;
}

async function startRig(proc: Proc): Promise<Rig> {
  try {
    const native = (await proc.waitForLine(LISTENING, 15_000))[1];
    const http = (await proc.waitForLine(HTTP_LISTENING, 15_000))[1];
    return { proc, native, http, [Symbol.asyncDispose]: () => proc.dispose() };
  } catch (error) {
    await proc.dispose();
    throw error;
  }
}

/** Stops the master with SIGTERM and checks that it shut down cleanly. */
async function stopCleanly(rig: Rig): Promise<void> {
  assert.equal(rig.proc.exited, undefined, `the master died: ${rig.proc.describe()}`);
  const status = await rig.proc.stop("SIGTERM");
  assert.equal(status.code, 0, rig.proc.describe());
}

/** `GET /api/state` on a fresh connection, read to its end; resolves with the status and body. */
async function getState(http: string): Promise<{ status: number; body: string }> {
  const conn = await Deno.connect(hostPort(http));
  try {
    await conn.write(encoder.encode(
      `GET /api/state HTTP/1.1\r\nHost: ${http}\r\nAuthorization: Bearer ${TOKEN}\r\n` +
        `Connection: close\r\n\r\n`,
    ));
    const decoder = new TextDecoder();
    const buffer = new Uint8Array(65536);
    let text = "";
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) break;
      text += decoder.decode(buffer.subarray(0, n), { stream: true });
    }
    const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(text)?.[1]);
    return { status, body: text.slice(text.indexOf("\r\n\r\n") + 4) };
  } finally {
    conn.close();
  }
}

/** A good client's round trip: a native put, get and ack, then `GET /api/state`; each timed. */
async function roundTrip(client: Client, http: string, what: string): Promise<void> {
  const q = client.queue("probe");
  const started = performance.now();
  await withDeadline(
    (async () => {
      await q.put(what);
      const job = await q.get(ROUND_TRIP_MS);
      assert.equal(job?.value, what);
      await q.ack(job!);
    })(),
    ROUND_TRIP_MS,
    `native put/get ${what}`,
  );
  const native = performance.now() - started;
  const reply = await withDeadline(getState(http), ROUND_TRIP_MS, `GET /api/state ${what}`);
  assert.equal(reply.status, 200, reply.body);
  assert.equal(typeof JSON.parse(reply.body).clients, "number");
  const total = performance.now() - started;
  assert.ok(native < ROUND_TRIP_MS && total - native < ROUND_TRIP_MS, `${what}: ${total} ms`);
}

/** An attacker's connection: half a request head sent, then silence; `closed` resolves when the master closes it. */
interface Idler {
  conn: Deno.TcpConn;
  closed: Promise<void>;
}

/** Opens a connection to `http` and sends half a request head (within 2 s, else `undefined`). */
async function idler(http: string): Promise<Idler | undefined> {
  let conn: Deno.TcpConn;
  try {
    conn = await withDeadline(Deno.connect(hostPort(http)), 2_000, "connect");
  } catch {
    return undefined; // the backlog is full: the master is not accepting
  }
  try {
    await conn.write(encoder.encode(`GET /api/state HTTP/1.1\r\nHost: ${http}\r\nX-Wait: `));
  } catch {
    // already closed by the master: still counts
  }
  const closed = (async () => {
    const buffer = new Uint8Array(1024);
    try {
      while (await conn.read(buffer) !== null) { /* a 408 perhaps; wait for the end */ }
    } catch {
      // reset or closed here: over either way
    }
  })();
  return { conn, closed };
}

function closeAll(idlers: Idler[]): Promise<void[]> {
  for (const { conn } of idlers) {
    try {
      conn.close();
    } catch {
      // already closed
    }
  }
  return Promise.all(idlers.map((i) => i.closed));
}

function countLines(text: string, pattern: RegExp): number {
  return text.split("\n").filter((line) => pattern.test(line)).length;
}

/** Puts {@link KEPT_ITEMS} items on "kept"; checks after that each is still there. */
async function putKept(client: Client): Promise<() => Promise<void>> {
  const values = Array.from({ length: KEPT_ITEMS }, (_, i) => `kept-${i}`);
  await client.queue("kept").putMany(values);
  return async () => {
    const jobs = await client.queue("kept").getMany(KEPT_ITEMS * 2, 1_000);
    assert.deepEqual(jobs.map((j) => j.value).sort(), [...values].sort());
    for (const job of jobs) await client.queue("kept").ack(job);
  };
}

Deno.test("slowloris: 400 idle half-requests neither stop the master nor the good client", async () => {
  await using rig = await startRig(
    new Proc(
      "master",
      masterArgs("127.0.0.1:0", ["--http", "127.0.0.1:0"]),
      keyEnv(TEST_KEY, { [HEADER_TIMEOUT_ENV]: String(TEST_HEADER_TIMEOUT_MS) }),
    ),
  );
  const client = await connect({ address: rig.native, authkey: TEST_KEY, name: "good" });
  const idlers: Idler[] = [];
  try {
    const checkKept = await putKept(client);
    await roundTrip(client, rig.http, "before");
    const opened = Date.now();
    for (let i = 0; i < ATTACKERS; i += 50) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(50, ATTACKERS - i) }, () => idler(rig.http)),
      );
      for (const one of batch) if (one) idlers.push(one);
    }
    assert.equal(idlers.length, ATTACKERS, "every attacker got in");
    // During: the attackers hang on (or were closed to make room), the good client is served.
    for (let i = 0; i < 3; i++) await roundTrip(client, rig.http, `during-${i}`);
    assert.ok(Date.now() - opened < TEST_HEADER_TIMEOUT_MS, "still within the header deadline");
    // The header deadline closes every one of them.
    await withDeadline(
      Promise.all(idlers.map((i) => i.closed)),
      TEST_HEADER_TIMEOUT_MS + 3_000,
      "the master to close every idle connection",
    );
    await roundTrip(client, rig.http, "after");
    await checkKept();
    assert.ok(
      countLines(rig.proc.stderr, /too many HTTP connections/) <= 1,
      `the cap is logged once per streak:\n${rig.proc.stderr}`,
    );
  } finally {
    await closeAll(idlers);
    await client.close();
  }
  await stopCleanly(rig);
});

Deno.test("out of file descriptors: the master backs off, logs once, and recovers", async () => {
  const deno = masterArgs("127.0.0.1:0", ["--http", "127.0.0.1:0"]);
  await using rig = await startRig(
    new Proc(
      "master (ulimit -n 256)",
      ["-c", `ulimit -n ${FD_LIMIT} && exec "$0" "$@"`, Deno.execPath(), ...deno],
      keyEnv(TEST_KEY),
      "sh",
    ),
  );
  const client = await connect({ address: rig.native, authkey: TEST_KEY, name: "good" });
  let idlers: Idler[] = [];
  try {
    const checkKept = await putKept(client);
    await roundTrip(client, rig.http, "before");
    for (let i = 0; i < ATTACKERS; i += 50) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(50, ATTACKERS - i) }, () => idler(rig.http)),
      );
      for (const one of batch) if (one) idlers.push(one);
    }
    await waitFor(
      "the master to run out of descriptors",
      () => /cannot accept HTTP connections/.test(rig.proc.stderr),
      { timeoutMs: 5_000 },
    );
    // During: the native connection already open goes on working.
    for (let i = 0; i < 3; i++) {
      const q = client.queue("probe");
      await withDeadline(q.put(`during-${i}`), ROUND_TRIP_MS, "a put while out of descriptors");
      const job = await withDeadline(q.get(ROUND_TRIP_MS), ROUND_TRIP_MS, "a get");
      assert.equal(job?.value, `during-${i}`);
      await q.ack(job!);
    }
    assert.equal(rig.proc.exited, undefined, "the master is up");
    await closeAll(idlers);
    idlers = [];
    await waitFor(
      "the master to accept again",
      () => /accepting HTTP connections again/.test(rig.proc.stderr),
      { timeoutMs: 5_000 },
    );
    const fresh = await connect({ address: rig.native, authkey: TEST_KEY, name: "fresh" });
    try {
      await roundTrip(fresh, rig.http, "after");
    } finally {
      await fresh.close();
    }
    await checkKept();
    assert.equal(
      countLines(rig.proc.stderr, /cannot accept/),
      1,
      `one line for the failed accepts, not a flood:\n${rig.proc.stderr}`,
    );
  } finally {
    await closeAll(idlers);
    await client.close();
  }
  await stopCleanly(rig);
});
