/**
 * The master's HTTP side (`taskq master --http`): the dashboard page, the
 * JSON state API, job lookup, a queue's items page by page, dead letters,
 * the workers and what they hold, `/metrics` for Prometheus, and the
 * dashboard's actions (pause, resume or purge a queue, re-queue or drop dead
 * letters by id or all at once, cancel jobs, change a queue's delivery
 * limits, quiet or stop a worker).
 *
 * Routes (every one behind the host and cross-site checks of guard.ts):
 *
 * | method | path                     | token | what                                                   |
 * | ------ | ------------------------ | ----- | ------------------------------------------------------ |
 * | GET    | `/`                      | no    | the page (holds no data)                               |
 * | GET    | `/app.js`, `/app.css`    | no    | its script and stylesheet                              |
 * | GET    | `/api/state`             | yes   | {@link DashboardState}; `?offset=&limit=&filter=&dead=` |
 * | GET    | `/metrics`               | yes   | Prometheus text format                                 |
 * | GET    | `/api/jobs/ID`           | yes   | the job as a `JobView` (jobs.ts); 404 if unknown       |
 * | GET    | `/api/queues/items`      | yes   | `?queue=&state=&offset=&limit=`: {@link ItemsReply}    |
 * | GET    | `/api/dead`              | yes   | `?queue=&offset=&limit=`: {@link DeadReply}            |
 * | GET    | `/api/sessions`          | yes   | `{sessions: [ClientRow]}`: what each holds             |
 * | GET    | `/api/limits`            | yes   | `{limits: [LimitsView]}`: queues with any limit        |
 * | GET    | `/api/limits?queue=NAME` | yes   | that queue's `LimitsView` (zeros: none)                |
 * | POST   | `/api/queues/pause`      | yes   | `{queue}`: the queue serves no gets                    |
 * | POST   | `/api/queues/resume`     | yes   | `{queue}`: it serves them again                        |
 * | POST   | `/api/queues/purge`      | yes   | `{queue}`: its ready and delayed items go: `{purged}`  |
 * | POST   | `/api/dead/requeue`      | yes   | `{queue, ids}` or `{queue, all: true}`: back to NAME   |
 * | POST   | `/api/dead/drop`         | yes   | `{queue, ids}` or `{queue, all: true}`: gone for good  |
 * | POST   | `/api/jobs/cancel`       | yes   | `{ids}`: answers `{cancelled, missing}`                |
 * | POST   | `/api/limits`            | yes   | `{queue, rate?, concurrency?, groupConcurrency?}`      |
 * | POST   | `/api/sessions/control`  | yes   | `{session, action: "quiet" \| "stop"}`                 |
 *
 * The dead-letter routes take a queue's name or its dead-letter queue's
 * (`NAME` or `NAME.dead`), and the ids of the dead letters in `NAME.dead`:
 * the `id` that `GET /api/dead` and `/api/state` list (not `failedId`, the
 * item's id in the queue it failed in).
 *
 * `POST /api/limits` takes the rate as the CLI writes it (`"rate": "50/s"`,
 * `"0"` lifts it) or as `rateCount` and `ratePeriodMs`; fields left out stay
 * as they are, a zero lifts a limit; it answers the limits now in force.
 * Actions answer once their change is committed to the store. Every error
 * is a JSON object `{error}`: 400 for a malformed request, 404 for what is
 * not there, never 500 for anything a client sent.
 *
 * The HTTP/1.1 server underneath is our own (http1.ts), over the shared
 * accept loop: it caps connections, puts deadlines on request heads, bodies
 * and idle keep-alive connections, bounds heads and bodies, and backs off
 * when accepting fails (out of file descriptors), so a hostile network can
 * neither crash the master nor hold the dashboard hostage.
 *
 * @module
 */

import { type Address, formatAddress, isLoopback, parseAddress } from "../config.ts";
import { ConfigError, ProtocolError } from "../errors.ts";
import { type Logger, silentLogger } from "../log.ts";
import {
  checkQueueName,
  DEAD_LETTER_SUFFIX,
  deadLetterQueue,
  isDeadLetterQueue,
} from "../model/queue_names.ts";
import { NO_LIMITS } from "../model/jobs.ts";
import {
  type Broker,
  CONTROL_ACTIONS,
  type ControlAction,
  DEFAULT_ITEMS_PAGE,
  LISTED_STATES,
  type ListedState,
  MAX_HELD_LISTED,
  MAX_ITEMS_PAGE,
} from "../broker/broker.ts";
import { type JobView, jobView, limitsView, parseJobId, parseLimitChanges } from "./jobs.ts";
import { Guard, type Refusal } from "./guard.ts";
import { METRICS_CONTENT_TYPE, processFigures, renderMetrics } from "./metrics.ts";
import { PAGE_CSS, PAGE_HTML, PAGE_JS } from "./page.ts";
import { DEFAULT_SAMPLE_MS, RateTracker } from "./rates.ts";
import {
  type ClientRow,
  clientRow,
  type DashboardSource,
  type DashboardState,
  DEAD_LIST_LIMIT,
  type DeadItem,
  deadItem,
  MAX_FILTER_CHARS,
  MAX_STATE_QUEUES,
  type StateQuery,
  takeState,
} from "./state.ts";
import { VALUE_PREVIEW_CHARS } from "./preview.ts";
import { httpToken } from "./token.ts";
import { Http1Server, type HttpLimits, listenHttp, type StreamListener } from "./http1.ts";
import type { FrontEndFactory } from "../server/front_end.ts";
import { openListener, type TlsServerOptions } from "../server/master.ts";
import { refuseNativeClients } from "../wire/wrong_port.ts";

/** Host the HTTP side listens on when `--http` names only a port. */
export const DEFAULT_HTTP_HOST = "127.0.0.1";

/** Largest action body accepted, in bytes. */
export const MAX_BODY_BYTES = 64 * 1024;

/**
 * Environment variable that shortens the header deadline of the HTTP side
 * started by {@link httpFrontEnd}, in ms. For tests only (they run a real
 * master and cannot wait the default 10 s); unset in normal use.
 */
export const HEADER_TIMEOUT_ENV = "TASKQ_HTTP_HEADER_TIMEOUT_MS";

/** Most ids one action may name. */
export const MAX_ACTION_IDS = 1_000;

/** Longest session id an action may name, in characters. */
const MAX_SESSION_ID_CHARS = 200;

/** Queues whose oldest ready item one `/metrics` scrape looks up at once. */
const OLDEST_READY_BATCH = 32;

/** Largest offset a listing takes (items of a queue, dead letters, rows). */
const MAX_OFFSET = Number.MAX_SAFE_INTEGER;

/** A page of a queue's items, as `GET /api/queues/items` answers it. */
export interface ItemsReply {
  /** The queue. */
  queue: string;
  /** Which of its items. */
  state: ListedState;
  /** Items skipped before this page. */
  offset: number;
  /** Most items the page could hold. */
  limit: number;
  /** How many items of that state the queue holds. */
  total: number;
  /** The page's items (values shortened to `VALUE_PREVIEW_CHARS`; `/api/jobs/ID` shows more). */
  items: JobView[];
}

/** A dead-letter queue as `GET /api/dead` lists it among the choices of its filter. */
export interface DeadQueueCount {
  /** The dead-letter queue, `NAME.dead`. */
  queue: string;
  /** The queue its letters failed in, `NAME`. */
  failedIn: string;
  /** Dead letters it holds ready (those re-queue and drop act on). */
  count: number;
}

/** A page of dead letters, as `GET /api/dead` answers it. */
export interface DeadReply {
  /** The dead-letter queue asked for (`NAME.dead`), or null for all of them. */
  queue: string | null;
  /** Letters skipped before this page. */
  offset: number;
  /** Most letters the page could hold. */
  limit: number;
  /** Ready dead letters in the queue asked for, or in all of them. */
  total: number;
  /** The page's letters, dead-letter queues in name order, each in serve order. */
  items: DeadItem[];
  /** Every dead-letter queue with ready letters, by name (the filter's choices). */
  queues: DeadQueueCount[];
}

const STATUS_OK = 200;
const STATUS_NO_CONTENT = 204;
const STATUS_BAD_REQUEST = 400;
const STATUS_NOT_FOUND = 404;
const STATUS_METHOD_NOT_ALLOWED = 405;
const STATUS_TOO_LARGE = 413;
const STATUS_SERVER_ERROR = 500;

/** The page may load only its own script, style and data. */
const PAGE_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
  "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** Headers every response carries. */
const COMMON_HEADERS: Readonly<Record<string, string>> = {
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cross-origin-resource-policy": "same-origin",
  "cross-origin-opener-policy": "same-origin",
};

const STATIC_FILES: Readonly<Record<string, { type: string; body: string }>> = {
  "/": { type: "text/html; charset=utf-8", body: PAGE_HTML },
  "/index.html": { type: "text/html; charset=utf-8", body: PAGE_HTML },
  "/app.js": { type: "text/javascript; charset=utf-8", body: PAGE_JS },
  "/app.css": { type: "text/css; charset=utf-8", body: PAGE_CSS },
};

/** Paths that take actions: POSTs with a JSON body. */
const ACTIONS = new Set([
  "/api/queues/pause",
  "/api/queues/resume",
  "/api/queues/purge",
  "/api/dead/requeue",
  "/api/dead/drop",
  "/api/jobs/cancel",
  "/api/limits",
  "/api/sessions/control",
]);

/** Paths that are read: GETs (and HEADs). */
const READS = new Set([
  "/api/state",
  "/metrics",
  "/api/limits",
  "/api/queues/items",
  "/api/dead",
  "/api/sessions",
]);

/** A job's path, `/api/jobs/ID` (a read; `/api/jobs/cancel` is an action). */
const JOB_PATH = /^\/api\/jobs\/([^/]*)$/;

/** Query parameters each read takes (a read not listed takes none). */
const READ_PARAMS: Readonly<Record<string, readonly string[]>> = {
  "/api/limits": ["queue"],
  "/api/state": ["offset", "limit", "filter", "dead"],
  "/api/queues/items": ["queue", "state", "offset", "limit"],
  "/api/dead": ["queue", "offset", "limit"],
};

/** Options of {@link serveHttp}. */
export interface HttpOptions {
  /** The master (or anything with its broker). */
  source: DashboardSource;
  /** `HOST:PORT`, `PORT` (on loopback) or an address; port 0 picks a free one. */
  listen: string | Address;
  /** The master's key; the token is derived from it (the empty key when absent). */
  authkey?: Uint8Array;
  /** Where events are logged. */
  logger?: Logger;
  /** How often rates are sampled (default 1 s). */
  sampleMs?: number;
  /**
   * Where connections come from; by default a TCP listener on `listen`
   * (which then only names the address checked against the key). Another
   * transport (TLS) plugs in here. It is closed by {@link HttpServer.close}.
   */
  listener?: StreamListener;
  /**
   * Serve over TLS with this certificate and key (PEM), unless a `listener`
   * is given; the page's address is then `https://…`.
   */
  tls?: TlsServerOptions;
  /**
   * Connection cap, size limits and deadlines of the HTTP server (see
   * http1.ts); `maxBodyBytes` defaults to {@link MAX_BODY_BYTES}.
   */
  limits?: Partial<HttpLimits>;
  /**
   * The master's native address: a taskq client that reaches this port by
   * mistake is told it there (lib/wire/wrong_port.ts).
   */
  nativeAddress?: string;
}

/** A request refused for what it asks (a read or an action): answered with its status. */
class BadAction extends Error {
  constructor(message: string, readonly status: number = STATUS_BAD_REQUEST) {
    super(message);
  }
}

/**
 * Parses the `--http` value: `PORT` means loopback, else `HOST:PORT`.
 * @throws {ConfigError} when it is neither.
 */
export function parseHttpAddress(text: string): Address {
  if (/^\d+$/.test(text.trim())) return parseAddress(`${DEFAULT_HTTP_HOST}:${text.trim()}`);
  return parseAddress(text);
}

/**
 * The running HTTP side.
 *
 * @example
 * ```ts
 * import { serve } from "../server/master.ts";
 * import { type HttpServer, serveHttp } from "./server.ts";
 * const master = await serve({ listen: "127.0.0.1:0", authkey: "abc" });
 * const http: HttpServer = await serveHttp({
 *   source: master,
 *   listen: "127.0.0.1:0",
 *   authkey: new TextEncoder().encode("abc"),
 * });
 * console.log(http.url.startsWith("http://127.0.0.1:")); // true
 * console.log((await http.state()).clients); // 0
 * await http.close();
 * await master.close();
 * ```
 */
export class HttpServer {
  /** The address it listens on. */
  readonly address: Address;
  /** The page's address, e.g. `http://127.0.0.1:8080/`. */
  readonly url: string;
  readonly #source: DashboardSource;
  readonly #guard: Guard;
  readonly #rates: RateTracker;
  readonly #log: Logger;
  readonly #refused = new Map<string, number>();
  readonly #server: Http1Server;
  readonly #sampler: ReturnType<typeof setInterval>;
  #closing: Promise<void> | undefined;

  /** Starts serving; use {@link serveHttp}. */
  constructor(address: Address, options: HttpOptions) {
    this.#source = options.source;
    this.#log = options.logger ?? silentLogger;
    const sampleMs = options.sampleMs ?? DEFAULT_SAMPLE_MS;
    this.#rates = new RateTracker(sampleMs);
    this.#sample();
    this.#sampler = setInterval(() => this.#sample(), sampleMs);
    let listener: StreamListener;
    try {
      listener = options.listener ?? listenHttp(address);
      if (options.nativeAddress !== undefined) {
        listener = refuseNativeClients(listener, options.nativeAddress, this.#log);
      }
    } catch (cause) {
      clearInterval(this.#sampler);
      throw new ConfigError(
        `cannot serve HTTP on ${formatAddress(address)}: ${(cause as Error).message}`,
        { cause },
      );
    }
    try {
      this.#server = new Http1Server({
        listener,
        handler: (request) => this.#handle(request),
        limits: { maxBodyBytes: MAX_BODY_BYTES, ...options.limits },
        logger: this.#log,
        onRefused: (reason) => this.#count(reason),
      });
    } catch (error) {
      clearInterval(this.#sampler);
      listener.close();
      throw error;
    }
    this.address = { hostname: this.#server.addr.hostname, port: this.#server.addr.port };
    const secure = options.tls !== undefined;
    this.url = `${secure ? "https" : "http"}://${formatAddress(this.address)}/`;
    this.#guard = new Guard({
      token: httpToken(options.authkey ?? new Uint8Array(0)),
      address: this.address,
      secure,
    });
  }

  /** The current state, as `GET /api/state` returns it (the first rows by default). */
  state(query: StateQuery = {}): Promise<DashboardState> {
    return takeState(this.#source, this.#rates, Date.now(), query);
  }

  /**
   * Requests refused so far, by reason: by the guard (`origin`, `token`,
   * `content_type`) or by the HTTP server itself (`bad_request`,
   * `header_timeout`, `too_many_connections`, ...).
   */
  get refused(): ReadonlyMap<string, number> {
    return this.#refused;
  }

  /** Number of open HTTP connections. */
  get connectionCount(): number {
    return this.#server.connectionCount;
  }

  #count(reason: string): void {
    this.#refused.set(reason, (this.#refused.get(reason) ?? 0) + 1);
  }

  #sample(): void {
    this.#source.broker.stats().then(
      (stats) => this.#rates.sample(Date.now(), stats.queues),
      (error) => this.#log.warn("could not sample rates", { error: String(error) }),
    );
  }

  async #handle(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const path = url.pathname;
    const originRefusal = this.#guard.checkOrigin(request);
    if (originRefusal) return this.#refuse("origin", originRefusal, request, path);
    const file = STATIC_FILES[path];
    if (file !== undefined || path === "/favicon.ico") {
      if (request.method !== "GET" && request.method !== "HEAD") return notAllowed("GET");
      if (file === undefined) return respond(STATUS_NO_CONTENT, null, {});
      const headers: Record<string, string> = { "content-type": file.type };
      if (path === "/" || path === "/index.html") headers["content-security-policy"] = PAGE_CSP;
      return respond(STATUS_OK, request.method === "HEAD" ? null : file.body, headers);
    }
    const isAction = ACTIONS.has(path);
    const isRead = READS.has(path) || (!isAction && JOB_PATH.test(path));
    if (!isRead && !isAction) return json(STATUS_NOT_FOUND, { error: `no such page: ${path}` });
    const tokenRefusal = this.#guard.checkToken(request);
    if (tokenRefusal) return this.#refuse("token", tokenRefusal, request, path);
    if (isRead && (request.method === "GET" || request.method === "HEAD")) {
      try {
        return await this.#read(path, url.searchParams);
      } catch (error) {
        const refusal = refusalOf(error);
        if (refusal !== undefined) return refusal;
        this.#log.error("http read failed", { path, error: String(error) });
        return json(STATUS_SERVER_ERROR, { error: `not read: ${(error as Error).message}` });
      }
    }
    if (!isAction || request.method !== "POST") {
      return notAllowed([isRead ? "GET" : "", isAction ? "POST" : ""].filter(Boolean).join(", "));
    }
    const typeRefusal = this.#guard.checkAction(request);
    if (typeRefusal) return this.#refuse("content_type", typeRefusal, request, path);
    try {
      const body = await readJson(request);
      const reply = await this.#act(path, body);
      this.#log.info("dashboard action", { action: path, ...reply });
      return json(STATUS_OK, { ok: true, ...reply });
    } catch (error) {
      const refusal = refusalOf(error);
      if (refusal !== undefined) return refusal;
      this.#log.error("dashboard action failed", { action: path, error: String(error) });
      return json(STATUS_SERVER_ERROR, { error: `not done: ${(error as Error).message}` });
    }
  }

  /** Answers a read (its token already checked). */
  async #read(path: string, params: URLSearchParams): Promise<Response> {
    const broker = this.#source.broker;
    checkParams(params, READ_PARAMS[path] ?? []);
    if (path === "/metrics") {
      const [stats, limits] = await Promise.all([broker.stats(), broker.limits()]);
      const oldestReadyAt = await oldestReady(broker, stats.queues);
      const text = renderMetrics({
        stats,
        limits,
        telemetry: broker.telemetry,
        httpRefused: this.#refused,
        oldestReadyAt,
        now: Date.now(),
        process: processFigures(),
      });
      return respond(STATUS_OK, text, { "content-type": METRICS_CONTENT_TYPE });
    }
    if (path === "/api/state") {
      return json(
        STATUS_OK,
        await this.state({
          offset: intParam(params, "offset", 0, MAX_OFFSET),
          limit: intParam(params, "limit", 1, MAX_STATE_QUEUES),
          filter: stringParam(params, "filter", MAX_FILTER_CHARS),
          dead: intParam(params, "dead", 0, DEAD_LIST_LIMIT),
        }),
      );
    }
    if (path === "/api/queues/items") return json(STATUS_OK, await this.#items(params));
    if (path === "/api/dead") return json(STATUS_OK, await this.#dead(params));
    if (path === "/api/sessions") {
      const sessions: ClientRow[] = (await broker.sessions()).map((s) =>
        clientRow(s, MAX_HELD_LISTED)
      );
      return json(STATUS_OK, { sessions });
    }
    if (path === "/api/limits") {
      const named = params.get("queue");
      if (named === null) {
        return json(STATUS_OK, { limits: (await broker.limits()).map(limitsView) });
      }
      const queue = checkQueueName(named);
      const [row] = await broker.limits(queue);
      return json(STATUS_OK, limitsView(row ?? { queue, ...NO_LIMITS }));
    }
    const id = badRequestOn(() => parseJobId((JOB_PATH.exec(path) as RegExpExecArray)[1]));
    const info = await broker.job(id);
    if (info === undefined) {
      throw new BadAction(
        `no job ${id}: unknown, or finished longer ago than the master keeps records ` +
          `(--keep-jobs, --keep-jobs-for)`,
        STATUS_NOT_FOUND,
      );
    }
    return json(STATUS_OK, jobView(info));
  }

  /** `GET /api/queues/items`: a page of one queue's items of one state. */
  async #items(params: URLSearchParams): Promise<ItemsReply> {
    const named = params.get("queue");
    if (named === null) throw new BadAction(`name the queue: ?queue=NAME`);
    const queue = checkQueueName(named);
    const stateText = params.get("state") ?? "ready";
    if (!(LISTED_STATES as readonly string[]).includes(stateText)) {
      throw new BadAction(
        `"state" is one of ${LISTED_STATES.join(", ")}, not ${
          JSON.stringify(stateText.slice(0, 40))
        }`,
      );
    }
    const state = stateText as ListedState;
    const offset = intParam(params, "offset", 0, MAX_OFFSET) ?? 0;
    const limit = intParam(params, "limit", 1, MAX_ITEMS_PAGE) ?? DEFAULT_ITEMS_PAGE;
    const page = await badRequestOnAsync(() =>
      this.#source.broker.items(queue, { state, offset, limit })
    );
    return {
      queue,
      state,
      offset,
      limit,
      total: page.total,
      items: page.items.map((info) => jobView(info, VALUE_PREVIEW_CHARS)),
    };
  }

  /** `GET /api/dead`: a page of the dead letters of one queue or of all. */
  async #dead(params: URLSearchParams): Promise<DeadReply> {
    const broker = this.#source.broker;
    const named = params.get("queue");
    const only = named === null || named === "" ? null : deadQueueOf(checkQueueName(named));
    const offset = intParam(params, "offset", 0, MAX_OFFSET) ?? 0;
    const limit = intParam(params, "limit", 1, MAX_ITEMS_PAGE) ?? DEFAULT_ITEMS_PAGE;
    const stats = await broker.stats();
    const queues: DeadQueueCount[] = stats.queues
      .filter((q) => isDeadLetterQueue(q.name) && q.ready > 0)
      .map((q) => ({
        queue: q.name,
        failedIn: q.name.slice(0, -DEAD_LETTER_SUFFIX.length),
        count: q.ready,
      }))
      .sort((a, b) => a.queue < b.queue ? -1 : a.queue > b.queue ? 1 : 0);
    const items: DeadItem[] = [];
    if (only !== null) {
      const page = await broker.items(only, { state: "ready", offset, limit });
      for (const info of page.items) items.push(deadItem(only, info.id, info.value));
      return { queue: only, offset, limit, total: page.total, items, queues };
    }
    let total = 0;
    let skip = offset;
    for (const q of queues) {
      total += q.count;
      if (items.length >= limit) continue;
      if (skip >= q.count) {
        skip -= q.count;
        continue;
      }
      const page = await broker.items(q.queue, {
        state: "ready",
        offset: skip,
        limit: Math.min(MAX_ITEMS_PAGE, limit - items.length),
      });
      skip = 0;
      for (const info of page.items) items.push(deadItem(q.queue, info.id, info.value));
    }
    return { queue: null, offset, limit, total, items, queues };
  }

  async #act(path: string, body: Record<string, unknown>): Promise<Record<string, unknown>> {
    const broker = this.#source.broker;
    if (path === "/api/jobs/cancel") {
      onlyKeys(body, ["ids"]);
      const outcome = await broker.cancel(checkIds(body.ids));
      return { cancelled: outcome.cancelled, missing: outcome.missing };
    }
    if (path === "/api/sessions/control") {
      onlyKeys(body, ["session", "action"]);
      const session = body.session;
      if (
        typeof session !== "string" || session === "" || session.length > MAX_SESSION_ID_CHARS
      ) {
        throw new BadAction(`"session" must be a session's id (as GET /api/sessions lists it)`);
      }
      const action = body.action;
      if (!(CONTROL_ACTIONS as readonly unknown[]).includes(action)) {
        throw new BadAction(`"action" must be one of ${CONTROL_ACTIONS.join(", ")}`);
      }
      const found = await broker.control(session, action as ControlAction);
      if (!found) {
        throw new BadAction(
          `no session ${JSON.stringify(session)} (gone already?)`,
          STATUS_NOT_FOUND,
        );
      }
      return { session, action, found };
    }
    const queue = checkQueueName(body.queue);
    if (path === "/api/queues/purge") {
      onlyKeys(body, ["queue"]);
      return { queue, purged: await broker.purge(queue) };
    }
    if (path === "/api/limits") {
      const changes = badRequestOn(() => parseLimitChanges(body));
      const limits = await broker.setLimits(queue, changes);
      return { ...limitsView({ ...limits, queue }) };
    }
    if (path === "/api/queues/pause" || path === "/api/queues/resume") {
      onlyKeys(body, ["queue"]);
      if (path.endsWith("pause")) await broker.pause(queue);
      else await broker.resume(queue);
      return { queue, paused: (await broker.stats(queue)).paused.includes(queue) };
    }
    onlyKeys(body, ["queue", "ids", "all"]);
    const deadQueue = deadQueueOf(queue);
    if (body.all !== undefined && body.all !== true) throw new BadAction(`"all" can only be true`);
    if ((body.all === true) === (body.ids !== undefined)) {
      throw new BadAction(`give either "ids" or "all": true`);
    }
    const ids = body.all === true ? "all" : checkIds(body.ids);
    if (path === "/api/dead/requeue") {
      const newIds = await broker.requeueDead(deadQueue, ids);
      if (newIds.length === 0 && ids !== "all") throw notFound();
      return { queue: deadQueue, requeued: newIds.length, ids: newIds };
    }
    const dropped = await broker.drop(deadQueue, ids);
    if (dropped === 0 && ids !== "all") throw notFound();
    return { queue: deadQueue, dropped };
  }

  #refuse(kind: string, refusal: Refusal, request: Request, path: string): Response {
    this.#count(kind);
    this.#log.debug("http request refused", {
      method: request.method,
      path,
      reason: refusal.reason,
    });
    const headers: Record<string, string> = {};
    if (kind === "token") headers["www-authenticate"] = 'Bearer realm="taskq"';
    return json(refusal.status, { error: refusal.reason }, headers);
  }

  /** Stops serving and sampling. Safe to call twice. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      clearInterval(this.#sampler);
      await this.#server.close();
    })();
    return this.#closing;
  }
}

/** The dead-letter queue a route names: `NAME.dead` as given, or `NAME`'s. */
function deadQueueOf(queue: string): string {
  return isDeadLetterQueue(queue) ? queue : deadLetterQueue(queue);
}

/**
 * When the item at the front of each queue with ready items was put, by
 * queue name: a page of one ready item per queue, a batch of queues at a time.
 */
async function oldestReady(
  broker: Broker,
  queues: readonly { name: string; ready: number }[],
): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const withReady = queues.filter((q) => q.ready > 0);
  for (let i = 0; i < withReady.length; i += OLDEST_READY_BATCH) {
    const batch = withReady.slice(i, i + OLDEST_READY_BATCH);
    const pages = await Promise.all(
      batch.map((q) => broker.items(q.name, { state: "ready", limit: 1 })),
    );
    pages.forEach((page, j) => {
      const first = page.items[0];
      if (first !== undefined) out.set(batch[j].name, first.createdAt);
    });
  }
  return out;
}

/** Refuses a parameter not in `allowed`, and any given twice. */
function checkParams(params: URLSearchParams, allowed: readonly string[]): void {
  const seen = new Set<string>();
  for (const name of params.keys()) {
    if (!allowed.includes(name)) {
      const known = allowed.length === 0
        ? "it takes none"
        : `only ${allowed.map((a) => `"${a}"`).join(", ")}`;
      throw new BadAction(`unknown parameter "${name.slice(0, 40)}" (${known})`);
    }
    if (seen.has(name)) throw new BadAction(`name "${name}" once at most`);
    seen.add(name);
  }
}

/** An integer parameter in `[min, max]`, or undefined when absent. */
function intParam(
  params: URLSearchParams,
  name: string,
  min: number,
  max: number,
): number | undefined {
  const text = params.get(name);
  if (text === null) return undefined;
  const value = Number(text);
  if (!/^[0-9]{1,16}$/.test(text) || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new BadAction(`"${name}" must be an integer from ${min} to ${max}`);
  }
  return value;
}

/** A text parameter of at most `max` characters, or undefined when absent. */
function stringParam(params: URLSearchParams, name: string, max: number): string | undefined {
  const text = params.get(name);
  if (text === null) return undefined;
  if (text.length > max) throw new BadAction(`"${name}" must be at most ${max} characters`);
  return text;
}

/** As {@link badRequestOn}, for a check that resolves later. */
async function badRequestOnAsync<T>(check: () => Promise<T>): Promise<T> {
  try {
    return await check();
  } catch (error) {
    if (error instanceof RangeError || error instanceof TypeError) {
      throw new BadAction(error.message);
    }
    throw error;
  }
}

function notFound(): BadAction {
  return new BadAction(
    "no such dead letter here (re-queued, dropped or taken already)",
    STATUS_NOT_FOUND,
  );
}

/** The JSON reply to a request refused for what it asked, or undefined for any other error. */
function refusalOf(error: unknown): Response | undefined {
  if (error instanceof BadAction) return json(error.status, { error: error.message });
  if (error instanceof ProtocolError) return json(STATUS_BAD_REQUEST, { error: error.message });
  return undefined;
}

/** Runs a check of what a client sent, its `RangeError` or `TypeError` becoming a 400. */
function badRequestOn<T>(check: () => T): T {
  try {
    return check();
  } catch (error) {
    if (error instanceof RangeError || error instanceof TypeError) {
      throw new BadAction(error.message);
    }
    throw error;
  }
}

/** The item ids an action names: 1 to {@link MAX_ACTION_IDS} positive integers. */
function checkIds(ids: unknown): number[] {
  if (
    !Array.isArray(ids) || ids.length === 0 || ids.length > MAX_ACTION_IDS ||
    !ids.every((id) => Number.isSafeInteger(id) && id > 0)
  ) {
    throw new BadAction(`"ids" must be 1 to ${MAX_ACTION_IDS} item ids`);
  }
  return ids;
}

function onlyKeys(body: Record<string, unknown>, allowed: string[]): void {
  for (const key of Object.keys(body)) {
    if (!allowed.includes(key)) throw new BadAction(`unknown field "${key.slice(0, 40)}"`);
  }
}

async function readJson(request: Request): Promise<Record<string, unknown>> {
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > MAX_BODY_BYTES) throw new BadAction("body too large", STATUS_TOO_LARGE);
  const reader = request.body?.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (reader !== undefined) {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.length;
      if (size > MAX_BODY_BYTES) {
        await reader.cancel();
        throw new BadAction("body too large", STATUS_TOO_LARGE);
      }
      chunks.push(value);
    }
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  let body: unknown;
  try {
    body = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new BadAction("the body is not valid JSON");
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new BadAction("the body must be a JSON object");
  }
  return body as Record<string, unknown>;
}

function respond(
  status: number,
  body: string | null,
  headers: Record<string, string>,
): Response {
  return new Response(body, { status, headers: { ...COMMON_HEADERS, ...headers } });
}

function json(status: number, value: unknown, headers: Record<string, string> = {}): Response {
  return respond(status, JSON.stringify(value), {
    "content-type": "application/json; charset=utf-8",
    ...headers,
  });
}

function notAllowed(allow: string): Response {
  return json(STATUS_METHOD_NOT_ALLOWED, { error: `use ${allow}` }, { allow });
}

/**
 * Checks that the HTTP side may listen on `listen` with the key it has (or
 * none), before anything is opened; returns the parsed address.
 * @throws {ConfigError} when the address is malformed, or beyond loopback without a key.
 *
 * @example
 * ```ts
 * import { checkHttpAddress } from "./server.ts";
 * import { ConfigError } from "../errors.ts";
 * console.log(checkHttpAddress("8080", undefined)); // { hostname: "127.0.0.1", port: 8080 }
 * try {
 *   checkHttpAddress("0.0.0.0:8080", undefined);
 * } catch (error) {
 *   console.log(error instanceof ConfigError); // true: the token would be public
 * }
 * ```
 */
export function checkHttpAddress(
  listen: string | Address,
  authkey: Uint8Array | undefined,
): Address {
  const address = typeof listen === "string" ? parseHttpAddress(listen) : listen;
  const keyless = authkey === undefined || authkey.length === 0;
  if (keyless && !isLoopback(address.hostname)) {
    throw new ConfigError(
      `refusing to serve HTTP on ${formatAddress(address)} without a key: its token would be ` +
        `public; set TASKQ_AUTHKEY or use --authkey-file, or serve on loopback`,
    );
  }
  return address;
}

/**
 * Starts the HTTP side of a master.
 * @throws {ConfigError} when asked to listen beyond loopback without a key, or
 *   when the address is unusable.
 *
 * @example
 * ```ts
 * import { serve } from "../server/master.ts";
 * import { serveHttp } from "./server.ts";
 * import { httpToken } from "./token.ts";
 * const key = new TextEncoder().encode("abc");
 * const master = await serve({ listen: "127.0.0.1:0", authkey: key });
 * const http = await serveHttp({ source: master, listen: "127.0.0.1:0", authkey: key });
 * const reply = await fetch(`${http.url}metrics`, {
 *   headers: { authorization: `Bearer ${httpToken(key)}` },
 * });
 * console.log(reply.status); // 200
 * await reply.body?.cancel();
 * await http.close();
 * await master.close();
 * ```
 */
export async function serveHttp(options: HttpOptions): Promise<HttpServer> {
  const address = checkHttpAddress(options.listen, options.authkey);
  let listener = options.listener;
  if (listener === undefined && options.tls !== undefined) {
    // Browsers rarely hold client certificates: the HTTP side asks for none
    // (its requests carry the token instead).
    const { clientCa: _notAsked, ...tls } = options.tls;
    listener = await openListener(address, { tls, logger: options.logger });
  }
  return new HttpServer(address, { ...options, listener });
}

/** Options of {@link httpFrontEnd}. */
export interface HttpFrontEndOptions {
  /** `HOST:PORT`, `PORT` (on loopback) or an address; port 0 picks a free one. */
  listen: string | Address;
  /** How often rates are sampled (default 1 s). */
  sampleMs?: number;
  /** Connection cap, size limits and deadlines (see {@link HttpOptions.limits}). */
  limits?: Partial<HttpLimits>;
  /** Serve over TLS with this certificate and key (client certificates are not asked for). */
  tls?: TlsServerOptions;
}

/** The header deadline that {@link HEADER_TIMEOUT_ENV} asks for, if any. */
function headerTimeoutFromEnv(): number | undefined {
  let text: string | undefined;
  try {
    text = Deno.env.get(HEADER_TIMEOUT_ENV);
  } catch {
    return undefined; // no permission to read the environment: not a test
  }
  if (text === undefined || text === "") return undefined;
  const ms = Number(text);
  if (!Number.isSafeInteger(ms) || ms <= 0) {
    throw new ConfigError(`${HEADER_TIMEOUT_ENV} must be a positive number of ms, not "${text}"`);
  }
  return ms;
}

/**
 * The HTTP side as a front-end of the master host (`serve({ frontEnds })`):
 * the dashboard, the JSON API and `/metrics` over the host's broker, with
 * the token derived from the host's key.
 *
 * @example
 * ```ts
 * import { serve } from "../server/master.ts";
 * import { httpFrontEnd } from "./server.ts";
 * const master = await serve({
 *   listen: "127.0.0.1:0",
 *   authkey: "abc",
 *   frontEnds: [httpFrontEnd({ listen: "127.0.0.1:0" })],
 * });
 * const page = await fetch(master.frontEnds[0].address); // the dashboard needs no token
 * console.log(page.headers.get("content-type")); // text/html; charset=utf-8
 * await page.body?.cancel();
 * await master.close();
 * ```
 */
export function httpFrontEnd(options: HttpFrontEndOptions): FrontEndFactory {
  return {
    name: "http",
    check(authkey) {
      checkHttpAddress(options.listen, authkey);
    },
    async start(host) {
      const server = await serveHttp({
        source: host,
        listen: options.listen,
        authkey: host.key,
        logger: host.logger,
        sampleMs: options.sampleMs,
        limits: { headerTimeoutMs: headerTimeoutFromEnv(), ...options.limits },
        tls: options.tls,
        nativeAddress: host.nativeAddress,
      });
      return {
        name: "http",
        address: server.url,
        banner: `taskq http listening on ${server.url}`,
        close: () => server.close(),
      };
    },
  };
}
