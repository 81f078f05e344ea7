/**
 * The master's Python front-end (lib/server/python_session.ts and
 * lib/server/python_frontend.ts) end to end: a real `taskq master --python`
 * and real Python programs under every installed Python 3.11+.
 *
 * - The seed's classic `task_worker.py`, unmodified but for address and key,
 *   takes ten items put with `taskq put`; its ten results come out of
 *   `taskq get`, in order and correct.
 * - Queue methods behave as `queue.Queue`'s: `queue.Empty` and `queue.Full`
 *   after their timeouts, Python's own `TypeError` and `ValueError`, `qsize`,
 *   `full`, `join`, and an unknown registered name refused with a reason.
 * - A Python worker SIGKILLed between its `get` and its `put`: its item is
 *   served again (attempt 2); one killed while blocked in `get()` is never
 *   handed an item.
 * - The value table: Python values round-trip exactly Python → taskq →
 *   Python; native clients see their natural forms; native items reach
 *   Python as natural Python values.
 * - A wrong key is refused (Python raises AuthenticationError) and the master
 *   keeps serving.
 * - Hostile pickles from real Python (`os.system` by REDUCE, a class of the
 *   worker's own) are refused with an error the worker sees, nothing runs,
 *   and the connection stays usable; hand-made ones (a text GLOBAL of
 *   `os.system`, a 4 GiB length, a memo bomb, garbage) are refused by a
 *   master that keeps serving; a peer silent in the handshake is dropped.
 * - `taskq master` checks its `--python` flags before starting.
 *
 * @module
 */

import assert from "node:assert/strict";
import { connect } from "../lib/mod.ts";
import {
  type MasterProcess,
  runTaskq,
  startMaster,
  TEST_KEY,
  waitFor,
  withDeadline,
} from "./_helpers.ts";
import {
  managerPreamble,
  PY_SAME,
  PYTHON_LISTENING,
  pythonTest,
  runPython,
  seedWorker,
} from "./_python.ts";
import { PythonConnection } from "../lib/python/wire/connection.ts";
import { clientHandshake } from "../lib/python/wire/handshake.ts";
import { encodeRequest, parseReply } from "../lib/python/wire/rpc.ts";
import { unpickle } from "../lib/python/wire/pickle_reader.ts";
import { pickle } from "../lib/python/wire/pickle_writer.ts";
import { hostPort } from "./_helpers.ts";

/** Deadline of a Python program that should finish by itself. */
const RUN_MS = 30_000;

/**
 * A master with the Python front-end on an ephemeral loopback port; in memory,
 * or durable in `dataDir` when given.
 */
async function startPythonMaster(
  dataDir?: string,
  extra: string[] = [],
): Promise<{ master: MasterProcess; python: string }> {
  const args = ["--python", "127.0.0.1:0", "--python-queue", "get_native_queue=native", ...extra];
  const master = await startMaster({ dataDir, args });
  try {
    const python = (await master.proc.waitForLine(PYTHON_LISTENING))[1];
    return { master, python };
  } catch (error) {
    await master.proc.dispose();
    throw error;
  }
}

async function stats(master: MasterProcess, queue: string) {
  const client = await connect({ address: master.address, authkey: TEST_KEY });
  try {
    return (await client.stats(queue)).queues[0];
  } finally {
    await client.close();
  }
}

function randomInts(n: number): number[] {
  return Array.from({ length: n }, () => Math.floor(Math.random() * 10_001));
}

pythonTest(
  "the seed's task_worker.py takes items from taskq put; its results come out of taskq get",
  async (python) => {
    const { master, python: address } = await startPythonMaster();
    await using _master = master;
    const numbers = randomInts(10);
    const put = await runTaskq(
      ["put", "--connect", master.address, "--queue", "tasks", "--json", ...numbers.map(String)],
    );
    assert.equal(put.code, 0, put.stderr);

    await using worker = await runPython(python, "task_worker.py", seedWorker(address, TEST_KEY), {
      file: "task_worker.py",
    });
    const status = await worker.finished(RUN_MS);
    assert.equal(status.code, 0, worker.describe());
    assert.deepEqual(worker.lines, [
      "Connect to server 127.0.0.1...",
      ...numbers.map((n) => `run task ${n} * ${n}...`),
      "worker exit.",
    ]);

    const got = await runTaskq(
      ["get", "--connect", master.address, "--queue", "results", "--count", "10", "--timeout", "5"],
    );
    assert.equal(got.code, 0, got.stderr);
    const results = got.stdout.trim().split("\n").map((line) => JSON.parse(line).value);
    assert.deepEqual(results, numbers.map((n) => `${n} * ${n} = ${n * n}`));
    // Every item was acked by the worker's next call: nothing is left or held.
    const tasks = await stats(master, "tasks");
    assert.deepEqual([tasks.ready, tasks.leased, tasks.acked], [0, 0, 10]);
    await master.stop();
  },
);

pythonTest("a Python worker SIGKILLed between get and put: its item is served again", async (
  python,
) => {
  const { master, python: address } = await startPythonMaster();
  await using _master = master;
  const client = await connect({ address: master.address, authkey: TEST_KEY });
  try {
    await client.queue("tasks").putMany([41, 42]);
    await using worker = await runPython(
      python,
      "taking worker",
      managerPreamble(address, TEST_KEY) + `
m = QueueManager(address=ADDRESS, authkey=KEY)
m.connect()
task = m.get_task_queue()
n = task.get(timeout=5)
print('got %r' % (n,))
time.sleep(600)
`,
    );
    assert.equal((await worker.waitForLine(/^got (.*)$/, RUN_MS))[1], "41");
    assert.equal((await stats(master, "tasks")).leased, 1, "the item is leased to the worker");
    worker.kill("SIGKILL");
    await worker.status;
    await waitFor(
      "the master to see the worker's connection close",
      async () => (await stats(master, "tasks")).leased === 0,
    );

    const again = await client.queue("tasks").get<number>(5_000);
    assert.ok(again !== null, "the killed worker's item is served again");
    assert.equal(again.value, 41);
    assert.equal(again.attempt, 2);
    await client.queue("tasks").ack(again);
  } finally {
    await client.close();
  }
  await master.stop();
});

pythonTest("a Python worker killed while blocked in get() is never handed an item", async (
  python,
) => {
  const { master, python: address } = await startPythonMaster();
  await using _master = master;
  await using worker = await runPython(
    python,
    "blocked worker",
    managerPreamble(address, TEST_KEY) + `
m = QueueManager(address=ADDRESS, authkey=KEY)
m.connect()
task = m.get_task_queue()
task.qsize()
print('waiting')
task.get()
print('got one')
`,
  );
  await worker.waitForLine(/^waiting$/, RUN_MS);
  await waitFor(
    "the worker's get to wait at the master",
    async () => (await stats(master, "tasks")).waiting === 1,
  );
  worker.kill("SIGKILL");
  await worker.status;
  await waitFor(
    "the master to drop the dead worker's get",
    async () => (await stats(master, "tasks")).waiting === 0,
  );

  const client = await connect({ address: master.address, authkey: TEST_KEY });
  try {
    await client.queue("tasks").put("late");
    const job = await client.queue("tasks").get(5_000);
    assert.equal(job?.value, "late");
    assert.equal(job?.attempt, 1, "no dead connection took it first");
  } finally {
    await client.close();
  }
  await master.stop();
});

pythonTest("queue methods behave as queue.Queue's, with Python's own errors", async (python) => {
  const { master, python: address } = await startPythonMaster(undefined, [
    "--max-queue-length",
    "2",
  ]);
  await using _master = master;
  await using script = await runPython(
    python,
    "queue methods",
    managerPreamble(address, TEST_KEY) + `
import threading
m = QueueManager(address=ADDRESS, authkey=KEY)
m.connect()
q = m.get_native_queue()

def attempt(label, call):
    start = time.monotonic()
    try:
        result = call()
        print('%s: %r' % (label, result))
    except Exception as e:
        text = ' '.join(str(e).split())
        print('%s: %s(%s) after %.1f s' % (label, type(e).__name__, text, time.monotonic() - start))

attempt('str', lambda: str(q))
attempt('empty', q.empty)
attempt('get_nowait', q.get_nowait)
attempt('get timeout', lambda: q.get(True, 0.3))
attempt('negative timeout', lambda: q.get(timeout=-1))
attempt('bad keyword', lambda: q.put(1, nope=2))
attempt('put 1', lambda: q.put(1))
attempt('put_nowait 2', lambda: q.put_nowait(2))
attempt('full', q.full)
attempt('qsize', q.qsize)
attempt('put_nowait 3', lambda: q.put_nowait(3))
attempt('put 3 timeout', lambda: q.put(3, timeout=0.3))
attempt('get', q.get)
attempt('task_done', q.task_done)
attempt('get', q.get)
attempt('join', q.join)
attempt('unknown name', lambda: m._create('nothing'))
`,
  );
  assert.equal((await script.finished(RUN_MS)).code, 0, script.describe());
  const lines = script.lines;
  const expected: [string, RegExp][] = [
    ["str", /^str: "<taskq queue 'native'>"$/],
    ["empty", /^empty: True$/],
    ["get_nowait", /^get_nowait: Empty\(\) after 0\.[0-2] s$/],
    ["get timeout", /^get timeout: Empty\(\) after (0\.[3-9]|1\.\d) s$/],
    [
      "negative timeout",
      /^negative timeout: ValueError\('timeout' must be a non-negative number\)/,
    ],
    ["bad keyword", /^bad keyword: TypeError\(put\(\) got an unexpected keyword argument 'nope'\)/],
    ["put 1", /^put 1: None$/],
    ["put_nowait 2", /^put_nowait 2: None$/],
    ["full", /^full: True$/],
    ["qsize", /^qsize: 2$/],
    ["put_nowait 3", /^put_nowait 3: Full\(\) after 0\.[0-2] s$/],
    ["put 3 timeout", /^put 3 timeout: Full\(\) after (0\.[3-9]|1\.\d) s$/],
    ["get", /^get: 1$/],
    ["task_done", /^task_done: None$/],
    ["get", /^get: 2$/],
    ["join", /^join: None$/],
    [
      "unknown name",
      /^unknown name: RemoteError\(-+ taskq master refused the request: this master serves no 'nothing'/,
    ],
  ];
  assert.equal(lines.length, expected.length, script.describe());
  expected.forEach(([what, pattern], i) => assert.match(lines[i], pattern, what));
  await master.stop();
});

/** Python helpers: a type-exact comparison, and the value table. */
const PY_VALUES = `
import math

${PY_SAME}
VALUES = [
    0, 1, -1, 255, 256, 65535, 65536, 2**31 - 1, -2**31, 2**31, 2**53 - 1, -(2**53 - 1),
    2**53, 2**63, 2**64, 2**70, -2**70, 10**100, -(10**100),
    0.0, -0.0, 7.0, 1.5, -2.25, 1e300, 5e-324, float('inf'), float('-inf'), float('nan'),
    '', 'hello', 'h\\u00e9llo w\\u00f6rld \\u2713 \\U0001f600', '\\ud800 lone', '\\ufeffbom', 'x' * 300,
    b'', b'\\x00\\xff', bytes(range(256)), b'y' * 70000,
    True, False, None,
    [], [1, [2, [3]]], [1.0, 2], (), (1,), (1, 'a', 2.5), (1, 2, 3, 4, 5), ([1], (2,)),
    {}, {'a': 1, 'b': [True, None]}, {1: 'x', 2: 'y'}, {'1': 'str', 1: 'int'},
    {(1, 2): b'k', frozenset({1}): 'f', None: 0, 1.5: 'f', b'b': True},
    set(), {1, 2, 3}, {'a', (1, 2)}, frozenset(), frozenset({'x', 3}),
    {'nested': [(1, {2.5: {3}}), {'deep': [[[[]]]]}]},
]
`;

/** Marks a set of strings, whose order is Python's: see {@link UNORDERED_SETS}. */
const UNORDERED = Symbol("unordered");

/** What a native client sees for each entry of the value table, in order. */
const NATURAL: unknown[] = [
  0,
  1,
  -1,
  255,
  256,
  65535,
  65536,
  2 ** 31 - 1,
  -(2 ** 31),
  2 ** 31,
  2 ** 53 - 1,
  -(2 ** 53 - 1),
  "9007199254740992",
  "9223372036854775808",
  "18446744073709551616",
  "1180591620717411303424",
  "-1180591620717411303424",
  "1" + "0".repeat(100),
  "-1" + "0".repeat(100),
  0,
  0,
  7,
  1.5,
  -2.25,
  1e300,
  5e-324,
  Infinity,
  -Infinity,
  NaN,
  "",
  "hello",
  "h\u00e9llo w\u00f6rld \u2713 \u{1f600}",
  "\ufffd lone", // msgpack strings are UTF-8: a lone surrogate cannot cross
  "\ufeffbom",
  "x".repeat(300),
  new Uint8Array(0),
  new Uint8Array([0, 255]),
  new Uint8Array(Array.from({ length: 256 }, (_, i) => i)),
  new Uint8Array(70000).fill(0x79),
  true,
  false,
  null,
  [],
  [1, [2, [3]]],
  [1, 2],
  [],
  [1],
  [1, "a", 2.5],
  [1, 2, 3, 4, 5],
  [[1], [2]],
  {},
  { a: 1, b: [true, null] },
  { 1: "x", 2: "y" },
  [["1", "str"], [1, "int"]],
  [[[1, 2], new Uint8Array([0x6b])], [[1], "f"], [null, 0], [1.5, "f"], [
    new Uint8Array([0x62]),
    true,
  ]],
  [],
  [1, 2, 3],
  UNORDERED,
  [],
  UNORDERED,
  { nested: [[1, { "2.5": [3] }], { deep: [[[[]]]] }] },
];

/** The elements of the sets marked {@link UNORDERED}, by index in the table. */
const UNORDERED_SETS: Record<number, unknown[]> = {
  [NATURAL.length - 4]: ["a", [1, 2]],
  [NATURAL.length - 2]: ["x", 3],
};

pythonTest(
  "Python values round-trip exactly through taskq; native clients see natural values",
  async (python) => {
    // A durable master: every natural form is written to its store too.
    const dataDir = await Deno.makeTempDir({ prefix: "taskq-python-data-" });
    await using _data = { [Symbol.asyncDispose]: () => Deno.remove(dataDir, { recursive: true }) };
    const { master, python: address } = await startPythonMaster(dataDir);
    await using _master = master;
    await using producer = await runPython(
      python,
      "producer",
      managerPreamble(address, TEST_KEY) + PY_VALUES + `
m = QueueManager(address=ADDRESS, authkey=KEY)
m.connect()
task = m.get_task_queue()
native = m.get_native_queue()
for v in VALUES:
    task.put(v)
    native.put(v)
print('put %d' % len(VALUES))
`,
    );
    assert.equal((await producer.finished(RUN_MS)).code, 0, producer.describe());

    // A separate Python process gets exactly what was put.
    await using consumer = await runPython(
      python,
      "consumer",
      managerPreamble(address, TEST_KEY) + PY_VALUES + `
m = QueueManager(address=ADDRESS, authkey=KEY)
m.connect()
task = m.get_task_queue()
bad = 0
for i, v in enumerate(VALUES):
    got = task.get(timeout=5)
    if not same(got, v):
        bad += 1
        print('MISMATCH %d: put %r, got %r' % (i, v, got))
task.qsize()
print('checked %d, %d mismatches' % (len(VALUES), bad))
`,
    );
    assert.equal((await consumer.finished(RUN_MS)).code, 0, consumer.describe());
    assert.deepEqual(consumer.lines, [`checked ${NATURAL.length}, 0 mismatches`]);

    // A native client sees the natural forms, and puts natural values for Python.
    const client = await connect({ address: master.address, authkey: TEST_KEY });
    try {
      const jobs = await client.queue("native").getMany(NATURAL.length, 5_000);
      assert.equal(jobs.length, NATURAL.length);
      NATURAL.forEach((expected, i) => {
        if (expected === UNORDERED) {
          // A set of strings is in Python's (hash-seeded) order: compare as sorted.
          const sorted = (v: unknown) => (v as unknown[]).map((x) => JSON.stringify(x)).sort();
          assert.deepEqual(sorted(jobs[i].value), sorted(UNORDERED_SETS[i]), `entry ${i}`);
        } else {
          assert.deepEqual(jobs[i].value, expected, `entry ${i}`);
        }
      });
      await client.queue("native").ack(jobs);
      await client.queue("results").putMany([
        null,
        true,
        3,
        -7,
        2.5,
        2 ** 60,
        "text",
        new Uint8Array([1, 2]),
        [1, "a", [null]],
        { a: 1, b: { c: [false] } },
      ]);
    } finally {
      await client.close();
    }
    await using reader = await runPython(
      python,
      "native reader",
      managerPreamble(address, TEST_KEY) + PY_VALUES + `
EXPECTED = [None, True, 3, -7, 2.5, float(2**60), 'text', b'\\x01\\x02', [1, 'a', [None]],
            {'a': 1, 'b': {'c': [False]}}]
m = QueueManager(address=ADDRESS, authkey=KEY)
m.connect()
result = m.get_result_queue()
for i, v in enumerate(EXPECTED):
    got = result.get(timeout=5)
    print('%d %s' % (i, 'ok' if same(got, v) else 'MISMATCH %r' % (got,)))
result.qsize()
`,
    );
    assert.equal((await reader.finished(RUN_MS)).code, 0, reader.describe());
    assert.deepEqual(reader.lines, Array.from({ length: 10 }, (_, i) => `${i} ok`));
    await master.stop();
  },
);

pythonTest("a wrong key is refused and the master keeps serving", async (python) => {
  const { master, python: address } = await startPythonMaster();
  await using _master = master;
  await using intruder = await runPython(
    python,
    "wrong key",
    managerPreamble(address, "not-the-key") + `
from multiprocessing import AuthenticationError
m = QueueManager(address=ADDRESS, authkey=KEY)
try:
    m.connect()
except AuthenticationError as e:
    print('refused: %s' % e)
else:
    print('connected')
`,
  );
  assert.equal((await intruder.finished(RUN_MS)).code, 0, intruder.describe());
  assert.deepEqual(intruder.lines, ["refused: digest sent was rejected"]);

  const numbers = randomInts(10);
  const client = await connect({ address: master.address, authkey: TEST_KEY });
  try {
    await client.queue("tasks").putMany(numbers);
  } finally {
    await client.close();
  }
  await using worker = await runPython(python, "task_worker.py", seedWorker(address, TEST_KEY));
  assert.equal((await worker.finished(RUN_MS)).code, 0, worker.describe());
  assert.equal(worker.lines.filter((line) => line.startsWith("run task")).length, 10);
  await master.stop();
});

pythonTest(
  "hostile pickles from Python are refused, nothing runs, and the connection stays usable",
  async (python) => {
    const { master, python: address } = await startPythonMaster();
    await using _master = master;
    const dir = await Deno.makeTempDir({ prefix: "taskq-hostile-" });
    const marker = `${dir}/pwned`;
    try {
      await using attacker = await runPython(
        python,
        "attacker",
        managerPreamble(address, TEST_KEY) + `
import os
from dataclasses import dataclass
from multiprocessing.managers import RemoteError

class Pwn:
    def __reduce__(self):
        return (os.system, (${JSON.stringify(`touch ${marker}`)},))

@dataclass
class Job:
    n: int

m = QueueManager(address=ADDRESS, authkey=KEY)
m.connect()
task = m.get_task_queue()
for label, value in [('reduce', Pwn()), ('class', Job(1)), ('exception', ValueError('x'))]:
    try:
        task.put(value)
        print('%s: accepted' % label)
    except RemoteError as e:
        print('%s: RemoteError %s' % (label, ' '.join(str(e).split())))
    except TypeError as e:
        print('%s: TypeError %s' % (label, e))
task.put('still usable')
print('after: %r' % (task.get(timeout=5),))
`,
      );
      assert.equal((await attacker.finished(RUN_MS)).code, 0, attacker.describe());
      const [reduce, cls, exception, after] = attacker.lines;
      assert.match(reduce, /^reduce: RemoteError .*refused to load posix\.system/);
      assert.match(cls, /^class: RemoteError .*refused to load __main__\.Job/);
      assert.match(exception, /^exception: TypeError cannot queue builtins\.ValueError/);
      assert.equal(after, "after: 'still usable'");
      assert.equal(attacker.lines.length, 4);
      await assert.rejects(Deno.stat(marker), Deno.errors.NotFound, "os.system never ran");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
    await master.stop();
  },
);

/** An authenticated raw connection to the Python front-end, for hand-made messages. */
async function rawPython(address: string): Promise<PythonConnection> {
  const conn = new PythonConnection(await Deno.connect(hostPort(address)));
  await clientHandshake(conn, new TextEncoder().encode(TEST_KEY));
  conn.maxFrameBytes = 1 << 20;
  return conn;
}

async function call(conn: PythonConnection, payload: Uint8Array) {
  await conn.send(payload);
  return parseReply(unpickle(await withDeadline(conn.recv(), 5_000, "a reply")));
}

function bytesOf(...parts: (number[] | string)[]): Uint8Array {
  const out: number[] = [];
  for (const part of parts) {
    if (typeof part === "string") out.push(...new TextEncoder().encode(part));
    else out.push(...part);
  }
  return new Uint8Array(out);
}

/** The request `(None, 'put', (item,), {})` around the hand-made bytes of one item. */
function requestWith(item: Uint8Array): Uint8Array {
  // PROTO 4, MARK, NONE, 'put', MARK, <item>, TUPLE, EMPTY_DICT, TUPLE, STOP
  return bytesOf([0x80, 4, 0x28, 0x4e, 0x8c, 3], "put", [0x28], [...item], [
    0x74,
    0x7d,
    0x74,
    0x2e,
  ]);
}

Deno.test("hand-made hostile pickles and a 4 GiB length are refused; the master keeps serving", async () => {
  const { master, python: address } = await startPythonMaster(undefined, [
    "--handshake-timeout",
    "0.5",
  ]);
  await using _master = master;
  // A peer that never answers the challenge is dropped after the handshake timeout.
  const silent = new PythonConnection(await Deno.connect(hostPort(address)));
  try {
    assert.match(new TextDecoder().decode(await silent.recv()), /^#CHALLENGE#\{sha256\}/);
    await withDeadline(silent.ended, 5_000, "the master to drop a silent peer");
  } finally {
    silent.close();
    await silent.ended;
  }
  const conn = await rawPython(address);
  try {
    const plain = await call(conn, encodeRequest(null, "dummy"));
    assert.deepEqual(plain, { kind: "#RETURN", value: null });

    const cases: [string, Uint8Array, RegExp][] = [
      // The text GLOBAL opcode naming os.system, then REDUCE on a command.
      [
        "GLOBAL os.system + REDUCE",
        requestWith(bytesOf("cos\nsystem\n", [0x8c, 4], "true", [0x85, 0x52])),
        /refused to load os\.system/,
      ],
      [
        "STACK_GLOBAL builtins.eval",
        requestWith(bytesOf([0x8c, 8], "builtins", [0x8c, 4], "eval", [0x93])),
        /refused to load builtins\.eval/,
      ],
      [
        "NEWOBJ of an unknown class",
        requestWith(bytesOf([0x8c, 8], "__main__", [0x8c, 3], "Job", [0x93, 0x29, 0x81])),
        /refused to load __main__\.Job/,
      ],
      // Forty levels of [x, x] that share one list through the memo: 2^40 elements once copied.
      [
        "memo bomb",
        requestWith(bytesOf(
          [0x5d, 0x94],
          ...Array.from({ length: 40 }, (_, i) => [0x30, 0x5d, 0x94, 0x28, 0x68, i, 0x68, i, 0x65]),
        )),
        /more than \d+ bytes/,
      ],
      [
        "a list that contains itself",
        requestWith(bytesOf([0x5d, 0x94, 0x68, 0, 0x61])),
        /contains itself/,
      ],
      [
        "an 8-byte string length beyond the data",
        requestWith(bytesOf([0x8d, 0, 0, 0, 0, 1, 0, 0, 0])),
        /announces 4294967296 bytes/,
      ],
      ["truncated", bytesOf([0x80, 4, 0x28, 0x4e]), /ends without STOP|stack|MARK/],
      ["not a request", pickle(42), /request must be the tuple/],
    ];
    for (const [what, payload, pattern] of cases) {
      const reply = await call(conn, payload);
      assert.equal(reply.kind, "#TRACEBACK", what);
      assert.match(String(reply.value), pattern, what);
      // The connection stays usable after each refusal.
      assert.deepEqual(await call(conn, encodeRequest(null, "dummy")), plain, `after ${what}`);
    }

    // A frame announcing 4 GiB (the -1 escape and an 8-byte length): answered at once, then closed.
    const started = Date.now();
    await conn.conn.write(bytesOf([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0, 0, 0, 0]));
    const reply = parseReply(unpickle(await withDeadline(conn.recv(), 5_000, "a reply")));
    assert.equal(reply.kind, "#TRACEBACK");
    assert.match(String(reply.value), /frame of 4294967296 bytes is larger than the maximum/);
    await withDeadline(conn.ended, 5_000, "the master to close the connection");
    assert.ok(Date.now() - started < 5_000);
  } finally {
    conn.close();
    await conn.ended;
  }

  // The master still serves both protocols.
  const again = await rawPython(address);
  try {
    assert.deepEqual(await call(again, encodeRequest(null, "dummy")), {
      kind: "#RETURN",
      value: null,
    });
  } finally {
    again.close();
    await again.ended;
  }
  assert.equal((await stats(master, "tasks")).put, 0);
  await master.stop();
});

Deno.test("taskq master checks its --python flags before starting", async () => {
  const cases: [string[], string | null, RegExp][] = [
    [["--python-queue", "get_x=x"], TEST_KEY, /--python-queue needs --python HOST:PORT/],
    [["--python", "127.0.0.1:0", "--python-queue", "nope"], TEST_KEY, /takes NAME=QUEUE/],
    [
      ["--python", "127.0.0.1:0", "--python-queue", "get_x=a\tb"],
      TEST_KEY,
      /bad queue for "get_x"/,
    ],
    [["--python", "0.0.0.0:0"], null, /refusing to listen on 0\.0\.0\.0:0 without a key/],
  ];
  for (const [args, key, pattern] of cases) {
    const run = await runTaskq(["master", "--memory", "--listen", "127.0.0.1:0", ...args], { key });
    assert.equal(run.code, 2, `${args.join(" ")}: ${run.stderr}`);
    assert.match(run.stderr.trim(), pattern);
    assert.equal(run.stderr.trim().split("\n").length, 1, "one line");
  }
});
