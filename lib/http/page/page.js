/**
 * The dashboard's script, served as `/app.js` (see page.ts and server.ts). It
 * polls `GET /api/state` with the token in a header, updates the page in place
 * and posts the buttons' actions. Every text is set with `textContent`, never
 * as HTML. The placeholders in double braces are filled in by page.ts.
 *
 * Besides the tables it has a job lookup (`GET /api/jobs/ID`, shown in a
 * panel that follows a live job while it is open, with a Cancel button) and
 * a form that changes a queue's limits (`POST /api/limits`).
 *
 * It runs in the browser. Its JSDoc types name the DOM's types and the
 * server's own types for what `/api/state` returns; they hold under `checkJs`
 * with the DOM's libraries, but the project's `deno check` does not check this
 * file, since the DOM's declarations would clash with Deno's for all the rest.
 *
 * @module
 */

/** @import { DashboardState, DeadItem, QueueRow } from "../state.ts" */
/** @import { History } from "../rates.ts" */
/** @import { JobView, LimitsView } from "../jobs.ts" */

/**
 * A table row kept by `syncRows`, with the item it shows.
 *
 * @template T
 * @typedef {HTMLTableRowElement & { item: T }} Row
 */

/**
 * What `setTimeout` returns, or 0 for no timer.
 *
 * @typedef {ReturnType<typeof setTimeout> | 0} Timer
 */

"use strict";
(() => {
  const POLL_MS = Number("{{POLL_MS}}");
  const CONFIRM_MS = Number("{{CONFIRM_MS}}");
  const HISTORY_POINTS = Number("{{HISTORY_POINTS}}");
  const TOKEN_KEY = "taskq-token";
  /** @type {(id: string) => HTMLElement} */
  const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
  /** @type {string | null} */
  let token = null;
  /** @type {Timer} */
  let timer = 0;
  let generation = 0;
  /** @type {Timer} */
  let toastTimer = 0;
  /** @type {DashboardState | null} */
  let lastState = null;
  /** The master's clock less this browser's, as of the last state (ms). */
  let skew = 0;
  /** @type {number | null} the id of the job shown in the lookup panel */
  let shownJob = null;
  /** @type {JobView | null} what the panel shows of it */
  let shownView = null;
  let jobGeneration = 0;
  /** @type {string | null} the queue whose limits the form edits */
  let limitsQueue = null;
  /** @type {readonly string[]} states in which a job may still be cancelled */
  const LIVE_STATES = ["ready", "delayed", "leased"];

  /**
   * A new element.
   *
   * @template {keyof HTMLElementTagNameMap} K
   * @param {K} tag
   * @param {string} [className]
   * @param {string} [text]
   * @returns {HTMLElementTagNameMap[K]}
   */
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  /**
   * Sets a node's text, leaving it alone when it is already that.
   *
   * @param {Node} node
   * @param {string} text
   */
  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }
  /** @param {number} n */
  function fmtCount(n) {
    return n.toLocaleString("en-US");
  }
  /** @param {number} r */
  function fmtRate(r) {
    if (r === 0) return "0";
    if (r < 10) return r.toFixed(1);
    return Math.round(r).toLocaleString("en-US");
  }
  /** @param {number} ms */
  function fmtDuration(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + " min " + (s % 60) + " s";
    const h = Math.floor(m / 60);
    if (h < 48) return h + " h " + (m % 60) + " min";
    return Math.floor(h / 24) + " days";
  }
  /** @param {number} ms */
  function fmtAgo(ms) {
    return ms < 1000 ? "just now" : fmtDuration(ms) + " ago";
  }
  /** The master's clock now, as far as this page can tell (ms since the epoch). */
  function masterNow() {
    return Date.now() + skew;
  }
  /**
   * A time as the master's local time, and how long ago or ahead it is.
   *
   * @param {number} at ms since the epoch
   */
  function fmtWhen(at) {
    const delta = at - masterNow();
    const relative = delta > 0 ? "in " + fmtDuration(delta) : fmtAgo(-delta);
    return new Date(at).toLocaleString() + " (" + relative + ")";
  }
  /**
   * A queue's limits in short: `50/s · ≤3 · ≤1 per group`, or `none`.
   *
   * @param {LimitsView | undefined} limits
   */
  function fmtLimits(limits) {
    if (!limits) return "none";
    const parts = [];
    if (limits.rateCount > 0) parts.push(limits.rate);
    if (limits.concurrency > 0) parts.push("≤" + fmtCount(limits.concurrency));
    if (limits.groupConcurrency > 0) {
      parts.push("≤" + fmtCount(limits.groupConcurrency) + " per group");
    }
    return parts.length ? parts.join(" · ") : "none";
  }

  /**
   * Shows `text` for a while at the bottom of the page.
   *
   * @param {string} text
   * @param {boolean} [bad] whether it tells of a failure
   */
  function toast(text, bad) {
    const node = $("toast");
    node.textContent = text;
    node.className = bad ? "show bad" : "show";
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => {
      node.className = "";
    }, 3000);
  }

  function readToken() {
    const match = /(?:^#|&)token=([0-9a-fA-F]+)/.exec(location.hash);
    if (match) {
      sessionStorage.setItem(TOKEN_KEY, match[1]);
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem(TOKEN_KEY);
  }
  /** @param {string} message */
  function showLogin(message) {
    $("app").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    setConn("down", "no token");
  }
  /**
   * @param {string} kind
   * @param {string} text
   */
  function setConn(kind, text) {
    const node = $("conn");
    node.className = "conn " + kind;
    node.textContent = text;
  }

  /**
   * Keeps one child per item in container, keyed, so rows and their buttons survive refreshes.
   *
   * @template T
   * @template {HTMLElement} E
   * @param {HTMLElement} tbody
   * @param {T[]} items
   * @param {(item: T) => string} keyOf
   * @param {(item: T) => E} create
   * @param {(tr: E & { item: T }, item: T) => void} update
   */
  function syncRows(tbody, items, keyOf, create, update) {
    /** @type {Map<string | undefined, E & { item: T }>} */
    const existing = new Map();
    const children = /** @type {(E & { item: T })[]} */ (Array.from(tbody.children));
    for (const tr of children) existing.set(tr.dataset.key, tr);
    /** @type {Element | null} */
    let previous = null;
    for (const item of items) {
      const key = keyOf(item);
      let tr = existing.get(key);
      if (tr) existing.delete(key);
      else {
        tr = /** @type {E & { item: T }} */ (create(item));
        tr.dataset.key = key;
      }
      tr.item = item;
      update(tr, item);
      /** @type {ChildNode | null} */
      const next = previous ? previous.nextSibling : tbody.firstChild;
      if (next !== tr) tbody.insertBefore(tr, next);
      previous = tr;
    }
    for (const tr of existing.values()) tr.remove();
  }
  /**
   * Adds a cell of each class to `tr`.
   *
   * @param {HTMLTableRowElement} tr
   * @param {string[]} classes
   */
  function cells(tr, classes) {
    return classes.map((className) => tr.appendChild(el("td", className)));
  }

  /** @param {DashboardState} state */
  function renderCards(state) {
    /** @type {(f: (q: QueueRow) => number) => number} */
    const sum = (f) => state.queues.reduce((acc, q) => acc + f(q), 0);
    const cards = [
      ["Queues", fmtCount(state.queues.length)],
      ["Ready", fmtCount(sum((q) => q.ready))],
      ["Leased", fmtCount(sum((q) => q.leased))],
      ["Delayed", fmtCount(sum((q) => q.delayed))],
      ["Dead letters", fmtCount(state.dead.total)],
      ["Clients", fmtCount(state.clients)],
      ["Put/s", fmtRate(sum((q) => q.rates.put))],
      ["Done/s", fmtRate(sum((q) => q.rates.done))],
      ["Failed/s", fmtRate(sum((q) => q.rates.failed))],
    ];
    syncRows($("cards"), cards, (c) => c[0], (c) => {
      const card = el("div", "card");
      card.append(el("div", "value"), el("div", "label", c[0]));
      return card;
    }, (card, c) => setText(/** @type {Node} */ (card.firstChild), c[1]));
  }

  /** @param {DashboardState} state */
  function renderQueues(state) {
    const table = /** @type {HTMLTableElement} */ ($("queues"));
    syncRows(table.tBodies[0], state.queues, (q) => q.name, () => {
      const tr = /** @type {Row<QueueRow>} */ (el("tr"));
      cells(tr, [
        "name",
        "num",
        "num",
        "num",
        "num",
        "num",
        "num",
        "num",
        "num",
        "num",
        "num",
        "num",
        "state",
        "limits",
      ]);
      const stateCell = tr.cells[12];
      stateCell.append(el("span", "badge"));
      const button = el("button", "toggle");
      button.type = "button";
      button.addEventListener("click", () => {
        const row = tr.item;
        const path = row.paused ? "/api/queues/resume" : "/api/queues/pause";
        act(path, { queue: row.name }, (row.paused ? "Resumed " : "Paused ") + row.name);
      });
      stateCell.append(button);
      const limitsButton = el("button", "limits", "Limits");
      limitsButton.type = "button";
      limitsButton.addEventListener("click", () => openLimits(tr.item));
      tr.cells[13].append(el("span"), limitsButton);
      return tr;
    }, (tr, q) => {
      const values = [
        q.name,
        fmtCount(q.ready),
        fmtCount(q.leased),
        fmtCount(q.delayed),
        fmtCount(q.deadLetters),
        fmtCount(q.waiting),
        fmtRate(q.rates.put),
        fmtRate(q.rates.done),
        fmtRate(q.rates.failed),
        fmtCount(q.put),
        fmtCount(q.acked),
        fmtCount(q.failed),
      ];
      values.forEach((v, i) => setText(tr.cells[i], v));
      tr.cells[4].classList.toggle("hot", q.deadLetters > 0);
      tr.classList.toggle("paused", q.paused);
      setText(/** @type {Node} */ (tr.cells[12].firstChild), q.paused ? "paused" : "serving");
      setText(/** @type {Node} */ (tr.cells[12].lastChild), q.paused ? "Resume" : "Pause");
      const limitsText = /** @type {HTMLElement} */ (tr.cells[13].firstChild);
      setText(limitsText, fmtLimits(q.limits));
      limitsText.classList.toggle("muted", !q.limits);
    });
    $("queues-empty").hidden = state.queues.length > 0;
    table.hidden = state.queues.length === 0;
  }

  /** @param {DashboardState} state */
  function renderWorkers(state) {
    const table = /** @type {HTMLTableElement} */ ($("workers"));
    syncRows(table.tBodies[0], state.workers, (w) => String(w.id), () => {
      const tr = el("tr");
      cells(tr, ["name", "", "num", "num", "num"]);
      return tr;
    }, (tr, w) => {
      setText(tr.cells[0], w.name);
      setText(tr.cells[1], w.address);
      setText(tr.cells[2], fmtCount(w.held));
      setText(tr.cells[3], fmtDuration(state.now - w.connectedAt));
      setText(tr.cells[4], fmtAgo(state.now - w.lastSeenAt));
    });
    $("workers-empty").hidden = state.workers.length > 0;
    table.hidden = state.workers.length === 0;
  }

  /** @param {DashboardState} state */
  function renderDead(state) {
    const table = /** @type {HTMLTableElement} */ ($("dead"));
    const shown = state.dead.items.length;
    setText(
      $("dead-count"),
      state.dead.total === 0
        ? ""
        : (shown < state.dead.total
          ? "first " + shown + " of " + fmtCount(state.dead.total)
          : fmtCount(state.dead.total) + " in all"),
    );
    syncRows(table.tBodies[0], state.dead.items, (d) => d.queue + "#" + d.id, () => {
      const tr = /** @type {Row<DeadItem>} */ (el("tr"));
      const [, , , , , value, actions] = cells(tr, [
        "name",
        "num",
        "num",
        "num",
        "error",
        "value",
        "actions",
      ]);
      value.append(el("code"));
      const requeue = el("button", "requeue", "Re-queue");
      requeue.type = "button";
      requeue.addEventListener("click", () => {
        const d = tr.item;
        act(
          "/api/dead/requeue",
          { queue: d.queue, ids: [d.id] },
          "Re-queued item " + d.failedId + " to " + d.failedIn,
        );
      });
      const drop = el("button", "danger drop", "Drop");
      drop.type = "button";
      /** @type {Timer} */
      let armed = 0;
      drop.addEventListener("click", () => {
        const d = tr.item;
        if (!armed) {
          drop.classList.add("confirm");
          drop.textContent = "Drop for good?";
          armed = setTimeout(() => {
            armed = 0;
            drop.classList.remove("confirm");
            drop.textContent = "Drop";
          }, CONFIRM_MS);
          return;
        }
        clearTimeout(armed);
        armed = 0;
        act("/api/dead/drop", { queue: d.queue, ids: [d.id] }, "Dropped item " + d.id);
      });
      actions.append(requeue, drop);
      return tr;
    }, (tr, d) => {
      setText(tr.cells[0], d.letter ? d.failedIn : d.queue);
      setText(tr.cells[1], String(d.letter ? d.failedId : d.id));
      setText(tr.cells[2], d.letter ? String(d.attempts) : "");
      setText(tr.cells[3], d.failedAt ? fmtAgo(state.now - d.failedAt) : "");
      setText(tr.cells[4], d.letter ? d.error : "(not a dead letter)");
      setText(/** @type {Node} */ (tr.cells[5].firstChild), d.value);
      /** @type {HTMLButtonElement} */ (tr.cells[6].firstChild).disabled = !d.letter;
    });
    $("dead-empty").hidden = state.dead.total > 0;
    table.hidden = state.dead.items.length === 0;
  }

  /**
   * The round number at or above `value` that the chart's scale goes up to.
   *
   * @param {number} value
   */
  function niceMax(value) {
    const exp = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 2.5, 5, 10]) if (step * exp >= value) return step * exp;
    return 10 * exp;
  }

  /** @param {History} history */
  function drawChart(history) {
    const canvas = /** @type {HTMLCanvasElement} */ ($("chart"));
    const ratio = globalThis.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
    if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
    const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const left = 48, right = 12, top = 8, bottom = 22;
    const plotW = width - left - right, plotH = height - top - bottom;
    /** @type {["put" | "done" | "failed", string][]} */
    const series = [["put", "#2563eb"], ["done", "#16a34a"], ["failed", "#dc2626"]];
    let max = 1;
    for (const [name] of series) for (const v of history[name]) if (v > max) max = v;
    max = niceMax(max);
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#616e7c";
    ctx.strokeStyle = "#e4e7eb";
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let i = 0; i <= 4; i++) {
      const y = top + plotH - (plotH * i) / 4;
      ctx.beginPath();
      ctx.moveTo(left, Math.round(y) + 0.5);
      ctx.lineTo(left + plotW, Math.round(y) + 0.5);
      ctx.stroke();
      ctx.fillText(fmtRate((max * i) / 4), left - 6, y);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const spanMs = history.intervalMs * HISTORY_POINTS;
    /** @type {(agoMs: number) => number} */
    const xOf = (agoMs) => left + plotW * (1 - agoMs / spanMs);
    const minutes = Math.floor(spanMs / 60000);
    for (let m = minutes; m >= 0; m--) {
      ctx.fillText(m === 0 ? "now" : "-" + m + " min", xOf(m * 60000), top + plotH + 6);
    }
    const n = history.put.length;
    ctx.lineWidth = 2;
    ctx.lineJoin = "round";
    for (const [name, color] of series) {
      const values = history[name];
      if (values.length < 2) continue;
      ctx.strokeStyle = color;
      ctx.beginPath();
      values.forEach((v, i) => {
        const x = xOf((n - 1 - i) * history.intervalMs);
        const y = top + plotH - (plotH * v) / max;
        if (i === 0) ctx.moveTo(x, y);
        else ctx.lineTo(x, y);
      });
      ctx.stroke();
    }
  }

  /** @param {DashboardState} state */
  function render(state) {
    lastState = state;
    skew = state.now - Date.now();
    $("login").hidden = true;
    $("app").hidden = false;
    renderCards(state);
    renderQueues(state);
    renderWorkers(state);
    renderDead(state);
    drawChart(state.history);
    setText($("updated"), "updated " + new Date(state.now).toLocaleTimeString());
  }

  async function refresh() {
    clearTimeout(timer);
    const mine = ++generation;
    try {
      const response = await fetch("/api/state", {
        headers: { "Authorization": "Bearer " + token },
        cache: "no-store",
      });
      if (mine !== generation) return;
      if (response.status === 401) {
        sessionStorage.removeItem(TOKEN_KEY);
        showLogin("The master refused that token.");
        return;
      }
      if (!response.ok) throw new Error("HTTP " + response.status);
      render(await response.json());
      setConn("live", "live");
      if (shownJob !== null && shownView !== null && LIVE_STATES.includes(shownView.state)) {
        lookUp(shownJob, false);
      }
    } catch {
      if (mine !== generation) return;
      setConn("down", "master unreachable");
    }
    timer = setTimeout(refresh, POLL_MS);
  }

  /**
   * Posts an action, then tells how it went and refreshes.
   *
   * @param {string} path
   * @param {unknown} body
   * @param {string | ((reply: any) => [string, boolean])} done what to tell when it worked,
   *   or how to tell it from the reply (the text and whether it tells of a failure)
   * @returns {Promise<boolean>} whether the master took it
   */
  async function act(path, body, done) {
    try {
      const response = await fetch(path, {
        method: "POST",
        headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json" },
        body: JSON.stringify(body),
        cache: "no-store",
      });
      const reply = await response.json().catch(() => ({}));
      if (response.ok) {
        if (typeof done === "string") toast(done);
        else toast(...done(reply));
      } else toast(reply.error || "HTTP " + response.status, true);
      refresh();
      return response.ok;
    } catch {
      toast("master unreachable", true);
      refresh();
      return false;
    }
  }

  /**
   * Opens the limits form on a queue, filled with its limits now.
   *
   * @param {QueueRow} row
   */
  function openLimits(row) {
    limitsQueue = row.name;
    const limits = row.limits;
    $("limits-queue").textContent = row.name;
    /** @type {HTMLInputElement} */ ($("limits-rate")).value = limits && limits.rateCount > 0
      ? limits.rate
      : "";
    /** @type {HTMLInputElement} */ ($("limits-concurrency")).value = limits && limits.concurrency
      ? String(limits.concurrency)
      : "";
    /** @type {HTMLInputElement} */ ($("limits-group")).value = limits && limits.groupConcurrency
      ? String(limits.groupConcurrency)
      : "";
    $("limits-form").hidden = false;
    $("limits-rate").focus();
  }

  /**
   * A form field as a limit: empty is 0 (none).
   *
   * @param {string} id
   */
  function limitField(id) {
    const text = /** @type {HTMLInputElement} */ ($(id)).value.trim();
    return text === "" ? 0 : Number(text);
  }

  async function saveLimits() {
    if (limitsQueue === null) return;
    const queue = limitsQueue;
    const rate = /** @type {HTMLInputElement} */ ($("limits-rate")).value.trim() || "0";
    const body = {
      queue,
      rate,
      concurrency: limitField("limits-concurrency"),
      groupConcurrency: limitField("limits-group"),
    };
    const ok = await act("/api/limits", body, (reply) => [
      "Limits of " + queue + ": " + fmtLimits(reply),
      false,
    ]);
    if (ok && limitsQueue === queue) {
      $("limits-form").hidden = true;
      limitsQueue = null;
    }
  }

  /**
   * Adds a term and its description to the job panel's list.
   *
   * @param {HTMLElement} list
   * @param {string} term
   * @param {string | Node} what
   * @param {string} [className]
   */
  function field(list, term, what, className) {
    const dd = el("dd", className);
    if (typeof what === "string") dd.textContent = what;
    else dd.append(what);
    list.append(el("dt", undefined, term), dd);
  }

  /** @param {JobView} job */
  function renderJob(job) {
    shownView = job;
    $("job-message").hidden = true;
    $("job").hidden = false;
    setText($("job-title"), "Job " + job.id + " in " + job.queue);
    const badge = $("job-state");
    badge.className = "state " + job.state;
    setText(badge, job.state);
    const cancel = /** @type {HTMLButtonElement} */ ($("job-cancel"));
    cancel.hidden = !LIVE_STATES.includes(job.state);
    const list = el("dl");
    list.id = "job-fields";
    field(list, "Attempts", String(job.attempts));
    field(list, "Priority", String(job.priority));
    if (job.group !== undefined) field(list, "Group", job.group);
    if (job.key !== undefined) field(list, "Key", job.key);
    if (job.holder) {
      const since = job.leasedAt !== undefined ? ", since " + fmtWhen(job.leasedAt) : "";
      const where = job.holder.address ? " (" + job.holder.address + ")" : "";
      field(list, "Held by", job.holder.name + where + since);
    }
    if (job.leaseExpiresAt !== undefined) {
      field(list, "Lease expires", fmtWhen(job.leaseExpiresAt));
    }
    if (job.progress) {
      const box = el("div", "progress");
      const bar = el("progress");
      bar.max = 100;
      if (job.progress.percent !== undefined) bar.value = job.progress.percent;
      const words = [];
      if (job.progress.percent !== undefined) {
        words.push(Math.round(job.progress.percent * 10) / 10 + "%");
      }
      if (job.progress.message !== undefined) words.push(job.progress.message);
      words.push("reported " + fmtAgo(masterNow() - job.progress.at));
      box.append(bar, el("span", "progress-text", words.join(" · ")));
      field(list, "Progress", box);
    }
    if (job.error !== null) field(list, "Error", job.error, "error");
    if (job.result !== null) field(list, "Result", el("code", undefined, job.result));
    field(
      list,
      "Value",
      job.value !== undefined
        ? el("code", undefined, job.value)
        : "(not kept: larger than the history keeps)",
    );
    field(list, "Put", fmtWhen(job.createdAt));
    if (job.readyAt !== undefined) field(list, "Ready at", fmtWhen(job.readyAt));
    if (job.finishedAt !== undefined) field(list, "Finished", fmtWhen(job.finishedAt));
    $("job-fields").replaceWith(list);
  }

  /** @param {string} text */
  function jobMessage(text) {
    shownView = null;
    $("job").hidden = true;
    const node = $("job-message");
    node.hidden = false;
    node.textContent = text;
  }

  /**
   * Looks a job up and shows it in the panel.
   *
   * @param {number} id
   * @param {boolean} fresh whether it was just asked for (not a refresh of the panel)
   */
  async function lookUp(id, fresh) {
    const mine = ++jobGeneration;
    try {
      const response = await fetch("/api/jobs/" + id, {
        headers: { "Authorization": "Bearer " + token },
        cache: "no-store",
      });
      if (mine !== jobGeneration) return;
      if (response.status === 401) {
        sessionStorage.removeItem(TOKEN_KEY);
        showLogin("The master refused that token.");
        return;
      }
      const reply = await response.json().catch(() => ({}));
      if (mine !== jobGeneration) return;
      if (response.ok) renderJob(reply);
      else if (fresh || response.status === 404) {
        jobMessage(reply.error || "HTTP " + response.status);
      }
    } catch {
      if (mine === jobGeneration && fresh) jobMessage("master unreachable");
    }
  }

  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = /** @type {HTMLInputElement} */ ($("token")).value.trim();
    if (!/^[0-9a-fA-F]+$/.test(value)) {
      $("login-error").textContent = "A token is 64 hexadecimal digits.";
      return;
    }
    token = value;
    sessionStorage.setItem(TOKEN_KEY, token);
    refresh();
  });
  $("job-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = /** @type {HTMLInputElement} */ ($("job-id")).value.trim().replace(/^#/, "");
    if (!/^[0-9]{1,16}$/.test(text) || Number(text) < 1) {
      jobMessage("A job id is a positive whole number (as taskq put --ids prints).");
      shownJob = null;
      return;
    }
    shownJob = Number(text);
    disarmCancel();
    lookUp(shownJob, true);
  });
  /** @type {Timer} */
  let cancelArmed = 0;
  const cancelButton = /** @type {HTMLButtonElement} */ ($("job-cancel"));
  function disarmCancel() {
    clearTimeout(cancelArmed);
    cancelArmed = 0;
    cancelButton.classList.remove("confirm");
    cancelButton.textContent = "Cancel job";
  }
  cancelButton.addEventListener("click", async () => {
    const id = shownJob;
    if (id === null) return;
    if (!cancelArmed) {
      cancelButton.classList.add("confirm");
      cancelButton.textContent = "Cancel for good?";
      cancelArmed = setTimeout(disarmCancel, CONFIRM_MS);
      return;
    }
    disarmCancel();
    await act(
      "/api/jobs/cancel",
      { ids: [id] },
      (reply) =>
        reply.cancelled && reply.cancelled.includes(id)
          ? ["Cancelled job " + id, false]
          : ["Job " + id + " was not cancelled: it finished already", true],
    );
    if (shownJob === id) lookUp(id, false);
  });
  $("limits-form").addEventListener("submit", (event) => {
    event.preventDefault();
    saveLimits();
  });
  $("limits-close").addEventListener("click", () => {
    $("limits-form").hidden = true;
    limitsQueue = null;
  });
  globalThis.addEventListener("resize", () => {
    if (lastState) drawChart(lastState.history);
  });

  document.title = "taskq · " + location.host;
  $("where").textContent = location.host;
  token = readToken();
  if (token) refresh();
  else showLogin("");
})();
