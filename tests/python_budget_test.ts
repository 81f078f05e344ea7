/**
 * Python connections charge the master's shared buffer budget
 * (lib/python/wire/connection.ts, `HostContext.buffers`): eight Python
 * connections, each with a blocking `get` under way and eight 4 MiB messages
 * pipelined behind it, make the master hold about the budget's cap plus one
 * message, not all of it; each connection still reads the message its
 * session asks for, and what they held is given back when they close.
 *
 * @module
 */

import assert from "node:assert/strict";
import { serve } from "../lib/server/master.ts";
import { pythonFrontEnd } from "../lib/python/frontend.ts";
import { PythonManagerClient } from "../lib/python/client.ts";
import { encodeRequest } from "../lib/python/wire/rpc.ts";
import { MIB } from "../lib/util/memory.ts";
import { pause, TEST_KEY, waitFor } from "./_helpers.ts";

/** Python connections in the flood. */
const CONNECTIONS = 8;

/** Messages each pipelines behind its blocking get. */
const MESSAGES = 8;

/** Size of each pipelined message: 4 MiB. */
const MESSAGE_BYTES = 4 * MIB;

/** The master's memory budget: its buffers share (an eighth) is 8 MiB. */
const MAX_MEMORY_BYTES = 64 * MIB;

/** Seconds the blocking gets wait. */
const GET_TIMEOUT_S = 30;

Deno.test("python: pipelined messages of many connections are bounded by the shared budget", async () => {
  const master = await serve({
    listen: "127.0.0.1:0",
    authkey: TEST_KEY,
    maxMemoryBytes: MAX_MEMORY_BYTES,
    frontEnds: [pythonFrontEnd({ listen: "127.0.0.1:0" })],
  });
  const address = master.frontEnds[0].address;
  const cap = master.buffers.cap;
  const manager = new PythonManagerClient({ address, authkey: TEST_KEY });
  const queue = await manager.create("get_task_queue");
  const calls = [];
  try {
    for (let i = 0; i < CONNECTIONS; i++) calls.push(await manager.openCalls(`flood-${i}`));
    const big = new Uint8Array(MESSAGE_BYTES);
    for (const call of calls) {
      // A get that blocks its session, then messages it cannot take yet.
      void call.conn.send(encodeRequest(queue.ident, "get", [true, GET_TIMEOUT_S])).catch(() => {});
      for (let m = 0; m < MESSAGES; m++) void call.conn.send(big).catch(() => {});
    }
    await waitFor("the first messages to arrive", () => master.buffers.used > MESSAGE_BYTES);
    await pause(500); // time for more to arrive, were they let in
    const used = master.buffers.used;
    assert.ok(
      used <= cap + 2 * MESSAGE_BYTES,
      `held ${(used / MIB).toFixed(1)} MiB with a cap of ${(cap / MIB).toFixed(1)} MiB`,
    );
    // The master still serves: a native session's put reaches a waiting Python get.
    const session = await master.broker.open({ name: "producer", address: "" });
    await session.put("tasks", ["wake"]);
    await session.close();
    const checker = await manager.openCalls("checker");
    await checker.call(queue.ident, "put", ["from python"]);
    checker.close();
  } finally {
    for (const call of calls) call.close();
  }
  await waitFor("every byte to be given back", () => master.buffers.used === 0);
  await master.close();
});
