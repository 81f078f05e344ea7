/**
 * TLS for the byte streams the protocols run over ({@link ByteStream},
 * {@link StreamListener}): a listener serving TLS, optionally requiring client
 * certificates from a given CA (mutual TLS), and a dialer for the client side.
 *
 * Both ends use `node:tls`, chosen by measurement on loopback (Deno 2.9.6,
 * 64-byte ping-pong round trips per second; bulk MiB/s). Deno's own TLS
 * (`Deno.listenTls`/`Deno.connectTls`) is the faster one in a strict
 * ping-pong (26-29k, 800-940 MiB/s; `node:tls` on both ends 16-18k, 310-400
 * MiB/s; plain TCP 32-46k, 2.5-3.9 GiB/s), but its connections cannot turn
 * Nagle's algorithm off: two small writes before a read managed 12 round trips
 * per second against 10,200 with `node:tls` and no-delay, and a master's
 * replies and a client's pipelined requests are exactly such writes.
 * `Deno.listenTls` cannot ask for or verify client certificates either
 * (deno#26825), and `Deno.connectTls` cannot check a server name other than
 * the host it dials.
 *
 * Every socket has Nagle's algorithm off; a `node:tls` socket's writes resolve
 * once the socket has taken the bytes, and reading pauses it once
 * {@link TLS_READ_AHEAD_BYTES} are buffered (back-pressure).
 *
 * The taskq handshake (mutual HMAC proofs of the key) still runs inside TLS:
 * TLS hides the items and proves the master's (and, with a client CA, the
 * client's) certificate; the key still decides who may use the queues.
 *
 * @example
 * ```ts
 * import { dialTls, listenTls } from "./tls.ts";
 * import { makeTlsMaterial } from "../cli/tls.ts"; // what `taskq tls init` writes
 * const pems = await makeTlsMaterial({ hosts: ["127.0.0.1"] });
 * const listener = await listenTls({ hostname: "127.0.0.1", port: 0 }, {
 *   cert: pems.server,
 *   key: pems.serverKey,
 *   clientCa: pems.ca, // mutual TLS: clients need a certificate from this CA
 * });
 * const dialing = dialTls(listener.addr, {
 *   ca: pems.ca,
 *   cert: pems.client,
 *   key: pems.clientKey,
 * });
 * const server = await listener.accept();
 * const client = await dialing;
 * await client.write(new Uint8Array([42]));
 * const got = new Uint8Array(1);
 * console.log(await server.read(got), got[0]); // 1 42
 * client.close();
 * server.close();
 * listener.close();
 * ```
 *
 * @module
 */

import * as tls from "node:tls";
import { isIP } from "node:net";
import type { ByteStream, StreamListener } from "./stream.ts";
import { ConfigError, ConnectionLostError, TaskqError } from "../errors.ts";

/** Bytes buffered from a peer before its socket is paused until they are read: 256 KiB. */
export const TLS_READ_AHEAD_BYTES = 256 * 1024;

/** Time a new connection has to complete the TLS handshake by default: 5 s. */
export const DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS = 5_000;

/** Oldest TLS version spoken. */
const MIN_TLS_VERSION = "TLSv1.2";

/** What a TLS listener serves with (PEM text, not file names). */
export interface TlsServerOptions {
  /** The server's certificate chain, PEM. */
  cert: string;
  /** The server certificate's private key, PEM. */
  key: string;
  /**
   * CA certificates (PEM) that client certificates must chain to; when set,
   * a client without a valid certificate from one of them is refused during
   * the TLS handshake (mutual TLS).
   */
  clientCa?: string;
}

/** Options of {@link listenTls} beyond the certificates. */
export interface TlsListenOptions extends TlsServerOptions {
  /** Time a connection has to complete the TLS handshake; {@link DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS} by default. */
  handshakeTimeoutMs?: number;
  /** Called for each connection whose TLS handshake failed (for logs). */
  onHandshakeError?: (error: Error) => void;
}

/** What a TLS client connects with (PEM text, not file names). */
export interface TlsClientOptions {
  /** CA certificates (PEM) the master's certificate must chain to; the system's roots when absent. */
  ca?: string;
  /** The client's certificate chain (PEM), for a master that requires one. */
  cert?: string;
  /** The client certificate's private key (PEM). */
  key?: string;
  /** Name the master's certificate must carry; the host connected to by default. */
  serverName?: string;
}

/**
 * The TLS handshake with the master failed: its certificate is not trusted
 * (wrong `--tls-ca`, wrong name), it refused ours, or it does not speak TLS.
 *
 * @example
 * ```ts
 * import { TlsHandshakeError } from "./tls.ts";
 * const error = new TlsHandshakeError("master 127.0.0.1:5000: certificate refused");
 * console.log(error.name); // TlsHandshakeError
 * ```
 */
export class TlsHandshakeError extends TaskqError {}

/**
 * Checks that PEM text holds what it should, before it reaches the TLS library.
 * @throws {ConfigError} naming `what` when `pem` has no such PEM block.
 */
export function checkPem(pem: string, kind: "certificate" | "private key", what: string): string {
  if (typeof pem !== "string") {
    throw new TypeError(`${what} must be PEM text (a string), not ${typeof pem}`);
  }
  const pattern = kind === "certificate"
    ? /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/
    : /-----BEGIN (?:RSA |EC |ENCRYPTED )?PRIVATE KEY-----[\s\S]+?-----END (?:RSA |EC |ENCRYPTED )?PRIVATE KEY-----/;
  if (!pattern.test(pem)) {
    throw new ConfigError(
      `${what} holds no PEM ${kind} (expected a "-----BEGIN ${
        kind === "certificate" ? "CERTIFICATE" : "PRIVATE KEY"
      }-----" block; \`taskq tls init\` makes a working set)`,
    );
  }
  return pem;
}

/**
 * Checks a server's TLS settings before anything listens: each is PEM, the
 * certificate parses and the key is the certificate's. (`node:tls` under
 * Deno would accept a mismatched key and fail every handshake instead, so
 * the pair is tried on a throwaway `Deno.listenTls` on loopback, port 0.)
 * @throws {ConfigError} naming what is wrong, with `names` (e.g. the files)
 *   for the certificate and the key.
 */
export function checkTlsServerOptions(
  options: TlsServerOptions,
  names: { cert: string; key: string; clientCa: string } = {
    cert: "the TLS certificate",
    key: "the TLS key",
    clientCa: "the TLS client CA",
  },
): void {
  checkPem(options.cert, "certificate", names.cert);
  checkPem(options.key, "private key", names.key);
  if (options.clientCa !== undefined) checkPem(options.clientCa, "certificate", names.clientCa);
  let probe: Deno.TlsListener;
  try {
    probe = Deno.listenTls({
      hostname: PROBE_HOST,
      port: 0,
      transport: "tcp",
      cert: options.cert,
      key: options.key,
    });
  } catch (cause) {
    if (cause instanceof Deno.errors.PermissionDenied) throw cause;
    throw new ConfigError(
      `cannot use ${names.cert} with ${names.key}: ${(cause as Error).message} ` +
        `(is the key the certificate's? \`taskq tls init\` makes a matching pair)`,
      { cause },
    );
  }
  probe.close();
}

/** Where {@link checkTlsServerOptions} tries a certificate and key. */
const PROBE_HOST = "127.0.0.1";

/** A `node:tls` socket seen as a {@link ByteStream}. */
class TlsStream implements ByteStream {
  readonly remoteAddr: Deno.NetAddr;
  readonly #socket: tls.TLSSocket;
  readonly #chunks: Uint8Array[] = [];
  #buffered = 0;
  #ended = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;

  constructor(socket: tls.TLSSocket) {
    this.#socket = socket;
    socket.setNoDelay(true);
    this.remoteAddr = {
      transport: "tcp",
      hostname: socket.remoteAddress ?? "",
      port: socket.remotePort ?? 0,
    };
    const wake = () => {
      const resolve = this.#wake;
      this.#wake = undefined;
      resolve?.();
    };
    socket.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(chunk);
      this.#buffered += chunk.length;
      if (this.#buffered >= TLS_READ_AHEAD_BYTES) socket.pause();
      wake();
    });
    socket.on("end", () => {
      this.#ended = true;
      wake();
    });
    socket.on("close", () => {
      this.#ended = true;
      wake();
    });
    socket.on("error", (error: Error) => {
      this.#error ??= error;
      wake();
    });
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#error !== undefined) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    let n = 0;
    while (n < buffer.length && this.#chunks.length > 0) {
      const chunk = this.#chunks[0];
      const take = Math.min(chunk.length, buffer.length - n);
      buffer.set(take === chunk.length ? chunk : chunk.subarray(0, take), n);
      n += take;
      if (take === chunk.length) this.#chunks.shift();
      else this.#chunks[0] = chunk.subarray(take);
    }
    this.#buffered -= n;
    if (this.#buffered < TLS_READ_AHEAD_BYTES && this.#socket.isPaused()) this.#socket.resume();
    return n;
  }

  write(data: Uint8Array): Promise<number> {
    if (this.#socket.destroyed || this.#error !== undefined) {
      return Promise.reject(this.#error ?? new Deno.errors.BrokenPipe("the TLS stream is closed"));
    }
    return new Promise((resolve, reject) => {
      this.#socket.write(data, (error?: Error | null) => {
        if (error) reject(error);
        else resolve(data.length);
      });
    });
  }

  close(): void {
    this.#ended = true;
    this.#socket.destroy();
    const resolve = this.#wake;
    this.#wake = undefined;
    resolve?.();
  }
}

/**
 * Listens on TCP and serves TLS with `options`: {@link StreamListener.accept}
 * resolves only with connections whose TLS handshake succeeded (with
 * {@link TlsServerOptions.clientCa}: whose client presented a valid
 * certificate from that CA). A connection that does not complete its TLS
 * handshake within the timeout is dropped.
 * @throws {ConfigError} when a certificate or key is not valid PEM, or the
 *   key does not match the certificate.
 * @throws {Deno.errors.AddrInUse} and the like when the address cannot be used.
 */
export async function listenTls(
  address: { hostname: string; port: number },
  options: TlsListenOptions,
): Promise<StreamListener> {
  checkTlsServerOptions(options);
  let server: tls.Server;
  try {
    server = tls.createServer({
      cert: options.cert,
      key: options.key,
      minVersion: MIN_TLS_VERSION,
      handshakeTimeout: options.handshakeTimeoutMs ?? DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS,
      ...(options.clientCa === undefined
        ? {}
        : { ca: options.clientCa, requestCert: true, rejectUnauthorized: true }),
    });
  } catch (cause) {
    throw new ConfigError(
      `cannot use the TLS certificate and key: ${(cause as Error).message} ` +
        `(are they PEM, and is the key the certificate's?)`,
      { cause },
    );
  }
  const ready: ByteStream[] = [];
  const waiters: { resolve(stream: ByteStream): void; reject(error: Error): void }[] = [];
  let closed = false;
  server.on("secureConnection", (socket: tls.TLSSocket) => {
    if (closed) {
      socket.destroy();
      return;
    }
    const stream = new TlsStream(socket);
    const waiter = waiters.shift();
    if (waiter) waiter.resolve(stream);
    else ready.push(stream);
  });
  server.on("tlsClientError", (error: Error, socket: tls.TLSSocket) => {
    socket.destroy();
    options.onHandshakeError?.(error);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error: Error) => reject(toDenoError(error)));
    server.listen(address.port, address.hostname, () => resolve());
  });
  server.on("error", () => {}); // once listening, errors belong to connections
  const bound = server.address();
  const addr: Deno.NetAddr = {
    transport: "tcp",
    hostname: address.hostname,
    port: typeof bound === "object" && bound !== null ? bound.port : address.port,
  };
  return {
    addr,
    accept() {
      if (closed) return Promise.reject(new Deno.errors.BadResource("the TLS listener is closed"));
      const stream = ready.shift();
      if (stream) return Promise.resolve(stream);
      return new Promise((resolve, reject) => waiters.push({ resolve, reject }));
    },
    close() {
      if (closed) return;
      closed = true;
      server.close();
      for (const stream of ready.splice(0)) stream.close();
      for (const waiter of waiters.splice(0)) {
        waiter.reject(new Deno.errors.BadResource("the TLS listener is closed"));
      }
    },
  };
}

/** Maps a listen error to Deno's error classes, as `Deno.listen` would throw. */
function toDenoError(error: Error): Error {
  const code = (error as { code?: string }).code;
  if (code === "EADDRINUSE") return new Deno.errors.AddrInUse(error.message);
  if (code === "EADDRNOTAVAIL") return new Deno.errors.AddrNotAvailable(error.message);
  if (code === "EACCES") return new Deno.errors.PermissionDenied(error.message);
  return error;
}

/**
 * A client's TLS stream; remembers why it failed, since a master refusing
 * the client's certificate says so only after the handshake, on the first
 * read (TLS 1.3).
 */
export interface DialedTlsStream extends ByteStream {
  /** The first read or write error, as a {@link TlsHandshakeError} or {@link ConnectionLostError}. */
  readonly failure: TaskqError | undefined;
}

/** Wraps a client's stream to remember its first failure. */
class Dialed implements DialedTlsStream {
  failure: TaskqError | undefined;
  readonly #inner: ByteStream;
  readonly #where: string;
  constructor(inner: ByteStream, where: string) {
    this.#inner = inner;
    this.#where = where;
  }
  get remoteAddr(): Deno.Addr {
    return this.#inner.remoteAddr;
  }
  async read(buffer: Uint8Array): Promise<number | null> {
    try {
      return await this.#inner.read(buffer);
    } catch (error) {
      this.failure ??= tlsFailure(this.#where, error as Error, true);
      throw error;
    }
  }
  async write(data: Uint8Array): Promise<number> {
    try {
      return await this.#inner.write(data);
    } catch (error) {
      this.failure ??= tlsFailure(this.#where, error as Error, true);
      throw error;
    }
  }
  close(): void {
    this.#inner.close();
  }
}

/**
 * Connects to `address` over TLS and completes the TLS handshake; the
 * master's certificate must chain to {@link TlsClientOptions.ca} (or the
 * system's roots) and name {@link TlsClientOptions.serverName} (or the host).
 * @throws {ConfigError} when a certificate or key given is not PEM, or only
 *   one of certificate and key is given.
 * @throws {TlsHandshakeError} when the master's certificate is not trusted,
 *   or the master does not speak TLS.
 * @throws {ConnectionLostError} when the master cannot be reached.
 */
export async function dialTls(
  address: { hostname: string; port: number },
  options: TlsClientOptions = {},
): Promise<DialedTlsStream> {
  checkTlsClientOptions(options);
  const where = address.hostname.includes(":")
    ? `[${address.hostname}]:${address.port}`
    : `${address.hostname}:${address.port}`;
  return new Dialed(await dialNodeTls(address, options, where), where);
}

/**
 * Checks a client's TLS settings without connecting.
 * @throws {ConfigError} when a certificate or key given is not PEM, or only
 *   one of certificate and key is given.
 */
export function checkTlsClientOptions(options: TlsClientOptions): void {
  if (options.ca !== undefined) checkPem(options.ca, "certificate", "the TLS CA");
  if ((options.cert === undefined) !== (options.key === undefined)) {
    throw new ConfigError(
      "a TLS client certificate needs its key, and a key its certificate " +
        "(give both --tls-cert and --tls-key)",
    );
  }
  if (options.cert !== undefined) {
    checkPem(options.cert, "certificate", "the TLS client certificate");
  }
  if (options.key !== undefined) checkPem(options.key, "private key", "the TLS client key");
}

/** Dials with `node:tls` and completes the TLS handshake. */
function dialNodeTls(
  address: { hostname: string; port: number },
  options: TlsClientOptions,
  where: string,
): Promise<ByteStream> {
  return new Promise((resolve, reject) => {
    let socket: tls.TLSSocket;
    try {
      socket = tls.connect({
        host: address.hostname,
        port: address.port,
        // SNI and the name checked: the server name, else the host (an IP address is checked as one).
        servername: options.serverName ??
          (isIP(address.hostname) === 0 ? address.hostname : undefined),
        ca: options.ca,
        cert: options.cert,
        key: options.key,
        minVersion: MIN_TLS_VERSION,
        rejectUnauthorized: true,
      });
    } catch (cause) {
      reject(
        new ConfigError(`cannot use the TLS client settings: ${(cause as Error).message}`, {
          cause,
        }),
      );
      return;
    }
    let secured = false;
    socket.once("secureConnect", () => {
      secured = true;
      resolve(new TlsStream(socket));
    });
    socket.once("error", (error: Error) => {
      if (secured) return;
      socket.destroy();
      reject(tlsFailure(where, error, false));
    });
    socket.once("close", () => {
      if (!secured) reject(tlsFailure(where, new Error("unexpected end of file"), false));
    });
  });
}

/**
 * The error for a failed TLS connection, with what to do about it.
 * `established`: the handshake had completed (a master refusing a client
 * certificate says so only then, under TLS 1.3).
 */
function tlsFailure(where: string, error: Error, established: boolean): TaskqError {
  if (error instanceof TaskqError) return error;
  const code = (error as { code?: string }).code ?? "";
  const text = `${code} ${error.name} ${error.message}`;
  if (
    /ConnectionRefused|ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|EAI_AGAIN|TimedOut|failed to lookup|Name or service/i
      .test(text)
  ) {
    return new ConnectionLostError(`cannot reach master ${where}: ${error.message}`, {
      cause: error,
    });
  }
  if (/CertificateRequired|certificate required|no certificates/i.test(text)) {
    return new TlsHandshakeError(
      `master ${where} requires a client certificate: pass --tls-cert and --tls-key ` +
        `(a certificate issued by the CA the master trusts)`,
      { cause: error },
    );
  }
  if (/UnknownCA|unknown ca|BadCertificate|bad certificate|DecryptError/i.test(text)) {
    return new TlsHandshakeError(
      `master ${where} refused this client's certificate (${error.message}): use one ` +
        `issued by the CA the master trusts (its --tls-client-ca)`,
      { cause: error },
    );
  }
  if (
    /invalid peer certificate|UnknownIssuer|NotValidForName|self.signed|unable to (get|verify)|CERT_|altname|Hostname/i
      .test(text)
  ) {
    return new TlsHandshakeError(
      `the certificate of master ${where} is not trusted (${error.message}): pass the CA ` +
        `that issued it with --tls-ca, and connect by a name or address the certificate lists`,
      { cause: error },
    );
  }
  if (established) {
    return new TlsHandshakeError(
      `master ${where} closed the TLS connection before the taskq handshake ` +
        `(${error.message}): it may require a client certificate from the CA it trusts ` +
        `(pass --tls-cert and --tls-key), or have refused this one`,
      { cause: error },
    );
  }
  return new TlsHandshakeError(
    `TLS handshake with master ${where} failed (${error.message}): does it serve TLS ` +
      `(taskq master --tls-cert)? Without --tls-ca and --tls-cert, connect in plain TCP`,
    { cause: error },
  );
}
