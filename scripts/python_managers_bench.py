"""The seed's two programs (task_master.py and task_worker.py), scaled up for a benchmark.

A master serves two queue.Queue objects with multiprocessing.managers under the
names get_task_queue and get_result_queue, puts N random ints one by one, and
collects N results; W worker processes connect with the same key, take each n
with get(timeout=1), and put back 'n * n = m', exactly as the seed's worker
does. Prints one JSON line: {"tasks_per_s": ..., "n": ..., "workers": ...}.

Usage: python3 scripts/python_managers_bench.py N WORKERS
"""
import json
import queue
import random
import subprocess
import sys
import time
from multiprocessing.managers import BaseManager

AUTHKEY = b"abc"
GET_TIMEOUT_S = 1
RESULT_TIMEOUT_S = 60

task_queue = queue.Queue()
result_queue = queue.Queue()


class QueueManager(BaseManager):
    pass


def worker(port):
    QueueManager.register("get_task_queue")
    QueueManager.register("get_result_queue")
    m = QueueManager(address=("127.0.0.1", port), authkey=AUTHKEY)
    m.connect()
    task = m.get_task_queue()
    result = m.get_result_queue()
    done = 0
    while True:
        try:
            n = task.get(timeout=GET_TIMEOUT_S)
        except queue.Empty:
            if done > 0:
                break
            continue
        result.put("%d * %d = %d" % (n, n, n * n))
        done += 1


def master(n, workers):
    QueueManager.register("get_task_queue", callable=lambda: task_queue)
    QueueManager.register("get_result_queue", callable=lambda: result_queue)
    manager = QueueManager(address=("127.0.0.1", 0), authkey=AUTHKEY)
    manager.start()
    port = manager.address[1]
    task = manager.get_task_queue()
    result = manager.get_result_queue()
    procs = [subprocess.Popen([sys.executable, __file__, "worker", str(port)]) for _ in range(workers)]
    start = time.perf_counter()
    for _ in range(n):
        task.put(random.randint(0, 10000))
    for _ in range(n):
        result.get(timeout=RESULT_TIMEOUT_S)
    elapsed = time.perf_counter() - start
    for p in procs:
        p.wait()
    manager.shutdown()
    print(json.dumps({"tasks_per_s": round(n / elapsed), "n": n, "workers": workers,
                      "python": sys.version.split()[0]}))


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        worker(int(sys.argv[2]))
    else:
        master(int(sys.argv[1]), int(sys.argv[2]))
