/**
 * Tests of the master's HTTP side (lib/http/server.ts, guard.ts, token.ts,
 * state.ts), in this process over real loopback sockets: a master from
 * `serve()` with `serveHttp()` beside it on ephemeral ports.
 *
 * Protection: every request but the page's files needs the token (derived
 * from the key); cross-origin and cross-site requests, form posts (even with
 * the token) and requests naming another Host (DNS rebinding) are refused;
 * preflights are never granted. Actions: pause and resume a queue (a paused
 * queue serves no gets, waiting gets are served on resume), re-queue and drop
 * dead letters, bad bodies refused. State: queues with dead letters folded,
 * connected clients with name, address and items in hand, dead letters with
 * their errors, rates. The command line: `--http` beyond loopback needs a
 * key, and a port in use is a clear error.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { type Client, connect, type Master, serve } from "../lib/mod.ts";
import { checkHttpAddress, type HttpServer, serveHttp } from "../lib/http/server.ts";
import { httpToken } from "../lib/http/token.ts";
import type { DashboardState } from "../lib/http/state.ts";
import { ConfigError } from "../lib/errors.ts";
import { MASTER_PERMISSIONS, runTaskq, TEST_KEY, waitFor } from "./_helpers.ts";

const KEY = new TextEncoder().encode(TEST_KEY);

/** Rate sampling interval of the test servers: fast, so rates show quickly. */
const SAMPLE_MS = 50;

interface Rig extends AsyncDisposable {
  master: Master;
  http: HttpServer;
  token: string;
  base: string;
  client: Client;
}

async function rig(): Promise<Rig> {
  const master = await serve({
    listen: "127.0.0.1:0",
    authkey: KEY,
    retry: { maxAttempts: 1, backoffBaseMs: 0 },
  });
  const http = await serveHttp({
    source: master,
    listen: "127.0.0.1:0",
    authkey: KEY,
    sampleMs: SAMPLE_MS,
  });
  const client = await connect({ address: master.address, authkey: KEY, name: "test-client" });
  return {
    master,
    http,
    client,
    token: httpToken(KEY),
    base: http.url.replace(/\/$/, ""),
    async [Symbol.asyncDispose]() {
      await client.close();
      await http.close();
      await master.close();
    },
  };
}

interface Reply {
  status: number;
  headers: Headers;
  body: string;
}

async function request(url: string, init: RequestInit = {}): Promise<Reply> {
  const response = await fetch(url, init);
  return { status: response.status, headers: response.headers, body: await response.text() };
}

function auth(token: string, extra: Record<string, string> = {}): Record<string, string> {
  return { authorization: `Bearer ${token}`, ...extra };
}

async function state(r: Rig): Promise<DashboardState> {
  const reply = await request(`${r.base}/api/state`, { headers: auth(r.token) });
  assert.equal(reply.status, 200, reply.body);
  return JSON.parse(reply.body);
}

function post(r: Rig, path: string, body: unknown, headers = auth(r.token)): Promise<Reply> {
  return request(`${r.base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
}

/** Sends a hand-written HTTP/1.1 request over TCP (to set headers fetch will not). */
async function rawRequest(url: string, head: string): Promise<string> {
  const { hostname, port } = new URL(url);
  const conn = await Deno.connect({ hostname, port: Number(port) });
  try {
    await conn.write(new TextEncoder().encode(head.replace(/\n/g, "\r\n") + "\r\n\r\n"));
    let text = "";
    const buffer = new Uint8Array(65536);
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) break;
      text += new TextDecoder().decode(buffer.subarray(0, n));
      if (/\r\n\r\n/.test(text) && /content-length: (\d+)/i.test(text)) {
        const length = Number(/content-length: (\d+)/i.exec(text)![1]);
        if (text.length - text.indexOf("\r\n\r\n") - 4 >= length) break;
      }
    }
    return text;
  } finally {
    conn.close();
  }
}

/** Puts `value` on `queue` and fails it once: with max attempts 1 it becomes a dead letter. */
async function makeDead(r: Rig, queue: string, value: unknown, error: string): Promise<void> {
  const q = r.client.queue(queue);
  await q.put(value);
  const job = await q.get(2000);
  assert.ok(job);
  await q.fail(job, error);
}

Deno.test("the token is HMAC-SHA256(key, 'taskq http token') in hex", () => {
  const expected = createHmac("sha256", KEY).update("taskq http token").digest("hex");
  assert.equal(httpToken(KEY), expected);
  assert.match(httpToken(new Uint8Array(0)), /^[0-9a-f]{64}$/);
  assert.notEqual(httpToken(new Uint8Array(0)), expected);
});

Deno.test("reads need the token; the page itself does not and holds no data", async () => {
  await using r = await rig();
  await r.client.queue("secret-queue").put("x");
  for (const path of ["/api/state", "/metrics"]) {
    const none = await request(`${r.base}${path}`);
    assert.equal(none.status, 401, path);
    assert.match(none.headers.get("www-authenticate") ?? "", /^Bearer/);
    assert.doesNotMatch(none.body, /secret-queue/);
    const wrong = await request(`${r.base}${path}`, { headers: auth("0".repeat(64)) });
    assert.equal(wrong.status, 401, path);
    const key = await request(`${r.base}${path}`, { headers: auth(TEST_KEY) });
    assert.equal(key.status, 401, `${path}: the raw key is not a token`);
    const good = await request(`${r.base}${path}`, { headers: auth(r.token) });
    assert.equal(good.status, 200, path);
    assert.match(good.body, /secret-queue/);
  }
  const page = await request(`${r.base}/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
  assert.match(page.headers.get("content-security-policy") ?? "", /script-src 'self'/);
  assert.equal(page.headers.get("x-frame-options"), "DENY");
  assert.doesNotMatch(page.body, /secret-queue/);
  assert.equal((await request(`${r.base}/app.js`)).status, 200);
  assert.equal((await request(`${r.base}/nothing-here`)).status, 404);
  // Actions too.
  const action = await request(`${r.base}/api/queues/pause`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ queue: "secret-queue" }),
  });
  assert.equal(action.status, 401);
  assert.equal(
    (await r.master.broker.stats("secret-queue")).paused.includes("secret-queue"),
    false,
  );
});

Deno.test("cross-origin and cross-site requests and form posts are refused", async () => {
  await using r = await rig();
  await makeDead(r, "jobs", 1, "boom");
  const [letter] = await r.master.broker.peek("jobs.dead", 1);
  const body = JSON.stringify({ queue: "jobs.dead", ids: [letter.id] });
  const form = `queue=jobs.dead&ids=${letter.id}`;
  const attempts: Array<[string, Record<string, string>, string]> = [
    // A classic cross-site form post: no token can be attached to it.
    ["form post from another site", {
      "content-type": "application/x-www-form-urlencoded",
      origin: "http://evil.example",
      "sec-fetch-site": "cross-site",
    }, form],
    // Even carrying the token, another origin is refused...
    [
      "JSON from another origin with the token",
      auth(r.token, {
        "content-type": "application/json",
        origin: "http://evil.example",
      }),
      body,
    ],
    // ...including another port of the same host (same site, other origin).
    [
      "JSON from another port with the token",
      auth(r.token, {
        "content-type": "application/json",
        origin: "http://127.0.0.1:1",
        "sec-fetch-site": "same-site",
      }),
      body,
    ],
    [
      "a sandboxed page (Origin: null)",
      auth(r.token, {
        "content-type": "application/json",
        origin: "null",
      }),
      body,
    ],
    // A form post with the token but no Origin: still not JSON.
    [
      "form post with the token",
      auth(r.token, {
        "content-type": "application/x-www-form-urlencoded",
      }),
      form,
    ],
    ["text/plain post with the token", auth(r.token, { "content-type": "text/plain" }), body],
  ];
  for (const [what, headers, payload] of attempts) {
    const reply = await request(`${r.base}/api/dead/requeue`, {
      method: "POST",
      headers,
      body: payload,
    });
    assert.ok([403, 415].includes(reply.status), `${what}: got ${reply.status} ${reply.body}`);
  }
  const cross = await request(`${r.base}/api/state`, {
    headers: auth(r.token, { "sec-fetch-site": "cross-site" }),
  });
  assert.equal(cross.status, 403, "a cross-site read is refused too");
  assert.equal((await r.master.broker.peek("jobs.dead", 10)).length, 1, "nothing was re-queued");
  assert.equal((await r.master.broker.stats("jobs")).queues[0].ready, 0);
  // A preflight is never granted.
  const preflight = await request(`${r.base}/api/dead/requeue`, {
    method: "OPTIONS",
    headers: {
      origin: "http://evil.example",
      "access-control-request-method": "POST",
      "access-control-request-headers": "authorization,content-type",
    },
  });
  assert.notEqual(preflight.status, 200);
  assert.equal(preflight.headers.get("access-control-allow-origin"), null);
  // Same origin, as the dashboard sends it, works.
  const same = await post(r, "/api/dead/requeue", { queue: "jobs.dead", ids: [letter.id] }, {
    ...auth(r.token),
    origin: r.base,
    "sec-fetch-site": "same-origin",
  });
  assert.equal(same.status, 200, same.body);
  assert.equal(r.http.refused.get("origin"), 6, "four posts, one read, one preflight");
});

Deno.test("a Host header naming another host is refused (DNS rebinding)", async () => {
  await using r = await rig();
  const { port } = r.http.address;
  const rebound = await rawRequest(
    r.base,
    `GET /api/state HTTP/1.1\nHost: evil.example:${port}\nAuthorization: Bearer ${r.token}\n` +
      `Connection: close`,
  );
  assert.match(rebound, /^HTTP\/1\.1 403/);
  const noPort = await rawRequest(
    r.base,
    `GET / HTTP/1.1\nHost: attacker.example\nConnection: close`,
  );
  assert.match(noPort, /^HTTP\/1\.1 403/, "even the page is refused to a foreign Host");
  // Loopback names on any port (an SSH tunnel's local port) are fine.
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, "localhost:9000", "[::1]:1"]) {
    const ok = await rawRequest(
      r.base,
      `GET /api/state HTTP/1.1\nHost: ${host}\nAuthorization: Bearer ${r.token}\nConnection: close`,
    );
    assert.match(ok, /^HTTP\/1\.1 200/, host);
  }
});

Deno.test("beyond loopback the HTTP side needs a key", () => {
  assert.throws(() => checkHttpAddress("0.0.0.0:8080", undefined), ConfigError);
  assert.throws(() => checkHttpAddress("10.1.2.3:8080", new Uint8Array(0)), ConfigError);
  assert.deepEqual(checkHttpAddress("0.0.0.0:8080", KEY), { hostname: "0.0.0.0", port: 8080 });
  assert.deepEqual(checkHttpAddress("8080", undefined), { hostname: "127.0.0.1", port: 8080 });
});

Deno.test("pause holds back gets; resume serves the waiting ones", async () => {
  await using r = await rig();
  const q = r.client.queue("work");
  await q.put("a");
  const paused = await post(r, "/api/queues/pause", { queue: "work" });
  assert.equal(paused.status, 200, paused.body);
  assert.deepEqual(JSON.parse(paused.body), { ok: true, queue: "work", paused: true });
  assert.equal(await q.get(0), null, "a paused queue serves nothing");
  const waiting = q.get(5000);
  await waitFor("the get to wait", async () => (await state(r)).queues[0].waiting === 1);
  const row = (await state(r)).queues.find((x) => x.name === "work")!;
  assert.equal(row.paused, true);
  assert.equal(row.ready, 1);
  await q.put("b"); // puts still go in
  const resumed = await post(r, "/api/queues/resume", { queue: "work" });
  assert.equal(resumed.status, 200, resumed.body);
  const job = await waiting;
  assert.equal(job?.value, "a");
  await q.ack(job!);
  assert.equal((await q.get(0))?.value, "b");
});

Deno.test("dead letters are listed with their error, re-queued and dropped", async () => {
  await using r = await rig();
  await makeDead(r, "jobs", { n: 1 }, "first failure");
  await makeDead(r, "jobs", "<script>alert(1)</script>", "second\nfailure");
  const before = await state(r);
  const jobs = before.queues.find((q) => q.name === "jobs")!;
  assert.equal(jobs.deadLetters, 2);
  assert.equal(before.queues.some((q) => q.name === "jobs.dead"), false, "folded into jobs");
  assert.equal(before.dead.total, 2);
  const [first, second] = before.dead.items;
  assert.equal(first.queue, "jobs.dead");
  assert.equal(first.failedIn, "jobs");
  assert.equal(first.error, "first failure");
  assert.equal(first.value, '{"n":1}');
  assert.equal(first.attempts, 1);
  assert.equal(second.error, "second\nfailure");
  assert.equal(second.value, '"<script>alert(1)</script>"');

  const requeued = await post(r, "/api/dead/requeue", { queue: "jobs.dead", ids: [first.id] });
  assert.equal(requeued.status, 200, requeued.body);
  const reply = JSON.parse(requeued.body);
  assert.equal(reply.requeued, 1);
  const job = await r.client.queue("jobs").get(1000);
  assert.deepEqual(job?.value, { n: 1 });
  assert.equal(job?.attempt, 1, "a re-queued item starts its attempts again");
  assert.equal(job?.id, reply.ids[0]);
  await r.client.queue("jobs").ack(job!);

  const again = await post(r, "/api/dead/requeue", { queue: "jobs.dead", ids: [first.id] });
  assert.equal(again.status, 404, "a dead letter is re-queued once");

  const dropped = await post(r, "/api/dead/drop", { queue: "jobs.dead", ids: [second.id] });
  assert.equal(dropped.status, 200, dropped.body);
  const after = await state(r);
  assert.equal(after.dead.total, 0);
  assert.equal(after.queues.find((q) => q.name === "jobs")!.deadLetters, 0);
  assert.equal(
    (await r.master.broker.stats("jobs")).queues[0].ready,
    0,
    "the dropped item is gone",
  );
});

Deno.test("bad action bodies are refused with a reason", async () => {
  await using r = await rig();
  const cases: Array<[string, unknown, number]> = [
    ["/api/queues/pause", { queue: "" }, 400],
    ["/api/queues/pause", { queue: "q", extra: 1 }, 400],
    ["/api/queues/pause", ["q"], 400],
    // A queue's name stands for its dead-letter queue: no letter 1 in jobs.dead.
    ["/api/dead/requeue", { queue: "jobs", ids: [1] }, 404],
    ["/api/dead/requeue", { queue: "jobs.dead", ids: [1], all: true }, 400],
    ["/api/dead/requeue", { queue: "jobs.dead" }, 400],
    ["/api/dead/drop", { queue: "jobs.dead", all: false }, 400],
    ["/api/dead/requeue", { queue: "jobs.dead", ids: [] }, 400],
    ["/api/dead/requeue", { queue: "jobs.dead", ids: ["1"] }, 400],
    ["/api/dead/drop", { queue: "jobs.dead", ids: [12345] }, 404],
  ];
  for (const [path, body, status] of cases) {
    const reply = await post(r, path, body);
    assert.equal(reply.status, status, `${path} ${JSON.stringify(body)}: ${reply.body}`);
    assert.ok(typeof JSON.parse(reply.body).error === "string");
  }
  const notJson = await request(`${r.base}/api/queues/pause`, {
    method: "POST",
    headers: auth(r.token, { "content-type": "application/json" }),
    body: "{",
  });
  assert.equal(notJson.status, 400);
  const big = await post(r, "/api/queues/pause", { queue: "q", pad: "x".repeat(70_000) });
  assert.equal(big.status, 413);
  const get = await request(`${r.base}/api/queues/pause`, { headers: auth(r.token) });
  assert.equal(get.status, 405, "actions are POSTs");
});

Deno.test("the state lists connected clients and rates", async () => {
  await using r = await rig();
  const worker = await connect({ address: r.master.address, authkey: KEY, name: "worker-7" });
  try {
    const q = worker.queue("tasks");
    await q.putMany([1, 2, 3]);
    await q.getMany(2, 1000);
    const s = await waitFor("rates to show", async () => {
      const s = await state(r);
      return s.queues[0]?.rates.put > 0 ? s : undefined;
    });
    assert.equal(s.clients, 2);
    const w = s.workers.find((x) => x.name === "worker-7")!;
    assert.ok(w, JSON.stringify(s.workers));
    assert.equal(w.held, 2);
    assert.match(w.address, /^127\.0\.0\.1:\d+$/);
    assert.ok(w.connectedAt <= w.lastSeenAt && w.lastSeenAt <= s.now);
    assert.equal(s.workers.find((x) => x.name === "test-client")!.held, 0);
    assert.ok(s.history.put.some((v) => v > 0), "the history shows the puts");
  } finally {
    await worker.close();
  }
  await waitFor(
    "a closed client to leave the list",
    async () => (await state(r)).workers.length === 1,
  );
});

Deno.test("taskq master refuses --http beyond loopback without a key, and a port in use", async () => {
  const run = (args: string[], key: string | null) =>
    runTaskq(["master", "--memory", "--listen", "127.0.0.1:0", ...args], {
      key,
      permissions: MASTER_PERMISSIONS,
    });
  const open = await run(["--http", "0.0.0.0:0"], null);
  assert.equal(open.code, 2);
  assert.match(open.stderr, /refusing to serve HTTP on 0\.0\.0\.0:0 without a key/);
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const busy = await run(["--http", String(taken.addr.port)], TEST_KEY);
    assert.equal(busy.code, 2);
    assert.match(busy.stderr, /cannot serve HTTP on 127\.0\.0\.1:\d+/);
  } finally {
    taken.close();
  }
});

Deno.test("requests the HTTP server refuses itself are answered and counted by reason", async () => {
  await using r = await rig();
  const malformed = await rawRequest(
    r.base,
    "GET /api/state HTTP/1.1\nHost: a b\nConnection: close",
  );
  assert.match(malformed, /^HTTP\/1\.1 400 /);
  assert.match(malformed, /\r\nconnection: close\r\n/);
  const chunked = await rawRequest(
    r.base,
    `POST /api/queues/pause HTTP/1.1\nHost: 127.0.0.1\nTransfer-Encoding: chunked`,
  );
  assert.match(chunked, /^HTTP\/1\.1 501 /);
  assert.equal(r.http.refused.get("bad_request"), 1);
  assert.equal(r.http.refused.get("not_implemented"), 1);
  const metrics = await request(`${r.base}/metrics`, { headers: auth(r.token) });
  assert.match(metrics.body, /taskq_http_refused_total\{reason="bad_request"\} 1/);
  await waitFor("the refused connections to close", () => r.http.connectionCount <= 1);
});
