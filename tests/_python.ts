/**
 * Helpers for tests that run real Python: the interpreters installed with
 * pyenv (3.11, 3.12, 3.13), a test registered once per version (ignored, with
 * a plain message, when that version is missing), Python scripts run from a
 * temp dir, and the seed's two programs with only host, port and key set.
 *
 * @module
 */

import { keyEnv, Proc, REPO_ROOT } from "./_helpers.ts";

/** Where pyenv keeps its interpreters. */
export const PYENV_VERSIONS_DIR = "/root/.pyenv/versions";

/** The Python versions the Python-protocol tests run under. */
export const PYTHON_VERSIONS: readonly string[] = ["3.11.7", "3.12.1", "3.13.0"];

/** One Python interpreter. */
export interface Python {
  /** Its version, e.g. `3.12.1`. */
  version: string;
  /** Path of its `python3`. */
  path: string;
  /** Whether it is installed. */
  available: boolean;
}

function installed(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** Every version of {@link PYTHON_VERSIONS}, installed or not. */
export const PYTHONS: readonly Python[] = PYTHON_VERSIONS.map((version) => {
  const path = `${PYENV_VERSIONS_DIR}/${version}/bin/python3`;
  return { version, path, available: installed(path) };
});

const reported = new Set<string>();

/**
 * Registers `fn` as one test per Python version; a version that is not
 * installed is registered as ignored, with a plain message saying so.
 */
export function pythonTest(name: string, fn: (python: Python) => Promise<void>): void {
  for (const python of PYTHONS) {
    if (!python.available && !reported.has(python.version)) {
      reported.add(python.version);
      console.log(
        `Python ${python.version} is not installed at ${python.path}; its tests are ignored`,
      );
    }
    Deno.test({
      name: `${name} (Python ${python.version})`,
      ignore: !python.available,
      fn: () => fn(python),
    });
  }
}

/**
 * Writes `source` into a fresh temp dir as `file` and starts it with
 * `python`; the temp dir goes with the process. Output is unbuffered.
 */
export async function runPython(
  python: Python,
  label: string,
  source: string,
  options: { file?: string; args?: string[]; env?: Record<string, string> } = {},
): Promise<Proc> {
  const dir = await Deno.makeTempDir({ prefix: "taskq-python-" });
  const script = `${dir}/${options.file ?? "script.py"}`;
  await Deno.writeTextFile(script, source);
  const proc = new Proc(
    `${label} (Python ${python.version})`,
    [script, ...(options.args ?? [])],
    keyEnv(null, { PYTHONUNBUFFERED: "1", PYTHONDONTWRITEBYTECODE: "1", ...options.env }),
    python.path,
  );
  proc.onCleanup(() => Deno.remove(dir, { recursive: true }));
  return proc;
}

const FIXTURES = `${REPO_ROOT}tests/fixtures/python`;

/** Splits `HOST:PORT`. */
function split(address: string): { host: string; port: number } {
  const at = address.lastIndexOf(":");
  return { host: address.slice(0, at), port: Number(address.slice(at + 1)) };
}

/** A Python bytes literal of `key`. */
export function bytesLiteral(key: string): string {
  return `b'${
    [...new TextEncoder().encode(key)].map((b) => `\\x${b.toString(16).padStart(2, "0")}`).join("")
  }'`;
}

/**
 * The seed's `task_master.py`, unmodified but for its address and key:
 * `('', 5000)` becomes `address` and `b'abc'` becomes `key`.
 */
export function seedMaster(address: string, key: string): string {
  const source = Deno.readTextFileSync(`${FIXTURES}/task_master.py`);
  const { host, port } = split(address);
  const from = "address=('', 5000), authkey=b'abc'";
  if (!source.includes(from)) throw new Error(`task_master.py no longer contains ${from}`);
  return source.replace(from, `address=('${host}', ${port}), authkey=${bytesLiteral(key)}`);
}

/**
 * The classic `task_worker.py`, unmodified but for its address and key: the
 * server address, port 5000 and `b'abc'` become `address` and `key`.
 */
export function seedWorker(address: string, key: string): string {
  let source = Deno.readTextFileSync(`${FIXTURES}/task_worker.py`);
  const { host, port } = split(address);
  for (
    const [from, to] of [
      ["server_addr = '127.0.0.1'", `server_addr = '${host}'`],
      [
        "address=(server_addr, 5000), authkey=b'abc'",
        `address=(server_addr, ${port}), authkey=${bytesLiteral(key)}`,
      ],
    ]
  ) {
    if (!source.includes(from)) throw new Error(`task_worker.py no longer contains ${from}`);
    source = source.replace(from, to);
  }
  return source;
}

/** The line a master started with `--python` prints with the Python address. */
export const PYTHON_LISTENING = /^taskq master serving Python on (\S+)$/;

/** Preamble of test scripts: a manager class registering the default names. */
export function managerPreamble(address: string, key: string): string {
  const { host, port } = split(address);
  return `import sys, time, queue
from multiprocessing.managers import BaseManager

class QueueManager(BaseManager):
    pass

QueueManager.register('get_task_queue')
QueueManager.register('get_result_queue')
QueueManager.register('get_native_queue')
ADDRESS = ('${host}', ${port})
KEY = ${bytesLiteral(key)}
`;
}

/**
 * Python source of `same(a, b)`: equality that also requires the same types
 * (1 is not 1.0 or True), NaN equal to NaN and the sign of zero, recursively.
 * Scripts using it must `import math`.
 */
export const PY_SAME = `def same(a, b):
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb) for (ka, va), (kb, vb) in zip(a.items(), b.items()))
    if isinstance(a, (set, frozenset)):
        return sorted(map(repr, a)) == sorted(map(repr, b))
    return a == b
`;
