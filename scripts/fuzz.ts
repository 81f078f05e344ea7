/**
 * Fuzzes the msgpack codec and the pickle reader for a while, with the seeded
 * generators of tests/_fuzz.ts (which tests/fuzz_test.ts runs briefly in CI):
 *
 * ```sh
 * deno run -A scripts/fuzz.ts --seconds 60 --seed 7
 * deno run -A scripts/fuzz.ts --target pickle --seconds 600
 * deno run -A scripts/fuzz.ts --target msgpack --seed 7 --case 1234   # replay one case
 * ```
 *
 * The time is shared between the targets, in slices; the seed defaults to
 * one drawn from the clock, printed first. It prints cases per second for
 * each target, and each failure with what replays it (target, seed, case),
 * and exits with 1 if there was any.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  caseSeed,
  emptyFuzzStats,
  fuzz,
  type FuzzStats,
  makeInput,
  type Target,
} from "../tests/_fuzz.ts";
import { seededRandom } from "../tests/_helpers.ts";

/** Default duration of a run. */
const DEFAULT_SECONDS = 60;

/** Time given to one target before the next takes over. */
const SLICE_MS = 1_000;

/** Failures printed in full (the rest are counted). */
const MAX_FAILURES_SHOWN = 20;

const TARGETS: readonly Target[] = ["msgpack", "pickle"];

const USAGE = `usage: deno run -A scripts/fuzz.ts [--seconds N] [--seed N] ` +
  `[--target msgpack|pickle|both] [--case N]`;

/** A whole number from a flag, or the default. */
function integer(text: string | undefined, name: string, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) {
    console.error(`--${name} must be a whole number, not ${JSON.stringify(text)}\n${USAGE}`);
    Deno.exit(2);
  }
  return value;
}

function main(): number {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      seconds: { type: "string" },
      seed: { type: "string" },
      target: { type: "string", default: "both" },
      case: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const targets = values.target === "both"
    ? TARGETS
    : TARGETS.filter((target) => target === values.target);
  if (targets.length === 0) {
    console.error(`--target must be msgpack, pickle or both\n${USAGE}`);
    return 2;
  }
  const seed = integer(values.seed, "seed", Date.now() % 2 ** 31);
  if (values.case !== undefined) {
    const index = integer(values.case, "case", 0);
    let failed = false;
    for (const target of targets) {
      const input = makeInput(target, seededRandom(caseSeed(seed, index)));
      const stats = fuzz(target, seed, { first: index, cases: 1 });
      const outcome = stats.failures[0]?.problem ?? (stats.decoded ? "decoded" : "refused");
      console.log(`${target} seed ${seed} case ${index}: ${input.length} bytes, ${outcome}`);
      console.log(Array.from(input, (b) => b.toString(16).padStart(2, "0")).join(""));
      failed ||= stats.failures.length > 0;
    }
    return failed ? 1 : 0;
  }
  const seconds = integer(values.seconds, "seconds", DEFAULT_SECONDS);
  console.log(`fuzzing ${targets.join(" and ")} for ${seconds} s with seed ${seed}`);
  const totals = new Map<Target, FuzzStats & { ms: number }>(
    targets.map((target) => [target, { ...emptyFuzzStats(), ms: 0 }]),
  );
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    for (const target of targets) {
      const total = totals.get(target)!;
      const started = performance.now();
      const stats = fuzz(target, seed, {
        first: total.cases,
        until: Math.min(end, started + SLICE_MS),
      });
      total.ms += performance.now() - started;
      total.cases += stats.cases;
      total.decoded += stats.decoded;
      total.refused += stats.refused;
      if (stats.slowestMs > total.slowestMs) {
        total.slowestMs = stats.slowestMs;
        total.slowestIndex = stats.slowestIndex;
      }
      total.failures.push(...stats.failures);
      for (const failure of stats.failures.slice(0, MAX_FAILURES_SHOWN)) {
        console.log(
          `FAILURE ${failure.target} --seed ${failure.seed} --case ${failure.index} ` +
            `(${failure.inputBytes} bytes): ${failure.problem}\n  ${
              failure.inputHex.slice(0, 200)
            }`,
        );
      }
    }
  }
  let failures = 0;
  for (const [target, total] of totals) {
    const rate = Math.round(total.cases / (total.ms / 1000));
    console.log(
      `${target}: ${total.cases} cases (${rate}/s), ${total.decoded} decoded, ` +
        `${total.refused} refused, slowest ${total.slowestMs.toFixed(1)} ms ` +
        `(--case ${total.slowestIndex}), ` +
        `${total.failures.length} failures`,
    );
    failures += total.failures.length;
  }
  return failures > 0 ? 1 : 0;
}

Deno.exit(main());
