/**
 * A worker's commands die with it (lib/worker/watchdog.ts): a `taskq worker`
 * process running `sleep 300` commands (one the command itself, one a child
 * the command's shell waits for) is killed with SIGKILL, and every sleep is
 * gone within a couple of seconds; the items are served again. Also the
 * watchdog on its own: groups listed and then taken off are left alone.
 *
 * @module
 */

import assert from "node:assert/strict";
import { connect } from "../lib/mod.ts";
import { Watchdog } from "../lib/worker/watchdog.ts";
import { silentLogger } from "../lib/log.ts";
import {
  processEnded,
  startMaster,
  startTaskq,
  TEST_KEY,
  waitFor,
  WORKER_PERMISSIONS,
} from "./_helpers.ts";

/** Longest any wait here may take. */
const WAIT_MS = 30_000;

/** How soon after the worker's death its commands must be gone, in ms. */
const GONE_WITHIN_MS = 2_000;

Deno.test("kill -9 of a worker: its running commands die with it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "taskq-watchdog-" });
  const pids: number[] = [];
  try {
    await using master = await startMaster();
    const client = await connect({ address: master.address, authkey: TEST_KEY });
    try {
      await client.queue("tasks").putMany(["exec", "child"]);
      // "exec": the command becomes the sleep; "child": the sleep is the shell's child.
      const script = 'if [ "$1" = exec ]; then echo $$ > "$MARKS/exec"; exec sleep 300; fi; ' +
        'sleep 300 & echo $! > "$MARKS/child"; wait';
      await using worker = startTaskq("worker", [
        "worker",
        "--connect",
        master.address,
        "--queue",
        "tasks",
        "--concurrency",
        "2",
        "--",
        "sh",
        "-c",
        script,
        "sh",
        "{}",
      ], { env: { MARKS: dir }, permissions: WORKER_PERMISSIONS });
      for (const name of ["exec", "child"]) {
        pids.push(
          await waitFor(`the ${name} sleep to start`, async () => {
            const text = await Deno.readTextFile(`${dir}/${name}`).catch(() => "");
            return text.trim() === "" ? undefined : Number(text);
          }, { timeoutMs: WAIT_MS }),
        );
      }
      for (const pid of pids) assert.equal(await processEnded(pid), false, "sleeping");
      worker.kill("SIGKILL");
      await worker.finished(WAIT_MS);
      const killedAt = Date.now();
      for (const pid of pids) {
        await waitFor(`sleep ${pid} to die with the worker`, () => processEnded(pid), {
          timeoutMs: GONE_WITHIN_MS,
        });
      }
      assert.ok(Date.now() - killedAt <= GONE_WITHIN_MS);
      const stats = (await client.stats("tasks")).queues[0];
      assert.equal(stats.ready, 2, "both items are back in the queue");
    } finally {
      await client.close();
    }
  } finally {
    // Nothing outlives the test even if the watchdog failed.
    for (const pid of pids) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // gone, as it should be
      }
    }
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("watchdog: only the groups still listed at its end are killed", async () => {
  const watchdog = Watchdog.start(silentLogger);
  assert.ok(watchdog !== undefined);
  const spawn = () => new Deno.Command("sleep", { args: ["30"], detached: true }).spawn();
  const [listed, removed, never] = [spawn(), spawn(), spawn()];
  try {
    watchdog.add(listed.pid);
    watchdog.add(removed.pid);
    watchdog.remove(removed.pid);
    assert.deepEqual([...watchdog.groups], [listed.pid]);
    await watchdog.close();
    assert.equal((await listed.status).signal, "SIGKILL");
    assert.equal(await processEnded(removed.pid), false, "taken off the list: left alone");
    assert.equal(await processEnded(never.pid), false, "never listed: left alone");
  } finally {
    for (const child of [listed, removed, never]) {
      try {
        child.kill("SIGKILL");
      } catch {
        // gone
      }
      await child.status;
    }
  }
});
