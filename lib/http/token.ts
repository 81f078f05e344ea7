/**
 * The HTTP side's credential: a token derived from the master's key, so that
 * whoever holds the key can compute it (`taskq http-token`) and the key itself
 * never travels over HTTP. `token = hex(HMAC-SHA256(key, "taskq http token"))`.
 * Browsers and scrapers send it as `Authorization: Bearer TOKEN`; it is
 * compared in constant time.
 *
 * @module
 */

import { createHmac, timingSafeEqual } from "node:crypto";

/** Domain-separation label of the token: no handshake proof can equal a token. */
export const HTTP_TOKEN_LABEL = "taskq http token";

/** The authorization scheme that carries the token. */
export const BEARER_PREFIX = "Bearer ";

/**
 * The HTTP token of `key` (64 hex digits). A keyless master's token is that of the empty key.
 *
 * @example
 * ```ts
 * import { httpToken } from "./token.ts";
 * const token = httpToken(new TextEncoder().encode("abc"));
 * console.log(token.length); // 64
 * const headers = { authorization: `Bearer ${token}` }; // what the HTTP side expects
 * console.log(headers.authorization.startsWith("Bearer ")); // true
 * ```
 */
export function httpToken(key: Uint8Array): string {
  return createHmac("sha256", key).update(HTTP_TOKEN_LABEL).digest("hex");
}

/** Whether an `Authorization` header value carries `token`; constant time in the token. */
export function bearerMatches(header: string | null, token: string): boolean {
  if (header === null || !header.startsWith(BEARER_PREFIX)) return false;
  const given = new TextEncoder().encode(header.slice(BEARER_PREFIX.length).trim());
  const expected = new TextEncoder().encode(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}
