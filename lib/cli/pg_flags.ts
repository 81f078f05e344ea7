/**
 * The flags that put a master on a shared PostgreSQL database:
 * `--store postgres://USER@HOST:PORT/DB` (or `TASKQ_STORE`), `--pg-schema`,
 * `--pg-password-file`, `--max-stored`, `--master-timeout`.
 *
 * The password never comes from the command line, where `ps` shows it to
 * every user of the machine: it comes from `--pg-password-file`, else
 * `PGPASSWORD`, else the passfile (`PGPASSFILE`, else `~/.pgpass`, in
 * libpq's format `host:port:database:user:password`, `*` matching anything).
 * A URL on the command line that carries a password is refused.
 *
 * @example
 * ```ts
 * import { passfileLookup } from "./pg_flags.ts";
 * const file = "db.example:5432:jobs:taskq:s3cret\n*:*:*:*:fallback\n";
 * console.log(passfileLookup(file, { host: "db.example", port: "5432", database: "jobs", user: "taskq" }));
 * // s3cret
 * ```
 *
 * @module
 */

import { ConfigError } from "../errors.ts";
import type { PostgresChoice } from "../server/master.ts";
import { MIB, parseByteSize } from "../util/memory.ts";
import { type FlagSpec, MAX_GRACE_MS, type Parsed, secondsFlag, stringFlag } from "./args.ts";

/** Shortest `--master-timeout`, in ms. */
const MIN_MASTER_TIMEOUT_MS = 1_000;

/** Environment variable naming the store, as `--store` does. */
export const STORE_ENV = "TASKQ_STORE";

/** The flags of this module, for a command's flag spec. */
export const PG_FLAGS: FlagSpec = {
  store: { type: "string" },
  "pg-schema": { type: "string" },
  "pg-password-file": { type: "string" },
  "max-stored": { type: "string" },
  "master-timeout": { type: "string" },
};

/** The help text of these flags. */
export const PG_HELP = `  --store postgres://USER@HOST:PORT/DB
                            keep the queues in a PostgreSQL database that any
                            number of masters share (else TASKQ_STORE); the
                            password from --pg-password-file, PGPASSWORD or
                            the passfile (PGPASSFILE, ~/.pgpass), never argv
  --pg-schema NAME          the schema taskq creates its tables in (default taskq)
  --pg-password-file FILE   file holding the database password
  --max-stored SIZE         most bytes of items the database may hold (e.g.
                            10GiB; default no limit): puts past it are refused
  --master-timeout SECONDS  after how long without a heartbeat another master
                            counts as dead and its leases are returned (default 5)`;

/** Where a passfile line applies. */
export interface PassfileTarget {
  host: string;
  port: string;
  database: string;
  user: string;
}

/** Splits a passfile line at unescaped colons, undoing `\:` and `\\`. */
function passfileFields(line: string): string[] {
  const fields: string[] = [];
  let field = "";
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === "\\" && i + 1 < line.length) field += line[++i];
    else if (c === ":") {
      fields.push(field);
      field = "";
    } else field += c;
  }
  fields.push(field);
  return fields;
}

/** The password the passfile text `text` holds for `target`, if any (first match wins). */
export function passfileLookup(text: string, target: PassfileTarget): string | undefined {
  for (const raw of text.split("\n")) {
    const line = raw.replace(/\r$/, "");
    if (line === "" || line.startsWith("#")) continue;
    const fields = passfileFields(line);
    if (fields.length < 5) continue;
    const [host, port, database, user] = fields;
    const wanted = [target.host, target.port, target.database, target.user];
    if ([host, port, database, user].every((f, i) => f === "*" || f === wanted[i])) {
      return fields.slice(4).join(":");
    }
  }
  return undefined;
}

/** The passfile's path: `PGPASSFILE`, else `~/.pgpass`. */
function passfilePath(): string | undefined {
  const named = Deno.env.get("PGPASSFILE");
  if (named) return named;
  const home = Deno.env.get("HOME");
  return home ? `${home}/.pgpass` : undefined;
}

/** The password of `url` from the passfile, if it has one. */
function fromPassfile(url: URL): string | undefined {
  const path = passfilePath();
  if (path === undefined) return undefined;
  let text: string;
  try {
    const info = Deno.statSync(path);
    if (info.mode !== null && (info.mode & 0o077) !== 0) {
      throw new ConfigError(
        `the passfile ${path} may be read by other users (mode ${
          (info.mode & 0o777).toString(8)
        }); make it private: chmod 600 ${path}`,
      );
    }
    text = Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  return passfileLookup(text, {
    host: url.hostname,
    port: url.port || "5432",
    database: decodeURIComponent(url.pathname.slice(1)) || decodeURIComponent(url.username),
    user: decodeURIComponent(url.username),
  });
}

/**
 * The PostgreSQL store the flags name, or `undefined` when they name none.
 * @throws {ConfigError} on a URL that is not `postgres://`, a password on the command line,
 *   an unreadable password file, or a bad size or duration.
 */
export function postgresFromFlags(parsed: Parsed): PostgresChoice | undefined {
  const flag = stringFlag(parsed, "store");
  const text = flag ?? Deno.env.get(STORE_ENV);
  const others = ["pg-schema", "pg-password-file", "max-stored", "master-timeout"]
    .filter((name) => parsed.values[name] !== undefined);
  if (text === undefined || text === "") {
    if (others.length > 0) {
      throw new ConfigError(`--${others[0]} needs --store postgres://USER@HOST:PORT/DB`);
    }
    return undefined;
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    url = new URL("invalid:");
  }
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
    throw new ConfigError(
      `--store takes postgres://USER@HOST:PORT/DB (a PostgreSQL database), not "${
        text.replace(/:[^:@/]*@/, ":***@")
      }"; without --store the master keeps its items in --data DIR`,
    );
  }
  if (flag !== undefined && url.password !== "") {
    throw new ConfigError(
      "--store must not carry the database password: every user of this machine can read " +
        "the command line; put it in --pg-password-file FILE, PGPASSWORD or ~/.pgpass",
    );
  }
  const choice: PostgresChoice = { postgres: text };
  const file = stringFlag(parsed, "pg-password-file");
  if (file !== undefined) {
    try {
      choice.password = Deno.readTextFileSync(file).replace(/\r?\n$/, "");
    } catch (error) {
      throw new ConfigError(
        `--pg-password-file ${file}: cannot read it (${(error as Error).message})`,
      );
    }
  } else if (url.password === "" && Deno.env.get("PGPASSWORD") === undefined) {
    const found = fromPassfile(url);
    if (found !== undefined) choice.password = found;
  }
  const schema = stringFlag(parsed, "pg-schema");
  if (schema !== undefined) choice.schema = schema;
  const stored = stringFlag(parsed, "max-stored");
  if (stored !== undefined) {
    const bytes = parseByteSize(stored);
    if (bytes === undefined || bytes < MIB) {
      throw new ConfigError(
        `--max-stored takes a size of at least 1MiB, in bytes or with a unit (e.g. 10GiB), ` +
          `not "${stored}"`,
      );
    }
    choice.maxStoredBytes = bytes;
  }
  const timeout = secondsFlag(parsed, "master-timeout", undefined, {
    minMs: MIN_MASTER_TIMEOUT_MS,
    maxMs: MAX_GRACE_MS,
  });
  if (timeout !== undefined) choice.masterTimeoutMs = timeout;
  return choice;
}
