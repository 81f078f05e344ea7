/**
 * Tests of the HTTP/1.1 server of the HTTP side (lib/http/http1.ts), in this
 * process: the head parser on its own (malformed, oversized, refused
 * framing), and the server over in-memory streams whose bytes the test hands
 * over in whatever pieces it likes (split across reads, pipelined,
 * kept alive, timed out, capped), and once over real loopback TCP.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type ByteStream,
  findHeadEnd,
  Http1Server,
  type HttpLimits,
  HttpRequestError,
  listenHttp,
  parseRequestHead,
  type StreamListener,
} from "../lib/http/http1.ts";
import { waitFor } from "./_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** `text` with every `\n` made CRLF, as bytes. */
function crlf(text: string): Uint8Array {
  return encoder.encode(text.replace(/\r?\n/g, "\r\n"));
}

function parse(text: string) {
  return parseRequestHead(crlf(text));
}

function refusal(text: string): { status: number; reason: string } {
  try {
    parse(text);
  } catch (error) {
    assert.ok(error instanceof HttpRequestError, String(error));
    return { status: error.status, reason: error.reason };
  }
  assert.fail(`accepted: ${JSON.stringify(text)}`);
}

Deno.test("parser: a good head, HTTP/1.0 without Host, keep-alive and Expect", () => {
  const head = parse(
    "POST /api/dead/drop?x=1 HTTP/1.1\nHost: 127.0.0.1:8080\nContent-Length: 12\n" +
      "Content-Type: application/json\nX-Obs: café\n\n",
  );
  assert.equal(head.method, "POST");
  assert.equal(head.target, "/api/dead/drop?x=1");
  assert.equal(head.minorVersion, 1);
  assert.equal(head.host, "127.0.0.1:8080");
  assert.equal(head.contentLength, 12);
  assert.equal(head.keepAlive, true);
  assert.equal(head.expectContinue, false);
  assert.equal(head.headers.get("content-type"), "application/json");
  // UTF-8 "é" is two bytes of obs-text; each passes as one latin-1 character (a ByteString).
  assert.equal(head.headers.get("x-obs"), "caf\xc3\xa9");

  const old = parse("GET / HTTP/1.0\n\n");
  assert.equal(old.host, undefined);
  assert.equal(old.keepAlive, false, "HTTP/1.0 closes by default");
  assert.equal(parse("GET / HTTP/1.0\nConnection: keep-alive\n\n").keepAlive, true);
  assert.equal(
    parse("GET / HTTP/1.1\nHost: a\nConnection: Keep-Alive, Close\n\n").keepAlive,
    false,
  );
  assert.equal(parse("\n\nGET / HTTP/1.1\nHost: a\n\n").method, "GET", "leading empty lines");
  assert.equal(
    parse("PUT /x HTTP/1.1\nHost: [::1]:80\nContent-Length: 3\nExpect: 100-Continue\n\n")
      .expectContinue,
    true,
  );
});

Deno.test("parser: malformed heads are refused with 400", () => {
  const cases = [
    "GET  / HTTP/1.1\nHost: a\n\n", // two spaces
    "GET / HTTP/1.1 \nHost: a\n\n", // trailing space
    "GET / http/1.1\nHost: a\n\n",
    "GET\t/ HTTP/1.1\nHost: a\n\n",
    "G(T / HTTP/1.1\nHost: a\n\n",
    "GET http://evil.example/ HTTP/1.1\nHost: a\n\n", // absolute form
    "OPTIONS * HTTP/1.1\nHost: a\n\n",
    "GET /a b HTTP/1.1\nHost: a\n\n",
    "GET / HTTP/1.1\n\n", // no Host
    "GET / HTTP/1.1\nHost: a\nHost: b\n\n",
    "GET / HTTP/1.1\nHost: a/b\n\n",
    "GET / HTTP/1.1\nHost: a@b\n\n",
    "GET / HTTP/1.1\nHost: a\nX-Long: one\n two\n\n", // folded
    "GET / HTTP/1.1\nHost : a\n\n", // space before the colon
    "GET / HTTP/1.1\nHost: a\n: empty name\n\n",
    "GET / HTTP/1.1\nHost: a\nno colon\n\n",
    "GET / HTTP/1.1\nHost: a\nX: a\x00b\n\n",
    "GET / HTTP/1.1\nHost: a\nX: a\x7fb\n\n",
    "POST / HTTP/1.1\nHost: a\nContent-Length: 1\nContent-Length: 1\n\n",
    "POST / HTTP/1.1\nHost: a\nContent-Length: +1\n\n",
    "POST / HTTP/1.1\nHost: a\nContent-Length: 1, 1\n\n",
    "POST / HTTP/1.1\nHost: a\nContent-Length: 9999999999999999\n\n",
  ];
  for (const text of cases) {
    assert.deepEqual(refusal(text), { status: 400, reason: "bad_request" }, JSON.stringify(text));
  }
  const bareLf = encoder.encode("GET / HTTP/1.1\nHost: a\r\n\r\n");
  assert.throws(() => parseRequestHead(bareLf), /bare LF/);
  const bareCr = encoder.encode("GET / HTTP/1.1\rHost: a\r\n\r\n");
  assert.throws(() => parseRequestHead(bareCr), /bare CR/);
});

Deno.test("parser: refused framing, versions, methods and expectations", () => {
  assert.equal(refusal("GET / HTTP/2.0\nHost: a\n\n").status, 505);
  assert.equal(refusal("GET / HTTP/1.2\nHost: a\n\n").status, 505);
  const chunked = refusal("POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n");
  assert.deepEqual(chunked, { status: 501, reason: "not_implemented" });
  assert.equal(
    refusal("POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\nContent-Length: 3\n\n").status,
    501,
  );
  assert.deepEqual(refusal("POST / HTTP/1.1\nHost: a\n\n"), {
    status: 411,
    reason: "length_required",
  });
  assert.equal(refusal("BREW / HTTP/1.1\nHost: a\n\n").status, 501);
  assert.equal(refusal("get / HTTP/1.1\nHost: a\n\n").status, 501, "methods are case-sensitive");
  assert.equal(refusal("CONNECT /x HTTP/1.1\nHost: a\n\n").status, 501);
  assert.equal(refusal("GET / HTTP/1.1\nHost: a\nExpect: magic\n\n").status, 417);
  const many = "GET / HTTP/1.1\nHost: a\n" + "X: y\n".repeat(100) + "\n";
  assert.deepEqual(refusal(many), { status: 431, reason: "header_too_large" });
});

Deno.test("findHeadEnd finds the empty line only when it is whole", () => {
  const bytes = crlf("GET / HTTP/1.1\nHost: a\n\nrest");
  const end = bytes.length - 4;
  assert.equal(findHeadEnd(bytes, 0, bytes.length), end);
  assert.equal(findHeadEnd(bytes, 0, end - 1), -1);
  assert.equal(findHeadEnd(bytes, end - 4, end), end);
});

// ------------------------------------------------------------ in-memory streams

/** One end of an in-memory connection: the test pushes what the server reads and sees what it writes. */
class MemoryStream implements ByteStream {
  readonly remoteAddr: Deno.NetAddr = { transport: "tcp", hostname: "192.0.2.1", port: 4242 };
  #chunks: Uint8Array[] = [];
  #ended = false;
  #closed = false;
  #waiter: (() => void) | undefined;
  #written: Uint8Array[] = [];
  readonly #closedSignal = Promise.withResolvers<void>();

  /** Hands `data` to the server's next read, as one piece. */
  push(data: string | Uint8Array): void {
    this.#chunks.push(typeof data === "string" ? crlf(data) : data);
    this.#wake();
  }

  /** Ends the stream from the peer's side (the server reads `null`). */
  end(): void {
    this.#ended = true;
    this.#wake();
  }

  #wake(): void {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.();
  }

  /** Everything the server wrote, as text. */
  get output(): string {
    return this.#written.map((c) => decoder.decode(c)).join("");
  }

  /** Whether the server closed it. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Resolves when the server closes it. */
  get whenClosed(): Promise<void> {
    return this.#closedSignal.promise;
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    for (;;) {
      if (this.#closed) throw new Deno.errors.BadResource("closed");
      const chunk = this.#chunks[0];
      if (chunk !== undefined) {
        const n = Math.min(chunk.length, buffer.length);
        buffer.set(chunk.subarray(0, n));
        if (n === chunk.length) this.#chunks.shift();
        else this.#chunks[0] = chunk.subarray(n);
        return n;
      }
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#waiter = resolve);
    }
  }

  write(data: Uint8Array): Promise<number> {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("closed"));
    this.#written.push(data.slice());
    return Promise.resolve(data.length);
  }

  close(): void {
    this.#closed = true;
    this.#closedSignal.resolve();
    this.#wake();
  }
}

/** A listener that hands out the streams the test gives it. */
class MemoryListener implements StreamListener {
  readonly addr: Deno.NetAddr = { transport: "tcp", hostname: "127.0.0.1", port: 8080 };
  #queue: MemoryStream[] = [];
  #waiter: ((stream: MemoryStream | null) => void) | undefined;
  #closed = false;

  /** A new connection, accepted at once. */
  connect(): MemoryStream {
    const stream = new MemoryStream();
    if (this.#waiter) {
      const waiter = this.#waiter;
      this.#waiter = undefined;
      waiter(stream);
    } else this.#queue.push(stream);
    return stream;
  }

  async accept(): Promise<ByteStream> {
    const queued = this.#queue.shift();
    if (queued) return queued;
    if (this.#closed) throw new Deno.errors.BadResource("closed");
    const stream = await new Promise<MemoryStream | null>((resolve) => this.#waiter = resolve);
    if (stream === null) throw new Deno.errors.BadResource("closed");
    return stream;
  }

  close(): void {
    this.#closed = true;
    this.#waiter?.(null);
  }
}

/** A parsed response. */
interface Parsed {
  status: number;
  headers: Map<string, string>;
  body: string;
}

/**
 * Splits what a server wrote into responses (bodies by Content-Length; none
 * without one, nor for the answers to HEAD requests, numbered in `heads`).
 */
function responses(text: string, heads: ReadonlySet<number> = new Set()): Parsed[] {
  const out: Parsed[] = [];
  let rest = text;
  while (rest.length > 0) {
    const end = rest.indexOf("\r\n\r\n");
    assert.ok(end >= 0, `an unfinished head: ${JSON.stringify(rest)}`);
    const [statusLine, ...lines] = rest.slice(0, end).split("\r\n");
    const match = /^HTTP\/1\.1 (\d{3}) /.exec(statusLine);
    assert.ok(match, statusLine);
    const headers = new Map(
      lines.map((l) => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 2)]),
    );
    const length = heads.has(out.length) ? 0 : Number(headers.get("content-length") ?? "0");
    out.push({
      status: Number(match[1]),
      headers,
      body: rest.slice(end + 4, end + 4 + length),
    });
    rest = rest.slice(end + 4 + length);
  }
  return out;
}

/** What the echo handler saw of a request. */
interface Seen {
  method: string;
  url: string;
  host: string | null;
  body: string;
}

/** A server over a {@link MemoryListener} whose handler echoes what it got as JSON. */
function memoryServer(limits: Partial<HttpLimits> = {}) {
  const listener = new MemoryListener();
  const seen: Seen[] = [];
  const refused: string[] = [];
  const server = new Http1Server({
    listener,
    limits,
    onRefused: (reason) => refused.push(reason),
    handler: async (request) => {
      if (new URL(request.url).pathname === "/boom") throw new Error("handler failed");
      const body = await request.text();
      seen.push({
        method: request.method,
        url: request.url,
        host: request.headers.get("host"),
        body,
      });
      return new Response(JSON.stringify(seen.at(-1)), {
        headers: { "content-type": "application/json", "x-n": String(seen.length) },
      });
    },
  });
  return {
    listener,
    server,
    seen,
    refused,
    async [Symbol.asyncDispose]() {
      await server.close();
    },
  };
}

Deno.test("server: a request split across many reads, body included", async () => {
  await using s = memoryServer();
  const conn = s.listener.connect();
  const request = crlf(
    'POST /api/x HTTP/1.1\nHost: localhost:8080\nContent-Length: 15\n\n{"queue":"abc"}',
  );
  for (const byte of request) {
    conn.push(new Uint8Array([byte]));
    await Promise.resolve();
  }
  await waitFor("the answer", () => conn.output.includes("abc"));
  const [reply] = responses(conn.output);
  assert.equal(reply.status, 200);
  assert.deepEqual(JSON.parse(reply.body), {
    method: "POST",
    url: "http://localhost:8080/api/x",
    host: "localhost:8080",
    body: '{"queue":"abc"}',
  });
  assert.equal(reply.headers.get("content-length"), String(reply.body.length));
  assert.ok(reply.headers.has("date"));
  assert.equal(conn.closed, false, "kept alive");
});

Deno.test("server: pipelined requests are answered one by one, in order", async () => {
  await using s = memoryServer();
  const conn = s.listener.connect();
  conn.push(
    "GET /one HTTP/1.1\nHost: a\n\n" +
      "POST /two HTTP/1.1\nHost: a\nContent-Length: 3\n\nxyz" +
      "HEAD /three HTTP/1.1\nHost: a\n\n" +
      "GET /four HTTP/1.1\nHost: a\nConnection: close\n\n" +
      "GET /never HTTP/1.1\nHost: a\n\n",
  );
  await conn.whenClosed;
  const text = conn.output;
  const replies = responses(text, new Set([2]));
  assert.deepEqual(replies.map((r) => [r.status, r.headers.get("x-n")]), [
    [200, "1"],
    [200, "2"],
    [200, "3"],
    [200, "4"],
  ]);
  assert.equal(replies[2].body, "");
  assert.ok(
    Number(replies[2].headers.get("content-length")) > 0,
    "HEAD: the length GET would have",
  );
  assert.deepEqual(s.seen.map((x) => `${x.method} ${new URL(x.url).pathname} ${x.body}`), [
    "GET /one ",
    "POST /two xyz",
    "HEAD /three ",
    "GET /four ",
  ]);
  assert.match(text, /\r\nconnection: close\r\n/);
  assert.ok(!text.includes("/never"), "nothing after Connection: close is read");
});

Deno.test("server: keep-alive across requests; HEAD has no body; HTTP/1.0 closes", async () => {
  await using s = memoryServer();
  const conn = s.listener.connect();
  conn.push("GET /a HTTP/1.1\nHost: a\n\n");
  await waitFor("the first answer", () => responses(conn.output).length === 1);
  conn.push("HEAD /b HTTP/1.1\nHost: a\n\n");
  await waitFor("the second answer", () => /x-n: 2/.test(conn.output));
  const head = conn.output.slice(conn.output.lastIndexOf("HTTP/1.1"));
  assert.match(head, /content-length: \d+\r\n/);
  assert.ok(head.endsWith("\r\n\r\n"), "no body after a HEAD's head");
  assert.equal(conn.closed, false);
  const old = s.listener.connect();
  old.push("GET /c HTTP/1.0\n\n");
  await old.whenClosed;
  const [reply] = responses(old.output);
  assert.equal(
    JSON.parse(reply.body).url,
    "http://127.0.0.1:8080/c",
    "the listener names the host",
  );
  assert.equal(reply.headers.get("connection"), "close");
});

Deno.test("server: malformed or oversized requests get their status and the connection closes", async () => {
  await using s = memoryServer({ maxHeaderBytes: 1024, maxBodyBytes: 100 });
  const cases: Array<[string | Uint8Array, number]> = [
    ["GET / HTTP/1.1\nHost: a\nBad Name: x\n\n", 400],
    ["GET / HTTP/1.1\nHost: a\nX: " + "y".repeat(2000), 431], // no end in sight
    ["GET / HTTP/1.1\nHost: a\nX: " + "y".repeat(2000) + "\n\n", 431],
    ["POST / HTTP/1.1\nHost: a\nContent-Length: 101\n\n" + "z".repeat(101), 413],
    ["POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n", 501],
    ["POST / HTTP/1.1\nHost: a\n\n", 411],
    ["GET / HTTP/3.0\nHost: a\n\n", 505],
    [encoder.encode("GET / HTTP/1.1\nHost: a\r\n\r\n"), 400],
  ];
  for (const [input, status] of cases) {
    const conn = s.listener.connect();
    conn.push(input);
    await conn.whenClosed;
    const [reply] = responses(conn.output);
    assert.equal(reply.status, status, JSON.stringify(input).slice(0, 80));
    assert.equal(reply.headers.get("connection"), "close");
    assert.equal(typeof JSON.parse(reply.body).error, "string");
  }
  assert.equal(s.seen.length, 0, "no handler saw any of them");
  assert.deepEqual(s.refused, [
    "bad_request",
    "header_too_large",
    "header_too_large",
    "body_too_large",
    "not_implemented",
    "length_required",
    "bad_version",
    "bad_request",
  ]);
});

Deno.test("server: Expect: 100-continue gets the interim answer; a failing handler gets 500", async () => {
  await using s = memoryServer();
  const conn = s.listener.connect();
  conn.push("PUT /x HTTP/1.1\nHost: a\nContent-Length: 2\nExpect: 100-continue\n\n");
  await waitFor(
    "the interim answer",
    () => conn.output.startsWith("HTTP/1.1 100 Continue\r\n\r\n"),
  );
  conn.push("ok");
  await waitFor("the answer", () => /HTTP\/1\.1 200/.test(conn.output));
  const broken = s.listener.connect();
  broken.push("GET /boom HTTP/1.1\nHost: a\n\n");
  await waitFor("the 500", () => broken.output.includes("500 Internal Server Error"));
});

Deno.test("server: head and body deadlines close slow peers; idle kept-alive ones close quietly", async () => {
  await using s = memoryServer({ headerTimeoutMs: 100, bodyTimeoutMs: 100, idleTimeoutMs: 150 });
  const silent = s.listener.connect();
  const half = s.listener.connect();
  half.push("GET / HTTP/1.1\nHost: a\nX-Slow: ");
  const body = s.listener.connect();
  body.push("POST / HTTP/1.1\nHost: a\nContent-Length: 10\n\nabc");
  const idle = s.listener.connect();
  idle.push("GET / HTTP/1.1\nHost: a\n\n");
  const started = Date.now();
  await Promise.all([silent.whenClosed, half.whenClosed, body.whenClosed]);
  assert.ok(Date.now() - started < 1_000);
  assert.equal(silent.output, "", "a peer that sent nothing gets nothing");
  assert.equal(responses(half.output)[0].status, 408);
  assert.equal(responses(body.output)[0].status, 408);
  await idle.whenClosed;
  assert.equal(responses(idle.output).length, 1, "one answer, then a quiet close");
  assert.deepEqual(s.refused.sort(), ["body_timeout", "header_timeout", "header_timeout"]);
});

Deno.test("server: at the cap, the connection idle longest makes room; busy ones are kept", async () => {
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => release = resolve);
  const listener = new MemoryListener();
  const refused: string[] = [];
  let calls = 0;
  const server = new Http1Server({
    listener,
    limits: { maxConnections: 3 },
    onRefused: (reason) => refused.push(reason),
    handler: async () => {
      calls++;
      await gate;
      return new Response("done");
    },
  });
  try {
    const busy = listener.connect();
    busy.push("GET / HTTP/1.1\nHost: a\n\n");
    const idle1 = listener.connect();
    const idle2 = listener.connect();
    await waitFor("three connections", () => server.connectionCount === 3);
    const newcomer = listener.connect();
    await idle1.whenClosed;
    assert.equal(idle2.closed, false);
    assert.equal(busy.closed, false, "the busy connection, though oldest, stays");
    assert.equal(server.connectionCount, 3);
    newcomer.push("GET / HTTP/1.1\nHost: a\n\n"); // now busy too
    await waitFor("the newcomer busy", () => calls === 2);
    const another = listener.connect();
    await idle2.whenClosed;
    release();
    await waitFor(
      "the answers",
      () => busy.output.includes("done") && newcomer.output.includes("done"),
    );
    assert.equal(another.closed, false);
    assert.deepEqual(refused, ["too_many_connections", "too_many_connections"]);
  } finally {
    release();
    await server.close();
  }
});

Deno.test("server: close ends idle connections at once and lets answers finish", async () => {
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => release = resolve);
  const listener = new MemoryListener();
  const server = new Http1Server({
    listener,
    handler: async () => {
      await gate;
      return new Response("late");
    },
  });
  const idle = listener.connect();
  const busy = listener.connect();
  busy.push("GET / HTTP/1.1\nHost: a\n\n");
  await waitFor("two connections", () => server.connectionCount === 2);
  const closing = server.close();
  await idle.whenClosed;
  release();
  await closing;
  const [reply] = responses(busy.output);
  assert.equal(reply.body, "late");
  assert.equal(reply.headers.get("connection"), "close");
});

Deno.test("server over TCP: fetch, keep-alive and limits are checked", async () => {
  const server = new Http1Server({
    listener: listenHttp({ hostname: "127.0.0.1", port: 0 }),
    handler: async (request) => new Response(`${request.method} ${(await request.text()).length}`),
  });
  try {
    const base = `http://127.0.0.1:${server.addr.port}`;
    const big = "x".repeat(40_000);
    for (let i = 0; i < 3; i++) {
      const reply = await fetch(`${base}/x`, { method: "POST", body: big });
      assert.equal(await reply.text(), "POST 40000");
    }
    const listener = new MemoryListener();
    const handler = () => Promise.resolve(new Response());
    assert.throws(
      () => new Http1Server({ listener, handler, limits: { maxConnections: 0 } }),
      RangeError,
    );
    assert.throws(
      () => new Http1Server({ listener, handler, limits: { nonsense: 1 } as never }),
      TypeError,
    );
  } finally {
    await server.close();
  }
});
