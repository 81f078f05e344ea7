/**
 * The seed workload on the peers a user would pick instead of taskq, for
 * `deno task bench --peers` (scripts/bench.ts imports {@link runPeers} and
 * {@link peerRatios}): the same N, the same worker counts and the same shape
 * as taskq's run. One producer process puts N random ints, W worker processes
 * (each its own Deno process and its own client: `deno run -A
 * scripts/peers_bench.ts worker PEER HOST:PORT NAMESPACE`) take an int n,
 * compute `n * n = m` and push that string to a results list, and the
 * producer collects all N results. The clock starts once every worker has
 * connected and stops at the last result; the results are then checked (each
 * `n * n = m` right, one per int put).
 *
 * The peers, each on a throwaway server (a temp dir, a free loopback port, no
 * persistence, as taskq's in-memory master; stopped by its PID at the end):
 * - `redis-list`: Redis lists. The producer puts with LPUSH of
 *   {@link PUT_BATCH} values per command, {@link PUT_BATCHES_IN_FLIGHT}
 *   commands pipelined (as taskq's producer batches its puts); each worker
 *   BRPOPs one int, then LPUSHes its result, the LPUSH pipelined with the
 *   next BRPOP (one round trip per task); the producer collects with
 *   `RPOP results COUNT` ({@link COLLECT_BATCH}), blocking in BRPOP when the
 *   list is empty.
 * - `redis-streams`: a Redis stream with a consumer group. The producer
 *   pipelines XADDs ({@link PUT_BATCH} per pipeline, {@link PUT_BATCHES_IN_FLIGHT}
 *   pipelines in flight); each worker reads with `XREADGROUP COUNT
 *   {@link STREAM_READ_COUNT} BLOCK`, XADDs the results to a results stream
 *   and XACKs the batch, pipelined with its next read; the producer collects
 *   with `XREAD COUNT {@link COLLECT_BATCH} BLOCK`.
 * - `beanstalkd`: the producer pipelines puts into the tube of tasks
 *   ({@link PUT_BATCH} per write, {@link PUT_BATCHES_IN_FLIGHT} writes in
 *   flight); each worker reserves one job, puts its result into the results
 *   tube and deletes the job, the put and the delete pipelined with its next
 *   reserve; the producer reserves results in pipelined windows (one blocking
 *   reserve, then up to {@link COLLECT_BATCH} - 1 that answer at once) and
 *   deletes them.
 *
 * Clients: ioredis (pinned in deno.json) for Redis; for beanstalkd our own
 * pipelined protocol client, scripts/beanstalk_client.ts (its module
 * documentation says why no npm client). The servers are Debian's
 * redis-server and beanstalkd, installed with apt-get when their binaries are
 * missing ({@link installPeerServers} says what it installs).
 *
 * Usage: deno run -A scripts/peers_bench.ts [N]   (the peers alone; bench.ts
 * runs them next to taskq with `--peers`)
 *
 * @module
 */

import process from "node:process";
import { Redis } from "ioredis";
import { BeanstalkClient } from "./beanstalk_client.ts";

/** The peers, in the order they run. */
export const PEERS = ["redis-list", "redis-streams", "beanstalkd"] as const;

/** One of {@link PEERS}. */
export type Peer = typeof PEERS[number];

/** The Redis client and its version (keep in step with deno.json's `ioredis`). */
export const REDIS_CLIENT = "ioredis 6.0.0";
/** The beanstalkd client. */
export const BEANSTALK_CLIENT = "scripts/beanstalk_client.ts";

/** Tasks per run when none is given (as bench.ts). */
const DEFAULT_N = 100_000;
/** Worker processes per run when none are given (as bench.ts). */
const DEFAULT_WORKER_COUNTS: readonly number[] = [1, 2, 4];
/** Ints per producer batch (taskq's producer puts batches of this many too). */
const PUT_BATCH = 1_000;
/** Producer batches sent before the oldest one's reply is awaited. */
const PUT_BATCHES_IN_FLIGHT = 8;
/** Results the producer takes per request, at most. */
const COLLECT_BATCH = 1_000;
/** Entries a Redis Streams worker reads per XREADGROUP, at most. */
const STREAM_READ_COUNT = 100;
/** Ints are drawn from 0 to this, inclusive (the seed's range). */
const MAX_INT = 10_000;
/**
 * How long a worker's blocking take waits, in seconds; a worker exits when one
 * comes back empty after it has handled an item (taskq's workers exit after
 * 1 s idle too) or after the producer closed its stdin (it has all results).
 */
const WORKER_IDLE_S = 1;
/** How long the producer's blocking collect waits, in seconds, before it tries again. */
const COLLECT_BLOCK_S = 1;
/** Time the producer waits for a result before the run fails, in ms. */
const COLLECT_TIMEOUT_MS = 60_000;
/** Time a scenario may take when the caller sets none: this plus 1 ms per task. */
const SCENARIO_BASE_MS = 60_000;
/** Time the workers have to connect, in ms. */
const WORKER_READY_MS = 60_000;
/** Time the workers have to exit after the last result, in ms (then they are killed). */
const WORKER_EXIT_MS = 10_000;
/** Time a server has to start listening, in ms. */
const SERVER_START_MS = 15_000;
/** How often a starting server's port is tried, in ms. */
const SERVER_POLL_MS = 20;
/** Time a stopped server or process has to exit after SIGTERM before SIGKILL, in ms. */
const STOP_GRACE_MS = 5_000;
/** The consumer group of the Redis Streams runs. */
const STREAM_GROUP = "workers";
/** The field that holds an int, or a result, in a stream entry. */
const STREAM_FIELD = "v";
/** The line a worker prints once it is connected and ready. */
const READY_LINE = "ready";
/** Debian packages that hold the servers, by binary. */
const SERVER_PACKAGES: Readonly<Record<string, string>> = {
  "redis-server": "redis-server",
  "beanstalkd": "beanstalkd",
};
/** What each peer runs on. */
const PEER_SERVER: Readonly<Record<Peer, "redis-server" | "beanstalkd">> = {
  "redis-list": "redis-server",
  "redis-streams": "redis-server",
  "beanstalkd": "beanstalkd",
};

/** Why the peer tests and runs are skipped when a server binary is missing. */
export const PEER_SERVERS_MISSING: string =
  "redis-server or beanstalkd not found on PATH (install Debian's redis-server and beanstalkd " +
  "packages: apt-get install -y redis-server beanstalkd)";

const root = new URL("..", import.meta.url).pathname;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A bench row, in bench.ts's shape (one JSON line and one table row each). */
export interface PeerRow {
  scenario: string;
  store?: Peer;
  workers?: number;
  value: number;
  unit: string;
  [key: string]: unknown;
}

/** A throwaway server: stop() ends it by its PID and removes its temp dir. */
export interface PeerServer {
  /** `redis-server` or `beanstalkd`. */
  binary: string;
  /** Its version, as it reports it (`redis 7.0.15`, `beanstalkd 1.12`). */
  version: string;
  hostname: string;
  port: number;
  /** HOST:PORT. */
  address: string;
  pid: number;
  stop(): Promise<void>;
}

/** The path of `binary` on PATH, or undefined. */
export function findBinary(binary: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (dir === "") continue;
    try {
      const info = Deno.statSync(`${dir}/${binary}`);
      if (info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0) return `${dir}/${binary}`;
    } catch {
      // Not there.
    }
  }
  return undefined;
}

/** Whether both servers are installed (the tests skip without them). */
export function peerServersAvailable(): boolean {
  return Object.keys(SERVER_PACKAGES).every((binary) => findBinary(binary) !== undefined);
}

/**
 * Installs Debian's packages of the servers whose binaries are missing
 * (`apt-get update && apt-get install -y …`, through `sudo -n` when not
 * root), saying what it installs. Resolves to the binaries still missing
 * afterwards (none when all is well).
 */
export async function installPeerServers(
  log: (line: string) => void = console.log,
): Promise<string[]> {
  const missing = Object.keys(SERVER_PACKAGES).filter((binary) => findBinary(binary) === undefined);
  if (missing.length === 0) return [];
  const packages = missing.map((binary) => SERVER_PACKAGES[binary]);
  log(
    `peers: ${missing.join(", ")} not found: installing Debian's ${packages.join(", ")} ` +
      `(apt-get update && apt-get install -y ${packages.join(" ")})`,
  );
  const sudo = Deno.uid() === 0 ? [] : ["sudo", "-n"];
  const run = async (args: string[]) => {
    const [command, ...rest] = [...sudo, ...args];
    try {
      const out = await new Deno.Command(command, {
        args: rest,
        env: { DEBIAN_FRONTEND: "noninteractive" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      if (!out.success) {
        const tail = decoder.decode(out.stderr).trim().split("\n").slice(-3).join(" / ");
        log(`peers: ${args.slice(0, 2).join(" ")} failed: ${tail}`);
      }
      return out.success;
    } catch (error) {
      log(`peers: ${args.slice(0, 2).join(" ")} failed: ${(error as Error).message}`);
      return false;
    }
  };
  if (await run(["apt-get", "update", "-qq"])) {
    await run(["apt-get", "install", "-y", "-qq", ...packages]);
  }
  const still = missing.filter((binary) => findBinary(binary) === undefined);
  if (still.length === 0) log(`peers: installed ${packages.join(", ")}`);
  return still;
}

/** A free TCP port on 127.0.0.1 (free when asked; the server binds it right after). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    return (listener.addr as Deno.NetAddr).port;
  } finally {
    listener.close();
  }
}

/** What `binary ARGS` prints (its version line). */
async function versionOf(binary: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(binary, { args, stdout: "piped", stderr: "piped" }).output();
  return decoder.decode(out.stdout).trim().split("\n")[0];
}

/** Stops `child`: SIGTERM, then SIGKILL if it is still there after {@link STOP_GRACE_MS}. */
async function stopProcess(child: Deno.ChildProcess): Promise<void> {
  const exited = (ms: number) =>
    new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      child.status.then(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  if (await exited(0)) return;
  try {
    child.kill("SIGTERM");
  } catch {
    // Exited meanwhile.
  }
  if (await exited(STOP_GRACE_MS)) return;
  try {
    child.kill("SIGKILL");
  } catch {
    // Exited meanwhile.
  }
  await child.status;
}

/**
 * Starts `binary` with `args(port, dir)` on a free loopback port and a fresh
 * temp dir, and waits until the port accepts connections.
 */
async function startServer(
  binary: string,
  version: string,
  args: (port: number, dir: string) => string[],
): Promise<PeerServer> {
  const path = findBinary(binary);
  if (path === undefined) throw new Error(`${binary} not found: ${PEER_SERVERS_MISSING}`);
  const dir = await Deno.makeTempDir({ prefix: `taskq-peer-${binary}-` });
  const port = freePort();
  const child = new Deno.Command(path, {
    args: args(port, dir),
    cwd: dir,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = child.stderr.pipeThrough(new TextDecoderStream());
  let errors = "";
  const draining = stderr.pipeTo(
    new WritableStream({ write: (chunk) => void (errors = (errors + chunk).slice(-2_000)) }),
  ).catch(() => {});
  let stopping: Promise<void> | undefined;
  const stop = () =>
    stopping ??= (async () => {
      await stopProcess(child);
      await draining;
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    })();
  const deadline = Date.now() + SERVER_START_MS;
  let running = true;
  child.status.then(() => running = false);
  for (;;) {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      break;
    } catch {
      if (!running || Date.now() > deadline) {
        await stop();
        throw new Error(
          `${binary} did not start on 127.0.0.1:${port}${errors ? `: ${errors.trim()}` : ""}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, SERVER_POLL_MS));
    }
  }
  return {
    binary,
    version,
    hostname: "127.0.0.1",
    port,
    address: `127.0.0.1:${port}`,
    pid: child.pid,
    stop,
  };
}

/** A throwaway Redis: no RDB snapshots, no AOF (in memory, as taskq's `--memory`). */
export async function startRedis(): Promise<PeerServer> {
  const line = await versionOf("redis-server", ["--version"]);
  const version = `redis ${/v=(\S+)/.exec(line)?.[1] ?? line}`;
  return await startServer("redis-server", version, (port, dir) => [
    ...["--port", String(port), "--bind", "127.0.0.1", "--dir", dir],
    ...["--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", ""],
    ...["--loglevel", "warning"],
  ]);
}

/** A throwaway beanstalkd: no write-ahead log (in memory, as taskq's `--memory`). */
export async function startBeanstalkd(): Promise<PeerServer> {
  const version = await versionOf("beanstalkd", ["-v"]);
  return await startServer(
    "beanstalkd",
    version,
    (port) => ["-l", "127.0.0.1", "-p", String(port)],
  );
}

/** Connects ioredis to `address`: no reconnects, no offline queue, errors surface. */
async function redisClient(address: string): Promise<Redis> {
  const [host, port] = splitAddress(address);
  const redis = new Redis({
    host,
    port,
    lazyConnect: true,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
  });
  // Failures reach the commands that were waiting; the event itself needs no handler.
  redis.on("error", () => {});
  await redis.connect();
  return redis;
}

function splitAddress(address: string): [string, number] {
  const colon = address.lastIndexOf(":");
  return [address.slice(0, colon), Number(address.slice(colon + 1))];
}

/** Names of one run's lists, streams or tubes. */
function names(namespace: string): { tasks: string; results: string } {
  return { tasks: `${namespace}-tasks`, results: `${namespace}-results` };
}

/** The seed's work on one int. */
function square(n: number): string {
  return `${n} * ${n} = ${n * n}`;
}

/** The producer's side of a peer: puts batches, and collects results. */
interface Producer {
  /** Puts one batch of ints. */
  put(values: readonly number[]): Promise<void>;
  /** Waits up to {@link COLLECT_BLOCK_S} for results, takes up to `max`; [] when none came. */
  collect(max: number): Promise<string[]>;
  close(): Promise<void>;
}

/** Redis lists: LPUSH batches; RPOP COUNT, or a blocking BRPOP when empty. */
async function redisListProducer(address: string, namespace: string): Promise<Producer> {
  const { tasks, results } = names(namespace);
  const putter = await redisClient(address);
  const collector = await redisClient(address);
  return {
    put: async (values) => {
      await putter.lpush(tasks, ...values.map(String));
    },
    collect: async (max) => {
      const many = await collector.rpop(results, max);
      if (many !== null && many.length > 0) return many;
      const one = await collector.brpop(results, COLLECT_BLOCK_S);
      return one === null ? [] : [one[1]];
    },
    close: async () => {
      await putter.quit();
      await collector.quit();
    },
  };
}

/** Redis Streams: pipelined XADDs; XREAD COUNT BLOCK on the results stream. */
async function redisStreamsProducer(address: string, namespace: string): Promise<Producer> {
  const { tasks, results } = names(namespace);
  const putter = await redisClient(address);
  const collector = await redisClient(address);
  // The group reads the stream from its start; MKSTREAM creates it.
  await putter.xgroup("CREATE", tasks, STREAM_GROUP, "0", "MKSTREAM");
  let lastId = "0";
  return {
    put: async (values) => {
      const pipeline = putter.pipeline();
      for (const value of values) pipeline.xadd(tasks, "*", STREAM_FIELD, String(value));
      for (const [error] of (await pipeline.exec()) ?? []) if (error) throw error;
    },
    collect: async (max) => {
      const reply = await collector.xread(
        "COUNT",
        max,
        "BLOCK",
        COLLECT_BLOCK_S * 1000,
        "STREAMS",
        results,
        lastId,
      );
      if (reply === null) return [];
      const entries = reply[0][1] as [string, string[]][];
      lastId = entries[entries.length - 1][0];
      return entries.map(([, fields]) => fields[1]);
    },
    close: async () => {
      await putter.quit();
      await collector.quit();
    },
  };
}

/** beanstalkd: pipelined puts; reserves in pipelined windows that grow while they fill. */
async function beanstalkProducer(address: string, namespace: string): Promise<Producer> {
  const { tasks, results } = names(namespace);
  const [hostname, port] = splitAddress(address);
  const putter = await BeanstalkClient.connect({ hostname, port });
  const collector = await BeanstalkClient.connect({ hostname, port });
  await putter.use(tasks);
  await collector.watch(results);
  await collector.ignore("default");
  /** Reserves sent per window: doubles while windows come back full, else shrinks to fit. */
  let window = 1;
  const deletes: Promise<void>[] = [];
  return {
    put: async (values) => {
      await Promise.all(values.map((value) => putter.put(String(value))));
    },
    collect: async (max) => {
      const k = Math.min(max, window);
      // One reserve that waits, then k - 1 that answer at once: beanstalkd answers in order.
      const replies = await Promise.all([
        collector.reserve(COLLECT_BLOCK_S),
        ...Array.from({ length: k - 1 }, () => collector.reserve(0)),
      ]);
      const got: string[] = [];
      for (const job of replies) {
        if (job === undefined) continue;
        got.push(decoder.decode(job.body));
        deletes.push(collector.delete(job.id));
      }
      window = got.length === k ? Math.min(COLLECT_BATCH, k * 2) : Math.max(1, got.length + 1);
      // The deletes went out with the reserves of the next window: check them in batches.
      if (deletes.length >= COLLECT_BATCH) await Promise.all(deletes.splice(0));
      return got;
    },
    close: async () => {
      await Promise.all(deletes.splice(0));
      await putter.close();
      await collector.close();
    },
  };
}

const PRODUCERS: Readonly<
  Record<Peer, (address: string, namespace: string) => Promise<Producer>>
> = {
  "redis-list": redisListProducer,
  "redis-streams": redisStreamsProducer,
  "beanstalkd": beanstalkProducer,
};

/** What a worker prints as its last line. */
interface WorkerSummary {
  handled: number;
  cpuSeconds: number;
}

/** Set in a worker once the producer closed its stdin: all results are in. */
let producerDone = false;

/** Sets {@link producerDone} when stdin ends. */
async function watchStdin(): Promise<void> {
  try {
    for await (const _ of Deno.stdin.readable) {
      // Nothing is sent: only the end matters.
    }
  } finally {
    producerDone = true;
  }
}

/** A Redis list worker: BRPOP one int, LPUSH its result (pipelined with the next BRPOP). */
async function redisListWorker(address: string, namespace: string): Promise<number> {
  const { tasks, results } = names(namespace);
  const redis = await redisClient(address);
  console.log(READY_LINE);
  let handled = 0;
  let failure: unknown;
  for (;;) {
    const reply = await redis.brpop(tasks, WORKER_IDLE_S);
    if (failure !== undefined) throw failure;
    if (reply === null) {
      if (handled > 0 || producerDone) break;
      continue;
    }
    // Not awaited: it goes out with the next BRPOP, whose reply comes after its own.
    redis.lpush(results, square(Number(reply[1]))).catch((error: unknown) => failure ??= error);
    handled++;
  }
  await redis.quit();
  return handled;
}

/** A Redis Streams worker: XREADGROUP a batch, XADD the results and XACK (pipelined). */
async function redisStreamsWorker(address: string, namespace: string): Promise<number> {
  const { tasks, results } = names(namespace);
  const redis = await redisClient(address);
  const consumer = `worker-${Deno.pid}`;
  console.log(READY_LINE);
  let handled = 0;
  let acking: Promise<unknown> = Promise.resolve();
  for (;;) {
    const reply = await redis.xreadgroup(
      "GROUP",
      STREAM_GROUP,
      consumer,
      "COUNT",
      STREAM_READ_COUNT,
      "BLOCK",
      WORKER_IDLE_S * 1000,
      "STREAMS",
      tasks,
      ">",
    ) as [string, [string, string[]][]][] | null;
    await acking;
    if (reply === null) {
      if (handled > 0 || producerDone) break;
      continue;
    }
    const entries = reply[0][1];
    const pipeline = redis.pipeline();
    for (const [, fields] of entries) {
      pipeline.xadd(results, "*", STREAM_FIELD, square(Number(fields[1])));
    }
    pipeline.xack(tasks, STREAM_GROUP, ...entries.map(([id]) => id));
    // Checked after the next read, with which it goes out.
    acking = pipeline.exec().then((replies: [Error | null, unknown][] | null) => {
      for (const [error] of replies ?? []) if (error) throw error;
    });
    acking.catch(() => {});
    handled += entries.length;
  }
  await acking;
  await redis.quit();
  return handled;
}

/** A beanstalkd worker: reserve one job, put its result, delete it (pipelined with the next reserve). */
async function beanstalkWorker(address: string, namespace: string): Promise<number> {
  const { tasks, results } = names(namespace);
  const [hostname, port] = splitAddress(address);
  const client = await BeanstalkClient.connect({ hostname, port });
  await Promise.all([client.watch(tasks), client.ignore("default"), client.use(results)]);
  console.log(READY_LINE);
  let handled = 0;
  let failure: unknown;
  for (;;) {
    const job = await client.reserve(WORKER_IDLE_S);
    if (failure !== undefined) throw failure;
    if (job === undefined) {
      if (handled > 0 || producerDone) break;
      continue;
    }
    // Not awaited: both go out with the next reserve, whose reply comes after theirs.
    client.put(square(Number(decoder.decode(job.body)))).catch((error: unknown) =>
      failure ??= error
    );
    client.delete(job.id).catch((error: unknown) => failure ??= error);
    handled++;
  }
  await client.close();
  return handled;
}

const WORKERS: Readonly<Record<Peer, (address: string, namespace: string) => Promise<number>>> = {
  "redis-list": redisListWorker,
  "redis-streams": redisStreamsWorker,
  "beanstalkd": beanstalkWorker,
};

/** Reads a child's stdout line by line. */
class LineReader {
  readonly #reader: ReadableStreamDefaultReader<string>;
  #text = "";

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  }

  /** The next line, or undefined at the end. */
  async next(): Promise<string | undefined> {
    for (;;) {
      const newline = this.#text.indexOf("\n");
      if (newline >= 0) {
        const line = this.#text.slice(0, newline);
        this.#text = this.#text.slice(newline + 1);
        return line;
      }
      const { value, done } = await this.#reader.read();
      if (done) {
        const rest = this.#text;
        this.#text = "";
        return rest === "" ? undefined : rest;
      }
      this.#text += value;
    }
  }

  cancel(): Promise<void> {
    return this.#reader.cancel().catch(() => {});
  }
}

/** Rejects after `ms` with `message`, unless `promise` settles first. */
async function deadline<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => timer = setTimeout(() => reject(new Error(message)), ms)),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Options of {@link peerSeed}. */
export interface PeerSeedOptions {
  peer: Peer;
  /** The server's HOST:PORT. */
  address: string;
  /** Tasks. */
  n: number;
  /** Worker processes. */
  workers: number;
  /** Prefix of the run's lists, streams or tubes (unique per run). */
  namespace?: string;
  /** Called with progress text (the bench overwrites one stderr line). */
  progress?: (text: string) => void;
}

/** What one run measured. */
export interface PeerSeedResult {
  /** Tasks per second, from the first put to the last result collected. */
  tasksPerS: number;
  /** When the last put was acknowledged, in seconds from the start. */
  putsDoneSeconds: number;
  /** Tasks each worker handled. */
  handled: number[];
  /** The workers' CPU time (user + system), in seconds, start-up included. */
  workerCpuSeconds: number;
}

let runCounter = 0;

/**
 * The seed workload on one peer: spawns the workers, waits until each is
 * connected, then times the puts and the collection of every result, and
 * checks the results. Everything it started is stopped when it ends.
 * @throws {Error} when a result is missing or wrong, or a worker failed.
 */
export async function peerSeed(options: PeerSeedOptions): Promise<PeerSeedResult> {
  const { peer, address, n, workers } = options;
  const namespace = options.namespace ?? `bench-${Deno.pid}-${++runCounter}`;
  const producer = await PRODUCERS[peer](address, namespace);
  const procs: Deno.ChildProcess[] = [];
  const readers: LineReader[] = [];
  try {
    for (let i = 0; i < workers; i++) {
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", `${root}scripts/peers_bench.ts`, "worker", peer, address, namespace],
        stdin: "piped",
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      procs.push(child);
      readers.push(new LineReader(child.stdout));
    }
    // Time the work, not the workers' start-up.
    await deadline(
      Promise.all(readers.map(async (reader, i) => {
        const line = await reader.next();
        if (line !== READY_LINE) throw new Error(`worker ${i} exited before it was ready`);
      })),
      WORKER_READY_MS,
      `the workers were not ready within ${WORKER_READY_MS / 1000} s`,
    );
    const ints = Array.from({ length: n }, () => Math.floor(Math.random() * (MAX_INT + 1)));
    const t0 = performance.now();
    let putsDoneSeconds = 0;
    const putting = (async () => {
      const inFlight: Promise<void>[] = [];
      for (let i = 0; i < n; i += PUT_BATCH) {
        const put = producer.put(ints.slice(i, i + PUT_BATCH));
        put.catch(() => {});
        inFlight.push(put);
        if (inFlight.length >= PUT_BATCHES_IN_FLIGHT) await inFlight.shift();
      }
      await Promise.all(inFlight);
      putsDoneSeconds = Math.round((performance.now() - t0) / 10) / 100;
    })();
    putting.catch(() => {});
    const got: string[] = [];
    let lastResultAt = Date.now();
    while (got.length < n) {
      const results = await producer.collect(Math.min(COLLECT_BATCH, n - got.length));
      if (results.length === 0) {
        if (Date.now() - lastResultAt > COLLECT_TIMEOUT_MS) {
          throw new Error(`only ${got.length} of ${n} results came`);
        }
        continue;
      }
      lastResultAt = Date.now();
      for (const result of results) got.push(result);
      if (got.length % Math.ceil(n / 4) < results.length) {
        options.progress?.(`${peer}, ${workers} workers: ${got.length}/${n}`);
      }
    }
    const ms = performance.now() - t0;
    await putting;
    checkResults(ints, got);
    // Tells the workers that all is done: one that took nothing exits at its next empty take.
    await Promise.all(procs.map((child) => child.stdin.close().catch(() => {})));
    const summaries = await deadline(
      Promise.all(procs.map(async (child, i) => {
        const { code } = await child.status;
        const last = await readers[i].next();
        if (code !== 0) throw new Error(`a ${peer} worker exited with code ${code}`);
        return JSON.parse(last ?? "{}") as WorkerSummary;
      })),
      WORKER_EXIT_MS + WORKER_IDLE_S * 1000,
      `the workers did not exit within ${WORKER_EXIT_MS / 1000} s of the last result`,
    );
    return {
      tasksPerS: Math.round(n / (ms / 1000)),
      putsDoneSeconds,
      handled: summaries.map((s) => s.handled),
      workerCpuSeconds: Math.round(summaries.reduce((sum, s) => sum + s.cpuSeconds, 0) * 100) /
        100,
    };
  } finally {
    await Promise.all(procs.map((child) => child.stdin.close().catch(() => {})));
    await Promise.all(procs.map(stopProcess));
    await Promise.all(readers.map((reader) => reader.cancel()));
    await producer.close().catch(() => {});
  }
}

/** Checks that `results` holds exactly one right `n * n = m` per int of `ints`. */
function checkResults(ints: readonly number[], results: readonly string[]): void {
  const expected = new Map<number, number>();
  for (const n of ints) expected.set(n, (expected.get(n) ?? 0) + 1);
  for (const result of results) {
    const match = /^(\d+) \* (\d+) = (\d+)$/.exec(result);
    const n = Number(match?.[1]);
    if (match === null || match[2] !== match[1] || Number(match[3]) !== n * n) {
      throw new Error(`a wrong result: "${result}"`);
    }
    const left = expected.get(n) ?? 0;
    if (left === 0) throw new Error(`a result for ${n} that was not asked for (or twice)`);
    expected.set(n, left - 1);
  }
  if (results.length !== ints.length) {
    throw new Error(`${results.length} results for ${ints.length} tasks`);
  }
}

/** Options of {@link runPeers}. */
export interface RunPeersOptions {
  /** Tasks per run. */
  n: number;
  /** Worker counts, each one run per peer. */
  workerCounts: readonly number[];
  /** Receives each row (bench.ts prints it as a JSON line and keeps it for the table). */
  report: (row: PeerRow) => void;
  /** The peers to run (all by default). */
  peers?: readonly Peer[];
  /** Time one run may take, in ms (default 60 s plus 1 ms per task). */
  scenarioMs?: number;
  /** Progress text (default: none). */
  progress?: (text: string) => void;
}

/**
 * Runs the seed workload on each peer for each worker count, on a throwaway
 * server per peer (installed first when missing), and reports one row per run
 * (`scenario: "seed-workload"`, `store`: the peer). Resolves to the failures
 * (a run that failed or ran over its time is reported there and the others go
 * on; a peer whose server is missing is skipped with a message).
 */
export async function runPeers(options: RunPeersOptions): Promise<string[]> {
  const { n, workerCounts, report } = options;
  const peers = options.peers ?? PEERS;
  const scenarioMs = options.scenarioMs ?? SCENARIO_BASE_MS + n;
  const failures: string[] = [];
  await installPeerServers();
  for (const binary of ["redis-server", "beanstalkd"] as const) {
    const mine = peers.filter((peer) => PEER_SERVER[peer] === binary);
    if (mine.length === 0) continue;
    if (findBinary(binary) === undefined) {
      console.log(`peers ${mine.join(", ")}: SKIPPED (${PEER_SERVERS_MISSING})`);
      continue;
    }
    let server: PeerServer;
    try {
      server = binary === "redis-server" ? await startRedis() : await startBeanstalkd();
    } catch (error) {
      failures.push(`peers ${mine.join(", ")}: FAILED: ${(error as Error).message}`);
      console.error(failures.at(-1));
      continue;
    }
    try {
      for (const peer of mine) {
        for (const workers of workerCounts) {
          const label = `peer ${peer}, ${workers} workers`;
          try {
            const result = await deadline(
              peerSeed({ peer, address: server.address, n, workers, progress: options.progress }),
              scenarioMs,
              `did not finish within ${scenarioMs / 1000} s`,
            );
            report({
              scenario: "seed-workload",
              store: peer,
              workers,
              value: result.tasksPerS,
              unit: "tasks/s",
              n,
              putsDoneSeconds: result.putsDoneSeconds,
              handled: result.handled,
              workerCpuSeconds: result.workerCpuSeconds,
              server: server.version,
              client: peer === "beanstalkd" ? BEANSTALK_CLIENT : REDIS_CLIENT,
              persistence: "none",
            });
          } catch (error) {
            failures.push(`${label}: FAILED: ${(error as Error).message}`);
            console.error(failures.at(-1));
          }
        }
      }
    } finally {
      await server.stop();
    }
  }
  return failures;
}

/** One "taskq / best peer" line and row per worker count. */
export interface PeerRatio {
  workers: number;
  /** The fastest peer at that worker count, and its tasks/s. */
  bestPeer: string;
  bestPeerValue: number;
  /** taskq's tasks/s over the best peer's, by store (memory, durable), when measured. */
  ratios: Record<string, number>;
}

/**
 * taskq's seed workload over the best peer's, per worker count, from the rows
 * of one run: `find(store, workers)` gives a seed-workload row's tasks/s.
 */
export function peerRatios(
  find: (store: string, workers: number) => number | undefined,
  workerCounts: readonly number[],
  stores: readonly string[] = ["memory", "durable"],
): PeerRatio[] {
  const out: PeerRatio[] = [];
  for (const workers of workerCounts) {
    let best: { peer: string; value: number } | undefined;
    for (const peer of PEERS) {
      const value = find(peer, workers);
      if (value !== undefined && (best === undefined || value > best.value)) best = { peer, value };
    }
    if (best === undefined) continue;
    const ratios: Record<string, number> = {};
    for (const store of stores) {
      const value = find(store, workers);
      if (value !== undefined) ratios[store] = Math.round((value / best.value) * 10) / 10;
    }
    out.push({ workers, bestPeer: best.peer, bestPeerValue: best.value, ratios });
  }
  return out;
}

if (import.meta.main) {
  if (Deno.args[0] === "worker") {
    const [, peer, address, namespace] = Deno.args;
    if (!(PEERS as readonly string[]).includes(peer) || !address || !namespace) {
      console.error(`usage: peers_bench.ts worker ${PEERS.join("|")} HOST:PORT NAMESPACE`);
      Deno.exit(2);
    }
    watchStdin().catch(() => {});
    const handled = await WORKERS[peer as Peer](address, namespace);
    const cpu = process.cpuUsage();
    const summary: WorkerSummary = { handled, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
    console.log(JSON.stringify(summary));
    // stdin may still be open (the producer closes it once it has every result).
    Deno.exit(0);
  } else {
    // The peers alone, for a quick look; bench.ts runs them next to taskq.
    const n = Number(Deno.args[0] ?? DEFAULT_N);
    if (!Number.isInteger(n) || n < 1) throw new Error(`N must be a positive integer, not ${n}`);
    const failures = await runPeers({
      n,
      workerCounts: DEFAULT_WORKER_COUNTS,
      report: (row) => console.log(JSON.stringify(row)),
      progress: (text) => Deno.stderr.writeSync(encoder.encode(`  ${text}\r`)),
    });
    if (failures.length > 0) Deno.exit(1);
  }
}
