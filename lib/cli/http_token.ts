/**
 * `taskq http-token`: prints the token the master's HTTP side wants, derived
 * from the key (see lib/http/token.ts), so the key itself never goes over HTTP.
 *
 * @module
 */

import { authKey, type FlagSpec, parseFlags, stringFlag } from "./args.ts";
import { httpToken } from "../http/token.ts";

/** One-line summary shown by `taskq --help`. */
export const HTTP_TOKEN_SUMMARY = "print the token of the master's HTTP dashboard and API";

/** Help text of `taskq http-token`. */
export const HTTP_TOKEN_HELP = `Usage: taskq http-token [--authkey-file FILE] [--url URL]

Prints the token that the HTTP side of a master (taskq master --http) asks
for: HMAC-SHA256 of the key and "taskq http token", in hex. Anyone with the
key can compute it; it does not reveal the key. A master without a key has
the token of the empty key.

Send it as "Authorization: Bearer TOKEN" (Prometheus: bearer_token_file), or
open the dashboard at URL#token=TOKEN (the part after # stays in the browser).

Options:
  --authkey-file FILE       file holding the shared key (else TASKQ_AUTHKEY)
  --url URL                 print URL#token=TOKEN, the dashboard's address
                            with the token, instead of the token alone
  -h, --help                show this help
`;

const FLAGS: FlagSpec = { "authkey-file": { type: "string" }, url: { type: "string" } };

/** Runs `taskq http-token` with `args`; resolves with the exit code. */
export function runHttpToken(args: string[]): Promise<number> {
  const parsed = parseFlags("http-token", args, FLAGS);
  if (parsed.values.help) {
    console.log(HTTP_TOKEN_HELP);
    return Promise.resolve(0);
  }
  const token = httpToken(authKey(parsed) ?? new Uint8Array(0));
  const url = stringFlag(parsed, "url");
  console.log(url === undefined ? token : `${url.replace(/#.*$/, "")}#token=${token}`);
  return Promise.resolve(0);
}
