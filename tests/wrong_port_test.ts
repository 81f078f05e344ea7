/**
 * Wrong ports, with real processes (lib/wire/wrong_port.ts): a taskq client
 * pointed at a master's `--http` port is told it is not a taskq master and
 * where the native port is; an HTTP client on the native port gets a short
 * plain HTTP 400 and the connection closes, and the master logs no warning;
 * a client pointed at some other HTTP server is told it answered like one.
 *
 * @module
 */

import assert from "node:assert/strict";
import { runTaskq, startMaster, waitFor } from "./_helpers.ts";
import { isHttpRequestStart, isHttpResponseStart } from "../lib/wire/wrong_port.ts";

/** The line `taskq master --http` prints once the HTTP side listens. */
const HTTP_LISTENING = /taskq http listening on http:\/\/([^/\s]+)\//;

/** HTTP requests sent to the native port, each on its own connection. */
const HTTP_PROBES = 20;

/** Reads what the peer sends until it closes the connection. */
async function readAll(conn: Deno.Conn): Promise<string> {
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(4096);
  for (;;) {
    const n = await conn.read(buffer).catch(() => null);
    if (n === null) break;
    chunks.push(buffer.slice(0, n));
  }
  conn.close();
  return new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
}

Deno.test("a frame prefix is told apart from the starts of HTTP requests and responses", () => {
  const prefix = (text: string) => new DataView(new TextEncoder().encode(text).buffer).getUint32(0);
  for (const start of ["GET /", "POST /", "HEAD /", "PUT /", "OPTIONS *", "PRI * HTTP/2.0"]) {
    assert.ok(isHttpRequestStart(prefix(start)), start);
  }
  assert.ok(isHttpResponseStart(1213486160));
  for (const length of [0, 42, 1024, 16 * 1024 * 1024]) {
    assert.ok(!isHttpRequestStart(length) && !isHttpResponseStart(length), String(length));
  }
});

Deno.test("a taskq client on the HTTP port, and HTTP clients on the native port", async () => {
  await using master = await startMaster({ args: ["--http", "0", "--log-level", "debug"] });
  const httpAddress = (await master.proc.waitForLine(HTTP_LISTENING))[1];

  // A taskq client pointed at the HTTP port: one clear line, at once, no retry.
  const started = Date.now();
  const put = await runTaskq(["put", "--connect", httpAddress, "--queue", "q", "x"]);
  assert.equal(put.code, 1, put.stderr);
  assert.equal(
    put.stderr.trim(),
    `taskq put: ${httpAddress} is not a taskq master (it answered like an HTTP server: it is ` +
      `a master's --http port; the native port is ${master.address})`,
  );
  assert.ok(Date.now() - started < 4_000, "answered before the handshake deadline");

  // Browsers and HTTP clients on the native port: a plain 400 each, then the connection closes.
  const [hostname, port] = master.address.split(":");
  for (let i = 0; i < HTTP_PROBES; i++) {
    const conn = await Deno.connect({ hostname, port: Number(port) });
    await conn.write(new TextEncoder().encode(`GET /?i=${i} HTTP/1.1\r\nHost: x\r\n\r\n`));
    const reply = await readAll(conn);
    assert.match(reply, /^HTTP\/1\.1 400 Bad Request\r\n/);
    assert.match(reply, /Connection: close\r\n/);
    assert.match(reply, /native port/);
    const body = reply.slice(reply.indexOf("\r\n\r\n") + 4);
    assert.equal(
      new TextEncoder().encode(body).length,
      Number(/Content-Length: (\d+)/.exec(reply)![1]),
    );
  }
  // fetch() too, as a browser would see it.
  const answer = await fetch(`http://${master.address}/`);
  assert.equal(answer.status, 400);
  assert.match(await answer.text(), /taskq master's native port/);

  // The master still serves, and logged the probes at debug only: no warning storm.
  const ok = await runTaskq(["put", "--connect", master.address, "--queue", "q", "x"]);
  assert.equal(ok.code, 0, ok.stderr);
  await waitFor(
    "the debug line",
    () => master.proc.stderr.includes("an HTTP client reached the native port"),
  );
  const warnings = master.proc.lines.filter((line) => / WARN /.test(line));
  assert.deepEqual(warnings, []);
  await master.stop();
});

Deno.test("a taskq client facing some other HTTP server says it answered like one", async () => {
  // An HTTP server of any kind answers garbage with a response: here one that answers at once.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    for await (const conn of listener) {
      await conn.write(
        new TextEncoder().encode("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"),
      ).catch(() => 0);
      conn.close();
    }
  })();
  try {
    const where = `127.0.0.1:${listener.addr.port}`;
    const put = await runTaskq(["put", "--connect", where, "--queue", "q", "x"]);
    assert.equal(put.code, 1, put.stderr);
    assert.match(
      put.stderr,
      new RegExp(`^taskq put: ${where} is not a taskq master \\(it answered like an HTTP server; `),
    );
    assert.doesNotMatch(put.stderr, /frame of \d+ bytes/);
  } finally {
    listener.close();
    await serving.catch(() => {});
  }
});
