/**
 * Checks of a local caller's own arguments (options and values passed to the
 * library): a value of the wrong type is a `TypeError`, one out of range a
 * `RangeError`, each naming the argument and what it must be. Input from a
 * peer is checked elsewhere and refused with a `ProtocolError`.
 *
 * @module
 */

/** Longest piece of a caller's value quoted in a message. */
const QUOTE_CHARS = 40;

/** A short description of `value` for a message: `"abc"`, `-1`, `NaN`, `undefined`, `an object`. */
export function describeValue(value: unknown): string {
  switch (typeof value) {
    case "string":
      return JSON.stringify(
        value.length > QUOTE_CHARS ? `${value.slice(0, QUOTE_CHARS)}…` : value,
      );
    case "number":
    case "boolean":
    case "undefined":
      return String(value);
    case "bigint":
      return `${value}n`;
    case "function":
      return "a function";
    case "symbol":
      return "a symbol";
    default:
      if (value === null) return "null";
      if (Array.isArray(value)) return "an array";
      return objectKind(value as object);
  }
}

/** `an object` for a plain object, else `a CLASS` (`a Map`, `a Date`). */
function objectKind(value: object): string {
  const name: unknown = Object.getPrototypeOf(value)?.constructor?.name;
  return typeof name === "string" && name !== "" && name !== "Object" ? `a ${name}` : "an object";
}

/**
 * Checks that `value`, the caller's argument `name`, is a whole number from
 * `min` to `max`.
 * @throws {TypeError} when it is not a number.
 * @throws {RangeError} when it is not a whole number within range.
 */
export function checkIntegerArgument(
  name: string,
  value: unknown,
  min: number,
  max: number,
  unit = "",
): number {
  if (typeof value !== "number") {
    throw new TypeError(`${name} must be a number, not ${describeValue(value)}`);
  }
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(
      `${name} must be a whole number${unit} from ${min} to ${max}, not ${describeValue(value)}`,
    );
  }
  return value;
}
