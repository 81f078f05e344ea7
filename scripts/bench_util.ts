/**
 * Small pieces the benchmark scripts share: waiting on a promise for a
 * bounded time, stopping a child process, and rounding figures.
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

/** `count` events in `ms` milliseconds, per second, rounded. */
export function rate(count: number, ms: number): number {
  return Math.round(count / (ms / 1000));
}

/** `x` rounded to two decimals. */
export function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
