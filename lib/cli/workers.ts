/**
 * `taskq workers`: the sessions connected to the master (workers and other
 * clients), each with the items it holds and for how long, and the last
 * quiet or stop it was sent; `taskq quiet` and `taskq stop` take the ids it
 * shows.
 *
 * @example
 * ```ts
 * import { WORKERS_HELP } from "./workers.ts";
 * console.log(WORKERS_HELP.startsWith("Usage: taskq workers")); // true
 * ```
 *
 * @module
 */

import {
  connectFromFlags,
  CONNECTION_FLAGS,
  CONNECTION_HELP,
  type FlagSpec,
  parseFlags,
} from "./args.ts";
import { ConfigError } from "../errors.ts";
import { defaultClientName, type SessionRecord } from "../client/client.ts";
import { printable } from "../util/printable.ts";
import { formatAge, jsonLine, relative } from "./listing.ts";

/** One-line summary shown by `taskq --help`. */
export const WORKERS_SUMMARY = "list connected workers and clients, with what each holds";

/** Help text of `taskq workers`. */
export const WORKERS_HELP = `Usage: taskq workers [--json] [options]

Lists the sessions connected to the master (workers, and other clients
such as a running taskq get), oldest first: the session id (what taskq
quiet and taskq stop take), the name the client gave (host:pid for taskq's
own), its address, how many items it holds, the gets it waits on, how long
it has been connected, when it was last heard from, and the last action
sent to it (quiet or stop). Under each session that holds items, one line
per item (at most 100, oldest lease first): its id and queue, how long it
has been held, and when its lease ends. This command's own connection is
not listed.

Options:
  --json                    print one JSON object per line per session: id,
                            name, address, connectedAt, lastSeenAt (ms since
                            the epoch), leased, waiting, holding [{id, queue,
                            leasedAt, leaseExpiresAt}], controlled (when sent)
${CONNECTION_HELP}
  -h, --help                show this help
`;

const FLAGS: FlagSpec = { json: { type: "boolean" }, ...CONNECTION_FLAGS };

/**
 * Sessions as `taskq workers` prints them: a table, each holder followed by
 * the items it holds.
 *
 * @example
 * ```ts
 * import { workersText } from "./workers.ts";
 * console.log(workersText([], 0)); // no session connected
 * ```
 */
export function workersText(sessions: readonly SessionRecord[], now: number): string {
  if (sessions.length === 0) return "no session connected";
  const header = ["SESSION", "NAME", "ADDRESS", "HOLDS", "WAITING", "CONNECTED", "SEEN", "SENT"];
  const widths = header.map((h) => h.length);
  const rows = sessions.map((s) => [
    printable(s.id),
    printable(s.name),
    printable(s.address),
    String(s.leased),
    String(s.waiting),
    formatAge(now - s.connectedAt),
    relative(s.lastSeenAt, now),
    s.controlled ?? "",
  ]);
  for (const row of rows) row.forEach((cell, i) => widths[i] = Math.max(widths[i], cell.length));
  const left = new Set([0, 1, 2, 6, 7]);
  const line = (cells: readonly string[]) =>
    cells.map((cell, j) => left.has(j) ? cell.padEnd(widths[j]) : cell.padStart(widths[j]))
      .join("  ").trimEnd();
  const lines = [line(header)];
  sessions.forEach((session, i) => {
    lines.push(line(rows[i]));
    for (const held of session.holding) {
      lines.push(
        `    item ${held.id} of ${printable(held.queue)}: held ${
          formatAge(now - held.leasedAt)
        }, ` +
          `lease ends ${relative(held.leaseExpiresAt, now)}`,
      );
    }
    const unlisted = session.leased - session.holding.length;
    if (unlisted > 0) lines.push(`    … and ${unlisted} more`);
  });
  return lines.join("\n");
}

/** Runs `taskq workers` with `args`; resolves with the exit code. */
export async function runWorkers(args: string[]): Promise<number> {
  const parsed = parseFlags("workers", args, FLAGS);
  if (parsed.values.help) {
    console.log(WORKERS_HELP);
    return 0;
  }
  if (parsed.positionals.length > 0) {
    throw new ConfigError(`taskq workers takes no arguments (see: taskq workers --help)`);
  }
  const name = `${defaultClientName()} taskq workers`;
  const client = await connectFromFlags(parsed, { reconnect: false, name });
  let sessions: SessionRecord[];
  try {
    sessions = (await client.sessions()).filter((s) => s.name !== name);
  } finally {
    await client.close();
  }
  sessions.sort((a, b) => a.connectedAt - b.connectedAt);
  if (parsed.values.json === true) {
    for (const session of sessions) console.log(jsonLine(session));
  } else {
    console.log(workersText(sessions, Date.now()));
  }
  return 0;
}
