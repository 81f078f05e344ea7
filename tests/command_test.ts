/**
 * Tests of lib/worker/command.ts, running real (tiny) programs: an argument
 * that is exactly `{}` replaced by the item's text (inside larger arguments
 * only with `embedItem`), each argument staying one argument, the text on
 * stdin and in TASKQ_ITEM, TASKQ_JOB_ID/TASKQ_TASK_ID/TASKQ_ATTEMPT/TASKQ_QUEUE
 * in the environment, output over `maxOutputBytes` failing the run,
 * `findCommand`, output less one trailing newline, a non-zero exit or a signal
 * as a CommandFailedError with the tail of stderr, a timeout killing the
 * command (SIGTERM, then SIGKILL for one that ignores SIGTERM, and whatever
 * it started too), an abort signal killing it, a missing program, and the
 * text of string, byte and JSON items.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { Job } from "../lib/client/client.ts";
import { TaskqError } from "../lib/errors.ts";
import {
  type CommandSpec,
  findCommand,
  itemText,
  MAX_ENV_ITEM_BYTES,
  runCommand,
} from "../lib/worker/command.ts";
import {
  CommandFailedError,
  CommandNotFoundError,
  OutputTooLargeError,
} from "../lib/worker/errors.ts";
import { waitFor } from "./_helpers.ts";

/** A job as the worker would pass it. */
function job(value: unknown, fields: Partial<Job> = {}): Job {
  return { id: 7, queue: "tasks", value, attempt: 1, ...fields };
}

/** Runs a `sh -c SCRIPT` command with extra positional arguments ($0, $1, ...). */
function sh(script: string, args: string[] = [], timeoutMs?: number): CommandSpec {
  return { command: "sh", args: ["-c", script, ...args], timeoutMs };
}

/** Runs `fn` with a fresh temp directory, removed afterwards. */
async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "taskq-command-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** Awaits a run that must fail, and returns its error. */
async function failure(run: Promise<unknown>): Promise<CommandFailedError> {
  try {
    await run;
  } catch (error) {
    assert.ok(error instanceof CommandFailedError, `expected a CommandFailedError: ${error}`);
    assert.ok(error instanceof TaskqError);
    return error;
  }
  assert.fail("the command was expected to fail");
}

/** Prints every argument followed by a NUL byte, so arguments can be told apart exactly. */
const PRINT_ARGS = 'printf "%s\\0" "$@"';

function splitNul(output: string): string[] {
  assert.ok(output.endsWith("\0"), `output should end with NUL: ${JSON.stringify(output)}`);
  return output.slice(0, -1).split("\0");
}

Deno.test("command: only a whole {} argument is replaced by default, each argument one argument", async () => {
  const nasty = `a b; echo "$HOME" | cat * && rm -rf / $(id) \`id\` 'q' > out`;
  const spec = sh(PRINT_ARGS, ["sh", "pre-{}-post", "{}", "{}{}", "plain", ""]);
  const outcome = await runCommand(spec, job(nasty));
  assert.deepEqual(splitNul(outcome.output), ["pre-{}-post", nasty, "{}{}", "plain", ""]);
});

Deno.test("command: with embedItem, {} is replaced inside arguments too", async () => {
  const nasty = `a b; echo "$HOME" | cat * && rm -rf / $(id) \`id\` 'q' > out`;
  const spec = {
    ...sh(PRINT_ARGS, ["sh", "pre-{}-post", "{}", "{}{}", "plain", ""]),
    embedItem: true,
  };
  const outcome = await runCommand(spec, job(nasty));
  assert.equal(outcome.exitCode, 0);
  assert.deepEqual(splitNul(outcome.output), [
    `pre-${nasty}-post`,
    nasty,
    nasty + nasty,
    "plain",
    "",
  ]);
});

Deno.test("command: an item with newlines and no text at all are still one argument", async () => {
  const multiline = "line one\nline two\n";
  let outcome = await runCommand(sh(PRINT_ARGS, ["sh", "{}"]), job(multiline));
  assert.deepEqual(splitNul(outcome.output), [multiline]);
  outcome = await runCommand({ ...sh(PRINT_ARGS, ["sh", "<{}>"]), embedItem: true }, job(""));
  assert.deepEqual(splitNul(outcome.output), ["<>"]);
});

Deno.test("command: the item's text is on stdin", async () => {
  const text = "first line\nsecond line with {} and $VARS";
  const outcome = await runCommand({ command: "cat", args: [] }, job(text));
  assert.equal(outcome.output, text);
});

Deno.test("command: output loses exactly one trailing newline", async () => {
  assert.equal((await runCommand(sh("printf 'x\\n\\n'"), job(1))).output, "x\n");
  assert.equal((await runCommand(sh("printf 'x\\r\\n'"), job(1))).output, "x");
  assert.equal((await runCommand(sh("printf x"), job(1))).output, "x");
  assert.equal((await runCommand(sh("true"), job(1))).output, "");
});

Deno.test("command: a command that never reads a large stdin still succeeds", async () => {
  const big = "x".repeat(1 << 20);
  const outcome = await runCommand(sh("echo ignored"), job(big));
  assert.equal(outcome.output, "ignored");
});

Deno.test("command: the task id, attempt and queue are in the environment", async () => {
  const spec = sh(
    'printf "%s|%s|%s|%s" "$TASKQ_JOB_ID" "$TASKQ_TASK_ID" "$TASKQ_ATTEMPT" "$TASKQ_QUEUE"',
  );
  const outcome = await runCommand(spec, job("v", { id: 12345, attempt: 3, queue: "my queue" }));
  assert.equal(outcome.output, "12345|12345|3|my queue");
});

Deno.test("command: the item is in TASKQ_ITEM when it fits, never run as code", async () => {
  const spec = sh('printf "%s|%s" "$TASKQ_ITEM" "${TASKQ_ITEM+set}"');
  const nasty = "$(echo INJECTED) `id` ; done";
  assert.equal((await runCommand(spec, job(nasty))).output, `${nasty}|set`);
  assert.equal((await runCommand(spec, job({ n: 1 }))).output, '{"n":1}|set');
  const big = "x".repeat(MAX_ENV_ITEM_BYTES + 1);
  assert.equal((await runCommand(spec, job(big))).output, "|", "too large: not set");
  assert.equal((await runCommand(spec, job("a\0b"))).output, "|", "a NUL byte: not set");
  const widest = "é".repeat(MAX_ENV_ITEM_BYTES / 2);
  assert.equal((await runCommand(spec, job(widest))).output, `${widest}|set`, "bytes, not units");
});

Deno.test("command: output over maxOutputBytes fails the run once the command ends", async () => {
  const print = (bytes: number) => sh(`head -c ${bytes} /dev/zero | tr '\\0' x; echo done >&2`);
  const ok = await runCommand({ ...print(1000), maxOutputBytes: 1000 }, job(1));
  assert.equal(ok.output, "x".repeat(1000));
  const error = await failure(runCommand({ ...print(300_000), maxOutputBytes: 1000 }, job(1)));
  assert.ok(error instanceof OutputTooLargeError);
  assert.equal(error.bytes, 300_000, "what it printed beyond was read (and counted)");
  assert.match(error.message, /^command printed 300000 bytes on stdout, more than the 1000 bytes/);
  const dropped = await runCommand({ ...print(300_000), discardOutput: true }, job(1));
  assert.equal(dropped.output, "", "discarded output is not kept");
});

Deno.test("command: findCommand finds a program on PATH or by path, and names what is wrong", async () => {
  assert.match(await findCommand("sh"), /\/sh$/);
  assert.equal(await findCommand("/bin/sh"), "/bin/sh");
  const missing = await findCommand("taskq-no-such-program").catch((error) => error);
  assert.ok(missing instanceof CommandNotFoundError);
  assert.equal(missing.exitCode, 2);
  assert.match(missing.message, /^command "taskq-no-such-program" not found on PATH/);
  await withTempDir(async (dir) => {
    const script = `${dir}/script.sh`;
    await Deno.writeTextFile(script, "#!/bin/sh\necho hi\n");
    const notExecutable = await findCommand(script).catch((error) => error);
    assert.equal(notExecutable.message, `command "${script}" is not executable`);
    await Deno.chmod(script, 0o755);
    assert.equal(await findCommand(script), script);
    const directory = await findCommand(dir).catch((error) => error);
    assert.equal(directory.message, `command "${dir}" is not a file`);
    assert.match((await findCommand(`${dir}/nope`).catch((e) => e)).message, /does not exist$/);
  });
});

Deno.test("command: a non-zero exit is a CommandFailedError with the exit code and stderr", async () => {
  const error = await failure(
    runCommand(sh('echo "to stdout"; echo "went wrong" >&2; exit 3'), job(1)),
  );
  assert.equal(error.message, "command exited with code 3: went wrong");
  const quiet = await failure(runCommand(sh("exit 4"), job(1)));
  assert.equal(quiet.message, "command exited with code 4");
});

Deno.test("command: only the tail of a long stderr is kept in the error", async () => {
  const script = 'i=0; while [ $i -lt 500 ]; do echo "line$i" >&2; i=$((i+1)); done; exit 1';
  const error = await failure(runCommand(sh(script), job(1)));
  const prefix = "command exited with code 1: ";
  assert.ok(error.message.startsWith(prefix), error.message);
  const tail = error.message.slice(prefix.length);
  assert.ok(tail.endsWith("line499"), "the last line is kept");
  assert.ok(tail.length <= 2_000, `kept ${tail.length} characters`);
  assert.ok(tail.length > 1_000, "a good part of stderr is kept");
  assert.ok(!tail.includes("line0\n") && !tail.includes("\nline1\n"), "the head is dropped");
});

Deno.test("command: a command killed by a signal is a CommandFailedError naming it", async () => {
  const error = await failure(runCommand(sh("kill -KILL $$"), job(1)));
  assert.equal(error.message, "command was killed by signal SIGKILL");
});

Deno.test("command: a command over its timeout is killed", async () => {
  const error = await failure(
    runCommand({ command: "sleep", args: ["30"], timeoutMs: 200 }, job(1)),
  );
  assert.equal(error.message, "command timed out after 200 ms and was killed");
});

Deno.test("command: a timeout also stops what the command started", async () => {
  // sh waits for its child sleep, which holds the output pipes: killing sh
  // alone would leave the run waiting 30 s for sleep to finish.
  const error = await failure(runCommand(sh("sleep 30; echo never", [], 200), job(1)));
  assert.equal(error.message, "command timed out after 200 ms and was killed");
});

Deno.test("command: a command ignoring SIGTERM is killed with SIGKILL after the grace", async () => {
  const spec = sh('trap "" TERM; sleep 30', [], 200);
  const error = await failure(runCommand(spec, job(1)));
  assert.equal(error.message, "command timed out after 200 ms and was killed");
});

Deno.test("command: aborting the signal kills the running command", async () => {
  await withTempDir(async (dir) => {
    const marker = `${dir}/started`;
    const abort = new AbortController();
    const run = failure(runCommand(sh(': > "$0"; sleep 30', [marker]), job(1), abort.signal));
    await waitFor("the command to start", () => exists(marker));
    abort.abort();
    const error = await run;
    assert.equal(error.message, "command was stopped: the work was abandoned");
  });
});

Deno.test("command: an already aborted signal does not start the command", async () => {
  await withTempDir(async (dir) => {
    const marker = `${dir}/started`;
    const abort = new AbortController();
    abort.abort();
    const error = await failure(runCommand(sh(': > "$0"', [marker]), job(1), abort.signal));
    assert.equal(error.message, "command was stopped: the work was abandoned");
    assert.equal(await exists(marker), false, "the command did not run");
  });
});

Deno.test("command: a missing program is a CommandFailedError saying it cannot run", async () => {
  const name = "taskq-test-no-such-program";
  const error = await failure(runCommand({ command: name, args: ["{}"] }, job(1)));
  assert.match(error.message, /^cannot run "taskq-test-no-such-program": /);
});

Deno.test("command: itemText gives strings as they are, bytes as UTF-8, the rest as JSON", () => {
  assert.equal(itemText("plain {} text\n"), "plain {} text\n");
  assert.equal(itemText(""), "");
  assert.equal(itemText(new TextEncoder().encode("bytes: é ✓")), "bytes: é ✓");
  assert.equal(itemText(new Uint8Array(0)), "");
  assert.equal(itemText(42), "42");
  assert.equal(itemText(-1.5), "-1.5");
  assert.equal(itemText(true), "true");
  assert.equal(itemText(null), "null");
  assert.equal(itemText([1, "two", null]), '[1,"two",null]');
  assert.equal(
    itemText({ path: "/a b", n: 1, nested: { ok: false } }),
    '{"path":"/a b","n":1,"nested":{"ok":false}}',
  );
});

Deno.test("command: byte and JSON items reach the command as their text", async () => {
  const cat: CommandSpec = { command: "cat", args: [] };
  assert.equal(
    (await runCommand(cat, job(new TextEncoder().encode("from bytes")))).output,
    "from bytes",
  );
  assert.equal((await runCommand(cat, job({ a: [1, 2] }))).output, '{"a":[1,2]}');
  const outcome = await runCommand({ ...sh(PRINT_ARGS, ["sh", "n={}"]), embedItem: true }, job(99));
  assert.deepEqual(splitNul(outcome.output), ["n=99"]);
});
