/**
 * Who may talk to the HTTP side, checked before any route runs:
 *
 * - **Host**: on a loopback listener, the `Host` header must name a loopback
 *   host (`localhost`, `127.x.x.x`, `[::1]`; any port, so SSH tunnels work),
 *   so a page whose domain is rebound to 127.0.0.1 (DNS rebinding) is refused.
 * - **Cross-site**: a request that a browser marks as coming from another
 *   origin (`Sec-Fetch-Site` other than `same-origin`/`none`, or an `Origin`
 *   that is not this host) is refused, whatever else it carries.
 * - **Token**: everything but the page's static files needs
 *   `Authorization: Bearer TOKEN` (see token.ts). A browser cannot attach that
 *   header to a cross-origin form post, and scripts of other origins cannot
 *   send it without a CORS preflight, which is never granted.
 * - **Method**: actions are POSTs with a JSON body (`Content-Type:
 *   application/json`, which no HTML form can send).
 *
 * @module
 */

import { bearerMatches } from "./token.ts";
import { type Address, isLoopback } from "../config.ts";

/** HTTP status of a request refused for its origin or host. */
export const STATUS_FORBIDDEN = 403;

/** HTTP status of a request without a valid token. */
export const STATUS_UNAUTHORIZED = 401;

/** HTTP status of an action whose body is not JSON. */
export const STATUS_UNSUPPORTED_MEDIA = 415;

/** Values of `Sec-Fetch-Site` that are not cross-site. */
const SAME_SITE_FETCH: ReadonlySet<string> = new Set(["same-origin", "none"]);

/** Why a request was refused. */
export interface Refusal {
  /** HTTP status to answer with. */
  status: number;
  /** Human-readable reason, sent as the body. */
  reason: string;
}

/** What the guard checks requests against. */
export interface GuardOptions {
  /** The token every non-static request must carry. */
  token: string;
  /** The listener's address: decides which `Host` headers are accepted. */
  address: Address;
  /** Whether the page is served over TLS (its origin is then `https://…`). */
  secure?: boolean;
}

/** The host name of a `Host` header value, without its port or IPv6 brackets. */
export function hostOf(header: string): string {
  if (header.startsWith("[")) return header.slice(1, header.indexOf("]"));
  const colon = header.lastIndexOf(":");
  return colon < 0 ? header : header.slice(0, colon);
}

/** Checks requests against the rules of this module. */
export class Guard {
  readonly #token: string;
  /** Whether only loopback names are accepted in `Host` (a loopback listener). */
  readonly #loopbackOnly: boolean;

  /** The page's scheme, which a same-origin request's `Origin` names. */
  readonly #scheme: "http" | "https";
  /** Creates a guard for a listener at `options.address` with `options.token`. */
  constructor(options: GuardOptions) {
    this.#token = options.token;
    this.#loopbackOnly = isLoopback(options.address.hostname);
    this.#scheme = options.secure ? "https" : "http";
  }

  /** Checks the host and cross-site rules, which apply to every request. */
  checkOrigin(request: Request): Refusal | undefined {
    const host = request.headers.get("host")?.toLowerCase();
    if (host === undefined) return { status: STATUS_FORBIDDEN, reason: "missing Host header" };
    if (this.#loopbackOnly && !isLoopback(hostOf(host))) {
      return {
        status: STATUS_FORBIDDEN,
        reason: `unknown Host "${host}": open the dashboard by the master's own address`,
      };
    }
    const site = request.headers.get("sec-fetch-site");
    if (site !== null && !SAME_SITE_FETCH.has(site)) {
      return { status: STATUS_FORBIDDEN, reason: `cross-site request refused (${site})` };
    }
    const origin = request.headers.get("origin");
    if (origin !== null && origin.toLowerCase() !== `${this.#scheme}://${host}`) {
      return { status: STATUS_FORBIDDEN, reason: "cross-origin request refused" };
    }
    return undefined;
  }

  /** Checks that the request carries the token. */
  checkToken(request: Request): Refusal | undefined {
    if (bearerMatches(request.headers.get("authorization"), this.#token)) return undefined;
    return {
      status: STATUS_UNAUTHORIZED,
      reason: "missing or wrong token: send Authorization: Bearer TOKEN (taskq http-token)",
    };
  }

  /** Checks that an action carries a JSON body (so it cannot come from an HTML form). */
  checkAction(request: Request): Refusal | undefined {
    const type = request.headers.get("content-type") ?? "";
    if (!/^application\/json\s*(;|$)/i.test(type)) {
      return { status: STATUS_UNSUPPORTED_MEDIA, reason: "actions take a JSON body" };
    }
    return undefined;
  }
}
