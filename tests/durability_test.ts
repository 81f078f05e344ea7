/**
 * Durable queues end to end: real master processes on loopback keeping their
 * items in a data directory (`--data`, never `--memory`), killed with SIGKILL
 * or stopped with SIGTERM, and restarted on the same directory.
 *
 * Covered: 10,000 acknowledged puts survive `kill -9`; items leased at the
 * kill are served again; a fleet of `taskq worker`
 * processes carries a 2,000-item run through two kills of its master (which
 * comes back on the same address), with every item done and any duplicate
 * explained by a logged lost ack; a second master on a directory in use, and
 * a master on a damaged directory, exit with code 3 and one line, touching
 * nothing; a master stopped with SIGTERM while puts are in flight exits 0 and
 * keeps every put it acknowledged; a worker stopped with SIGTERM kills its
 * long command after the grace period and gives the item back.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Client, connect, type Job } from "../lib/mod.ts";
import { ConnectionLostError, EXIT_DATA, RemoteError } from "../lib/errors.ts";
import { DATABASE_FILE } from "../lib/store/sqlite.ts";
import {
  durableMasterArgs,
  freeLoopbackPort,
  keyEnv,
  type MasterProcess,
  plain,
  Proc,
  randomBytes,
  type ResultRecord,
  seededRandom,
  startMaster,
  startTaskq,
  TEST_KEY,
  waitFor,
  WORKER_PERMISSIONS,
} from "./_helpers.ts";

/** Generous deadline for anything that waits on processes. */
const WAIT_MS = 60_000;

/** Poll interval while watching a run's progress. */
const PROGRESS_POLL_MS = 20;

/** Items put before the first kill -9. */
const KILL_ITEMS = 10_000;

/** Items per put request in the kill -9 test. */
const PUT_BATCH = 500;

/** Items of the worker fleet run. */
const FLEET_ITEMS = 2_000;

/** Worker processes in the fleet. */
const FLEET_WORKERS = 3;

/** Log lines of a worker whose ack (with its result) may not have reached the master. */
const ACK_LOST_LINE = /(?:ack was lost|connection dropped while acking).*\bid=(\d+)/;

/** Runs `body` with a fresh data directory, removed afterwards whatever happens. */
async function withDataDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "taskq-durability-test-" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Connects to `master` without reconnecting (each test decides what a drop means). */
function connectTo(master: MasterProcess): Promise<Client> {
  return connect({ address: master.address, authkey: TEST_KEY, reconnect: false });
}

/** Runs `body` with a client of `master`, closed afterwards whatever happens. */
async function withClient<T>(
  master: MasterProcess,
  body: (client: Client) => Promise<T>,
): Promise<T> {
  const client = await connectTo(master);
  try {
    return await body(client);
  } finally {
    await client.close();
  }
}

/** Takes exactly `count` items of `queue` (failing if fewer come in time); does not ack them. */
async function takeAll<T = unknown>(
  client: Client,
  queue: string,
  count: number,
): Promise<Job<T>[]> {
  const out: Job<T>[] = [];
  const deadline = Date.now() + WAIT_MS;
  while (out.length < count && Date.now() < deadline) {
    out.push(
      ...await client.queue(queue).getMany<T>(
        count - out.length,
        Math.max(1, deadline - Date.now()),
        {
          leaseMs: WAIT_MS,
        },
      ),
    );
  }
  assert.equal(out.length, count, `expected ${count} items on "${queue}", got ${out.length}`);
  assert.equal(await client.queue(queue).size(), 0, `nothing more on "${queue}"`);
  return out;
}

/** Kills `master` with SIGKILL and checks that it died of it. */
async function killHard(master: MasterProcess): Promise<void> {
  const status = await master.proc.stop("SIGKILL");
  assert.equal(status.signal, "SIGKILL", master.proc.describe());
}

/** Checks that a process printed exactly one line on stderr, no stack trace, nothing on stdout. */
function assertOneLine(proc: Proc, pattern: RegExp): string {
  const lines = proc.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `one line on stderr: ${proc.describe()}`);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(proc.stderr, /^\s+at /m, "no stack trace");
  assert.equal(proc.stdout, "", "nothing on stdout (it never listened)");
  return lines[0];
}

/** Names in `dir` with their bytes. */
async function snapshot(dir: string): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for await (const entry of Deno.readDir(dir)) {
    out.set(entry.name, await Deno.readFile(`${dir}/${entry.name}`));
  }
  return out;
}

/** Starts `taskq worker` against `address` with `args`. */
function startWorker(label: string, address: string, args: string[]): Proc {
  return startTaskq(label, ["worker", "--connect", address, ...args], {
    permissions: WORKER_PERMISSIONS,
  });
}

Deno.test("durability: 10,000 acknowledged puts survive kill -9 of the master", async () => {
  await withDataDir(async (dataDir) => {
    const random = seededRandom(10_000);
    const values = Array.from({ length: KILL_ITEMS }, (_, i) => ({
      n: i,
      text: `item ${i}`,
      bytes: randomBytes(random, i % 17),
      nested: { even: i % 2 === 0, list: [i, -i - 1, i / 4] },
    }));
    const sent = new Map<number, unknown>();
    {
      await using master = await startMaster({ dataDir });
      const client = await connectTo(master);
      try {
        const tasks = client.queue("tasks");
        // Many batches in flight at once, as a busy producer sends them.
        const batches: (typeof values)[] = [];
        for (let i = 0; i < values.length; i += PUT_BATCH) {
          batches.push(values.slice(i, i + PUT_BATCH));
        }
        const idLists = await Promise.all(batches.map((batch) => tasks.putMany(batch)));
        idLists.forEach((ids, b) => ids.forEach((id, i) => sent.set(id, batches[b][i])));
        assert.equal(sent.size, KILL_ITEMS);
        // Every put was acknowledged: now the master dies without any chance to tidy up.
        await killHard(master);
      } finally {
        await client.close();
      }
    }
    await using master = await startMaster({ dataDir });
    await withClient(master, async (client) => {
      const jobs = await takeAll(client, "tasks", KILL_ITEMS);
      const got = new Map(jobs.map((job) => [job.id, job]));
      assert.equal(got.size, KILL_ITEMS, "no item twice");
      for (const [id, value] of sent) {
        const job = got.get(id);
        assert.ok(job !== undefined, `item ${id} is missing after the restart`);
        assert.deepEqual(plain(job.value), plain(value), `item ${id}`);
        assert.equal(job.attempt, 1);
      }
      // In put order.
      assert.deepEqual(jobs.map((job) => job.id), [...sent.keys()].sort((a, b) => a - b));
    });
    await master.stop();
  });
});

Deno.test("durability: items leased at a kill -9 are served again, in order", async () => {
  await withDataDir(async (dataDir) => {
    const values = ["a", "b", "c", "d", "e", "f"];
    let ids: number[];
    {
      await using master = await startMaster({ dataDir });
      await withClient(master, async (client) => {
        const tasks = client.queue("tasks");
        ids = await tasks.putMany(values);
        const leased = await tasks.getMany(3, 1_000, { leaseMs: WAIT_MS });
        assert.deepEqual(leased.map((job) => [job.value, job.attempt]), [["a", 1], ["b", 1], [
          "c",
          1,
        ]]);
        // An acknowledged write after the get, so the restart also checks ids keep growing.
        await client.queue("barrier").put("after the get");
        await killHard(master);
      });
    }
    await using master = await startMaster({ dataDir });
    await withClient(master, async (client) => {
      const stats = (await client.stats("tasks")).queues[0];
      assert.equal(stats.ready, values.length, "the leased items are ready again");
      assert.equal(stats.leased, 0);
      const jobs = await takeAll<string>(client, "tasks", values.length);
      // A delivery the master crashed during is not counted: attempts are saved with
      // an item's next change (fail, nack, lease end), not at delivery.
      assert.deepEqual(jobs.map((job) => [job.id, job.value, job.attempt]), [
        [ids[0], "a", 1],
        [ids[1], "b", 1],
        [ids[2], "c", 1],
        [ids[3], "d", 1],
        [ids[4], "e", 1],
        [ids[5], "f", 1],
      ]);
      // Ids keep increasing across the restart.
      const [next] = await client.queue("tasks").putMany(["g"]);
      assert.ok(next > ids[5] + 1, `new id ${next} after ${ids[5]} and the barrier`);
    });
    await master.stop();
  });
});

/** Waits until `queue` holds at least `count` ready items; returns how many it holds. */
async function waitForReady(master: MasterProcess, queue: string, count: number): Promise<number> {
  return await withClient(
    master,
    (client) =>
      waitFor(`${count} items ready on "${queue}"`, async () => {
        const ready = (await client.stats(queue)).queues[0].ready;
        return ready >= count ? ready : 0;
      }, { timeoutMs: WAIT_MS, intervalMs: PROGRESS_POLL_MS }),
  );
}

Deno.test("durability: a worker fleet carries on through two kill -9s of its master", async () => {
  await withDataDir(async (dataDir) => {
    // The master must come back on the same address for the workers to find it.
    const listen = `127.0.0.1:${freeLoopbackPort()}`;
    let master = await startMaster({ dataDir, listen });
    const workers: Proc[] = [];
    try {
      const numbers = Array.from({ length: FLEET_ITEMS }, (_, i) => i + 1);
      const ids = await withClient(master, (client) => client.queue("tasks").putMany(numbers));
      const itemOf = new Map(ids.map((id, i) => [id, numbers[i]]));
      for (let w = 1; w <= FLEET_WORKERS; w++) {
        workers.push(startWorker(`worker ${w}`, listen, [
          "--queue",
          "tasks",
          "--results",
          "results",
          "--concurrency",
          "4",
          "--exit-when-idle",
          "2",
          "--name",
          `worker-${w}`,
          "--",
          "sh",
          "-c",
          "echo $(( $1 * $1 ))",
          "sq",
          "{}",
        ]));
      }
      // Each worker connects once by itself; after that, reconnecting is its job.
      await waitFor(
        "every worker to connect",
        () => workers.every((worker) => /worker started/.test(worker.stderr)),
        { timeoutMs: WAIT_MS },
      );
      for (const fraction of [1 / 3, 2 / 3]) {
        const done = await waitForReady(master, "results", Math.round(FLEET_ITEMS * fraction));
        assert.ok(done < FLEET_ITEMS, `the kill comes in the middle of the run (${done} done)`);
        await killHard(master);
        master = await startMaster({ dataDir, listen });
        assert.equal(master.address, listen);
      }
      for (const worker of workers) {
        const status = await worker.finished(WAIT_MS);
        assert.equal(status.code, 0, worker.describe());
        assert.match(worker.stderr, /reconnected to the master/, worker.describe());
      }

      const results = await withClient(master, async (client) => {
        const [tasks] = (await client.stats("tasks")).queues;
        assert.deepEqual(
          [tasks.ready, tasks.leased, tasks.delayed],
          [0, 0, 0],
          "every item is done",
        );
        assert.equal((await client.stats("tasks.dead")).queues[0].ready, 0, "no dead letters");
        const count = await client.queue("results").size();
        assert.ok(count >= FLEET_ITEMS, `${count} results for ${FLEET_ITEMS} items`);
        const jobs = await takeAll<ResultRecord>(client, "results", count);
        await client.queue("results").ack(jobs);
        return jobs.map((job) => job.value);
      });

      const perItem = new Map<number, number>();
      for (const result of results) {
        const n = itemOf.get(result.id);
        assert.ok(n !== undefined, `result for an unknown item: ${JSON.stringify(result)}`);
        assert.equal(result.item, n);
        assert.equal(result.output, String(n * n), `output for ${n}`);
        assert.equal(result.exitCode, 0);
        perItem.set(result.id, (perItem.get(result.id) ?? 0) + 1);
      }
      const missing = ids.filter((id) => !perItem.has(id));
      assert.deepEqual(missing, [], "every item has a result");

      // At least once: an item may run twice only if its ack (with its result)
      // was in flight when the master died, and the worker says so.
      const ackLost = new Set<number>();
      for (const worker of workers) {
        for (const line of worker.stderr.split("\n")) {
          const match = line.match(ACK_LOST_LINE);
          if (match) ackLost.add(Number(match[1]));
        }
      }
      const duplicated = [...perItem].filter(([, n]) => n > 1).map(([id]) => id);
      const extra = results.length - FLEET_ITEMS;
      console.log(
        `worker fleet through 2 master kills: ${results.length} results for ${FLEET_ITEMS} items, ` +
          `${extra} duplicate(s) on ${duplicated.length} item(s), ${ackLost.size} ack(s) logged lost`,
      );
      for (const id of duplicated) {
        assert.ok(
          ackLost.has(id),
          `item ${id} ran ${perItem.get(id)} times but no worker logged its ack as lost`,
        );
      }
      await master.stop();
    } finally {
      for (const worker of workers) await worker.dispose();
      await master.proc.dispose();
    }
  });
});

Deno.test("durability: a second master on a data directory in use exits 3; the first serves on", async () => {
  await withDataDir(async (dataDir) => {
    await using first = await startMaster({ dataDir });
    await withClient(first, (client) => client.queue("tasks").put("before"));
    await using second = new Proc(
      "second master",
      durableMasterArgs("127.0.0.1:0", dataDir),
      keyEnv(TEST_KEY),
    );
    const status = await second.finished(WAIT_MS);
    assert.equal(status.code, EXIT_DATA, second.describe());
    const line = assertOneLine(second, /data directory in use/);
    assert.match(line, /locked by another running master/);
    assert.ok(line.includes(`${dataDir}/${DATABASE_FILE}`), line);

    await withClient(first, async (client) => {
      const tasks = client.queue("tasks");
      await tasks.put("after");
      const jobs = await tasks.getMany(2, 1_000);
      assert.deepEqual(jobs.map((job) => job.value), ["before", "after"]);
      await tasks.ack(jobs);
    });
    await first.stop();

    // Once the first is gone, the directory is free again.
    await using third = await startMaster({ dataDir });
    await third.stop();
  });
});

Deno.test("durability: a master on a damaged data directory exits 3, leaving the file as it was", async () => {
  await withDataDir(async (dataDir) => {
    await Deno.writeFile(`${dataDir}/${DATABASE_FILE}`, randomBytes(seededRandom(5), 32 * 1024));
    const before = await snapshot(dataDir);
    await using master = new Proc(
      "master on a damaged directory",
      durableMasterArgs("127.0.0.1:0", dataDir),
      keyEnv(TEST_KEY),
    );
    const status = await master.finished(WAIT_MS);
    assert.equal(status.code, EXIT_DATA, master.describe());
    const line = assertOneLine(master, /not a usable taskq database/);
    assert.ok(line.includes(`${dataDir}/${DATABASE_FILE}`), line);
    assert.match(line, /left untouched/);
    assert.deepEqual(await snapshot(dataDir), before, "the directory is exactly as it was");
  });
});

Deno.test("durability: SIGTERM with puts in flight: exit 0, every acknowledged put kept", async () => {
  await withDataDir(async (dataDir) => {
    const sent = new Set<string>();
    const acked = new Set<string>();
    {
      await using master = await startMaster({ dataDir });
      const client = await connectTo(master);
      try {
        const tasks = client.queue("tasks");
        const putter = async (p: number) => {
          for (let b = 0;; b++) {
            const values = Array.from({ length: 50 }, (_, i) => `p${p}-b${b}-i${i}`);
            for (const value of values) sent.add(value);
            try {
              await tasks.putMany(values);
            } catch (error) {
              if (error instanceof ConnectionLostError || error instanceof RemoteError) return;
              throw error;
            }
            for (const value of values) acked.add(value);
          }
        };
        const putters = Array.from({ length: 8 }, (_, p) => putter(p));
        await waitFor("some puts acknowledged", () => acked.size >= 2_000, { timeoutMs: WAIT_MS });
        const inFlight = client.inFlight;
        master.proc.kill("SIGTERM");
        assert.ok(inFlight > 0, "puts are in flight at the stop");
        const status = await master.proc.finished(WAIT_MS);
        assert.equal(status.code, 0, master.proc.describe());
        assert.match(master.proc.stderr, /master stopped/);
        await Promise.all(putters);
      } finally {
        await client.close();
      }
    }
    await using master = await startMaster({ dataDir });
    await withClient(master, async (client) => {
      const count = await client.queue("tasks").size();
      const jobs = await takeAll<string>(client, "tasks", count);
      const kept = new Set(jobs.map((job) => job.value));
      assert.equal(kept.size, jobs.length, "no item twice");
      for (const value of acked) assert.ok(kept.has(value), `acknowledged put ${value} was lost`);
      for (const value of kept) assert.ok(sent.has(value), `unknown item ${value}`);
    });
    await master.stop();
  });
});

Deno.test("durability: a worker stopped with SIGTERM kills its long command after --grace", async () => {
  await withDataDir(async (dataDir) => {
    await using master = await startMaster({ dataDir });
    // Each item is the path where its command writes its pid (then sleeps long).
    const [pathA, pathB] = [`${dataDir}/pid-a`, `${dataDir}/pid-b`];
    const [idA, idB] = await withClient(
      master,
      (client) => client.queue("tasks").putMany([pathA, pathB]),
    );
    await using worker = startWorker("worker", master.address, [
      "--queue",
      "tasks",
      "--concurrency",
      "1",
      "--grace",
      "0.5",
      "--",
      "sh",
      "-c",
      'echo $$ > "$1"; exec sleep 60',
      "sleeper",
      "{}",
    ]);
    const pid = Number(
      await waitFor("the first command to start", async () => {
        try {
          return (await Deno.readTextFile(pathA)).trim();
        } catch {
          return "";
        }
      }, { timeoutMs: WAIT_MS }),
    );
    const stoppedAt = Date.now();
    worker.kill("SIGTERM");
    const status = await worker.finished(WAIT_MS);
    const took = Date.now() - stoppedAt;
    assert.equal(status.code, 0, worker.describe());
    assert.ok(took >= 450, `it waited out the grace period (${took} ms)`);
    assert.match(worker.stderr, /grace period over/);
    assert.match(worker.stderr, /worker stopped.*\breturned=1\b/);
    // The command is gone, and the second item was never started.
    await waitFor("the command to be killed", async () => {
      try {
        await Deno.stat(`/proc/${pid}`);
        return false;
      } catch {
        return true;
      }
    });
    await assert.rejects(Deno.stat(pathB), Deno.errors.NotFound);

    await withClient(master, async (client) => {
      const [tasks] = (await client.stats("tasks")).queues;
      assert.deepEqual([tasks.ready, tasks.leased], [2, 0]);
      const jobs = await takeAll<string>(client, "tasks", 2);
      const byId = new Map(jobs.map((job) => [job.id, job]));
      assert.equal(byId.get(idA)?.attempt, 2, "the stopped item is served again");
      assert.equal(byId.get(idB)?.attempt, 1, "the other was never taken");
    });
    await master.stop();
  });
});
