/**
 * The master's front-end for taskq's own msgpack protocol: one session per
 * connection, turning validated messages into broker calls and what they
 * resolve with into replies.
 *
 * A session first runs the handshake (hello → challenge → auth → welcome)
 * within a deadline; only then does it accept requests. Any malformed input
 * gets an `error` reply (with the request id when one could be read) and
 * closes this connection only.
 *
 * Requests are handed to the broker in the order they arrive (so a get sent
 * right after a put sees the item); replies go out as the broker's calls
 * resolve, matched by request id. A connection may have at most
 * {@link MAX_PENDING_REQUESTS} requests outstanding (waiting gets, puts held
 * by a full queue, replies waiting for a commit): past that it is not read
 * until some complete, so no peer can make the master hold work without limit.
 *
 * @module
 */

import type { Broker, BrokerSession, Delivery, ItemsQuery, SessionView } from "../broker/broker.ts";
import {
  MemoryFullError,
  NotSavedError,
  SessionClosedError,
  TooManyQueuesError,
  unavailableCause,
} from "../broker/errors.ts";
import type { FramedConnection } from "../wire/connection.ts";
import {
  type ClientMessage,
  type ErrorMessage,
  type GetRequest,
  type JobRecord,
  limitChanges,
  MAX_HELD_LISTED,
  type OkReply,
  parseClientMessage,
  type PutRequest,
  type Request,
  type SessionRecord,
  VERSION_2_OPS,
  VERSION_2_PUT_FIELDS,
  VERSION_3_OPS,
} from "../wire/messages.ts";
import {
  clientProof,
  MIN_PROTOCOL_VERSION,
  newNonce,
  proofMatches,
  PROTOCOL_VERSION,
  serverProof,
} from "../wire/auth.ts";
import type { PutOptions } from "../broker/broker.ts";
import { type ErrorCode, FrameTooLargeError, ProtocolError, TaskqError } from "../errors.ts";
import { answerHttpOnNativePort, isHttpRequestStart } from "../wire/wrong_port.ts";
import type { Logger } from "../log.ts";
import type { AuthThrottle } from "./auth_throttle.ts";
import { printable } from "../util/printable.ts";

/** Requests one connection may have outstanding before it stops being read. */
export const MAX_PENDING_REQUESTS = 4096;

/** What a session needs from the master that runs it. */
export interface SessionContext {
  /** The broker whose queues it serves. */
  readonly broker: Broker;
  /** The shared key. */
  readonly key: Uint8Array;
  /** Largest frame payload accepted, announced in `welcome`. */
  readonly maxFrameBytes: number;
  /** Time allowed to complete the handshake. */
  readonly handshakeTimeoutMs: number;
  /** Where events are logged. */
  readonly log: Logger;
  /** Refuses throttled addresses before their handshake; told each wrong key. */
  readonly authThrottle: AuthThrottle;
  /** Called once the peer has authenticated. */
  onAuthenticated(session: NativeSession): void;
}

type Phase = "hello" | "auth" | "ready" | "closed";

function ridOf(raw: unknown): number | undefined {
  if (typeof raw !== "object" || raw === null) return undefined;
  const rid = (raw as Record<string, unknown>).rid;
  return typeof rid === "number" && Number.isSafeInteger(rid) && rid >= 0 ? rid : undefined;
}

function toJobs(items: readonly Delivery[]): JobRecord[] {
  const jobs = new Array<JobRecord>(items.length);
  for (let i = 0; i < items.length; i++) {
    const item = items[i];
    jobs[i] = { id: item.id, attempt: item.attempts, value: item.value };
  }
  return jobs;
}

/**
 * Sessions as the `sessions` reply lists them: only the record's fields (a
 * broker may know more), each held list cut to {@link MAX_HELD_LISTED}.
 */
function sessionRecords(views: readonly SessionView[]): SessionRecord[] {
  return views.map((view) => {
    const record: SessionRecord = {
      id: view.id,
      name: view.name,
      address: view.address,
      connectedAt: view.connectedAt,
      lastSeenAt: view.lastSeenAt,
      leased: view.leased,
      waiting: view.waiting,
      holding: (view.holding ?? []).slice(0, MAX_HELD_LISTED).map((held) => ({
        id: held.id,
        queue: held.queue,
        leasedAt: held.leasedAt,
        leaseExpiresAt: held.leaseExpiresAt,
      })),
    };
    if (view.controlled !== undefined) record.controlled = view.controlled;
    return record;
  });
}

/** The broker's put options a `put` request asks for. */
function putOptions(msg: PutRequest): PutOptions {
  const options: PutOptions = { delayMs: msg.delay, maxAttempts: msg.maxAttempts };
  if (msg.priority !== undefined) options.priority = msg.priority;
  if (msg.group !== undefined) options.group = msg.group;
  if (msg.keys !== undefined) options.keys = msg.keys;
  if (msg.keyHold !== undefined) options.keyHoldMs = msg.keyHold;
  return options;
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
  #session: BrokerSession | undefined;
  #deadline: ReturnType<typeof setTimeout> | undefined;
  #pending = 0;
  #room: PromiseWithResolvers<void> | undefined;
  /** The protocol version this connection speaks, agreed in the handshake. */
  #version = PROTOCOL_VERSION;

  /** Creates a session on an accepted connection. */
  constructor(conn: FramedConnection, ctx: SessionContext) {
    this.conn = conn;
    this.#ctx = ctx;
  }

  /** Whether the handshake has completed. */
  get authenticated(): boolean {
    return this.#phase === "ready";
  }

  /** The protocol version agreed in the handshake (the lower of the client's and this master's). */
  get version(): number {
    return this.#version;
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
      if (
        this.#phase === "hello" && error instanceof FrameTooLargeError &&
        isHttpRequestStart(error.length)
      ) {
        // An HTTP client or a browser: told so in HTTP; worth a debug line, never a warning.
        this.#phase = "closed";
        this.#ctx.log.debug("an HTTP client reached the native port", { peer: this.conn.peer });
        await answerHttpOnNativePort(this.conn.conn);
      } else {
        // Let the error reply go out before the connection is closed below.
        await this.#fail(error, undefined);
      }
    } finally {
      clearTimeout(this.#deadline);
      if (this.#session !== undefined) {
        await this.#session.close();
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
    this.#ctx.broker.telemetry.countError(code);
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
    this.#ctx.broker.telemetry.countError(code);
    return this.conn.sendAndClose(reply);
  }

  #onMessage(raw: unknown): void | Promise<void> {
    if (this.#phase === "closed") return;
    this.#session?.touch();
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
          if (this.#version < 2) this.#checkVersion1(msg);
          if (this.#version < 3) this.#checkVersion2(msg);
          return this.#onRequest(msg);
      }
    } catch (error) {
      void this.#fail(error, ridOf(raw));
    }
  }

  /** Refuses what a version 1 connection cannot have meant: it agreed to speak version 1. */
  #checkVersion1(msg: Request): void {
    const newer = VERSION_2_OPS.has(msg.op)
      ? `"${msg.op}"`
      : msg.op === "put"
      ? VERSION_2_PUT_FIELDS.find((key) => key in msg)
      : undefined;
    if (newer !== undefined) {
      throw new ProtocolError(
        `${newer} needs protocol version 2; this connection agreed on version 1`,
      );
    }
  }

  /** Refuses the version 3 ops on a connection that agreed on an older version. */
  #checkVersion2(msg: Request): void {
    if (VERSION_3_OPS.has(msg.op)) {
      throw new ProtocolError(
        `"${msg.op}" needs protocol version 3; this connection agreed on version ${this.#version}`,
      );
    }
  }

  #onHello(msg: ClientMessage): void {
    if (msg.op !== "hello") throw new ProtocolError(`expected "hello", got "${msg.op}"`);
    if (this.#throttled()) return;
    if (msg.version < MIN_PROTOCOL_VERSION) {
      this.#ctx.log.warn("client speaks another protocol version", {
        peer: this.conn.peer,
        version: msg.version,
      });
      this.refuse(
        "unsupported_version",
        `protocol version ${msg.version} is not supported; this master speaks ` +
          `versions ${MIN_PROTOCOL_VERSION} to ${PROTOCOL_VERSION}`,
      );
      return;
    }
    // A newer client is answered with the newest version this master speaks; it steps down.
    this.#version = Math.min(msg.version, PROTOCOL_VERSION);
    this.#clientNonce = msg.nonce;
    this.#serverNonce = newNonce();
    // Shown by taskq status and the dashboard: no control character gets through.
    this.#name = printable(msg.name ?? "");
    this.#phase = "auth";
    this.conn.send({ op: "challenge", version: this.#version, nonce: this.#serverNonce });
  }

  #onAuth(msg: ClientMessage): void | Promise<void> {
    if (msg.op !== "auth") throw new ProtocolError(`expected "auth", got "${msg.op}"`);
    const cn = this.#clientNonce as Uint8Array;
    const sn = this.#serverNonce as Uint8Array;
    // Another connection from this address may have spent its budget meanwhile.
    if (this.#throttled()) return;
    if (!proofMatches(msg.proof, clientProof(this.#ctx.key, cn, sn))) {
      this.#ctx.authThrottle.failed(this.conn.peer); // logged in aggregate
      this.refuse("auth_failed", "authentication failed: the key was rejected");
      return;
    }
    // Nothing of the handshake stays with a connection that may now wait for hours.
    clearTimeout(this.#deadline);
    this.#deadline = undefined;
    this.#clientNonce = this.#serverNonce = undefined;
    this.#phase = "ready";
    this.conn.maxFrameBytes = this.#ctx.maxFrameBytes;
    return this.#welcome(cn, sn);
  }

  /**
   * Whether the peer's address is throttled after wrong keys: if so, closes
   * at once with the transient `too_many_connections` (a client retries it),
   * computing no HMAC; counted as throttled, not as an error reply.
   */
  #throttled(): boolean {
    const refusal = this.#ctx.authThrottle.refusal(this.conn.peer);
    if (refusal === undefined) return false;
    this.#phase = "closed";
    const reply: ErrorMessage = {
      op: "error",
      code: "too_many_connections",
      message: refusal.message,
    };
    void this.conn.sendAndClose(reply);
    return true;
  }

  /** Opens the broker session and proves the key back. */
  async #welcome(cn: Uint8Array, sn: Uint8Array): Promise<void> {
    // Reading waits for the session to open, so no request can come before it.
    let session: BrokerSession;
    try {
      session = await this.#ctx.broker.open({ name: this.name, address: this.conn.peer });
    } catch (error) {
      const down = unavailableCause(error);
      if (down === undefined) throw error;
      // Not the client's fault: the master cannot serve now; it reconnects later, or elsewhere.
      await this.refuse(down.code, down.message);
      return;
    }
    this.#session = session;
    if (this.#version >= 2) {
      // Told at once when an item it holds is cancelled (a version 1 client learns it when
      // its ack is refused).
      session.onCancel = (ids) => {
        if (this.#phase === "ready") this.conn.send({ op: "cancelled", ids });
      };
    }
    if (this.#version >= 3) {
      // Told when an operator asks its client to go quiet or stop (taskq quiet, taskq stop).
      session.onControl((action) => {
        if (this.#phase === "ready") this.conn.send({ op: "control", action });
      });
    }
    if (this.#phase === "closed") {
      // The connection ended while the session opened.
      await session.close();
      return;
    }
    this.conn.send({
      op: "welcome",
      proof: serverProof(this.#ctx.key, cn, sn),
      maxFrameBytes: this.#ctx.maxFrameBytes,
      leaseMs: this.#ctx.broker.settings.defaultLeaseMs,
    });
    this.#ctx.log.debug("client authenticated", { peer: this.conn.peer, name: this.#name });
    this.#ctx.onAuthenticated(this);
  }

  /**
   * Hands a request to the broker; its reply goes out when the call resolves.
   * Resolves (so the connection is read again) only once fewer than
   * {@link MAX_PENDING_REQUESTS} are outstanding.
   */
  #onRequest(msg: Request): void | Promise<void> {
    this.#pending++;
    let answer: Promise<OkReply>;
    try {
      answer = this.#call(msg);
    } catch (error) {
      answer = Promise.reject(error);
    }
    // Promise callbacks, not an async function: a get that waits (thousands may, one per
    // idle worker) holds no suspended call frames.
    const rid = msg.rid; // kept instead of the whole request while it waits
    answer.then(this.#reply, (error) => this.#reply(this.#refusal(rid, error)));
    if (this.#pending < MAX_PENDING_REQUESTS) return;
    this.#room ??= Promise.withResolvers<void>();
    return this.#room.promise;
  }

  /** Sends a reply (if the connection is still open) and lets reading go on. */
  readonly #reply = (reply: OkReply | ErrorMessage | undefined): void => {
    this.#pending--;
    if (this.#room !== undefined && this.#pending < MAX_PENDING_REQUESTS) {
      this.#room.resolve();
      this.#room = undefined;
    }
    if (reply !== undefined && this.#phase !== "closed") this.conn.send(reply);
  };

  /** The reply to request `rid`, which the broker failed with `error` (none once closed). */
  #refusal(rid: number, error: unknown): ErrorMessage | undefined {
    if (this.#phase === "closed" || error instanceof SessionClosedError) return undefined;
    const down = unavailableCause(error);
    if (down !== undefined) {
      // The master cannot serve this now: the request alone is refused, the connection goes
      // on, and the client retries later (a worker keeps going; see lib/worker/worker.ts).
      this.#ctx.broker.telemetry.countError(down.code);
      const message = error instanceof Error ? error.message : down.message;
      return { op: "error", rid, code: down.code, message };
    }
    if (error instanceof MemoryFullError || error instanceof TooManyQueuesError) {
      // A refusal of this request alone: the connection goes on.
      this.#ctx.broker.telemetry.countError(error.code);
      return { op: "error", rid, code: error.code, message: error.message };
    }
    if (error instanceof NotSavedError) {
      this.#ctx.log.error("store commit failed", { error: error.message });
    } else {
      this.#ctx.log.error("request failed", { peer: this.conn.peer, error: String(error) });
    }
    const message = error instanceof TaskqError ? error.message : "internal error";
    this.#ctx.broker.telemetry.countError("internal");
    return { op: "error", rid, code: "internal", message };
  }

  /** The reply to `msg` once the broker's call resolves. */
  #call(msg: Request): Promise<OkReply> {
    return msg.op === "get" ? this.#get(msg) : this.#callOther(msg);
  }

  /** A get's reply: the items, once some come or the time runs out. */
  #get(msg: GetRequest): Promise<OkReply> {
    const rid = msg.rid;
    const session = this.#session as BrokerSession;
    return session.get(msg.queue, { max: msg.max, timeoutMs: msg.timeout, leaseMs: msg.lease })
      .then((items) => ({ op: "ok", rid, jobs: toJobs(items) }));
  }

  async #callOther(msg: Exclude<Request, GetRequest>): Promise<OkReply> {
    const session = this.#session as BrokerSession;
    const rid = msg.rid;
    switch (msg.op) {
      case "put": {
        const ids = await session.put(msg.queue, msg.items, putOptions(msg));
        const reply: OkReply = { op: "ok", rid, ids };
        if (ids.existing !== undefined) reply.existing = ids.existing;
        return reply;
      }
      case "ack":
        return {
          op: "ok",
          rid,
          failed: await session.ack(
            msg.ids,
            msg.results && { queue: msg.resultQueue as string, values: msg.results },
          ),
        };
      case "nack":
        return { op: "ok", rid, failed: await session.nack(msg.ids, msg.delay) };
      case "fail":
        return { op: "ok", rid, failed: await session.fail(msg.ids, msg.error) };
      case "extend":
        return { op: "ok", rid, failed: await session.extend(msg.ids, msg.lease) };
      case "stats": {
        const stats = await this.#ctx.broker.stats(msg.queue);
        return { op: "ok", rid, queues: stats.queues, clients: stats.clients };
      }
      case "ping":
        return { op: "ok", rid };
      case "cancel": {
        const outcome = await this.#ctx.broker.cancel(msg.ids);
        return { op: "ok", rid, cancelled: outcome.cancelled, failed: outcome.missing };
      }
      case "job": {
        const job = await this.#ctx.broker.job(msg.id);
        return job === undefined ? { op: "ok", rid } : { op: "ok", rid, job };
      }
      case "limit": {
        const changes = limitChanges(msg);
        const limits = Object.keys(changes).length > 0
          ? await this.#ctx.broker.setLimits(msg.queue, changes)
          : (await this.#ctx.broker.limits(msg.queue))[0];
        return { op: "ok", rid, limits: { queue: msg.queue, ...limits } };
      }
      case "progress": {
        const report: { percent?: number; message?: string } = {};
        if (msg.percent !== undefined) report.percent = msg.percent;
        if (msg.message !== undefined) report.message = msg.message;
        const held = await session.progress(
          msg.id,
          report,
          msg.lease ?? this.#ctx.broker.settings.defaultLeaseMs,
        );
        return { op: "ok", rid, failed: held ? [] : [msg.id] };
      }
      case "items": {
        const query: ItemsQuery = { state: msg.state };
        if (msg.offset !== undefined) query.offset = msg.offset;
        if (msg.limit !== undefined) query.limit = msg.limit;
        const page = await this.#ctx.broker.items(msg.queue, query);
        return { op: "ok", rid, items: page.items, total: page.total };
      }
      case "requeue":
        return {
          op: "ok",
          rid,
          ids: await this.#ctx.broker.requeueDead(msg.queue, msg.all ? "all" : msg.ids ?? []),
        };
      case "drop":
        return {
          op: "ok",
          rid,
          count: await this.#ctx.broker.drop(msg.queue, msg.all ? "all" : msg.ids ?? []),
        };
      case "purge":
        return { op: "ok", rid, count: await this.#ctx.broker.purge(msg.queue) };
      case "sessions":
        return { op: "ok", rid, sessions: sessionRecords(await this.#ctx.broker.sessions()) };
      case "control":
        return {
          op: "ok",
          rid,
          found: await this.#ctx.broker.control(msg.session, msg.action),
        };
    }
  }
}
