/**
 * What the operations side reads and asks of a master, shared by the broker,
 * the wire and every front-end: pages of a queue's live items, the sessions
 * and what each holds, and the actions a session's client can be asked to
 * take.
 *
 * @example
 * ```ts
 * import { CONTROL_ACTIONS, LISTED_STATES, MAX_ITEMS_PAGE } from "./admin.ts";
 * console.log(LISTED_STATES.join(" "), CONTROL_ACTIONS.join(" "), MAX_ITEMS_PAGE);
 * // ready delayed leased quiet stop 500
 * ```
 *
 * @module
 */

import type { JobInfo } from "./jobs.ts";

/**
 * What a session's client is asked to do: `quiet` stops it taking work (it
 * finishes what it holds, then exits), `stop` stops it as SIGTERM would.
 */
export type ControlAction = "quiet" | "stop";

/** Every {@link ControlAction}. */
export const CONTROL_ACTIONS: readonly ControlAction[] = ["quiet", "stop"];

/** Most held items a {@link SessionView} lists (oldest lease first). */
export const MAX_HELD_LISTED = 100;

/** One item a session holds a lease on, as {@link SessionView.holding} lists it. */
export interface HeldItem {
  /** The item's id. */
  id: number;
  /** Its queue. */
  queue: string;
  /** When its current lease began (ms since the epoch). */
  leasedAt: number;
  /** When its current lease runs out (ms since the epoch). */
  leaseExpiresAt: number;
}

/**
 * Which live items a page lists: `ready` in serve order, `delayed` by when
 * they become ready, `leased` by when their lease began.
 */
export type ListedState = "ready" | "delayed" | "leased";

/** Every {@link ListedState}. */
export const LISTED_STATES: readonly ListedState[] = ["ready", "delayed", "leased"];

/** Items a page lists when its query names no limit. */
export const DEFAULT_ITEMS_PAGE = 50;

/** Most items one page lists. */
export const MAX_ITEMS_PAGE = 500;

/** A query for a page of a queue's live items. */
export interface ItemsQuery {
  /**
   * Which items: `ready` in serve order, `delayed` by when they become
   * ready, `leased` by when their lease began.
   */
  state: ListedState;
  /** How many of them to skip (default 0). */
  offset?: number;
  /** How many to list: 1 to {@link MAX_ITEMS_PAGE}, {@link DEFAULT_ITEMS_PAGE} by default. */
  limit?: number;
}

/** A page of a queue's live items. */
export interface ItemPage {
  /** The items, in the order their state is listed in, as a job lookup describes them. */
  items: JobInfo[];
  /** How many items of that state the queue holds. */
  total: number;
}

/** A connected session as the operations side sees it. */
export interface SessionView {
  /** Its id: what a control action names. */
  id: string;
  /** Name the client gave. */
  name: string;
  /** Its address, or empty. */
  address: string;
  /** When it opened (ms since the epoch). */
  connectedAt: number;
  /** When it was last heard from (ms since the epoch). */
  lastSeenAt: number;
  /** Items it holds leases on. */
  leased: number;
  /** Gets it is waiting on. */
  waiting: number;
  /** Items it holds, oldest lease first, at most {@link MAX_HELD_LISTED}. */
  holding: HeldItem[];
  /** The last control action sent to it, if any. */
  controlled?: ControlAction;
}
