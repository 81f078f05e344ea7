/**
 * Small pieces the benchmark scripts share: waiting on a promise for a
 * bounded time, running a scenario within a deadline with its clean-ups,
 * stopping a child process, and rounding figures.
 *
 * @example
 * ```ts
 * import { rate, round2, within } from "./bench_util.ts";
 * console.log(rate(1_000, 500), round2(1.23456)); // 2000 1.23
 * console.log(await within(Promise.resolve(), 10)); // true
 * ```
 *
 * @module
 */

/** How long a stopped child gets after SIGTERM before SIGKILL, in ms. */
export const DEFAULT_STOP_GRACE_MS = 5_000;

/** Whether `promise` settles (either way) within `ms`. */
export async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), ms));
  try {
    return await Promise.race([promise.then(() => true, () => true), expired]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Stops a child process this script started: `signal` (SIGTERM), then
 * SIGKILL if it is still there after `graceMs`; resolves once it exited.
 */
export async function stopChild(
  child: Deno.ChildProcess,
  signal: Deno.Signal = "SIGTERM",
  graceMs: number = DEFAULT_STOP_GRACE_MS,
): Promise<void> {
  if (await within(child.status, 0)) return;
  try {
    child.kill(signal);
  } catch {
    // Exited meanwhile.
  }
  if (await within(child.status, graceMs)) return;
  try {
    child.kill("SIGKILL");
  } catch {
    // Exited meanwhile.
  }
  await child.status;
}

/**
 * Reads a master's standard output until it says `listening on ADDRESS`;
 * resolves with the address, or `undefined` when the output ends first (the
 * master exited).
 *
 * @example
 * ```ts
 * import { listeningAddress } from "./bench_util.ts";
 * const output = ReadableStream.from(["taskq master ", "listening on 127.0.0.1:5000\n"]);
 * console.log(await listeningAddress(output.getReader())); // 127.0.0.1:5000
 * ```
 */
export async function listeningAddress(
  reader: ReadableStreamDefaultReader<string>,
): Promise<string | undefined> {
  let text = "";
  for (;;) {
    const address = LISTENING.exec(text)?.[1];
    if (address !== undefined) return address;
    const { value, done } = await reader.read();
    if (done) return undefined;
    text += value;
  }
}

/** What a master prints once it listens. */
const LISTENING = /listening on (\S+)/;

/** `count` events in `ms` milliseconds, per second, rounded. */
export function rate(count: number, ms: number): number {
  return Math.round(count / (ms / 1000));
}

/** `x` rounded to two decimals. */
export function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

/**
 * What a scenario started, undone in reverse order when it ends, however it
 * ends (a failing clean-up is reported and the others still run).
 *
 * @example
 * ```ts
 * import { Scope } from "./bench_util.ts";
 * const scope = new Scope();
 * scope.defer(async () => console.log("second"));
 * scope.defer(async () => console.log("first"));
 * await scope.close(); // first, then second
 * ```
 */
export class Scope {
  readonly #cleanups: (() => Promise<unknown>)[] = [];

  /** Runs `cleanup` when the scope closes. */
  defer(cleanup: () => Promise<unknown>): void {
    this.#cleanups.push(cleanup);
  }

  /** Runs the clean-ups, last deferred first. */
  async close(): Promise<void> {
    for (const cleanup of this.#cleanups.splice(0).reverse()) {
      try {
        await cleanup();
      } catch (error) {
        console.error(`  cleanup: ${(error as Error).message}`);
      }
    }
  }
}

/** The scopes of the scenarios running now (a script closes them on Ctrl-C). */
export const activeScopes: Set<Scope> = new Set();

/**
 * Runs one scenario within `ms`: when it throws or runs over, it is reported
 * as `LABEL: FAILED: why` on stderr and in `failures` (the bench goes on), and
 * everything it started is stopped; then the scenario itself gets `graceMs`
 * to end. Resolves true when it succeeded.
 *
 * @example
 * ```ts
 * import { bounded } from "./bench_util.ts";
 * const failures: string[] = [];
 * const ok = await bounded("slow", 10, failures, () => new Promise((r) => setTimeout(r, 50)));
 * console.log(ok, failures); // false [ "slow: FAILED: did not finish within 0.01 s (stopped)" ]
 * ```
 */
export async function bounded(
  label: string,
  ms: number,
  failures: string[],
  run: (scope: Scope) => Promise<void>,
  graceMs: number = DEFAULT_STOP_GRACE_MS,
): Promise<boolean> {
  const scope = new Scope();
  activeScopes.add(scope);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const running = run(scope);
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`did not finish within ${ms / 1000} s (stopped)`)),
      ms,
    );
  });
  try {
    await Promise.race([running, timedOut]);
    return true;
  } catch (error) {
    const message = `${label}: FAILED: ${(error as Error).message}`;
    console.error(message);
    failures.push(message);
    return false;
  } finally {
    clearTimeout(timer);
    running.catch(() => {});
    await scope.close();
    activeScopes.delete(scope);
    // Let the scenario's own clean-up run now that what it waited on is gone.
    await within(running, graceMs);
  }
}
