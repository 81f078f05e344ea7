/**
 * Tests of lib/cli/progress.ts and its use by `taskq put` and `taskq get`:
 * the line's text (bar, count, rate, time left), redraws limited in rate,
 * nothing at all when disabled; and, end to end on a real pseudo-terminal
 * (util-linux `script`), the progress of a put from a large stdin file and of
 * `get --count N` on stderr, while the same commands with stderr on a pipe
 * write nothing there and stdout stays clean.
 *
 * @module
 */

import assert from "node:assert/strict";
import { BAR_WIDTH, formatClock, formatProgress, Progress } from "../lib/cli/progress.ts";
import { keyEnv, REPO_ROOT, startMaster, TEST_KEY } from "./_helpers.ts";

/** Items put and got end to end. */
const ITEMS = 20_000;

Deno.test("the progress line shows a bar, the count, the rate and the time left", () => {
  const line = formatProgress({
    label: "get q",
    done: 250,
    total: 1000,
    elapsedMs: 5000,
    unit: "items",
  });
  assert.equal(
    line,
    `get q  [${"#".repeat(BAR_WIDTH / 4)}${".".repeat(BAR_WIDTH * 3 / 4)}]   25%  ` +
      `250/1,000 items  50/s  ETA 0:15`,
  );
  const open = formatProgress({ label: "put q", done: 12345, elapsedMs: 2000, unit: "items" });
  assert.equal(open, "put q  12,345 items  6,173/s  0:02");
  const byBytes = formatProgress({
    label: "put q",
    done: 10,
    fraction: 0.5,
    elapsedMs: 60_000,
    unit: "items",
  });
  assert.ok(byBytes.endsWith("]   50%  10 items  0/s  ETA 1:00"), byBytes);
  assert.equal(formatClock(3725), "1:02:05");
});

Deno.test("a progress line redraws at most every 100 ms, and draws nothing when disabled", () => {
  let now = 0;
  const out: string[] = [];
  const p = new Progress({
    label: "x",
    unit: "items",
    total: 10,
    enabled: true,
    write: (text) => out.push(text),
    clock: () => now,
  });
  p.update(1);
  p.update(2);
  now = 150;
  p.update(3);
  assert.equal(out.length, 2);
  assert.ok(out[1].startsWith("\rx ") && out[1].endsWith("\x1b[K"), JSON.stringify(out[1]));
  assert.match(out[1], / 3\/10 items /);
  p.finish();
  p.finish();
  assert.equal(out.at(-1), "\n");
  assert.equal(out.length, 4);
  const silent: string[] = [];
  const off = new Progress({
    label: "x",
    unit: "items",
    enabled: false,
    write: (t) => silent.push(t),
  });
  off.update(5);
  off.finish();
  assert.deepEqual(silent, []);
});

/** Whether `script` can give a command a pseudo-terminal here. */
async function ptyUnavailable(): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("script", {
      args: ["-qec", "true", "/dev/null"],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
    return out.success ? undefined : `script failed: ${new TextDecoder().decode(out.stderr)}`;
  } catch (error) {
    return `script (util-linux) is not usable: ${(error as Error).message}`;
  }
}

const noPty = await ptyUnavailable();
if (noPty !== undefined) console.log(`SKIPPED terminal progress test: ${noPty}`);

/** Quotes `text` for sh. */
function sh(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/** The command line that runs taskq from source. */
function taskqLine(args: string[]): string {
  return [Deno.execPath(), "run", "-A", `${REPO_ROOT}/main.ts`, ...args].map(sh).join(" ");
}

/** Runs a shell command line, on a pseudo-terminal when `tty` is true; returns what it wrote. */
async function run(
  line: string,
  tty: boolean,
): Promise<{ code: number; out: string; err: string }> {
  const command = tty
    ? new Deno.Command("script", { args: ["-qec", line, "/dev/null"], env: keyEnv(TEST_KEY) })
    : new Deno.Command("sh", { args: ["-c", line], env: keyEnv(TEST_KEY) });
  const out = await command.output();
  const decoder = new TextDecoder();
  return { code: out.code, out: decoder.decode(out.stdout), err: decoder.decode(out.stderr) };
}

Deno.test({
  name: noPty === undefined
    ? "put and get show progress on a terminal's stderr, and nothing on a pipe"
    : `put and get show progress on a terminal (SKIPPED: ${noPty})`,
  ignore: noPty !== undefined,
  async fn() {
    await using master = await startMaster();
    const dir = await Deno.makeTempDir({ prefix: "taskq-progress-" });
    try {
      const input = `${dir}/items.txt`;
      await Deno.writeTextFile(
        input,
        Array.from({ length: ITEMS }, (_, i) => String(i)).join("\n") + "\n",
      );
      const at = ["--connect", master.address];

      // On a terminal: the progress line is drawn (script shows the terminal's output).
      const put = await run(`${taskqLine(["put", ...at, "--queue", "big"])} < ${sh(input)}`, true);
      assert.equal(put.code, 0, put.out);
      assert.match(put.out, /\rput big {2}\[#{24}\] {2}100% {2}20,000 items {2}[\d,]+\/s/);

      // On a pipe: nothing on stderr.
      const quiet = await run(
        `${taskqLine(["put", ...at, "--queue", "big2"])} < ${sh(input)} 2>${sh(`${dir}/err`)}`,
        false,
      );
      assert.equal(quiet.code, 0);
      assert.equal(await Deno.readTextFile(`${dir}/err`), "");

      const out = `${dir}/got.jsonl`;
      const get = await run(
        `${taskqLine(["get", ...at, "--queue", "big", "--count", String(ITEMS)])} > ${sh(out)}`,
        true,
      );
      assert.equal(get.code, 0, get.out);
      assert.match(get.out, /\rget big {2}\[#{24}\] {2}100% {2}20,000\/20,000 items/);
      const lines = (await Deno.readTextFile(out)).trimEnd().split("\n");
      assert.equal(lines.length, ITEMS, "stdout holds only the items");
      assert.equal(JSON.parse(lines[0]).value, "0");

      const plain = await run(
        `${taskqLine(["get", ...at, "--queue", "big2", "--count", "100"])} 2>${sh(`${dir}/err2`)}`,
        false,
      );
      assert.equal(plain.code, 0);
      assert.equal(plain.out.trimEnd().split("\n").length, 100);
      assert.equal(await Deno.readTextFile(`${dir}/err2`), "");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
