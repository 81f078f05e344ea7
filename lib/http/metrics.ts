/**
 * `/metrics`: the master's state in the Prometheus text exposition format
 * (version 0.0.4): queue depths and totals per queue, the age of each
 * queue's oldest ready item, connected clients, error replies by wire code,
 * HTTP refusals, the store's commit latency and the jobs' run times as
 * histograms, the build (`taskq_build_info`), when the master started, and
 * the process's memory and CPU time.
 *
 * The per-queue counters (`taskq_items_put_total`, ...) count since this
 * master started, unless its store is a durable SQLite file, which keeps them
 * across restarts; their help texts say so, and `taskq_start_time_seconds`
 * tells when that was. Counters of the master itself (connections, errors,
 * HTTP refusals, histograms) always count since it started.
 *
 * Queue series carry a `queue` label holding the queue's exact name (escaped
 * as the format requires), dead-letter queues included; `taskq_queue_dead_letters`
 * gives each queue's dead-letter count the way `taskq status` folds it.
 *
 * The size stays bounded whatever the number of queues: per-queue series
 * cover the queues the broker lists (the deepest {@link STATS_QUEUE_LIMIT}),
 * `taskq_other_queues_items{state}` adds up the rest, and `taskq_queues`
 * counts them all. The memory budget is reported too, and each queue's
 * delivery limits (`taskq_queue_rate_limit` in deliveries per second,
 * `taskq_queue_concurrency_limit`, `taskq_queue_group_concurrency_limit`),
 * for the queues that have one (at most {@link STATS_QUEUE_LIMIT} of them).
 *
 * @module
 */

import process from "node:process";
import { type BrokerStats, STATS_QUEUE_LIMIT } from "../broker/broker.ts";
import { ERROR_CODES, type ErrorCode } from "../errors.ts";
import type { Histogram, Telemetry } from "../broker/telemetry.ts";
import { statusRows } from "../model/status_rows.ts";
import type { NamedQueueLimits } from "../model/jobs.ts";
import { TASKQ_VERSION } from "./version.ts";

/** Milliseconds per second, to give a rate limit per second. */
const MS_PER_SECOND = 1_000;

/** Microseconds per second, to give CPU time in seconds. */
const US_PER_SECOND = 1_000_000;

/** What the help text of a per-queue counter adds about when it started counting. */
const SINCE_START = " Counted since this master started (a durable SQLite store keeps the count " +
  "across restarts); see taskq_start_time_seconds.";

/** The process's own figures, as `/metrics` reports them. */
export interface ProcessFigures {
  /** Resident memory, in bytes. */
  residentBytes: number;
  /** CPU time used (user and system), in seconds. */
  cpuSeconds: number;
  /** When the process started, in seconds since the epoch. */
  startTimeSeconds: number;
}

/**
 * This process's memory, CPU time and start time, read now (no permission
 * needed).
 *
 * @example
 * ```ts
 * import { processFigures } from "./metrics.ts";
 * const figures = processFigures();
 * console.log(figures.residentBytes > 0, figures.startTimeSeconds > 0); // true true
 * ```
 */
export function processFigures(): ProcessFigures {
  const cpu = process.cpuUsage();
  return {
    residentBytes: Deno.memoryUsage().rss,
    cpuSeconds: (cpu.user + cpu.system) / US_PER_SECOND,
    startTimeSeconds: performance.timeOrigin / MS_PER_SECOND,
  };
}

/** The Content-Type of the text exposition format. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Escapes a label value: backslash, double quote and newline. */
export function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** Formats a sample value as the format wants it. */
function formatNumber(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

type Labels = Record<string, string>;

/** Builds the exposition text one metric family at a time. */
class Exposition {
  #text = "";

  /** Starts a family with its help text and type. */
  family(name: string, type: "gauge" | "counter" | "histogram", help: string): this {
    this.#text += `# HELP ${name} ${help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}\n`;
    this.#text += `# TYPE ${name} ${type}\n`;
    return this;
  }

  /** Adds one sample. */
  sample(name: string, labels: Labels, value: number): this {
    const pairs = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
    const set = pairs.length > 0 ? `{${pairs.join(",")}}` : "";
    this.#text += `${name}${set} ${formatNumber(value)}\n`;
    return this;
  }

  /** Adds a histogram's buckets, sum and count. */
  histogram(name: string, histogram: Histogram): this {
    const cumulative = histogram.cumulative();
    histogram.bounds.forEach((bound, i) => {
      this.sample(`${name}_bucket`, { le: formatNumber(bound) }, cumulative[i]);
    });
    this.sample(`${name}_bucket`, { le: "+Inf" }, histogram.count);
    this.sample(`${name}_sum`, {}, histogram.sum);
    this.sample(`${name}_count`, {}, histogram.count);
    return this;
  }

  /** The text so far. */
  toString(): string {
    return this.#text;
  }
}

/** What `/metrics` reports. */
export interface MetricsInput {
  /** The broker's statistics, taken just before. */
  stats: BrokerStats;
  /** The master's counters. */
  telemetry: Telemetry;
  /** Requests the HTTP side refused, by reason. */
  httpRefused: ReadonlyMap<string, number>;
  /**
   * The queues' delivery limits (those that have any), taken just before;
   * when absent, the limit families are left out.
   */
  limits?: readonly NamedQueueLimits[];
  /**
   * When the oldest ready item of each queue was put (ms since the epoch),
   * by queue name (queues with ready items only); with {@link now} it gives
   * `taskq_queue_oldest_ready_age_seconds`. When absent, that family is left out.
   */
  oldestReadyAt?: ReadonlyMap<string, number>;
  /** The time the ages are measured at (ms since the epoch); `Date.now()` when absent. */
  now?: number;
  /** The process's figures; when absent, the `process_*` families are left out. */
  process?: ProcessFigures;
  /**
   * When the master started (ms since the epoch), if not in {@link stats}
   * (`startedAt`); the process's start when neither says.
   */
  startedAt?: number;
}

/**
 * The limit families: a sample per queue that has that limit (a queue
 * without one has no sample, rather than a misleading 0), for at most
 * {@link STATS_QUEUE_LIMIT} queues, those listed in `listed` first.
 */
function renderLimits(
  out: Exposition,
  all: readonly NamedQueueLimits[],
  listed: ReadonlySet<string>,
): void {
  const limits = [
    ...all.filter((l) => listed.has(l.queue)),
    ...all.filter((l) => !listed.has(l.queue)),
  ].slice(0, STATS_QUEUE_LIMIT);
  const families: Array<[string, string, (l: NamedQueueLimits) => number]> = [
    [
      "taskq_queue_rate_limit",
      "Deliveries per second a queue's rate limit allows (queues with a rate limit only).",
      (l) => l.rateCount === 0 ? 0 : l.rateCount * MS_PER_SECOND / l.ratePeriodMs,
    ],
    [
      "taskq_queue_concurrency_limit",
      "Most items of a queue leased at once (queues with a concurrency limit only).",
      (l) => l.concurrency,
    ],
    [
      "taskq_queue_group_concurrency_limit",
      "Most items of one group of a queue leased at once (queues with such a limit only).",
      (l) => l.groupConcurrency,
    ],
  ];
  for (const [name, help, value] of families) {
    out.family(name, "gauge", help);
    for (const l of limits) if (value(l) > 0) out.sample(name, { queue: l.queue }, value(l));
  }
}

/**
 * Renders the metrics text.
 *
 * @example
 * ```ts
 * import { renderMetrics } from "./metrics.ts";
 * import { Telemetry } from "../broker/telemetry.ts";
 * const text = renderMetrics({
 *   stats: { queues: [], clients: 0, paused: [] },
 *   telemetry: new Telemetry(),
 *   httpRefused: new Map(),
 * });
 * console.log(text.includes("taskq_build_info{")); // true
 * ```
 */
export function renderMetrics(input: MetricsInput): string {
  const { stats, telemetry } = input;
  const queues = stats.queues;
  const paused = new Set(stats.paused);
  const out = new Exposition();

  out.family("taskq_queue_items", "gauge", "Items in a queue, by state (ready, leased, delayed).");
  for (const q of queues) {
    out.sample("taskq_queue_items", { queue: q.name, state: "ready" }, q.ready);
    out.sample("taskq_queue_items", { queue: q.name, state: "leased" }, q.leased);
    out.sample("taskq_queue_items", { queue: q.name, state: "delayed" }, q.delayed);
  }
  out.family(
    "taskq_queue_dead_letters",
    "gauge",
    "Items in a queue's dead-letter queue NAME.dead.",
  );
  for (const row of statusRows(queues)) {
    out.sample("taskq_queue_dead_letters", { queue: row.name }, row.deadLetters);
  }
  if (input.oldestReadyAt !== undefined) {
    const now = input.now ?? Date.now();
    out.family(
      "taskq_queue_oldest_ready_age_seconds",
      "gauge",
      "Seconds since the item at the front of a queue's ready items was put (the next one " +
        "served; with priorities, of the highest priority); 0 when none is ready.",
    );
    for (const q of queues) {
      const at = input.oldestReadyAt.get(q.name);
      const age = at === undefined || q.ready === 0 ? 0 : Math.max(0, now - at) / MS_PER_SECOND;
      out.sample("taskq_queue_oldest_ready_age_seconds", { queue: q.name }, age);
    }
  }
  out.family("taskq_queue_waiting_gets", "gauge", "Gets waiting for an item of a queue.");
  for (const q of queues) out.sample("taskq_queue_waiting_gets", { queue: q.name }, q.waiting);
  out.family("taskq_queue_paused", "gauge", "1 if a queue is paused (serves no gets), else 0.");
  for (const q of queues) {
    out.sample("taskq_queue_paused", { queue: q.name }, paused.has(q.name) ? 1 : 0);
  }

  if (input.limits !== undefined) {
    renderLimits(out, input.limits, new Set(queues.map((q) => q.name)));
  }

  const counters: Array<[string, string, (q: (typeof queues)[number]) => number]> = [
    ["taskq_items_put_total", "Items put on a queue.", (q) => q.put],
    ["taskq_items_acked_total", "Items acked (done).", (q) => q.acked],
    ["taskq_items_nacked_total", "Items given back with nack.", (q) => q.nacked],
    ["taskq_items_failed_total", "Failures reported by workers.", (q) => q.failed],
    [
      "taskq_lease_expiries_total",
      "Leases that ran out or were dropped with their connection.",
      (q) => q.expired,
    ],
    [
      "taskq_retries_total",
      "Items served again after a failure or a lost lease (failed + expired - dead-lettered).",
      (q) => q.failed + q.expired - q.dead,
    ],
    ["taskq_items_dead_lettered_total", "Items moved to the dead-letter queue.", (q) => q.dead],
  ];
  for (const [name, help, value] of counters) {
    out.family(name, "counter", help + SINCE_START);
    for (const q of queues) out.sample(name, { queue: q.name }, value(q));
  }

  out.family("taskq_queues", "gauge", "Queues the master knows, listed one by one or not.");
  out.sample("taskq_queues", {}, stats.queueCount ?? queues.length);
  out.family(
    "taskq_other_queues_items",
    "gauge",
    `Items in the queues not listed one by one (all but the ${STATS_QUEUE_LIMIT} deepest), by state.`,
  );
  const rest = stats.rest;
  out.sample("taskq_other_queues_items", { state: "ready" }, rest?.ready ?? 0);
  out.sample("taskq_other_queues_items", { state: "leased" }, rest?.leased ?? 0);
  out.sample("taskq_other_queues_items", { state: "delayed" }, rest?.delayed ?? 0);
  if (stats.memory !== undefined) {
    out.family("taskq_memory_items_bytes", "gauge", "Estimated bytes of memory the items take.");
    out.sample("taskq_memory_items_bytes", {}, stats.memory.heldBytes);
    out.family(
      "taskq_memory_items_limit_bytes",
      "gauge",
      "Estimated bytes the items may take before puts are refused (memory_full).",
    );
    out.sample("taskq_memory_items_limit_bytes", {}, stats.memory.itemLimitBytes);
    out.family("taskq_memory_limit_bytes", "gauge", "The memory budget (--max-memory).");
    out.sample("taskq_memory_limit_bytes", {}, stats.memory.limitBytes);
  }
  out.family("taskq_connected_clients", "gauge", "Authenticated client connections.");
  out.sample("taskq_connected_clients", {}, stats.clients);
  out.family("taskq_connections_accepted_total", "counter", "TCP connections accepted.");
  out.sample("taskq_connections_accepted_total", {}, telemetry.connectionsAccepted);
  out.family(
    "taskq_auth_throttled_total",
    "counter",
    "Connections refused before the handshake because their address sent too many wrong keys.",
  );
  out.sample("taskq_auth_throttled_total", {}, telemetry.authThrottled);
  out.family(
    "taskq_protocol_errors_total",
    "counter",
    "Error replies sent to clients, by code (auth_failed: wrong key or handshake timeout; " +
      "frame_too_large and bad_request: bad frames).",
  );
  for (const code of [...ERROR_CODES].sort()) {
    out.sample(
      "taskq_protocol_errors_total",
      { code },
      telemetry.errors.get(code as ErrorCode) ?? 0,
    );
  }
  out.family("taskq_http_refused_total", "counter", "HTTP requests refused, by reason.");
  for (const [reason, count] of [...input.httpRefused].sort(([a], [b]) => a < b ? -1 : 1)) {
    out.sample("taskq_http_refused_total", { reason }, count);
  }
  out.family(
    "taskq_store_commit_seconds",
    "histogram",
    "Time the store took to commit a group of changes to disk.",
  );
  out.histogram("taskq_store_commit_seconds", telemetry.commitSeconds);
  out.family(
    "taskq_job_duration_seconds",
    "histogram",
    "Run time of acked jobs, from the start of the lease they were acked under to the ack " +
      "(jobs acked through this master, since it started).",
  );
  out.histogram("taskq_job_duration_seconds", telemetry.jobSeconds);

  out.family("taskq_build_info", "gauge", "Always 1; the labels name taskq's version and Deno's.");
  out.sample("taskq_build_info", { version: TASKQ_VERSION, deno: Deno.version.deno }, 1);
  const figures = input.process;
  const startedAt = stats.startedAt ?? input.startedAt;
  out.family(
    "taskq_start_time_seconds",
    "gauge",
    "When this master started, in seconds since the epoch: what counters count since.",
  );
  out.sample(
    "taskq_start_time_seconds",
    {},
    startedAt !== undefined ? startedAt / MS_PER_SECOND : figures?.startTimeSeconds ?? 0,
  );
  if (figures !== undefined) {
    out.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    out.sample("process_resident_memory_bytes", {}, figures.residentBytes);
    out.family(
      "process_cpu_seconds_total",
      "counter",
      "Total user and system CPU time spent in seconds.",
    );
    out.sample("process_cpu_seconds_total", {}, figures.cpuSeconds);
    out.family(
      "process_start_time_seconds",
      "gauge",
      "Start time of the process since unix epoch in seconds.",
    );
    out.sample("process_start_time_seconds", {}, figures.startTimeSeconds);
  }
  return out.toString();
}
