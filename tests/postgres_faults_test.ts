/**
 * A PostgreSQL master (`taskq master --store postgres://…`, a real process)
 * facing a database it cannot use:
 *
 * - a schema written by a newer taskq: the master exits 3 with one line and
 *   changes nothing in the database;
 * - a database that does not answer at start: one line naming it and the
 *   reason, a non-zero exit, no stack trace, no password;
 * - a database lost while running: requests fail promptly saying the queue
 *   database is unreachable, the master stays up, and once the database is
 *   back the same connection puts and gets again; a client connecting during
 *   the outage is told the same;
 * - a password on the command line is refused (exit 2, pointing at
 *   `--pg-password-file` and `PGPASSWORD`); `--pg-password-file` is read, and
 *   its password is what the server checks.
 *
 * Every process is started here and stopped here (by its own handle); every
 * test destroys its cluster in `finally`. Ignored, saying why, when
 * PostgreSQL's server binaries are missing.
 *
 * @module
 */

import assert from "node:assert/strict";
import postgres from "postgres";
import { type Client, connect, type Queue } from "../lib/mod.ts";
import { EXIT_DATA, EXIT_USAGE } from "../lib/errors.ts";
import {
  freeLoopbackPort,
  keyEnv,
  pause,
  Proc,
  REPO_ROOT,
  TEST_KEY,
  waitFor,
  withDeadline,
} from "./_helpers.ts";
import { POSTGRES_MISSING, postgresAvailable, startPostgres } from "./_postgres.ts";

const available = postgresAvailable();

/** The line a master prints once it serves. */
const LISTENING = /^taskq master listening on (\S+)$/;

/** Time a master has to start, or to give up and exit. */
const START_MS = 20_000;

/** Time a process has to exit by itself. */
const EXIT_MS = 15_000;

/**
 * What a request may take while the database is away: it must fail, not
 * hang (a refused connection to the database fails in milliseconds).
 */
const REQUEST_BOUND_MS = 2_000;

/** What a client command may take (starting Deno included) while the database is away. */
const COMMAND_BOUND_MS = 8_000;

/** How long the tests keep asking while the database is away. */
const OUTAGE_MS = 4_000;

/** Time the master has to serve again once the database is back. */
const RECOVERY_MS = 30_000;

/** The message of a request the database could not serve. */
const UNREACHABLE = /the queue database postgres:\/\/\S+ is unreachable/;

/** A stack trace's frame line. */
const STACK_FRAME = /^\s+at /m;

/** A test's name, marked as skipped when PostgreSQL is missing. */
function testName(name: string): string {
  return available ? name : `${name} (SKIPPED: ${POSTGRES_MISSING})`;
}

/** `taskq ARGS` from source as `deno run -A main.ts ARGS`, with the test key and `env`. */
function taskq(label: string, args: string[], env: Record<string, string> = {}): Proc {
  return new Proc(label, ["run", "-A", `${REPO_ROOT}main.ts`, ...args], keyEnv(TEST_KEY, env));
}

/** Starts a master over `url` on an ephemeral loopback port; resolves once it serves. */
async function startPgMaster(
  url: string,
  extra: string[] = [],
  env: Record<string, string> = {},
): Promise<{ proc: Proc; address: string }> {
  const proc = taskq(
    "master",
    ["master", "--listen", "127.0.0.1:0", "--store", url, ...extra],
    env,
  );
  try {
    const [, address] = await proc.waitForLine(LISTENING, START_MS);
    return { proc, address };
  } catch (error) {
    await proc.dispose();
    throw error;
  }
}

/** Runs `taskq ARGS` to its end (within {@link EXIT_MS}); its exit code, output and duration. */
async function runToEnd(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  const started = Date.now();
  const proc = taskq(`taskq ${args[0]}`, args, env);
  try {
    const status = await proc.finished(EXIT_MS);
    return {
      code: status.code,
      stdout: proc.stdout,
      stderr: proc.stderr,
      ms: Date.now() - started,
    };
  } finally {
    await proc.dispose();
  }
}

/** Puts "after" on `queue` again and again until a put is stored, within {@link RECOVERY_MS}. */
async function putUntilStored(queue: Queue, what: string): Promise<void> {
  await withDeadline(
    waitFor(what, async () => {
      try {
        await queue.put("after");
        return true;
      } catch {
        return false;
      }
    }, { timeoutMs: RECOVERY_MS, intervalMs: 100 }),
    RECOVERY_MS,
    what,
  );
}

/** The non-empty lines of `text`. */
function linesOf(text: string): string[] {
  return text.split("\n").filter((line) => line.trim() !== "");
}

/** A URL where nothing listens (a port just freed). */
function deadUrl(credentials = "taskq"): string {
  return `postgres://${credentials}@127.0.0.1:${freeLoopbackPort()}/taskq`;
}

// ---------------------------------------------------------------------------

Deno.test({
  name: testName("a schema from a newer version is refused"),
  ignore: !available,
  fn: async () => {
    const cluster = await startPostgres();
    const sql = postgres(cluster.url, { max: 1, onnotice: () => {} });
    try {
      const first = await startPgMaster(cluster.url);
      const stopped = await first.proc.stop("SIGTERM");
      assert.equal(stopped.code, 0, first.proc.describe());

      await sql.unsafe(`UPDATE taskq.meta SET value = '99' WHERE key = 'version'`);
      /** Everything a master could have touched: the tables, their columns, rows and sequences. */
      const look = async () => {
        const columns = await sql.unsafe(
          `SELECT table_name, column_name, data_type FROM information_schema.columns
           WHERE table_schema = 'taskq' ORDER BY table_name, ordinal_position`,
        );
        const tables = [...new Set(columns.map((c) => c.table_name as string))];
        const rows: Record<string, unknown> = {};
        for (const table of tables) {
          rows[table] = await sql.unsafe(`SELECT * FROM taskq.${table} ORDER BY 1`);
        }
        const sequences = await sql.unsafe(
          `SELECT (SELECT last_value FROM taskq.ids) AS ids,
             (SELECT last_value FROM taskq.fronts) AS fronts`,
        );
        return JSON.parse(JSON.stringify({ columns, rows, sequences }));
      };
      const before = await look();
      assert.deepEqual(before.rows.meta, [{ key: "version", value: "99" }]);

      const run = await runToEnd(["master", "--listen", "127.0.0.1:0", "--store", cluster.url]);
      assert.equal(run.code, EXIT_DATA, `exit code: ${run.stderr}`);
      const lines = linesOf(run.stderr);
      assert.equal(lines.length, 1, `one line: ${run.stderr}`);
      assert.match(lines[0], /schema version 99, newer than this taskq/);
      assert.doesNotMatch(run.stdout, LISTENING, "it never served");
      assert.deepEqual(await look(), before, "the database is unchanged");
    } finally {
      await sql.end();
      await cluster.destroy();
    }
  },
});

Deno.test({
  name: testName("an unreachable database at start gives one clear line and a non-zero exit"),
  ignore: !available,
  fn: async () => {
    const url = deadUrl();
    const run = await runToEnd(["master", "--listen", "127.0.0.1:0", "--store", url]);
    assert.notEqual(run.code, 0, run.stderr);
    assert.ok(run.ms < 10_000, `gave up after ${run.ms} ms`);
    const lines = linesOf(run.stderr);
    assert.equal(lines.length, 1, `one line: ${run.stderr}`);
    assert.ok(lines[0].includes(url), `names the database: ${lines[0]}`);
    assert.match(lines[0], /unreachable \(.*ECONNREFUSED.*\)/, "and why");
    assert.doesNotMatch(run.stderr, STACK_FRAME);

    // A password given the allowed way (TASKQ_STORE) is not shown either.
    const secret = "hunter2-not-shown";
    const withPassword = deadUrl(`taskq:${secret}`);
    const env = await runToEnd(["master", "--listen", "127.0.0.1:0"], {
      TASKQ_STORE: withPassword,
    });
    assert.notEqual(env.code, 0, env.stderr);
    const envLines = linesOf(env.stderr);
    assert.equal(envLines.length, 1, `one line: ${env.stderr}`);
    assert.match(envLines[0], UNREACHABLE);
    assert.ok(!env.stderr.includes(secret), `the password leaked: ${env.stderr}`);
    assert.doesNotMatch(env.stderr, STACK_FRAME);
  },
});

Deno.test({
  name: testName(
    "a database lost while running: requests fail with a clear error, the master recovers",
  ),
  ignore: !available,
  fn: async () => {
    const cluster = await startPostgres();
    let master: Proc | undefined;
    let client: Client | undefined;
    try {
      const started = await startPgMaster(cluster.url);
      master = started.proc;
      client = await connect({ address: started.address, authkey: TEST_KEY, reconnect: false });
      const queue = client.queue("tasks");
      await queue.put("before");

      await cluster.stop();
      /** Each put tried while the database is away: how long it took and how it ended. */
      const tries: { ms: number; outcome: string }[] = [];
      const outageStarted = Date.now();
      while (Date.now() - outageStarted < OUTAGE_MS) {
        const t = Date.now();
        try {
          await withDeadline(queue.put("during"), REQUEST_BOUND_MS, "a put");
          tries.push({ ms: Date.now() - t, outcome: "stored" });
        } catch (error) {
          tries.push({ ms: Date.now() - t, outcome: (error as Error).message });
        }
        if (Date.now() - t >= REQUEST_BOUND_MS) break; // one hang is enough to know
        await pause(100);
      }
      assert.equal(master.exited, undefined, `the master died: ${master.describe()}`);

      await cluster.start();
      const back = Date.now();
      await putUntilStored(queue, "a put through the same master");
      const recoveredMs = Date.now() - back;
      const job = await withDeadline(queue.get(5_000), RECOVERY_MS, "a get");
      assert.equal(job?.value, "before", "the item put before the outage comes first");
      await queue.ack(job!);
      assert.equal(master.exited, undefined, `the master died: ${master.describe()}`);
      assert.match(master.stderr, /the queue database is unreachable/, "the master said so");
      assert.match(master.stderr, /the queue database is reachable again/);
      console.log(
        `puts during the outage: ${
          tries.map((t) => `${t.ms} ms`).join(", ")
        }; serving again ${recoveredMs} ms after the database came back`,
      );

      for (const t of tries) {
        assert.ok(
          t.ms < REQUEST_BOUND_MS && UNREACHABLE.test(t.outcome),
          `every put while the database is away fails within ${REQUEST_BOUND_MS} ms saying ` +
            `so; got: ${JSON.stringify(tries)}`,
        );
      }
    } finally {
      await client?.close();
      await master?.dispose();
      await cluster.destroy();
    }
  },
});

Deno.test({
  name: testName("a client connecting while the database is down is told it is unreachable"),
  ignore: !available,
  fn: async () => {
    const cluster = await startPostgres();
    let master: Proc | undefined;
    try {
      const started = await startPgMaster(cluster.url);
      master = started.proc;
      const ready = await runToEnd(["status", "--connect", started.address]);
      assert.equal(ready.code, 0, `the master serves: ${ready.stderr}`);
      await cluster.stop();
      const put = await runToEnd(["put", "--connect", started.address, "--queue", "tasks", "x"]);
      const status = await runToEnd(["status", "--connect", started.address]);
      assert.equal(master.exited, undefined, `the master died: ${master.describe()}`);
      for (const run of [put, status]) {
        assert.notEqual(run.code, 0);
        assert.ok(run.ms < COMMAND_BOUND_MS, `failed after ${run.ms} ms`);
        assert.match(
          run.stderr,
          UNREACHABLE,
          `a connection opened while the database is away should say why it failed: ${run.stderr}`,
        );
      }
    } finally {
      await master?.dispose();
      await cluster.destroy();
    }
  },
});

Deno.test({
  name: testName("a password on the command line is refused"),
  ignore: !available,
  fn: async () => {
    const run = await runToEnd([
      "master",
      "--listen",
      "127.0.0.1:0",
      "--store",
      "postgres://taskq:secret@127.0.0.1:1/x",
    ]);
    assert.equal(run.code, EXIT_USAGE, run.stderr);
    const lines = linesOf(run.stderr);
    assert.equal(lines.length, 1, `one line: ${run.stderr}`);
    assert.match(lines[0], /--pg-password-file/);
    assert.match(lines[0], /PGPASSWORD/);
    assert.ok(!run.stderr.includes("secret"), `the password is echoed: ${run.stderr}`);

    const missing = await runToEnd([
      "master",
      "--listen",
      "127.0.0.1:0",
      "--store",
      "postgres://taskq@127.0.0.1:1/x",
      "--pg-password-file",
      `${REPO_ROOT}tests/fixtures/no-such-password-file`,
    ]);
    assert.equal(missing.code, EXIT_USAGE, missing.stderr);
    assert.match(missing.stderr, /--pg-password-file .*cannot read it/);

    // A server that checks passwords: a role of its own, scram for it on TCP.
    const cluster = await startPostgres();
    const dir = await Deno.makeTempDir({ prefix: "taskq-pg-password-" });
    try {
      const sql = postgres(cluster.url, { max: 1, onnotice: () => {} });
      try {
        await sql.unsafe(`CREATE ROLE taskq_worker LOGIN PASSWORD 'right-password'`);
        await sql.unsafe(`GRANT ALL ON DATABASE taskq TO taskq_worker`);
      } finally {
        await sql.end();
      }
      const hba = `${cluster.dataDir}/pg_hba.conf`;
      const rules = await Deno.readTextFile(hba);
      await Deno.writeTextFile(
        hba,
        `host all taskq_worker 127.0.0.1/32 scram-sha-256\n${rules}`,
      );
      await cluster.stop();
      await cluster.start();
      const url = `postgres://taskq_worker@127.0.0.1:${cluster.port}/taskq`;
      const right = `${dir}/right`;
      const wrong = `${dir}/wrong`;
      await Deno.writeTextFile(right, "right-password\n");
      await Deno.writeTextFile(wrong, "wrong-password\n");
      await Deno.chmod(right, 0o600);
      await Deno.chmod(wrong, 0o600);

      const good = await startPgMaster(url, ["--pg-password-file", right], {
        PGPASSWORD: "wrong-password",
      });
      const stopped = await good.proc.stop("SIGTERM");
      assert.equal(stopped.code, 0, good.proc.describe());

      const refused = await runToEnd([
        "master",
        "--listen",
        "127.0.0.1:0",
        "--store",
        url,
        "--pg-password-file",
        wrong,
      ]);
      assert.notEqual(refused.code, 0, refused.stderr);
      assert.equal(linesOf(refused.stderr).length, 1, `one line: ${refused.stderr}`);
      assert.match(refused.stderr, /password authentication failed/);
      assert.ok(!refused.stderr.includes("wrong-password"), refused.stderr);
    } finally {
      await cluster.destroy();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/**
 * A TCP proxy in front of the database that delays everything the database
 * sends by {@link SlowLink.delayMs}, and can cut the link: drop every
 * connection and refuse new ones, as a database lost on the network.
 */
class SlowLink implements AsyncDisposable {
  readonly #listener: Deno.TcpListener;
  readonly #upstream: number;
  readonly #open = new Set<Deno.TcpConn>();
  readonly #links = new Set<Promise<void>>();
  readonly #accepting: Promise<void>;
  #cut = false;

  constructor(upstreamPort: number, readonly delayMs: number) {
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#upstream = upstreamPort;
    this.#accepting = this.#accept();
  }

  /** The port to connect to instead of the database's. */
  get port(): number {
    return this.#listener.addr.port;
  }

  async #accept(): Promise<void> {
    for (;;) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.#listener.accept();
      } catch {
        return;
      }
      if (this.#cut) {
        conn.close();
        continue;
      }
      const link = this.#pass(conn).catch(() => {});
      this.#links.add(link);
      link.finally(() => this.#links.delete(link));
    }
  }

  async #pass(conn: Deno.TcpConn): Promise<void> {
    this.#open.add(conn);
    let upstream: Deno.TcpConn | undefined;
    try {
      upstream = await Deno.connect({ hostname: "127.0.0.1", port: this.#upstream });
      this.#open.add(upstream);
      await Promise.allSettled([
        this.#copy(conn, upstream, 0),
        this.#copy(upstream, conn, this.delayMs),
      ]);
    } finally {
      for (const c of [conn, upstream]) {
        if (c === undefined) continue;
        this.#open.delete(c);
        try {
          c.close();
        } catch {
          // closed already
        }
      }
    }
  }

  /** Copies `from` to `to`, each chunk `delayMs` after it arrived; ends both on EOF or error. */
  async #copy(from: Deno.TcpConn, to: Deno.TcpConn, delayMs: number): Promise<void> {
    let chain = Promise.resolve();
    const buffer = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await from.read(buffer);
        if (n === null) break;
        const chunk = buffer.slice(0, n);
        const due = Date.now() + delayMs;
        chain = chain.then(async () => {
          if (delayMs > 0) await pause(Math.max(0, due - Date.now()));
          for (let at = 0; at < chunk.length;) at += await to.write(chunk.subarray(at));
        });
      }
      await chain;
    } finally {
      await chain.catch(() => {});
      for (const c of [from, to]) {
        try {
          c.close();
        } catch {
          // closed already
        }
      }
    }
  }

  /** Drops every connection and refuses new ones until {@link restore}. */
  cut(): void {
    this.#cut = true;
    for (const conn of this.#open) {
      try {
        conn.close();
      } catch {
        // closed already
      }
    }
  }

  /** Lets connections through again. */
  restore(): void {
    this.#cut = false;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.cut();
    this.#listener.close();
    await this.#accepting;
    while (this.#links.size > 0) await Promise.all([...this.#links]);
  }
}

Deno.test({
  name: testName("a master that says it listens survives its database going away at once"),
  ignore: !available,
  fn: async () => {
    const cluster = await startPostgres();
    let master: Proc | undefined;
    let client: Client | undefined;
    try {
      // Every answer of the database arrives 150 ms late: whatever the master asks right
      // after its "listening" line is still unanswered when the link is cut.
      await using link = new SlowLink(cluster.port, 150);
      const url = `postgres://taskq@127.0.0.1:${link.port}/taskq`;
      const started = await startPgMaster(url);
      master = started.proc;
      link.cut();
      const cutAt = Date.now();
      await waitFor("the master to log the database lost", () => {
        return master!.exited !== undefined ||
          /the queue database is unreachable/.test(master!.stderr);
      }, { timeoutMs: 10_000 });
      await waitFor("a second, to see the master stays up", () => {
        return master!.exited !== undefined || Date.now() - cutAt > 1_000;
      }, { timeoutMs: 5_000 });
      assert.equal(
        master.exited,
        undefined,
        `a master that printed its listening line must not exit when the database goes ` +
          `away: ${master.describe()}`,
      );
      link.restore();
      client = await connect({ address: started.address, authkey: TEST_KEY, reconnect: false });
      const queue = client.queue("tasks");
      await putUntilStored(queue, "a put once the database is back");
    } finally {
      await client?.close();
      await master?.dispose();
      await cluster.destroy();
    }
  },
});
