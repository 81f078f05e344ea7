/**
 * Runs one external command for one item, without a shell.
 *
 * Every `{}` in the arguments is replaced by the item's text, and the text is
 * also written to the command's standard input; each argument stays exactly
 * one argument, so an item can never inject shell syntax. The task id, attempt
 * and queue are in the environment. Standard output becomes the result; a
 * non-zero exit, a signal, a timeout or a failure to start is a
 * {@link CommandFailedError}.
 *
 * @module
 */

import type { Job } from "../client/client.ts";
import { CommandFailedError } from "./errors.ts";

/** Placeholder in a command's arguments that stands for the item's text. */
export const ITEM_PLACEHOLDER = "{}";

/** Time between asking a timed-out command to stop (SIGTERM) and killing it. */
export const KILL_GRACE_MS = 1_000;

/** Most characters of a failed command's stderr kept in its error. */
const STDERR_TAIL_CHARS = 2_000;

/** What to run for each item. */
export interface CommandSpec {
  /** Program to run (looked up on PATH). */
  command: string;
  /** Its arguments; `{}` stands for the item's text. */
  args: readonly string[];
  /** Kill it after this long (default: no limit). */
  timeoutMs?: number;
}

/** A successful run. */
export interface CommandOutcome {
  /** Standard output as text, less one trailing newline. */
  output: string;
  /** Always 0 for a success. */
  exitCode: number;
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
 * Runs `spec` for `job`. `signal` aborts it (the command is killed).
 * @throws {CommandFailedError} when the command does not succeed.
 */
export async function runCommand(
  spec: CommandSpec,
  job: Job,
  signal?: AbortSignal,
): Promise<CommandOutcome> {
  const text = itemText(job.value);
  const args = spec.args.map((arg) => arg.replaceAll(ITEM_PLACEHOLDER, text));
  // An abort listener added now would never fire: do not start at all.
  if (signal?.aborted) throw new CommandFailedError("command was stopped: the work was abandoned");
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(spec.command, {
      args,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      // Its own process group, so a stop reaches whatever it started too: a
      // grandchild left running would hold the pipes open and the run with them.
      detached: true,
      env: {
        TASKQ_TASK_ID: String(job.id),
        TASKQ_ATTEMPT: String(job.attempt),
        TASKQ_QUEUE: job.queue,
      },
    }).spawn();
  } catch (error) {
    throw new CommandFailedError(`cannot run "${spec.command}": ${(error as Error).message}`);
  }

  let timedOut = false;
  let killTimer: ReturnType<typeof setTimeout> | undefined;
  const signalGroup = (sig: Deno.Signal) => {
    if (Deno.build.os === "windows") child.kill(sig);
    else Deno.kill(-child.pid, sig);
  };
  const kill = () => {
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
  const result = await child.output();
  await feed;
  clearTimeout(timer);
  clearTimeout(killTimer);
  signal?.removeEventListener("abort", kill);

  if (timedOut) {
    throw new CommandFailedError(`command timed out after ${spec.timeoutMs} ms and was killed`);
  }
  if (signal?.aborted) throw new CommandFailedError("command was stopped: the work was abandoned");
  if (result.signal !== null) {
    throw new CommandFailedError(`command was killed by signal ${result.signal}`);
  }
  if (result.code !== 0) {
    const stderr = decoder.decode(result.stderr).trim().slice(-STDERR_TAIL_CHARS);
    throw new CommandFailedError(
      `command exited with code ${result.code}${stderr ? `: ${stderr}` : ""}`,
    );
  }
  return { output: trimNewline(decoder.decode(result.stdout)), exitCode: 0 };
}
