/**
 * UTF-8 as Python's pickle uses it: `surrogatepass`, so a `str` holding a
 * lone surrogate (legal in Python and in JavaScript strings) survives the
 * trip. Well-formed text takes the platform's fast paths; only text with lone
 * surrogates is coded by hand. Anything else that is not UTF-8 is refused.
 *
 * @module
 */

/** Largest Unicode code point. */
const MAX_CODE_POINT = 0x10ffff;

/** Code units turned into a string at a time (stays under argument-count limits). */
const CHUNK_UNITS = 8192;

const strictDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const encoder = new TextEncoder();

/** Bytes are not UTF-8, even with surrogates allowed. */
export class Utf8Error extends Error {}

/** Encodes `text` as UTF-8, writing lone surrogates as their 3-byte forms. */
export function encodeUtf8(text: string): Uint8Array {
  if (text.isWellFormed()) return encoder.encode(text);
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    let cp = text.charCodeAt(i);
    if (cp >= 0xd800 && cp <= 0xdbff && i + 1 < text.length) {
      const low = text.charCodeAt(i + 1);
      if (low >= 0xdc00 && low <= 0xdfff) {
        cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
        i++;
      }
    }
    if (cp < 0x80) out.push(cp);
    else if (cp < 0x800) out.push(0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
    else if (cp < 0x10000) {
      out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
    } else {
      out.push(
        0xf0 | (cp >> 18),
        0x80 | ((cp >> 12) & 0x3f),
        0x80 | ((cp >> 6) & 0x3f),
        0x80 | (cp & 0x3f),
      );
    }
  }
  return new Uint8Array(out);
}

/**
 * Decodes UTF-8 in which surrogate code points (`ED A0..BF xx`) are allowed.
 * @throws {Utf8Error} on anything else that is not UTF-8 (overlong forms,
 *   truncated sequences, code points beyond U+10FFFF).
 */
export function decodeUtf8(bytes: Uint8Array): string {
  try {
    return strictDecoder.decode(bytes);
  } catch {
    return decodeSlow(bytes);
  }
}

function decodeSlow(bytes: Uint8Array): string {
  const units: number[] = [];
  let text = "";
  const cont = (i: number): number => {
    const b = bytes[i];
    if (i >= bytes.length || (b & 0xc0) !== 0x80) throw new Utf8Error(`bad UTF-8 at byte ${i}`);
    return b & 0x3f;
  };
  for (let i = 0; i < bytes.length;) {
    const b = bytes[i];
    let cp: number;
    let min: number;
    if (b < 0x80) {
      cp = b;
      min = 0;
      i += 1;
    } else if (b >= 0xc0 && b < 0xe0) {
      cp = ((b & 0x1f) << 6) | cont(i + 1);
      min = 0x80;
      i += 2;
    } else if (b >= 0xe0 && b < 0xf0) {
      cp = ((b & 0x0f) << 12) | (cont(i + 1) << 6) | cont(i + 2);
      min = 0x800;
      i += 3;
    } else if (b >= 0xf0 && b < 0xf5) {
      cp = ((b & 0x07) << 18) | (cont(i + 1) << 12) | (cont(i + 2) << 6) | cont(i + 3);
      min = 0x10000;
      i += 4;
    } else {
      throw new Utf8Error(`bad UTF-8 lead byte 0x${b.toString(16)} at byte ${i}`);
    }
    if (cp < min || cp > MAX_CODE_POINT) throw new Utf8Error(`bad UTF-8 sequence before byte ${i}`);
    if (cp >= 0x10000) {
      units.push(0xd800 + ((cp - 0x10000) >> 10), 0xdc00 + ((cp - 0x10000) & 0x3ff));
    } else {
      units.push(cp);
    }
    if (units.length >= CHUNK_UNITS) {
      text += String.fromCharCode(...units);
      units.length = 0;
    }
  }
  return text + String.fromCharCode(...units);
}
