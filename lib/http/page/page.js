/**
 * The dashboard's script, served as `/app.js` (see page.ts and server.ts). It
 * polls `GET /api/state` with the token in a header, updates the page in place
 * and posts the buttons' actions. Every text is set with `textContent`, never
 * as HTML. The placeholders in double braces are filled in by page.ts.
 *
 * Besides the tables it has a job lookup (`GET /api/jobs/ID`, shown in a
 * panel that follows a live job while it is open, with a Cancel button),
 * reachable from the search box and from every item listed; a form that
 * changes a queue's limits (`POST /api/limits`); a panel that browses a
 * queue's ready, delayed, leased and dead items page by page
 * (`GET /api/queues/items`, `GET /api/dead?queue=`); dead letters page by
 * page with a queue filter, re-queued or dropped one by one, as selected or
 * all at once (`GET /api/dead`, `POST /api/dead/requeue|drop`); a queue's
 * Purge button and a client's Quiet and Stop buttons (`POST
 * /api/queues/purge`, `POST /api/sessions/control`). What destroys work asks
 * for a second click first. Queue rows come a page at a time
 * (`/api/state?offset=&limit=&filter=`).
 *
 * It runs in the browser. Its JSDoc types name the DOM's types and the
 * server's own types for what `/api/state` returns; they hold under `checkJs`
 * with the DOM's libraries, but the project's `deno check` does not check this
 * file, since the DOM's declarations would clash with Deno's for all the rest.
 *
 * @module
 */

/** @import { ClientRow, DashboardState, DeadItem, QueueRow } from "../state.ts" */
/** @import { DeadReply } from "../server.ts" */
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
  const LONG_HISTORY_POINTS = Number("{{LONG_HISTORY_POINTS}}");
  /** Queue rows asked for at a time. */
  const QUEUE_ROWS = Number("{{QUEUE_ROWS}}");
  /** Items and dead letters asked for at a time. */
  const ITEM_ROWS = Number("{{ITEM_ROWS}}");
  /** On the auto scale, how many times one series must outpeak another for a log scale. */
  const AUTO_LOG_RATIO = 20;
  /** Least room between two labels of the chart's scale, in CSS pixels. */
  const MIN_TICK_GAP_PX = 14;
  /** Milliseconds the queue filter waits for typing to pause. */
  const FILTER_WAIT_MS = 250;
  const CHART_KEY = "taskq-chart";
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
  /** Where the queue table's page starts, and the text its names must hold. */
  let queueOffset = 0;
  let queueFilter = "";
  /** @type {Timer} */
  let filterTimer = 0;
  /** @type {string | null} the queue whose items the items panel shows */
  let browseQueue = null;
  /** Which of its items: ready, delayed, leased or dead. */
  let browseState = "ready";
  let browseOffset = 0;
  let browseGeneration = 0;
  /** The dead letters' page and filter (a dead-letter queue, or "" for all). */
  let deadOffset = 0;
  let deadFilter = "";
  let deadGeneration = 0;
  /** @type {DeadReply | null} */
  let lastDead = null;
  /** @type {Set<string>} the selected dead letters, as `QUEUE#ID` */
  const selected = new Set();
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

  /**
   * A queue's name as a node that a line may break only after `.`, `-`, `_`,
   * `/`, `:` or `@`, never inside a word.
   *
   * @param {string} name
   */
  function nameNode(name) {
    const span = el("span", "qname");
    name.split(/(?<=[.\-_/:@])/).forEach((part, i) => {
      if (i > 0) span.append(el("wbr"));
      span.append(document.createTextNode(part));
    });
    return span;
  }
  /**
   * Shows `name` in `node` (as {@link nameNode}), leaving it alone when it already does.
   *
   * @param {HTMLElement} node
   * @param {string} name
   */
  function setName(node, name) {
    if (node.textContent !== name || !node.firstChild) node.replaceChildren(nameNode(name));
  }

  /**
   * A pager in the element `id`: Prev, "1–50 of 120", Next.
   *
   * @param {string} id
   * @param {(offset: number) => void} go called with the offset a button asks for
   */
  function makePager(id, go) {
    const box = $(id);
    const prev = el("button", "prev", "‹ Prev");
    prev.type = "button";
    const text = el("span", "pager-text");
    const next = el("button", "next", "Next ›");
    next.type = "button";
    box.append(prev, text, next);
    const at = { offset: 0, limit: 1, total: 0 };
    prev.addEventListener("click", () => go(Math.max(0, at.offset - at.limit)));
    next.addEventListener("click", () => go(at.offset + at.limit));
    return {
      /**
       * @param {number} offset
       * @param {number} limit
       * @param {number} total
       */
      show(offset, limit, total) {
        at.offset = offset;
        at.limit = limit;
        at.total = total;
        setText(
          text,
          total === 0 ? "none" : fmtCount(Math.min(offset + 1, total)) + "–" +
            fmtCount(Math.min(offset + limit, total)) + " of " + fmtCount(total),
        );
        prev.disabled = offset <= 0;
        next.disabled = offset + limit >= total;
        box.hidden = total <= limit && offset === 0;
      },
    };
  }

  /**
   * Makes `button` ask for a second click (within CONFIRM_MS) before it runs `run`.
   *
   * @param {HTMLButtonElement} button
   * @param {() => string} confirmText what the button says while it waits
   * @param {() => void} run
   */
  function confirmButton(button, confirmText, run) {
    /** @type {Timer} */
    let armed = 0;
    let label = "";
    const disarm = () => {
      clearTimeout(armed);
      armed = 0;
      button.classList.remove("confirm");
      if (label) button.textContent = label;
    };
    button.addEventListener("click", () => {
      if (!armed) {
        label = button.textContent || "";
        button.classList.add("confirm");
        button.textContent = confirmText();
        armed = setTimeout(disarm, CONFIRM_MS);
        return;
      }
      disarm();
      run();
    });
  }

  /**
   * A button that opens the job panel on job `id`.
   *
   * @param {number} id
   * @param {string} [text]
   */
  function jobButton(id, text) {
    const button = el("button", "link job-link", text === undefined ? String(id) : text);
    button.type = "button";
    button.title = "show job " + id;
    button.addEventListener("click", () => showJob(id));
    return button;
  }

  /** @param {DashboardState} state */
  function renderCards(state) {
    const t = state.totals;
    const others = state.others;
    const cards = [
      ["Queues", fmtCount(t.rows + others.queues)],
      ["Ready", fmtCount(t.ready + others.ready)],
      ["Leased", fmtCount(t.leased + others.leased)],
      ["Delayed", fmtCount(t.delayed + others.delayed)],
      ["Dead letters", fmtCount(state.dead.total)],
      ["Clients", fmtCount(state.clients)],
      ["Put/s", fmtRate(t.rates.put)],
      ["Done/s", fmtRate(t.rates.done)],
      ["Failed/s", fmtRate(t.rates.failed)],
    ];
    syncRows($("cards"), cards, (c) => c[0], (c) => {
      const card = el("div", "card");
      card.append(el("div", "value"), el("div", "label", c[0]));
      return card;
    }, (card, c) => setText(/** @type {Node} */ (card.firstChild), c[1]));
  }

  const queuesPager = makePager("queues-pager", (offset) => {
    queueOffset = offset;
    refresh();
  });

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
        "num wide",
        "num",
        "num",
        "num",
        "num wide",
        "num wide",
        "num wide",
        "state",
        "limits",
        "actions",
      ]);
      const browse = el("button", "link browse");
      browse.type = "button";
      browse.title = "browse its items";
      browse.addEventListener("click", () => openBrowse(tr.item.name, "ready"));
      tr.cells[0].append(browse);
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
      const purge = el("button", "danger purge", "Purge");
      purge.type = "button";
      confirmButton(
        purge,
        () => "Purge " + fmtCount(tr.item.ready + tr.item.delayed) + "?",
        () => {
          const name = tr.item.name;
          act("/api/queues/purge", { queue: name }, (reply) => [
            "Purged " + fmtCount(reply.purged) + " items of " + name,
            false,
          ]);
        },
      );
      tr.cells[14].append(purge);
      return tr;
    }, (tr, q) => {
      setName(/** @type {HTMLElement} */ (tr.cells[0].firstChild), q.name);
      const values = [
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
      values.forEach((v, i) => setText(tr.cells[i + 1], v));
      tr.cells[4].classList.toggle("hot", q.deadLetters > 0);
      tr.classList.toggle("paused", q.paused);
      setText(/** @type {Node} */ (tr.cells[12].firstChild), q.paused ? "paused" : "serving");
      setText(/** @type {Node} */ (tr.cells[12].lastChild), q.paused ? "Resume" : "Pause");
      const limitsText = /** @type {HTMLElement} */ (tr.cells[13].firstChild);
      setText(limitsText, fmtLimits(q.limits));
      limitsText.classList.toggle("muted", !q.limits);
    });
    const page = state.page;
    queuesPager.show(page.offset, page.limit, page.total);
    setText(
      $("queues-count"),
      page.filter
        ? fmtCount(page.total) + " of " + fmtCount(state.totals.rows) + " match"
        : (state.totals.rows > 0 ? fmtCount(state.totals.rows) : ""),
    );
    const others = $("queues-others");
    others.hidden = state.others.queues === 0;
    setText(
      others,
      state.others.queues === 0 ? "" : fmtCount(state.others.queues) +
        " more queues, not listed (only the deepest are): " + fmtCount(state.others.ready) +
        " ready, " + fmtCount(state.others.leased) + " leased, " +
        fmtCount(state.others.delayed) + " delayed",
    );
    $("queues-empty").hidden = state.queues.length > 0 || page.total > 0 || page.filter !== "";
    table.hidden = state.queues.length === 0;
  }

  /** @param {DashboardState} state */
  function renderWorkers(state) {
    const table = /** @type {HTMLTableElement} */ ($("workers"));
    syncRows(table.tBodies[0], state.workers, (w) => String(w.id), () => {
      const tr = /** @type {Row<ClientRow>} */ (el("tr"));
      cells(tr, ["name", "", "num", "holding", "num", "num", "actions"]);
      tr.cells[3].append(el("div", "held-list"), el("span", "muted more"));
      const quiet = el("button", "quiet", "Quiet");
      quiet.type = "button";
      quiet.title = "stop taking work; finish what it holds, then exit";
      quiet.addEventListener("click", () => control(tr.item, "quiet"));
      const stop = el("button", "danger stop", "Stop");
      stop.type = "button";
      stop.title = "stop as on SIGTERM (its running work gets its grace)";
      confirmButton(stop, () => "Stop it?", () => control(tr.item, "stop"));
      tr.cells[6].append(quiet, stop, el("span", "badge told"));
      return tr;
    }, (tr, w) => {
      setText(tr.cells[0], w.name);
      setText(tr.cells[1], w.address);
      setText(tr.cells[2], fmtCount(w.held));
      const holding = w.holding || [];
      syncRows(
        /** @type {HTMLElement} */ (tr.cells[3].firstChild),
        holding,
        (h) => String(h.id),
        (h) => {
          const line = el("div", "held");
          line.append(jobButton(h.id, "#" + h.id), el("span", "held-queue"), el("span", "muted"));
          return line;
        },
        (line, h) => {
          setName(/** @type {HTMLElement} */ (line.children[1]), h.queue);
          setText(
            line.children[2],
            " for " + fmtDuration(state.now - h.leasedAt) +
              (h.leaseExpiresAt > state.now
                ? ", lease ends in " + fmtDuration(h.leaseExpiresAt - state.now)
                : ""),
          );
        },
      );
      const more = w.held - holding.length;
      setText(/** @type {Node} */ (tr.cells[3].lastChild), more > 0 ? "and " + more + " more" : "");
      setText(tr.cells[4], fmtDuration(state.now - w.connectedAt));
      setText(tr.cells[5], fmtAgo(state.now - w.lastSeenAt));
      const told = /** @type {HTMLElement} */ (tr.cells[6].lastChild);
      setText(told, w.controlled ? w.controlled + " asked" : "");
      told.hidden = !w.controlled;
    });
    $("workers-empty").hidden = state.workers.length > 0;
    table.hidden = state.workers.length === 0;
  }

  /**
   * Asks a client to go quiet or stop.
   *
   * @param {ClientRow} w
   * @param {"quiet" | "stop"} action
   */
  function control(w, action) {
    act(
      "/api/sessions/control",
      { session: w.id, action },
      action === "quiet" ? "Asked " + w.name + " to go quiet" : "Asked " + w.name + " to stop",
    );
  }

  // ------------------------------------------------------------ a queue's items

  const itemsPager = makePager("items-pager", (offset) => {
    browseOffset = offset;
    loadItems();
  });

  /**
   * Opens the items panel on `queue`, at the first page of `state`.
   *
   * @param {string} queue
   * @param {string} state ready, delayed, leased or dead
   */
  function openBrowse(queue, state) {
    const fresh = browseQueue !== queue;
    browseQueue = queue;
    browseState = state;
    browseOffset = 0;
    $("browse").hidden = false;
    setName($("browse-queue"), queue);
    if (fresh) /** @type {HTMLTableElement} */ ($("items")).tBodies[0].replaceChildren();
    renderTabs();
    loadItems();
    if (fresh) $("browse").scrollIntoView({ block: "nearest" });
  }

  function renderTabs() {
    const row = lastState && lastState.queues.find((q) => q.name === browseQueue);
    for (const tab of Array.from($("browse-tabs").querySelectorAll("button"))) {
      const state = tab.dataset.state || "";
      tab.classList.toggle("active", state === browseState);
      tab.setAttribute("aria-selected", String(state === browseState));
      /** @type {Record<string, number>} */
      const counts = row
        ? { ready: row.ready, delayed: row.delayed, leased: row.leased, dead: row.deadLetters }
        : {};
      const count = counts[state];
      setText(/** @type {Node} */ (tab.lastChild), count === undefined ? "" : fmtCount(count));
    }
    const when = { ready: "Put", delayed: "Ready in", leased: "Held for", dead: "Failed" };
    setText($("items-when"), when[/** @type {keyof typeof when} */ (browseState)] || "");
  }

  /**
   * Fetches `path` with the token; resolves with its JSON, or null when it
   * failed (said in a toast when `loud`).
   *
   * @param {string} path
   * @param {boolean} [loud]
   * @returns {Promise<any>}
   */
  async function getJson(path, loud) {
    try {
      const response = await fetch(path, {
        headers: { "Authorization": "Bearer " + token },
        cache: "no-store",
      });
      if (response.status === 401) {
        sessionStorage.removeItem(TOKEN_KEY);
        showLogin("The master refused that token.");
        return null;
      }
      const reply = await response.json().catch(() => ({}));
      if (!response.ok) {
        if (loud) toast(reply.error || "HTTP " + response.status, true);
        return null;
      }
      return reply;
    } catch {
      if (loud) toast("master unreachable", true);
      return null;
    }
  }

  async function loadItems() {
    if (browseQueue === null) return;
    const mine = ++browseGeneration;
    const queue = browseQueue;
    const state = browseState;
    const offset = browseOffset;
    const query = new URLSearchParams({
      queue,
      offset: String(offset),
      limit: String(ITEM_ROWS),
    });
    if (state !== "dead") query.set("state", state);
    const path = (state === "dead" ? "/api/dead?" : "/api/queues/items?") + query;
    const reply = await getJson(path, true);
    if (mine !== browseGeneration || reply === null || browseQueue !== queue) return;
    if (reply.total > 0 && offset >= reply.total) {
      browseOffset = Math.floor((reply.total - 1) / ITEM_ROWS) * ITEM_ROWS;
      loadItems();
      return;
    }
    renderItems(state, reply);
  }

  /**
   * @typedef {{ key: string, id: number, attempts: number, when: string, detail: string,
   *   bad: boolean, value: string }} ItemLine
   */

  /**
   * Shows a page of items (or of dead letters) in the items panel.
   *
   * @param {string} state
   * @param {{ total: number, offset: number, limit: number, items: any[] }} reply
   */
  function renderItems(state, reply) {
    const now = masterNow();
    /** @type {ItemLine[]} */
    const lines = state === "dead"
      ? reply.items.map((/** @type {DeadItem} */ d) => ({
        key: d.queue + "#" + d.id,
        id: d.id,
        attempts: d.attempts,
        when: d.failedAt ? fmtAgo(now - d.failedAt) : "",
        detail: d.letter ? d.error + " (was item " + d.failedId + ")" : "(not a dead letter)",
        bad: true,
        value: d.value,
      }))
      : reply.items.map((/** @type {JobView} */ j) => {
        let when = fmtAgo(now - j.createdAt);
        let detail = "priority " + j.priority + (j.group !== undefined ? ", group " + j.group : "");
        if (state === "delayed" && j.readyAt !== undefined) {
          when = j.readyAt > now ? fmtDuration(j.readyAt - now) : "now";
        }
        if (state === "leased") {
          when = j.leasedAt !== undefined ? fmtDuration(now - j.leasedAt) : "";
          detail = (j.holder
            ? j.holder.name + (j.holder.address ? " (" + j.holder.address + ")" : "")
            : "?") +
            (j.leaseExpiresAt !== undefined
              ? ", lease ends in " + fmtDuration(j.leaseExpiresAt - now)
              : "");
          if (j.progress && j.progress.percent !== undefined) {
            detail += ", " + Math.round(j.progress.percent) + "%";
          }
        }
        if (j.error !== null && state !== "leased") detail += " · last error: " + j.error;
        return {
          key: String(j.id),
          id: j.id,
          attempts: j.attempts,
          when,
          detail,
          bad: false,
          value: j.value === undefined ? "(not kept)" : j.value,
        };
      });
    const table = /** @type {HTMLTableElement} */ ($("items"));
    syncRows(table.tBodies[0], lines, (l) => state + ":" + l.key, () => {
      const tr = /** @type {Row<ItemLine>} */ (el("tr"));
      cells(tr, ["num", "num", "num", "detail", "value"]);
      tr.cells[4].append(el("code"));
      return tr;
    }, (tr, l) => {
      if (!tr.cells[0].firstChild) tr.cells[0].append(jobButton(l.id));
      setText(tr.cells[1], String(l.attempts));
      setText(tr.cells[2], l.when);
      setText(tr.cells[3], l.detail);
      tr.cells[3].classList.toggle("error", l.bad);
      setText(/** @type {Node} */ (tr.cells[4].firstChild), l.value);
    });
    itemsPager.show(reply.offset, reply.limit, reply.total);
    renderTabs();
    const empty = $("items-empty");
    empty.hidden = reply.total > 0;
    setText(empty, "No " + (state === "dead" ? "dead letters" : state + " items") + " here.");
    table.hidden = lines.length === 0;
  }

  // ------------------------------------------------------------ dead letters

  const deadPager = makePager("dead-pager", (offset) => {
    deadOffset = offset;
    loadDead();
  });

  async function loadDead() {
    const mine = ++deadGeneration;
    const query = new URLSearchParams({ offset: String(deadOffset), limit: String(ITEM_ROWS) });
    if (deadFilter) query.set("queue", deadFilter);
    const reply = await getJson("/api/dead?" + query);
    if (mine !== deadGeneration || reply === null) return;
    if (reply.total > 0 && deadOffset >= reply.total) {
      deadOffset = Math.floor((reply.total - 1) / ITEM_ROWS) * ITEM_ROWS;
      loadDead();
      return;
    }
    renderDead(reply);
  }

  /** @param {DeadReply} reply */
  function renderDead(reply) {
    lastDead = reply;
    const table = /** @type {HTMLTableElement} */ ($("dead"));
    setText(
      $("dead-count"),
      reply.total === 0 ? "" : fmtCount(reply.total) + (deadFilter ? " in this queue" : " in all"),
    );
    const select = /** @type {HTMLSelectElement} */ ($("dead-queue"));
    const choices = reply.queues.map((q) => [q.queue, q.failedIn + " (" + fmtCount(q.count) + ")"]);
    if (deadFilter && !reply.queues.some((q) => q.queue === deadFilter)) {
      choices.push([deadFilter, deadFilter.replace(/\.dead$/, "") + " (0)"]);
    }
    syncRows(select, [["", "all queues"], ...choices], (c) => c[0], (c) => {
      const option = el("option");
      option.value = c[0];
      return option;
    }, (option, c) => setText(option, c[1]));
    if (select.value !== deadFilter) select.value = deadFilter;
    const shownKeys = new Set(reply.items.map((d) => d.queue + "#" + d.id));
    for (const key of Array.from(selected)) if (!shownKeys.has(key)) selected.delete(key);
    syncRows(table.tBodies[0], reply.items, (d) => d.queue + "#" + d.id, () => {
      const tr = /** @type {Row<DeadItem>} */ (el("tr"));
      const [check, , item, , , , value, actions] = cells(tr, [
        "check",
        "name",
        "num",
        "num",
        "num",
        "error",
        "value",
        "actions",
      ]);
      const box = el("input");
      box.type = "checkbox";
      box.setAttribute("aria-label", "select this letter");
      box.addEventListener("change", () => {
        const key = tr.item.queue + "#" + tr.item.id;
        if (box.checked) selected.add(key);
        else selected.delete(key);
        renderSelection();
      });
      check.append(box);
      item.append(el("span"));
      value.append(el("code"));
      const requeue = el("button", "requeue", "Re-queue");
      requeue.type = "button";
      requeue.addEventListener("click", () => {
        const d = tr.item;
        act(
          "/api/dead/requeue",
          { queue: d.queue, ids: [d.id] },
          "Re-queued item " + d.id + " to " + d.failedIn,
        );
      });
      const drop = el("button", "danger drop", "Drop");
      drop.type = "button";
      confirmButton(drop, () => "Drop for good?", () => {
        const d = tr.item;
        act("/api/dead/drop", { queue: d.queue, ids: [d.id] }, "Dropped item " + d.id);
      });
      actions.append(requeue, drop);
      return tr;
    }, (tr, d) => {
      /** @type {HTMLInputElement} */ (tr.cells[0].firstChild).checked = selected.has(
        d.queue + "#" + d.id,
      );
      setName(tr.cells[1], d.letter ? d.failedIn : d.queue);
      const idCell = tr.cells[2];
      if (!idCell.querySelector("button")) idCell.prepend(jobButton(d.id));
      setText(
        /** @type {Node} */ (idCell.lastChild),
        d.letter ? " (was " + d.failedId + ")" : "",
      );
      setText(tr.cells[3], d.letter ? String(d.attempts) : "");
      setText(tr.cells[4], d.failedAt ? fmtAgo(masterNow() - d.failedAt) : "");
      setText(tr.cells[5], d.letter ? d.error : "(not a dead letter)");
      setText(/** @type {Node} */ (tr.cells[6].firstChild), d.value);
      /** @type {HTMLButtonElement} */ (tr.cells[7].firstChild).disabled = !d.letter;
    });
    deadPager.show(reply.offset, reply.limit, reply.total);
    renderSelection();
    $("dead-empty").hidden = reply.total > 0;
    setText(
      $("dead-empty"),
      deadFilter ? "No dead letters in this queue." : "No dead letters.",
    );
    table.hidden = reply.items.length === 0;
    $("dead-requeue-all").hidden = reply.total === 0;
    $("dead-drop-all").hidden = reply.total === 0;
  }

  function renderSelection() {
    const any = selected.size > 0;
    /** @type {HTMLButtonElement} */ ($("dead-requeue-selected")).disabled = !any;
    /** @type {HTMLButtonElement} */ ($("dead-drop-selected")).disabled = !any;
    setText($("dead-requeue-selected"), any ? "Re-queue " + selected.size : "Re-queue selected");
    if (!$("dead-drop-selected").classList.contains("confirm")) {
      setText($("dead-drop-selected"), any ? "Drop " + selected.size : "Drop selected");
    }
    const all = /** @type {HTMLInputElement} */ ($("dead-select-all"));
    const shown = lastDead ? lastDead.items.length : 0;
    all.checked = shown > 0 && selected.size === shown;
    all.indeterminate = any && selected.size < shown;
  }

  /**
   * Posts a dead-letter action to every queue it names, then tells how it went.
   *
   * @param {"requeue" | "drop"} what
   * @param {{ queue: string, ids?: number[], all?: true }[]} bodies
   */
  async function deadBulk(what, bodies) {
    let count = 0;
    let failures = 0;
    /** @type {string} */
    let error = "";
    for (const body of bodies) {
      const outcome = await post("/api/dead/" + what, body);
      if (outcome.ok) count += what === "requeue" ? outcome.reply.requeued : outcome.reply.dropped;
      else {
        failures++;
        error = outcome.error;
      }
    }
    selected.clear();
    if (failures > 0) toast(error, true);
    else {toast(
        (what === "requeue" ? "Re-queued " : "Dropped ") + fmtCount(count) + " dead letters",
      );}
    refresh();
  }

  /** The selected letters as one body per dead-letter queue. */
  function selectedBodies() {
    /** @type {Map<string, number[]>} */
    const byQueue = new Map();
    for (const key of selected) {
      const at = key.lastIndexOf("#");
      const queue = key.slice(0, at);
      const ids = byQueue.get(queue) || [];
      ids.push(Number(key.slice(at + 1)));
      byQueue.set(queue, ids);
    }
    return Array.from(byQueue, ([queue, ids]) => ({ queue, ids }));
  }

  /** Every dead letter the filter covers, as one body per dead-letter queue. */
  function allBodies() {
    const queues = deadFilter
      ? [deadFilter]
      : (lastDead ? lastDead.queues.map((q) => q.queue) : []);
    return queues.map((queue) => ({ queue, all: /** @type {true} */ (true) }));
  }

  // ------------------------------------------------------------ the chart

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

  /**
   * Whether the chart is on a log scale: as chosen, or (auto) when one series
   * peaks at least AUTO_LOG_RATIO times higher than another that moved.
   *
   * @param {number[]} peaks
   */
  function logScale(peaks) {
    const chosen = /** @type {HTMLSelectElement} */ ($("chart-scale")).value;
    if (chosen !== "auto") return chosen === "log";
    const moved = peaks.filter((p) => p > 0);
    if (moved.length < 2) return false;
    return Math.max(...moved) >= AUTO_LOG_RATIO * Math.min(...moved);
  }

  /** @param {History} full */
  function drawChart(full) {
    const long = /** @type {HTMLSelectElement} */ ($("chart-range")).value === "long";
    const history = long ? full.long : full;
    const points = long ? LONG_HISTORY_POINTS : HISTORY_POINTS;
    const canvas = /** @type {HTMLCanvasElement} */ ($("chart"));
    const ratio = globalThis.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
    if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
    const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const left = 52, right = 12, top = 8, bottom = 22;
    const plotW = width - left - right, plotH = height - top - bottom;
    /** @type {["put" | "done" | "failed", string][]} */
    const series = [["put", "#2563eb"], ["done", "#16a34a"], ["failed", "#dc2626"]];
    const peaks = series.map(([name]) => history[name].reduce((a, v) => Math.max(a, v), 0));
    const log = logScale(peaks);
    const peak = Math.max(1, ...peaks);
    /** The top of the scale and the value each tick shows. */
    let max;
    /** @type {number[]} */
    const ticks = [];
    if (log) {
      max = Math.pow(10, Math.ceil(Math.log10(peak)));
      ticks.push(0);
      for (let v = 1; v <= max; v *= 10) ticks.push(v);
    } else {
      max = niceMax(peak);
      for (let i = 0; i <= 4; i++) ticks.push((max * i) / 4);
    }
    /** @type {(v: number) => number} */
    const yOf = log
      ? (v) => top + plotH - (plotH * Math.log10(1 + v)) / Math.log10(1 + max)
      : (v) => top + plotH - (plotH * v) / max;
    setText(
      $("chart-caption"),
      "items per second" + (long ? ", each point a minute's average" : "") +
        (log ? " · logarithmic scale" : ""),
    );
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#616e7c";
    ctx.strokeStyle = "#e4e7eb";
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    /** Where the last label went: a label closer than MIN_TICK_GAP_PX to it is left out. */
    let lastLabelY = Infinity;
    for (const v of ticks) {
      const y = yOf(v);
      ctx.beginPath();
      ctx.moveTo(left, Math.round(y) + 0.5);
      ctx.lineTo(left + plotW, Math.round(y) + 0.5);
      ctx.stroke();
      if (lastLabelY - y < MIN_TICK_GAP_PX) continue;
      ctx.fillText(Number.isInteger(v) ? fmtCount(v) : fmtRate(v), left - 6, y);
      lastLabelY = y;
    }
    ctx.textBaseline = "top";
    ctx.textAlign = "center";
    const spanMs = history.intervalMs * points;
    /** @type {(agoMs: number) => number} */
    const xOf = (agoMs) => left + plotW * (1 - agoMs / spanMs);
    const minutes = Math.floor(spanMs / 60000);
    const step = minutes <= 10 ? 1 : minutes <= 30 ? 5 : 10;
    for (let m = minutes - (minutes % step); m >= 0; m -= step) {
      ctx.fillText(m === 0 ? "now" : "-" + m + " min", xOf(m * 60000), top + plotH + 6);
    }
    // Points are placed by their time: the last at its distance from the master's now.
    const lastAgo = history.endsAt ? Math.max(0, masterNow() - history.endsAt) : 0;
    const n = history.put.length;
    ctx.lineWidth = 2;
    ctx.lineJoin = "round";
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, 0, plotW, height);
    ctx.clip();
    for (const [name, color] of series) {
      const values = history[name];
      if (values.length < 2) continue;
      ctx.strokeStyle = color;
      ctx.beginPath();
      values.forEach((v, i) => {
        const x = xOf(lastAgo + (n - 1 - i) * history.intervalMs);
        const y = yOf(v);
        if (i === 0) ctx.moveTo(x, y);
        else ctx.lineTo(x, y);
      });
      ctx.stroke();
    }
    ctx.restore();
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
    if (browseQueue !== null) renderTabs();
    drawChart(state.history);
    setText($("updated"), "updated " + new Date(state.now).toLocaleTimeString());
  }

  async function refresh() {
    clearTimeout(timer);
    const mine = ++generation;
    try {
      const query = new URLSearchParams({
        offset: String(queueOffset),
        limit: String(QUEUE_ROWS),
        dead: "0",
      });
      if (queueFilter) query.set("filter", queueFilter);
      const response = await fetch("/api/state?" + query, {
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
      /** @type {DashboardState} */
      const state = await response.json();
      if (state.page.total > 0 && queueOffset >= state.page.total) {
        queueOffset = Math.floor((state.page.total - 1) / QUEUE_ROWS) * QUEUE_ROWS;
        refresh();
        return;
      }
      render(state);
      setConn("live", "live");
      loadDead();
      if (browseQueue !== null) loadItems();
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
   * Posts an action; resolves with whether the master took it, its reply, and its error.
   *
   * @param {string} path
   * @param {unknown} body
   * @returns {Promise<{ ok: boolean, reply: any, error: string }>}
   */
  async function post(path, body) {
    try {
      const response = await fetch(path, {
        method: "POST",
        headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json" },
        body: JSON.stringify(body),
        cache: "no-store",
      });
      const reply = await response.json().catch(() => ({}));
      return {
        ok: response.ok,
        reply,
        error: response.ok ? "" : reply.error || "HTTP " + response.status,
      };
    } catch {
      return { ok: false, reply: {}, error: "master unreachable" };
    }
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
    const outcome = await post(path, body);
    if (outcome.ok) {
      if (typeof done === "string") toast(done);
      else toast(...done(outcome.reply));
    } else toast(outcome.error, true);
    refresh();
    return outcome.ok;
  }

  /**
   * Opens the limits form on a queue, filled with its limits now.
   *
   * @param {QueueRow} row
   */
  function openLimits(row) {
    limitsQueue = row.name;
    const limits = row.limits;
    setName($("limits-queue"), row.name);
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
    const title = $("job-title");
    if (title.textContent !== "Job " + job.id + " in " + job.queue) {
      title.replaceChildren("Job " + job.id + " in ", nameNode(job.queue));
    }
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
  /**
   * Opens the job panel on job `id` and brings it into view.
   *
   * @param {number} id
   */
  function showJob(id) {
    /** @type {HTMLInputElement} */ ($("job-id")).value = String(id);
    shownJob = id;
    disarmCancel();
    lookUp(id, true);
    $("lookup").scrollIntoView({ block: "nearest" });
  }
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
  for (const id of ["chart-range", "chart-scale"]) {
    $(id).addEventListener("change", () => {
      const range = /** @type {HTMLSelectElement} */ ($("chart-range")).value;
      const scale = /** @type {HTMLSelectElement} */ ($("chart-scale")).value;
      sessionStorage.setItem(CHART_KEY, range + " " + scale);
      if (lastState) drawChart(lastState.history);
    });
  }
  const chartChoice = (sessionStorage.getItem(CHART_KEY) || "").split(" ");
  if (chartChoice.length === 2) {
    /** @type {HTMLSelectElement} */ ($("chart-range")).value = chartChoice[0];
    /** @type {HTMLSelectElement} */ ($("chart-scale")).value = chartChoice[1];
  }
  $("queue-filter").addEventListener("input", () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => {
      queueFilter = /** @type {HTMLInputElement} */ ($("queue-filter")).value.trim();
      queueOffset = 0;
      refresh();
    }, FILTER_WAIT_MS);
  });
  for (const tab of Array.from($("browse-tabs").querySelectorAll("button"))) {
    tab.addEventListener("click", () => {
      if (browseQueue !== null) openBrowse(browseQueue, tab.dataset.state || "ready");
    });
  }
  $("browse-close").addEventListener("click", () => {
    browseQueue = null;
    ++browseGeneration;
    $("browse").hidden = true;
  });
  $("dead-queue").addEventListener("change", () => {
    deadFilter = /** @type {HTMLSelectElement} */ ($("dead-queue")).value;
    deadOffset = 0;
    selected.clear();
    loadDead();
  });
  $("dead-select-all").addEventListener("change", () => {
    const all = /** @type {HTMLInputElement} */ ($("dead-select-all")).checked;
    selected.clear();
    if (all && lastDead) {
      for (const d of lastDead.items) if (d.letter) selected.add(d.queue + "#" + d.id);
    }
    if (lastDead) renderDead(lastDead);
  });
  $("dead-requeue-selected").addEventListener("click", () => deadBulk("requeue", selectedBodies()));
  confirmButton(
    /** @type {HTMLButtonElement} */ ($("dead-drop-selected")),
    () => "Drop " + selected.size + " for good?",
    () => deadBulk("drop", selectedBodies()),
  );
  confirmButton(
    /** @type {HTMLButtonElement} */ ($("dead-requeue-all")),
    () => "Re-queue all " + fmtCount(lastDead ? lastDead.total : 0) + "?",
    () => deadBulk("requeue", allBodies()),
  );
  confirmButton(
    /** @type {HTMLButtonElement} */ ($("dead-drop-all")),
    () => "Drop all " + fmtCount(lastDead ? lastDead.total : 0) + " for good?",
    () => deadBulk("drop", allBodies()),
  );

  document.title = "taskq · " + location.host;
  $("where").textContent = location.host;
  token = readToken();
  if (token) refresh();
  else showLogin("");
})();
