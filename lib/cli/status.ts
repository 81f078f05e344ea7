/**
 * `taskq status`: shows each queue's counts and the connected clients, once
 * or refreshed (`--watch`), as a table or JSON; from the master's queue port,
 * or from its HTTP API (`--http`), which adds paused queues, rates and the
 * list of connected clients.
 *
 * @module
 */

import {
  authKey,
  connectFromFlags,
  CONNECTION_FLAGS,
  CONNECTION_HELP,
  type FlagSpec,
  type Parsed,
  parseFlags,
  PERIOD_RANGE,
  secondsFlag,
  stringFlag,
} from "./args.ts";
import type { Client } from "../client/client.ts";
import { type StatusRow, statusRows } from "../model/status_rows.ts";
import { ConfigError, TaskqError } from "../errors.ts";
import { formatAddress } from "../config.ts";
import { parseHttpAddress } from "../http/server.ts";
import { httpToken } from "../http/token.ts";
import type { ClientRow, DashboardState } from "../http/state.ts";
import type { Rates } from "../http/rates.ts";
import { printable, printableJson } from "../util/printable.ts";
import { tlsClientFromFlags } from "./tls_flags.ts";

export { type StatusRow, statusRows };

/** One-line summary shown by `taskq --help`. */
export const STATUS_SUMMARY = "show queues (ready, leased, delayed, dead) and clients";

/** Time between two refreshes of `--watch`, by default. */
export const DEFAULT_WATCH_MS = 2_000;

/** Shortest refresh interval allowed. */
const MIN_WATCH_MS = 100;

/** Milliseconds per second. */
const MS_PER_SECOND = 1000;

/** Seconds per minute, minutes per hour. */
const SIXTY = 60;

/** Moves the cursor home and clears the screen. */
const CLEAR_SCREEN = "\x1b[H\x1b[2J";

/** Help text of `taskq status`. */
export const STATUS_HELP =
  `Usage: taskq status [--json] [--watch [--interval SECONDS]] [--http [HOST:]PORT]

Shows, per queue, the items ready, leased (being worked on), delayed (waiting
for a retry or a delayed put) and dead (in NAME.dead after their last
attempt), the gets waiting, the totals put and acked, and the number of
connected clients (this command's own connection included).

Options:
  --json                    print one JSON object instead of a table
  --watch                   refresh until Ctrl-C, with rates (put, done and
                            failed per second); on a terminal the screen is
                            redrawn, else each refresh is printed (one JSON
                            object per line with --json)
  --interval SECONDS        time between refreshes (default ${DEFAULT_WATCH_MS / MS_PER_SECOND})
  --http [HOST:]PORT        read the master's HTTP side (taskq master --http)
                            instead: adds paused queues, rates and the
                            connected clients (the token comes from the key)
${CONNECTION_HELP}
  -h, --help                show this help
`;

const FLAGS: FlagSpec = {
  json: { type: "boolean" },
  watch: { type: "boolean" },
  interval: { type: "string" },
  http: { type: "string" },
  ...CONNECTION_FLAGS,
};

const SIGNALS: Deno.Signal[] = ["SIGINT", "SIGTERM"];

/** A queue row with what the richer sources add. */
export interface ShownRow extends StatusRow {
  /** Whether the queue is paused (known from the HTTP side only). */
  paused?: boolean;
  /** Per-second rates, when known. */
  rates?: Rates;
}

/** One look at the master. */
export interface Snapshot {
  /** When it was taken (ms since the epoch). */
  now: number;
  /** One row per queue. */
  queues: ShownRow[];
  /** Authenticated connections. */
  clients: number;
  /** The connected clients, when known (HTTP side). */
  workers?: ClientRow[];
}

function formatRate(rate: number): string {
  return rate === 0 ? "0" : rate < 10 ? rate.toFixed(1) : String(Math.round(rate));
}

/** Formats a duration in ms as `3s`, `4m05s` or `2h07m`. */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / MS_PER_SECOND));
  if (s < SIXTY) return `${s}s`;
  const m = Math.floor(s / SIXTY);
  if (m < SIXTY) return `${m}m${String(s % SIXTY).padStart(2, "0")}s`;
  return `${Math.floor(m / SIXTY)}h${String(m % SIXTY).padStart(2, "0")}m`;
}

/** Lays out cells as aligned columns: the first `left` columns left-aligned, the rest right. */
function columns(header: string[], cells: string[][], left: ReadonlySet<number>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) =>
    c.map((v, i) => (left.has(i) ? v.padEnd(widths[i]) : v.padStart(widths[i]))).join("  ")
      .trimEnd();
  return [header, ...cells].map(line).join("\n");
}

/** Formats rows as an aligned text table, with rates and states when the rows have them. */
export function statusTable(rows: readonly ShownRow[], clients: number): string {
  const withRates = rows.some((r) => r.rates !== undefined);
  const withState = rows.some((r) => r.paused !== undefined);
  const header = ["QUEUE", "READY", "LEASED", "DELAYED", "DEAD", "WAITING", "PUT", "ACKED"];
  if (withRates) header.push("PUT/S", "DONE/S", "FAILED/S");
  if (withState) header.push("STATE");
  const cells = rows.map((r) => {
    const row = [
      printable(r.name),
      ...[r.ready, r.leased, r.delayed, r.deadLetters, r.waiting, r.put, r.acked].map(String),
    ];
    if (withRates) {
      const rates = r.rates ?? { put: 0, done: 0, failed: 0 };
      row.push(formatRate(rates.put), formatRate(rates.done), formatRate(rates.failed));
    }
    if (withState) row.push(r.paused ? "paused" : "serving");
    return row;
  });
  const left = new Set([0, header.length - 1].filter((i) => i === 0 || withState));
  const body = rows.length > 0
    ? columns(header, cells, left)
    : `${header.join("  ")}\n(no queues yet)`;
  return `${body}\n\nclients connected: ${clients}`;
}

/** Formats the connected clients as an aligned text table. */
export function clientsTable(workers: readonly ClientRow[], now: number): string {
  if (workers.length === 0) return "(no client connected)";
  const header = ["CLIENT", "ADDRESS", "HELD", "CONNECTED", "LAST SEEN"];
  // Names come from peers: a control character in one is shown as an escape, never sent raw.
  const cells = workers.map((w) => [
    printable(w.name),
    printable(w.address),
    String(w.held),
    formatAge(now - w.connectedAt),
    `${formatAge(now - w.lastSeenAt)} ago`,
  ]);
  return columns(header, cells, new Set([0, 1]));
}

/** The snapshot as text: the queue table, and the clients when known. */
export function renderSnapshot(snapshot: Snapshot): string {
  let text = statusTable(snapshot.queues, snapshot.clients);
  if (snapshot.workers !== undefined) {
    text += `\n\n${clientsTable(snapshot.workers, snapshot.now)}`;
  }
  return text;
}

/** Adds to `current` the rates since `previous` (per queue: put, acked, failed per second). */
export function withRates(current: Snapshot, previous: Snapshot | undefined): Snapshot {
  if (previous === undefined || current.now <= previous.now) return current;
  const seconds = (current.now - previous.now) / MS_PER_SECOND;
  const before = new Map(previous.queues.map((q) => [q.name, q]));
  const rate = (now: number, then: number | undefined) => Math.max(0, now - (then ?? 0)) / seconds;
  return {
    ...current,
    queues: current.queues.map((q) => {
      if (q.rates !== undefined) return q;
      const old = before.get(q.name);
      return {
        ...q,
        rates: {
          put: rate(q.put, old?.put),
          done: rate(q.acked, old?.acked),
          failed: rate(q.failed, old?.failed),
        },
      };
    }),
  };
}

/** Where snapshots come from. */
interface Source {
  take(): Promise<Snapshot>;
  close(): Promise<void>;
}

async function nativeSource(parsed: Parsed): Promise<Source> {
  const client: Client = await connectFromFlags(parsed);
  return {
    async take() {
      const stats = await client.stats();
      return { now: Date.now(), queues: statusRows(stats.queues), clients: stats.clients };
    },
    close: () => client.close(),
  };
}

function httpSource(parsed: Parsed, where: string): Source {
  const address = parseHttpAddress(where);
  // With --tls-ca (the master serves TLS), the HTTP side is https too.
  const tls = tlsClientFromFlags(parsed);
  const client = tls === undefined ? undefined : Deno.createHttpClient({
    caCerts: tls.ca === undefined ? undefined : [tls.ca],
  });
  const url = `${client ? "https" : "http"}://${formatAddress(address)}/api/state`;
  const token = httpToken(authKey(parsed) ?? new Uint8Array(0));
  return {
    async take() {
      let response: Response;
      try {
        response = await fetch(url, { client, headers: { authorization: `Bearer ${token}` } });
      } catch (cause) {
        throw new TaskqError(
          `cannot reach the master's HTTP side at ${formatAddress(address)}: ` +
            `${(cause as Error).message} (is it running with --http?)`,
          { cause },
        );
      }
      if (!response.ok) {
        await response.body?.cancel();
        throw new TaskqError(
          response.status === 401
            ? `the master's HTTP side refused the token: use the master's key`
            : `the master's HTTP side answered ${response.status} ${response.statusText}`,
        );
      }
      const state = await response.json() as DashboardState;
      return {
        now: state.now,
        queues: state.queues,
        clients: state.clients,
        workers: state.workers,
      };
    },
    close: () => {
      client?.close();
      return Promise.resolve();
    },
  };
}

/** Runs `taskq status` with `args`; resolves with the exit code. */
export async function runStatus(args: string[]): Promise<number> {
  const parsed = parseFlags("status", args, FLAGS);
  if (parsed.values.help) {
    console.log(STATUS_HELP);
    return 0;
  }
  const watch = parsed.values.watch === true;
  const intervalMs = secondsFlag(parsed, "interval", DEFAULT_WATCH_MS, {
    ...PERIOD_RANGE,
    zeroOff: false,
  });
  if (intervalMs < MIN_WATCH_MS) {
    throw new ConfigError(`--interval must be at least ${MIN_WATCH_MS / MS_PER_SECOND} seconds`);
  }
  const json = parsed.values.json === true;
  const where = stringFlag(parsed, "http");
  const source = where === undefined ? await nativeSource(parsed) : httpSource(parsed, where);
  const show = (snapshot: Snapshot) => {
    if (json) {
      const out: Record<string, unknown> = { queues: snapshot.queues, clients: snapshot.clients };
      if (snapshot.workers !== undefined) out.workers = snapshot.workers;
      console.log(printableJson(JSON.stringify(out)));
    } else if (watch && Deno.stdout.isTerminal()) {
      console.log(
        `${CLEAR_SCREEN}taskq status at ${new Date(snapshot.now).toLocaleTimeString()} ` +
          `(every ${intervalMs / MS_PER_SECOND} s; Ctrl-C to stop)\n\n${renderSnapshot(snapshot)}`,
      );
    } else if (watch) {
      console.log(
        `taskq status at ${new Date(snapshot.now).toISOString()}\n${renderSnapshot(snapshot)}\n`,
      );
    } else {
      console.log(renderSnapshot(snapshot));
    }
  };
  try {
    if (!watch) {
      show(await source.take());
      return 0;
    }
    const stop = new AbortController();
    const onSignal = () => stop.abort();
    for (const signal of SIGNALS) Deno.addSignalListener(signal, onSignal);
    try {
      let previous: Snapshot | undefined;
      while (!stop.signal.aborted) {
        const snapshot = withRates(await source.take(), previous);
        previous = snapshot;
        show(snapshot);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, intervalMs);
          stop.signal.addEventListener("abort", () => {
            clearTimeout(timer);
            resolve();
          }, { once: true });
        });
      }
    } finally {
      for (const signal of SIGNALS) Deno.removeSignalListener(signal, onSignal);
    }
    return 0;
  } finally {
    await source.close();
  }
}
