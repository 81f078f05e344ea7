/**
 * The shared accept loop (lib/server/acceptor.ts): connections still in the
 * handshake are capped, the oldest dropped to make room, and a flood of them
 * is logged as one line and then a count, not a line per connection.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Acceptor } from "../lib/server/acceptor.ts";
import { type ByteStream, listenTcp } from "../lib/wire/stream.ts";
import { createLogger } from "../lib/log.ts";
import { waitFor } from "./_helpers.ts";

/** A session that never authenticates and ends when its stream is closed. */
class IdleSession {
  readonly conn: { readonly peer: string };
  readonly #stream: ByteStream;
  constructor(stream: ByteStream) {
    this.#stream = stream;
    const addr = stream.remoteAddr as Deno.NetAddr;
    this.conn = { peer: `${addr.hostname}:${addr.port}` };
  }
  async run(): Promise<void> {
    const buffer = new Uint8Array(64);
    try {
      while (await this.#stream.read(buffer) !== null) {
        // an idle peer sends nothing; anything it does send is ignored
      }
    } catch {
      // closed by drop()
    }
  }
  drop(): void {
    try {
      this.#stream.close();
    } catch {
      // already closed
    }
  }
}

Deno.test("acceptor: a flood of unauthenticated connections is one log line, then a count", async () => {
  const lines: string[] = [];
  const listener = listenTcp({ hostname: "127.0.0.1", port: 0 });
  const dropped: IdleSession[] = [];
  const acceptor = new Acceptor<IdleSession>({
    listener,
    log: createLogger({ write: (line) => lines.push(line) }),
    maxPending: 2,
    kind: "connections",
    open: (stream) => new IdleSession(stream),
    drop: (session) => {
      dropped.push(session);
      session.drop();
    },
  });
  const clients: Deno.TcpConn[] = [];
  try {
    for (let i = 0; i < 12; i++) {
      clients.push(await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }));
    }
    await waitFor("ten drops", () => dropped.length === 10);
    assert.equal(acceptor.pendingCount, 2, "the cap holds");
    assert.equal(lines.filter((l) => l.includes("dropping the oldest")).length, 1);
  } finally {
    for (const client of clients) client.close();
    await acceptor.close();
    await Promise.all(acceptor.sessions.values());
  }
  const summary = lines.filter((l) => l.includes("dropped 9 more unauthenticated connections"));
  assert.equal(summary.length, 1, lines.join("\n"));
  assert.equal(lines.length, 2, "one line when it starts, one count when the acceptor closes");
});
