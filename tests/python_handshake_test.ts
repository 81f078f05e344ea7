/**
 * Python's handshake (lib/wire/python/handshake.ts): the answer rules of
 * both styles, decided by length and never by the first byte; our client and
 * server against each other in both styles; and both against Python's own
 * `multiprocessing.connection` Listener and Client under every installed
 * Python 3.11+, with the right key and a wrong one.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import {
  answerChallenge,
  answerMatches,
  CHALLENGE_PREFIX,
  type ChallengeStyle,
  clientHandshake,
  LEGACY_CHALLENGE_BYTES,
  MODERN_CHALLENGE_RANDOM_BYTES,
  newChallenge,
  serverHandshake,
} from "../lib/python/wire/handshake.ts";
import { PythonConnection } from "../lib/python/wire/connection.ts";
import { AuthenticationError } from "../lib/errors.ts";
import { freeLoopbackPort, withDeadline } from "./_helpers.ts";
import { bytesLiteral, pythonTest, runPython } from "./_python.ts";

const KEY = new TextEncoder().encode("abc");
const encoder = new TextEncoder();
const STYLES: ChallengeStyle[] = ["legacy", "modern"];

function mac(digest: string, key: Uint8Array, data: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac(digest, key).update(data).digest());
}

function join(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

Deno.test("challenges: 20 random bytes (legacy) or {sha256} and 40 (modern)", () => {
  const legacy = newChallenge("legacy");
  const modern = newChallenge("modern");
  assert.equal(new TextDecoder().decode(legacy.subarray(0, 11)), CHALLENGE_PREFIX);
  assert.equal(legacy.length, CHALLENGE_PREFIX.length + LEGACY_CHALLENGE_BYTES);
  assert.equal(
    new TextDecoder().decode(modern.subarray(0, 19)),
    `${CHALLENGE_PREFIX}{sha256}`,
  );
  assert.equal(modern.length, CHALLENGE_PREFIX.length + 8 + MODERN_CHALLENGE_RANDOM_BYTES);
});

Deno.test("answers: raw MD5 of a 20-byte body; {name} and a MAC of the whole body otherwise", () => {
  const legacy = newChallenge("legacy");
  const body = legacy.subarray(CHALLENGE_PREFIX.length);
  assert.deepEqual(answerChallenge(KEY, legacy), mac("md5", KEY, body));

  const modern = newChallenge("modern");
  const modernBody = modern.subarray(CHALLENGE_PREFIX.length);
  assert.deepEqual(
    answerChallenge(KEY, modern),
    join(encoder.encode("{sha256}"), mac("sha256", KEY, modernBody)),
  );
  // Other allowed digests, named as Python names them.
  const sha3 = join(encoder.encode(`${CHALLENGE_PREFIX}{sha3_256}`), new Uint8Array(40));
  assert.deepEqual(
    answerChallenge(KEY, sha3),
    join(encoder.encode("{sha3_256}"), mac("sha3-256", KEY, sha3.subarray(11))),
  );

  for (
    const bad of [
      encoder.encode("#WELCOME#"),
      join(encoder.encode(CHALLENGE_PREFIX), new Uint8Array(19)),
      join(encoder.encode(`${CHALLENGE_PREFIX}{sha1}`), new Uint8Array(40)),
      join(encoder.encode(CHALLENGE_PREFIX), new Uint8Array(48)),
    ]
  ) {
    assert.throws(() => answerChallenge(KEY, bad), AuthenticationError);
  }
});

Deno.test("checking answers: 16 bytes are MD5 even when they start with '{'", () => {
  const modern = newChallenge("modern");
  const body = modern.subarray(CHALLENGE_PREFIX.length);
  // A Python 3.11 peer answers a modern challenge with a raw MD5 of the whole body.
  assert.ok(answerMatches(KEY, modern, mac("md5", KEY, body)));
  assert.ok(answerMatches(KEY, modern, answerChallenge(KEY, modern)));
  assert.ok(!answerMatches(encoder.encode("abd"), modern, answerChallenge(KEY, modern)));
  assert.ok(!answerMatches(KEY, modern, new Uint8Array(20)));
  assert.ok(!answerMatches(KEY, modern, encoder.encode("{nope}0123456789")), "16 bytes: MD5");
  assert.ok(!answerMatches(KEY, modern, join(encoder.encode("{sha256}"), new Uint8Array(31))));

  // Find a legacy challenge whose MD5 answer starts with "{" (1 in 256): still MD5 by length.
  for (let i = 0; i < 100_000; i++) {
    const legacy = newChallenge("legacy");
    const answer = mac("md5", KEY, legacy.subarray(CHALLENGE_PREFIX.length));
    if (answer[0] !== 0x7b) continue;
    assert.ok(answerMatches(KEY, legacy, answer));
    return;
  }
  assert.fail("no MD5 answer starting with '{' in 100000 tries");
});

/** Runs our server and client handshakes against each other over loopback. */
async function pair(
  serverKey: Uint8Array,
  clientKey: Uint8Array,
  serverStyle: ChallengeStyle,
  clientStyle: ChallengeStyle,
): Promise<[PromiseSettledResult<void>, PromiseSettledResult<void>]> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  const client = new PythonConnection(
    await Deno.connect({ hostname: "127.0.0.1", port: (listener.addr as Deno.NetAddr).port }),
  );
  const server = new PythonConnection(await accepted);
  listener.close();
  try {
    return await withDeadline(
      Promise.allSettled([
        serverHandshake(server, serverKey, serverStyle),
        clientHandshake(client, clientKey, clientStyle),
      ]),
      5_000,
      "the handshakes",
    ) as [PromiseSettledResult<void>, PromiseSettledResult<void>];
  } finally {
    client.close();
    server.close();
    await Promise.all([client.ended, server.ended]);
  }
}

Deno.test("our client and server agree in every combination of styles", async () => {
  for (const serverStyle of STYLES) {
    for (const clientStyle of STYLES) {
      const [server, client] = await pair(KEY, KEY, serverStyle, clientStyle);
      assert.equal(server.status, "fulfilled", `${serverStyle}/${clientStyle}`);
      assert.equal(client.status, "fulfilled", `${serverStyle}/${clientStyle}`);
    }
  }
});

Deno.test("a wrong key fails on both sides", async () => {
  for (const style of STYLES) {
    const [server, client] = await pair(KEY, encoder.encode("abd"), style, style);
    assert.equal(server.status, "rejected");
    assert.ok((server as PromiseRejectedResult).reason instanceof AuthenticationError);
    assert.equal(client.status, "rejected");
    assert.ok((client as PromiseRejectedResult).reason instanceof AuthenticationError);
  }
});

pythonTest("Python's Client authenticates to our server, in both challenge styles", async (
  python,
) => {
  for (const style of STYLES) {
    for (const key of ["abc", "wrong"]) {
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = (listener.addr as Deno.NetAddr).port;
      await using client = await runPython(
        python,
        "connection client",
        `from multiprocessing.connection import Client
from multiprocessing import AuthenticationError
try:
    c = Client(('127.0.0.1', ${port}), authkey=${bytesLiteral(key)})
    c.send_bytes(b'hello from python')
    print('echo %s' % c.recv_bytes().decode())
except AuthenticationError as e:
    print('refused: %s' % e)
`,
      );
      const conn = new PythonConnection(await listener.accept());
      listener.close();
      try {
        const shook = await serverHandshake(conn, KEY, style).then(() => true, () => false);
        assert.equal(shook, key === "abc", `${style}, key ${key}`);
        if (shook) await conn.send(await conn.recv());
        assert.equal((await client.finished()).code, 0, client.describe());
        assert.deepEqual(
          client.lines,
          [key === "abc" ? "echo hello from python" : "refused: digest sent was rejected"],
        );
      } finally {
        conn.close();
        await conn.ended;
      }
    }
  }
});

pythonTest("our client authenticates to Python's Listener, in both challenge styles", async (
  python,
) => {
  for (const style of STYLES) {
    for (const key of ["abc", "wrong"]) {
      const port = freeLoopbackPort();
      await using server = await runPython(
        python,
        "connection listener",
        `from multiprocessing.connection import Listener
from multiprocessing import AuthenticationError
with Listener(('127.0.0.1', ${port}), authkey=b'abc') as listener:
    print('listening')
    try:
        with listener.accept() as c:
            c.send_bytes(c.recv_bytes().upper())
            print('served')
    except AuthenticationError as e:
        print('refused: %s' % e)
`,
      );
      await server.waitForLine(/^listening$/);
      const conn = new PythonConnection(await Deno.connect({ hostname: "127.0.0.1", port }));
      try {
        const result = await clientHandshake(conn, encoder.encode(key), style).then(
          () => "ok",
          (error) => error,
        );
        if (key === "abc") {
          assert.equal(result, "ok", `${style}`);
          await conn.send(encoder.encode("hello from deno"));
          assert.equal(new TextDecoder().decode(await conn.recv()), "HELLO FROM DENO");
        } else {
          assert.ok(result instanceof AuthenticationError, `${style}: ${result}`);
        }
        assert.equal((await server.finished()).code, 0, server.describe());
        assert.deepEqual(
          server.lines,
          ["listening", key === "abc" ? "served" : "refused: digest received was wrong"],
        );
      } finally {
        conn.close();
        await conn.ended;
      }
    }
  }
});
