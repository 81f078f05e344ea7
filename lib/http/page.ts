/**
 * The dashboard's files, embedded so the compiled binary needs nothing on disk:
 * one HTML page, its stylesheet and its script. They are real files beside
 * this module (page/page.html, page/page.css and page/page.js, so that
 * `deno fmt` formats all three and `deno lint` lints the script), imported as
 * text, which `deno compile` and `deno bundle` embed; the few numbers they
 * share with the server are filled into their `{{NAME}}` placeholders once,
 * when this module loads.
 *
 * No framework: the script polls `GET /api/state` every second with the token
 * in a header (one page of queue rows), and the dead letters and the items of
 * the queue being browsed when those panels show, and updates the tables in place. It builds every piece of text
 * with `textContent` (never HTML), so queue names, errors and values always
 * show as text; the page's Content-Security-Policy (see server.ts) forbids
 * inline script besides.
 *
 * The token comes from the address's fragment (`/#token=...`, never sent to
 * the server or kept in its logs) or is typed in, and is kept in the tab's
 * session storage only.
 *
 * @module
 */

import pageHtml from "./page/page.html" with { type: "text" };
import pageCss from "./page/page.css" with { type: "text" };
import pageJs from "./page/page.js" with { type: "text" };
import {
  DEFAULT_SAMPLE_MS,
  HISTORY_POINTS,
  LONG_HISTORY_INTERVAL_MS,
  LONG_HISTORY_POINTS,
} from "./rates.ts";

/** Milliseconds per minute. */
const MS_PER_MINUTE = 60_000;

/** Milliseconds between two refreshes of the page. */
export const PAGE_POLL_MS = 1_000;

/** Milliseconds a "drop" button waits for its confirming second click. */
const CONFIRM_MS = 4_000;

/** Queue rows the page shows at a time (it asks `/api/state` for one page of them). */
export const PAGE_QUEUE_ROWS = 50;

/** Items (of a queue, or dead letters) the page lists at a time. */
export const PAGE_ITEM_ROWS = 50;

/** A placeholder: `{{NAME}}`, with spaces allowed inside the braces. */
const PLACEHOLDER = /\{\{\s*([A-Z_]+)\s*\}\}/g;

/**
 * `text` (the file `file`) with each placeholder replaced by its value. Throws
 * on a placeholder without a value and on a value without a placeholder, so
 * that the files and this module cannot drift apart unseen.
 */
function fill(file: string, text: string, values: Record<string, number>): string {
  const unused = new Set(Object.keys(values));
  const filled = text.replace(PLACEHOLDER, (_match, name: string) => {
    if (!Object.hasOwn(values, name)) throw new Error(`${file}: no value for {{${name}}}`);
    unused.delete(name);
    return String(values[name]);
  });
  if (unused.size > 0) throw new Error(`${file}: no place for ${[...unused].join(", ")}`);
  return filled;
}

/** The page. */
export const PAGE_HTML: string = fill("page.html", pageHtml, {
  HISTORY_MINUTES: HISTORY_POINTS * DEFAULT_SAMPLE_MS / MS_PER_MINUTE,
  LONG_HISTORY_MINUTES: LONG_HISTORY_POINTS * LONG_HISTORY_INTERVAL_MS / MS_PER_MINUTE,
});

/** The stylesheet. */
export const PAGE_CSS: string = pageCss;

/** The script. */
export const PAGE_JS: string = fill("page.js", pageJs, {
  POLL_MS: PAGE_POLL_MS,
  CONFIRM_MS,
  HISTORY_POINTS,
  LONG_HISTORY_POINTS,
  QUEUE_ROWS: PAGE_QUEUE_ROWS,
  ITEM_ROWS: PAGE_ITEM_ROWS,
});
