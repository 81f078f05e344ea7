/**
 * The dashboard (lib/http/page.ts, served by lib/http/server.ts) in a real
 * headless Chromium (Debian's `chromium`, driven by playwright-core).
 *
 * A master runs as a subprocess with `--http`; items are put, the page is
 * opened once, a worker process starts: the queue's counts change on the page
 * without a reload, the worker shows among the connected clients, the item it
 * failed shows as a dead letter with its error, and its Re-queue button puts
 * it back; a queue's Pause and Resume buttons work. A queue named
 * `<img src=x onerror=alert(1)>` and an item `<script>...` show as text: no
 * element is made of them and no dialog opens.
 * Screenshots are saved in tests/artifacts/: dashboard-working.png while the
 * worker runs, dashboard.png at the end.
 *
 * Jobs and limits, against a master in this process: the queue table shows
 * each queue's limits (`50/s · ≤3`) and its Limits form changes them; the job
 * lookup shows a leased job's holder, lease and progress (the progress bar
 * follows new reports without a new lookup), its Cancel button cancels it
 * (the holder is told) and an unknown id says so; at a phone's width the
 * page does not scroll sideways. Screenshots: dashboard-job.png and
 * dashboard-narrow.png.
 *
 * The operations console, against a master in this process: a queue's items
 * page by page (ready in serve order, delayed, leased with their holder), a
 * listed item opening the job panel, a worker's row listing what it holds
 * with Quiet and Stop (which asks first) reaching its session, dead letters
 * whose Item column is the id the API takes, filtered by queue, two selected
 * and then all the rest re-queued, a queue purged (after a second click), the
 * chart switched to an hour on a log scale, and at 400 px wide no sideways
 * scroll and no queue name broken inside a word. Screenshots:
 * console-items.png, console-job.png, console-dead.png, console-narrow.png.
 *
 * Then, from a page of another origin: a cross-origin form post to an action,
 * and a script's fetch carrying the token, are both refused.
 *
 * When Chromium is missing or cannot start, the tests are registered as
 * ignored and say why; they never pass without a browser.
 *
 * @module
 */

import assert from "node:assert/strict";
import fs from "node:fs";
import type { BrowserContext, Page } from "playwright-core";
import { connect, serve } from "../lib/mod.ts";
import { serveHttp } from "../lib/http/server.ts";
import { httpToken } from "../lib/http/token.ts";
import { type Proc, REPO_ROOT, startMaster, startTaskq, TEST_KEY, waitFor } from "./_helpers.ts";

/** Where Debian's chromium package puts the browser. */
const CHROMIUM = "/usr/bin/chromium";

/** Where screenshots go (ignored by git). */
const ARTIFACTS = `${REPO_ROOT}/tests/artifacts`;

const LAUNCH_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Time the browser has to start. */
const LAUNCH_TIMEOUT_MS = 30_000;

/** Deadline for what the page should show. */
const UI_WAIT_MS = 15_000;

const XSS_QUEUE = "<img src=x onerror=alert(1)>";
const XSS_ITEM = "<script>alert(2)</script>";
const HTTP_LINE = /^taskq http listening on (\S+)$/;
const KEY = new TextEncoder().encode(TEST_KEY);

/**
 * playwright-core, loaded with one shim: when it loads it asks whether it runs
 * under WSL by probing /proc/sys, which Deno allows only with --allow-all, so
 * the probe is answered "no" while it loads (and node:fs restored after).
 */
async function loadPlaywright(): Promise<typeof import("playwright-core")> {
  const existsSync = fs.existsSync;
  fs.existsSync = (path: fs.PathLike) => {
    try {
      return existsSync(path);
    } catch {
      return false;
    }
  };
  try {
    return await import("playwright-core");
  } finally {
    fs.existsSync = existsSync;
  }
}

const { chromium } = await loadPlaywright();

/** Starts Chromium with a fresh profile; the profile goes with the context. */
async function launch(): Promise<{ context: BrowserContext; dispose(): Promise<void> }> {
  const profile = await Deno.makeTempDir({ prefix: "taskq-chromium-" });
  try {
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: LAUNCH_ARGS,
      timeout: LAUNCH_TIMEOUT_MS,
      viewport: { width: 1280, height: 900 },
    });
    return {
      context,
      async dispose() {
        await context.close();
        await Deno.remove(profile, { recursive: true });
      },
    };
  } catch (error) {
    await Deno.remove(profile, { recursive: true });
    throw error;
  }
}

/** Why the browser tests cannot run here, or undefined if they can. */
async function browserUnavailable(): Promise<string | undefined> {
  try {
    await Deno.stat(CHROMIUM);
  } catch {
    return `${CHROMIUM} is missing (apt-get install chromium; .ci/run does it)`;
  }
  try {
    const browser = await launch();
    await browser.dispose();
    return undefined;
  } catch (error) {
    return `Chromium did not start: ${(error as Error).message.split("\n")[0]}`;
  }
}

const unavailable = await browserUnavailable();
if (unavailable !== undefined) {
  console.log(`SKIPPED browser tests: ${unavailable}`);
}

/** Registers a browser test, ignored (and saying why) when Chromium cannot run. */
function browserTest(name: string, fn: () => Promise<void>): void {
  Deno.test({
    name: unavailable === undefined ? name : `${name} (SKIPPED: ${unavailable})`,
    ignore: unavailable !== undefined,
    // playwright-core keeps its connection to the browser in timers and pipes
    // that outlive a single test's bookkeeping; everything is closed in finally.
    sanitizeOps: false,
    sanitizeResources: false,
    fn,
  });
}

/** The texts of one table's body cells, row by row. */
function tableRows(page: Page, table: string): Promise<string[][]> {
  return page.$$eval(`#${table} tbody tr`, (rows) =>
    rows.map((tr) => {
      const cells = (tr as unknown as { cells: ArrayLike<{ textContent: string | null }> }).cells;
      return Array.from(cells, (cell) => cell.textContent ?? "");
    }));
}

/** The cells of the queue row whose name is exactly `name`, or undefined. */
async function queueRow(page: Page, name: string): Promise<string[] | undefined> {
  return (await tableRows(page, "queues")).find((cells) => cells[0] === name);
}

/** Column of each figure in the queues table. */
const READY = 1;
const DEAD = 4;
const DONE = 10;
const STATE = 12;
const LIMITS = 13;

/** Columns of the dead letters table (the first holds the selection's checkbox). */
const DEAD_QUEUE = 1;
const DEAD_ITEM = 2;
const DEAD_ERROR = 5;
const DEAD_VALUE = 6;

/** Viewport of a phone held upright, in CSS pixels. */
const NARROW_VIEWPORT = { width: 375, height: 812 };

browserTest(
  "the dashboard updates live, re-queues a dead letter and shows names as text",
  async () => {
    await using master = await startMaster({
      args: ["--http", "127.0.0.1:0", "--max-attempts", "1", "--retry-backoff", "0"],
    });
    const base = (await master.proc.waitForLine(HTTP_LINE))[1];
    const client = await connect({ address: master.address, authkey: TEST_KEY, name: "producer" });
    const items = [...Array.from({ length: 12 }, (_, i) => String(i + 1)), "poison"];
    await client.queue("tasks").putMany(items);
    await client.queue(XSS_QUEUE).put(XSS_ITEM);
    await client.close();

    const browser = await launch();
    let worker: Proc | undefined;
    try {
      const page = await browser.context.newPage();
      const dialogs: string[] = [];
      const errors: string[] = [];
      page.on("dialog", (dialog) => {
        dialogs.push(dialog.message());
        void dialog.dismiss();
      });
      page.on("pageerror", (error) => errors.push(error.message));
      await page.goto(`${base}#token=${httpToken(KEY)}`);
      assert.equal(new URL(page.url()).hash, "", "the token is taken out of the address bar");

      const first = await waitFor("the tasks row", () => queueRow(page, "tasks"), {
        timeoutMs: UI_WAIT_MS,
      });
      assert.equal(first[READY], "13");
      assert.equal(first[DONE], "0");
      // Marks this document: a reload would lose the mark.
      await page.evaluate(() => (globalThis as Record<string, unknown>).taskqMark = "same page");

      worker = startTaskq("worker", [
        "worker",
        "--connect",
        master.address,
        "--queue",
        "tasks",
        "--results",
        "results",
        "--name",
        "browser-worker",
        "--",
        "sh",
        "-c",
        'sleep 0.2; test "$1" != poison || { echo "poisoned item" >&2; exit 3; }',
        "sh",
        "{}",
      ]);

      // The counts change on the page as the worker goes.
      const readySeen = new Set<string>();
      await waitFor("the worker to finish, seen on the page", async () => {
        const row = await queueRow(page, "tasks");
        if (row) readySeen.add(row[READY]);
        return row?.[READY] === "0" && row[DONE] === "12" && row[DEAD] === "1";
      }, { timeoutMs: UI_WAIT_MS, intervalMs: 100 });
      assert.ok(readySeen.size >= 3, `several counts seen on the way: ${[...readySeen]}`);
      const workers = await tableRows(page, "workers");
      const shown = workers.find((cells) => cells[0] === "browser-worker");
      assert.ok(shown, `the worker is listed: ${JSON.stringify(workers)}`);
      assert.match(shown[1], /^127\.0\.0\.1:\d+$/);

      const dead = await waitFor("the dead letter", async () => {
        const rows = await tableRows(page, "dead");
        return rows.find((cells) => cells[DEAD_VALUE] === '"poison"');
      }, { timeoutMs: UI_WAIT_MS });
      assert.equal(dead[DEAD_QUEUE], "tasks");
      assert.match(dead[DEAD_ERROR], /poisoned item/);
      await Deno.mkdir(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: `${ARTIFACTS}/dashboard-working.png`, fullPage: true });

      // Stop the worker (so the item stays put once re-queued) and see it leave the page.
      await worker.stop();
      await waitFor("the worker to leave the page", async () => {
        const rows = await tableRows(page, "workers");
        return !rows.some((cells) => cells[0] === "browser-worker");
      }, { timeoutMs: UI_WAIT_MS });

      await page.locator("#dead tbody tr", { hasText: '"poison"' }).getByRole("button", {
        name: "Re-queue",
      }).click();
      await waitFor("the re-queued item on the page", async () => {
        const row = await queueRow(page, "tasks");
        return row?.[READY] === "1" && row[DEAD] === "0" &&
          (await tableRows(page, "dead")).length === 0;
      }, { timeoutMs: UI_WAIT_MS });
      assert.match(await page.locator("#toast").textContent() ?? "", /Re-queued item \d+ to tasks/);
      assert.equal(
        await page.evaluate(() => (globalThis as Record<string, unknown>).taskqMark),
        "same page",
        "no reload happened",
      );

      // Pause and resume a queue with its button.
      const resultsRow = page.locator("#queues tbody tr", { hasText: "results" });
      await resultsRow.getByRole("button", { name: "Pause" }).click();
      await waitFor(
        "the queue to show as paused",
        async () => (await queueRow(page, "results"))?.[STATE] === "pausedResume",
        { timeoutMs: UI_WAIT_MS },
      );
      const paused = await (await fetch(`${base}api/state`, {
        headers: { authorization: `Bearer ${httpToken(KEY)}` },
      })).json();
      assert.equal(paused.queues.find((q: { name: string }) => q.name === "results").paused, true);
      await resultsRow.getByRole("button", { name: "Resume" }).click();
      await waitFor(
        "the queue to serve again",
        async () => (await queueRow(page, "results"))?.[STATE] === "servingPause",
        { timeoutMs: UI_WAIT_MS },
      );

      // The odd queue name and item show as text, and nothing ran.
      const xss = await queueRow(page, XSS_QUEUE);
      assert.ok(xss, "the queue named like an img tag is listed by its exact name");
      assert.equal(await page.locator("img").count(), 0, "no img element was made");
      assert.equal(await page.locator("script").count(), 1, "only the page's own script");
      await assert.doesNotReject(page.getByText(XSS_QUEUE, { exact: true }).waitFor());

      await page.screenshot({ path: `${ARTIFACTS}/dashboard.png`, fullPage: true });
      assert.deepEqual(dialogs, [], "no dialog opened");
      assert.deepEqual(errors, [], "no error in the page");
    } finally {
      await worker?.dispose();
      await browser.dispose();
    }
    await master.stop();
  },
);

browserTest(
  "the dashboard shows and edits limits, looks jobs up, follows progress and cancels",
  async () => {
    const master = await serve({
      listen: "127.0.0.1:0",
      authkey: KEY,
      jobs: { limits: { mail: { rateCount: 50, ratePeriodMs: 1_000, concurrency: 3 } } },
    });
    const http = await serveHttp({ source: master, listen: "127.0.0.1:0", authkey: KEY });
    const worker = await master.broker.open({ name: "resizer-1", address: "10.0.0.7:4000" });
    const told: number[] = [];
    worker.onCancel = (ids) => told.push(...ids);
    const [running] = await worker.put("mail", [{ to: "a@example.com" }]);
    const [delivery] = await worker.get("mail", { max: 1, timeoutMs: 0, leaseMs: 600_000 });
    assert.equal(delivery.id, running);
    assert.ok(await worker.progress(running, { percent: 40, message: "resizing" }, 600_000));
    const [waiting] = await worker.put("tasks", ["<b>bold</b>"], {
      priority: 7,
      group: "acme",
      keys: ["invoice-42"],
    });
    const browser = await launch();
    try {
      const page = await browser.context.newPage();
      const dialogs: string[] = [];
      const errors: string[] = [];
      page.on("dialog", (dialog) => {
        dialogs.push(dialog.message());
        void dialog.dismiss();
      });
      page.on("pageerror", (error) => errors.push(error.message));
      await page.goto(`${http.url}#token=${httpToken(KEY)}`);

      // Limits in the queue table.
      const mail = await waitFor("the mail row", () => queueRow(page, "mail"), {
        timeoutMs: UI_WAIT_MS,
      });
      assert.equal(mail[LIMITS], "50/s · ≤3Limits");
      assert.equal((await queueRow(page, "tasks"))?.[LIMITS], "noneLimits");

      // Change a queue's limits with its form.
      await page.locator("#queues tbody tr", { hasText: "tasks" }).getByRole("button", {
        name: "Limits",
      }).click();
      assert.equal(await page.locator("#limits-queue").textContent(), "tasks");
      await page.locator("#limits-rate").fill("10/5s");
      await page.locator("#limits-concurrency").fill("2");
      await page.locator("#limits-form").getByRole("button", { name: "Save" }).click();
      await waitFor(
        "the new limits on the page",
        async () => (await queueRow(page, "tasks"))?.[LIMITS] === "10/5s · ≤2Limits",
        { timeoutMs: UI_WAIT_MS },
      );
      assert.deepEqual(await master.broker.limits("tasks"), [{
        queue: "tasks",
        rateCount: 10,
        ratePeriodMs: 5_000,
        concurrency: 2,
        groupConcurrency: 0,
      }]);
      assert.equal(await page.locator("#limits-form").isHidden(), true, "the form closes");

      // Look up the running job: holder, lease, progress.
      await page.locator("#job-id").fill(String(running));
      await page.getByRole("button", { name: "Look up" }).click();
      await page.locator("#job").waitFor({ timeout: UI_WAIT_MS });
      assert.equal(await page.locator("#job-title").textContent(), `Job ${running} in mail`);
      assert.equal(await page.locator("#job-state").textContent(), "leased");
      const details = await page.locator("#job-fields").textContent() ?? "";
      assert.match(details, /Held byresizer-1 \(10\.0\.0\.7:4000\), since .+/);
      assert.match(details, /Lease expires.+\(in \d+ min/);
      assert.match(details, /Value\{"to":"a@example\.com"\}/);
      assert.equal(await page.locator("#job progress").getAttribute("value"), "40");
      assert.match(details, /40% · resizing · reported/);
      await Deno.mkdir(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: `${ARTIFACTS}/dashboard-job.png`, fullPage: true });

      // New progress shows without a new lookup.
      assert.ok(await worker.progress(running, { percent: 75, message: "uploading" }, 600_000));
      await waitFor(
        "the new progress on the page",
        async () => (await page.locator("#job progress").getAttribute("value")) === "75",
        { timeoutMs: UI_WAIT_MS },
      );
      assert.match(await page.locator("#job-fields").textContent() ?? "", /75% · uploading/);

      // Cancel it: the first click asks, the second cancels.
      const cancel = page.getByRole("button", { name: /^Cancel (job|for good\?)$/ });
      await cancel.click();
      assert.equal(await cancel.textContent(), "Cancel for good?");
      await cancel.click();
      await waitFor(
        "the job to show as cancelled",
        async () => (await page.locator("#job-state").textContent()) === "cancelled",
        { timeoutMs: UI_WAIT_MS },
      );
      assert.match(await page.locator("#toast").textContent() ?? "", /Cancelled job \d+/);
      assert.equal(await page.locator("#job-cancel").isHidden(), true, "nothing left to cancel");
      await waitFor("the holder to be told", () => told.includes(running));
      assert.equal((await master.broker.job(running))?.state, "cancelled");

      // A waiting job with priority, group and key; its value shows as text.
      await page.locator("#job-id").fill(String(waiting));
      await page.getByRole("button", { name: "Look up" }).click();
      await waitFor(
        "the waiting job",
        async () => (await page.locator("#job-title").textContent()) === `Job ${waiting} in tasks`,
        { timeoutMs: UI_WAIT_MS },
      );
      const waitingDetails = await page.locator("#job-fields").textContent() ?? "";
      assert.match(waitingDetails, /Priority7/);
      assert.match(waitingDetails, /Groupacme/);
      assert.match(waitingDetails, /Keyinvoice-42/);
      assert.match(waitingDetails, /Value"<b>bold<\/b>"/);
      assert.equal(await page.locator("#job b").count(), 0, "no element made of the value");
      assert.equal(await page.locator("#job-cancel").isVisible(), true);

      // An unknown id says so.
      await page.locator("#job-id").fill(String(waiting + 1000));
      await page.getByRole("button", { name: "Look up" }).click();
      await waitFor(
        "the unknown job's message",
        async () => /no job \d+/.test(await page.locator("#job-message").textContent() ?? ""),
        { timeoutMs: UI_WAIT_MS },
      );
      assert.equal(await page.locator("#job").isHidden(), true);

      // At a phone's width: nothing scrolls sideways but the tables themselves.
      await page.locator("#job-id").fill(String(running));
      await page.getByRole("button", { name: "Look up" }).click();
      await waitFor(
        "the cancelled job again",
        async () => (await page.locator("#job-state").textContent()) === "cancelled",
        { timeoutMs: UI_WAIT_MS },
      );
      await page.setViewportSize(NARROW_VIEWPORT);
      const overflow = await page.evaluate(() => {
        const root = (globalThis as unknown as {
          document: { documentElement: { scrollWidth: number; clientWidth: number } };
        }).document.documentElement;
        return root.scrollWidth - root.clientWidth;
      });
      assert.equal(overflow, 0, "the page does not scroll sideways");
      const panel = await page.locator("#job").boundingBox();
      assert.ok(panel && panel.x >= 0 && panel.x + panel.width <= NARROW_VIEWPORT.width);
      await page.screenshot({ path: `${ARTIFACTS}/dashboard-narrow.png`, fullPage: true });

      assert.deepEqual(dialogs, [], "no dialog opened");
      assert.deepEqual(errors, [], "no error in the page");
    } finally {
      await browser.dispose();
      await worker.close();
      await http.close();
      await master.close();
    }
  },
);

/** Width of the narrow layout the console must work at, in CSS pixels. */
const CONSOLE_NARROW = { width: 400, height: 900 };

/** A queue name with separators to break at, long enough to wrap in a narrow cell. */
const LONG_QUEUE = "billing.invoices-monthly_reminders.europe-west";

/** The pager's text of the element `id` ("1–50 of 120"). */
function pagerText(page: Page, id: string): Promise<string | null> {
  return page.locator(`#${id} .pager-text`).textContent();
}

browserTest(
  "the console browses items, shows a job, handles workers, bulk re-queues and fits 400 px",
  async () => {
    const master = await serve({
      listen: "127.0.0.1:0",
      authkey: KEY,
      retry: { maxAttempts: 1, backoffBaseMs: 0 },
    });
    const http = await serveHttp({ source: master, listen: "127.0.0.1:0", authkey: KEY });
    const producer = await master.broker.open({ name: "producer", address: "10.0.0.2:5000" });
    const worker = await master.broker.open({ name: "worker-a", address: "10.0.0.9:4000" });
    const told: string[] = [];
    worker.onControl((action) => told.push(action));
    const ids = await producer.put(LONG_QUEUE, Array.from({ length: 120 }, (_, i) => ({ n: i })));
    const delayed = await producer.put(LONG_QUEUE, ["later-1", "later-2", "later-3"], {
      delayMs: 600_000,
    });
    const held = await worker.get(LONG_QUEUE, { max: 2, timeoutMs: 0, leaseMs: 600_000 });
    assert.deepEqual(held.map((d) => d.id), ids.slice(0, 2));
    // 60 dead letters of "reports".
    await producer.put("reports", Array.from({ length: 60 }, (_, i) => `report-${i}`));
    const failing = await producer.get("reports", { max: 60, timeoutMs: 0, leaseMs: 600_000 });
    await producer.fail(failing.map((d) => d.id), "renderer crashed");
    const letters = (await master.broker.items("reports.dead", { state: "ready", limit: 500 }))
      .items.map((info) => info.id);
    assert.equal(letters.length, 60);

    const browser = await launch();
    try {
      const page = await browser.context.newPage();
      const dialogs: string[] = [];
      const errors: string[] = [];
      page.on("dialog", (dialog) => {
        dialogs.push(dialog.message());
        void dialog.dismiss();
      });
      page.on("pageerror", (error) => errors.push(error.message));
      await page.goto(`${http.url}#token=${httpToken(KEY)}`);
      await waitFor("the long queue's row", () => queueRow(page, LONG_QUEUE), {
        timeoutMs: UI_WAIT_MS,
      });

      // Browse its ready items, page by page.
      await page.locator("#queues tbody tr", { hasText: LONG_QUEUE }).locator("button.browse")
        .click();
      await page.locator("#browse").waitFor({ timeout: UI_WAIT_MS });
      assert.equal(await page.locator("#browse-queue").textContent(), LONG_QUEUE);
      await waitFor(
        "the first page of ready items",
        async () => (await pagerText(page, "items-pager")) === "1–50 of 118",
        { timeoutMs: UI_WAIT_MS },
      );
      let rows = await tableRows(page, "items");
      assert.equal(rows.length, 50);
      assert.equal(rows[0][0], String(ids[2]), "serve order: the first not taken");
      assert.equal(rows[0][4], '{"n":2}');
      assert.match(
        await page.locator("#browse-tabs").textContent() ?? "",
        /Ready 118.*Delayed 3.*Leased 2.*Dead 0/s,
      );
      await page.locator("#items-pager").getByRole("button", { name: /Next/ }).click();
      await waitFor(
        "the second page",
        async () => (await pagerText(page, "items-pager")) === "51–100 of 118",
        { timeoutMs: UI_WAIT_MS },
      );
      rows = await tableRows(page, "items");
      assert.equal(rows[0][0], String(ids[52]));
      await Deno.mkdir(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: `${ARTIFACTS}/console-items.png`, fullPage: true });

      // Delayed, then leased: who holds them.
      await page.locator("#browse-tabs").getByRole("tab", { name: /Delayed/ }).click();
      await waitFor("the delayed items", async () => {
        const shown = (await tableRows(page, "items")).map((cells) => Number(cells[0]));
        return shown.length === 3 && delayed.every((id) => shown.includes(id));
      }, { timeoutMs: UI_WAIT_MS });
      await page.locator("#browse-tabs").getByRole("tab", { name: /Leased/ }).click();
      await waitFor("the leased items", async () => {
        const shown = await tableRows(page, "items");
        return shown.length === 2 &&
          shown.every((cells) => /^worker-a \(10\.0\.0\.9:4000\)/.test(cells[3]));
      }, { timeoutMs: UI_WAIT_MS });

      // A listed item opens the job panel.
      await page.locator("#items tbody tr").first().locator("button.job-link").click();
      await waitFor(
        "the job panel on the leased item",
        async () =>
          (await page.locator("#job-title").textContent()) === `Job ${ids[0]} in ${LONG_QUEUE}`,
        { timeoutMs: UI_WAIT_MS },
      );
      assert.equal(await page.locator("#job-state").textContent(), "leased");
      const details = await page.locator("#job-fields").textContent() ?? "";
      assert.match(details, /Attempts1/);
      assert.match(details, /Held byworker-a \(10\.0\.0\.9:4000\), since /);
      assert.match(details, /Value\{"n":0\}/);
      assert.match(details, /Put.+ago/);
      await page.screenshot({ path: `${ARTIFACTS}/console-job.png`, fullPage: true });

      // The worker's row shows what it holds; Quiet reaches it, Stop asks first.
      const workerRow = page.locator("#workers tbody tr", { hasText: "worker-a" });
      await waitFor(
        "what the worker holds",
        async () => new RegExp(`#${ids[0]}.*for \\d+ s`).test(await workerRow.textContent() ?? ""),
        { timeoutMs: UI_WAIT_MS },
      );
      await workerRow.getByRole("button", { name: "Quiet" }).click();
      await waitFor("quiet to reach the worker", () => told.includes("quiet"));
      const stop = workerRow.locator("button.stop");
      await stop.click();
      assert.equal(await stop.textContent(), "Stop it?");
      assert.deepEqual(told, ["quiet"], "one click does not stop it");
      await stop.click();
      await waitFor("stop to reach the worker", () => told.includes("stop"));
      await waitFor(
        "the worker's row to say so",
        async () => /stop asked/.test(await workerRow.textContent() ?? ""),
        { timeoutMs: UI_WAIT_MS },
      );

      // Dead letters: the Item column is the id the API takes; page, filter, bulk re-queue.
      await waitFor(
        "the dead letters' first page",
        async () => (await pagerText(page, "dead-pager")) === "1–50 of 60",
        { timeoutMs: UI_WAIT_MS },
      );
      const deadRows = await tableRows(page, "dead");
      assert.equal(deadRows[0][DEAD_QUEUE], "reports");
      assert.match(
        deadRows[0][DEAD_ITEM],
        new RegExp(`^${letters[0]} \\(was ${failing[0].id}\\)$`),
      );
      assert.match(deadRows[0][DEAD_ERROR], /renderer crashed/);
      await page.locator("#dead-queue").selectOption("reports.dead");
      const checks = page.locator("#dead tbody tr input[type=checkbox]");
      await checks.nth(0).check();
      await checks.nth(1).check();
      await page.getByRole("button", { name: "Re-queue 2" }).click();
      await waitFor("two letters back in reports", async () => {
        const [stats] = (await master.broker.stats("reports")).queues;
        return stats.ready === 2;
      }, { timeoutMs: UI_WAIT_MS });
      assert.deepEqual(
        (await master.broker.items("reports.dead", { state: "ready", limit: 500 })).items.map((i) =>
          i.id
        ),
        letters.slice(2),
        "the two selected went, by the ids shown",
      );
      await waitFor(
        "the page to show 58 left",
        async () => (await pagerText(page, "dead-pager")) === "1–50 of 58",
        { timeoutMs: UI_WAIT_MS },
      );
      const requeueAll = page.locator("#dead-requeue-all");
      await requeueAll.click();
      assert.equal(await requeueAll.textContent(), "Re-queue all 58?");
      await page.screenshot({ path: `${ARTIFACTS}/console-dead.png`, fullPage: true });
      await requeueAll.click();
      await waitFor("every letter back in reports", async () => {
        const [stats] = (await master.broker.stats("reports")).queues;
        return stats.ready === 60;
      }, { timeoutMs: UI_WAIT_MS });
      await waitFor(
        "no dead letters on the page",
        async () => await page.locator("#dead-empty").isVisible(),
        { timeoutMs: UI_WAIT_MS },
      );
      assert.match(await page.locator("#toast").textContent() ?? "", /Re-queued 58 dead letters/);

      // Purge a queue: asks first.
      const purge = page.locator("#queues tbody tr", { hasText: "reports" }).locator(
        "button.purge",
      );
      await purge.click();
      assert.equal(await purge.textContent(), "Purge 60?");
      await purge.click();
      await waitFor("reports purged", async () => {
        const [stats] = (await master.broker.stats("reports")).queues;
        return stats.ready === 0;
      }, { timeoutMs: UI_WAIT_MS });

      // The chart on a log scale over the last hour says so.
      await page.locator("#chart-range").selectOption("long");
      await page.locator("#chart-scale").selectOption("log");
      assert.match(
        await page.locator("#chart-caption").textContent() ?? "",
        /minute's average.*logarithmic/,
      );

      // 400 px wide: nothing scrolls sideways but the tables, and names break only at separators.
      await page.setViewportSize(CONSOLE_NARROW);
      await page.locator("#chart-range").selectOption("short");
      const overflow = await page.evaluate(() => {
        const root = (globalThis as unknown as {
          document: { documentElement: { scrollWidth: number; clientWidth: number } };
        }).document.documentElement;
        return root.scrollWidth - root.clientWidth;
      });
      assert.equal(overflow, 0, "the page does not scroll sideways at 400 px");
      // Each piece of a name between two break points (<wbr>) sits on one line.
      const brokenWords = await page.evaluate(`(() => {
        const broken = [];
        for (const name of document.querySelectorAll(".qname")) {
          for (const node of name.childNodes) {
            if (node.nodeType !== Node.TEXT_NODE || !node.textContent) continue;
            const range = document.createRange();
            range.selectNodeContents(node);
            const tops = new Set(Array.from(range.getClientRects(), (r) => Math.round(r.top)));
            if (tops.size > 1) broken.push(node.textContent);
          }
        }
        return broken;
      })()`) as string[];
      assert.deepEqual(brokenWords, [], "no name breaks inside a word");
      const browse = await page.locator("#browse").boundingBox();
      assert.ok(browse && browse.x >= 0 && browse.x + browse.width <= CONSOLE_NARROW.width);
      await page.screenshot({ path: `${ARTIFACTS}/console-narrow.png`, fullPage: true });

      assert.deepEqual(dialogs, [], "no dialog opened");
      assert.deepEqual(errors, [], "no error in the page");
    } finally {
      await browser.dispose();
      await worker.close();
      await producer.close();
      await http.close();
      await master.close();
    }
  },
);

browserTest(
  "a page of another origin can neither post a form nor fetch with the token",
  async () => {
    const master = await serve({
      listen: "127.0.0.1:0",
      authkey: KEY,
      retry: { maxAttempts: 1, backoffBaseMs: 0 },
    });
    const http = await serveHttp({ source: master, listen: "127.0.0.1:0", authkey: KEY });
    const client = await connect({ address: master.address, authkey: KEY });
    const q = client.queue("jobs");
    await q.put("victim");
    await q.fail((await q.get(1000))!, "boom");
    const [letter] = await master.broker.peek("jobs.dead", 1);
    const target = `${http.url}api/dead/requeue`;
    const token = httpToken(KEY);
    // The attacker's page: another origin (and another site: localhost, not 127.0.0.1).
    const attacker = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
      const path = new URL(request.url).pathname;
      const body = path === "/form"
        ? `<form id="f" method="POST" action="${target}">
           <input name="queue" value="jobs.dead"><input name="ids" value="${letter.id}">
         </form><script>document.getElementById("f").submit()</script>`
        : `<p id="out">pending</p><script>
           fetch(${JSON.stringify(target)}, {
             method: "POST",
             headers: { "Authorization": "Bearer ${token}", "Content-Type": "application/json" },
             body: JSON.stringify({ queue: "jobs.dead", ids: [${letter.id}] }),
           }).then((r) => { document.getElementById("out").textContent = "status " + r.status; },
                   (e) => { document.getElementById("out").textContent = "blocked"; });
         </script>`;
      return new Response(body, { headers: { "content-type": "text/html" } });
    });
    const evil = `http://localhost:${attacker.addr.port}`;
    const browser = await launch();
    try {
      const page = await browser.context.newPage();
      const answered = page.waitForResponse((r) => r.url() === target);
      await page.goto(`${evil}/form`);
      const response = await answered;
      assert.equal(response.status(), 403, "the cross-origin form post is refused");
      assert.match(await response.text(), /cross-(site|origin) request refused/);

      await page.goto(`${evil}/fetch`);
      await waitFor(
        "the fetch to settle",
        async () => (await page.locator("#out").textContent()) !== "pending",
        { timeoutMs: UI_WAIT_MS },
      );
      assert.equal(await page.locator("#out").textContent(), "blocked", "CORS blocks the fetch");

      assert.equal(
        (await master.broker.peek("jobs.dead", 10)).length,
        1,
        "the dead letter is still there",
      );
      assert.equal((await master.broker.stats("jobs")).queues[0].ready, 0, "nothing was re-queued");
    } finally {
      await browser.dispose();
      await attacker.shutdown();
      await client.close();
      await http.close();
      await master.close();
    }
  },
);
