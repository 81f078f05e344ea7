/**
 * Serving a Python master (lib/worker/python_worker.ts, lib/client/
 * python_client.ts and `taskq worker --python-master`) under every installed
 * Python 3.11+:
 *
 * - the seed's `task_master.py`, unmodified but for address and key, served
 *   by two `taskq worker --python-master` processes: its ten results are all
 *   there and correct, it exits 0, and the workers stop cleanly on SIGTERM;
 * - a worker with the wrong key stops at once with one clear line, and one
 *   with `--exit-when-idle` exits 0 once its results are delivered;
 * - the loop as a library against a Python `BaseManager` server: a failing
 *   handler is retried, results reach the master as Python values, items
 *   keep their exact Python types on the way to the handler and back, and
 *   items still running at a stop go back on the master's queue.
 *
 * @module
 */

import assert from "node:assert/strict";
import { freeLoopbackPort, type Proc, startTaskq, TEST_KEY, waitFor } from "./_helpers.ts";
import { bytesLiteral, type Python, pythonTest, runPython, seedMaster } from "./_python.ts";
import { isEmptyError, PythonManagerClient } from "../lib/python/client.ts";
import { runPythonWorker } from "../lib/python/worker.ts";
import { PyDict, PyTuple, type PyValue } from "../lib/python/wire/values.ts";
import { AuthenticationError } from "../lib/errors.ts";

/** Deadline of a Python program that should finish by itself. */
const RUN_MS = 60_000;

/** `taskq worker --python-master ADDRESS` with the default queue names, squaring {}. */
function startWorker(address: string, key = TEST_KEY, extra: string[] = []): Proc {
  return startTaskq("taskq worker", [
    "worker",
    "--python-master",
    address,
    "--python-queue",
    "get_task_queue",
    "--python-results",
    "get_result_queue",
    ...extra,
    "--",
    "sh",
    "-c",
    'echo "$1 * $1 = $(( $1 * $1 ))"',
    "square",
    "{}",
  ], { key });
}

pythonTest("the seed's task_master.py is served by taskq workers: 10/10 results", async (
  python,
) => {
  const address = `127.0.0.1:${freeLoopbackPort()}`;
  await using master = await runPython(python, "task_master.py", seedMaster(address, TEST_KEY), {
    file: "task_master.py",
  });
  await master.waitForLine(/^Try get results\.\.\.$/, RUN_MS);
  await using one = startWorker(address);
  await using two = startWorker(address);

  const status = await master.finished(RUN_MS);
  assert.equal(status.code, 0, master.describe());
  const puts = master.lines.filter((line) => line.startsWith("Put task"))
    .map((line) => Number(/^Put task (\d+)\.\.\.$/.exec(line)?.[1]));
  assert.equal(puts.length, 10, master.describe());
  const results = master.lines.filter((line) => line.startsWith("Result: "));
  assert.deepEqual(
    results.map((line) => line.slice("Result: ".length)).sort(),
    puts.map((n) => `${n} * ${n} = ${n * n}`).sort(),
    master.describe(),
  );

  let done = 0;
  for (const worker of [one, two]) {
    assert.equal((await worker.stop("SIGTERM")).code, 0, worker.describe());
    done += Number(/worker stopped done=(\d+)/.exec(worker.stderr)?.[1]);
  }
  assert.equal(done, 10, `${one.describe()}\n${two.describe()}`);
});

/** A Python manager server holding `items` on its task queue, serving until killed. */
function managerServer(address: string, key: string, items: string): string {
  const at = address.lastIndexOf(":");
  return `import queue
from multiprocessing.managers import BaseManager

task_queue = queue.Queue()
result_queue = queue.Queue()

class QueueManager(BaseManager):
    pass

QueueManager.register('get_task_queue', callable=lambda: task_queue)
QueueManager.register('get_result_queue', callable=lambda: result_queue)
for item in ${items}:
    task_queue.put(item)
manager = QueueManager(address=('${address.slice(0, at)}', ${address.slice(at + 1)}), authkey=${
    bytesLiteral(key)
  })
server = manager.get_server()
print('serving')
server.serve_forever()
`;
}

async function startServer(
  python: Python,
  items: string,
): Promise<{ proc: Proc; address: string }> {
  const address = `127.0.0.1:${freeLoopbackPort()}`;
  const proc = await runPython(python, "manager server", managerServer(address, TEST_KEY, items));
  try {
    await proc.waitForLine(/^serving$/, RUN_MS);
  } catch (error) {
    await proc.dispose();
    throw error;
  }
  return { proc, address };
}

/** Takes everything from a queue of the Python master (our own client). */
async function drain(manager: PythonManagerClient, typeid: string): Promise<PyValue[]> {
  const { ident } = await manager.create(typeid);
  const calls = await manager.openCalls("test");
  const out: PyValue[] = [];
  try {
    for (;;) out.push(await calls.call(ident, "get_nowait"));
  } catch (error) {
    if (!isEmptyError(error)) throw error;
  } finally {
    calls.close();
    await manager.decref(ident);
  }
  return out;
}

pythonTest("a worker with the wrong key stops with one clear line", async (python) => {
  const { proc, address } = await startServer(python, "[1]");
  await using _server = proc;
  await using worker = startWorker(address, "not-the-key");
  const status = await worker.finished(RUN_MS);
  assert.equal(status.code, 1, worker.describe());
  assert.match(worker.stderr, /^taskq worker: .*rejected our key/m);
  assert.doesNotMatch(worker.stderr, /^\s+at /m, "no stack trace");
});

pythonTest(
  "the loop retries a failing handler, keeps Python types, and puts back what a stop interrupts",
  async (python) => {
    const { proc, address } = await startServer(python, "[2, (7, 'x'), 'block']");
    await using _server = proc;
    const manager = new PythonManagerClient({ address, authkey: TEST_KEY });
    const stop = new AbortController();
    const seen: unknown[] = [];
    let failures = 0;
    const running = runPythonWorker({
      manager,
      queue: "get_task_queue",
      results: "get_result_queue",
      retryBackoffMs: 10,
      graceMs: 200,
      signal: stop.signal,
      handler: async (job, signal) => {
        seen.push(job.value);
        if (job.value === 2 && failures++ === 0) throw new Error("first attempt fails");
        if (job.value === "block") {
          await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
          throw new Error("stopped");
        }
        return { item: job.value, attempt: job.attempt, big: 2 ** 60 };
      },
    });
    await waitFor("the blocking item to start", () => seen.includes("block"), {
      timeoutMs: RUN_MS,
    });
    stop.abort();
    const summary = await running;
    assert.deepEqual(summary, { done: 2, failed: 0, retried: 1, returned: 1 });
    assert.deepEqual(seen, [2, 2, [7, "x"], "block"]);

    const results = await drain(manager, "get_result_queue");
    assert.equal(results.length, 2);
    // Results are natural values turned into Python ones: dicts with str keys.
    const plain = results.map((r) => {
      assert.ok(r instanceof PyDict, "a result is a dict");
      return Object.fromEntries(r.entries) as Record<string, PyValue>;
    });
    assert.deepEqual(plain.map((r) => r.attempt), [2, 1]);
    assert.deepEqual(plain[0].item, 2);
    assert.deepEqual(plain[1].item, [7, "x"]);
    // The item the stop interrupted is back on the master's queue, exactly.
    assert.deepEqual(await drain(manager, "get_task_queue"), ["block"]);
  },
);

pythonTest("an item put back keeps its exact Python type", async (python) => {
  const { proc, address } = await startServer(python, "[(1, 2.0, {3})]");
  await using _server = proc;
  const manager = new PythonManagerClient({ address, authkey: TEST_KEY, challenge: "legacy" });
  const stop = new AbortController();
  let started = false;
  const running = runPythonWorker({
    manager,
    queue: "get_task_queue",
    graceMs: 0,
    signal: stop.signal,
    handler: async (_job, signal) => {
      started = true;
      await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
      throw new Error("stopped");
    },
  });
  await waitFor("the item to start", () => started, { timeoutMs: RUN_MS });
  stop.abort();
  assert.equal((await running).returned, 1);
  const [back] = await drain(manager, "get_task_queue");
  assert.ok(back instanceof PyTuple, "still a tuple");
  assert.equal(back.items[0], 1);
  assert.equal(back.items[1]?.constructor.name, "PyFloat", "2.0 is still a float");
  assert.equal(back.items[2]?.constructor.name, "PySet", "{3} is still a set");
});

pythonTest("the loop stops with AuthenticationError on a wrong key", async (python) => {
  const { proc, address } = await startServer(python, "[1]");
  await using _server = proc;
  const manager = new PythonManagerClient({ address, authkey: "wrong" });
  await assert.rejects(
    runPythonWorker({ manager, queue: "get_task_queue", handler: () => "x" }),
    AuthenticationError,
  );
});

pythonTest(
  "taskq worker --python-master exits once idle, its results delivered",
  async (python) => {
    const { proc, address } = await startServer(python, "[3, 4]");
    await using _server = proc;
    await using worker = startWorker(address, TEST_KEY, ["--exit-when-idle", "0.5"]);
    const status = await worker.finished(RUN_MS);
    assert.equal(status.code, 0, worker.describe());
    const manager = new PythonManagerClient({ address, authkey: TEST_KEY });
    assert.deepEqual(await drain(manager, "get_result_queue"), ["3 * 3 = 9", "4 * 4 = 16"]);
  },
);
