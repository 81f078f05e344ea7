/**
 * A throwaway PostgreSQL cluster for tests and measurements: a fresh temp dir,
 * `initdb` (trust auth, superuser `taskq`, no password), a server on a free
 * loopback port with its Unix socket in the temp dir, and one database.
 *
 * The server binaries are Debian's (`/usr/lib/postgresql/<newest>/bin`), or
 * those of the `PG_BIN` environment variable. PostgreSQL refuses to run as
 * root, so when we are root every server command runs as the `postgres` OS
 * user (through `runuser`), and the temp dir is handed to that user.
 *
 * By default the cluster trades durability for speed (`fsync=off`,
 * `synchronous_commit=off`, `full_page_writes=off`); `durable: true` keeps
 * PostgreSQL's defaults for those, as production would run.
 *
 * Only the server started here is ever stopped or killed: `destroy()` falls
 * back to a signal only for the postmaster PID that this helper saw start, and
 * only while that PID's command line still names this cluster's data dir.
 *
 * @module
 */

import postgres from "postgres";
import { freeLoopbackPort, waitFor } from "./_helpers.ts";

/** Where Debian installs each PostgreSQL major version, as `<version>/bin`. */
const DEBIAN_POSTGRESQL_DIR = "/usr/lib/postgresql";

/**
 * Parent of the temp dirs: short (the Unix socket path `DIR/.s.PGSQL.PORT`
 * must fit in 107 bytes) and traversable by the `postgres` user.
 */
const TEMP_PARENT = "/tmp";

/** The superuser `initdb` creates; trust auth, so no password. */
const SUPERUSER = "taskq";

/** The database created unless told otherwise. */
const DEFAULT_DATABASE = "taskq";

/** The OS user that runs the server when we are root. */
const POSTGRES_OS_USER = "postgres";

/** Where `runuser` may be. */
const RUNUSER_PATHS: readonly string[] = ["/usr/sbin/runuser", "/sbin/runuser"];

/** Time `pg_ctl` waits for the server to start or stop (its `-t`), in seconds. */
const PG_CTL_TIMEOUT_S = 60;

/** Enough connections for several pools of concurrent clients. */
const MAX_CONNECTIONS = 200;

/** Time the postmaster has to exit after SIGQUIT before it gets SIGKILL, in milliseconds. */
const KILL_GRACE_MS = 5_000;

/** Time the postmaster has to exit after SIGKILL, in milliseconds. */
const KILL_WAIT_MS = 5_000;

/** How often a killed postmaster is checked, in milliseconds. */
const KILL_POLL_MS = 20;

/** How much of the server log a failure message quotes, in characters. */
const LOG_TAIL_CHARS = 4_000;

/** Server binaries the helper runs. */
const REQUIRED_BINARIES: readonly string[] = ["initdb", "pg_ctl", "postgres", "createdb"];

/** Options of {@link startPostgres}. */
export interface StartPostgresOptions {
  /** The database to create and to put in {@link PgCluster.url} (default `taskq`). */
  database?: string;
  /**
   * Keep PostgreSQL's durable defaults (`fsync`, `synchronous_commit`,
   * `full_page_writes` on), as production would; default false, which turns
   * them off for speed.
   */
  durable?: boolean;
}

/** A running (or stopped) throwaway PostgreSQL cluster. */
export interface PgCluster {
  /** Connection URL, `postgres://taskq@127.0.0.1:PORT/DATABASE` (trust auth, no password). */
  readonly url: string;
  /** The TCP port on 127.0.0.1, kept across {@link PgCluster.stop} and {@link PgCluster.start}. */
  readonly port: number;
  /** The cluster's data directory (`PGDATA`). */
  readonly dataDir: string;
  /** Fast shutdown (`pg_ctl stop -m fast`), keeping the data. */
  stop(): Promise<void>;
  /** Starts again on the same port and data. */
  start(): Promise<void>;
  /** Stops the server (killing it if it will not stop) and removes the temp directory; safe to call twice. */
  destroy(): Promise<void>;
}

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** Numeric order of version directory names: `9.6` < `15` < `16`. */
function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const diff = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (diff !== 0) return diff;
  }
  return 0;
}

/**
 * The directory of the server binaries: `PG_BIN` when set, else the newest
 * `/usr/lib/postgresql/<version>/bin` that has `initdb`; undefined if none.
 */
function postgresBinDir(): string | undefined {
  const fromEnv = Deno.env.get("PG_BIN");
  if (fromEnv) return fromEnv;
  let versions: string[];
  try {
    versions = [...Deno.readDirSync(DEBIAN_POSTGRESQL_DIR)]
      .filter((entry) => entry.isDirectory && /^\d+(\.\d+)*$/.test(entry.name))
      .map((entry) => entry.name);
  } catch {
    return undefined;
  }
  versions.sort(compareVersions).reverse();
  const version = versions.find((v) => isFile(`${DEBIAN_POSTGRESQL_DIR}/${v}/bin/initdb`));
  return version === undefined ? undefined : `${DEBIAN_POSTGRESQL_DIR}/${version}/bin`;
}

function isRoot(): boolean {
  return Deno.uid() === 0;
}

/** The uid and gid of the `postgres` OS user, from /etc/passwd; undefined if there is none. */
function postgresUser(): { uid: number; gid: number } | undefined {
  let passwd: string;
  try {
    passwd = Deno.readTextFileSync("/etc/passwd");
  } catch {
    return undefined;
  }
  for (const line of passwd.split("\n")) {
    const fields = line.split(":");
    if (fields[0] === POSTGRES_OS_USER && fields.length >= 4) {
      return { uid: Number(fields[2]), gid: Number(fields[3]) };
    }
  }
  return undefined;
}

function runuserPath(): string | undefined {
  return RUNUSER_PATHS.find(isFile);
}

/**
 * Whether a throwaway cluster can be started: the server binaries exist (in
 * `PG_BIN`, or Debian's newest `/usr/lib/postgresql/<version>/bin`), and, when
 * we are root, there is a `postgres` OS user and `runuser` to run them as.
 */
export function postgresAvailable(): boolean {
  const bin = postgresBinDir();
  if (bin === undefined) return false;
  if (!REQUIRED_BINARIES.every((name) => isFile(`${bin}/${name}`))) return false;
  if (isRoot()) return postgresUser() !== undefined && runuserPath() !== undefined;
  return true;
}

/** Why PostgreSQL tests are ignored when {@link postgresAvailable} is false. */
export const POSTGRES_MISSING: string =
  "PostgreSQL server binaries not found (install Debian's postgresql package, or set PG_BIN " +
  "to a directory with initdb, pg_ctl, postgres and createdb; as root, a postgres OS user " +
  "is needed too)";

/** Our environment without libpq's `PG*` variables, which would redirect the tools. */
function toolEnv(): Record<string, string> {
  const env = Deno.env.toObject();
  for (const name of Object.keys(env)) {
    if (name.startsWith("PG")) delete env[name];
  }
  return env;
}

/** Runs a server binary (as the `postgres` user when we are root); throws with its output on failure. */
async function runTool(bin: string, name: string, args: string[], cwd: string): Promise<void> {
  const path = `${bin}/${name}`;
  let command = path;
  let commandArgs = args;
  if (isRoot()) {
    const runuser = runuserPath();
    if (runuser === undefined) throw new Error(`runuser not found at ${RUNUSER_PATHS.join(", ")}`);
    command = runuser;
    commandArgs = ["-u", POSTGRES_OS_USER, "--", path, ...args];
  }
  const output = await new Deno.Command(command, {
    args: commandArgs,
    cwd,
    env: toolEnv(),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!output.success) {
    const decoder = new TextDecoder();
    throw new Error(
      `${name} ${args.join(" ")} exited with code ${output.code}\n--- stdout:\n` +
        `${decoder.decode(output.stdout)}--- stderr:\n${decoder.decode(output.stderr)}---`,
    );
  }
}

/** The first line of `DIR/postmaster.pid` (the postmaster's PID), if the file is there. */
async function postmasterPid(dataDir: string): Promise<number | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(`${dataDir}/postmaster.pid`);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  const pid = Number(text.split("\n", 1)[0]);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/** Whether `pid` is alive (a zombie counts as gone). */
async function processAlive(pid: number): Promise<boolean> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    // Field 3, after the parenthesised command name, is the state.
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** Whether `pid`'s command line names `dataDir` (so it is our postmaster, not a reused PID). */
async function isOurPostmaster(pid: number, dataDir: string): Promise<boolean> {
  try {
    const cmdline = await Deno.readTextFile(`/proc/${pid}/cmdline`);
    return cmdline.split("\0").includes(dataDir);
  } catch {
    return false;
  }
}

async function readLogTail(path: string): Promise<string> {
  try {
    const text = await Deno.readTextFile(path);
    return text.slice(-LOG_TAIL_CHARS);
  } catch {
    return "(no server log)";
  }
}

class Cluster implements PgCluster {
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  readonly #bin: string;
  readonly #baseDir: string;
  readonly #logFile: string;
  readonly #durable: boolean;
  /** Every postmaster PID this helper saw start: the only ones it may signal. */
  readonly #startedPids = new Set<number>();
  #destroying: Promise<void> | undefined;

  constructor(
    bin: string,
    baseDir: string,
    port: number,
    database: string,
    durable: boolean,
  ) {
    this.#bin = bin;
    this.#baseDir = baseDir;
    this.port = port;
    this.dataDir = `${baseDir}/data`;
    this.#logFile = `${baseDir}/postgres.log`;
    this.#durable = durable;
    this.url = `postgres://${SUPERUSER}@127.0.0.1:${port}/${encodeURIComponent(database)}`;
  }

  /** Runs `initdb`. */
  async init(): Promise<void> {
    await this.#tool("initdb", [
      "-D",
      this.dataDir,
      "-U",
      SUPERUSER,
      "--auth=trust",
      "-E",
      "UTF8",
      "--locale=C",
      "--no-sync",
    ]);
  }

  /** Creates `database` (the `postgres` database is there already). */
  async createDatabase(database: string): Promise<void> {
    if (database === "postgres") return;
    await this.#tool("createdb", [
      "-h",
      "127.0.0.1",
      "-p",
      String(this.port),
      "-U",
      SUPERUSER,
      database,
    ]);
  }

  async start(): Promise<void> {
    if (this.#destroying) throw new Error("the cluster was destroyed");
    const settings = [
      `-p ${this.port}`,
      `-k ${this.#baseDir}`,
      "-c listen_addresses=127.0.0.1",
      `-c max_connections=${MAX_CONNECTIONS}`,
    ];
    if (!this.#durable) {
      settings.push("-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off");
    }
    try {
      // -w: pg_ctl polls until the server accepts connections (or -t passes).
      await this.#tool("pg_ctl", [
        "-D",
        this.dataDir,
        "-o",
        settings.join(" "),
        "-l",
        this.#logFile,
        "-w",
        "-t",
        String(PG_CTL_TIMEOUT_S),
        "start",
      ]);
    } catch (error) {
      // A postmaster that started but was not ready in time is still ours to stop.
      await this.#notePostmaster();
      throw new Error(
        `${(error as Error).message}\n--- server log (${this.#logFile}):\n` +
          `${await readLogTail(this.#logFile)}---`,
      );
    }
    await this.#notePostmaster();
  }

  async stop(): Promise<void> {
    await this.#tool("pg_ctl", [
      "-D",
      this.dataDir,
      "-m",
      "fast",
      "-w",
      "-t",
      String(PG_CTL_TIMEOUT_S),
      "stop",
    ]);
  }

  destroy(): Promise<void> {
    this.#destroying ??= this.#destroy();
    return this.#destroying;
  }

  /**
   * At process exit, for a cluster nobody destroyed (a test file run with a
   * filter, a run cut short): immediate shutdown of the postmaster this
   * helper started (SIGQUIT, synchronous), then its directory, best effort.
   */
  abandon(): void {
    for (const pid of this.#startedPids) {
      try {
        Deno.kill(pid, "SIGQUIT");
      } catch {
        // already gone
      }
    }
    try {
      Deno.removeSync(this.#baseDir, { recursive: true });
    } catch {
      // the server may still be writing; /tmp is cleaned eventually
    }
  }

  async #destroy(): Promise<void> {
    live.delete(this);
    try {
      if (await postmasterPid(this.dataDir) !== undefined) {
        try {
          await this.stop();
        } catch {
          await this.#kill();
        }
      }
    } finally {
      await Deno.remove(this.#baseDir, { recursive: true });
    }
  }

  /** Signals the postmaster, only if it is one this helper started and it is still running. */
  async #kill(): Promise<void> {
    const pid = await postmasterPid(this.dataDir);
    if (pid === undefined || !this.#startedPids.has(pid)) return;
    if (!await isOurPostmaster(pid, this.dataDir)) return;
    // SIGQUIT is PostgreSQL's immediate shutdown: the postmaster takes its children down too.
    if (await this.#signal(pid, "SIGQUIT", KILL_GRACE_MS)) return;
    if (!await isOurPostmaster(pid, this.dataDir)) return;
    if (await this.#signal(pid, "SIGKILL", KILL_WAIT_MS)) return;
    throw new Error(`postmaster ${pid} of ${this.dataDir} did not exit after SIGKILL`);
  }

  /** Sends `signal` to `pid` and polls until it is gone; false if it outlives `timeoutMs`. */
  async #signal(pid: number, signal: Deno.Signal, timeoutMs: number): Promise<boolean> {
    try {
      Deno.kill(pid, signal);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return true;
      throw error;
    }
    try {
      await waitFor(`postmaster ${pid} to exit`, async () => !await processAlive(pid), {
        timeoutMs,
        intervalMs: KILL_POLL_MS,
      });
      return true;
    } catch {
      return false;
    }
  }

  async #notePostmaster(): Promise<void> {
    const pid = await postmasterPid(this.dataDir);
    if (pid !== undefined) this.#startedPids.add(pid);
  }

  #tool(name: string, args: string[]): Promise<void> {
    return runTool(this.#bin, name, args, this.#baseDir);
  }
}

/** Clusters started and not destroyed yet. */
const live = new Set<Cluster>();

/** Stops every cluster still running as the process exits. */
function abandonAll(): void {
  for (const cluster of live) cluster.abandon();
  live.clear();
}

/**
 * Starts a throwaway cluster: a fresh temp dir under /tmp, `initdb` (superuser
 * `taskq`, trust auth, UTF8), a server on a free port of 127.0.0.1, and the
 * database `options.database` (default `taskq`). Call `destroy()` when done:
 * it stops the server and removes the temp dir.
 * @throws {Error} with the tool's output and the server log when a step fails
 *   (the temp dir is removed then).
 */
export async function startPostgres(options: StartPostgresOptions = {}): Promise<PgCluster> {
  const bin = postgresBinDir();
  if (bin === undefined || !postgresAvailable()) throw new Error(POSTGRES_MISSING);
  const database = options.database ?? DEFAULT_DATABASE;
  const baseDir = await Deno.makeTempDir({ dir: TEMP_PARENT, prefix: "taskq-pg-" });
  if (isRoot()) {
    // The server runs as the postgres user: it must own the dir it writes in.
    const user = postgresUser()!;
    await Deno.chown(baseDir, user.uid, user.gid);
  }
  const cluster = new Cluster(bin, baseDir, freeLoopbackPort(), database, options.durable ?? false);
  if (live.size === 0) globalThis.addEventListener("unload", abandonAll);
  live.add(cluster);
  try {
    await cluster.init();
    await cluster.start();
    await cluster.createDatabase(database);
  } catch (error) {
    await cluster.destroy();
    throw error;
  }
  return cluster;
}

/** Schemas named by {@link withSchema} in this process. */
let schemasNamed = 0;

/** Drops schema `schema` of `cluster` and everything in it, if it exists. */
export async function dropSchema(cluster: PgCluster, schema: string): Promise<void> {
  const sql = postgres(cluster.url, { max: 1, onnotice: () => {} });
  try {
    await sql.unsafe(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await sql.end();
  }
}

/**
 * Runs `body` with the name of a fresh schema of `cluster` (`PREFIX_PID_N`),
 * dropped afterwards whatever happened.
 */
export async function withSchema(
  cluster: PgCluster,
  prefix: string,
  body: (schema: string) => Promise<void>,
): Promise<void> {
  const schema = `${prefix}_${Deno.pid}_${++schemasNamed}`;
  try {
    await body(schema);
  } finally {
    await dropSchema(cluster, schema);
  }
}
