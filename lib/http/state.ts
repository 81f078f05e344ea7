/**
 * The master's state as one JSON-ready object: the queues (with dead-letter
 * counts folded in, paused flags, rates and delivery limits), the connected
 * clients, the dead letters waiting for a decision, and the throughput
 * history. The dashboard, `GET /api/state` and `taskq status --http` all
 * show this.
 *
 * Bounded whatever the number of queues: the broker lists the deepest
 * queues only, and the state adds up the rest in {@link DashboardState.others};
 * of those listed, one page of rows is built ({@link StateQuery}: offset,
 * limit and a name filter), while {@link DashboardState.totals} adds up all
 * of them without building a row each.
 *
 * @example
 * ```ts
 * import { serve } from "../server/master.ts";
 * import { RateTracker } from "./rates.ts";
 * import { takeState } from "./state.ts";
 * const master = await serve({ listen: "127.0.0.1:0", authkey: "abc" });
 * const session = await master.broker.open({ name: "example", address: "" });
 * await session.put("mail", ["a", "b"]);
 * const state = await takeState(master, new RateTracker(), Date.now(), { limit: 10 });
 * console.log(state.queues[0].name, state.queues[0].ready, state.totals.ready); // mail 2 2
 * await session.close();
 * await master.close();
 * ```
 *
 * @module
 */

import type { DeadLetter } from "../model/types.ts";
import type { Broker, ControlAction, HeldItem, SessionView } from "../broker/broker.ts";
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

/** Queue rows one state lists when its query names no limit. */
export const DEFAULT_STATE_QUEUES = 100;

/** Most queue rows one state lists. */
export const MAX_STATE_QUEUES = 1_000;

/** Held items each client row of the state lists (`GET /api/sessions` lists more). */
export const HELD_IN_STATE = 10;

/** Longest name filter a state query takes, in characters. */
export const MAX_FILTER_CHARS = 200;

/** Which queue rows a state lists, and how many dead letters. */
export interface StateQuery {
  /** Rows to skip (after the filter), default 0. */
  offset?: number;
  /** Rows to list, default {@link DEFAULT_STATE_QUEUES}, at most {@link MAX_STATE_QUEUES}. */
  limit?: number;
  /** Only queues whose name holds this text (case-insensitive). */
  filter?: string;
  /** Dead letters to list, default (and at most) {@link DEAD_LIST_LIMIT}; 0 lists none. */
  dead?: number;
}

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
  /** Gets it is waiting on (always given by the HTTP side; optional for other sources). */
  waiting?: number;
  /**
   * Items it holds, oldest lease first (the first {@link HELD_IN_STATE} in a
   * state; always given by the HTTP side, optional for other sources).
   */
  holding?: HeldItem[];
  /** The last action sent to it (quiet or stop), if any. */
  controlled?: ControlAction;
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
  /**
   * One page of rows (see {@link StateQuery}) of the queues listed (the
   * deepest), dead-letter queues folded in, deepest first.
   */
  queues: QueueRow[];
  /** Where the page starts among the rows that pass the filter, and how many there are. */
  page: { offset: number; limit: number; total: number; filter: string };
  /** Every listed row added up (paged or not), and the rates over all queues. */
  totals: {
    rows: number;
    ready: number;
    leased: number;
    delayed: number;
    deadLetters: number;
    rates: Rates;
  };
  /**
   * When the master started (ms since the epoch), when its broker says; the
   * counters count since then unless the store keeps them (durable SQLite).
   */
  startedAt?: number;
  /** The queues not listed: how many, and their items added up. */
  others: { queues: number; ready: number; leased: number; delayed: number };
  /** The connected clients, oldest first. */
  workers: ClientRow[];
  /** Dead letters: how many there are, and the first of them. */
  dead: { total: number; items: DeadItem[] };
  /** Throughput over the last minutes. */
  history: History;
}

/**
 * A dead-letter queue's item as the dashboard lists it: `id` is its id in
 * `queue` (what re-queue and drop take), the letter's fields unpacked.
 *
 * @example
 * ```ts
 * import { deadItem } from "./state.ts";
 * const item = deadItem("mail.dead", 9, {
 *   queue: "mail", id: 4, value: "x", attempts: 5, error: "boom", failedAt: 1,
 * });
 * console.log(item.id, item.failedId, item.letter); // 9 4 true
 * ```
 */
export function deadItem(queue: string, id: number, value: unknown): DeadItem {
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

/**
 * A session as the dashboard lists it: its peer's name with control
 * characters escaped, and the first `held` items it holds.
 *
 * @example
 * ```ts
 * import { clientRow } from "./state.ts";
 * const row = clientRow({
 *   id: "s1", name: "w\x07", address: "127.0.0.1:1", connectedAt: 0, lastSeenAt: 0,
 *   leased: 1, waiting: 0, holding: [{ id: 3, queue: "q", leasedAt: 5, leaseExpiresAt: 9 }],
 * }, 10);
 * console.log(row.name, row.held, row.holding?.length); // w\x07 1 1
 * ```
 */
export function clientRow(s: SessionView, held: number): ClientRow {
  const row: ClientRow = {
    id: s.id,
    name: printable(s.name), // a peer's text: control characters escaped
    address: s.address,
    held: s.leased,
    connectedAt: s.connectedAt,
    lastSeenAt: s.lastSeenAt,
    waiting: s.waiting,
    holding: (s.holding ?? []).slice(0, held),
  };
  if (s.controlled !== undefined) row.controlled = s.controlled;
  return row;
}

/** A count asked for in a state query, clamped to `[0, max]`, or `fallback` when absent. */
function clamp(value: number | undefined, fallback: number, max: number): number {
  if (value === undefined || !Number.isFinite(value)) return fallback;
  return Math.min(max, Math.max(0, Math.floor(value)));
}

/**
 * Takes the state of `source` now, with rates and history from `rates`:
 * the page of queue rows `query` asks for (the first
 * {@link DEFAULT_STATE_QUEUES} by default).
 */
export async function takeState(
  source: DashboardSource,
  rates: RateTracker,
  now: number,
  query: StateQuery = {},
): Promise<DashboardState> {
  const broker = source.broker;
  const [stats, sessions, limits] = await Promise.all([
    broker.stats(),
    broker.sessions(),
    broker.limits(),
  ]);
  const paused = new Set(stats.paused);
  const limitsOf = new Map(limits.map((l) => [l.queue, l]));
  const offset = clamp(query.offset, 0, Number.MAX_SAFE_INTEGER);
  const limit = clamp(query.limit, DEFAULT_STATE_QUEUES, MAX_STATE_QUEUES);
  const filter = (query.filter ?? "").slice(0, MAX_FILTER_CHARS);
  const needle = filter.toLowerCase();
  const allRows = statusRows(stats.queues);
  const totals = {
    rows: allRows.length,
    ready: 0,
    leased: 0,
    delayed: 0,
    deadLetters: 0,
    rates: rates.totalRates(),
  };
  for (const row of allRows) {
    totals.ready += row.ready;
    totals.leased += row.leased;
    totals.delayed += row.delayed;
    totals.deadLetters += row.deadLetters;
  }
  const matching = needle === ""
    ? allRows
    : allRows.filter((row) => row.name.toLowerCase().includes(needle));
  const queues: QueueRow[] = matching.slice(offset, offset + limit).map((row) => {
    const shown: QueueRow = { ...row, paused: paused.has(row.name), rates: rates.rates(row.name) };
    const queueLimits = limitsOf.get(row.name);
    if (queueLimits !== undefined && hasLimits(queueLimits)) shown.limits = limitsView(queueLimits);
    return shown;
  });
  const workers: ClientRow[] = sessions.map((s) => clientRow(s, HELD_IN_STATE));
  const deadWanted = clamp(query.dead, DEAD_LIST_LIMIT, DEAD_LIST_LIMIT);
  let total = 0;
  const items: DeadItem[] = [];
  for (const queue of stats.queues) {
    if (!isDeadLetterQueue(queue.name)) continue;
    total += queue.ready + queue.leased + queue.delayed;
    if (items.length >= deadWanted || queue.ready === 0) continue;
    for (const item of await broker.peek(queue.name, deadWanted - items.length)) {
      items.push(deadItem(queue.name, item.id, item.value));
    }
  }
  const rest = stats.rest;
  const state: DashboardState = {
    now,
    clients: stats.clients,
    queues,
    page: { offset, limit, total: matching.length, filter },
    totals,
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
  if (stats.startedAt !== undefined) state.startedAt = stats.startedAt;
  return state;
}
