/**
 * Array parameters as PostgreSQL array literals (`{1,2,3}`), built here
 * rather than by the client.
 *
 * The `postgres` client serializes a JS array only once it has looked up the
 * server's array types on that connection; a statement sent before that
 * (a fresh connection, a pool growing under load) goes out as `1,2,3`
 * without braces and fails. A literal is text the client passes on as it
 * is, and the statement's cast (`$1::bigint[]`) gives it its type, the
 * same on every connection.
 *
 * @example
 * ```ts
 * import { byteaArray, intArray, textArray } from "./arrays.ts";
 * console.log(intArray([1, 2, 3])); // {1,2,3}
 * console.log(textArray(["a", 'say "hi"', null])); // {"a","say \"hi\"",NULL}
 * console.log(byteaArray([new Uint8Array([1, 255])])); // {"\\x01ff"}
 * ```
 *
 * @module
 */

import { Buffer } from "node:buffer";

/** Integers (`int`, `bigint`) as an array literal; a fraction is rounded. */
export function intArray(values: readonly number[]): string {
  let out = "{";
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    out += (i > 0 ? "," : "") + (Number.isInteger(v) ? v : Math.round(v));
  }
  return out + "}";
}

/** Characters a quoted array element must escape. */
const NEEDS_ESCAPE = /["\\]/;

/** One text element, quoted, with `\` and `"` escaped. */
function quote(value: string): string {
  if (!NEEDS_ESCAPE.test(value)) return `"${value}"`;
  return `"${value.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

/** Texts (`null` for SQL NULL) as an array literal. */
export function textArray(values: readonly (string | null)[]): string {
  let out = "{";
  for (let i = 0; i < values.length; i++) {
    if (i > 0) out += ",";
    const value = values[i];
    out += value === null ? "NULL" : quote(value);
  }
  return out + "}";
}

/** Byte strings (`bytea`) as an array literal, each in hex. */
export function byteaArray(values: readonly Uint8Array[]): string {
  let out = "{";
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    const hex = Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("hex");
    out += i > 0 ? `,"\\\\x${hex}"` : `"\\\\x${hex}"`;
  }
  return out + "}";
}
