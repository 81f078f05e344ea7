/**
 * The scale scenarios (scripts/scale_bench.ts) end to end at a tiny size, as
 * `deno task bench` runs them: one process runs every part; its JSON lines
 * must parse and make sense (each scenario's rows present, positive figures,
 * the restarted master serving the first item put), it exits 0, and it
 * leaves no temporary directory behind. Only the helpers' own logic is
 * checked here; the figures are the bench's, never asserted.
 *
 * @module
 */

import assert from "node:assert/strict";
import { queueChunk, SCALE_PARTS, scalePartsOf } from "../scripts/scale_bench.ts";

/** Tasks of the idle and queue scenarios, and items of the RSS and restart ones. */
const TINY_N = 2_000;
/** Idle connections of the tiny run. */
const TINY_IDLE = 50;
/** Queues of the tiny spread run. */
const TINY_QUEUES = 20;
/** Time the whole tiny run may take, in ms. */
const RUN_TIMEOUT_MS = 90_000;

const script = new URL("../scripts/scale_bench.ts", import.meta.url).pathname;

/** One JSON row the script printed. */
interface Row {
  scenario: string;
  value: number;
  unit: string;
  [key: string]: unknown;
}

Deno.test("scalePartsOf: a part by its name, all by `scale`, scale-rss also by `rss`", () => {
  const of = (names: string[]) => scalePartsOf((part) => names.includes(part));
  assert.deepEqual(of(["scale"]), [...SCALE_PARTS]);
  assert.deepEqual(of(["scale-queues", "memory"]), ["scale-queues"]);
  assert.deepEqual(of(["rss"]), ["scale-rss"]);
  assert.deepEqual(of(["tls"]), []);
});

Deno.test("queueChunk: N over the queue count, rounded up, at least 1", () => {
  assert.equal(queueChunk(100_000, 10_000), 10);
  assert.equal(queueChunk(2_000, 20), 100);
  assert.equal(queueChunk(2_001, 20), 101);
  assert.equal(queueChunk(5, 10_000), 1);
});

Deno.test({
  name: "every scale scenario runs at a tiny size and prints JSON rows that make sense",
  fn: async () => {
    const tmp = await Deno.makeTempDir({ prefix: "taskq-scale-test-" });
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", script, String(TINY_N)],
      env: {
        TASKQ_BENCH_ONLY: "scale",
        TASKQ_BENCH_RSS_ITEMS: String(TINY_N),
        TASKQ_BENCH_IDLE_CONNECTIONS: String(TINY_IDLE),
        TASKQ_BENCH_QUEUES: String(TINY_QUEUES),
        TASKQ_BENCH_RESTART_ITEMS: String(TINY_N),
        // The scenarios' temporary directories land here, to be checked for leftovers.
        TMPDIR: tmp,
      },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const timer = setTimeout(() => child.kill("SIGKILL"), RUN_TIMEOUT_MS);
    try {
      const output = await child.output();
      const stdout = new TextDecoder().decode(output.stdout);
      const stderr = new TextDecoder().decode(output.stderr);
      assert.equal(output.code, 0, `exit ${output.code}\n${stdout}\n${stderr}`);
      const rows: Row[] = stdout.split("\n").filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line));
      const of = (scenario: string) => rows.filter((row) => row.scenario === scenario);
      for (const row of rows) {
        assert.ok(Number.isFinite(row.value), `${row.scenario}: value ${row.value}`);
        assert.equal(typeof row.unit, "string");
      }

      const [rss] = of("master-rss-growth");
      assert.equal(rss.items, TINY_N);
      assert.ok((rss.rssAfterMiB as number) > 0 && (rss.rssBeforeMiB as number) > 0);

      const seeds = of("seed-workload-idle");
      assert.deepEqual(seeds.map((row) => row.idleConnections), [0, TINY_IDLE]);
      for (const row of seeds) {
        assert.ok(row.value > 0 && row.n === TINY_N && row.workers === 2, JSON.stringify(row));
        assert.ok((row.masterRssMiB as number) > 0);
      }
      const [idleRss] = of("master-rss-idle");
      assert.equal(idleRss.idleConnections, TINY_IDLE);
      assert.ok(idleRss.value >= (idleRss.rssBeforeIdleMiB as number) - 1, JSON.stringify(idleRss));
      const [idleRatio] = of("ratio-idle-vs-none");
      assert.ok(idleRatio.value > 0);
      assert.equal(idleRatio.tasksPerSecond, seeds[1].value);

      const spreads = of("queues-spread");
      assert.deepEqual(spreads.map((row) => row.queues), [1, TINY_QUEUES]);
      for (const row of spreads) {
        assert.ok(row.value > 0 && row.n === TINY_N, JSON.stringify(row));
        assert.equal(row.itemsPerRequest, queueChunk(TINY_N, TINY_QUEUES));
      }
      // Owned queues are drained without an empty get: one get per chunk.
      assert.equal(spreads[1].gets, TINY_N / queueChunk(TINY_N, TINY_QUEUES));
      const [queuesRatio] = of("ratio-queues-vs-one");
      assert.ok(queuesRatio.value > 0);

      const restarts = of("restart-first-get");
      assert.deepEqual(restarts.map((row) => row.stop), ["clean stop", "kill -9"]);
      for (const row of restarts) {
        assert.equal(row.items, TINY_N);
        assert.ok(row.value > 0 && row.value >= (row.listeningSeconds as number));
        assert.equal(row.firstValue, 0, "the first get serves the first item put");
        assert.ok((row.allCountedSeconds as number) >= row.value);
      }

      const left = [];
      for await (const entry of Deno.readDir(tmp)) left.push(entry.name);
      assert.deepEqual(left, [], "temporary directories left behind");
    } finally {
      clearTimeout(timer);
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
