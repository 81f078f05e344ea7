/**
 * Opening one authenticated connection to a master: TCP connect (and the TLS
 * handshake, when TLS settings are given), then the client's side of the
 * mutual HMAC handshake, within a deadline.
 *
 * The client sends `hello`, answers the master's `challenge` with its proof,
 * and accepts the `welcome` only if it carries the master's valid proof of the
 * key, so a client never talks to an impostor.
 *
 * Versions: the `hello` offers {@link PROTOCOL_VERSION}, and the `challenge`
 * names the version the connection speaks (the lower of the two ends'). A
 * master older than version 2 refuses any other version than its own with
 * `unsupported_version`: the client then connects once more offering
 * {@link MIN_PROTOCOL_VERSION}.
 *
 * @module
 */

import { FramedConnection } from "../wire/connection.ts";
import type { ByteStream } from "../wire/stream.ts";
import {
  type DialedTlsStream,
  dialTls,
  type TlsClientOptions,
  TlsHandshakeError,
} from "../wire/tls.ts";
import { DEFAULT_MAX_FRAME_BYTES } from "../wire/frame.ts";
import {
  type ErrorMessage,
  parseServerMessage,
  type ServerMessage,
  type WelcomeMessage,
} from "../wire/messages.ts";
import {
  clientProof,
  MIN_PROTOCOL_VERSION,
  newNonce,
  proofMatches,
  PROTOCOL_VERSION,
  serverProof,
} from "../wire/auth.ts";
import { type Address, formatAddress } from "../config.ts";
import { isHttpResponseStart, NOT_A_MASTER } from "../wire/wrong_port.ts";
import {
  AuthenticationError,
  ConnectionLostError,
  FrameTooLargeError,
  ProtocolError,
  RemoteError,
  TaskqError,
} from "../errors.ts";

/** What opening a session needs. */
export interface SessionParams {
  /** The master. */
  address: Address;
  /** The shared key. */
  key: Uint8Array;
  /** Name the master shows for this client. */
  name: string;
  /** Largest frame accepted from the master. */
  maxFrameBytes?: number;
  /** Time allowed to connect and complete the handshake. */
  timeoutMs: number;
  /** Connect over TLS with these settings (PEM text); plain TCP when absent. */
  tls?: TlsClientOptions;
}

/** First byte of a TLS record carrying an alert, and of one carrying a handshake message. */
const TLS_ALERT_RECORD = 0x15;
const TLS_HANDSHAKE_RECORD = 0x16;

/** Bits to shift a 4-byte frame length right by to see its first byte. */
const FIRST_BYTE_SHIFT = 24;

/**
 * Explains a handshake that failed on the wire in terms of TLS, when TLS is
 * the likely cause: a plain client whose master answered with a TLS record
 * (read as an absurd frame length), or a TLS client whose master refused its
 * certificate (said only after the TLS handshake).
 */
function tlsExplanation(error: unknown, stream: ByteStream, where: string): Error | undefined {
  const failure = (stream as Partial<DialedTlsStream>).failure;
  if (failure !== undefined) return failure;
  if (error instanceof FrameTooLargeError) {
    if (isHttpResponseStart(error.length)) {
      return new NotATaskqMasterError(where, undefined, { cause: error });
    }
    const first = error.length >>> FIRST_BYTE_SHIFT;
    if (first === TLS_ALERT_RECORD || first === TLS_HANDSHAKE_RECORD) {
      return new TlsHandshakeError(
        `master ${where} speaks TLS: pass --tls-ca FILE (the CA of its certificate; ` +
          `ConnectOptions.tls), and --tls-cert/--tls-key if it requires client certificates`,
        { cause: error },
      );
    }
  }
  return undefined;
}

/**
 * The address a client was given is not a taskq master's native port: it
 * answered like an HTTP server (a master's `--http` port, or something else).
 * Not retried: the address needs fixing.
 *
 * @example
 * ```ts
 * import { NotATaskqMasterError } from "./handshake.ts";
 * const error = new NotATaskqMasterError("127.0.0.1:8080", "127.0.0.1:7070");
 * console.log(error.message.startsWith("127.0.0.1:8080 is not a taskq master")); // true
 * ```
 */
export class NotATaskqMasterError extends AuthenticationError {
  /** Explains that `where` is no master, naming the native port when it is known. */
  constructor(where: string, nativeAddress?: string, options?: ErrorOptions) {
    super(
      `${where} is not a taskq master (it answered like an HTTP server` +
        (nativeAddress === undefined
          ? `; a master's native port is the one it prints as "taskq master listening on ` +
            `HOST:PORT", not its --http port)`
          : `: it is a master's --http port; the native port is ${nativeAddress})`),
      options,
    );
  }
}

/** Where a master's HTTP port says its native port is, in the message of its refusal. */
const NATIVE_PORT_NAMED = /the native port is (\S+)$/;

/** An authenticated connection, ready for requests. */
export interface Session {
  /** The framed connection. */
  conn: FramedConnection;
  /** The master's welcome (its limits and default lease). */
  welcome: WelcomeMessage;
  /** Settles when the connection ends; rejects on a protocol error. */
  pump: Promise<void>;
  /** Where validated messages go; replace `handler` to take them over. */
  route: { handler: (msg: ServerMessage) => void };
  /**
   * The protocol version the connection speaks, as the master's challenge
   * named it: from {@link MIN_PROTOCOL_VERSION} to {@link PROTOCOL_VERSION}.
   */
  version: number;
}

/**
 * A master refused the version the hello offered (`unsupported_version`): a
 * master of an older release, which speaks only its own version.
 */
class VersionRefusedError extends AuthenticationError {}

function withTimeout<T>(promise: Promise<T>, ms: number, what: () => Error): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => timer = setTimeout(() => reject(what()), ms)),
  ]).finally(() => clearTimeout(timer));
}

function handshakeError(msg: ErrorMessage, where: string): Error {
  if (msg.code === "auth_failed") {
    return new AuthenticationError(
      `master ${where} rejected the key (${msg.message}); check TASKQ_AUTHKEY or --authkey-file`,
    );
  }
  if (msg.code === "bad_request" && msg.message.startsWith(NOT_A_MASTER)) {
    return new NotATaskqMasterError(where, NATIVE_PORT_NAMED.exec(msg.message)?.[1]);
  }
  if (msg.code === "unsupported_version") {
    return new VersionRefusedError(`master ${where} refused the protocol version: ${msg.message}`);
  }
  return new RemoteError(msg.code, msg.message);
}

/**
 * The error for a master that closed the connection during the handshake;
 * before its challenge, over TLS, most likely because of the client's
 * certificate (a TLS 1.3 master refuses it only after the TLS handshake).
 */
function closedEarly(
  where: string,
  tls: TlsClientOptions | undefined,
  challenged: boolean,
): Error {
  const message = `master ${where} closed the connection during the handshake`;
  if (tls === undefined) {
    return new ConnectionLostError(
      `${message} (if it serves TLS, pass --tls-ca FILE: ConnectOptions.tls)`,
    );
  }
  if (challenged) return new ConnectionLostError(message);
  return new TlsHandshakeError(
    tls.cert === undefined
      ? `${message}: it may require a client certificate; pass --tls-cert and --tls-key ` +
        `(a certificate issued by the CA it trusts)`
      : `${message}: it may have refused this client's certificate; use one issued by the ` +
        `CA it trusts (its --tls-client-ca)`,
  );
}

/**
 * Connects and authenticates, by `deadline` (ms since the epoch; `timeoutMs`
 * from now by default: {@link SessionParams.timeoutMs} still names the whole
 * allowance in messages when a caller spreads it over several attempts).
 * Offers {@link PROTOCOL_VERSION}; a master that refuses it (an older
 * release) is connected to once more, offering {@link MIN_PROTOCOL_VERSION}.
 * @throws {ConnectionLostError} when the master cannot be reached in time.
 * @throws {AuthenticationError} when the key is rejected, the master cannot
 *   prove it holds the key, or it speaks no version this client speaks.
 * @throws {TlsHandshakeError} when TLS fails: the master's certificate is not
 *   trusted, it refuses this client's, or only one side speaks TLS.
 */
export async function openSession(
  params: SessionParams,
  deadline: number = Date.now() + params.timeoutMs,
): Promise<Session> {
  try {
    return await openSessionOffering(params, deadline, PROTOCOL_VERSION);
  } catch (error) {
    if (!(error instanceof VersionRefusedError)) throw error;
  }
  try {
    return await openSessionOffering(params, deadline, MIN_PROTOCOL_VERSION);
  } catch (error) {
    if (!(error instanceof VersionRefusedError)) throw error;
    throw new AuthenticationError(
      `${error.message} (this client speaks versions ${MIN_PROTOCOL_VERSION} to ` +
        `${PROTOCOL_VERSION}; use compatible taskq releases on both ends)`,
    );
  }
}

/** {@link openSession} with a hello that offers protocol version `offer`. */
async function openSessionOffering(
  params: SessionParams,
  deadline: number,
  offer: number,
): Promise<Session> {
  const { address, key, timeoutMs } = params;
  const where = formatAddress(address);

  const connecting: Promise<ByteStream> = params.tls === undefined
    ? Deno.connect({ hostname: address.hostname, port: address.port }).then((tcp) => {
      tcp.setNoDelay(true);
      return tcp;
    })
    : dialTls(address, params.tls);
  let stream: ByteStream;
  try {
    stream = await withTimeout(
      connecting,
      Math.max(0, deadline - Date.now()),
      () => new ConnectionLostError(`cannot reach master ${where}: no answer in ${timeoutMs} ms`),
    );
  } catch (error) {
    connecting.then((c) => c.close(), () => {});
    if (error instanceof TaskqError) throw error;
    throw new ConnectionLostError(
      `cannot reach master ${where}: ${(error as Error).message}`,
      { cause: error },
    );
  }
  const conn = new FramedConnection(stream, {
    maxFrameBytes: params.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
    // A client always reads its replies, however much it still has to send: if
    // both ends paused reading while their own writes were backed up, neither
    // would ever drain. (The master pauses; the client keeps reading.)
    highWaterBytes: Infinity,
  });

  const clientNonce = newNonce();
  const handshake = Promise.withResolvers<WelcomeMessage>();
  let serverNonce: Uint8Array | undefined;
  let version = offer;
  const route = {
    handler: (msg: ServerMessage): void => {
      if (msg.op === "error") {
        handshake.reject(handshakeError(msg, where));
      } else if (msg.op === "challenge" && serverNonce === undefined) {
        if (msg.version < MIN_PROTOCOL_VERSION || msg.version > offer) {
          // A master answers with the version offered or an older one it speaks.
          handshake.reject(
            new AuthenticationError(
              `master ${where} answered with protocol version ${msg.version} to an offer of ` +
                `${offer}; this client speaks versions ${MIN_PROTOCOL_VERSION} to ` +
                `${PROTOCOL_VERSION}: use compatible taskq releases on both ends`,
            ),
          );
          return;
        }
        version = msg.version;
        serverNonce = msg.nonce;
        conn.send({ op: "auth", proof: clientProof(key, clientNonce, serverNonce) });
      } else if (msg.op === "welcome" && serverNonce !== undefined) {
        if (!proofMatches(msg.proof, serverProof(key, clientNonce, serverNonce))) {
          handshake.reject(
            new AuthenticationError(
              `master ${where} could not prove it holds the key: refusing to use it ` +
                `(is something else listening on that port?)`,
            ),
          );
          return;
        }
        // The master proved the key: what it sends (items packed many to a
        // reply) is decoded without the bound a master holds its peers to.
        conn.trust = "trusted";
        handshake.resolve(msg);
      } else {
        handshake.reject(new ProtocolError(`unexpected "${msg.op}" during the handshake`));
      }
    },
  };
  const pump = conn.pump((raw) => route.handler(parseServerMessage(raw)));
  pump.then(
    () =>
      handshake.reject(
        tlsExplanation(undefined, stream, where) ??
          closedEarly(where, params.tls, serverNonce !== undefined),
      ),
    (error) => handshake.reject(tlsExplanation(error, stream, where) ?? error),
  );
  conn.send({ op: "hello", version: offer, nonce: clientNonce, name: params.name });
  try {
    const welcome = await withTimeout(
      handshake.promise,
      Math.max(0, deadline - Date.now()),
      () =>
        new ConnectionLostError(
          `master ${where} did not complete the handshake in ${timeoutMs} ms`,
        ),
    );
    return { conn, welcome, pump, route, version };
  } catch (error) {
    conn.close();
    await pump.catch(() => {});
    throw error;
  }
}
