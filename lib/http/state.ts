/**
 * The master's state as one JSON-ready object: the queues (with dead-letter
 * counts folded in, paused flags, rates and delivery limits), the connected
 * clients, the dead letters waiting for a decision, and the throughput
 * history. The dashboard, `GET /api/state` and `taskq status --http` all
 * show this.
 *
 * Bounded whatever the number of queues: the broker lists the deepest
 * queues only, and the state adds up the rest in {@link DashboardState.others}.
 *
 * @module
 */

import type { DeadLetter } from "../model/types.ts";
import type { Broker } from "../broker/broker.ts";
import { type StatusRow, statusRows } from "../model/status_rows.ts";
import { hasLimits } from "../model/jobs.ts";
import { deadLetterQueue, isDeadLetterQueue } from "../model/queue_names.ts";
import type { History, Rates, RateTracker } from "./rates.ts";
import { printable } from "../util/printable.ts";
import { ERROR_PREVIEW_CHARS, previewValue, shorten } from "./preview.ts";
import { type LimitsView, limitsView } from "./jobs.ts";

export { ERROR_PREVIEW_CHARS, previewValue, shorten, VALUE_PREVIEW_CHARS } from "./preview.ts";

/** Dead letters listed at most, over all queues (the counts cover all of them). */
export const DEAD_LIST_LIMIT = 100;

/** What the HTTP side reads and acts on: a running master is one. */
export interface DashboardSource {
  /** The broker whose queues are shown. */
  readonly broker: Broker;
}

/** A queue as the dashboard shows it. */
export interface QueueRow extends StatusRow {
  /** Whether its gets are held back. */
  paused: boolean;
  /** Recent per-second rates. */
  rates: Rates;
  /** Its delivery limits, when it has any (rate, concurrency, per-group concurrency). */
  limits?: LimitsView;
}

/** A connected client (worker, producer or status reader). */
export interface ClientRow {
  /** The broker's id of the connection's session. */
  id: string;
  /** The name it gave (host:pid by default). */
  name: string;
  /** Its network address, `HOST:PORT`. */
  address: string;
  /** Items it holds leases on. */
  held: number;
  /** When it connected (ms since the epoch). */
  connectedAt: number;
  /** When it last sent anything (ms since the epoch). */
  lastSeenAt: number;
}

/** An item of a dead-letter queue. */
export interface DeadItem {
  /** The dead-letter queue holding it (`NAME.dead`). */
  queue: string;
  /** Its id there: what re-queue and drop name. */
  id: number;
  /** Whether it is a dead letter of this queue (only those can be re-queued). */
  letter: boolean;
  /** The queue it failed in. */
  failedIn: string;
  /** Its id in that queue. */
  failedId: number;
  /** Deliveries it had. */
  attempts: number;
  /** The last error (shortened). */
  error: string;
  /** When it was dead-lettered (ms since the epoch). */
  failedAt: number;
  /** The item's value as JSON text (shortened). */
  value: string;
}

/** Everything the dashboard shows. */
export interface DashboardState {
  /** When this state was taken (ms since the epoch). */
  now: number;
  /** Authenticated connections. */
  clients: number;
  /** One row per queue listed (the deepest), dead-letter queues folded in. */
  queues: QueueRow[];
  /** The queues not listed: how many, and their items added up. */
  others: { queues: number; ready: number; leased: number; delayed: number };
  /** The connected clients, oldest first. */
  workers: ClientRow[];
  /** Dead letters: how many there are, and the first of them. */
  dead: { total: number; items: DeadItem[] };
  /** Throughput over the last minutes. */
  history: History;
}

function deadItem(queue: string, id: number, value: unknown): DeadItem {
  const letter = value as Partial<DeadLetter> | null;
  const isLetter = typeof letter === "object" && letter !== null &&
    typeof letter.queue === "string" && deadLetterQueue(letter.queue) === queue &&
    "value" in letter;
  if (!isLetter) {
    return {
      queue,
      id,
      letter: false,
      failedIn: "",
      failedId: 0,
      attempts: 0,
      error: "",
      failedAt: 0,
      value: previewValue(value),
    };
  }
  return {
    queue,
    id,
    letter: true,
    failedIn: letter.queue as string,
    failedId: Number(letter.id ?? 0),
    attempts: Number(letter.attempts ?? 0),
    error: shorten(String(letter.error ?? ""), ERROR_PREVIEW_CHARS),
    failedAt: Number(letter.failedAt ?? 0),
    value: previewValue(letter.value),
  };
}

/** Takes the state of `source` now, with rates and history from `rates`. */
export async function takeState(
  source: DashboardSource,
  rates: RateTracker,
  now: number,
): Promise<DashboardState> {
  const broker = source.broker;
  const [stats, sessions, limits] = await Promise.all([
    broker.stats(),
    broker.sessions(),
    broker.limits(),
  ]);
  const paused = new Set(stats.paused);
  const limitsOf = new Map(limits.map((l) => [l.queue, l]));
  const queues: QueueRow[] = statusRows(stats.queues).map((row) => {
    const shown: QueueRow = { ...row, paused: paused.has(row.name), rates: rates.rates(row.name) };
    const queueLimits = limitsOf.get(row.name);
    if (queueLimits !== undefined && hasLimits(queueLimits)) shown.limits = limitsView(queueLimits);
    return shown;
  });
  const workers: ClientRow[] = sessions.map((s) => ({
    id: s.id,
    name: printable(s.name), // a peer's text: control characters escaped
    address: s.address,
    held: s.leased,
    connectedAt: s.connectedAt,
    lastSeenAt: s.lastSeenAt,
  }));
  let total = 0;
  const items: DeadItem[] = [];
  for (const queue of stats.queues) {
    if (!isDeadLetterQueue(queue.name)) continue;
    total += queue.ready + queue.leased + queue.delayed;
    if (items.length >= DEAD_LIST_LIMIT) continue;
    for (const item of await broker.peek(queue.name, DEAD_LIST_LIMIT - items.length)) {
      items.push(deadItem(queue.name, item.id, item.value));
    }
  }
  const rest = stats.rest;
  return {
    now,
    clients: stats.clients,
    queues,
    others: {
      queues: Math.max(0, (stats.queueCount ?? stats.queues.length) - stats.queues.length),
      ready: rest?.ready ?? 0,
      leased: rest?.leased ?? 0,
      delayed: rest?.delayed ?? 0,
    },
    workers,
    dead: { total, items },
    history: rates.history(),
  };
}
