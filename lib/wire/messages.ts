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
import { checkQueueName, MAX_QUEUE_NAME_LENGTH } from "../model/queue_names.ts";

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

/** Any request a client may send after the handshake. */
export type Request =
  | PutRequest
  | GetRequest
  | AckRequest
  | NackRequest
  | FailRequest
  | ExtendRequest
  | StatsRequest
  | PingRequest;

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
}

/** Any message a master may send. */
export type ServerMessage = ChallengeMessage | WelcomeMessage | ErrorMessage | OkReply;

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

const fieldSets = (...names: string[]) => new Set(["op", ...names]);
const HELLO_FIELDS = fieldSets("version", "nonce", "name");
const CHALLENGE_FIELDS = fieldSets("version", "nonce");
const AUTH_FIELDS = fieldSets("proof");
const WELCOME_FIELDS = fieldSets("proof", "maxFrameBytes", "leaseMs");
const ERROR_FIELDS = fieldSets("rid", "code", "message");
const PUT_FIELDS = fieldSets("rid", "queue", "items", "delay", "maxAttempts");
const GET_FIELDS = fieldSets("rid", "queue", "max", "timeout", "lease");
const ACK_FIELDS = fieldSets("rid", "ids", "resultQueue", "results");
const NACK_FIELDS = fieldSets("rid", "ids", "delay");
const FAIL_FIELDS = fieldSets("rid", "ids", "error");
const EXTEND_FIELDS = fieldSets("rid", "ids", "lease");
const STATS_FIELDS = fieldSets("rid", "queue");
const PING_FIELDS = fieldSets("rid");
const OK_FIELDS = fieldSets("rid", "ids", "jobs", "failed", "queues", "clients");
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
      return ok;
    }
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
