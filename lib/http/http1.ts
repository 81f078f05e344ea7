/**
 * A small, strict HTTP/1.1 server for the master's HTTP side, over the shared
 * accept loop ({@link Acceptor}) and any {@link StreamListener} (TCP today,
 * TLS later), so that a hostile network cannot take the master down:
 *
 * - **Connection cap** ({@link HttpLimits.maxConnections}): at the cap, a new
 *   connection closes the one that has waited longest for (the rest of) a
 *   request; connections whose request is being answered are kept.
 * - **Deadlines**: a request's head must arrive within
 *   {@link HttpLimits.headerTimeoutMs} (from the connection's opening, or
 *   from the first byte of a later request), its body within
 *   {@link HttpLimits.bodyTimeoutMs}, a kept-alive connection may idle
 *   {@link HttpLimits.idleTimeoutMs} between requests, and a response must be
 *   taken within {@link HttpLimits.writeTimeoutMs}.
 * - **Bounds**: the head is at most {@link HttpLimits.maxHeaderBytes} bytes
 *   and {@link HttpLimits.maxHeaderFields} fields (else 431); a body is sent
 *   with `Content-Length` only (chunked bodies get 501, a POST without a
 *   length 411) and is at most {@link HttpLimits.maxBodyBytes} (else 413).
 * - **Strict parsing**: the request line, header names and values, `Host`
 *   and `Content-Length` are checked; CRLF line ends only, no folded
 *   lines, no absolute or `*` targets. Anything malformed gets 400 and the
 *   connection closes.
 * - Keep-alive (`Connection: close` honoured; HTTP/1.0 closes unless it asks
 *   for keep-alive), `Expect: 100-continue`, HEAD, and pipelined requests,
 *   answered one at a time in order.
 *
 * Requests are handed over as standard {@link Request} objects (with the
 * whole body read), and the {@link Response} a handler returns is written
 * with a `Content-Length`.
 *
 * @module
 */

import { type Logger, silentLogger } from "../log.ts";
import { Acceptor } from "../server/acceptor.ts";
import { type ByteStream, listenTcp, type StreamListener } from "../wire/stream.ts";

export type { ByteStream, StreamListener };

/** Largest request head (request line and header fields), in bytes: 16 KiB. */
export const MAX_HEADER_BYTES = 16 * 1024;

/** Most header fields one request may carry. */
export const MAX_HEADER_FIELDS = 100;

/** Largest request body accepted by default, in bytes: 64 KiB. */
export const DEFAULT_MAX_BODY_BYTES = 64 * 1024;

/** Time a request's head has to arrive, in ms: 10 s. */
export const HEADER_TIMEOUT_MS = 10_000;

/** Time a request's body has to arrive once its head has, in ms: 10 s. */
export const BODY_TIMEOUT_MS = 10_000;

/** Time a kept-alive connection may stay idle between requests, in ms: 5 s. */
export const IDLE_TIMEOUT_MS = 5_000;

/** Time a response has to be taken by the peer, in ms: 10 s. */
export const WRITE_TIMEOUT_MS = 10_000;

/** Open connections allowed at once, by default. */
export const MAX_CONNECTIONS = 256;

/** Time {@link Http1Server.close} lets requests in progress finish, in ms: 2 s. */
export const CLOSE_GRACE_MS = 2_000;

/** Bytes of a refused (too large) body read and thrown away, so the peer sees the 413: 1 MiB. */
const MAX_DISCARD_BYTES = 1024 * 1024;

/** Bytes asked of the stream per read. */
const READ_CHUNK_BYTES = 16 * 1024;

/** Methods a request may use; others get 501 (CONNECT and TRACE among them). */
const METHODS: ReadonlySet<string> = new Set([
  "GET",
  "HEAD",
  "POST",
  "PUT",
  "DELETE",
  "OPTIONS",
  "PATCH",
]);

/** Methods whose requests must say how long their body is. */
const LENGTH_REQUIRED: ReadonlySet<string> = new Set(["POST", "PUT", "PATCH"]);

/** Reason phrases of the status lines written. */
const REASONS: Readonly<Record<number, string>> = {
  100: "Continue",
  200: "OK",
  201: "Created",
  204: "No Content",
  301: "Moved Permanently",
  302: "Found",
  304: "Not Modified",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  411: "Length Required",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  417: "Expectation Failed",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  503: "Service Unavailable",
  505: "HTTP Version Not Supported",
};

/** Response header fields the server writes itself; a handler's own are dropped. */
const FRAMING_HEADERS: ReadonlySet<string> = new Set([
  "connection",
  "content-length",
  "date",
  "keep-alive",
  "transfer-encoding",
  "upgrade",
]);

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const REQUEST_LINE = /^([^ ]+) ([^ ]+) HTTP\/([0-9])\.([0-9])$/;
const ORIGIN_FORM = /^\/[\x21-\x7e]*$/;
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~-]+)(?::[0-9]{1,5})?$/;
const DIGITS = /^[0-9]{1,15}$/;

const CR = 13;
const LF = 10;
const encoder = new TextEncoder();

/**
 * A request the server refuses: the status to answer with and why. The
 * connection is closed after the answer.
 *
 * @example
 * ```ts
 * import { HttpRequestError, parseRequestHead } from "./http1.ts";
 * try {
 *   parseRequestHead(new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"));
 * } catch (error) {
 *   console.log(error instanceof HttpRequestError, (error as HttpRequestError).status); // true 400
 * }
 * ```
 */
export class HttpRequestError extends Error {
  /** The HTTP status to answer with. */
  readonly status: number;
  /** A short name of the reason, for counters: e.g. `bad_request`. */
  readonly reason: string;

  /** A refusal with `status`, counted under `reason`, explained by `message`. */
  constructor(status: number, reason: string, message: string) {
    super(message);
    this.name = "HttpRequestError";
    this.status = status;
    this.reason = reason;
  }
}

/** What the head of a request says, once checked. */
export interface RequestHead {
  /** The method, e.g. `GET`. */
  method: string;
  /** The request target, always starting with `/`. */
  target: string;
  /** The minor version: `HTTP/1.1` → 1, `HTTP/1.0` → 0. */
  minorVersion: number;
  /** The header fields. */
  headers: Headers;
  /** The `Host` header's value (`undefined` only for HTTP/1.0 without one). */
  host: string | undefined;
  /** Bytes of body that follow (0 without `Content-Length`). */
  contentLength: number;
  /** Whether the connection stays open after the response. */
  keepAlive: boolean;
  /** Whether the peer waits for `100 Continue` before sending the body. */
  expectContinue: boolean;
}

function badRequest(message: string): HttpRequestError {
  return new HttpRequestError(400, "bad_request", message);
}

/**
 * Index just past the first empty line (`CRLF CRLF`) of `bytes[from..to)`,
 * or -1 when there is none yet.
 *
 * @example
 * ```ts
 * import { findHeadEnd } from "./http1.ts";
 * const bytes = new TextEncoder().encode("GET / HTTP/1.1\r\nHost: a\r\n\r\nnext");
 * console.log(findHeadEnd(bytes, 0, bytes.length)); // 27
 * console.log(findHeadEnd(bytes, 0, 20)); // -1
 * ```
 */
export function findHeadEnd(bytes: Uint8Array, from: number, to: number): number {
  for (let i = Math.max(from, 0); i + 3 < to; i++) {
    if (
      bytes[i + 3] === LF && bytes[i + 2] === CR && bytes[i + 1] === LF && bytes[i] === CR
    ) {
      return i + 4;
    }
  }
  return -1;
}

/** The head's bytes as lines, each byte one character; bare CR or LF is refused. */
function headLines(head: Uint8Array): string[] {
  const lines: string[] = [];
  let line = "";
  for (let i = 0; i < head.length; i++) {
    const byte = head[i];
    if (byte === CR) {
      if (head[i + 1] !== LF) throw badRequest("a bare CR in the request head");
      lines.push(line);
      line = "";
      i++;
    } else if (byte === LF) {
      throw badRequest("a bare LF in the request head (lines end with CRLF)");
    } else {
      line += String.fromCharCode(byte);
    }
  }
  if (line !== "") lines.push(line);
  return lines;
}

/** Whether `value` holds only field-value characters: HTAB, SP, visible ASCII and obs-text. */
function validFieldValue(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    if (code !== 9 && (code < 0x20 || code === 0x7f)) return false;
  }
  return true;
}

/**
 * Parses and checks a request head: its bytes up to and including the empty
 * line that ends it (leading empty lines are skipped).
 * @throws {HttpRequestError} with 400 when it is malformed, 431 with too many
 *   fields, 411 for a POST without a length, 417 for an unknown expectation,
 *   501 for a chunked body or an unsupported method, 505 for another version.
 *
 * @example
 * ```ts
 * import { parseRequestHead } from "./http1.ts";
 * const head = parseRequestHead(new TextEncoder().encode(
 *   "POST /api/x HTTP/1.1\r\nHost: localhost:8080\r\nContent-Length: 2\r\n\r\n",
 * ));
 * console.log(head.method, head.target, head.host, head.contentLength, head.keepAlive);
 * // POST /api/x localhost:8080 2 true
 * ```
 */
export function parseRequestHead(
  head: Uint8Array,
  maxHeaderFields: number = MAX_HEADER_FIELDS,
): RequestHead {
  const lines = headLines(head);
  while (lines.length > 0 && lines[0] === "") lines.shift();
  while (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  const requestLine = lines.shift();
  if (requestLine === undefined) throw badRequest("an empty request");
  const match = REQUEST_LINE.exec(requestLine);
  if (match === null) throw badRequest("a malformed request line");
  const [, method, target, major, minor] = match;
  if (major !== "1" || (minor !== "0" && minor !== "1")) {
    throw new HttpRequestError(505, "bad_version", `HTTP/${major}.${minor} is not supported`);
  }
  if (!TOKEN.test(method)) throw badRequest("a malformed method");
  if (!ORIGIN_FORM.test(target)) {
    throw badRequest("the request target must be a path starting with /");
  }
  if (lines.length > maxHeaderFields) {
    throw new HttpRequestError(
      431,
      "header_too_large",
      `more than ${maxHeaderFields} header fields`,
    );
  }
  const headers = new Headers();
  const hosts: string[] = [];
  const lengths: string[] = [];
  let transferEncoding = false;
  for (const line of lines) {
    if (line.startsWith(" ") || line.startsWith("\t")) {
      throw badRequest("folded header lines are not accepted");
    }
    const colon = line.indexOf(":");
    if (colon <= 0) throw badRequest("a header line without a name and a colon");
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) throw badRequest("a malformed header name");
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    if (!validFieldValue(value)) throw badRequest(`a control character in header ${name}`);
    const lower = name.toLowerCase();
    if (lower === "host") hosts.push(value);
    else if (lower === "content-length") lengths.push(value);
    else if (lower === "transfer-encoding") transferEncoding = true;
    try {
      headers.append(name, value);
    } catch {
      throw badRequest(`an invalid value of header ${name}`);
    }
  }
  const minorVersion = Number(minor);
  if (hosts.length > 1) throw badRequest("more than one Host header");
  if (hosts.length === 0 && minorVersion === 1) throw badRequest("HTTP/1.1 needs a Host header");
  const host = hosts[0];
  if (host !== undefined && !HOST.test(host)) throw badRequest("a malformed Host header");
  if (transferEncoding) {
    throw new HttpRequestError(
      501,
      "not_implemented",
      "Transfer-Encoding (chunked bodies) is not supported: send Content-Length",
    );
  }
  if (lengths.length > 1) throw badRequest("more than one Content-Length header");
  if (lengths.length === 1 && !DIGITS.test(lengths[0])) {
    throw badRequest("a malformed Content-Length");
  }
  if (!METHODS.has(method)) {
    throw new HttpRequestError(501, "not_implemented", `method ${method} is not supported`);
  }
  if (lengths.length === 0 && LENGTH_REQUIRED.has(method)) {
    throw new HttpRequestError(411, "length_required", `${method} needs a Content-Length`);
  }
  const connection = (headers.get("connection") ?? "").toLowerCase().split(",").map((t) =>
    t.trim()
  );
  const keepAlive = minorVersion === 1
    ? !connection.includes("close")
    : connection.includes("keep-alive") && !connection.includes("close");
  const expect = headers.get("expect");
  let expectContinue = false;
  if (expect !== null) {
    if (expect.toLowerCase() !== "100-continue") {
      throw new HttpRequestError(417, "bad_expect", `unknown expectation "${expect}"`);
    }
    expectContinue = minorVersion === 1;
  }
  return {
    method,
    target,
    minorVersion,
    headers,
    host,
    contentLength: lengths.length === 1 ? Number(lengths[0]) : 0,
    keepAlive,
    expectContinue,
  };
}

/**
 * The listener the HTTP side serves on by default: plain TCP on `address`.
 * (The one place listeners are made: TLS will hand {@link Http1Server} a
 * different {@link StreamListener}.)
 * @throws {Deno.errors.AddrInUse} and the like when the address cannot be used.
 *
 * @example
 * ```ts
 * import { listenHttp } from "./http1.ts";
 * const listener = listenHttp({ hostname: "127.0.0.1", port: 0 });
 * console.log(listener.addr.port > 0); // true
 * listener.close();
 * ```
 */
export function listenHttp(address: { hostname: string; port: number }): StreamListener {
  return listenTcp(address);
}

/** The limits and deadlines of an {@link Http1Server}; each has a default. */
export interface HttpLimits {
  /** Open connections allowed at once ({@link MAX_CONNECTIONS}). */
  maxConnections: number;
  /** Largest request head, in bytes ({@link MAX_HEADER_BYTES}). */
  maxHeaderBytes: number;
  /** Most header fields per request ({@link MAX_HEADER_FIELDS}). */
  maxHeaderFields: number;
  /** Largest request body, in bytes ({@link DEFAULT_MAX_BODY_BYTES}). */
  maxBodyBytes: number;
  /** Time a request's head has to arrive, in ms ({@link HEADER_TIMEOUT_MS}). */
  headerTimeoutMs: number;
  /** Time a request's body has to arrive after its head, in ms ({@link BODY_TIMEOUT_MS}). */
  bodyTimeoutMs: number;
  /** Time a kept-alive connection may idle between requests, in ms ({@link IDLE_TIMEOUT_MS}). */
  idleTimeoutMs: number;
  /** Time a response has to be taken by the peer, in ms ({@link WRITE_TIMEOUT_MS}). */
  writeTimeoutMs: number;
}

/** The defaults of {@link HttpLimits}. */
export const DEFAULT_HTTP_LIMITS: Readonly<HttpLimits> = Object.freeze({
  maxConnections: MAX_CONNECTIONS,
  maxHeaderBytes: MAX_HEADER_BYTES,
  maxHeaderFields: MAX_HEADER_FIELDS,
  maxBodyBytes: DEFAULT_MAX_BODY_BYTES,
  headerTimeoutMs: HEADER_TIMEOUT_MS,
  bodyTimeoutMs: BODY_TIMEOUT_MS,
  idleTimeoutMs: IDLE_TIMEOUT_MS,
  writeTimeoutMs: WRITE_TIMEOUT_MS,
});

/** Answers one request. */
export type HttpHandler = (request: Request) => Promise<Response>;

/** Options of an {@link Http1Server}. */
export interface Http1ServerOptions {
  /** Where connections come from (e.g. {@link listenHttp}); closed by {@link Http1Server.close}. */
  listener: StreamListener;
  /** Answers each request. */
  handler: HttpHandler;
  /** Limits and deadlines; the defaults of {@link DEFAULT_HTTP_LIMITS} for those not given. */
  limits?: Partial<HttpLimits>;
  /** Where failed accepts, the cap and failed handlers are logged. */
  logger?: Logger;
  /**
   * Called for each request or connection refused by the server itself, with
   * a short reason: `bad_request`, `header_too_large`, `body_too_large`,
   * `header_timeout`, `body_timeout`, `length_required`, `not_implemented`,
   * `bad_version`, `bad_expect`, `too_many_connections`.
   */
  onRefused?: (reason: string) => void;
}

/** Checks that every limit is a positive number; returns the full set. */
function checkLimits(given: Partial<HttpLimits> | undefined): HttpLimits {
  const limits: HttpLimits = { ...DEFAULT_HTTP_LIMITS };
  for (const [key, value] of Object.entries(given ?? {})) {
    if (value === undefined) continue;
    if (!(key in DEFAULT_HTTP_LIMITS)) throw new TypeError(`unknown HTTP limit "${key}"`);
    if (typeof value !== "number" || !(value > 0)) {
      throw new RangeError(`HTTP limit ${key} must be a positive number, not ${value}`);
    }
    limits[key as keyof HttpLimits] = value;
  }
  return limits;
}

/**
 * A strict HTTP/1.1 server: see the module's documentation for what it
 * checks and bounds.
 *
 * @example
 * ```ts
 * import { Http1Server, listenHttp } from "./http1.ts";
 * const server = new Http1Server({
 *   listener: listenHttp({ hostname: "127.0.0.1", port: 0 }),
 *   handler: (request) => Promise.resolve(new Response(`hello ${new URL(request.url).pathname}`)),
 *   limits: { headerTimeoutMs: 1_000 },
 * });
 * const reply = await fetch(`http://127.0.0.1:${server.addr.port}/there`);
 * console.log(reply.status, await reply.text()); // 200 hello /there
 * await server.close();
 * ```
 */
export class Http1Server {
  /** The address listened on. */
  readonly addr: Deno.NetAddr;
  /** The limits in force. */
  readonly limits: Readonly<HttpLimits>;
  readonly #handler: HttpHandler;
  readonly #log: Logger;
  readonly #onRefused: (reason: string) => void;
  readonly #acceptor: Acceptor<Http1Connection>;
  /** Every open connection. */
  readonly #live = new Set<Http1Connection>();
  /** Connections waiting for (the rest of) a request, longest-waiting first. */
  readonly #waiting = new Set<Http1Connection>();
  /** Connections closed to make room since the cap was last reached. */
  #evicted = 0;
  #closing: Promise<void> | undefined;

  /** Starts accepting on `options.listener`. */
  constructor(options: Http1ServerOptions) {
    this.limits = checkLimits(options.limits);
    this.addr = options.listener.addr;
    this.#handler = options.handler;
    this.#log = options.logger ?? silentLogger;
    this.#onRefused = options.onRefused ?? (() => {});
    this.#acceptor = new Acceptor({
      listener: options.listener,
      log: this.#log,
      // No HTTP connection ever authenticates: every one counts against the
      // cap. #open makes room first by closing the longest-waiting idle
      // connection, so the acceptor drops its oldest (busy) one only when
      // none is idle.
      maxPending: this.limits.maxConnections,
      kind: "HTTP connections",
      open: (conn) => this.#open(conn),
      drop: (connection) => {
        this.#forget(connection);
        this.#refused("too_many_connections");
        connection.drop();
      },
    });
  }

  /** Number of open connections. */
  get connectionCount(): number {
    return this.#live.size;
  }

  #open(conn: ByteStream): Http1Connection {
    if (this.#live.size >= this.limits.maxConnections) this.#evictOldestIdle();
    else if (this.#evicted > 0) {
      this.#log.info("HTTP connections below the cap again", { closedToMakeRoom: this.#evicted });
      this.#evicted = 0;
    }
    const connection = new Http1Connection(conn, this, this.limits);
    this.#live.add(connection);
    this.#waiting.add(connection);
    return connection;
  }

  #evictOldestIdle(): void {
    const oldest = this.#waiting.values().next().value;
    if (oldest === undefined) return; // all busy: the acceptor drops its oldest
    if (this.#evicted++ === 0) {
      this.#log.warn("too many HTTP connections; closing those idle longest to make room", {
        limit: this.limits.maxConnections,
      });
    }
    this.#forget(oldest);
    this.#acceptor.authenticated(oldest); // no longer counts against the acceptor's cap
    this.#refused("too_many_connections");
    oldest.drop();
  }

  #forget(connection: Http1Connection): void {
    this.#live.delete(connection);
    this.#waiting.delete(connection);
  }

  /** @internal A connection now waits for a request (to the back of the line). */
  waiting(connection: Http1Connection): void {
    if (!this.#live.has(connection)) return;
    this.#waiting.delete(connection);
    this.#waiting.add(connection);
  }

  /** @internal A connection has a whole request head and is being answered. */
  busy(connection: Http1Connection): void {
    this.#waiting.delete(connection);
  }

  /** @internal A connection has ended. */
  ended(connection: Http1Connection): void {
    this.#forget(connection);
  }

  /** @internal Whether the server is closing (connections end after their response). */
  get closing(): boolean {
    return this.#closing !== undefined;
  }

  /** @internal Counts a refusal. */
  refused(reason: string): void {
    this.#refused(reason);
  }

  #refused(reason: string): void {
    try {
      this.#onRefused(reason);
    } catch {
      // a counter must not break the connection
    }
  }

  /** @internal Answers a request, turning a failed handler into a 500. */
  async answer(request: Request): Promise<Response> {
    try {
      return await this.#handler(request);
    } catch (error) {
      this.#log.error("http handler failed", { error: String(error) });
      return errorResponse(500, "internal error");
    }
  }

  /**
   * Stops accepting, closes idle connections, lets requests being answered
   * finish (for up to {@link CLOSE_GRACE_MS}), then closes the rest. Safe to
   * call twice.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#acceptor.close();
      for (const connection of [...this.#waiting]) connection.drop();
      const running = [...this.#acceptor.sessions.values()];
      let timer: ReturnType<typeof setTimeout> | undefined;
      const grace = new Promise<void>((resolve) => timer = setTimeout(resolve, CLOSE_GRACE_MS));
      await Promise.race([Promise.all(running), grace]);
      clearTimeout(timer);
      for (const connection of [...this.#acceptor.sessions.keys()]) connection.drop();
      await Promise.all([...this.#acceptor.sessions.values()]);
    })();
    return this.#closing;
  }
}

/** Why a timed read or write gave up. */
const TIMED_OUT = Symbol("timed out");

/** One connection: reads requests, answers them in order. */
class Http1Connection {
  readonly conn: { readonly peer: string };
  readonly #stream: ByteStream;
  readonly #server: Http1Server;
  readonly #limits: HttpLimits;
  #buffer = new Uint8Array(READ_CHUNK_BYTES);
  /** Unconsumed bytes are `#buffer[#start..#end)`. */
  #start = 0;
  #end = 0;
  #closed = false;
  /** Whether at least one request was answered on this connection. */
  #served = false;

  constructor(stream: ByteStream, server: Http1Server, limits: HttpLimits) {
    this.#stream = stream;
    this.#server = server;
    this.#limits = limits;
    const addr = stream.remoteAddr as Deno.NetAddr;
    this.conn = { peer: addr.hostname === undefined ? "?" : `${addr.hostname}:${addr.port}` };
  }

  /** Closes the connection now; whatever it was doing ends. */
  drop(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#stream.close();
    } catch {
      // already closed
    }
  }

  async run(): Promise<void> {
    try {
      while (!this.#closed && await this.#serveOne()) {
        this.#served = true;
        if (this.#server.closing) break;
        this.#server.waiting(this);
      }
    } catch {
      // the peer went away or the connection was dropped: nothing to answer
    } finally {
      this.#server.ended(this);
      this.drop();
    }
  }

  /** Reads, answers one request; resolves with whether to go on with the next. */
  async #serveOne(): Promise<boolean> {
    const limits = this.#limits;
    // Waiting for a request: a new connection has the header deadline from
    // its opening, a kept-alive one the idle deadline until its first byte.
    const opened = Date.now();
    let headerDeadline = this.#served ? undefined : opened + limits.headerTimeoutMs;
    const idleDeadline = opened + limits.idleTimeoutMs;
    let headEnd = -1;
    /** Bytes after #start already searched for the head's end (#start moves when the buffer does). */
    let scanned = 0;
    for (;;) {
      scanned = Math.max(0, scanned - this.#skipEmptyLines());
      if (this.#end > this.#start && headerDeadline === undefined) {
        headerDeadline = Date.now() + limits.headerTimeoutMs;
      }
      headEnd = findHeadEnd(this.#buffer, this.#start + Math.max(scanned - 3, 0), this.#end);
      if (headEnd >= 0) break;
      scanned = this.#end - this.#start;
      if (this.#end - this.#start >= limits.maxHeaderBytes) {
        return await this.#refuse(
          new HttpRequestError(431, "header_too_large", "the request head is too large"),
        );
      }
      const got = await this.#read(headerDeadline ?? idleDeadline, limits.maxHeaderBytes);
      if (got === null) return false; // the peer closed, maybe mid-head: nothing to answer
      if (got === TIMED_OUT) {
        if (headerDeadline === undefined) return false; // an idle kept-alive connection
        this.#server.refused("header_timeout");
        if (this.#end > this.#start) {
          await this.#answerError(408, "the request head took too long", false);
        }
        return false;
      }
    }
    if (headEnd - this.#start > limits.maxHeaderBytes) {
      return await this.#refuse(
        new HttpRequestError(431, "header_too_large", "the request head is too large"),
      );
    }
    let head: RequestHead;
    try {
      head = parseRequestHead(this.#buffer.subarray(this.#start, headEnd), limits.maxHeaderFields);
    } catch (error) {
      if (error instanceof HttpRequestError) return await this.#refuse(error);
      throw error;
    }
    this.#start = headEnd;
    this.#server.busy(this);
    const bodyDeadline = Date.now() + limits.bodyTimeoutMs;
    if (head.contentLength > limits.maxBodyBytes) {
      // Read and throw away a body of reasonable size so the peer, still
      // sending it, sees the answer rather than a reset connection.
      this.#server.refused("body_too_large");
      if (head.contentLength <= MAX_DISCARD_BYTES && !head.expectContinue) {
        await this.#discard(head.contentLength, bodyDeadline);
      }
      await this.#answerError(413, "the body is too large", false);
      return false;
    }
    if (head.expectContinue && head.contentLength > this.#end - this.#start) {
      await this.#writeAll(encoder.encode("HTTP/1.1 100 Continue\r\n\r\n"));
    }
    while (this.#end - this.#start < head.contentLength) {
      const got = await this.#read(bodyDeadline, head.contentLength);
      if (got === null) return false;
      if (got === TIMED_OUT) {
        this.#server.refused("body_timeout");
        await this.#answerError(408, "the request body took too long", false);
        return false;
      }
    }
    const body = this.#buffer.slice(this.#start, this.#start + head.contentLength);
    this.#start += head.contentLength;
    const request = new Request(`http://${head.host ?? this.#localHost()}${head.target}`, {
      method: head.method,
      headers: head.headers,
      body: head.method === "GET" || head.method === "HEAD" || body.length === 0 ? null : body,
    });
    const response = await this.#server.answer(request);
    const keepAlive = head.keepAlive && !this.#server.closing;
    await this.#writeResponse(response, head.method === "HEAD", keepAlive, head.minorVersion);
    return keepAlive && !this.#closed;
  }

  /** The listener's address, as a Host for requests that name none (HTTP/1.0). */
  #localHost(): string {
    const { hostname, port } = this.#server.addr;
    return hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
  }

  /** Skips the empty lines a peer may send before a request; returns the bytes skipped. */
  #skipEmptyLines(): number {
    const from = this.#start;
    while (
      this.#end - this.#start >= 2 && this.#buffer[this.#start] === CR &&
      this.#buffer[this.#start + 1] === LF
    ) {
      this.#start += 2;
    }
    return this.#start - from;
  }

  /** Answers a refused request and ends the connection. */
  async #refuse(error: HttpRequestError): Promise<false> {
    this.#server.refused(error.reason);
    await this.#answerError(error.status, error.message, false);
    return false;
  }

  async #answerError(status: number, message: string, keepAlive: boolean): Promise<void> {
    try {
      await this.#writeResponse(errorResponse(status, message), false, keepAlive, 1);
    } catch {
      // the peer is gone or does not read: it is closed anyway
    }
  }

  /**
   * Reads more bytes into the buffer, growing it up to `need` more than what
   * is buffered; resolves with the count, `null` at the end of the stream, or
   * {@link TIMED_OUT} once `deadline` (a time) passes.
   */
  async #read(deadline: number, need: number): Promise<number | null | typeof TIMED_OUT> {
    this.#makeRoom(Math.min(need, READ_CHUNK_BYTES));
    const wait = deadline - Date.now();
    if (wait <= 0) return TIMED_OUT;
    const reading = this.#stream.read(this.#buffer.subarray(this.#end));
    const got = await within(reading, wait);
    if (got === TIMED_OUT) return TIMED_OUT;
    if (got !== null) this.#end += got;
    return got;
  }

  /** Makes room for at least `bytes` more after `#end`: moves the data to the front, or grows. */
  #makeRoom(bytes: number): void {
    const wanted = Math.max(bytes, 1);
    if (this.#buffer.length - this.#end >= wanted) return;
    const size = this.#end - this.#start;
    if (this.#buffer.length >= size + wanted) {
      this.#buffer.copyWithin(0, this.#start, this.#end);
    } else {
      const grown = new Uint8Array(Math.max(this.#buffer.length * 2, size + wanted));
      grown.set(this.#buffer.subarray(this.#start, this.#end));
      this.#buffer = grown;
    }
    this.#start = 0;
    this.#end = size;
  }

  /** Reads and throws away `length` bytes of body, until `deadline`. */
  async #discard(length: number, deadline: number): Promise<void> {
    let left = length;
    for (;;) {
      const buffered = Math.min(left, this.#end - this.#start);
      this.#start += buffered;
      left -= buffered;
      if (left === 0) return;
      this.#start = this.#end = 0;
      const got = await this.#read(deadline, left);
      if (got === null || got === TIMED_OUT) return;
    }
  }

  async #writeResponse(
    response: Response,
    isHead: boolean,
    keepAlive: boolean,
    minorVersion: number,
  ): Promise<void> {
    const status = response.status;
    const bodiless = status < 200 || status === 204 || status === 304;
    const body = response.body === null ? null : new Uint8Array(await response.arrayBuffer());
    let head = `HTTP/1.1 ${status} ${REASONS[status] ?? ""}\r\n`;
    for (const [name, value] of response.headers) {
      if (FRAMING_HEADERS.has(name) || name === "set-cookie") continue;
      head += `${name}: ${value}\r\n`;
    }
    for (const cookie of response.headers.getSetCookie()) head += `set-cookie: ${cookie}\r\n`;
    head += `date: ${new Date().toUTCString()}\r\n`;
    if (!bodiless && body !== null) head += `content-length: ${body.length}\r\n`;
    else if (!bodiless && !isHead) head += "content-length: 0\r\n";
    if (!keepAlive) head += "connection: close\r\n";
    else if (minorVersion === 0) head += "connection: keep-alive\r\n";
    head += "\r\n";
    const headBytes = encoder.encode(head);
    const sendBody = !isHead && !bodiless && body !== null && body.length > 0;
    if (sendBody && body.length <= READ_CHUNK_BYTES) {
      const all = new Uint8Array(headBytes.length + body.length);
      all.set(headBytes);
      all.set(body, headBytes.length);
      await this.#writeAll(all);
    } else {
      await this.#writeAll(headBytes);
      if (sendBody) await this.#writeAll(body);
    }
  }

  /**
   * Writes all of `bytes` within the write deadline.
   * @throws {Deno.errors.TimedOut} when the peer does not take them in time (the connection is dropped).
   */
  async #writeAll(bytes: Uint8Array): Promise<void> {
    const deadline = Date.now() + this.#limits.writeTimeoutMs;
    let offset = 0;
    while (offset < bytes.length) {
      const wait = deadline - Date.now();
      const wrote = wait <= 0
        ? TIMED_OUT
        : await within(this.#stream.write(bytes.subarray(offset)), wait);
      if (wrote === TIMED_OUT) {
        this.drop();
        throw new Deno.errors.TimedOut("the peer did not take the response in time");
      }
      offset += wrote;
    }
  }
}

/** Resolves with `promise`'s value, or {@link TIMED_OUT} after `ms`; the timer is always cleared. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), ms);
  });
  try {
    const result = await Promise.race([promise, timeout]);
    // The losing read or write settles when the connection closes; nobody awaits it.
    if (result === TIMED_OUT) promise.catch(() => {});
    return result;
  } finally {
    clearTimeout(timer);
  }
}

/** The answer to a request the server refuses by itself. */
function errorResponse(status: number, message: string): Response {
  return new Response(JSON.stringify({ error: message }), {
    status,
    headers: {
      "content-type": "application/json; charset=utf-8",
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
    },
  });
}
