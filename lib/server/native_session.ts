/**
 * The master's front-end for taskq's own msgpack protocol: one session per
 * connection, turning validated messages into engine operations and engine
 * results into replies.
 *
 * A session first runs the handshake (hello → challenge → auth → welcome)
 * within a deadline; only then does it accept requests. Any malformed input
 * gets an `error` reply (with the request id when one could be read) and
 * closes this connection only.
 *
 * @module
 */

import type { Consumer, Engine, Item } from "../engine/engine.ts";
import type { FramedConnection } from "../wire/connection.ts";
import {
  type ClientMessage,
  type ErrorMessage,
  type JobRecord,
  type OkReply,
  parseClientMessage,
  type Request,
} from "../wire/messages.ts";
import {
  clientProof,
  newNonce,
  proofMatches,
  PROTOCOL_VERSION,
  serverProof,
} from "../wire/auth.ts";
import { type ErrorCode, ProtocolError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Telemetry } from "../broker/telemetry.ts";

/** What a session needs from the master that runs it. */
export interface SessionContext {
  /** The queue engine. */
  readonly engine: Engine;
  /** The shared key. */
  readonly key: Uint8Array;
  /** Largest frame payload accepted, announced in `welcome`. */
  readonly maxFrameBytes: number;
  /** Time allowed to complete the handshake. */
  readonly handshakeTimeoutMs: number;
  /** Where events are logged. */
  readonly log: Logger;
  /** Called after every handled message, so the master can re-arm its timer. */
  afterChange(): void;
  /** Called once the peer has authenticated. */
  onAuthenticated(session: NativeSession): void;
  /** Where error replies are counted, if anywhere. */
  readonly telemetry?: Telemetry;
}

type Phase = "hello" | "auth" | "ready" | "closed";

function ridOf(raw: unknown): number | undefined {
  if (typeof raw !== "object" || raw === null) return undefined;
  const rid = (raw as Record<string, unknown>).rid;
  return typeof rid === "number" && Number.isSafeInteger(rid) && rid >= 0 ? rid : undefined;
}

function toJobs(items: readonly Item[]): JobRecord[] {
  const jobs = new Array<JobRecord>(items.length);
  for (let i = 0; i < items.length; i++) {
    const item = items[i];
    jobs[i] = { id: item.id, attempt: item.attempts, value: item.value };
  }
  return jobs;
}

/** One client connection speaking the native protocol. */
export class NativeSession {
  /** The framed connection. */
  readonly conn: FramedConnection;
  readonly #ctx: SessionContext;
  #phase: Phase = "hello";
  #clientNonce: Uint8Array | undefined;
  #serverNonce: Uint8Array | undefined;
  #name = "";
  #consumer: Consumer | undefined;
  #deadline: ReturnType<typeof setTimeout> | undefined;

  /** Creates a session on an accepted connection. */
  constructor(conn: FramedConnection, ctx: SessionContext) {
    this.conn = conn;
    this.#ctx = ctx;
  }

  /** Whether the handshake has completed. */
  get authenticated(): boolean {
    return this.#phase === "ready";
  }

  /** The name the client gave, or its address. */
  get name(): string {
    return this.#name || this.conn.peer;
  }

  /** Serves the connection until it closes; never throws. */
  async run(): Promise<void> {
    this.#deadline = setTimeout(() => {
      if (this.#phase === "hello" || this.#phase === "auth") {
        this.#ctx.log.warn("handshake timed out", { peer: this.conn.peer });
        this.refuse("auth_failed", "handshake not completed in time");
      }
    }, this.#ctx.handshakeTimeoutMs);
    try {
      await this.conn.pump((raw) => this.#onMessage(raw));
    } catch (error) {
      // Let the error reply go out before the connection is closed below.
      await this.#fail(error, undefined);
    } finally {
      clearTimeout(this.#deadline);
      if (this.#consumer !== undefined) {
        this.#ctx.engine.disconnect(this.#consumer);
        this.#ctx.afterChange();
        this.#ctx.log.debug("client disconnected", { peer: this.conn.peer, name: this.#name });
      }
      this.#phase = "closed";
      this.conn.close();
    }
  }

  /** Sends an error not tied to a request and closes the connection. */
  refuse(code: ErrorCode, message: string): Promise<void> {
    if (this.#phase === "closed") return Promise.resolve();
    this.#phase = "closed";
    this.#ctx.telemetry?.countError(code);
    return this.conn.sendAndClose({ op: "error", code, message } satisfies ErrorMessage);
  }

  /** Replies an error for bad input and closes; resolves once the reply is written. */
  #fail(error: unknown, rid: number | undefined): Promise<void> {
    if (this.#phase === "closed") return Promise.resolve();
    const protocol = error instanceof ProtocolError;
    const code: ErrorCode = protocol ? error.code : "internal";
    const message = protocol ? error.message : "internal error";
    this.#ctx.log.warn("closing connection after bad input", {
      peer: this.conn.peer,
      error: (error as Error)?.message ?? String(error),
    });
    const reply: ErrorMessage = { op: "error", code, message };
    if (rid !== undefined) reply.rid = rid;
    this.#phase = "closed";
    this.#ctx.telemetry?.countError(code);
    return this.conn.sendAndClose(reply);
  }

  #onMessage(raw: unknown): void | Promise<void> {
    if (this.#phase === "closed") return;
    if (this.#consumer !== undefined) this.#consumer.lastSeenAt = Date.now();
    let msg: ClientMessage;
    try {
      msg = parseClientMessage(raw);
    } catch (error) {
      void this.#fail(error, ridOf(raw));
      return;
    }
    try {
      switch (this.#phase) {
        case "hello":
          return this.#onHello(msg);
        case "auth":
          return this.#onAuth(msg);
        default:
          if (msg.op === "hello" || msg.op === "auth") {
            throw new ProtocolError(`"${msg.op}" is only valid during the handshake`);
          }
          {
            const paused = this.#onRequest(msg);
            this.#ctx.afterChange();
            return paused;
          }
      }
    } catch (error) {
      void this.#fail(error, ridOf(raw));
    }
  }

  #onHello(msg: ClientMessage): void {
    if (msg.op !== "hello") throw new ProtocolError(`expected "hello", got "${msg.op}"`);
    if (msg.version !== PROTOCOL_VERSION) {
      this.#ctx.log.warn("client speaks another protocol version", {
        peer: this.conn.peer,
        version: msg.version,
      });
      this.refuse(
        "unsupported_version",
        `protocol version ${msg.version} is not supported; this master speaks ` +
          `version ${PROTOCOL_VERSION} (use the same taskq release on both ends)`,
      );
      return;
    }
    this.#clientNonce = msg.nonce;
    this.#serverNonce = newNonce();
    this.#name = msg.name ?? "";
    this.#phase = "auth";
    this.conn.send({ op: "challenge", version: PROTOCOL_VERSION, nonce: this.#serverNonce });
  }

  #onAuth(msg: ClientMessage): void {
    if (msg.op !== "auth") throw new ProtocolError(`expected "auth", got "${msg.op}"`);
    const cn = this.#clientNonce as Uint8Array;
    const sn = this.#serverNonce as Uint8Array;
    if (!proofMatches(msg.proof, clientProof(this.#ctx.key, cn, sn))) {
      this.#ctx.log.warn("authentication failed: wrong key", { peer: this.conn.peer });
      this.refuse("auth_failed", "authentication failed: the key was rejected");
      return;
    }
    clearTimeout(this.#deadline);
    this.#phase = "ready";
    this.conn.maxFrameBytes = this.#ctx.maxFrameBytes;
    this.#consumer = this.#ctx.engine.connect(this.name, this.conn.peer);
    this.conn.send({
      op: "welcome",
      proof: serverProof(this.#ctx.key, cn, sn),
      maxFrameBytes: this.#ctx.maxFrameBytes,
      leaseMs: this.#ctx.engine.defaultLeaseMs,
    });
    this.#ctx.log.debug("client authenticated", { peer: this.conn.peer, name: this.#name });
    this.#ctx.onAuthenticated(this);
  }

  /** Sends a reply that promises durability once the store has committed what it reports. */
  #sendDurable(reply: OkReply): void {
    const store = this.#ctx.engine.store;
    if (!store.dirty) {
      this.conn.send(reply);
      return;
    }
    store.commit().then(
      () => this.conn.send(reply),
      (error) => {
        this.#ctx.log.error("store commit failed", { error: (error as Error).message });
        if (this.#phase !== "closed") {
          this.conn.send(
            {
              op: "error",
              rid: reply.rid,
              code: "internal",
              message: `not saved: ${(error as Error).message}`,
            } satisfies ErrorMessage,
          );
        }
      },
    );
  }

  #onRequest(msg: Request): void | Promise<void> {
    if (msg.op === "put") {
      // A full queue: stop reading this connection until there is room
      // (back-pressure). The put happens inside the engine's call, one waiter at a
      // time, so the queue never overshoots its limit.
      const paused = Promise.withResolvers<void>();
      const onRoom = () => {
        if (this.#phase !== "closed") this.#handle(msg);
        this.#ctx.afterChange();
        paused.resolve();
      };
      if (this.#ctx.engine.isFull(msg.queue, onRoom)) return paused.promise;
    }
    this.#handle(msg);
  }

  #handle(msg: Request): void {
    const engine = this.#ctx.engine;
    const consumer = this.#consumer as Consumer;
    const conn = this.conn;
    const rid = msg.rid;
    switch (msg.op) {
      case "put":
        this.#sendDurable({
          op: "ok",
          rid,
          ids: engine.put(msg.queue, msg.items, msg.delay, msg.maxAttempts),
        });
        return;
      case "get":
        engine.get(consumer, msg.queue, msg.max, msg.timeout, msg.lease, (items) => {
          conn.send({ op: "ok", rid, jobs: toJobs(items) });
        });
        return;
      case "ack":
        this.#sendDurable({
          op: "ok",
          rid,
          failed: engine.ack(
            consumer,
            msg.ids,
            msg.results && { queue: msg.resultQueue as string, values: msg.results },
          ),
        });
        return;
      case "nack":
        this.#sendDurable({ op: "ok", rid, failed: engine.nack(consumer, msg.ids, msg.delay) });
        return;
      case "fail":
        this.#sendDurable({ op: "ok", rid, failed: engine.fail(consumer, msg.ids, msg.error) });
        return;
      case "extend":
        conn.send({ op: "ok", rid, failed: engine.extend(consumer, msg.ids, msg.lease) });
        return;
      case "stats":
        conn.send({
          op: "ok",
          rid,
          queues: engine.stats(msg.queue),
          clients: engine.consumerCount,
        });
        return;
      case "ping":
        conn.send({ op: "ok", rid });
        return;
    }
  }
}
