/**
 * Every message of the taskq wire protocol, and their strict validation.
 *
 * A message is a msgpack map with an `op` field. Parsing checks every field's
 * presence, type and range and refuses unknown fields, so the engine only ever
 * sees well-formed requests. See docs/PROTOCOL.md for the byte-level view.
 *
 * @module
 */

import { ERROR_CODES, type ErrorCode, ProtocolError } from "../errors.ts";
import { NONCE_BYTES, PROOF_BYTES } from "./auth.ts";
import { checkItem } from "../model/codec.ts";
import type { QueueStats } from "../model/types.ts";
import {
  CONTROL_ACTIONS,
  type ControlAction,
  DEFAULT_ITEMS_PAGE,
  type HeldItem,
  LISTED_STATES,
  type ListedState,
  MAX_HELD_LISTED,
  MAX_ITEMS_PAGE,
  type SessionView,
} from "../model/admin.ts";
import {
  checkLabel,
  checkLimits,
  checkPriority,
  JOB_STATES,
  type JobInfo,
  type JobState,
  type LimitChanges,
  MAX_CONCURRENCY,
  MAX_GROUP_LENGTH,
  MAX_KEY_LENGTH,
  MAX_PROGRESS_MESSAGE,
  MAX_RATE_COUNT,
  type NamedQueueLimits,
  NO_LIMITS,
} from "../model/jobs.ts";
import {
  checkQueueName,
  DEAD_LETTER_SUFFIX,
  isDeadLetterQueue,
  MAX_QUEUE_NAME_LENGTH,
} from "../model/queue_names.ts";

export { checkQueueName, MAX_QUEUE_NAME_LENGTH };

/** Longest client name sent in `hello`. */
export const MAX_CLIENT_NAME_LENGTH = 200;

/** Most items (or ids) in one put, get, ack, nack or extend. */
export const MAX_BATCH = 65_536;

/** Longest duration (timeout, delay, lease) in milliseconds: about 24.8 days. */
export const MAX_DURATION_MS = 2_147_483_647;

/** Longest failure description a worker may attach to a `fail`. */
export const MAX_FAILURE_TEXT = 8192;

/** Most deliveries a put may allow an item. */
export const MAX_ATTEMPTS_LIMIT = 1_000_000;

/** Longest error message text accepted from a peer. */
const MAX_ERROR_TEXT = 4096;

/**
 * Longest session id, client name or address a reply may carry (a holder of
 * a `job` reply, a `sessions` record), and longest session id a `control`
 * request may name.
 */
export const MAX_SESSION_TEXT = 400;

/** Client → master: opens the handshake. */
export interface HelloMessage {
  op: "hello";
  /** Protocol version the client speaks. */
  version: number;
  /** The client's fresh random nonce. */
  nonce: Uint8Array;
  /** Optional human-readable name (e.g. host and pid), shown by the master. */
  name?: string;
}

/** Master → client: the master's nonce. */
export interface ChallengeMessage {
  op: "challenge";
  /** Protocol version the master speaks. */
  version: number;
  /** The master's fresh random nonce. */
  nonce: Uint8Array;
}

/** Client → master: the client's proof of the key. */
export interface AuthMessage {
  op: "auth";
  /** HMAC-SHA256 proof, see auth.ts. */
  proof: Uint8Array;
}

/** Master → client: the client is in; the master's own proof and its limits. */
export interface WelcomeMessage {
  op: "welcome";
  /** The master's HMAC-SHA256 proof. */
  proof: Uint8Array;
  /** Largest frame payload the master accepts. */
  maxFrameBytes: number;
  /** Lease length the master grants when a get names none. */
  leaseMs: number;
}

/** Master → client: a request failed, or the connection is being refused or closed. */
export interface ErrorMessage {
  op: "error";
  /** The failed request's id; absent for errors not tied to a request. */
  rid?: number;
  /** Machine-readable reason. */
  code: ErrorCode;
  /** Human-readable explanation. */
  message: string;
}

/** Adds items to a queue (one item is a batch of one). */
export interface PutRequest {
  op: "put";
  rid: number;
  queue: string;
  items: unknown[];
  /** Milliseconds before the items become ready. */
  delay?: number;
  /** Deliveries allowed before dead-lettering; the queue's policy when absent. */
  maxAttempts?: number;
  /** Priority, −1000 to 1000 (higher served first); 0 when absent. Version 2. */
  priority?: number;
  /** The items' group, for round-robin delivery across groups. Version 2. */
  group?: string;
  /** One unique key (or nil) per item. Version 2. */
  keys?: (string | undefined)[];
  /** How long a key stays taken after its item finished, in ms. Version 2. */
  keyHold?: number;
}

/** Takes up to `max` items, waiting up to `timeout` ms for the first. */
export interface GetRequest {
  op: "get";
  rid: number;
  queue: string;
  max: number;
  timeout: number;
  /** Lease length in ms; the master's default when absent. */
  lease?: number;
}

/**
 * Settles leased items as done; optionally puts one result per id on
 * `resultQueue` in the same step (results of ids not held are dropped).
 */
export interface AckRequest {
  op: "ack";
  rid: number;
  ids: number[];
  /** Queue the results go to; present exactly when `results` is. */
  resultQueue?: string;
  /** One result per id, in the same order. */
  results?: unknown[];
}

/** Returns leased items to their queue, optionally after a delay. */
export interface NackRequest {
  op: "nack";
  rid: number;
  ids: number[];
  delay?: number;
}

/** Reports that work on leased items failed: retried with backoff, or dead-lettered. */
export interface FailRequest {
  op: "fail";
  rid: number;
  ids: number[];
  /** What went wrong, kept with the item (and shown in the dead-letter queue). */
  error: string;
}

/** Renews leases for another `lease` ms from now. */
export interface ExtendRequest {
  op: "extend";
  rid: number;
  ids: number[];
  lease: number;
}

/** Asks for queue statistics (one queue, or all). */
export interface StatsRequest {
  op: "stats";
  rid: number;
  queue?: string;
}

/** Does nothing but answer; for liveness checks. */
export interface PingRequest {
  op: "ping";
  rid: number;
}

/** Cancels items by id, wherever they are (version 2). */
export interface CancelRequest {
  op: "cancel";
  rid: number;
  ids: number[];
}

/** Looks up one item by id (version 2). */
export interface JobRequest {
  op: "job";
  rid: number;
  id: number;
}

/**
 * Reads, and with any of the limit fields changes, a queue's delivery
 * limits (version 2). A zero lifts a limit; an absent field stays as it is.
 */
export interface LimitRequest {
  op: "limit";
  rid: number;
  queue: string;
  /** Most deliveries per `ratePeriod`. */
  rate?: number;
  /** The rate's period in ms (1000 when `rate` comes without it). */
  ratePeriod?: number;
  /** Most items leased at once. */
  concurrency?: number;
  /** Most items of one group leased at once. */
  groupConcurrency?: number;
}

/** Reports a held item's progress and renews its lease (version 2). */
export interface ProgressRequest {
  op: "progress";
  rid: number;
  id: number;
  /** How far along, 0–100. */
  percent?: number;
  /** What the job is doing. */
  message?: string;
  /** Lease length from now, in ms; the master's default when absent. */
  lease?: number;
}

/**
 * Lists a page of a queue's ready, delayed or leased items without taking
 * them (version 3).
 */
export interface ItemsRequest {
  op: "items";
  rid: number;
  queue: string;
  state: ListedState;
  /** How many to skip; 0 when absent. */
  offset?: number;
  /** How many to list, 1 to {@link MAX_ITEMS_PAGE}; {@link DEFAULT_ITEMS_PAGE} when absent. */
  limit?: number;
}

/**
 * Moves dead letters of a dead-letter queue (`NAME.dead`) back to the queue
 * they failed in, as new items: those of `ids`, or `all` of them (exactly one
 * of the two; version 3).
 */
export interface RequeueRequest {
  op: "requeue";
  rid: number;
  /** The dead-letter queue, `NAME.dead`. */
  queue: string;
  ids?: number[];
  all?: true;
}

/**
 * Removes ready items of a queue for good: those of `ids`, or `all` of them
 * (exactly one of the two; version 3).
 */
export interface DropRequest {
  op: "drop";
  rid: number;
  queue: string;
  ids?: number[];
  all?: true;
}

/** Removes every ready and delayed item of a queue (version 3). */
export interface PurgeRequest {
  op: "purge";
  rid: number;
  queue: string;
}

/** Lists the master's connected sessions and what each holds (version 3). */
export interface SessionsRequest {
  op: "sessions";
  rid: number;
}

/** Asks one session's client to go quiet or stop (version 3). */
export interface ControlRequest {
  op: "control";
  rid: number;
  /** The session's id, as `sessions` lists it. */
  session: string;
  action: ControlAction;
}

/** Any request a client may send after the handshake. */
export type Request =
  | PutRequest
  | GetRequest
  | AckRequest
  | NackRequest
  | FailRequest
  | ExtendRequest
  | StatsRequest
  | PingRequest
  | CancelRequest
  | JobRequest
  | LimitRequest
  | ProgressRequest
  | ItemsRequest
  | RequeueRequest
  | DropRequest
  | PurgeRequest
  | SessionsRequest
  | ControlRequest;

/** The ops a connection may send only once it speaks version 2 or later. */
export const VERSION_2_OPS: ReadonlySet<string> = new Set(["cancel", "job", "limit", "progress"]);

/** The `put` fields a connection may send only once it speaks version 2 or later. */
export const VERSION_2_PUT_FIELDS: readonly string[] = ["priority", "group", "keys", "keyHold"];

/** The ops a connection may send only once it speaks version 3 or later. */
export const VERSION_3_OPS: ReadonlySet<string> = new Set([
  "items",
  "requeue",
  "drop",
  "purge",
  "sessions",
  "control",
]);

/** Any message a client may send. */
export type ClientMessage = HelloMessage | AuthMessage | Request;

/** One leased item as delivered by a get. */
export interface JobRecord {
  id: number;
  /** 1 on first delivery, +1 on each redelivery. */
  attempt: number;
  value: unknown;
}

/** Statistics of one queue, as the `stats` reply carries them (see docs/PROTOCOL.md §8.3). */
export type { QueueStats };

/** One item a session holds, as a {@link SessionRecord} lists it (version 3). */
export type HeldItemRecord = HeldItem;

/** One connected session, as the `sessions` reply lists it (version 3). */
export type SessionRecord = SessionView;

export type { ControlAction, ListedState };
export { CONTROL_ACTIONS, DEFAULT_ITEMS_PAGE, LISTED_STATES, MAX_HELD_LISTED, MAX_ITEMS_PAGE };

/** Master → client: a request succeeded. Which fields are present depends on the request. */
export interface OkReply {
  op: "ok";
  rid: number;
  /** put: the new items' ids, in order. */
  ids?: number[];
  /** get: the leased items (empty when the timeout passed). */
  jobs?: JobRecord[];
  /** ack, nack, fail, extend: the ids whose lease this connection did not hold. */
  failed?: number[];
  /** stats: per-queue statistics. */
  queues?: QueueStats[];
  /** stats: authenticated connections. */
  clients?: number;
  /** put (version 2): indexes into `ids` of items that added nothing (their key was taken). */
  existing?: number[];
  /** cancel (version 2): the ids cancelled. */
  cancelled?: number[];
  /** job (version 2): the item; absent when no such item is known. */
  job?: JobInfo;
  /** limit (version 2): the queue's limits now in force. */
  limits?: NamedQueueLimits;
  /** items (version 3): the page of items listed, in the state's order. */
  items?: JobInfo[];
  /** items (version 3): how many items of that state the queue holds. */
  total?: number;
  /** drop, purge (version 3): how many items were removed. */
  count?: number;
  /** sessions (version 3): the connected sessions. */
  sessions?: SessionRecord[];
  /** control (version 3): whether the session was found (and told). */
  found?: boolean;
}

/**
 * Master → client, unasked (version 2): held items were cancelled; their
 * leases are already revoked, so work on them should stop.
 */
export interface CancelledNotice {
  op: "cancelled";
  ids: number[];
}

/**
 * Master → client, unasked (version 3): an operator asked this connection's
 * client to go quiet or stop (`taskq quiet`, `taskq stop`, the dashboard).
 */
export interface ControlNotice {
  op: "control";
  action: ControlAction;
}

/** Any message a master may send. */
export type ServerMessage =
  | ChallengeMessage
  | WelcomeMessage
  | ErrorMessage
  | OkReply
  | CancelledNotice
  | ControlNotice;

// ---------------------------------------------------------------- validation

type Fields = Record<string, unknown>;

function fail(message: string): never {
  throw new ProtocolError(message, "bad_request");
}

function asMap(value: unknown): Fields {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    fail("message must be a msgpack map");
  }
  if (value instanceof Uint8Array || value instanceof Date) fail("message must be a msgpack map");
  return value as Fields;
}

function onlyFields(msg: Fields, allowed: ReadonlySet<string>): void {
  for (const key in msg) {
    if (!allowed.has(key)) {
      fail(`"${String(msg.op).slice(0, 40)}" message has unknown field "${key.slice(0, 40)}"`);
    }
  }
}

function uint(msg: Fields, key: string, max = Number.MAX_SAFE_INTEGER): number {
  const value = msg[key];
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > max) {
    fail(`"${msg.op}" field "${key}" must be an integer from 0 to ${max}`);
  }
  return value;
}

function optUint(msg: Fields, key: string, max?: number): number | undefined {
  return msg[key] === undefined ? undefined : uint(msg, key, max);
}

function bytes(msg: Fields, key: string, length: number): Uint8Array {
  const value = msg[key];
  if (!(value instanceof Uint8Array) || value.length !== length) {
    fail(`"${msg.op}" field "${key}" must be ${length} bytes of binary`);
  }
  return value;
}

function text(msg: Fields, key: string, maxLength: number): string {
  const value = msg[key];
  if (typeof value !== "string" || value.length > maxLength) {
    fail(`"${msg.op}" field "${key}" must be a string of at most ${maxLength} characters`);
  }
  return value;
}

function queue(msg: Fields): string {
  if (msg.queue === undefined) fail(`"${msg.op}" needs a "queue" field`);
  return checkQueueName(msg.queue);
}

function list(msg: Fields, key: string, min: number): unknown[] {
  const value = msg[key];
  if (!Array.isArray(value) || value.length < min || value.length > MAX_BATCH) {
    fail(`"${msg.op}" field "${key}" must be an array of ${min}–${MAX_BATCH} elements`);
  }
  return value;
}

/** A list of items, each checked against the item nesting limit. */
function items(msg: Fields, key: string, min: number): unknown[] {
  const values = list(msg, key, min);
  for (const value of values) checkItem(value);
  return values;
}

function ids(msg: Fields, key: string, min: number): number[] {
  const values = list(msg, key, min);
  for (const id of values) {
    if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0) {
      fail(`"${msg.op}" field "${key}" must hold non-negative integer ids`);
    }
  }
  return values as number[];
}

/** A field checked by a model check (which throws `RangeError`), as a protocol error. */
function field<T>(msg: Fields, key: string, check: (value: unknown) => T): T {
  try {
    return check(msg[key]);
  } catch (error) {
    return fail(`"${msg.op}" field "${key}": ${(error as Error).message}`);
  }
}

/** One unique key (or nil) per item. */
function keys(msg: Fields, count: number): (string | undefined)[] {
  const values = list(msg, "keys", count);
  if (values.length !== count) fail(`"${msg.op}" needs exactly one key (or nil) per item`);
  const out = new Array<string | undefined>(count);
  for (let i = 0; i < count; i++) {
    const key = values[i];
    out[i] = key === null || key === undefined
      ? undefined
      : field({ op: msg.op, key }, "key", (v) => checkLabel(v, "key", MAX_KEY_LENGTH));
  }
  return out;
}

/** A percentage: a number from 0 to 100 (fractions allowed). */
function optPercent(msg: Fields, key: string): number | undefined {
  const value = msg[key];
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0 || value > 100) {
    fail(`"${msg.op}" field "${key}" must be a number from 0 to 100`);
  }
  return value;
}

/** A time in ms since the epoch. */
function time(msg: Fields, key: string): number {
  return uint(msg, key);
}

/** A string field that must be one of `choices`. */
function oneOf<T extends string>(msg: Fields, key: string, choices: readonly T[]): T {
  const value = msg[key];
  if (typeof value !== "string" || !choices.includes(value as T)) {
    fail(`"${msg.op}" field "${key}" must be one of ${choices.map((c) => `"${c}"`).join(", ")}`);
  }
  return value as T;
}

/**
 * The items a `requeue` or `drop` names: exactly one of `ids` (1 to
 * {@link MAX_BATCH} ids) and `all` (true).
 */
function idsOrAll(msg: Fields): { ids: number[] } | { all: true } {
  const hasIds = msg.ids !== undefined;
  const hasAll = msg.all !== undefined;
  if (hasIds === hasAll) fail(`"${msg.op}" needs exactly one of "ids" and "all"`);
  if (hasAll) {
    if (msg.all !== true) fail(`"${msg.op}" field "all" must be true (give "ids" otherwise)`);
    return { all: true };
  }
  return { ids: ids(msg, "ids", 1) };
}

const fieldSets = (...names: string[]) => new Set(["op", ...names]);
const HELLO_FIELDS = fieldSets("version", "nonce", "name");
const CHALLENGE_FIELDS = fieldSets("version", "nonce");
const AUTH_FIELDS = fieldSets("proof");
const WELCOME_FIELDS = fieldSets("proof", "maxFrameBytes", "leaseMs");
const ERROR_FIELDS = fieldSets("rid", "code", "message");
const PUT_FIELDS = fieldSets(
  "rid",
  "queue",
  "items",
  "delay",
  "maxAttempts",
  "priority",
  "group",
  "keys",
  "keyHold",
);
const GET_FIELDS = fieldSets("rid", "queue", "max", "timeout", "lease");
const ACK_FIELDS = fieldSets("rid", "ids", "resultQueue", "results");
const NACK_FIELDS = fieldSets("rid", "ids", "delay");
const FAIL_FIELDS = fieldSets("rid", "ids", "error");
const EXTEND_FIELDS = fieldSets("rid", "ids", "lease");
const STATS_FIELDS = fieldSets("rid", "queue");
const PING_FIELDS = fieldSets("rid");
const CANCEL_FIELDS = fieldSets("rid", "ids");
const JOB_REQUEST_FIELDS = fieldSets("rid", "id");
const LIMIT_FIELDS = fieldSets(
  "rid",
  "queue",
  "rate",
  "ratePeriod",
  "concurrency",
  "groupConcurrency",
);
const PROGRESS_FIELDS = fieldSets("rid", "id", "percent", "message", "lease");
const ITEMS_FIELDS = fieldSets("rid", "queue", "state", "offset", "limit");
const REQUEUE_FIELDS = fieldSets("rid", "queue", "ids", "all");
const DROP_FIELDS = REQUEUE_FIELDS;
const PURGE_FIELDS = fieldSets("rid", "queue");
const SESSIONS_FIELDS = fieldSets("rid");
const CONTROL_FIELDS = fieldSets("rid", "session", "action");
const CONTROL_NOTICE_FIELDS = fieldSets("action");
const OK_FIELDS = fieldSets(
  "rid",
  "ids",
  "jobs",
  "failed",
  "queues",
  "clients",
  "existing",
  "cancelled",
  "job",
  "limits",
  "items",
  "total",
  "count",
  "sessions",
  "found",
);
const CANCELLED_FIELDS = fieldSets("ids");
const JOB_INFO_FIELDS = new Set([
  "id",
  "queue",
  "state",
  "attempts",
  "priority",
  "group",
  "key",
  "value",
  "error",
  "result",
  "progress",
  "createdAt",
  "readyAt",
  "leasedAt",
  "leaseExpiresAt",
  "holder",
  "finishedAt",
]);
const JOB_TIME_FIELDS = ["readyAt", "leasedAt", "leaseExpiresAt", "finishedAt"] as const;
const PROGRESS_INFO_FIELDS = new Set(["percent", "message", "at"]);
const HOLDER_FIELDS = new Set(["session", "name", "address"]);
const LIMITS_FIELDS = new Set([
  "queue",
  "rateCount",
  "ratePeriodMs",
  "concurrency",
  "groupConcurrency",
]);
const SESSION_RECORD_FIELDS = new Set([
  "id",
  "name",
  "address",
  "connectedAt",
  "lastSeenAt",
  "leased",
  "waiting",
  "holding",
  "controlled",
]);
const HELD_ITEM_FIELDS = new Set(["id", "queue", "leasedAt", "leaseExpiresAt"]);
const JOB_FIELDS = new Set(["id", "attempt", "value"]);
const STATS_NUMBER_FIELDS = [
  "ready",
  "leased",
  "delayed",
  "waiting",
  "put",
  "acked",
  "nacked",
  "expired",
  "failed",
  "dead",
] as const;
const QUEUE_STATS_FIELDS = new Set(["name", ...STATS_NUMBER_FIELDS]);

/**
 * Validates a message received by the master.
 * @throws {ProtocolError} naming the first problem found.
 */
export function parseClientMessage(value: unknown): ClientMessage {
  const msg = asMap(value);
  switch (msg.op) {
    case "hello": {
      onlyFields(msg, HELLO_FIELDS);
      const hello: HelloMessage = {
        op: "hello",
        version: uint(msg, "version"),
        nonce: bytes(msg, "nonce", NONCE_BYTES),
      };
      if (msg.name !== undefined) hello.name = text(msg, "name", MAX_CLIENT_NAME_LENGTH);
      return hello;
    }
    case "auth":
      onlyFields(msg, AUTH_FIELDS);
      return { op: "auth", proof: bytes(msg, "proof", PROOF_BYTES) };
    case "put": {
      onlyFields(msg, PUT_FIELDS);
      const put: PutRequest = {
        op: "put",
        rid: uint(msg, "rid"),
        queue: queue(msg),
        items: items(msg, "items", 1),
      };
      const delay = optUint(msg, "delay", MAX_DURATION_MS);
      if (delay !== undefined) put.delay = delay;
      const maxAttempts = optUint(msg, "maxAttempts", MAX_ATTEMPTS_LIMIT);
      if (maxAttempts !== undefined) put.maxAttempts = maxAttempts;
      if (msg.priority !== undefined) put.priority = field(msg, "priority", checkPriority);
      if (msg.group !== undefined) {
        put.group = field(msg, "group", (v) => checkLabel(v, "group", MAX_GROUP_LENGTH));
      }
      if (msg.keys !== undefined) put.keys = keys(msg, put.items.length);
      const keyHold = optUint(msg, "keyHold", MAX_DURATION_MS);
      if (keyHold !== undefined) {
        if (put.keys === undefined) fail(`"put" field "keyHold" needs "keys"`);
        put.keyHold = keyHold;
      }
      return put;
    }
    case "get": {
      onlyFields(msg, GET_FIELDS);
      const get: GetRequest = {
        op: "get",
        rid: uint(msg, "rid"),
        queue: queue(msg),
        max: uint(msg, "max", MAX_BATCH),
        timeout: uint(msg, "timeout", MAX_DURATION_MS),
      };
      if (get.max === 0) fail(`"get" field "max" must be at least 1`);
      const lease = optUint(msg, "lease", MAX_DURATION_MS);
      if (lease !== undefined) get.lease = lease;
      return get;
    }
    case "ack": {
      onlyFields(msg, ACK_FIELDS);
      const ack: AckRequest = { op: "ack", rid: uint(msg, "rid"), ids: ids(msg, "ids", 1) };
      if (msg.results !== undefined || msg.resultQueue !== undefined) {
        if (msg.resultQueue === undefined) fail(`"ack" with "results" needs "resultQueue"`);
        ack.resultQueue = checkQueueName(msg.resultQueue);
        ack.results = items(msg, "results", ack.ids.length);
        if (ack.results.length !== ack.ids.length) {
          fail(`"ack" needs exactly one result per id`);
        }
      }
      return ack;
    }
    case "nack": {
      onlyFields(msg, NACK_FIELDS);
      const nack: NackRequest = { op: "nack", rid: uint(msg, "rid"), ids: ids(msg, "ids", 1) };
      const delay = optUint(msg, "delay", MAX_DURATION_MS);
      if (delay !== undefined) nack.delay = delay;
      return nack;
    }
    case "fail":
      onlyFields(msg, FAIL_FIELDS);
      return {
        op: "fail",
        rid: uint(msg, "rid"),
        ids: ids(msg, "ids", 1),
        error: text(msg, "error", MAX_FAILURE_TEXT),
      };
    case "extend":
      onlyFields(msg, EXTEND_FIELDS);
      return {
        op: "extend",
        rid: uint(msg, "rid"),
        ids: ids(msg, "ids", 1),
        lease: uint(msg, "lease", MAX_DURATION_MS),
      };
    case "stats": {
      onlyFields(msg, STATS_FIELDS);
      const stats: StatsRequest = { op: "stats", rid: uint(msg, "rid") };
      if (msg.queue !== undefined) stats.queue = queue(msg);
      return stats;
    }
    case "ping":
      onlyFields(msg, PING_FIELDS);
      return { op: "ping", rid: uint(msg, "rid") };
    case "cancel":
      onlyFields(msg, CANCEL_FIELDS);
      return { op: "cancel", rid: uint(msg, "rid"), ids: ids(msg, "ids", 1) };
    case "job":
      onlyFields(msg, JOB_REQUEST_FIELDS);
      return { op: "job", rid: uint(msg, "rid"), id: uint(msg, "id") };
    case "limit": {
      onlyFields(msg, LIMIT_FIELDS);
      const limit: LimitRequest = { op: "limit", rid: uint(msg, "rid"), queue: queue(msg) };
      const rate = optUint(msg, "rate", MAX_RATE_COUNT);
      if (rate !== undefined) limit.rate = rate;
      const period = optUint(msg, "ratePeriod", MAX_DURATION_MS);
      if (period !== undefined) {
        if (period === 0) fail(`"limit" field "ratePeriod" must be at least 1`);
        limit.ratePeriod = period;
      }
      const concurrency = optUint(msg, "concurrency", MAX_CONCURRENCY);
      if (concurrency !== undefined) limit.concurrency = concurrency;
      const perGroup = optUint(msg, "groupConcurrency", MAX_CONCURRENCY);
      if (perGroup !== undefined) limit.groupConcurrency = perGroup;
      return limit;
    }
    case "progress": {
      onlyFields(msg, PROGRESS_FIELDS);
      const progress: ProgressRequest = {
        op: "progress",
        rid: uint(msg, "rid"),
        id: uint(msg, "id"),
      };
      const percent = optPercent(msg, "percent");
      if (percent !== undefined) progress.percent = percent;
      if (msg.message !== undefined) progress.message = text(msg, "message", MAX_PROGRESS_MESSAGE);
      const lease = optUint(msg, "lease", MAX_DURATION_MS);
      if (lease !== undefined) progress.lease = lease;
      return progress;
    }
    case "items": {
      onlyFields(msg, ITEMS_FIELDS);
      const items: ItemsRequest = {
        op: "items",
        rid: uint(msg, "rid"),
        queue: queue(msg),
        state: oneOf(msg, "state", LISTED_STATES),
      };
      const offset = optUint(msg, "offset");
      if (offset !== undefined) items.offset = offset;
      const limit = optUint(msg, "limit", MAX_ITEMS_PAGE);
      if (limit !== undefined) {
        if (limit === 0) fail(`"items" field "limit" must be from 1 to ${MAX_ITEMS_PAGE}`);
        items.limit = limit;
      }
      return items;
    }
    case "requeue": {
      onlyFields(msg, REQUEUE_FIELDS);
      const rid = uint(msg, "rid");
      const name = queue(msg);
      if (!isDeadLetterQueue(name)) {
        fail(`"requeue" field "queue" must name a dead-letter queue (NAME${DEAD_LETTER_SUFFIX})`);
      }
      return { op: "requeue", rid, queue: name, ...idsOrAll(msg) };
    }
    case "drop":
      onlyFields(msg, DROP_FIELDS);
      return { op: "drop", rid: uint(msg, "rid"), queue: queue(msg), ...idsOrAll(msg) };
    case "purge":
      onlyFields(msg, PURGE_FIELDS);
      return { op: "purge", rid: uint(msg, "rid"), queue: queue(msg) };
    case "sessions":
      onlyFields(msg, SESSIONS_FIELDS);
      return { op: "sessions", rid: uint(msg, "rid") };
    case "control": {
      onlyFields(msg, CONTROL_FIELDS);
      const rid = uint(msg, "rid");
      const session = text(msg, "session", MAX_SESSION_TEXT);
      if (session.length === 0) fail(`"control" field "session" must not be empty`);
      return { op: "control", rid, session, action: oneOf(msg, "action", CONTROL_ACTIONS) };
    }
    default:
      return fail(
        typeof msg.op === "string"
          ? `unknown message op "${msg.op.slice(0, 40)}"`
          : `message needs a string "op" field`,
      );
  }
}

function parseJob(value: unknown): JobRecord {
  const job = asMap(value);
  for (const key in job) if (!JOB_FIELDS.has(key)) fail(`job has unknown field "${key}"`);
  if (!("value" in job)) fail(`job needs a "value" field`);
  return { id: uint(job, "id"), attempt: uint(job, "attempt"), value: job.value };
}

function parseQueueStats(value: unknown): QueueStats {
  const stats = asMap(value);
  for (const key in stats) {
    if (!QUEUE_STATS_FIELDS.has(key)) fail(`queue stats have unknown field "${key}"`);
  }
  const out = { name: checkQueueName(stats.name) } as QueueStats;
  for (const key of STATS_NUMBER_FIELDS) out[key] = uint(stats, key);
  return out;
}

/**
 * A map nested in a reply, checked for unknown fields, as a copy whose `op`
 * names it in error messages (the decoded value is left as it was).
 */
function nested(value: unknown, what: string, allowed: ReadonlySet<string>): Fields {
  const map = asMap(value);
  for (const key in map) if (!allowed.has(key)) fail(`${what} has unknown field "${key}"`);
  return { ...map, op: what };
}

function parseJobInfo(value: unknown): JobInfo {
  const job = nested(value, "job info", JOB_INFO_FIELDS);
  const state = job.state;
  if (typeof state !== "string" || !JOB_STATES.includes(state as JobState)) {
    fail(`job info has an unknown state`);
  }
  const info: JobInfo = {
    id: uint(job, "id"),
    queue: checkQueueName(job.queue),
    state: state as JobState,
    attempts: uint(job, "attempts"),
    priority: field(job, "priority", checkPriority),
    createdAt: time(job, "createdAt"),
  };
  if (job.group !== undefined) {
    info.group = field(job, "group", (v) => checkLabel(v, "group", MAX_GROUP_LENGTH));
  }
  if (job.key !== undefined) {
    info.key = field(job, "key", (v) => checkLabel(v, "key", MAX_KEY_LENGTH));
  }
  if ("value" in job) info.value = job.value;
  if ("result" in job) info.result = job.result;
  if (job.error !== undefined) info.error = text(job, "error", MAX_FAILURE_TEXT);
  for (const key of JOB_TIME_FIELDS) if (job[key] !== undefined) info[key] = time(job, key);
  if (job.progress !== undefined) {
    const progress = nested(job.progress, "progress", PROGRESS_INFO_FIELDS);
    info.progress = { at: time(progress, "at") };
    const percent = optPercent(progress, "percent");
    if (percent !== undefined) info.progress.percent = percent;
    if (progress.message !== undefined) {
      info.progress.message = text(progress, "message", MAX_PROGRESS_MESSAGE);
    }
  }
  if (job.holder !== undefined) {
    const holder = nested(job.holder, "holder", HOLDER_FIELDS);
    info.holder = {
      session: text(holder, "session", MAX_SESSION_TEXT),
      name: text(holder, "name", MAX_SESSION_TEXT),
      address: text(holder, "address", MAX_SESSION_TEXT),
    };
  }
  return info;
}

function parseHeldItem(value: unknown): HeldItemRecord {
  const held = nested(value, "held item", HELD_ITEM_FIELDS);
  return {
    id: uint(held, "id"),
    queue: checkQueueName(held.queue),
    leasedAt: time(held, "leasedAt"),
    leaseExpiresAt: time(held, "leaseExpiresAt"),
  };
}

function parseSessionRecord(value: unknown): SessionRecord {
  const session = nested(value, "session record", SESSION_RECORD_FIELDS);
  const holding = list(session, "holding", 0);
  if (holding.length > MAX_HELD_LISTED) {
    fail(`session record field "holding" lists more than ${MAX_HELD_LISTED} items`);
  }
  const record: SessionRecord = {
    id: text(session, "id", MAX_SESSION_TEXT),
    name: text(session, "name", MAX_SESSION_TEXT),
    address: text(session, "address", MAX_SESSION_TEXT),
    connectedAt: time(session, "connectedAt"),
    lastSeenAt: time(session, "lastSeenAt"),
    leased: uint(session, "leased"),
    waiting: uint(session, "waiting"),
    holding: holding.map(parseHeldItem),
  };
  if (session.controlled !== undefined) {
    record.controlled = oneOf(session, "controlled", CONTROL_ACTIONS);
  }
  return record;
}

function parseLimits(value: unknown): NamedQueueLimits {
  const limits = nested(value, "limits", LIMITS_FIELDS);
  const out: NamedQueueLimits = {
    queue: checkQueueName(limits.queue),
    rateCount: uint(limits, "rateCount", MAX_RATE_COUNT),
    ratePeriodMs: uint(limits, "ratePeriodMs", MAX_DURATION_MS),
    concurrency: uint(limits, "concurrency", MAX_CONCURRENCY),
    groupConcurrency: uint(limits, "groupConcurrency", MAX_CONCURRENCY),
  };
  if (out.ratePeriodMs === 0) fail(`limits field "ratePeriodMs" must be at least 1`);
  return out;
}

/**
 * The limit changes a `limit` request asks for (none: it only reads).
 *
 * @example
 * ```ts
 * import { limitChanges } from "./messages.ts";
 * console.log(limitChanges({ op: "limit", rid: 1, queue: "q", rate: 50 }));
 * // { rateCount: 50, ratePeriodMs: 1000 }
 * ```
 */
export function limitChanges(msg: LimitRequest): LimitChanges {
  const changes: LimitChanges = {};
  if (msg.rate !== undefined) {
    changes.rateCount = msg.rate;
    changes.ratePeriodMs = msg.ratePeriod ?? NO_LIMITS.ratePeriodMs;
  } else if (msg.ratePeriod !== undefined) {
    changes.ratePeriodMs = msg.ratePeriod;
  }
  if (msg.concurrency !== undefined) changes.concurrency = msg.concurrency;
  if (msg.groupConcurrency !== undefined) changes.groupConcurrency = msg.groupConcurrency;
  return checkLimits(changes);
}

/**
 * Validates a message received by a client.
 * @throws {ProtocolError} naming the first problem found.
 */
export function parseServerMessage(value: unknown): ServerMessage {
  const msg = asMap(value);
  switch (msg.op) {
    case "ok": {
      onlyFields(msg, OK_FIELDS);
      const ok: OkReply = { op: "ok", rid: uint(msg, "rid") };
      if (msg.ids !== undefined) ok.ids = ids(msg, "ids", 0);
      if (msg.failed !== undefined) ok.failed = ids(msg, "failed", 0);
      if (msg.jobs !== undefined) ok.jobs = list(msg, "jobs", 0).map(parseJob);
      if (msg.queues !== undefined) ok.queues = list(msg, "queues", 0).map(parseQueueStats);
      if (msg.clients !== undefined) ok.clients = uint(msg, "clients");
      if (msg.existing !== undefined) ok.existing = ids(msg, "existing", 0);
      if (msg.cancelled !== undefined) ok.cancelled = ids(msg, "cancelled", 0);
      if (msg.job !== undefined) ok.job = parseJobInfo(msg.job);
      if (msg.limits !== undefined) ok.limits = parseLimits(msg.limits);
      if (msg.items !== undefined) {
        const items = list(msg, "items", 0);
        if (items.length > MAX_ITEMS_PAGE) {
          fail(`"ok" field "items" lists more than ${MAX_ITEMS_PAGE} items`);
        }
        ok.items = items.map(parseJobInfo);
      }
      if (msg.total !== undefined) ok.total = uint(msg, "total");
      if (msg.count !== undefined) ok.count = uint(msg, "count");
      if (msg.sessions !== undefined) {
        ok.sessions = list(msg, "sessions", 0).map(parseSessionRecord);
      }
      if (msg.found !== undefined) {
        if (typeof msg.found !== "boolean") fail(`"ok" field "found" must be a boolean`);
        ok.found = msg.found;
      }
      return ok;
    }
    case "cancelled":
      onlyFields(msg, CANCELLED_FIELDS);
      return { op: "cancelled", ids: ids(msg, "ids", 1) };
    case "control":
      onlyFields(msg, CONTROL_NOTICE_FIELDS);
      return { op: "control", action: oneOf(msg, "action", CONTROL_ACTIONS) };
    case "error": {
      onlyFields(msg, ERROR_FIELDS);
      const code = msg.code;
      if (typeof code !== "string" || !ERROR_CODES.has(code)) fail(`"error" has an unknown code`);
      const error: ErrorMessage = {
        op: "error",
        code: code as ErrorCode,
        message: text(msg, "message", MAX_ERROR_TEXT),
      };
      if (msg.rid !== undefined) error.rid = uint(msg, "rid");
      return error;
    }
    case "challenge":
      onlyFields(msg, CHALLENGE_FIELDS);
      return {
        op: "challenge",
        version: uint(msg, "version"),
        nonce: bytes(msg, "nonce", NONCE_BYTES),
      };
    case "welcome":
      onlyFields(msg, WELCOME_FIELDS);
      return {
        op: "welcome",
        proof: bytes(msg, "proof", PROOF_BYTES),
        maxFrameBytes: uint(msg, "maxFrameBytes"),
        leaseMs: uint(msg, "leaseMs", MAX_DURATION_MS),
      };
    default:
      return fail(`unknown reply op "${String(msg.op).slice(0, 40)}"`);
  }
}
