/**
 * The cryptography of the handshake: mutual HMAC-SHA256 challenge–response.
 *
 * Each side sends a fresh random nonce. The client proves it holds the key with
 * `HMAC(key, CLIENT_LABEL ‖ clientNonce ‖ serverNonce)`; only then does the
 * master prove the same with `SERVER_LABEL`. The distinct labels keep one
 * side's proof from ever being replayed as the other's; the fresh nonces keep
 * any proof from being replayed on another connection. Proofs are compared in
 * constant time.
 *
 * @module
 */

import { createHmac, timingSafeEqual } from "node:crypto";

/**
 * Newest version of the taskq wire protocol this build speaks: a client
 * offers it in `hello`, and the master answers in `challenge` with the
 * version the connection then speaks (the lower of the two). Version 2
 * added priorities, groups, unique keys, cancellation, job lookup, limits
 * and progress; version 3 added listing items without taking them, bulk
 * dead-letter handling, purging, listing sessions and asking one to go quiet
 * or stop (docs/PROTOCOL.md §6.6).
 */
export const PROTOCOL_VERSION = 3;

/** Oldest version of the wire protocol this build still speaks. */
export const MIN_PROTOCOL_VERSION = 1;

/** Bytes in each side's random nonce. */
export const NONCE_BYTES = 32;

/** Bytes in an HMAC-SHA256 proof. */
export const PROOF_BYTES = 32;

/** Domain-separation label hashed into the client's proof. */
export const CLIENT_LABEL = "taskq/1 client";

/** Domain-separation label hashed into the master's proof. */
export const SERVER_LABEL = "taskq/1 server";

/** A fresh random nonce from the system's cryptographic generator. */
export function newNonce(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
}

function proof(
  label: string,
  key: Uint8Array,
  clientNonce: Uint8Array,
  serverNonce: Uint8Array,
): Uint8Array {
  const mac = createHmac("sha256", key);
  mac.update(label);
  mac.update(clientNonce);
  mac.update(serverNonce);
  return new Uint8Array(mac.digest());
}

/** The client's proof of holding `key` for this pair of nonces. */
export function clientProof(
  key: Uint8Array,
  clientNonce: Uint8Array,
  serverNonce: Uint8Array,
): Uint8Array {
  return proof(CLIENT_LABEL, key, clientNonce, serverNonce);
}

/** The master's proof of holding `key` for this pair of nonces. */
export function serverProof(
  key: Uint8Array,
  clientNonce: Uint8Array,
  serverNonce: Uint8Array,
): Uint8Array {
  return proof(SERVER_LABEL, key, clientNonce, serverNonce);
}

/** Compares a received proof with the expected one in constant time. */
export function proofMatches(received: Uint8Array, expected: Uint8Array): boolean {
  return received.length === expected.length && timingSafeEqual(received, expected);
}
