/**
 * Throttling of wrong keys (lib/server/auth_throttle.ts) and how both
 * front-ends use it:
 *
 * - the throttle alone, on a fake clock: the budget (a token bucket per
 *   source IP, any port), growing penalties, refusals counted, memory capped,
 *   recovered addresses forgotten, IPv6 by /64, and one summary line per
 *   report interval instead of one line per failure;
 * - an in-process master: a loop of 30 wrong keys from loopback gets exactly
 *   the budget's worth of HMAC checks, the rest refused at once with the
 *   transient `too_many_connections`; the log has one "throttling" line and
 *   one summary; a handshake already under way when its address is throttled
 *   is refused at `auth` without its proof being checked; a client already
 *   connected keeps working, and the right key gets in again once the penalty
 *   is over;
 * - the Python front-end shares the budget with the native one (wrong keys on
 *   either side throttle both), and real Python sees why it was refused;
 * - a real `taskq master` process with its defaults: 10 wrong keys, then
 *   refusals, in two log lines.
 *
 * @module
 */

import assert from "node:assert/strict";
import { AuthThrottle, sourceAddress } from "../lib/server/auth_throttle.ts";
import { type MasterOptions, serve } from "../lib/server/master.ts";
import { pythonFrontEnd } from "../lib/python/frontend.ts";
import { PythonManagerClient } from "../lib/python/client.ts";
import { AuthenticationError, connect, RemoteError } from "../lib/mod.ts";
import { createLogger } from "../lib/log.ts";
import { Telemetry } from "../lib/broker/telemetry.ts";
import { clientProof, newNonce, PROTOCOL_VERSION } from "../lib/wire/auth.ts";
import { asError, RawConn, show, startMaster, TEST_KEY, waitFor } from "./_helpers.ts";
import { managerPreamble, pythonTest, runPython } from "./_python.ts";

/** Wrong-key attempts each loop makes. */
const ATTEMPTS = 30;

/** A budget small enough to spend in a test. */
const BUDGET = 3;

/** An interval long enough that the budget does not refill during a test: 10 min. */
const LONG_MS = 600_000;

/** A fake clock for the throttle alone. */
function clock(start = 1_000_000) {
  const state = { now: start };
  return { state, now: () => state.now };
}

/** A logger collecting its lines. */
function collecting(): { lines: string[]; logger: ReturnType<typeof createLogger> } {
  const lines: string[] = [];
  return { lines, logger: createLogger({ level: "debug", write: (line) => lines.push(line) }) };
}

/** The lines about failed authentication or throttling. */
function authLines(lines: readonly string[]): string[] {
  return lines.filter((line) => /authenticat|throttl/i.test(line));
}

/** How one native connection attempt ended. */
type Outcome = "welcome" | "auth_failed" | "throttled";

async function attempt(
  address: { hostname: string; port: number },
  key: string,
  timeoutMs = 5_000,
) {
  try {
    // A refusal that outlasts `timeoutMs` is not retried (the client gives up at once).
    const client = await connect({ address, authkey: key, reconnect: false, timeoutMs });
    await client.close();
    return "welcome" as Outcome;
  } catch (error) {
    if (error instanceof AuthenticationError) return "auth_failed" as Outcome;
    if (error instanceof RemoteError && error.code === "too_many_connections") {
      assert.match(error.message, /too many failed authentications from 127\.0\.0\.1/);
      return "throttled" as Outcome;
    }
    throw error;
  }
}

function count(outcomes: readonly Outcome[], which: Outcome): number {
  return outcomes.filter((o) => o === which).length;
}

Deno.test("throttle: the budget is per source IP, then refusals until a token refills", () => {
  const { state, now } = clock();
  const telemetry = new Telemetry();
  const throttle = new AuthThrottle({
    failures: BUDGET,
    intervalMs: 30_000, // one failure back every 10 s
    penaltyMs: 1_000,
    telemetry,
    now,
  });
  for (let i = 0; i < BUDGET; i++) {
    assert.equal(throttle.refusal(`10.1.1.1:${4000 + i}`), undefined);
    throttle.failed(`10.1.1.1:${4000 + i}`);
  }
  const refused = throttle.refusal("10.1.1.1:9999");
  assert.equal(refused?.source, "10.1.1.1");
  assert.equal(refused?.retryAfterMs, 10_000, "the budget refills slower than the penalty ends");
  assert.equal(throttle.refusal("10.1.1.2:4000"), undefined, "another address is not touched");
  assert.equal(telemetry.authThrottled, 1);
  state.now += 9_999;
  assert.ok(throttle.refusal("10.1.1.1:1") !== undefined);
  state.now += 1;
  assert.equal(throttle.refusal("10.1.1.1:1"), undefined, "one failure is back");
  throttle.failed("10.1.1.1:1"); // spends it: throttled again, with a doubled penalty
  assert.equal(throttle.refusal("10.1.1.1:1")?.retryAfterMs, 10_000);
  throttle.close();
});

Deno.test("throttle: each penalty doubles the last, up to the longest", () => {
  const { state, now } = clock();
  const throttle = new AuthThrottle({
    failures: 1,
    intervalMs: 1, // the budget refills at once: only the penalty holds the address back
    penaltyMs: 1_000,
    maxPenaltyMs: 5_000,
    now,
  });
  const penalties: number[] = [];
  for (let i = 0; i < 5; i++) {
    throttle.failed("192.0.2.9:1");
    const refusal = throttle.refusal("192.0.2.9:2");
    penalties.push(refusal?.retryAfterMs ?? 0);
    state.now += refusal?.retryAfterMs ?? 0;
    assert.equal(throttle.refusal("192.0.2.9:2"), undefined);
  }
  assert.deepEqual(penalties, [1_000, 2_000, 4_000, 5_000, 5_000]);
  throttle.close();
});

Deno.test("throttle: memory is capped, and recovered addresses are forgotten", async () => {
  const { state, now } = clock();
  const throttle = new AuthThrottle({
    failures: 2,
    intervalMs: 1_000,
    maxAddresses: 100,
    reportIntervalMs: 10,
    now,
  });
  for (let i = 0; i < 1_000; i++) throttle.failed(`10.2.${i >> 8}.${i & 255}:1`);
  assert.equal(throttle.trackedAddresses, 100);
  // The most recent are kept, the oldest forgotten.
  throttle.failed("10.2.3.231:2");
  assert.ok(throttle.refusal("10.2.3.231:3") !== undefined);
  assert.equal(throttle.refusal("10.2.0.0:3"), undefined);
  state.now += 10_000; // every budget is full again and every penalty over
  await waitFor("the report", () => throttle.trackedAddresses === 0, { timeoutMs: 2_000 });
  throttle.close();
});

Deno.test("throttle: the source is the IP without the port; IPv6 by its /64", () => {
  assert.equal(sourceAddress("127.0.0.1:5000"), "127.0.0.1");
  assert.equal(sourceAddress("[::1]:5000"), "::1");
  assert.equal(sourceAddress("[::ffff:192.0.2.1]:5000"), "192.0.2.1");
  assert.equal(sourceAddress("[2001:db8::1]:5000"), "2001:db8:0:0::/64");
  assert.equal(sourceAddress("[2001:DB8:0:0:ffff::2]:5000"), "2001:db8:0:0::/64");
  assert.equal(sourceAddress("[fe80::1:2:3:4]:1"), "fe80:0:0:0::/64");
  assert.equal(sourceAddress("[2001:db8:1:2::]:1"), "2001:db8:1:2::/64");
  assert.equal(sourceAddress("localhost"), "localhost");
});

Deno.test("throttle: one summary per report interval, not one line per failure", async () => {
  const { lines, logger } = collecting();
  const throttle = new AuthThrottle({
    failures: 5,
    intervalMs: LONG_MS,
    reportIntervalMs: 100,
    logger,
  });
  for (let i = 0; i < 8; i++) throttle.failed(`198.51.100.1:${i}`);
  for (let i = 0; i < 2; i++) throttle.failed(`198.51.100.2:${i}`);
  for (let i = 0; i < 4; i++) throttle.refusal(`198.51.100.1:${i}`);
  assert.equal(authLines(lines).length, 1, "only the throttling line so far");
  assert.match(lines[0], /throttling 198\.51\.100\.1: it spent its budget of 5 failed/);
  await waitFor("the summary", () => lines.length === 2, { timeoutMs: 2_000 });
  assert.match(
    lines[1],
    /10 failed authentications from 2 addresses in the last 0\.1 s \(top: 198\.51\.100\.1 ×8\); 4 connections refused while throttled$/,
  );
  // Quiet: no more lines, and no timer left running (the test's sanitizer checks).
  throttle.failed("198.51.100.3:1");
  throttle.close();
  assert.equal(lines.length, 3);
  assert.match(lines[2], /1 failed authentication from 1 address in the last [\d.]+ s/);
});

Deno.test("throttle: a flood of throttled addresses logs a bounded number of lines", () => {
  const { lines, logger } = collecting();
  const throttle = new AuthThrottle({ failures: 1, intervalMs: LONG_MS, logger });
  for (let i = 0; i < 500; i++) throttle.failed(`10.3.${i >> 8}.${i & 255}:1`);
  throttle.close();
  assert.equal(lines.length, 11, "ten throttling lines and one summary");
  assert.match(lines[10], /500 failed authentications from 500 addresses .*; 490 more addresses/);
});

Deno.test("throttle: options are checked", () => {
  assert.throws(() => new AuthThrottle({ failures: 0 }), RangeError);
  assert.throws(() => new AuthThrottle({ intervalMs: -1 }), RangeError);
  assert.throws(() => new AuthThrottle({ penaltyMs: Number.NaN }), RangeError);
});

/** An in-process master with a small budget, logging into `lines`. */
async function throttledMaster(
  lines: string[],
  throttle: MasterOptions["authThrottle"] = {},
  extra: Partial<MasterOptions> = {},
) {
  return await serve({
    listen: "127.0.0.1:0",
    authkey: TEST_KEY,
    logger: createLogger({ level: "debug", write: (line) => lines.push(line) }),
    authThrottle: {
      failures: BUDGET,
      intervalMs: LONG_MS,
      penaltyMs: LONG_MS,
      reportIntervalMs: LONG_MS,
      ...throttle,
    },
    ...extra,
  });
}

Deno.test("native: a loop of wrong keys is slowed to the budget, and logged in two lines", async () => {
  const lines: string[] = [];
  const master = await throttledMaster(lines);
  const outcomes: Outcome[] = [];
  try {
    for (let i = 0; i < ATTEMPTS; i++) outcomes.push(await attempt(master.address, "wrong key"));
    assert.equal(count(outcomes, "auth_failed"), BUDGET, outcomes.join(" "));
    assert.equal(count(outcomes, "throttled"), ATTEMPTS - BUDGET);
    assert.deepEqual(outcomes.slice(0, BUDGET), new Array(BUDGET).fill("auth_failed"));
    assert.equal(master.telemetry.errors.get("auth_failed"), BUDGET, "proofs checked");
    assert.equal(master.telemetry.authThrottled, ATTEMPTS - BUDGET);
    assert.equal(master.telemetry.errors.get("too_many_connections"), undefined);
    // Even the right key waits for the penalty: the master cannot tell it apart before the handshake.
    assert.equal(await attempt(master.address, TEST_KEY, 500), "throttled");
  } finally {
    await master.close();
  }
  const auth = authLines(lines);
  assert.equal(auth.length, 2, auth.join("\n"));
  assert.match(auth[0], /WARN {2}throttling 127\.0\.0\.1: it spent its budget of 3 failed/);
  assert.match(
    auth[1],
    new RegExp(
      `WARN {2}3 failed authentications from 1 address in the last [\\d.]+ s ` +
        `\\(top: 127\\.0\\.0\\.1 ×3\\); ${
          ATTEMPTS - BUDGET + 1
        } connections refused while throttled$`,
    ),
  );
});

Deno.test("native: a handshake under way when its address is throttled is refused at auth", async () => {
  const lines: string[] = [];
  const master = await throttledMaster(lines);
  try {
    await using early = await RawConn.open(`127.0.0.1:${master.address.port}`);
    const nonce = newNonce();
    await early.send({ op: "hello", version: PROTOCOL_VERSION, nonce });
    const challenge = await early.next() as { op: string; nonce: Uint8Array };
    assert.equal(challenge.op, "challenge");
    for (let i = 0; i < BUDGET; i++) {
      assert.equal(await attempt(master.address, "wrong"), "auth_failed");
    }
    // The right proof, but the address is throttled now: refused without checking it.
    const key = new TextEncoder().encode(TEST_KEY);
    await early.send({ op: "auth", proof: clientProof(key, nonce, challenge.nonce) });
    const frames = await early.closedByPeer();
    assert.equal(frames.length, 1, show(frames));
    assert.match(asError(frames[0], "too_many_connections").message, /refused for \d+ s/);
    // A throttled hello gets no challenge.
    await using late = await RawConn.open(`127.0.0.1:${master.address.port}`);
    await late.send({ op: "hello", version: PROTOCOL_VERSION, nonce: newNonce() });
    const refused = await late.closedByPeer();
    assert.equal(refused.length, 1, show(refused));
    asError(refused[0], "too_many_connections");
    assert.equal(master.telemetry.authThrottled, 2);
  } finally {
    await master.close();
  }
});

Deno.test("native: a connected client keeps working, and the right key gets in after the penalty", async () => {
  const lines: string[] = [];
  // Three wrong keys per 0.6 s (one back every 0.2 s), then 0.4 s of refusals.
  const master = await throttledMaster(lines, { intervalMs: 600, penaltyMs: 400 });
  const worker = await connect({ address: master.address, authkey: TEST_KEY });
  try {
    let lastFailureSent = 0;
    for (let i = 0; i < BUDGET; i++) {
      lastFailureSent = Date.now(); // the penalty starts after this
      assert.equal(await attempt(master.address, "wrong"), "auth_failed");
    }
    assert.equal(await attempt(master.address, TEST_KEY, 500), "throttled");
    // The connection made before is not touched.
    await worker.queue("jobs").put("still here");
    assert.equal((await worker.queue("jobs").get(1_000))?.value, "still here");
    // The right key gets in once the penalty is over.
    await waitFor(
      "the penalty to end",
      async () => await attempt(master.address, TEST_KEY) === "welcome",
      {
        timeoutMs: 5_000,
        intervalMs: 50,
      },
    );
    assert.ok(Date.now() - lastFailureSent >= 400, "not before the penalty ends");
  } finally {
    await worker.close();
    await master.close();
  }
});

Deno.test("python: wrong keys are throttled too, sharing one budget with the native side", async () => {
  const lines: string[] = [];
  const master = await throttledMaster(lines, {}, {
    frontEnds: [pythonFrontEnd({ listen: "127.0.0.1:0" })],
  });
  const python = master.frontEnds[0].address;
  const tryPython = async (key: string): Promise<string> => {
    try {
      (await new PythonManagerClient({ address: python, authkey: key }).open()).close();
      return "welcome";
    } catch (error) {
      assert.ok(error instanceof AuthenticationError, String(error));
      return /did not send a challenge/.test(error.message) ? "throttled" : "auth_failed";
    }
  };
  try {
    const outcomes: string[] = [];
    for (let i = 0; i < ATTEMPTS; i++) outcomes.push(await tryPython("wrong key"));
    assert.equal(outcomes.filter((o) => o === "auth_failed").length, BUDGET, outcomes.join(" "));
    assert.equal(outcomes.filter((o) => o === "throttled").length, ATTEMPTS - BUDGET);
    assert.equal(master.telemetry.authThrottled, ATTEMPTS - BUDGET);
    // The native side refuses the same address.
    assert.equal(await attempt(master.address, TEST_KEY, 500), "throttled");
  } finally {
    await master.close();
  }
  const auth = authLines(lines);
  assert.equal(auth.length, 2, auth.join("\n"));
  assert.match(auth[1], /3 failed authentications from 1 address .*; 28 connections refused/);

  // And the other way round: native wrong keys throttle the Python side.
  const other = await throttledMaster([], {}, {
    frontEnds: [pythonFrontEnd({ listen: "127.0.0.1:0" })],
  });
  try {
    for (let i = 0; i < BUDGET; i++) {
      assert.equal(await attempt(other.address, "wrong"), "auth_failed");
    }
    const address = other.frontEnds[0].address;
    await assert.rejects(
      new PythonManagerClient({ address, authkey: TEST_KEY }).open(),
      /did not send a challenge/,
    );
  } finally {
    await other.close();
  }
});

pythonTest("a throttled Python client is told why", async (python) => {
  const master = await throttledMaster([], {}, {
    frontEnds: [pythonFrontEnd({ listen: "127.0.0.1:0" })],
  });
  try {
    for (let i = 0; i < BUDGET; i++) {
      assert.equal(await attempt(master.address, "wrong"), "auth_failed");
    }
    const script = `${managerPreamble(master.frontEnds[0].address, TEST_KEY)}
manager = QueueManager(address=ADDRESS, authkey=KEY)
try:
    manager.connect()
    print("connected")
except Exception as error:
    print(type(error).__name__, error)
`;
    await using proc = await runPython(python, "throttled client", script);
    const status = await proc.finished();
    assert.equal(status.code, 0, proc.describe());
    assert.match(
      proc.stdout,
      /(AuthenticationError|AssertionError) .*#TASKQ-THROTTLED# too many failed authentications from 127\.0\.0\.1/,
      proc.describe(),
    );
  } finally {
    await master.close();
  }
});

Deno.test("a real master with its defaults: ten wrong keys, then refusals, in two log lines", async () => {
  await using master = await startMaster();
  const address = master.address;
  const [hostname, port] = [address.slice(0, address.lastIndexOf(":")), address.split(":").pop()];
  const outcomes: Outcome[] = [];
  for (let i = 0; i < ATTEMPTS; i++) {
    outcomes.push(await attempt({ hostname, port: Number(port) }, "wrong key"));
  }
  assert.equal(count(outcomes, "auth_failed"), 10, outcomes.join(" "));
  assert.equal(count(outcomes, "throttled"), ATTEMPTS - 10);
  await master.stop();
  const auth = authLines(master.proc.stderr.trimEnd().split("\n"));
  assert.equal(auth.length, 2, master.proc.describe());
  assert.match(auth[0], /throttling 127\.0\.0\.1/);
  assert.match(auth[1], /10 failed authentications from 1 address .*; 20 connections refused/);
});
