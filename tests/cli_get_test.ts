/**
 * `taskq get` as real processes (lib/cli/get.ts): through a real shell pipe
 * into `head -1` it acks exactly the one line head read, gives the other
 * items back at once and ends quietly (exit 0, nothing on stderr, no
 * `BrokenPipe` stack trace); it exits {@link EXIT_DRAINED} when fewer than
 * `--count` items came before the timeout (after printing and acking those
 * that did), 0 when all came, 1 on errors; into a file it writes and acks
 * every item.
 *
 * @module
 */

import assert from "node:assert/strict";
import { connect } from "../lib/client/client.ts";
import { EXIT_DRAINED } from "../lib/cli/get.ts";
import {
  keyEnv,
  type MasterProcess,
  runTaskq,
  startMaster,
  taskqArgs,
  TEST_KEY,
} from "./_helpers.ts";

/** Exit code of an error (the master unreachable). */
const EXIT_FAILURE = 1;

/** Quotes `word` for `sh`. */
function shellQuote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** Runs `script` with `sh -c` in the taskq environment of `master`; resolves with its output. */
async function shell(
  master: MasterProcess,
  script: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command("sh", {
    args: ["-c", script],
    env: keyEnv(TEST_KEY, { TASKQ_ADDR: master.address }),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

/** The queue's figures as the master reports them. */
async function figures(master: MasterProcess, queue: string) {
  const client = await connect({ address: master.address, authkey: TEST_KEY });
  try {
    const [stats] = (await client.stats(queue)).queues;
    const ready = await client.items(queue, { state: "ready", limit: 500 });
    return {
      ready: stats.ready,
      leased: stats.leased,
      acked: stats.acked,
      values: ready.items.map((item) => item.value),
    };
  } finally {
    await client.close();
  }
}

/** Puts `values` on `queue` through the library. */
async function put(master: MasterProcess, queue: string, values: unknown[]): Promise<void> {
  const client = await connect({ address: master.address, authkey: TEST_KEY });
  try {
    await client.queue(queue).putMany(values);
  } finally {
    await client.close();
  }
}

Deno.test("taskq get | head -1 acks the one line read, gives the rest back, ends quietly", async (t) => {
  // Durable: an ack waits for its commit, as in production.
  const dataDir = await Deno.makeTempDir({ prefix: "taskq-get-test-" });
  await using master = await startMaster({ dataDir });
  try {
    for (const count of [10, 3_000]) {
      await t.step(`--count ${count}`, async () => {
        const queue = `pipe-${count}`;
        await put(master, queue, Array.from({ length: count }, (_, i) => i));
        const get = taskqArgs(["get", "--queue", queue, "--count", String(count)])
          .map(shellQuote).join(" ");
        const run = await shell(master, `${shellQuote(Deno.execPath())} ${get} | head -1`);
        assert.equal(run.code, 0, run.stderr);
        assert.equal(run.stderr, "", "nothing on stderr: no BrokenPipe, no stack trace");
        const line = JSON.parse(run.stdout);
        assert.equal(line.value, 0);
        assert.equal(line.queue, queue);
        const after = await figures(master, queue);
        assert.equal(after.acked, 1, "exactly the line head read was acked");
        assert.equal(after.leased, 0, "nothing is held after the command ends");
        assert.equal(after.ready, count - 1, "the others are ready again");
        assert.equal(after.values.includes(0), false);
      });
    }
  } finally {
    await master.proc.dispose();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("taskq get exit codes: 0 all came, 3 drained, 1 on errors", async () => {
  await using master = await startMaster();
  const env = { TASKQ_ADDR: master.address };
  await put(master, "q", ["a", "b", "c"]);

  const all = await runTaskq(["get", "--queue", "q", "--count", "2"], { env });
  assert.equal(all.code, 0, all.stderr);
  assert.deepEqual(all.stdout.trimEnd().split("\n").map((l) => JSON.parse(l).value), ["a", "b"]);

  // Fewer than asked came before the timeout: what came is printed and acked, then exit 3.
  const drained = await runTaskq(["get", "--queue", "q", "--count", "5", "--timeout", "0.2"], {
    env,
  });
  assert.equal(drained.code, EXIT_DRAINED, drained.stderr);
  assert.deepEqual(drained.stdout.trimEnd().split("\n").map((l) => JSON.parse(l).value), ["c"]);
  assert.match(drained.stderr, /^taskq get: drained: got 1 of 5 items before the timeout\n$/);
  const after = await figures(master, "q");
  assert.deepEqual([after.ready, after.leased, after.acked], [0, 0, 3]);

  const none = await runTaskq(["get", "--queue", "q"], { env });
  assert.equal(none.code, EXIT_DRAINED);
  assert.equal(none.stdout, "");

  // An error (no master there) is 1, with one line and no stack trace.
  const port = Number(master.address.split(":").pop());
  await master.stop();
  const failed = await runTaskq(["get", "--queue", "q"], {
    env: { TASKQ_ADDR: `127.0.0.1:${port}` },
  });
  assert.equal(failed.code, EXIT_FAILURE, failed.stderr);
  assert.doesNotMatch(failed.stderr, /^\s+at /m);

  const help = await runTaskq(["get", "--help"]);
  assert.match(help.stdout, /Exit codes: 0 all N items came/);
  assert.match(help.stdout, new RegExp(`${EXIT_DRAINED} fewer than N came before the timeout`));
});

Deno.test("taskq get into a file writes and acks every item", async () => {
  await using master = await startMaster();
  await put(master, "f", Array.from({ length: 2_500 }, (_, i) => ({ n: i })));
  const dir = await Deno.makeTempDir({ prefix: "taskq-get-file-" });
  try {
    const file = `${dir}/out.jsonl`;
    const get = taskqArgs(["get", "--queue", "f", "--count", "2500"]).map(shellQuote).join(" ");
    const run = await shell(master, `${shellQuote(Deno.execPath())} ${get} > ${shellQuote(file)}`);
    assert.equal(run.code, 0, run.stderr);
    const lines = (await Deno.readTextFile(file)).trimEnd().split("\n");
    assert.deepEqual(lines.map((l) => JSON.parse(l).value.n), [...Array(2_500).keys()]);
    const after = await figures(master, "f");
    assert.deepEqual([after.ready, after.leased, after.acked], [0, 0, 2_500]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
