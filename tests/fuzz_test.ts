/**
 * Seeded fuzz tests of the msgpack codec and the pickle reader (the cases of
 * tests/_fuzz.ts): a few thousand mutated encodings, opcode soups and noise
 * per decoder, each decoded to a value or refused with the decoder's own
 * error, never another error or a hang. The seeds are fixed, so a failure
 * here reproduces: `deno run -A scripts/fuzz.ts --target T --seed S --case N`
 * replays one case; scripts/fuzz.ts runs the same generators for longer.
 *
 * @module
 */

import assert from "node:assert/strict";
import { fuzz, type FuzzStats, type Target } from "./_fuzz.ts";

/** Cases per decoder and seed: a few seconds in all on two cores. */
const CASES = 1500;

/** The seeds run. */
const SEEDS: readonly number[] = [1, 20_240_601];

/** Asserts that a run found nothing, showing the first failures if it did. */
function passed(stats: FuzzStats): void {
  const shown = stats.failures.slice(0, 3).map((failure) =>
    `${failure.target} seed ${failure.seed} case ${failure.index} (${failure.inputBytes} bytes): ` +
    `${failure.problem}\n  input: ${failure.inputHex.slice(0, 400)}`
  );
  assert.equal(stats.failures.length, 0, shown.join("\n"));
  // The cases reach both outcomes: values decode, and most mutations are refused.
  assert.ok(stats.decoded > 0 && stats.refused > 0, JSON.stringify(stats));
}

for (const target of ["msgpack", "pickle"] as const satisfies readonly Target[]) {
  for (const seed of SEEDS) {
    Deno.test(`fuzz: ${target}, seed ${seed}: decoded or refused with its own error`, () => {
      passed(fuzz(target, seed, { cases: CASES }));
    });
  }
}
