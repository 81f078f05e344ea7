/**
 * `taskq workers`, `taskq quiet SESSION` and `taskq stop SESSION` as real
 * processes (lib/cli/workers.ts, lib/cli/control.ts): the listing shows each
 * connected client with the items it holds (text and `--json`, without the
 * command's own connection), and quiet and stop reach a client in another
 * process (a small library client registered with `onControl`), which the
 * listing then shows; an unknown session exits 1.
 *
 * @module
 */

import assert from "node:assert/strict";
import { connect } from "../lib/client/client.ts";
import { MOD_URL, runTaskq, spawnClient, startMaster, TEST_KEY } from "./_helpers.ts";

/** Exit code when no such session is connected. */
const EXIT_NO_SUCH_SESSION = 1;

/**
 * A client that connects as "controlled", takes two items of `tasks`, prints
 * `ready`, prints each control action it is told, and exits (0) when told
 * to stop.
 */
const CONTROLLED_CLIENT = `
import { connect } from ${JSON.stringify(MOD_URL)};
const client = await connect({ name: "controlled" });
const stopped = Promise.withResolvers();
client.onControl((action) => {
  console.log("control " + action);
  if (action === "stop") stopped.resolve();
});
await client.queue("tasks").getMany(2, 5000);
console.log("ready");
await stopped.promise;
await client.close();
`;

Deno.test("taskq workers lists clients and what they hold; quiet and stop reach them", async () => {
  await using master = await startMaster();
  const env = { TASKQ_ADDR: master.address };
  const admin = await connect({ address: master.address, authkey: TEST_KEY, name: "admin" });
  try {
    await admin.queue("tasks").putMany(["x", "y", "z"]);
    await using controlled = await spawnClient("controlled", CONTROLLED_CLIENT, {
      env: { TASKQ_ADDR: master.address, TASKQ_AUTHKEY: TEST_KEY },
    });
    await controlled.waitForLine(/^ready$/);

    const json = await runTaskq(["workers", "--json"], { env });
    assert.equal(json.code, 0, json.stderr);
    const sessions = json.stdout.trimEnd().split("\n").map((line) => JSON.parse(line));
    assert.deepEqual(sessions.map((s) => s.name).sort(), ["admin", "controlled"], "not itself");
    const target = sessions.find((s) => s.name === "controlled");
    assert.equal(target.leased, 2);
    assert.equal(target.holding.length, 2);
    assert.ok(target.holding.every((h: { queue: string }) => h.queue === "tasks"));

    const text = await runTaskq(["workers"], { env });
    assert.equal(text.code, 0, text.stderr);
    const lines = text.stdout.trimEnd().split("\n");
    assert.match(
      lines[0],
      /^SESSION\s+NAME\s+ADDRESS\s+HOLDS\s+WAITING\s+CONNECTED\s+SEEN\s+SENT$/,
    );
    assert.ok(
      lines.some((line) =>
        new RegExp(`^${target.id}\\s+controlled\\s+\\S+\\s+2\\s+0\\s`).test(line)
      ),
      text.stdout,
    );
    const heldLines = lines.filter((line) =>
      /^ {4}item \d+ of tasks: held \d+s, lease ends in/.test(line)
    );
    assert.equal(heldLines.length, 2, text.stdout);

    const quiet = await runTaskq(["quiet", target.id], { env });
    assert.equal(quiet.code, 0, quiet.stderr);
    assert.equal(quiet.stdout, `asked session ${target.id} to go quiet\n`);
    await controlled.waitForLine(/^control quiet$/);
    const after = await runTaskq(["workers", "--json"], { env });
    const quieted = after.stdout.trimEnd().split("\n").map((line) => JSON.parse(line))
      .find((s) => s.id === target.id);
    assert.equal(quieted.controlled, "quiet");

    const stop = await runTaskq(["stop", target.id], { env });
    assert.equal(stop.code, 0, stop.stderr);
    assert.equal(stop.stdout, `asked session ${target.id} to stop\n`);
    await controlled.waitForLine(/^control stop$/);
    const status = await controlled.finished();
    assert.equal(status.code, 0, controlled.describe());

    // It is gone: its items are back, and it can no longer be told anything.
    const gone = await runTaskq(["stop", target.id], { env });
    assert.equal(gone.code, EXIT_NO_SUCH_SESSION);
    assert.match(gone.stderr, /no session \S+ is connected \(taskq workers lists them\)/);
    assert.equal(await admin.queue("tasks").size(), 3);
  } finally {
    await admin.close();
  }
});

Deno.test("taskq quiet and stop refuse bad arguments", async () => {
  for (const command of ["quiet", "stop"]) {
    const none = await runTaskq([command], { env: { TASKQ_ADDR: "127.0.0.1:1" } });
    assert.equal(none.code, 2);
    assert.match(none.stderr, /give one session id \(0 given/);
    const help = await runTaskq([command, "--help"]);
    assert.match(help.stdout, new RegExp(`^Usage: taskq ${command} \\[options\\] SESSION`));
  }
  const extra = await runTaskq(["workers", "x"], { env: { TASKQ_ADDR: "127.0.0.1:1" } });
  assert.equal(extra.code, 2);
});
