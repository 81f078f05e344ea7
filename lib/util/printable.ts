/**
 * Making untrusted text safe to print on a terminal: client names, queue
 * names and values come from peers, and a raw ESC, CSI or bidi override in
 * them would let a peer move the cursor, recolour, retitle or reorder what
 * `taskq status` shows. Every control character is replaced by a visible
 * escape instead: C0 controls and DEL as `\n`, `\t`, `\r` or `\xHH` (so an
 * ESC sequence becomes the harmless text `\x1b[31m`), C1 controls (U+0080 to
 * U+009F, 8-bit CSI among them) as `\xHH`, and the bidi and line-separator
 * format characters as `\uHHHH`. Everything else, other non-ASCII text
 * included, is kept; a backslash is kept as it is.
 *
 * @example
 * ```ts
 * import { printable } from "./printable.ts";
 * console.log(printable("worker-1\x1b]0;pwned\x07")); // worker-1\x1b]0;pwned\x07
 * console.log(printable("héllo wörld")); // héllo wörld
 * ```
 *
 * @module
 */

/**
 * C0 controls, DEL, C1 controls, and the format characters that reorder or
 * break lines: ALM (U+061C), LRM and RLM (U+200E, U+200F), the line and
 * paragraph separators (U+2028, U+2029), the bidi embeddings and overrides
 * (U+202A to U+202E) and isolates (U+2066 to U+2069).
 */
// deno-lint-ignore no-control-regex
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;

/** Short escapes of the commonest controls. */
const SHORT_ESCAPES: Readonly<Record<string, string>> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

/** Highest code point written as `\xHH`. */
const MAX_HEX_BYTE = 0xff;

/** Hexadecimal digits of a `\xHH` escape. */
const HEX_BYTE_DIGITS = 2;

/** Hexadecimal digits of a `\uHHHH` escape. */
const HEX_UNIT_DIGITS = 4;

function escape(char: string): string {
  const short = SHORT_ESCAPES[char];
  if (short !== undefined) return short;
  const code = char.charCodeAt(0);
  return code <= MAX_HEX_BYTE
    ? `\\x${code.toString(16).padStart(HEX_BYTE_DIGITS, "0")}`
    : `\\u${code.toString(16).padStart(HEX_UNIT_DIGITS, "0")}`;
}

/**
 * `text` with every control character replaced by a visible escape (see the
 * module documentation); unchanged when it has none, and unchanged when
 * applied twice.
 *
 * @example
 * ```ts
 * import { printable } from "./printable.ts";
 * console.log(printable("a\x1b[2Jb")); // a\x1b[2Jb
 * console.log(printable("a\u009b31mb")); // a\x9b31mb
 * console.log(printable("evil\u202etxt.exe")); // evil\u202etxt.exe
 * console.log(printable("line\nbreak")); // line\nbreak
 * console.log(printable(printable("\x07")) === printable("\x07")); // true
 * ```
 */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, escape);
}

/**
 * JSON text (from `JSON.stringify`) made safe for a terminal: the characters
 * `JSON.stringify` leaves raw (DEL, C1 controls, bidi and line-separator
 * format characters) written as `\uHHHH` escapes, so it still parses to the
 * same value.
 *
 * @example
 * ```ts
 * import { printableJson } from "./printable.ts";
 * const value = { name: "a\u009b2Jb\u202e" };
 * const text = printableJson(JSON.stringify(value));
 * console.log(text); // {"name":"a\u009b2Jb\u202e"}
 * console.log(JSON.parse(text).name === value.name); // true
 * ```
 */
export function printableJson(json: string): string {
  return json.replace(
    UNPRINTABLE,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(HEX_UNIT_DIGITS, "0")}`,
  );
}
