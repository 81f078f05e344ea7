/**
 * The master's memory budget, as plain numbers: parsing `--max-memory`, the
 * default budget from the machine, how the budget is shared out, and the
 * shared byte counter every connection charges what it buffers to.
 *
 * One budget, `--max-memory` bytes, is split into fixed shares:
 *
 * - **items** ({@link ITEMS_SHARE}): what the queued items are estimated to
 *   take; past it, puts are refused (`memory_full`) while gets and acks go on;
 * - **buffers** ({@link BUFFERS_SHARE}): bytes queued for sending on every
 *   connection together; past it, connections that have bytes waiting are not
 *   read, and one whose peer has not taken any for a while is closed;
 * - the rest: the runtime itself, decoding the frame at hand, queues, leases,
 *   waiting gets and the garbage collector's slack.
 *
 * @example
 * ```ts
 * import { ByteBudget, parseByteSize, shareOf, ITEMS_SHARE } from "./memory.ts";
 * const budget = parseByteSize("512MiB")!; // 536870912
 * console.log(shareOf(budget, ITEMS_SHARE)); // 322122547
 * const buffers = new ByteBudget(1024);
 * buffers.charge(2000);
 * console.log(buffers.over); // true
 * buffers.release(2000);
 * console.log(buffers.over); // false
 * ```
 *
 * @module
 */

/** Bytes in a mebibyte. */
export const MIB = 1024 * 1024;

/** Bytes in a gibibyte. */
export const GIB = 1024 * MIB;

/** Share of the budget the queued items may take before puts are refused. */
export const ITEMS_SHARE = 0.6;

/** Share of the budget all connections' outgoing buffers may take together. */
export const BUFFERS_SHARE = 0.125;

/** Share of the machine's memory the master takes by default. */
export const DEFAULT_SYSTEM_SHARE = 0.5;

/** Share of the JavaScript heap's own limit the master takes at most by default. */
export const DEFAULT_HEAP_SHARE = 0.75;

/** Budget used when neither the machine's memory nor the heap limit can be read: 2 GiB. */
export const FALLBACK_MAX_MEMORY_BYTES = 2 * GIB;

/** Smallest budget accepted: 32 MiB (the runtime alone takes about 40 MB of it). */
export const MIN_MAX_MEMORY_BYTES = 32 * MIB;

const UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: MIB,
  mb: MIB,
  mib: MIB,
  g: GIB,
  gb: GIB,
  gib: GIB,
};

/**
 * Parses a size: a whole number of bytes, or a number with a unit (`KiB`,
 * `MiB`, `GiB`; `K`, `M`, `G` and `KB`, `MB`, `GB` mean the same powers of
 * 1024), case-insensitive. Returns `undefined` for anything else.
 *
 * @example
 * ```ts
 * import { parseByteSize } from "./memory.ts";
 * console.log(parseByteSize("1.5GiB"), parseByteSize("300m"), parseByteSize("x")); // 1610612736 314572800 undefined
 * ```
 */
export function parseByteSize(text: string): number | undefined {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  if (match === null) return undefined;
  const unit = UNITS[match[2].toLowerCase()];
  if (unit === undefined) return undefined;
  const bytes = Math.floor(Number(match[1]) * unit);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/**
 * `share` of `budget`, in whole bytes.
 *
 * @example
 * ```ts
 * import { shareOf, BUFFERS_SHARE } from "./memory.ts";
 * console.log(shareOf(1024, BUFFERS_SHARE)); // 128
 * ```
 */
export function shareOf(budget: number, share: number): number {
  return Math.floor(budget * share);
}

/**
 * The default budget: half the machine's memory, but no more than three
 * quarters of the JavaScript heap's limit (past which the runtime dies
 * whatever the machine has). Either figure may be unreadable (no permission):
 * then the other, or {@link FALLBACK_MAX_MEMORY_BYTES}.
 *
 * @example
 * ```ts
 * import { defaultMaxMemoryBytes } from "./memory.ts";
 * console.log(defaultMaxMemoryBytes() > 0); // true
 * ```
 */
export function defaultMaxMemoryBytes(heapLimitBytes?: number): number {
  let system: number | undefined;
  try {
    system = Deno.systemMemoryInfo().total * DEFAULT_SYSTEM_SHARE;
  } catch {
    system = undefined; // no --allow-sys=systemMemoryInfo
  }
  const heap = heapLimitBytes !== undefined && heapLimitBytes > 0
    ? heapLimitBytes * DEFAULT_HEAP_SHARE
    : undefined;
  const candidates = [system, heap].filter((n): n is number => n !== undefined && n > 0);
  const bytes = candidates.length > 0 ? Math.min(...candidates) : FALLBACK_MAX_MEMORY_BYTES;
  return Math.max(MIN_MAX_MEMORY_BYTES, Math.floor(bytes));
}

/**
 * A shared count of bytes against a cap, e.g. the outgoing buffers of every
 * connection together. Callers charge what they hold and release it when it
 * is gone; {@link over} says whether the total passed the cap. It never
 * refuses a charge itself: each caller decides what to do when it is over.
 *
 * @example
 * ```ts
 * import { ByteBudget } from "./memory.ts";
 * const budget = new ByteBudget(100);
 * budget.charge(60);
 * console.log(budget.used, budget.over); // 60 false
 * ```
 */
export class ByteBudget {
  /** The cap, in bytes (`Infinity`: none). */
  readonly cap: number;
  #used = 0;

  /** Creates an empty budget capped at `cap` bytes. */
  constructor(cap: number = Infinity) {
    this.cap = cap;
  }

  /** Bytes charged and not released. */
  get used(): number {
    return this.#used;
  }

  /** Whether more than {@link cap} bytes are charged. */
  get over(): boolean {
    return this.#used > this.cap;
  }

  /** Adds `bytes`. */
  charge(bytes: number): void {
    this.#used += bytes;
  }

  /** Takes `bytes` back. */
  release(bytes: number): void {
    this.#used -= bytes;
    if (this.#used < 0) this.#used = 0;
  }
}
