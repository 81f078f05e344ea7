/**
 * Items, results and errors as the HTTP side shows them: values as JSON text
 * (binary as its size, big integers as their digits), shortened to a bound
 * with the cut marked, so that no reply grows with what a peer put.
 *
 * @example
 * ```ts
 * import { previewValue, shorten } from "./preview.ts";
 * console.log(previewValue({ n: 1, data: new Uint8Array(3) })); // {"n":1,"data":"<3 bytes>"}
 * console.log(shorten("abcdef", 4)); // abc…
 * ```
 *
 * @module
 */

/** Longest preview of an item's value, in characters. */
export const VALUE_PREVIEW_CHARS = 200;

/** Longest error text shown, in characters. */
export const ERROR_PREVIEW_CHARS = 2_000;

/**
 * Shortens `text` to `max` characters, marking the cut.
 *
 * @example
 * ```ts
 * import { shorten } from "./preview.ts";
 * console.log(shorten("hello", 10), shorten("hello world", 6)); // hello hello…
 * ```
 */
export function shorten(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/**
 * An item's value as JSON text, shortened to `max` characters
 * ({@link VALUE_PREVIEW_CHARS} by default): binary shows as its size, a big
 * integer as its digits.
 *
 * @example
 * ```ts
 * import { previewValue } from "./preview.ts";
 * console.log(previewValue([1, "two", null]), previewValue(2n ** 64n)); // [1,"two",null] "18446744073709551616"
 * ```
 */
export function previewValue(value: unknown, max: number = VALUE_PREVIEW_CHARS): string {
  let text: string;
  try {
    text = JSON.stringify(value, (_key, v) => {
      if (v instanceof Uint8Array) return `<${v.length} bytes>`;
      if (typeof v === "bigint") return v.toString();
      return v;
    }) ?? String(value);
  } catch {
    text = String(value);
  }
  return shorten(text, max);
}
