/**
 * Structured logging to stderr: one line per event, as readable text or as one
 * JSON object per line.
 *
 * @module
 */

/** Severity of a log event, least to most severe. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** How log lines are written. */
export type LogFormat = "text" | "json";

const LEVEL_RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** Extra fields of a log event. */
export type LogFields = Record<string, unknown>;

/** Writes log events. */
export interface Logger {
  /** Logs a debugging detail. */
  debug(message: string, fields?: LogFields): void;
  /** Logs a normal event. */
  info(message: string, fields?: LogFields): void;
  /** Logs something that went wrong but was handled. */
  warn(message: string, fields?: LogFields): void;
  /** Logs a failure. */
  error(message: string, fields?: LogFields): void;
}

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** Least severe level written; `info` by default. */
  level?: LogLevel;
  /** `text` (default) or `json`. */
  format?: LogFormat;
  /** Where lines go; stderr by default. */
  write?: (line: string) => void;
}

const encoder = new TextEncoder();

function writeStderr(line: string): void {
  Deno.stderr.writeSync(encoder.encode(line + "\n"));
}

function formatValue(value: unknown): string {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return /[\s"=]/.test(text) ? JSON.stringify(text) : text;
}

/**
 * Creates a logger.
 *
 * @example
 * ```ts
 * import { createLogger } from "./log.ts";
 * const lines: string[] = [];
 * const log = createLogger({ level: "info", format: "json", write: (line) => lines.push(line) });
 * log.debug("not written: below the level");
 * log.info("worker started", { queue: "tasks" });
 * const event = JSON.parse(lines[0]);
 * console.log(lines.length, event.level, event.msg, event.queue); // 1 info worker started tasks
 * ```
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const min = LEVEL_RANK[options.level ?? "info"];
  const json = options.format === "json";
  const write = options.write ?? writeStderr;
  const emit = (level: LogLevel, message: string, fields?: LogFields) => {
    if (LEVEL_RANK[level] < min) return;
    const time = new Date().toISOString();
    if (json) {
      write(JSON.stringify({ time, level, msg: message, ...fields }));
      return;
    }
    let line = `${time} ${level.toUpperCase().padEnd(5)} ${message}`;
    if (fields) { for (const key in fields) line += ` ${key}=${formatValue(fields[key])}`; }
    write(line);
  };
  return {
    debug: (message, fields) => emit("debug", message, fields),
    info: (message, fields) => emit("info", message, fields),
    warn: (message, fields) => emit("warn", message, fields),
    error: (message, fields) => emit("error", message, fields),
  };
}

/** Whether command-line `args` ask for JSON log lines (`--log-format json`, before any `--`). */
export function jsonLogsRequested(args: readonly string[]): boolean {
  const end = args.indexOf("--");
  const own = end < 0 ? args : args.slice(0, end);
  return own.some((arg, i) =>
    arg === "--log-format=json" || (arg === "--log-format" && own[i + 1] === "json")
  );
}

/** The JSON log line of a command that stops on an error. */
export function errorLogLine(command: string, message: string): string {
  return JSON.stringify({ time: new Date().toISOString(), level: "error", msg: message, command });
}

/** A logger that writes nothing. */
export const silentLogger: Logger = createLogger({ write: () => {} });
