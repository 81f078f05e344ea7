/**
 * Python's connection handshake (`multiprocessing.connection`): mutual
 * HMAC challenge–response on every connection, in both of the styles Python
 * uses, decided by length and never by the first byte.
 *
 * - Legacy (Python ≤ 3.11): the challenge body is 20 random bytes; the answer
 *   is the raw 16-byte HMAC-MD5 of the body.
 * - Modern (Python ≥ 3.12): the body is `{sha256}` and 40 random bytes; the
 *   answer is `{sha256}` followed by the HMAC-SHA256 of the whole body (the
 *   `{sha256}` text included). Other digest names are allowed in answers.
 *
 * Whoever accepts the connection challenges first, then answers the other
 * side's challenge; each side ends its turn with `#WELCOME#` or `#FAILURE#`.
 * Answers of 16 bytes are checked as raw HMAC-MD5 (a Python 3.11 peer answers
 * a modern challenge that way, and Python 3.12+ accepts it). HMAC-MD5 comes
 * from `node:crypto`, since WebCrypto has no MD5. MACs are compared in
 * constant time.
 *
 * @module
 */

import { createHmac, timingSafeEqual } from "node:crypto";
import type { PythonConnection } from "./connection.ts";
import { AuthenticationError } from "../../errors.ts";

/** Prefix of a challenge message. */
export const CHALLENGE_PREFIX = "#CHALLENGE#";

/** The verifier's reply to a good answer. */
export const WELCOME = "#WELCOME#";

/** The verifier's reply to a wrong answer. */
export const FAILURE = "#FAILURE#";

/** Random bytes in a legacy challenge body; a body of exactly this length is legacy. */
export const LEGACY_CHALLENGE_BYTES = 20;

/** Random bytes after the `{sha256}` of a modern challenge body. */
export const MODERN_CHALLENGE_RANDOM_BYTES = 40;

/** Answer lengths that are read as a raw HMAC-MD5 (Python lists both). */
const LEGACY_ANSWER_LENGTHS: ReadonlySet<number> = new Set([16, 20]);

/** Longest digest name Python allows (`sha3_384`). */
const MAX_DIGEST_NAME_BYTES = 8;

/** Python's digest names, and node's names for them. */
const DIGESTS: ReadonlyMap<string, string> = new Map([
  ["md5", "md5"],
  ["sha256", "sha256"],
  ["sha384", "sha384"],
  ["sha3_256", "sha3-256"],
  ["sha3_384", "sha3-384"],
]);

/** Which challenge a side sends. */
export type ChallengeStyle = "legacy" | "modern";

/** The style of challenge taskq sends unless told otherwise. */
export const DEFAULT_CHALLENGE_STYLE: ChallengeStyle = "modern";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const CHALLENGE_BYTES = encoder.encode(CHALLENGE_PREFIX);
const WELCOME_BYTES = encoder.encode(WELCOME);
const FAILURE_BYTES = encoder.encode(FAILURE);

function hmac(digest: string, key: Uint8Array, message: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac(DIGESTS.get(digest) as string, key).update(message).digest());
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  if (bytes.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && startsWith(a, b);
}

/**
 * Splits a `{name}payload` message into its digest name and payload; a
 * message of a legacy length has no name (MD5).
 * @throws {AuthenticationError} when there is neither a legacy length nor a known `{name}`.
 */
function digestOf(message: Uint8Array): { digest: string; payload: Uint8Array } {
  if (LEGACY_ANSWER_LENGTHS.has(message.length)) return { digest: "md5", payload: message };
  if (message[0] === 0x7b /* { */) {
    const end = message.subarray(0, MAX_DIGEST_NAME_BYTES + 2).indexOf(0x7d, /* } */ 1);
    if (end > 0) {
      const name = decoder.decode(message.subarray(1, end));
      if (DIGESTS.has(name)) return { digest: name, payload: message.subarray(end + 1) };
    }
  }
  throw new AuthenticationError(
    "the peer's handshake message has no known digest: it is not Python's multiprocessing " +
      "protocol, or uses a digest taskq does not know",
  );
}

/** A fresh challenge message (prefix and body) of the given style. */
export function newChallenge(style: ChallengeStyle = DEFAULT_CHALLENGE_STYLE): Uint8Array {
  if (style === "legacy") {
    return concat(CHALLENGE_BYTES, crypto.getRandomValues(new Uint8Array(LEGACY_CHALLENGE_BYTES)));
  }
  return concat(
    CHALLENGE_BYTES,
    encoder.encode("{sha256}"),
    crypto.getRandomValues(new Uint8Array(MODERN_CHALLENGE_RANDOM_BYTES)),
  );
}

/**
 * The answer to a challenge message: raw HMAC-MD5 of a 20-byte body,
 * otherwise `{name}` and the HMAC-name of the whole body.
 * @throws {AuthenticationError} when the message is not a challenge Python would send.
 */
export function answerChallenge(key: Uint8Array, message: Uint8Array): Uint8Array {
  if (!startsWith(message, CHALLENGE_BYTES)) {
    throw new AuthenticationError(
      "the peer did not send a challenge: it is not a Python multiprocessing manager",
    );
  }
  const body = message.subarray(CHALLENGE_BYTES.length);
  if (body.length < LEGACY_CHALLENGE_BYTES) {
    throw new AuthenticationError(`the peer's challenge is too short (${body.length} bytes)`);
  }
  if (body.length === LEGACY_CHALLENGE_BYTES) return hmac("md5", key, body);
  const { digest } = digestOf(body);
  return concat(encoder.encode(`{${digest}}`), hmac(digest, key, body));
}

/**
 * Whether `answer` proves the key for the challenge `message` we sent:
 * 16 bytes are a raw HMAC-MD5 of the body, anything else `{name}` and a MAC.
 */
export function answerMatches(key: Uint8Array, message: Uint8Array, answer: Uint8Array): boolean {
  const body = message.subarray(CHALLENGE_BYTES.length);
  let parsed: { digest: string; payload: Uint8Array };
  try {
    parsed = digestOf(answer);
  } catch {
    return false;
  }
  const expected = hmac(parsed.digest, key, body);
  return expected.length === parsed.payload.length && timingSafeEqual(expected, parsed.payload);
}

/**
 * Challenges the peer and checks its answer; sends `#WELCOME#` or `#FAILURE#`.
 * @throws {AuthenticationError} when the answer is wrong.
 */
export async function deliverChallenge(
  conn: PythonConnection,
  key: Uint8Array,
  style: ChallengeStyle = DEFAULT_CHALLENGE_STYLE,
): Promise<void> {
  const message = newChallenge(style);
  await conn.send(message);
  const answer = await conn.recv();
  if (!answerMatches(key, message, answer)) {
    await conn.send(FAILURE_BYTES).catch(() => {});
    throw new AuthenticationError(
      `${conn.peer} answered the challenge with a wrong digest: its key differs from ours ` +
        `(check TASKQ_AUTHKEY or --authkey-file against the authkey it uses)`,
    );
  }
  await conn.send(WELCOME_BYTES);
}

/**
 * Answers the peer's challenge and waits for its verdict.
 * @throws {AuthenticationError} when the challenge is malformed or the peer rejects the answer.
 */
export async function acceptChallenge(conn: PythonConnection, key: Uint8Array): Promise<void> {
  await conn.send(answerChallenge(key, await conn.recv()));
  const verdict = await conn.recv();
  if (!sameBytes(verdict, WELCOME_BYTES)) {
    throw new AuthenticationError(
      `${conn.peer} rejected our key: check TASKQ_AUTHKEY or --authkey-file against the ` +
        `authkey it uses`,
    );
  }
}

/**
 * The accepting side's handshake: challenge the peer, then answer its challenge.
 * @throws {AuthenticationError} when either side's key is wrong.
 */
export async function serverHandshake(
  conn: PythonConnection,
  key: Uint8Array,
  style: ChallengeStyle = DEFAULT_CHALLENGE_STYLE,
): Promise<void> {
  await deliverChallenge(conn, key, style);
  await acceptChallenge(conn, key);
}

/**
 * The connecting side's handshake: answer the peer's challenge, then challenge it.
 * @throws {AuthenticationError} when either side's key is wrong.
 */
export async function clientHandshake(
  conn: PythonConnection,
  key: Uint8Array,
  style: ChallengeStyle = DEFAULT_CHALLENGE_STYLE,
): Promise<void> {
  await acceptChallenge(conn, key);
  await deliverChallenge(conn, key, style);
}
