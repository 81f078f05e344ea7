/**
 * A progress line for long commands (`taskq put` from standard input, `taskq
 * get --count N`): a bar when the total is known, the count, the rate and the
 * time left, redrawn in place on stderr. Only on a terminal: when stderr is a
 * pipe or a file nothing at all is written, so logs and scripts stay clean.
 *
 * @module
 */

/** Least time between two redraws. */
export const PROGRESS_REDRAW_MS = 100;

/** Characters of the bar between its brackets. */
export const BAR_WIDTH = 24;

/** Milliseconds per second. */
const MS_PER_SECOND = 1000;

/** Seconds per minute and minutes per hour. */
const SIXTY = 60;

/** Erases from the cursor to the end of the line. */
const ERASE_LINE_END = "\x1b[K";

/** What one progress line shows. */
export interface ProgressFigures {
  /** What is being done, e.g. `put tasks`. */
  label: string;
  /** Units done so far. */
  done: number;
  /** Units to do in all, when known. */
  total?: number;
  /** Share done (0 to 1) when known otherwise than by `done / total` (e.g. bytes read). */
  fraction?: number;
  /** Time since the start, in ms. */
  elapsedMs: number;
  /** Name of the unit, plural (e.g. `items`). */
  unit: string;
}

/** Formats a duration in seconds as `M:SS` or `H:MM:SS`. */
export function formatClock(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / (SIXTY * SIXTY));
  const m = Math.floor(s / SIXTY) % SIXTY;
  const ss = String(s % SIXTY).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** Formats a count with thousands separators. */
function formatCount(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

/** The text of one progress line (without control characters). */
export function formatProgress(figures: ProgressFigures): string {
  const { label, done, total, elapsedMs, unit } = figures;
  const seconds = elapsedMs / MS_PER_SECOND;
  const rate = seconds > 0 ? done / seconds : 0;
  const fraction = figures.fraction ??
    (total !== undefined && total > 0 ? Math.min(1, done / total) : undefined);
  const parts = [label];
  if (fraction !== undefined) {
    const filled = Math.round(fraction * BAR_WIDTH);
    parts.push(`[${"#".repeat(filled)}${".".repeat(BAR_WIDTH - filled)}]`);
    parts.push(`${String(Math.floor(fraction * 100)).padStart(3)}%`);
  }
  parts.push(
    total !== undefined
      ? `${formatCount(done)}/${formatCount(total)} ${unit}`
      : `${formatCount(done)} ${unit}`,
  );
  parts.push(`${formatCount(rate)}/s`);
  if (fraction !== undefined && fraction > 0 && fraction < 1) {
    parts.push(`ETA ${formatClock((seconds * (1 - fraction)) / fraction)}`);
  } else {
    parts.push(formatClock(seconds));
  }
  return parts.join("  ");
}

/** Options of a {@link Progress}. */
export interface ProgressOptions {
  /** What is being done, e.g. `put tasks`. */
  label: string;
  /** Name of the unit, plural. */
  unit: string;
  /** Units to do in all, when known. */
  total?: number;
  /** Whether to draw at all; by default, whether stderr is a terminal. */
  enabled?: boolean;
  /** Where the text goes; stderr by default. */
  write?: (text: string) => void;
  /** Clock in ms; `Date.now` by default. */
  clock?: () => number;
}

const encoder = new TextEncoder();

function writeStderr(text: string): void {
  Deno.stderr.writeSync(encoder.encode(text));
}

/** A progress line that redraws itself at most every {@link PROGRESS_REDRAW_MS}. */
export class Progress {
  /** Whether anything is drawn. */
  readonly enabled: boolean;
  readonly #options: ProgressOptions;
  readonly #write: (text: string) => void;
  readonly #clock: () => number;
  readonly #startedAt: number;
  #drawnAt = -Infinity;
  #done = 0;
  #fraction: number | undefined;
  #finished = false;

  /** Starts a progress line (drawing nothing yet). */
  constructor(options: ProgressOptions) {
    this.#options = options;
    this.enabled = options.enabled ?? Deno.stderr.isTerminal();
    this.#write = options.write ?? writeStderr;
    this.#clock = options.clock ?? Date.now;
    this.#startedAt = this.#clock();
  }

  /** Records `done` units (and the share done, when known otherwise), redrawing if due. */
  update(done: number, fraction?: number): void {
    this.#done = done;
    this.#fraction = fraction;
    if (!this.enabled || this.#finished) return;
    const now = this.#clock();
    if (now - this.#drawnAt < PROGRESS_REDRAW_MS) return;
    this.#drawnAt = now;
    this.#draw(now);
  }

  /** Draws the final figures and ends the line. */
  finish(): void {
    if (!this.enabled || this.#finished) return;
    this.#finished = true;
    this.#draw(this.#clock());
    this.#write("\n");
  }

  #draw(now: number): void {
    const text = formatProgress({
      label: this.#options.label,
      done: this.#done,
      total: this.#options.total,
      fraction: this.#fraction,
      elapsedMs: now - this.#startedAt,
      unit: this.#options.unit,
    });
    this.#write(`\r${text}${ERASE_LINE_END}`);
  }
}
