/**
 * A small, strict parser of the Prometheus text exposition format (0.0.4),
 * for tests: it refuses what a real scraper would refuse (bad names, bad
 * escapes, bad numbers, a TYPE after its samples, families split in two,
 * duplicate series, histograms whose buckets are not cumulative or lack
 * `+Inf`, `_count` differing from the `+Inf` bucket) rather than guess.
 *
 * @module
 */

/** One sample line. */
export interface PromSample {
  /** The sample's name (for histograms, with its `_bucket`/`_sum`/`_count` suffix). */
  name: string;
  /** Its labels. */
  labels: Record<string, string>;
  /** Its value. */
  value: number;
}

/** A metric family: its TYPE, HELP and samples. */
export interface PromFamily {
  /** `counter`, `gauge`, `histogram`, `summary` or `untyped`. */
  type: string;
  /** The HELP text, unescaped. */
  help: string;
  /** Its samples, in order. */
  samples: PromSample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);
const HISTOGRAM_SUFFIXES = ["_bucket", "_sum", "_count"];

function fail(lineNo: number, message: string): never {
  throw new Error(`metrics line ${lineNo}: ${message}`);
}

function parseNumber(text: string, lineNo: number): number {
  if (text === "NaN") return NaN;
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) {
    fail(lineNo, `bad number "${text}"`);
  }
  return Number(text);
}

/** Parses `{a="x",b="y"}` starting at `text[0] === "{"`; returns labels and the rest. */
function parseLabels(text: string, lineNo: number): [Record<string, string>, string] {
  const labels: Record<string, string> = {};
  let i = 1;
  for (;;) {
    if (text[i] === "}") return [labels, text.slice(i + 1)];
    const eq = text.indexOf("=", i);
    if (eq < 0) fail(lineNo, "label without =");
    const name = text.slice(i, eq);
    if (!LABEL_NAME.test(name)) fail(lineNo, `bad label name "${name}"`);
    if (name in labels) fail(lineNo, `label "${name}" repeated`);
    if (text[eq + 1] !== '"') fail(lineNo, "label value must be quoted");
    let value = "";
    let j = eq + 2;
    for (;; j++) {
      const c = text[j];
      if (c === undefined) fail(lineNo, "unterminated label value");
      if (c === '"') break;
      if (c === "\\") {
        const next = text[++j];
        if (next === "\\") value += "\\";
        else if (next === '"') value += '"';
        else if (next === "n") value += "\n";
        else fail(lineNo, `bad escape \\${next}`);
      } else if (c === "\n") {
        fail(lineNo, "raw newline in label value");
      } else {
        value += c;
      }
    }
    labels[name] = value;
    i = j + 1;
    if (text[i] === ",") i++;
    else if (text[i] !== "}") fail(lineNo, "expected , or } after a label");
  }
}

/** The family a sample name belongs to, given the declared types. */
function familyOf(name: string, families: Map<string, PromFamily>): string {
  for (const suffix of HISTOGRAM_SUFFIXES) {
    if (name.endsWith(suffix)) {
      const base = name.slice(0, -suffix.length);
      if (families.get(base)?.type === "histogram") return base;
    }
  }
  return name;
}

/**
 * Parses exposition text into families by name.
 * @throws {Error} naming the line of the first violation found.
 */
export function parsePrometheus(text: string): Map<string, PromFamily> {
  if (text.length > 0 && !text.endsWith("\n")) throw new Error("metrics must end with a newline");
  const families = new Map<string, PromFamily>();
  const finished = new Set<string>();
  const seriesSeen = new Set<string>();
  let current: string | undefined;
  const lines = text.split("\n").slice(0, -1);
  lines.forEach((line, index) => {
    const lineNo = index + 1;
    if (line.trim() === "") return;
    if (line.startsWith("#")) {
      const match = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!match) return; // a plain comment
      const [, kind, name, rest] = match;
      if (!METRIC_NAME.test(name)) fail(lineNo, `bad metric name "${name}"`);
      if (finished.has(name)) fail(lineNo, `family ${name} split in two`);
      if (current !== undefined && current !== name) finished.add(current);
      current = name;
      const family = families.get(name) ?? { type: "untyped", help: "", samples: [] };
      families.set(name, family);
      if (kind === "TYPE") {
        if (!TYPES.has(rest)) fail(lineNo, `bad type "${rest}"`);
        if (family.samples.length > 0) fail(lineNo, `TYPE of ${name} after its samples`);
        family.type = rest;
      } else {
        family.help = rest.replace(/\\n/g, "\n").replace(/\\\\/g, "\\");
      }
      return;
    }
    const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
    if (!nameMatch) fail(lineNo, `bad sample line "${line}"`);
    const name = nameMatch[0];
    let rest = line.slice(name.length);
    let labels: Record<string, string> = {};
    if (rest.startsWith("{")) [labels, rest] = parseLabels(rest, lineNo);
    const fields = rest.trim().split(/ +/);
    if (!rest.startsWith(" ") || fields.length < 1 || fields.length > 2) {
      fail(lineNo, "expected one space, a value and an optional timestamp");
    }
    const value = parseNumber(fields[0], lineNo);
    const familyName = familyOf(name, families);
    if (finished.has(familyName)) fail(lineNo, `family ${familyName} split in two`);
    if (current !== undefined && current !== familyName) finished.add(current);
    current = familyName;
    const family = families.get(familyName) ?? { type: "untyped", help: "", samples: [] };
    families.set(familyName, family);
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    if (seriesSeen.has(key)) fail(lineNo, `series repeated: ${key}`);
    seriesSeen.add(key);
    if (family.type === "counter" && !(value >= 0)) fail(lineNo, `counter ${name} below 0`);
    family.samples.push({ name, labels, value });
  });
  for (const [name, family] of families) {
    if (family.type === "histogram") checkHistogram(name, family);
  }
  return families;
}

function checkHistogram(name: string, family: PromFamily): void {
  const buckets = family.samples.filter((s) => s.name === `${name}_bucket`);
  const count = family.samples.find((s) => s.name === `${name}_count`);
  const sum = family.samples.find((s) => s.name === `${name}_sum`);
  if (buckets.length === 0 || count === undefined || sum === undefined) {
    throw new Error(`histogram ${name} needs buckets, _sum and _count`);
  }
  let lastBound = -Infinity;
  let lastCount = 0;
  for (const bucket of buckets) {
    const le = bucket.labels.le;
    if (le === undefined) throw new Error(`histogram ${name} bucket without le`);
    const bound = le === "+Inf" ? Infinity : Number(le);
    if (Number.isNaN(bound) || bound <= lastBound) {
      throw new Error(`histogram ${name} buckets not in increasing le order`);
    }
    if (bucket.value < lastCount) throw new Error(`histogram ${name} buckets not cumulative`);
    lastBound = bound;
    lastCount = bucket.value;
  }
  if (lastBound !== Infinity) throw new Error(`histogram ${name} lacks the +Inf bucket`);
  if (lastCount !== count.value) throw new Error(`histogram ${name}: +Inf bucket ≠ _count`);
}

/** The value of the one sample of `family` whose labels include `labels`. */
export function sampleValue(
  families: Map<string, PromFamily>,
  family: string,
  labels: Record<string, string> = {},
  name: string = family,
): number {
  const matches = (families.get(family)?.samples ?? []).filter((s) =>
    s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  );
  if (matches.length !== 1) {
    throw new Error(`expected one ${name}${JSON.stringify(labels)}, found ${matches.length}`);
  }
  return matches[0].value;
}
