/**
 * The dashboard's files, inlined so the compiled binary needs nothing on disk:
 * one HTML page, its stylesheet and its script. No framework: the script
 * polls `GET /api/state` every second with the token in a header and updates
 * the tables in place. It builds every piece of text with `textContent` (never
 * HTML), so queue names, errors and values always show as text; the page's
 * Content-Security-Policy (see server.ts) forbids inline script besides.
 *
 * The token comes from the address's fragment (`/#token=...`, never sent to
 * the server or kept in its logs) or is typed in, and is kept in the tab's
 * session storage only.
 *
 * @module
 */

import { DEFAULT_SAMPLE_MS, HISTORY_POINTS } from "./rates.ts";

/** Milliseconds per minute. */
const MS_PER_MINUTE = 60_000;

/** Milliseconds between two refreshes of the page. */
export const PAGE_POLL_MS = 1_000;

/** Milliseconds a "drop" button waits for its confirming second click. */
const CONFIRM_MS = 4_000;

/** The page. */
export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>taskq</title>
<link rel="stylesheet" href="/app.css">
<script src="/app.js" defer></script>
</head>
<body>
<header>
  <h1>taskq</h1>
  <span id="where" class="muted"></span>
  <span id="conn" class="conn">connecting…</span>
  <span id="updated" class="muted"></span>
</header>
<main>
<section id="login" hidden>
  <h2>Token needed</h2>
  <p>Run <code>taskq http-token</code> with the master's key (<code>--authkey-file FILE</code> or
  <code>TASKQ_AUTHKEY</code>) and paste the token, or open <code>/#token=TOKEN</code>.</p>
  <form id="login-form">
    <input id="token" type="password" autocomplete="off" spellcheck="false" aria-label="token">
    <button type="submit">Open</button>
  </form>
  <p id="login-error" class="error"></p>
</section>
<div id="app" hidden>
  <section class="cards" id="cards"></section>
  <section>
    <h2>Throughput <small>items per second, last ${
  HISTORY_POINTS * DEFAULT_SAMPLE_MS / MS_PER_MINUTE
} minutes at most</small></h2>
    <div class="legend"><span class="put">put</span><span class="done">done</span><span class="failed">failed</span></div>
    <canvas id="chart" aria-label="throughput chart"></canvas>
  </section>
  <section>
    <h2>Queues</h2>
    <table id="queues">
      <thead><tr>
        <th>Queue</th><th class="num">Ready</th><th class="num">Leased</th>
        <th class="num">Delayed</th><th class="num">Dead</th><th class="num">Waiting gets</th>
        <th class="num">Put/s</th><th class="num">Done/s</th><th class="num">Failed/s</th>
        <th class="num">Put</th><th class="num">Done</th><th class="num">Failed</th>
        <th>State</th>
      </tr></thead>
      <tbody></tbody>
    </table>
    <p class="empty" id="queues-empty">No queues yet: they appear with their first put or get.</p>
  </section>
  <section>
    <h2>Connected clients</h2>
    <table id="workers">
      <thead><tr>
        <th>Name</th><th>Address</th><th class="num">Items in hand</th>
        <th class="num">Connected for</th><th class="num">Last seen</th>
      </tr></thead>
      <tbody></tbody>
    </table>
    <p class="empty" id="workers-empty">No client is connected.</p>
  </section>
  <section>
    <h2>Dead letters <small id="dead-count"></small></h2>
    <table id="dead">
      <thead><tr>
        <th>Queue</th><th class="num">Item</th><th class="num">Attempts</th>
        <th class="num">Failed</th><th>Last error</th><th>Value</th><th>Actions</th>
      </tr></thead>
      <tbody></tbody>
    </table>
    <p class="empty" id="dead-empty">No dead letters.</p>
  </section>
</div>
<div id="toast" role="status" aria-live="polite"></div>
</main>
</body>
</html>
`;

/** The stylesheet. */
export const PAGE_CSS = `:root {
  --fg: #1f2933; --muted: #616e7c; --line: #e4e7eb; --bg: #f5f7fa; --card: #fff;
  --put: #2563eb; --done: #16a34a; --failed: #dc2626; --warn: #b45309;
}
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); }
header { display: flex; align-items: baseline; gap: 16px; padding: 12px 24px;
  background: #102a43; color: #fff; }
header h1 { margin: 0; font-size: 20px; letter-spacing: .5px; }
header .muted { color: #bcccdc; }
.conn { padding: 1px 8px; border-radius: 10px; font-size: 12px; background: #627d98; }
.conn.live { background: var(--done); }
.conn.down { background: var(--failed); }
main { max-width: 1280px; margin: 0 auto; padding: 16px 24px 48px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 12px 16px; margin-bottom: 16px; }
section.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(120px, 1fr));
  gap: 8px; background: none; border: 0; padding: 0; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 8px 12px; }
.card .value { font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .4px; }
h2 { margin: 0 0 8px; font-size: 16px; }
h2 small { font-weight: normal; color: var(--muted); font-size: 12px; margin-left: 8px; }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 12px; color: var(--muted); font-weight: 600; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafbfc; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.name { font-weight: 600; word-break: break-all; max-width: 320px; }
td.error { color: var(--failed); white-space: pre-wrap; word-break: break-word; max-width: 380px; }
td.value code { word-break: break-all; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f0f4f8;
  padding: 1px 4px; border-radius: 3px; }
.empty { color: var(--muted); margin: 8px 0 0; }
.muted { color: var(--muted); }
.badge { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 12px;
  background: #e3f8e9; color: #15803d; margin-right: 6px; }
tr.paused .badge { background: #fff3c4; color: var(--warn); }
tr.paused td.name { color: var(--warn); }
.hot { color: var(--failed); font-weight: 600; }
button { font: inherit; font-size: 12px; padding: 2px 10px; border: 1px solid #9fb3c8;
  border-radius: 4px; background: #fff; color: var(--fg); cursor: pointer; margin-right: 4px; }
button:hover { background: #f0f4f8; }
button:disabled { opacity: .5; cursor: default; }
button.danger { border-color: #f29b9b; color: var(--failed); }
button.danger.confirm { background: var(--failed); color: #fff; }
.legend span { margin-right: 16px; font-size: 12px; color: var(--muted); }
.legend span::before { content: ""; display: inline-block; width: 12px; height: 3px;
  margin-right: 6px; vertical-align: middle; }
.legend .put::before { background: var(--put); }
.legend .done::before { background: var(--done); }
.legend .failed::before { background: var(--failed); }
canvas { width: 100%; height: 170px; display: block; }
#login input { width: min(640px, 100%); font: 13px ui-monospace, monospace; padding: 6px; }
.error { color: var(--failed); }
#toast { position: fixed; right: 24px; bottom: 24px; max-width: 480px; padding: 8px 14px;
  border-radius: 6px; background: #102a43; color: #fff; opacity: 0; transition: opacity .2s;
  pointer-events: none; }
#toast.show { opacity: .95; }
#toast.bad { background: var(--failed); }
`;

/** The script. */
export const PAGE_JS = `"use strict";
(() => {
  const POLL_MS = ${PAGE_POLL_MS};
  const CONFIRM_MS = ${CONFIRM_MS};
  const HISTORY_POINTS = ${HISTORY_POINTS};
  const TOKEN_KEY = "taskq-token";
  const $ = (id) => document.getElementById(id);
  let token = null;
  let timer = 0;
  let generation = 0;
  let toastTimer = 0;
  let lastState = null;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }
  function fmtCount(n) {
    return n.toLocaleString("en-US");
  }
  function fmtRate(r) {
    if (r === 0) return "0";
    if (r < 10) return r.toFixed(1);
    return Math.round(r).toLocaleString("en-US");
  }
  function fmtDuration(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + " min " + (s % 60) + " s";
    const h = Math.floor(m / 60);
    if (h < 48) return h + " h " + (m % 60) + " min";
    return Math.floor(h / 24) + " days";
  }
  function fmtAgo(ms) {
    return ms < 1000 ? "just now" : fmtDuration(ms) + " ago";
  }

  function toast(text, bad) {
    const node = $("toast");
    node.textContent = text;
    node.className = bad ? "show bad" : "show";
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { node.className = ""; }, 3000);
  }

  function readToken() {
    const match = /(?:^#|&)token=([0-9a-fA-F]+)/.exec(location.hash);
    if (match) {
      sessionStorage.setItem(TOKEN_KEY, match[1]);
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem(TOKEN_KEY);
  }
  function showLogin(message) {
    $("app").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    setConn("down", "no token");
  }
  function setConn(kind, text) {
    const node = $("conn");
    node.className = "conn " + kind;
    node.textContent = text;
  }

  /** Keeps one child per item in container, keyed, so rows and their buttons survive refreshes. */
  function syncRows(tbody, items, keyOf, create, update) {
    const existing = new Map();
    for (const tr of Array.from(tbody.children)) existing.set(tr.dataset.key, tr);
    let previous = null;
    for (const item of items) {
      const key = keyOf(item);
      let tr = existing.get(key);
      if (tr) existing.delete(key);
      else {
        tr = create(item);
        tr.dataset.key = key;
      }
      tr.item = item;
      update(tr, item);
      const next = previous ? previous.nextSibling : tbody.firstChild;
      if (next !== tr) tbody.insertBefore(tr, next);
      previous = tr;
    }
    for (const tr of existing.values()) tr.remove();
  }
  function cells(tr, classes) {
    return classes.map((className) => tr.appendChild(el("td", className)));
  }

  function renderCards(state) {
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
    }, (card, c) => setText(card.firstChild, c[1]));
  }

  function renderQueues(state) {
    syncRows($("queues").tBodies[0], state.queues, (q) => q.name, (q) => {
      const tr = el("tr");
      cells(tr, [
        "name", "num", "num", "num", "num", "num", "num", "num", "num", "num", "num", "num", "state",
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
      return tr;
    }, (tr, q) => {
      const values = [
        q.name, fmtCount(q.ready), fmtCount(q.leased), fmtCount(q.delayed), fmtCount(q.deadLetters),
        fmtCount(q.waiting), fmtRate(q.rates.put), fmtRate(q.rates.done), fmtRate(q.rates.failed),
        fmtCount(q.put), fmtCount(q.acked), fmtCount(q.failed),
      ];
      values.forEach((v, i) => setText(tr.cells[i], v));
      tr.cells[4].classList.toggle("hot", q.deadLetters > 0);
      tr.classList.toggle("paused", q.paused);
      setText(tr.cells[12].firstChild, q.paused ? "paused" : "serving");
      setText(tr.cells[12].lastChild, q.paused ? "Resume" : "Pause");
    });
    $("queues-empty").hidden = state.queues.length > 0;
    $("queues").hidden = state.queues.length === 0;
  }

  function renderWorkers(state) {
    syncRows($("workers").tBodies[0], state.workers, (w) => String(w.id), () => {
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
    $("workers").hidden = state.workers.length === 0;
  }

  function renderDead(state) {
    const shown = state.dead.items.length;
    setText($("dead-count"), state.dead.total === 0 ? "" :
      (shown < state.dead.total ? "first " + shown + " of " + fmtCount(state.dead.total) :
        fmtCount(state.dead.total) + " in all"));
    syncRows($("dead").tBodies[0], state.dead.items, (d) => d.queue + "#" + d.id, () => {
      const tr = el("tr");
      const [, , , , , value, actions] = cells(tr, ["name", "num", "num", "num", "error", "value", "actions"]);
      value.append(el("code"));
      const requeue = el("button", "requeue", "Re-queue");
      requeue.type = "button";
      requeue.addEventListener("click", () => {
        const d = tr.item;
        act("/api/dead/requeue", { queue: d.queue, ids: [d.id] },
          "Re-queued item " + d.failedId + " to " + d.failedIn);
      });
      const drop = el("button", "danger drop", "Drop");
      drop.type = "button";
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
      setText(tr.cells[5].firstChild, d.value);
      tr.cells[6].firstChild.disabled = !d.letter;
    });
    $("dead-empty").hidden = state.dead.total > 0;
    $("dead").hidden = state.dead.items.length === 0;
  }

  function niceMax(value) {
    const exp = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 2.5, 5, 10]) if (step * exp >= value) return step * exp;
    return 10 * exp;
  }

  function drawChart(history) {
    const canvas = $("chart");
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
    if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const left = 48, right = 12, top = 8, bottom = 22;
    const plotW = width - left - right, plotH = height - top - bottom;
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

  function render(state) {
    lastState = state;
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
    } catch (error) {
      if (mine !== generation) return;
      setConn("down", "master unreachable");
    }
    timer = setTimeout(refresh, POLL_MS);
  }

  async function act(path, body, done) {
    try {
      const response = await fetch(path, {
        method: "POST",
        headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json" },
        body: JSON.stringify(body),
        cache: "no-store",
      });
      const reply = await response.json().catch(() => ({}));
      if (response.ok) toast(done);
      else toast(reply.error || "HTTP " + response.status, true);
    } catch (error) {
      toast("master unreachable", true);
    }
    refresh();
  }

  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token").value.trim();
    if (!/^[0-9a-fA-F]+$/.test(value)) {
      $("login-error").textContent = "A token is 64 hexadecimal digits.";
      return;
    }
    token = value;
    sessionStorage.setItem(TOKEN_KEY, token);
    refresh();
  });
  window.addEventListener("resize", () => { if (lastState) drawChart(lastState.history); });

  document.title = "taskq · " + location.host;
  $("where").textContent = location.host;
  token = readToken();
  if (token) refresh();
  else showLogin("");
})();
`;
