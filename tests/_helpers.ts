/**
 * Shared helpers of the test suite: polling with a deadline, a master run as a
 * real subprocess (`main.ts master` on an ephemeral loopback port), client
 * scripts run as child processes, and a raw TCP connection that speaks frames
 * by hand (for handshakes done manually and for malformed input).
 *
 * Every helper cleans up after itself: processes are stopped (only those
 * started here, by their own handle) and their status awaited, pipes are
 * drained to the end, sockets are closed and their reads awaited, timers are
 * cleared, so Deno's test sanitizers stay happy even when a test fails.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { clientProof, newNonce, PROTOCOL_VERSION, serverProof } from "../lib/wire/auth.ts";
import { decode, encode } from "../lib/model/codec.ts";
import { FrameReader } from "../lib/wire/frame.ts";

/** The repository root, as a file path. */
export const REPO_ROOT: string = fileURLToPath(new URL("..", import.meta.url));

/** The public API module, as an absolute file URL (for scripts outside the repo). */
export const MOD_URL: string = new URL("../lib/mod.ts", import.meta.url).href;

/** The repository's deno.json, so that scripts outside the repo resolve "msgpackr". */
export const CONFIG_PATH: string = fileURLToPath(new URL("../deno.json", import.meta.url));

/** The key every test master uses unless told otherwise. */
export const TEST_KEY = "taskq-test-key-0123456789";

/** Default deadline of {@link waitFor}. */
const DEFAULT_WAIT_MS = 10_000;

/** Default interval between polls of {@link waitFor}. */
const DEFAULT_POLL_MS = 10;

/** Time a stopped process has to exit before it is killed with SIGKILL. */
const STOP_GRACE_MS = 5_000;

/** Time a master subprocess has to print its address. */
const MASTER_START_MS = 15_000;

const LISTENING = /^taskq master listening on (\S+)$/m;

/** Resolves after `ms` milliseconds; only ever used as a poll interval. */
export function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Options of {@link waitFor}. */
export interface WaitOptions {
  /** Give up after this long (default 10 s). */
  timeoutMs?: number;
  /** Poll this often (default 10 ms). */
  intervalMs?: number;
}

/**
 * Polls `condition` until it returns a truthy value, and returns that value.
 * @throws {Error} naming `what` when the deadline passes first.
 */
export async function waitFor<T>(
  what: string,
  condition: () => T | Promise<T>,
  options: WaitOptions = {},
): Promise<NonNullable<T>> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_WAIT_MS;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value) return value as NonNullable<T>;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await pause(options.intervalMs ?? DEFAULT_POLL_MS);
  }
}

/**
 * Races `promise` against a deadline; the timer is always cleared.
 * @throws {Error} naming `what` when the deadline passes first.
 */
export async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The environment for a child: ours, without taskq variables, plus `extra`. */
function childEnv(extra: Record<string, string>): Record<string, string> {
  const env = Deno.env.toObject();
  delete env.TASKQ_AUTHKEY;
  delete env.TASKQ_ADDR;
  return { ...env, NO_COLOR: "1", ...extra };
}

/** A child process whose output is collected as it comes. */
export class Proc implements AsyncDisposable {
  /** What the process is, for messages. */
  readonly label: string;
  /** The process id. */
  readonly pid: number;
  /** Resolves with the exit status. */
  readonly status: Promise<Deno.CommandStatus>;
  readonly #child: Deno.ChildProcess;
  readonly #drained: Promise<unknown>;
  readonly #cleanups: Array<() => Promise<void>> = [];
  #stdout = "";
  #stderr = "";
  #exit: Deno.CommandStatus | undefined;

  /**
   * Spawns `args` of the deno executable (or of `executable`) with the given
   * environment, in `cwd` (the repository by default).
   */
  constructor(
    label: string,
    args: string[],
    env: Record<string, string>,
    executable: string = Deno.execPath(),
    cwd: string = REPO_ROOT,
  ) {
    this.label = label;
    this.#child = new Deno.Command(executable, {
      args,
      cwd,
      env,
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.pid = this.#child.pid;
    this.status = this.#child.status.then((status) => this.#exit = status);
    this.#drained = Promise.all([
      this.#collect(this.#child.stdout, (text) => this.#stdout += text),
      this.#collect(this.#child.stderr, (text) => this.#stderr += text),
    ]);
  }

  async #collect(stream: ReadableStream<Uint8Array>, add: (text: string) => void): Promise<void> {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) add(text);
  }

  /** Registers work to do once the process is gone (e.g. removing its temp dir). */
  onCleanup(cleanup: () => Promise<void>): void {
    this.#cleanups.push(cleanup);
  }

  /** Everything printed on stdout so far. */
  get stdout(): string {
    return this.#stdout;
  }

  /** Everything printed on stderr so far. */
  get stderr(): string {
    return this.#stderr;
  }

  /** The complete lines printed on stdout so far. */
  get lines(): string[] {
    const text = this.#stdout;
    const end = text.lastIndexOf("\n");
    return end < 0 ? [] : text.slice(0, end).split("\n");
  }

  /** The exit status, once the process has exited. */
  get exited(): Deno.CommandStatus | undefined {
    return this.#exit;
  }

  /** A description of the process and its output, for failure messages. */
  describe(): string {
    const status = this.#exit ? `exited with code ${this.#exit.code}` : "running";
    return `${this.label} (pid ${this.pid}, ${status})\n--- stdout:\n${this.#stdout}` +
      `--- stderr:\n${this.#stderr}---`;
  }

  /**
   * Waits for a stdout line matching `pattern` and returns its match.
   * @throws {Error} if the process exits or the deadline passes first.
   */
  async waitForLine(pattern: RegExp, timeoutMs = DEFAULT_WAIT_MS): Promise<RegExpMatchArray> {
    try {
      return await waitFor(`a line matching ${pattern}`, () => {
        for (const line of this.lines) {
          const match = line.match(pattern);
          if (match) return match;
        }
        if (this.#exit) throw new Error(`exited before printing a line matching ${pattern}`);
        return undefined;
      }, { timeoutMs });
    } catch (error) {
      throw new Error(`${(error as Error).message}: ${this.describe()}`);
    }
  }

  /** Sends `signal` if the process still runs. */
  kill(signal: Deno.Signal = "SIGTERM"): void {
    if (this.#exit) return;
    try {
      this.#child.kill(signal);
    } catch {
      // it exited meanwhile
    }
  }

  /**
   * Waits for the process to exit by itself and for its output to be read.
   * @throws {Error} if it does not exit in time (it is then killed).
   */
  async finished(timeoutMs = DEFAULT_WAIT_MS): Promise<Deno.CommandStatus> {
    try {
      await withDeadline(this.status, timeoutMs, `${this.label} to exit`);
    } catch (error) {
      await this.dispose();
      throw new Error(`${(error as Error).message}: ${this.describe()}`);
    }
    await this.#drained;
    return this.#exit as Deno.CommandStatus;
  }

  /** Stops the process (SIGTERM, then SIGKILL after a grace period) and awaits its exit. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus> {
    this.kill(signal);
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.status,
      new Promise((resolve) => timer = setTimeout(resolve, STOP_GRACE_MS)),
    ]);
    clearTimeout(timer);
    this.kill("SIGKILL");
    await this.status;
    await this.#drained;
    return this.#exit as Deno.CommandStatus;
  }

  /** Stops the process if needed and runs the registered cleanups. */
  async dispose(): Promise<void> {
    await this.stop("SIGKILL");
    const cleanups = this.#cleanups.splice(0);
    for (const cleanup of cleanups) await cleanup();
  }

  /** Same as {@link dispose}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}

/**
 * Permissions of `taskq` run from source as a master or a client command
 * (`put`, `get`, `status`): network, environment and reading files.
 */
export const MASTER_PERMISSIONS: readonly string[] = [
  "--allow-net",
  "--allow-env",
  "--allow-read",
];

/** {@link MASTER_PERMISSIONS} plus running commands: a worker that names itself without the host name. */
export const WORKER_PERMISSIONS: readonly string[] = [...MASTER_PERMISSIONS, "--allow-run"];

/**
 * {@link WORKER_PERMISSIONS} plus reading the host name, as `deno task worker`
 * grants them: the default of {@link runTaskq} and {@link startTaskq}.
 */
export const TASKQ_PERMISSIONS: readonly string[] = [...WORKER_PERMISSIONS, "--allow-sys=hostname"];

/**
 * The command line (after the deno executable) that runs `taskq ARGS` from
 * source with `permissions` ({@link TASKQ_PERMISSIONS} by default).
 */
export function taskqArgs(
  args: readonly string[],
  permissions: readonly string[] = TASKQ_PERMISSIONS,
): string[] {
  return ["run", ...permissions, `${REPO_ROOT}/main.ts`, ...args];
}

/** Options of {@link runTaskq} and {@link startTaskq}. */
export interface TaskqOptions {
  /** The key (TASKQ_AUTHKEY); {@link TEST_KEY} by default, `null` for none. */
  key?: string | null;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Text written to its stdin, which is then closed (no stdin by default); {@link runTaskq} only. */
  stdin?: string;
  /** Deno permission flags; {@link TASKQ_PERMISSIONS} by default. */
  permissions?: readonly string[];
}

/** The outcome of a `taskq` command run to its end. */
export interface TaskqRun {
  /** Exit code. */
  code: number;
  /** Standard output. */
  stdout: string;
  /** Standard error. */
  stderr: string;
}

/** The environment of a `taskq` child started with `options`. */
function taskqEnv(options: TaskqOptions): Record<string, string> {
  return keyEnv(options.key === undefined ? TEST_KEY : options.key, options.env);
}

/** Runs `taskq ARGS` from source as a child process and waits for it to end. */
export async function runTaskq(args: string[], options: TaskqOptions = {}): Promise<TaskqRun> {
  const child = new Deno.Command(Deno.execPath(), {
    args: taskqArgs(args, options.permissions),
    cwd: REPO_ROOT,
    env: taskqEnv(options),
    clearEnv: true,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const out = await child.output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** Starts `taskq ARGS` from source as a {@link Proc} (`stdin` is not supported). */
export function startTaskq(label: string, args: string[], options: TaskqOptions = {}): Proc {
  return new Proc(label, taskqArgs(args, options.permissions), taskqEnv(options));
}

/** Options of {@link startMaster}. */
export interface StartMasterOptions {
  /** The key (TASKQ_AUTHKEY); {@link TEST_KEY} by default, `null` for none. */
  key?: string | null;
  /** Extra command-line flags, e.g. `["--lease", "0.3"]`. */
  args?: string[];
  /** Address to listen on; `127.0.0.1:0` by default. */
  listen?: string;
  /** Keep items durably in this data directory (`--data`); in memory only when absent. */
  dataDir?: string;
}

/** A master running as a subprocess. */
export interface MasterProcess extends AsyncDisposable {
  /** The process. */
  readonly proc: Proc;
  /** `HOST:PORT` it listens on. */
  readonly address: string;
  /** The key it was started with. */
  readonly key: string | null;
  /**
   * Stops it with SIGTERM and checks that it shut down cleanly (exit code 0).
   * @throws {Error} when it exits otherwise (e.g. it had crashed).
   */
  stop(): Promise<void>;
}

/**
 * The command line (after the deno executable) that runs `taskq master` on
 * `listen`, keeping items in memory only (nothing is written to disk) unless
 * `memory` is false.
 */
export function masterArgs(listen: string, extra: string[] = [], memory = true): string[] {
  return taskqArgs(
    ["master", ...(memory ? ["--memory"] : []), "--listen", listen, ...extra],
    MASTER_PERMISSIONS,
  );
}

/**
 * The command line (after the deno executable) that runs `taskq master` on
 * `listen` with its items kept durably in `dataDir` (`--data`), allowed to
 * write there only.
 */
export function durableMasterArgs(listen: string, dataDir: string, extra: string[] = []): string[] {
  const args = masterArgs(listen, ["--data", dataDir, ...extra], false);
  args.splice(1, 0, `--allow-write=${dataDir}`);
  return args;
}

/** The environment of a master or client child with the given key (or none). */
export function keyEnv(key: string | null, extra: Record<string, string> = {}) {
  return childEnv(key === null ? extra : { TASKQ_AUTHKEY: key, ...extra });
}

/**
 * Starts `main.ts master` on an ephemeral loopback port (unless `listen` says
 * otherwise), in memory or durable in `dataDir`, and waits until it prints
 * its address.
 */
export async function startMaster(options: StartMasterOptions = {}): Promise<MasterProcess> {
  const key = options.key === undefined ? TEST_KEY : options.key;
  const listen = options.listen ?? "127.0.0.1:0";
  const proc = options.dataDir === undefined
    ? new Proc("master", masterArgs(listen, options.args), keyEnv(key))
    : new Proc(
      "durable master",
      durableMasterArgs(listen, options.dataDir, options.args),
      keyEnv(key),
    );
  let address: string;
  try {
    address = (await proc.waitForLine(LISTENING, MASTER_START_MS))[1];
  } catch (error) {
    await proc.dispose();
    throw error;
  }
  return {
    proc,
    address,
    key,
    async stop() {
      const status = await proc.stop("SIGTERM");
      if (status.code !== 0) {
        throw new Error(`master did not shut down cleanly: ${proc.describe()}`);
      }
    },
    [Symbol.asyncDispose]: () => proc.dispose(),
  };
}

/** Options of {@link spawnClient}. */
export interface SpawnClientOptions {
  /** Environment variables for the script (besides the inherited ones). */
  env?: Record<string, string>;
  /** Arguments for the script (Deno.args). */
  args?: string[];
}

/**
 * Writes `source` to a fresh temp dir and runs it with deno as a child
 * process. The script runs outside the repo: it should import the library
 * from {@link MOD_URL}; the repo's deno.json is passed with `--config` so
 * that the library's bare imports resolve. The temp dir goes with the process.
 */
export async function spawnClient(
  label: string,
  source: string,
  options: SpawnClientOptions = {},
): Promise<Proc> {
  const dir = await Deno.makeTempDir({ prefix: "taskq-test-" });
  const script = `${dir}/${label.replace(/[^\w-]/g, "_")}.ts`;
  await Deno.writeTextFile(script, source);
  const proc = new Proc(label, [
    "run",
    "--config",
    CONFIG_PATH,
    "--allow-net",
    "--allow-env",
    "--allow-read",
    script,
    ...(options.args ?? []),
  ], childEnv(options.env ?? {}));
  proc.onCleanup(() => Deno.remove(dir, { recursive: true }));
  return proc;
}

/** Splits `HOST:PORT` for `Deno.connect`. */
export function hostPort(address: string): { hostname: string; port: number } {
  const at = address.lastIndexOf(":");
  return {
    hostname: address.slice(0, at).replace(/^\[|\]$/g, ""),
    port: Number(address.slice(at + 1)),
  };
}

/** A frame received by a {@link RawConn} that is not valid msgpack. */
export interface UndecodableFrame {
  undecodable: Uint8Array;
}

/** A decoded `error` message. */
export interface ErrorFrame {
  op: "error";
  code: string;
  message: string;
  rid?: number;
}

/**
 * A raw TCP connection to a master that sends arbitrary bytes and collects
 * the frames the master sends back, for tests that speak the protocol by hand.
 */
export class RawConn implements AsyncDisposable {
  /** The socket. */
  readonly conn: Deno.TcpConn;
  /** Frames received so far, decoded. */
  readonly frames: unknown[] = [];
  #taken = 0;
  #eof = false;
  readonly #pump: Promise<void>;

  private constructor(conn: Deno.TcpConn) {
    this.conn = conn;
    this.#pump = this.#read();
  }

  /** Connects to `address` (`HOST:PORT`). */
  static async open(address: string): Promise<RawConn> {
    return new RawConn(await Deno.connect(hostPort(address)));
  }

  /** Wraps an accepted connection (for fake masters). */
  static wrap(conn: Deno.TcpConn): RawConn {
    return new RawConn(conn);
  }

  async #read(): Promise<void> {
    const reader = new FrameReader();
    try {
      for (;;) {
        const n = await this.conn.read(reader.space());
        if (n === null) break;
        reader.written(n);
        for (let frame = reader.next(); frame !== undefined; frame = reader.next()) {
          try {
            this.frames.push(decode(frame));
          } catch {
            this.frames.push({ undecodable: frame.slice() } satisfies UndecodableFrame);
          }
        }
      }
    } catch {
      // reset by the master, or closed by us
    } finally {
      this.#eof = true;
    }
  }

  /** Whether the connection has ended (closed by the master, reset, or closed by us). */
  get eof(): boolean {
    return this.#eof;
  }

  /** Writes all of `bytes`; returns false if the master had already closed the connection. */
  async write(bytes: Uint8Array): Promise<boolean> {
    try {
      let offset = 0;
      while (offset < bytes.length) offset += await this.conn.write(bytes.subarray(offset));
      return true;
    } catch {
      return false;
    }
  }

  /** Sends `value` as one frame. */
  send(value: unknown): Promise<boolean> {
    return this.write(frameOf(encode(value)));
  }

  /**
   * The next frame not yet taken, waiting for it.
   * @throws {Error} when the connection ends or the deadline passes first.
   */
  async next(timeoutMs = 5_000): Promise<unknown> {
    await waitFor(
      "a frame from the master",
      () => {
        if (this.frames.length > this.#taken) return true;
        if (this.#eof) throw new Error("connection closed while waiting for a frame");
        return false;
      },
      { timeoutMs, intervalMs: 2 },
    );
    return this.frames[this.#taken++];
  }

  /** Waits until the master has closed the connection; returns the frames not yet taken. */
  async closedByPeer(timeoutMs = 5_000): Promise<unknown[]> {
    await waitFor("the master to close the connection", () => this.#eof, {
      timeoutMs,
      intervalMs: 5,
    });
    const rest = this.frames.slice(this.#taken);
    this.#taken = this.frames.length;
    return rest;
  }

  /**
   * Performs the client side of the handshake with `key` and checks the
   * master's proof; returns the welcome message.
   */
  async handshake(key: string = TEST_KEY): Promise<Record<string, unknown>> {
    const keyBytes = new TextEncoder().encode(key);
    const nonce = newNonce();
    await this.send({ op: "hello", version: PROTOCOL_VERSION, nonce, name: "raw test client" });
    const challenge = await this.next() as Record<string, unknown>;
    if (challenge.op !== "challenge") throw new Error(`expected challenge: ${show(challenge)}`);
    const serverNonce = challenge.nonce as Uint8Array;
    await this.send({ op: "auth", proof: clientProof(keyBytes, nonce, serverNonce) });
    const welcome = await this.next() as Record<string, unknown>;
    if (welcome.op !== "welcome") throw new Error(`expected welcome: ${show(welcome)}`);
    const expected = serverProof(keyBytes, nonce, serverNonce);
    if (!bytesEqual(welcome.proof as Uint8Array, expected)) {
      throw new Error("master's proof is wrong");
    }
    return welcome;
  }

  /**
   * Plays a master's side of the handshake, speaking protocol `version` (an
   * older master, for tests of a client's fallback), after the client's
   * `hello` was read: a challenge, the client's auth, a welcome proving `key`.
   */
  async answerHello(
    hello: Record<string, unknown>,
    version: number,
    key: string = TEST_KEY,
  ): Promise<void> {
    const serverNonce = newNonce();
    await this.send({ op: "challenge", version, nonce: serverNonce });
    await this.next();
    await this.send({
      op: "welcome",
      proof: serverProof(new TextEncoder().encode(key), hello.nonce as Uint8Array, serverNonce),
      maxFrameBytes: 1 << 20,
      leaseMs: 30_000,
    });
  }

  /** Shuts down our sending side (the master reads end-of-stream). */
  async closeWrite(): Promise<void> {
    try {
      await this.conn.closeWrite();
    } catch {
      // already closed
    }
  }

  /** Closes the connection and waits for the reader to stop. */
  async close(): Promise<void> {
    try {
      this.conn.close();
    } catch {
      // already closed
    }
    await this.#pump;
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Prefixes `payload` with its 4-byte big-endian length. */
export function frameOf(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + payload.length);
  new DataView(out.buffer).setUint32(0, payload.length);
  out.set(payload, 4);
  return out;
}

/** Whether two byte arrays hold the same bytes. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/** A short printable form of a value, for assertion messages. */
export function show(value: unknown): string {
  return Deno.inspect(value, { depth: 4, breakLength: Infinity });
}

/** Checks that `value` is an `error` message with `code`, and returns it. */
export function asError(value: unknown, code: string): ErrorFrame {
  const msg = value as ErrorFrame;
  if (typeof msg !== "object" || msg === null || msg.op !== "error" || msg.code !== code) {
    throw new Error(`expected an error frame with code ${code}, got ${show(value)}`);
  }
  return msg;
}

/** Copies every binary (msgpackr decodes bin as a Buffer, a Uint8Array subclass) to a Uint8Array. */
export function plain(value: unknown): unknown {
  if (value instanceof Uint8Array) return new Uint8Array(value);
  if (Array.isArray(value)) return value.map(plain);
  if (value !== null && typeof value === "object" && !(value instanceof Date)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  }
  return value;
}

/** The record `taskq worker --results` puts for each item done. */
export interface ResultRecord {
  /** The item's task id. */
  id: number;
  /** The queue the item came from. */
  queue: string;
  /** The item. */
  item: unknown;
  /** The command's output. */
  output: string;
  /** The command's exit code. */
  exitCode: number;
  /** Which attempt succeeded. */
  attempt: number;
  /** The worker's name. */
  worker: string;
}

/** A small seeded pseudo-random generator (mulberry32), for reproducible junk. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` pseudo-random bytes from `random`. */
export function randomBytes(random: () => number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(random() * 256);
  return out;
}

/**
 * A TCP port on loopback that was free a moment ago: listens on port 0, notes
 * the port and closes. For a master that must come back on the same address.
 */
export function freeLoopbackPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0, transport: "tcp" });
  try {
    return (listener.addr as Deno.NetAddr).port;
  } finally {
    listener.close();
  }
}

/** What `ps` reports of a process: its state letters and its command line. */
export interface ProcessInfo {
  /** `ps`'s STAT column: `Z…` for a zombie (dead, not yet reaped). */
  state: string;
  /** Its command line, arguments separated by spaces. */
  args: string;
}

/**
 * What `ps` reports of process `pid`, or `undefined` once it is gone. Asked of
 * `ps` (which `--allow-run` covers) because Deno lets a program read `/proc`
 * only with every permission, and the test task grants less.
 */
export async function processInfo(pid: number): Promise<ProcessInfo | undefined> {
  const out = await new Deno.Command("ps", {
    args: ["-o", "stat=,args=", "-p", String(pid)],
    stdout: "piped",
    stderr: "null",
  }).output();
  const line = new TextDecoder().decode(out.stdout).trim();
  if (!out.success || line === "") return undefined;
  const space = line.indexOf(" ");
  return space < 0
    ? { state: line, args: "" }
    : { state: line.slice(0, space), args: line.slice(space + 1).trim() };
}

/** Whether process `pid` has ended (gone, or a zombie not yet reaped). */
export async function processEnded(pid: number): Promise<boolean> {
  const info = await processInfo(pid);
  return info === undefined || info.state.startsWith("Z");
}
