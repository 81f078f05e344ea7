/**
 * The peers benchmark (scripts/peers_bench.ts) end to end at a tiny N: each
 * peer's producer and worker processes on a throwaway Redis or beanstalkd,
 * every result checked; and the bounds of the beanstalkd client's parser
 * against a fake server. The peer runs are skipped, with the reason, when
 * Debian's redis-server or beanstalkd is not installed (.ci/run installs
 * them).
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  PEER_SERVERS_MISSING,
  peerRatios,
  PEERS,
  peerSeed,
  type PeerServer,
  peerServersAvailable,
  startBeanstalkd,
  startRedis,
} from "../scripts/peers_bench.ts";
import { BeanstalkClient, MAX_LINE_BYTES } from "../scripts/beanstalk_client.ts";

/** Tasks per run: enough for every worker to take some, small enough to be quick. */
const TINY_N = 300;

/** Worker processes per run. */
const WORKERS = 2;

const available = peerServersAvailable();
if (!available) console.log(`SKIPPED peers benchmark tests: ${PEER_SERVERS_MISSING}`);

Deno.test({
  name: available
    ? "the seed workload runs on each peer (Redis list, Redis Streams, beanstalkd), results checked"
    : `the seed workload runs on each peer (SKIPPED: ${PEER_SERVERS_MISSING})`,
  ignore: !available,
  fn: async () => {
    const servers: PeerServer[] = [];
    try {
      const redis = await startRedis();
      servers.push(redis);
      const beanstalkd = await startBeanstalkd();
      servers.push(beanstalkd);
      assert.match(redis.version, /^redis \d/);
      assert.match(beanstalkd.version, /^beanstalkd \d/);
      for (const peer of PEERS) {
        const server = peer === "beanstalkd" ? beanstalkd : redis;
        // peerSeed throws when a result is missing, wrong or doubled, or a worker failed.
        const result = await peerSeed({
          peer,
          address: server.address,
          n: TINY_N,
          workers: WORKERS,
        });
        assert.ok(result.tasksPerS > 0, `${peer}: ${result.tasksPerS} tasks/s`);
        assert.equal(result.handled.length, WORKERS);
        assert.equal(result.handled.reduce((a, b) => a + b, 0), TINY_N, `${peer}: handled`);
      }
    } finally {
      for (const server of servers) await server.stop();
    }
  },
});

Deno.test("taskq / best peer: the fastest peer per worker count, over each store measured", () => {
  const values: Record<string, number> = {
    "redis-list|2": 10_000,
    "redis-streams|2": 12_500,
    "beanstalkd|2": 6_000,
    "memory|2": 125_000,
    "durable|2": 50_000,
    "memory|4": 100_000,
  };
  const ratios = peerRatios((store, workers) => values[`${store}|${workers}`], [1, 2, 4]);
  assert.deepEqual(ratios, [{
    workers: 2,
    bestPeer: "redis-streams",
    bestPeerValue: 12_500,
    ratios: { memory: 10, durable: 4 },
  }]);
});

/** A fake beanstalkd that answers every connection's first command with `reply`. */
async function withFakeServer(
  reply: Uint8Array,
  run: (port: number) => Promise<void>,
): Promise<void> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    const conn = await listener.accept();
    try {
      await conn.read(new Uint8Array(1024));
      await conn.write(reply);
      // Hold the connection until the client gives up on it.
      await conn.read(new Uint8Array(1024)).catch(() => null);
    } finally {
      try {
        conn.close();
      } catch {
        // Closed by the client's end already.
      }
    }
  })();
  try {
    await run((listener.addr as Deno.NetAddr).port);
  } finally {
    listener.close();
    await serving;
  }
}

Deno.test("the beanstalkd client's parser is bounded: an overlong reply line fails the connection", async () => {
  const long = new TextEncoder().encode("X".repeat(MAX_LINE_BYTES * 4));
  await withFakeServer(long, async (port) => {
    const client = await BeanstalkClient.connect({ hostname: "127.0.0.1", port });
    await assert.rejects(client.use("tasks"), /longer than 224 bytes/);
    await client.close();
  });
});

Deno.test("the beanstalkd client's parser is bounded: a body over maxBodyBytes fails the connection", async () => {
  const reply = new TextEncoder().encode("RESERVED 1 1000000\r\n");
  await withFakeServer(reply, async (port) => {
    const client = await BeanstalkClient.connect({
      hostname: "127.0.0.1",
      port,
      maxBodyBytes: 100,
    });
    await assert.rejects(client.reserve(0), /1000000 bytes is over the 100 accepted/);
    await client.close();
  });
});
