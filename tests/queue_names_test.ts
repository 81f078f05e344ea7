/**
 * Tests of lib/queue_names.ts: which names are valid (1 to 200 UTF-16 code
 * units, no control characters, non-strings refused), the length limit not
 * counting one trailing ".dead" (so every valid queue's dead-letter queue is
 * valid too), which names are dead-letter queues, and deadLetterQueue being
 * idempotent on them; and checkQueueName in the wire layer following the
 * same rules.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  checkQueueNameArgument,
  DEAD_LETTER_SUFFIX,
  deadLetterQueue,
  isDeadLetterQueue,
  isValidQueueName,
  MAX_QUEUE_NAME_LENGTH,
  QUEUE_NAME_RULE,
} from "../lib/model/queue_names.ts";
import { checkQueueName } from "../lib/wire/messages.ts";
import { ProtocolError } from "../lib/errors.ts";

Deno.test("queue names: the constants", () => {
  assert.equal(MAX_QUEUE_NAME_LENGTH, 200);
  assert.equal(DEAD_LETTER_SUFFIX, ".dead");
});

Deno.test("queue names: ordinary names are valid", () => {
  for (
    const name of [
      "a",
      "tasks",
      "results",
      "my queue with spaces",
      "dotted.name.v2",
      "slash/and:colon",
      "ünïcödé ✓ 任务",
      "🎉",
      "{}",
      " ",
      ".",
      "dead",
      ".dead",
      "tasks.deadline",
    ]
  ) {
    assert.ok(isValidQueueName(name), `${JSON.stringify(name)} should be valid`);
  }
});

Deno.test("queue names: empty names and non-strings are invalid", () => {
  for (const name of ["", undefined, null, 0, 42, true, ["q"], { name: "q" }, new String("q")]) {
    assert.equal(isValidQueueName(name), false, `${String(name)} should be invalid`);
  }
});

Deno.test("queue names: control characters are refused anywhere in a name", () => {
  const controls = ["\u0000", "\u0001", "\t", "\n", "\r", "\u001b", "\u001f", "\u007f"];
  for (const c of controls) {
    for (const name of [c, `a${c}`, `${c}a`, `a${c}b`, `tasks${c}.dead`]) {
      assert.equal(isValidQueueName(name), false, `${JSON.stringify(name)} should be invalid`);
    }
  }
  // Just outside the control ranges.
  assert.ok(isValidQueueName("\u0020"));
  assert.ok(isValidQueueName("~"));
  assert.ok(isValidQueueName("\u0080"));
  assert.ok(isValidQueueName("\u00a0"));
});

Deno.test("queue names: at most 200 characters", () => {
  assert.ok(isValidQueueName("q".repeat(200)));
  assert.equal(isValidQueueName("q".repeat(201)), false);
  assert.equal(isValidQueueName("q".repeat(10_000)), false);
  // Counted in UTF-16 code units: 100 emoji are 200 units.
  assert.ok(isValidQueueName("🎉".repeat(100)));
  assert.equal(isValidQueueName("🎉".repeat(100) + "x"), false);
});

Deno.test("queue names: a trailing .dead does not count toward the limit", () => {
  const longest = "q".repeat(200);
  assert.ok(isValidQueueName(longest + ".dead"));
  assert.equal(isValidQueueName("q".repeat(201) + ".dead"), false);
  // Only one suffix is free.
  assert.equal(isValidQueueName(longest + ".dead.dead"), false);
  assert.ok(isValidQueueName("q".repeat(195) + ".dead.dead"));
  // A suffix that is not exactly ".dead" counts.
  assert.equal(isValidQueueName(longest + ".Dead"), false);
  assert.equal(isValidQueueName(longest + ".deadx"), false);
});

Deno.test("queue names: the dead-letter queue of every valid name is valid", () => {
  for (const name of ["a", "tasks", "q".repeat(200), "🎉".repeat(100), ".dead", "x.dead"]) {
    assert.ok(isValidQueueName(name));
    assert.ok(isValidQueueName(deadLetterQueue(name)), `dead-letter queue of ${name}`);
  }
});

Deno.test("queue names: which names are dead-letter queues", () => {
  assert.ok(isDeadLetterQueue("tasks.dead"));
  assert.ok(isDeadLetterQueue("x.dead"));
  assert.ok(isDeadLetterQueue("tasks.dead.dead"));
  assert.equal(isDeadLetterQueue("tasks"), false);
  assert.equal(isDeadLetterQueue("dead"), false);
  assert.equal(isDeadLetterQueue("tasks.deadline"), false);
  assert.equal(isDeadLetterQueue("tasks.DEAD"), false);
  // The bare suffix is an ordinary name: it has no queue in front of it.
  assert.equal(isDeadLetterQueue(".dead"), false);
});

Deno.test("queue names: deadLetterQueue appends .dead once and is idempotent", () => {
  assert.equal(deadLetterQueue("tasks"), "tasks.dead");
  assert.equal(deadLetterQueue("tasks.dead"), "tasks.dead");
  assert.equal(deadLetterQueue(deadLetterQueue(deadLetterQueue("tasks"))), "tasks.dead");
  assert.equal(deadLetterQueue("tasks.deadline"), "tasks.deadline.dead");
  assert.equal(deadLetterQueue(".dead"), ".dead.dead");
  assert.equal(deadLetterQueue(".dead.dead"), ".dead.dead");
  const longest = "q".repeat(200);
  assert.equal(deadLetterQueue(longest), longest + ".dead");
  assert.equal(deadLetterQueue(longest + ".dead"), longest + ".dead");
});

Deno.test("queue names: checkQueueName follows the same rules", () => {
  for (const name of ["tasks", "q".repeat(200), "q".repeat(200) + ".dead", "🎉"]) {
    assert.equal(checkQueueName(name), name);
  }
  for (const name of ["", "q".repeat(201), "a\nb", "q".repeat(201) + ".dead", 7, null]) {
    assert.throws(() => checkQueueName(name), ProtocolError, `${String(name)} should be refused`);
  }
});

Deno.test("queue names: a caller's name is checked with TypeError or RangeError, never ProtocolError", () => {
  for (const name of ["tasks", "q".repeat(200), "q".repeat(200) + ".dead", "ünï 🎉"]) {
    assert.equal(checkQueueNameArgument(name), name);
  }
  for (const name of [undefined, null, 7, ["tasks"], { name: "tasks" }]) {
    assert.throws(() => checkQueueNameArgument(name), (error: unknown) => {
      assert.ok(error instanceof TypeError, `${String(name)} should be a TypeError`);
      assert.match(error.message, /a queue name must be a string/);
      return true;
    });
  }
  for (const name of ["", "q".repeat(201), "bad\nname", "tab\there", "x\u007f"]) {
    assert.throws(() => checkQueueNameArgument(name), (error: unknown) => {
      assert.ok(error instanceof RangeError, `${JSON.stringify(name)} should be a RangeError`);
      assert.ok(!(error instanceof ProtocolError));
      assert.ok(error.message.includes(QUEUE_NAME_RULE), error.message);
      assert.ok(!error.message.includes("\n"), "control characters are escaped: one line");
      return true;
    });
  }
  // The name is quoted, cut short when long.
  assert.throws(() => checkQueueNameArgument("q".repeat(500)), /"q{40}…" \(500 characters\)/);
});
