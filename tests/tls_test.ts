/**
 * TLS: `taskq tls init` makes a working CA, server and client certificate;
 * a TLS master and client round-trip items with the key's handshake still
 * required inside TLS; with a client CA (mutual TLS) a client without a
 * certificate, or with one from another CA, is refused; a plain client to a
 * TLS master, and a TLS client to a plain master, fail clearly rather than
 * hang; a master beyond loopback without TLS warns once that items travel in
 * clear text, and never on loopback. Masters run in-process on ephemeral
 * loopback ports, or as real processes where the command line is the point.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { serve } from "../lib/server/master.ts";
import { connect, type ConnectOptions } from "../lib/client/client.ts";
import { makeTlsMaterial, type TlsMaterial } from "../lib/cli/tls.ts";
import { TlsHandshakeError } from "../lib/wire/tls.ts";
import { AuthenticationError, ConfigError, ConnectionLostError } from "../lib/errors.ts";
import type { Logger } from "../lib/log.ts";
import { httpFrontEnd } from "../lib/http/server.ts";
import { httpToken } from "../lib/http/token.ts";
import { runTaskq, startMaster, TASKQ_PERMISSIONS, TEST_KEY, waitFor } from "./_helpers.ts";

/** Longest any refused connection may take to fail: it must never hang. */
const REFUSAL_DEADLINE_MS = 4_000;

/** Connect timeout given to clients in these tests. */
const CONNECT_TIMEOUT_MS = 3_000;

/** One certificate set for the master and one from another CA, made once. */
const ours: TlsMaterial = await makeTlsMaterial({ hosts: ["localhost", "127.0.0.1"] });
const theirs: TlsMaterial = await makeTlsMaterial({ hosts: ["localhost", "127.0.0.1"] });

/** The client settings trusting our CA, with our client certificate. */
const withCert = { ca: ours.ca, cert: ours.client, key: ours.clientKey };

/** Connects with `options`, puts one item and gets it back. */
async function roundTrip(address: ConnectOptions["address"], options: ConnectOptions) {
  const client = await connect({
    address,
    authkey: TEST_KEY,
    reconnect: false,
    timeoutMs: CONNECT_TIMEOUT_MS,
    ...options,
  });
  try {
    const queue = client.queue("tls");
    await queue.put({ hello: "tls" });
    const job = await queue.get(1_000);
    assert.ok(job !== null);
    await queue.ack(job);
    return job.value;
  } finally {
    await client.close();
  }
}

/** The error `promise` rejects with, within {@link REFUSAL_DEADLINE_MS}. */
async function refusal(promise: Promise<unknown>): Promise<Error> {
  const started = Date.now();
  try {
    await promise;
  } catch (error) {
    assert.ok(Date.now() - started < REFUSAL_DEADLINE_MS, "refused in time, no hang");
    return error as Error;
  }
  throw new Error("expected a refusal");
}

/** A logger that keeps its warnings. */
function capturingLogger(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  return { warnings, debug() {}, info() {}, warn: (m) => warnings.push(m), error() {} };
}

Deno.test("a TLS master and client round-trip items; the key is still checked", async () => {
  await using master = asyncDisposable(
    await serve({
      listen: "127.0.0.1:0",
      authkey: TEST_KEY,
      tls: { cert: ours.server, key: ours.serverKey },
    }),
  );
  assert.deepEqual(await roundTrip(master.address, { tls: { ca: ours.ca } }), { hello: "tls" });
  // By name, as the certificate lists it.
  assert.deepEqual(
    await roundTrip(`localhost:${master.address.port}`, { tls: { ca: ours.ca } }),
    { hello: "tls" },
  );
  const wrongKey = await refusal(
    roundTrip(master.address, { tls: { ca: ours.ca }, authkey: "not the key" }),
  );
  assert.ok(wrongKey instanceof AuthenticationError, String(wrongKey));
  // A master whose certificate another CA issued is not trusted.
  const untrusted = await refusal(roundTrip(master.address, { tls: { ca: theirs.ca } }));
  assert.ok(untrusted instanceof TlsHandshakeError, String(untrusted));
  assert.match(untrusted.message, /not trusted.*--tls-ca/);
  // Nor one named otherwise than its certificate says.
  const wrongName = await refusal(
    roundTrip(master.address, { tls: { ca: ours.ca, serverName: "elsewhere.example" } }),
  );
  assert.ok(wrongName instanceof TlsHandshakeError, String(wrongName));
});

Deno.test("mutual TLS refuses clients without a certificate from the CA", async () => {
  await using master = await asyncDisposable(
    await serve({
      listen: "127.0.0.1:0",
      authkey: TEST_KEY,
      tls: { cert: ours.server, key: ours.serverKey, clientCa: ours.ca },
    }),
  );
  const none = await refusal(roundTrip(master.address, { tls: { ca: ours.ca } }));
  assert.ok(none instanceof TlsHandshakeError, String(none));
  assert.match(none.message, /requires a client certificate|--tls-cert/);

  const foreign = await refusal(
    roundTrip(master.address, {
      tls: { ca: ours.ca, cert: theirs.client, key: theirs.clientKey },
    }),
  );
  assert.ok(foreign instanceof TlsHandshakeError, String(foreign));
  assert.match(foreign.message, /certificate/);

  assert.deepEqual(await roundTrip(master.address, { tls: withCert }), { hello: "tls" });
  const wrongKey = await refusal(
    roundTrip(master.address, { tls: withCert, authkey: "not the key" }),
  );
  assert.ok(wrongKey instanceof AuthenticationError, String(wrongKey));
  assert.equal(master.broker.telemetry.connectionsAccepted >= 2, true);
});

Deno.test("a plain client to a TLS master, and a TLS client to a plain one, fail clearly", async () => {
  await using tlsMaster = await asyncDisposable(
    await serve({
      listen: "127.0.0.1:0",
      authkey: TEST_KEY,
      tls: { cert: ours.server, key: ours.serverKey },
    }),
  );
  const plainToTls = await refusal(roundTrip(tlsMaster.address, {}));
  assert.ok(
    plainToTls instanceof TlsHandshakeError || plainToTls instanceof ConnectionLostError,
    String(plainToTls),
  );
  assert.match(plainToTls.message, /TLS.*--tls-ca/);

  await using plainMaster = await asyncDisposable(
    await serve({ listen: "127.0.0.1:0", authkey: TEST_KEY }),
  );
  const tlsToPlain = await refusal(roundTrip(plainMaster.address, { tls: withCert }));
  assert.ok(tlsToPlain instanceof TlsHandshakeError, String(tlsToPlain));
  assert.match(tlsToPlain.message, /does it serve TLS/);
  // Both masters still serve their own kind of client.
  assert.deepEqual(await roundTrip(tlsMaster.address, { tls: { ca: ours.ca } }), {
    hello: "tls",
  });
  assert.deepEqual(await roundTrip(plainMaster.address, {}), { hello: "tls" });
});

Deno.test("bad TLS settings are refused before anything opens", async () => {
  await assert.rejects(
    serve({ listen: "127.0.0.1:0", tls: { cert: "not pem", key: ours.serverKey } }),
    (error: Error) => error instanceof ConfigError && /no PEM certificate/.test(error.message),
  );
  await assert.rejects(
    serve({ listen: "127.0.0.1:0", tls: { cert: ours.server, key: theirs.serverKey } }),
    (error: Error) => error instanceof ConfigError && /key/.test(error.message),
  );
  await assert.rejects(
    connect({ address: "127.0.0.1:1", tls: { ca: ours.ca, cert: ours.client } }),
    (error: Error) => error instanceof ConfigError && /--tls-key/.test(error.message),
  );
});

Deno.test("a master beyond loopback without TLS warns once; on loopback or with TLS never", async () => {
  const cases = [
    { listen: "0.0.0.0:0", tls: false, warns: 1 },
    { listen: "127.0.0.1:0", tls: false, warns: 0 },
    { listen: "0.0.0.0:0", tls: true, warns: 0 },
  ];
  for (const { listen, tls, warns } of cases) {
    const logger = capturingLogger();
    const master = await serve({
      listen,
      authkey: TEST_KEY,
      logger,
      tls: tls ? { cert: ours.server, key: ours.serverKey } : undefined,
    });
    await master.close();
    const clear = logger.warnings.filter((line) => /clear text/.test(line));
    assert.equal(clear.length, warns, `${listen} tls=${tls}: ${logger.warnings.join(" | ")}`);
  }
});

Deno.test("taskq tls init makes files a TLS master and clients use (real processes)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "taskq-tls-" });
  try {
    const permissions = [...TASKQ_PERMISSIONS, `--allow-write=${dir}`];
    const init = await runTaskq(
      ["tls", "init", dir, "--host", "localhost", "--host", "127.0.0.1"],
      { permissions },
    );
    assert.equal(init.code, 0, init.stderr);
    for (const file of ["ca-key.pem", "server-key.pem", "client-key.pem"]) {
      assert.equal((await Deno.stat(join(dir, file))).mode! & 0o777, 0o600, file);
    }
    const again = await runTaskq(["tls", "init", dir, "--host", "localhost"], { permissions });
    assert.equal(again.code, 2);
    assert.match(again.stderr, /already exists/);

    const file = (name: string) => join(dir, name);
    await using master = await startMaster({
      args: [
        "--tls-cert",
        file("server.pem"),
        "--tls-key",
        file("server-key.pem"),
        "--tls-client-ca",
        file("ca.pem"),
      ],
    });
    const tlsFlags = [
      "--tls-ca",
      file("ca.pem"),
      "--tls-cert",
      file("client.pem"),
      "--tls-key",
      file("client-key.pem"),
    ];
    const connectTo = ["--connect", master.address];
    const put = await runTaskq(["put", ...connectTo, ...tlsFlags, "--queue", "q", "over-tls"]);
    assert.equal(put.code, 0, put.stderr);
    const got = await runTaskq(["get", ...connectTo, ...tlsFlags, "--queue", "q"]);
    assert.equal(got.code, 0, got.stderr);
    assert.equal(JSON.parse(got.stdout).value, "over-tls");

    const noCert = await runTaskq([
      "get",
      ...connectTo,
      "--tls-ca",
      file("ca.pem"),
      "--queue",
      "q",
    ]);
    assert.notEqual(noCert.code, 0);
    assert.match(noCert.stderr, /client certificate/);
    const plain = await runTaskq(["status", ...connectTo]);
    assert.notEqual(plain.code, 0);
    assert.match(plain.stderr, /TLS/);
    assert.doesNotMatch(master.proc.stderr, /clear text/);

    const missing = await runTaskq(
      [
        "master",
        "--memory",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        file("nope.pem"),
        "--tls-key",
        file("server-key.pem"),
      ],
    );
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /cannot read --tls-cert .*nope\.pem/);
    const swapped = await runTaskq(
      [
        "master",
        "--memory",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        file("server-key.pem"),
        "--tls-key",
        file("server.pem"),
      ],
    );
    assert.equal(swapped.code, 2);
    assert.match(swapped.stderr, /--tls-cert .* holds no PEM certificate/);
    const clientMissing = await runTaskq(["status", "--tls-ca", file("nope.pem")]);
    assert.equal(clientMissing.code, 2);
    assert.match(clientMissing.stderr, /cannot read --tls-ca/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a master on 0.0.0.0 without TLS says so at start (real process)", async () => {
  await using master = await startMaster({ listen: "0.0.0.0:0" });
  await waitFor("the clear-text warning", () => /clear text/.test(master.proc.stderr));
  await using loopback = await startMaster();
  assert.doesNotMatch(loopback.proc.stderr, /clear text/);
  // Once: nothing more from the first master while the second started.
  assert.equal(master.proc.stderr.match(/clear text/g)?.length, 1, master.proc.stderr);
});

/** Makes a master closable with `await using`. */
function asyncDisposable<T extends { close(): Promise<void> }>(value: T): T & AsyncDisposable {
  return Object.assign(value, { [Symbol.asyncDispose]: () => value.close() });
}

Deno.test("tls: the HTTP side is served over TLS too (https://, same-origin checks by that scheme)", async () => {
  const master = await serve({
    listen: "127.0.0.1:0",
    authkey: TEST_KEY,
    tls: { cert: ours.server, key: ours.serverKey, clientCa: ours.ca },
    frontEnds: [
      httpFrontEnd({
        listen: "127.0.0.1:0",
        tls: { cert: ours.server, key: ours.serverKey, clientCa: ours.ca },
      }),
    ],
  });
  const client = Deno.createHttpClient({ caCerts: [ours.ca] });
  try {
    const url = master.frontEnds[0].address;
    assert.match(url, /^https:\/\/127\.0\.0\.1:\d+\/$/);
    // A browser holds no client certificate: the HTTP side asks for none.
    const page = await fetch(url, { client });
    assert.equal(page.status, 200);
    await page.body?.cancel();
    const token = httpToken(new TextEncoder().encode(TEST_KEY));
    const headers = { authorization: `Bearer ${token}`, origin: url.slice(0, -1) };
    const state = await fetch(`${url}api/state`, { client, headers });
    assert.equal(state.status, 200, "an https origin is this page's own");
    await state.body?.cancel();
    const plainOrigin = { ...headers, origin: url.slice(0, -1).replace("https:", "http:") };
    const refused = await fetch(`${url}api/state`, { client, headers: plainOrigin });
    assert.equal(refused.status, 403, "an http origin is another site");
    await refused.body?.cancel();
    // Plain HTTP to the TLS port gets no page.
    const plain = await fetch(url.replace("https:", "http:")).then(
      (r) => r.body?.cancel().then(() => r.status),
      () => "refused",
    );
    assert.notEqual(plain, 200);
  } finally {
    client.close();
    await master.close();
  }
});
