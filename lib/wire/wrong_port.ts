/**
 * Telling a peer it knocked on the wrong port, in words it understands.
 *
 * A master listens on two ports when it serves `--http`: its native port
 * (framed msgpack) and its HTTP port (the dashboard, the JSON API,
 * `/metrics`). Each side recognises the other's protocol from its very first
 * bytes and answers in the peer's own terms instead of a confusing error:
 *
 * - On the native port, a first frame whose 4-byte length prefix reads as the
 *   start of an HTTP request (`GET `, `POST`…) is an HTTP client or a browser:
 *   it gets a short plain-text HTTP 400 ({@link answerHttpOnNativePort}) and
 *   the connection closes; the master logs one debug line, nothing louder.
 * - On the HTTP port, a first byte of 0 cannot start an HTTP request; it is
 *   the length prefix of a native frame, a taskq client's `hello`. The
 *   listener {@link refuseNativeClients} wraps answers it with one native
 *   `error` frame (code `bad_request`, message starting with
 *   {@link NOT_A_MASTER}) naming the native port, and closes.
 * - A client whose master answers `HTTP/1.1 …` (read as a frame of
 *   1,213,486,160 bytes: {@link isHttpResponseStart}) is talking to some HTTP
 *   server; lib/client/handshake.ts says so.
 *
 * @example
 * ```ts
 * import { isHttpRequestStart } from "./wrong_port.ts";
 * const prefix = new DataView(new TextEncoder().encode("GET / HTTP/1.1").buffer).getUint32(0);
 * console.log(isHttpRequestStart(prefix)); // true
 * ```
 *
 * @module
 */

import type { Logger } from "../log.ts";
import type { ByteStream, StreamListener } from "./stream.ts";
import { FramedConnection } from "./connection.ts";
import type { ErrorMessage } from "./messages.ts";

/** How the message of the native `error` frame sent from the HTTP port starts. */
export const NOT_A_MASTER = "not a taskq master";

/** Time allowed to write a wrong-port answer before the connection is just closed, in ms. */
export const WRONG_PORT_WRITE_MS = 1_000;

/** Bytes of a frame's length prefix. */
const PREFIX_BYTES = 4;

/** The first four bytes of the HTTP requests a client may send (methods, and HTTP/2's preface). */
const HTTP_REQUEST_STARTS: ReadonlySet<string> = new Set([
  "GET ",
  "HEAD",
  "POST",
  "PUT ",
  "DELE",
  "OPTI",
  "PATC",
  "CONN",
  "TRAC",
  "PRI ",
]);

/** The first four bytes of every HTTP/1 response. */
const HTTP_RESPONSE_START = "HTTP";

/** The 4-byte big-endian `prefix` read back as the four ASCII characters it came from. */
function prefixText(prefix: number): string {
  let text = "";
  for (let shift = 24; shift >= 0; shift -= 8) {
    text += String.fromCharCode((prefix >>> shift) & 0xff);
  }
  return text;
}

/**
 * Whether a frame length prefix is really the start of an HTTP request.
 *
 * @example
 * ```ts
 * import { isHttpRequestStart } from "./wrong_port.ts";
 * console.log(isHttpRequestStart(0x47455420), isHttpRequestStart(42)); // true false
 * ```
 */
export function isHttpRequestStart(prefix: number): boolean {
  return HTTP_REQUEST_STARTS.has(prefixText(prefix));
}

/**
 * Whether a frame length prefix is really the start of an HTTP response
 * (`HTTP/1.1 400 …`, read as 1,213,486,160).
 *
 * @example
 * ```ts
 * import { isHttpResponseStart } from "./wrong_port.ts";
 * console.log(isHttpResponseStart(1213486160)); // true
 * ```
 */
export function isHttpResponseStart(prefix: number): boolean {
  return prefixText(prefix) === HTTP_RESPONSE_START;
}

/** The body of the answer to an HTTP request on the native port. */
const NATIVE_PORT_TEXT = "This is a taskq master's native port: it speaks taskq's own protocol " +
  "(docs/PROTOCOL.md), not HTTP. The dashboard, the JSON API and /metrics are served on " +
  "the port given to `taskq master --http`.\n";

/** The whole HTTP answer on the native port. */
const NATIVE_PORT_REPLY: Uint8Array = (() => {
  const body = new TextEncoder().encode(NATIVE_PORT_TEXT);
  const head = "HTTP/1.1 400 Bad Request\r\n" +
    "Content-Type: text/plain; charset=utf-8\r\n" +
    `Content-Length: ${body.length}\r\n` +
    "Connection: close\r\n\r\n";
  const encoded = new TextEncoder().encode(head);
  const reply = new Uint8Array(encoded.length + body.length);
  reply.set(encoded);
  reply.set(body, encoded.length);
  return reply;
})();

/** Writes all of `data` (a stream may take part of it per write), within {@link WRONG_PORT_WRITE_MS}. */
async function writeAll(stream: ByteStream, data: Uint8Array): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const writing = (async () => {
    for (let offset = 0; offset < data.length;) offset += await stream.write(data.subarray(offset));
  })();
  try {
    await Promise.race([
      writing,
      new Promise<void>((resolve) => timer = setTimeout(resolve, WRONG_PORT_WRITE_MS)),
    ]);
  } catch {
    // the peer is gone: nothing to tell it
  } finally {
    clearTimeout(timer);
    writing.catch(() => {});
  }
}

/**
 * Answers an HTTP client that reached the native port: a plain-text HTTP 400
 * saying what the port is, then closes `stream`. Never throws.
 *
 * @example
 * ```ts ignore
 * await answerHttpOnNativePort(framed.conn);
 * ```
 */
export async function answerHttpOnNativePort(stream: ByteStream): Promise<void> {
  await writeAll(stream, NATIVE_PORT_REPLY);
  try {
    stream.close();
  } catch {
    // already closed
  }
}

/** A byte no HTTP request starts with, and every small native frame does (its length's top byte). */
const NATIVE_FRAME_FIRST_BYTE = 0;

/**
 * Wraps the HTTP side's `listener` so that a taskq client that reached it is
 * told where the native port is: when a connection's first byte is 0 (the
 * top byte of a native frame's length), one native `error` frame goes back
 * (`bad_request`, "not a taskq master: …; the native port is
 * `nativeAddress`"), the connection closes, and the HTTP server sees only
 * the end of a stream. Any other connection passes through untouched.
 *
 * @example
 * ```ts
 * import { listenTcp } from "./stream.ts";
 * import { silentLogger } from "../log.ts";
 * import { refuseNativeClients } from "./wrong_port.ts";
 * const listener = refuseNativeClients(
 *   listenTcp({ hostname: "127.0.0.1", port: 0 }),
 *   "127.0.0.1:7070",
 *   silentLogger,
 * );
 * console.log(listener.addr.port > 0); // true
 * listener.close();
 * ```
 */
export function refuseNativeClients(
  listener: StreamListener,
  nativeAddress: string,
  log: Logger,
): StreamListener {
  return {
    get addr() {
      return listener.addr;
    },
    close: () => listener.close(),
    async accept() {
      return sniffing(await listener.accept(), nativeAddress, log);
    },
  };
}

/** `stream`, whose first read turns a native client away (see {@link refuseNativeClients}). */
function sniffing(stream: ByteStream, nativeAddress: string, log: Logger): ByteStream {
  let first = true;
  let refused = false;
  return {
    get remoteAddr() {
      return stream.remoteAddr;
    },
    write: (data) => stream.write(data),
    close: () => {
      if (!refused) stream.close();
    },
    async read(buffer) {
      const n = await stream.read(buffer);
      if (!first || n === null || n === 0) return n;
      first = false;
      if (buffer[0] !== NATIVE_FRAME_FIRST_BYTE || n < PREFIX_BYTES) return n;
      refused = true;
      const peer = stream.remoteAddr as Deno.NetAddr;
      log.debug("a taskq client reached the HTTP port; told it the native port", {
        peer: `${peer.hostname}:${peer.port}`,
        nativeAddress,
      });
      const refusal: ErrorMessage = {
        op: "error",
        code: "bad_request",
        message: `${NOT_A_MASTER}: this is its HTTP port (the dashboard, the JSON API, ` +
          `/metrics); the native port is ${nativeAddress}`,
      };
      await new FramedConnection(stream).sendAndClose(refusal, WRONG_PORT_WRITE_MS);
      return null;
    },
  };
}
