/**
 * Runs one external command for one item, without a shell.
 *
 * The item reaches the command three ways: on its standard input, in the
 * environment (`TASKQ_ITEM`, when it fits: {@link MAX_ENV_ITEM_BYTES}, no NUL
 * byte), and as an argument wherever an argument is exactly `{}`. Each
 * argument stays exactly one argument, so an item can never inject shell
 * syntax. A `{}` inside a larger argument (`sh -c 'echo {}'`) is left as it is
 * unless {@link CommandSpec.embedItem} asks for it to be replaced too: that
 * puts the item's text inside the argument, where a shell would run what it
 * says. The job id (`TASKQ_JOB_ID`, and `TASKQ_TASK_ID` as before), attempt
 * and queue are in the environment. Standard output becomes the result (at
 * most {@link CommandSpec.maxOutputBytes} of it); a non-zero exit, a signal, a
 * timeout, output over the limit or a failure to start is a
 * {@link CommandFailedError}.
 *
 * The command runs in a process group of its own, so that a stop (a timeout,
 * the item cancelled, the worker's grace period over) reaches whatever it
 * started too: the whole group gets SIGTERM, then SIGKILL
 * {@link KILL_GRACE_MS} later. With a {@link CommandSpec.watchdog}, the group
 * is also killed if the worker itself dies (see lib/worker/watchdog.ts).
 *
 * Progress: a line on the command's standard error of the form
 * `taskq-progress PERCENT [MESSAGE]` ({@link parseProgressLine}, at most
 * {@link MAX_PROGRESS_LINE} characters) reports how far along it is; such
 * lines are not part of its error output.
 *
 * @module
 */

import type { Job } from "../client/client.ts";
import { JobCancelledError } from "../errors.ts";
import { MAX_PROGRESS_MESSAGE } from "../model/jobs.ts";
import { CommandFailedError, CommandNotFoundError, OutputTooLargeError } from "./errors.ts";
import type { Watchdog } from "./watchdog.ts";

/** Placeholder in a command's arguments that stands for the item's text. */
export const ITEM_PLACEHOLDER = "{}";

/** The environment variable that holds the item's text (when it fits). */
export const ITEM_ENV = "TASKQ_ITEM";

/**
 * Largest item text passed in {@link ITEM_ENV}, in UTF-8 bytes: Linux refuses
 * to start a program with one environment string over 128 KiB
 * (MAX_ARG_STRLEN), name and `=` included; a larger item is only on stdin
 * (and in a `{}` argument, which has the same limit).
 */
export const MAX_ENV_ITEM_BYTES = 128 * 1024 - 64;

/**
 * Time between asking a stopped command's process group to stop (SIGTERM:
 * a timeout, the item cancelled, the worker's grace period over) and killing
 * it (SIGKILL), in ms.
 */
export const KILL_GRACE_MS = 1_000;

/** What starts a progress line on a command's standard error. */
export const PROGRESS_PREFIX = "taskq-progress";

/** Most characters of a failed command's stderr kept in its error. */
const STDERR_TAIL_CHARS = 2_000;

/**
 * Longest stderr line read as a possible progress line, in UTF-16 units: the
 * prefix, a percentage and the longest message, with room to spare. Longer
 * lines are ordinary output, and are not held in memory whole.
 */
export const MAX_PROGRESS_LINE = 2 * MAX_PROGRESS_MESSAGE;

/** Highest progress percentage. */
const MAX_PERCENT = 100;

/** A progress line: the prefix, the percentage (or `-`), and an optional message. */
const PROGRESS_LINE = /^taskq-progress[ \t]+(\S+)(?:[ \t]+(.*))?$/;

/** A percentage as a progress line writes it: digits, with an optional fraction. */
const PERCENT_TEXT = /^(?:\d+(?:\.\d*)?|\.\d+)$/;

/** What to run for each item. */
export interface CommandSpec {
  /** Program to run (looked up on PATH). */
  command: string;
  /** Its arguments; an argument that is exactly `{}` stands for the item's text. */
  args: readonly string[];
  /** Kill it after this long (default: no limit). */
  timeoutMs?: number;
  /**
   * Also replace `{}` inside larger arguments (default false). Unsafe with a
   * shell: in `sh -c 'echo {}'` an item `$(rm -rf ~)` runs. Prefer `"$1"`
   * with `{}` as its own argument, or `$TASKQ_ITEM`.
   */
  embedItem?: boolean;
  /**
   * Most bytes of standard output kept; a command that prints more fails
   * with an {@link OutputTooLargeError} once it ends (what it printed beyond
   * is read and dropped, so it is not blocked). No limit by default.
   */
  maxOutputBytes?: number;
  /** Read standard output and drop it, the output being unused (default: keep it). */
  discardOutput?: boolean;
  /** Told of the command's process group, so the group dies with the worker. */
  watchdog?: Watchdog;
}

/** A successful run. */
export interface CommandOutcome {
  /** Standard output as text, less one trailing newline. */
  output: string;
  /** Always 0 for a success. */
  exitCode: number;
}

/** Progress a command reported on a `taskq-progress` line. */
export interface CommandProgress {
  /** How far along, 0–100; absent for `-`. */
  percent?: number;
  /** What it is doing; absent when the line has none. */
  message?: string;
}

const decoder = new TextDecoder();

/** The text an item stands for: strings as they are, bytes as UTF-8, anything else as JSON. */
export function itemText(value: unknown): string {
  if (typeof value === "string") return value;
  if (value instanceof Uint8Array) return decoder.decode(value);
  return JSON.stringify(value);
}

function trimNewline(text: string): string {
  if (text.endsWith("\r\n")) return text.slice(0, -2);
  return text.endsWith("\n") ? text.slice(0, -1) : text;
}

/**
 * Reads one line of a command's standard error (without its newline) as a
 * progress report: `taskq-progress PERCENT [MESSAGE]`, PERCENT from 0 to 100
 * (fractions allowed) or `-` for none, MESSAGE the rest of the line (trimmed;
 * cut to `MAX_PROGRESS_MESSAGE` characters). `undefined` for any other line,
 * a malformed progress line included (it stays ordinary output).
 *
 * @example
 * ```ts
 * import { parseProgressLine } from "./command.ts";
 * console.log(parseProgressLine("taskq-progress 42.5 resizing images"));
 * // { percent: 42.5, message: "resizing images" }
 * console.log(parseProgressLine("taskq-progress - uploading")); // { message: "uploading" }
 * console.log(parseProgressLine("taskq-progress 250")); // undefined
 * console.log(parseProgressLine("warning: disk almost full")); // undefined
 * ```
 */
export function parseProgressLine(line: string): CommandProgress | undefined {
  if (!line.startsWith(PROGRESS_PREFIX)) return undefined;
  const match = PROGRESS_LINE.exec(line.endsWith("\r") ? line.slice(0, -1) : line);
  if (match === null) return undefined;
  const report: CommandProgress = {};
  if (match[1] !== "-") {
    if (!PERCENT_TEXT.test(match[1])) return undefined;
    const percent = Number(match[1]);
    if (percent > MAX_PERCENT) return undefined;
    report.percent = percent;
  }
  const message = (match[2] ?? "").trim().slice(0, MAX_PROGRESS_MESSAGE);
  if (message !== "") report.message = message;
  return report;
}

/** What {@link readAll} read: the bytes kept, and how many there were in all. */
interface ReadOutput {
  bytes: Uint8Array;
  total: number;
}

/**
 * Reads a stream to its end, into one array of bytes: the first `keep` bytes
 * of it; the rest is read and dropped (so the writer is never blocked), and
 * only counted.
 */
async function readAll(stream: ReadableStream<Uint8Array>, keep: number): Promise<ReadOutput> {
  const chunks: Uint8Array[] = [];
  let length = 0;
  let total = 0;
  for await (const chunk of stream) {
    total += chunk.length;
    if (length >= keep) continue;
    const kept = length + chunk.length > keep ? chunk.subarray(0, keep - length) : chunk;
    chunks.push(kept);
    length += kept.length;
  }
  return { bytes: join(chunks, length), total };
}

/** The chunks as one array of bytes (`length` in all). */
function join(chunks: readonly Uint8Array[], length: number): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(length);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/**
 * Reads a command's standard error to its end, line by line: progress lines
 * go to `onProgress`, everything else is kept; resolves with the last
 * {@link STDERR_TAIL_CHARS} (or a little more) of what was kept.
 */
async function readStderr(
  stream: ReadableStream<Uint8Array>,
  onProgress: ((report: CommandProgress) => void) | undefined,
): Promise<string> {
  const utf8 = new TextDecoder();
  let tail = "";
  /** The line read so far. */
  let line = "";
  /** Whether the current line grew too long to be a progress line: it goes straight to the tail. */
  let long = false;
  const keep = (text: string) => {
    tail += text;
    if (tail.length > 2 * STDERR_TAIL_CHARS) tail = tail.slice(-STDERR_TAIL_CHARS);
  };
  const endLine = (text: string, newline: string) => {
    // However it was split into reads, a line too long is ordinary output.
    const report = text.length > MAX_PROGRESS_LINE ? undefined : parseProgressLine(text);
    if (report === undefined) {
      keep(text + newline);
      return;
    }
    try {
      onProgress?.(report);
    } catch {
      // the caller's trouble; the command goes on
    }
  };
  const read = (text: string) => {
    for (;;) {
      const newline = text.indexOf("\n");
      if (newline < 0) break;
      const rest = text.slice(0, newline);
      if (long) keep(rest + "\n");
      else endLine(line + rest, "\n");
      line = "";
      long = false;
      text = text.slice(newline + 1);
    }
    if (long) {
      keep(text);
      return;
    }
    line += text;
    if (line.length > MAX_PROGRESS_LINE) {
      keep(line);
      line = "";
      long = true;
    }
  };
  for await (const chunk of stream) read(utf8.decode(chunk, { stream: true }));
  read(utf8.decode());
  // A last line without a newline.
  if (long) keep(line);
  else if (line !== "") endLine(line, "");
  return tail;
}

/**
 * Runs `spec` for `job`. `signal` aborts it: the command's process group gets
 * SIGTERM, then SIGKILL after {@link KILL_GRACE_MS}. Each progress line the
 * command writes on its standard error goes to `onProgress`.
 * @throws {CommandFailedError} when the command does not succeed.
 *
 * @example
 * ```ts
 * import { runCommand } from "./command.ts";
 * const job = { id: 1, queue: "tasks", value: "world", attempt: 1 };
 * const outcome = await runCommand(
 *   { command: "sh", args: ["-c", 'echo "taskq-progress 50 halfway" >&2; echo "hello $1"', "sh", "{}"] },
 *   job,
 *   undefined,
 *   (report) => console.log(report), // { percent: 50, message: "halfway" }
 * );
 * console.log(outcome.output); // hello world
 * ```
 */
export async function runCommand(
  spec: CommandSpec,
  job: Job,
  signal?: AbortSignal,
  onProgress?: (report: CommandProgress) => void,
): Promise<CommandOutcome> {
  const text = itemText(job.value);
  const args = itemArguments(spec, text);
  // An abort listener added now would never fire: do not start at all.
  if (signal?.aborted) throw stoppedError(signal);
  const env: Record<string, string> = {
    TASKQ_JOB_ID: String(job.id),
    TASKQ_TASK_ID: String(job.id),
    TASKQ_ATTEMPT: String(job.attempt),
    TASKQ_QUEUE: job.queue,
  };
  if (fitsEnvironment(text)) env[ITEM_ENV] = text;
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(spec.command, {
      args,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      // A session and process group of its own (setsid), so a stop reaches whatever it
      // started too: a grandchild left running would hold the pipes open and the run with them.
      detached: true,
      env,
    }).spawn();
  } catch (error) {
    throw new CommandFailedError(`cannot run "${spec.command}": ${(error as Error).message}`);
  }
  // The group dies with the worker (its leader's pid is the group's id).
  spec.watchdog?.add(child.pid);

  let timedOut = false;
  let killTimer: ReturnType<typeof setTimeout> | undefined;
  const signalGroup = (sig: Deno.Signal) => {
    if (Deno.build.os === "windows") child.kill(sig);
    else Deno.kill(-child.pid, sig);
  };
  const kill = () => {
    if (killTimer !== undefined) return; // stopping already
    try {
      signalGroup("SIGTERM");
    } catch {
      return; // already exited
    }
    killTimer = setTimeout(() => {
      try {
        signalGroup("SIGKILL");
      } catch {
        // exited after SIGTERM
      }
    }, KILL_GRACE_MS);
  };
  const timer = spec.timeoutMs === undefined ? undefined : setTimeout(() => {
    timedOut = true;
    kill();
  }, spec.timeoutMs);
  signal?.addEventListener("abort", kill, { once: true });

  const feed = (async () => {
    const writer = child.stdin.getWriter();
    try {
      await writer.write(new TextEncoder().encode(text));
      await writer.close();
    } catch {
      // the command does not read its input: fine
    }
  })();
  const keep = spec.discardOutput ? 0 : spec.maxOutputBytes ?? Infinity;
  const [status, stdout, stderr] = await Promise.all([
    child.status,
    readAll(child.stdout, keep),
    readStderr(child.stderr, onProgress),
  ]);
  spec.watchdog?.remove(child.pid);
  await feed;
  clearTimeout(timer);
  clearTimeout(killTimer);
  signal?.removeEventListener("abort", kill);

  if (timedOut) {
    throw new CommandFailedError(`command timed out after ${spec.timeoutMs} ms and was killed`);
  }
  if (signal?.aborted) throw stoppedError(signal);
  if (status.signal !== null) {
    throw new CommandFailedError(`command was killed by signal ${status.signal}`);
  }
  if (status.code !== 0) {
    const tail = stderr.trim().slice(-STDERR_TAIL_CHARS);
    throw new CommandFailedError(
      `command exited with code ${status.code}${tail ? `: ${tail}` : ""}`,
    );
  }
  if (!spec.discardOutput && stdout.total > keep) {
    throw new OutputTooLargeError(stdout.total, keep);
  }
  return { output: trimNewline(decoder.decode(stdout.bytes)), exitCode: 0 };
}

/**
 * The arguments `spec` runs with for an item whose text is `text`: each
 * argument that is exactly `{}` becomes the text; with
 * {@link CommandSpec.embedItem}, every `{}` inside an argument too.
 *
 * @example
 * ```ts
 * import { itemArguments } from "./command.ts";
 * const args = ["-c", "echo {}", "sh", "{}"];
 * console.log(itemArguments({ command: "sh", args }, "$(id)"));
 * // [ "-c", "echo {}", "sh", "$(id)" ]
 * console.log(itemArguments({ command: "sh", args, embedItem: true }, "x"));
 * // [ "-c", "echo x", "sh", "x" ]
 * ```
 */
export function itemArguments(spec: CommandSpec, text: string): string[] {
  return spec.embedItem
    ? spec.args.map((arg) => arg.replaceAll(ITEM_PLACEHOLDER, text))
    : spec.args.map((arg) => arg === ITEM_PLACEHOLDER ? text : arg);
}

/**
 * The arguments that hold `{}` inside a larger text: left as they are unless
 * {@link CommandSpec.embedItem} is on (a worker warns of them at start).
 *
 * @example
 * ```ts
 * import { embeddedPlaceholders } from "./command.ts";
 * console.log(embeddedPlaceholders(["-c", "echo {}", "sh", "{}"])); // [ "echo {}" ]
 * ```
 */
export function embeddedPlaceholders(args: readonly string[]): string[] {
  return args.filter((arg) => arg !== ITEM_PLACEHOLDER && arg.includes(ITEM_PLACEHOLDER));
}

const encoder = new TextEncoder();

/** Whether `text` can go in the environment: no NUL byte, at most {@link MAX_ENV_ITEM_BYTES}. */
function fitsEnvironment(text: string): boolean {
  // Cheap bounds first: UTF-8 takes 1 to 3 bytes per UTF-16 unit.
  if (text.length > MAX_ENV_ITEM_BYTES || text.includes("\0")) return false;
  return text.length * 3 <= MAX_ENV_ITEM_BYTES || encoder.encode(text).length <= MAX_ENV_ITEM_BYTES;
}

/**
 * Finds the program `command` names as a command runner would: a name with
 * a `/` as a path, any other on `PATH`. Resolves with its path.
 * @throws {CommandNotFoundError} when there is no such file, it is not a
 *   regular file, or it is not executable.
 *
 * @example
 * ```ts
 * import { findCommand } from "./command.ts";
 * console.log((await findCommand("sh")).endsWith("/sh")); // true
 * try {
 *   await findCommand("taskq-no-such-program");
 * } catch (error) {
 *   console.log((error as Error).message);
 *   // command "taskq-no-such-program" not found on PATH: check its spelling, or give its full path
 * }
 * ```
 */
export async function findCommand(command: string): Promise<string> {
  if (command === "") throw new CommandNotFoundError(`the command is empty`);
  if (command.includes("/")) {
    const problem = await notExecutable(command);
    if (problem !== undefined) throw new CommandNotFoundError(`command "${command}" ${problem}`);
    return command;
  }
  const path = Deno.env.get("PATH") ?? "";
  const windows = Deno.build.os === "windows";
  const dirs = path.split(windows ? ";" : ":").map((dir) => dir === "" ? "." : dir);
  for (const dir of dirs) {
    const candidates = windows
      ? ["", ".exe", ".cmd", ".bat"].map((ext) => `${dir}\\${command}${ext}`)
      : [`${dir}/${command}`];
    for (const candidate of candidates) {
      if (await notExecutable(candidate) === undefined) return candidate;
    }
  }
  throw new CommandNotFoundError(
    `command "${command}" not found on PATH: check its spelling, or give its full path`,
  );
}

/** Why `path` cannot be run (`undefined`: it can): missing, not a file, not executable. */
async function notExecutable(path: string): Promise<string | undefined> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "does not exist";
    return `cannot be read: ${(error as Error).message}`;
  }
  if (!info.isFile) return "is not a file";
  // No execute bit for anyone (mode is null on Windows: the extension decides there).
  if (info.mode !== null && (info.mode & EXECUTE_BITS) === 0) return "is not executable";
  return undefined;
}

/** The execute bits of a file's mode (owner, group, others). */
const EXECUTE_BITS = 0o111;

/** The error of a command stopped by its signal: the item cancelled, or the work abandoned. */
function stoppedError(signal: AbortSignal): CommandFailedError {
  return new CommandFailedError(
    signal.reason instanceof JobCancelledError
      ? "command was stopped: the item was cancelled"
      : "command was stopped: the work was abandoned",
  );
}
