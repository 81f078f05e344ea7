/**
 * Opening one authenticated connection to a master: TCP connect, then the
 * client's side of the mutual HMAC handshake, within a deadline.
 *
 * The client sends `hello`, answers the master's `challenge` with its proof,
 * and accepts the `welcome` only if it carries the master's valid proof of the
 * key, so a client never talks to an impostor.
 *
 * @module
 */

import { FramedConnection } from "../wire/connection.ts";
import { DEFAULT_MAX_FRAME_BYTES } from "../wire/frame.ts";
import {
  type ErrorMessage,
  parseServerMessage,
  type ServerMessage,
  type WelcomeMessage,
} from "../wire/messages.ts";
import {
  clientProof,
  newNonce,
  proofMatches,
  PROTOCOL_VERSION,
  serverProof,
} from "../wire/auth.ts";
import { type Address, formatAddress } from "../config.ts";
import {
  AuthenticationError,
  ConnectionLostError,
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
}

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
}

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
  if (msg.code === "unsupported_version") return new AuthenticationError(msg.message);
  return new RemoteError(msg.code, msg.message);
}

/**
 * Connects and authenticates.
 * @throws {ConnectionLostError} when the master cannot be reached in time.
 * @throws {AuthenticationError} when the key is rejected or the master cannot
 *   prove it holds the key.
 */
export async function openSession(params: SessionParams): Promise<Session> {
  const { address, key, timeoutMs } = params;
  const where = formatAddress(address);
  const deadline = Date.now() + timeoutMs;

  const connecting = Deno.connect({ hostname: address.hostname, port: address.port });
  let tcp: Deno.TcpConn;
  try {
    tcp = await withTimeout(
      connecting,
      timeoutMs,
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
  tcp.setNoDelay(true);
  const conn = new FramedConnection(tcp, {
    maxFrameBytes: params.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
    // A client always reads its replies, however much it still has to send: if
    // both ends paused reading while their own writes were backed up, neither
    // would ever drain. (The master pauses; the client keeps reading.)
    highWaterBytes: Infinity,
  });

  const clientNonce = newNonce();
  const handshake = Promise.withResolvers<WelcomeMessage>();
  let serverNonce: Uint8Array | undefined;
  const route = {
    handler: (msg: ServerMessage): void => {
      if (msg.op === "error") {
        handshake.reject(handshakeError(msg, where));
      } else if (msg.op === "challenge" && serverNonce === undefined) {
        if (msg.version !== PROTOCOL_VERSION) {
          handshake.reject(
            new AuthenticationError(
              `master ${where} speaks protocol version ${msg.version}, ` +
                `this client ${PROTOCOL_VERSION}: use the same taskq release on both ends`,
            ),
          );
          return;
        }
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
        new ConnectionLostError(`master ${where} closed the connection during the handshake`),
      ),
    (error) => handshake.reject(error),
  );
  conn.send({ op: "hello", version: PROTOCOL_VERSION, nonce: clientNonce, name: params.name });
  try {
    const welcome = await withTimeout(
      handshake.promise,
      Math.max(0, deadline - Date.now()),
      () =>
        new ConnectionLostError(
          `master ${where} did not complete the handshake in ${timeoutMs} ms`,
        ),
    );
    return { conn, welcome, pump, route };
  } catch (error) {
    conn.close();
    await pump.catch(() => {});
    throw error;
  }
}
