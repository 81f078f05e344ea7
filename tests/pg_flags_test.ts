/**
 * Tests of lib/cli/pg_flags.ts: where a PostgreSQL master's database and
 * password come from (`--store` or `TASKQ_STORE`; `--pg-password-file`,
 * `PGPASSWORD`, the passfile), what is refused (a password on the command
 * line, a URL that is not PostgreSQL, database flags without a database,
 * a passfile others can read), and the passfile's format.
 *
 * @module
 */

import assert from "node:assert/strict";
import { parseFlags } from "../lib/cli/args.ts";
import { passfileLookup, PG_FLAGS, postgresFromFlags, STORE_ENV } from "../lib/cli/pg_flags.ts";
import { ConfigError } from "../lib/errors.ts";

/** Runs `postgresFromFlags` on `args` with the environment variables `env` set meanwhile. */
function fromArgs(args: string[], env: Record<string, string> = {}) {
  const saved = new Map<string, string | undefined>();
  for (const name of [STORE_ENV, "PGPASSWORD", "PGPASSFILE", ...Object.keys(env)]) {
    saved.set(name, Deno.env.get(name));
    Deno.env.delete(name);
  }
  for (const [name, value] of Object.entries(env)) Deno.env.set(name, value);
  try {
    return postgresFromFlags(parseFlags("master", args, PG_FLAGS));
  } finally {
    for (const [name, value] of saved) {
      if (value === undefined) Deno.env.delete(name);
      else Deno.env.set(name, value);
    }
  }
}

Deno.test("no --store and no TASKQ_STORE: no database", () => {
  assert.equal(fromArgs([]), undefined);
});

Deno.test("--store names the database; TASKQ_STORE does the same", () => {
  const url = "postgres://taskq@db:5432/jobs";
  assert.deepEqual(fromArgs(["--store", url]), { postgres: url });
  assert.deepEqual(fromArgs([], { [STORE_ENV]: url }), { postgres: url });
  assert.deepEqual(fromArgs(["--store", url.replace("postgres:", "postgresql:")]), {
    postgres: url.replace("postgres:", "postgresql:"),
  });
});

Deno.test("a password in --store is refused: the command line is public", () => {
  assert.throws(
    () => fromArgs(["--store", "postgres://taskq:s3cret@db/jobs"]),
    (error: unknown) =>
      error instanceof ConfigError && /pg-password-file/.test(error.message) &&
      !error.message.includes("s3cret"),
  );
  // In the environment it is not on the command line.
  assert.equal(
    fromArgs([], { [STORE_ENV]: "postgres://taskq:s3cret@db/jobs" })?.postgres,
    "postgres://taskq:s3cret@db/jobs",
  );
});

Deno.test("a store that is not PostgreSQL, and database flags without one, are refused", () => {
  assert.throws(() => fromArgs(["--store", "mysql://db/jobs"]), ConfigError);
  assert.throws(() => fromArgs(["--store", "not a url"]), ConfigError);
  assert.throws(() => fromArgs(["--pg-schema", "jobs"]), /needs --store/);
  assert.throws(() => fromArgs(["--store", "postgres://db/x", "--max-stored", "10"]), /at least/);
  assert.throws(
    () => fromArgs(["--store", "postgres://db/x", "--master-timeout", "0.5"]),
    /--master-timeout takes seconds from 1 to 3600, not "0.5"/,
  );
});

Deno.test("the password comes from --pg-password-file, else the passfile unless PGPASSWORD", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/pg.pass`;
    await Deno.writeTextFile(file, "from-file\n");
    const url = "postgres://taskq@db:5433/jobs";
    assert.equal(fromArgs(["--store", url, "--pg-password-file", file])?.password, "from-file");
    assert.throws(
      () => fromArgs(["--store", url, "--pg-password-file", `${dir}/missing`]),
      /cannot read it/,
    );
    const passfile = `${dir}/pgpass`;
    await Deno.writeTextFile(passfile, "other:5433:jobs:taskq:wrong\ndb:5433:*:taskq:right\n");
    await Deno.chmod(passfile, 0o600);
    assert.equal(fromArgs(["--store", url], { PGPASSFILE: passfile })?.password, "right");
    // PGPASSWORD wins over the passfile: the client library reads it itself.
    assert.equal(
      fromArgs(["--store", url], { PGPASSFILE: passfile, PGPASSWORD: "env" })?.password,
      undefined,
    );
    await Deno.chmod(passfile, 0o644);
    assert.throws(() => fromArgs(["--store", url], { PGPASSFILE: passfile }), /chmod 600/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("passfile lines: first match wins, * matches anything, \\: escapes a colon", () => {
  const target = { host: "db", port: "5432", database: "jobs", user: "taskq" };
  assert.equal(passfileLookup("# comment\n\ndb:5432:jobs:taskq:one\n*:*:*:*:two\n", target), "one");
  assert.equal(passfileLookup("*:*:*:*:two\n", target), "two");
  assert.equal(passfileLookup("db:5432:jobs:taskq:a\\:b\\\\c\n", target), "a:b\\c");
  assert.equal(passfileLookup("db:5432:jobs:other:x\n", target), undefined);
  assert.equal(passfileLookup("short:line\n", target), undefined);
});
