/**
 * What an item held by the engine is estimated to take in memory, in bytes of
 * JavaScript heap: the engine's own record of it plus its value, by the cost
 * model of the msgpack decoder (lib/model/codec.ts: so much per array, map,
 * string, binary and number, measured with Deno 2.9).
 *
 * The engine adds this up over every item it holds, so that the master can
 * refuse puts before its memory runs out, and so that what it held always
 * fits again when a durable master loads it back.
 *
 * @example
 * ```ts
 * import { ITEM_OVERHEAD_BYTES, itemCost } from "./item_cost.ts";
 * console.log(itemCost(7) === ITEM_OVERHEAD_BYTES); // true: a small integer costs only its record
 * console.log(itemCost({ n: [1, 2, 3] }) > itemCost(7)); // true
 * ```
 *
 * @module
 */

import { valueCost } from "../model/codec.ts";

/** Bytes of the engine's record of one item (the item object, its queue slot, its index entries). */
export const ITEM_OVERHEAD_BYTES = 160;

/**
 * Estimated bytes of memory the engine holds for an item of `value`: its
 * record ({@link ITEM_OVERHEAD_BYTES}) and its value; twice the value when the
 * front-end keeps its own form of it too (`hasOriginal`, e.g. a Python tuple).
 *
 * @example
 * ```ts
 * import { itemCost } from "./item_cost.ts";
 * console.log(itemCost("abc", true) > itemCost("abc")); // true
 * ```
 */
export function itemCost(value: unknown, hasOriginal = false): number {
  // Numbers, booleans and null live in the record itself.
  if (value === null || (typeof value !== "object" && typeof value !== "string")) {
    return ITEM_OVERHEAD_BYTES;
  }
  const cost = valueCost(value);
  return ITEM_OVERHEAD_BYTES + (hasOriginal ? 2 * cost : cost);
}
