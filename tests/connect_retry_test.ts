/**
 * The client library retries its first connection on transient refusals
 * (lib/client/client.ts `connect`):
 *
 * - a gate in front of a real master refuses the first connections with
 *   `too_many_connections` or `shutting_down`, then passes bytes through: the
 *   library and the CLI (`taskq status`, which does not reconnect) still
 *   connect; a refusal that lasts past `timeoutMs` is thrown once the time is
 *   up, and one announced as longer than the time left at once;
 * - a real master with `maxPendingHandshakes: 1`, an idle unauthenticated
 *   connection held open and eight clients connecting at once (each evicting
 *   the oldest pending one): every client connects;
 * - with `reconnect` on, a port that refuses the connection (the master is
 *   restarting) is tried again until the master is back; with it off, the
 *   failure is at once;
 * - a wrong key and another protocol version are never retried.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Master, type MasterOptions, serve } from "../lib/server/master.ts";
import { AuthenticationError, connect, ConnectionLostError, RemoteError } from "../lib/mod.ts";
import { newNonce, PROTOCOL_VERSION } from "../lib/wire/auth.ts";
import { freeLoopbackPort, RawConn, runTaskq, TEST_KEY } from "./_helpers.ts";

/** Where a {@link Gate} passes connections. */
interface Upstream {
  hostname: string;
  port: number;
}

/** A gate in front of `upstream`: refuses the first connections as told, then passes bytes. */
class Gate implements AsyncDisposable {
  readonly #listener: Deno.TcpListener;
  readonly #upstream: Upstream;
  readonly #refusals: { code: string; message: string }[];
  readonly #open = new Set<Deno.TcpConn>();
  readonly #accepting: Promise<void>;
  /** Connections accepted so far. */
  accepted = 0;

  constructor(upstream: Upstream, refusals: { code: string; message: string }[]) {
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#upstream = upstream;
    this.#refusals = [...refusals];
    this.#accepting = this.#accept();
  }

  get address(): string {
    return `127.0.0.1:${this.#listener.addr.port}`;
  }

  async #accept(): Promise<void> {
    for (;;) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.#listener.accept();
      } catch {
        return;
      }
      this.accepted++;
      const refusal = this.#refusals.shift();
      if (refusal !== undefined) void this.#refuse(conn, refusal);
      else void this.#pass(conn);
    }
  }

  async #refuse(conn: Deno.TcpConn, refusal: { code: string; message: string }): Promise<void> {
    const peer = RawConn.wrap(conn);
    await peer.next(); // the hello
    await peer.send({ op: "error", ...refusal });
    await peer.close();
  }

  async #pass(conn: Deno.TcpConn): Promise<void> {
    const upstream = await Deno.connect(this.#upstream);
    this.#open.add(conn);
    this.#open.add(upstream);
    await Promise.allSettled([
      conn.readable.pipeTo(upstream.writable),
      upstream.readable.pipeTo(conn.writable),
    ]);
    this.#open.delete(conn);
    this.#open.delete(upstream);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#listener.close();
    await this.#accepting;
    for (const conn of this.#open) {
      try {
        conn.close();
      } catch {
        // closed by its pipe already
      }
    }
  }
}

const busy = { code: "too_many_connections", message: "too many connections are mid-handshake" };
const stopping = { code: "shutting_down", message: "the master is shutting down; reconnect later" };

/** A master on loopback with the test key. */
function startMaster(extra: Partial<MasterOptions> = {}): Promise<Master> {
  return serve({ listen: "127.0.0.1:0", authkey: TEST_KEY, ...extra });
}

Deno.test("connect: too_many_connections and shutting_down are retried until the master takes it", async () => {
  const real = await startMaster();
  try {
    await using gate = new Gate(
      { hostname: "127.0.0.1", port: real.address.port },
      [busy, stopping, busy],
    );
    const client = await connect({ address: gate.address, authkey: TEST_KEY });
    await client.queue("q").put("through");
    assert.equal(gate.accepted, 4, "three refusals, then the fourth attempt");
    assert.equal((await real.broker.stats("q")).queues[0].ready, 1);
    await client.close();
  } finally {
    await real.close();
  }
});

Deno.test("connect: the CLI, which does not reconnect, retries its first connection too", async () => {
  const real = await startMaster();
  try {
    await using gate = new Gate(
      { hostname: "127.0.0.1", port: real.address.port },
      [busy, busy],
    );
    const run = await runTaskq(["status", "--connect", gate.address]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(gate.accepted, 3);
  } finally {
    await real.close();
  }
});

Deno.test("connect: a refusal that outlasts timeoutMs is thrown when the time is up", async () => {
  const upstream: Upstream = { hostname: "127.0.0.1", port: 1 };
  await using gate = new Gate(upstream, new Array(1000).fill(busy));
  const start = Date.now();
  await assert.rejects(
    connect({ address: gate.address, authkey: TEST_KEY, timeoutMs: 600 }),
    (error: unknown) => {
      assert.ok(error instanceof RemoteError, String(error));
      assert.equal(error.code, "too_many_connections");
      return true;
    },
  );
  const elapsed = Date.now() - start;
  assert.ok(elapsed >= 300 && elapsed < 2_000, `gave up after ${elapsed} ms`);
  assert.ok(gate.accepted > 1, `${gate.accepted} attempts`);
});

Deno.test("connect: a throttled address told to wait longer than the time left fails at once", async () => {
  const upstream: Upstream = { hostname: "127.0.0.1", port: 1 };
  const throttled = {
    code: "too_many_connections",
    message: "too many failed authentications from 127.0.0.1: its new connections are " +
      "refused for 10 s",
  };
  await using gate = new Gate(upstream, [throttled, throttled]);
  const start = Date.now();
  await assert.rejects(connect({ address: gate.address, authkey: TEST_KEY }), /refused for 10 s/);
  assert.ok(Date.now() - start < 1_000);
  assert.equal(gate.accepted, 1);
});

Deno.test("connect: a flood that fills the handshake cap locks no good client out", async () => {
  const CLIENTS = 8;
  const real = await startMaster({ maxPendingHandshakes: 1 });
  // An idle connection that never says hello holds the one pending slot.
  await using _idle = await RawConn.open(`127.0.0.1:${real.address.port}`);
  try {
    const clients = await Promise.all(
      Array.from(
        { length: CLIENTS },
        (_, i) => connect({ address: real.address, authkey: TEST_KEY, name: `good-${i}` }),
      ),
    );
    for (const client of clients) await client.ping();
    assert.equal((await real.broker.stats()).clients, CLIENTS);
    const evicted = real.telemetry.errors.get("too_many_connections") ?? 0;
    // The idle connection, and good clients evicted by later ones: they retried.
    assert.ok(evicted > 1, `${evicted} connections evicted`);
    for (const client of clients) await client.close();
  } finally {
    await real.close();
  }
});

Deno.test("connect: with reconnect on, a refused port is tried again until the master is back", async () => {
  const port = freeLoopbackPort();
  const connecting = connect({ address: `127.0.0.1:${port}`, authkey: TEST_KEY });
  await new Promise((resolve) => setTimeout(resolve, 300));
  const real = await startMaster({ listen: `127.0.0.1:${port}` });
  try {
    const client = await connecting;
    await client.ping();
    await client.close();
  } finally {
    await real.close();
  }
});

Deno.test("connect: with reconnect off, a refused port fails at once", async () => {
  const port = freeLoopbackPort();
  const start = Date.now();
  await assert.rejects(
    connect({ address: `127.0.0.1:${port}`, authkey: TEST_KEY, reconnect: false }),
    ConnectionLostError,
  );
  assert.ok(Date.now() - start < 1_000);
});

Deno.test("connect: a wrong key is never retried", async () => {
  const real = await startMaster();
  try {
    const start = Date.now();
    await assert.rejects(connect({ address: real.address, authkey: "wrong" }), AuthenticationError);
    assert.ok(Date.now() - start < 1_000);
    assert.equal(real.telemetry.errors.get("auth_failed"), 1, "one attempt only");
  } finally {
    await real.close();
  }
});

Deno.test("connect: another protocol version is never retried", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let accepted = 0;
  const serving = (async () => {
    for (;;) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch {
        return;
      }
      accepted++;
      const peer = RawConn.wrap(conn);
      await peer.next();
      await peer.send({ op: "challenge", version: PROTOCOL_VERSION + 1, nonce: newNonce() });
      await peer.closedByPeer();
      await peer.close();
    }
  })();
  try {
    await assert.rejects(
      connect({ address: `127.0.0.1:${listener.addr.port}`, authkey: TEST_KEY }),
      AuthenticationError,
    );
    assert.equal(accepted, 1);
  } finally {
    listener.close();
    await serving;
  }
});
