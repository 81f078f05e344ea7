/**
 * `deno task compile`: builds one self-contained taskq executable into dist/.
 *
 * ```sh
 * deno task compile                        # this machine's target: dist/taskq
 * deno task compile --target aarch64-apple-darwin   # dist/taskq-aarch64-apple-darwin
 * deno task compile --all                  # every target deno compile supports
 * deno task compile --measure              # what would be embedded, and its size; builds nothing
 * ```
 *
 * What goes in: the modules main.ts reaches and the npm packages they import
 * (msgpackr; postgres; @peculiar/x509 and reflect-metadata for `taskq tls`),
 * nothing else. `deno compile` embeds every npm package of the lockfile it
 * runs with, and deno.json's imports and deno.lock also hold the tests' and
 * scripts' packages (playwright-core alone is 13 MB). So this script builds
 * with `--no-config` (main.ts names its npm packages with exact `npm:`
 * specifiers) and a lockfile pruned to the packages main.ts reaches, with
 * `--frozen`: every package is checked against the same integrity hashes as
 * the project's deno.lock, and a package missing from it fails the build.
 *
 * `deno compile` needs Deno's runtime base binary (denort) for the target:
 * `$DENORT_BIN`, or `$DENO_DIR/dl/release/vVERSION/denort-TARGET.zip`, else a
 * download from dl.deno.land. When none of those works the build fails with
 * one line saying so (exit code 1), without Deno's stack trace.
 *
 * @module
 */

import { fileURLToPath } from "node:url";

/**
 * The permissions the binary runs with: the network, its key and config, the
 * master's data directory, and worker commands.
 */
export const PERMISSIONS: readonly string[] = [
  "--allow-net",
  "--allow-env",
  "--allow-read",
  "--allow-write",
  "--allow-run",
  "--allow-sys=hostname",
];

/** The targets `deno compile` supports. */
export const TARGETS: readonly string[] = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
  "x86_64-pc-windows-msvc",
];

/** The repository root. */
const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** The entry point compiled. */
const ENTRY = `${ROOT}main.ts`;

/** The project's lockfile, which the pruned one is cut from. */
const LOCKFILE = `${ROOT}deno.lock`;

/** Where builds go. */
const DIST = `${ROOT}dist/`;

/** Bytes per MB, for sizes printed. */
const BYTES_PER_MB = 1_000_000;

/** A failed build, with the one line that explains it. */
export class CompileError extends Error {}

/** The parts of a `deno.lock` (version 5) this script reads and writes. */
export interface Lockfile {
  /** The lockfile format ("5"). */
  version: string;
  /** Specifier as written → the version it resolved to. */
  specifiers?: Record<string, string>;
  /** Packages by `name@version`. */
  npm?: Record<string, LockedPackage>;
  /** Anything else (the workspace section); dropped when pruning. */
  [key: string]: unknown;
}

/** One npm package of a lockfile. */
export interface LockedPackage {
  /** The packages it needs (`name`, or `name@version` where ambiguous). */
  dependencies?: string[];
  /** The packages it may use when they install (platform builds). */
  optionalDependencies?: string[];
  /** The systems it is only for (npm's names: linux, darwin, win32). */
  os?: string[];
  /** The processors it is only for (npm's names: x64, arm64). */
  cpu?: string[];
}

/** Whether `entry` installs on this machine (npm's names for Deno's os and arch). */
function forThisMachine(entry: LockedPackage): boolean {
  const os = Deno.build.os === "windows" ? "win32" : Deno.build.os;
  const cpu = Deno.build.arch === "x86_64" ? "x64" : "arm64";
  return (entry.os?.includes(os) ?? true) && (entry.cpu?.includes(cpu) ?? true);
}

/** What `deno info --json` says of a module graph (the parts used here). */
interface ModuleGraph {
  modules: Array<{ kind?: string; npmPackage?: string; size?: number; local?: string }>;
}

/** Runs deno with `args`; resolves with its exit status and text output. */
async function deno(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ success: boolean; stdout: string; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    success: output.success,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** The module graph main.ts reaches (static and literal dynamic imports). */
async function moduleGraph(): Promise<ModuleGraph> {
  const info = await deno(["info", "--json", ENTRY]);
  if (!info.success) throw new CompileError(`deno info ${ENTRY} failed: ${lastError(info.stderr)}`);
  return JSON.parse(info.stdout) as ModuleGraph;
}

/**
 * The lockfile entries (`name@version` keys of its `npm` section) that the
 * npm packages `roots` need, with their dependencies, optional ones included
 * (`deno compile` picks the target's platform packages among them).
 *
 * @example
 * ```ts
 * import { npmClosure } from "./compile.ts";
 * const lock = {
 *   version: "5",
 *   npm: { "a@1.0.0": { dependencies: ["b"] }, "b@2.0.0": {}, "c@3.0.0": {} },
 * };
 * console.log([...npmClosure(lock, ["a@1.0.0"])]); // [ "a@1.0.0", "b@2.0.0" ]
 * ```
 */
export function npmClosure(lock: Lockfile, roots: readonly string[]): Set<string> {
  const npm = lock.npm ?? {};
  const keys = Object.keys(npm);
  /** A dependency as the lockfile writes it (`name`, or `name@version` when ambiguous) → its key. */
  const resolve = (dep: string): string => {
    if (dep in npm) return dep;
    const matches = keys.filter((key) => key.startsWith(`${dep}@`) || key.startsWith(`${dep}_`));
    if (matches.length !== 1) {
      throw new CompileError(`deno.lock does not resolve npm dependency "${dep}"`);
    }
    return matches[0];
  };
  const seen = new Set<string>();
  const stack = roots.map(resolve);
  while (stack.length > 0) {
    const key = stack.pop()!;
    if (seen.has(key)) continue;
    seen.add(key);
    const entry = npm[key];
    for (const dep of [...(entry.dependencies ?? []), ...(entry.optionalDependencies ?? [])]) {
      stack.push(resolve(dep));
    }
  }
  return seen;
}

/**
 * `lock` cut down to the npm packages in `keep` (and the specifiers that
 * resolve to them), without the workspace section of deno.json's imports.
 *
 * @example
 * ```ts
 * import { pruneLockfile } from "./compile.ts";
 * const lock = {
 *   version: "5",
 *   specifiers: { "npm:a@1": "1.0.0", "npm:c@3": "3.0.0" },
 *   npm: { "a@1.0.0": {}, "c@3.0.0": {} },
 *   workspace: { dependencies: ["npm:c@3"] },
 * };
 * console.log(pruneLockfile(lock, new Set(["a@1.0.0"])));
 * // { version: "5", specifiers: { "npm:a@1": "1.0.0" }, npm: { "a@1.0.0": {} } }
 * ```
 */
export function pruneLockfile(lock: Lockfile, keep: ReadonlySet<string>): Lockfile {
  const npm = Object.fromEntries(Object.entries(lock.npm ?? {}).filter(([key]) => keep.has(key)));
  const specifiers = Object.fromEntries(
    Object.entries(lock.specifiers ?? {}).filter(([specifier, version]) => {
      const name = specifier.replace(/^npm:/, "").replace(/(.)@.*$/, "$1");
      return keep.has(`${name}@${version}`);
    }),
  );
  return { version: lock.version, specifiers, npm };
}

/** What a build embeds, as `deno info` counts it (without the runtime base). */
export interface Embedded {
  /** The npm packages (`name@version`), sorted. */
  packages: string[];
  /** Bytes of main.ts's own modules (TypeScript, JSON and text files). */
  moduleBytes: number;
  /** Bytes of the npm packages' files for this machine, as cached in DENO_DIR. */
  packageBytes: number;
}

/** Bytes of every file under `dir` (0 when it does not exist). */
async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  try {
    for await (const entry of Deno.readDir(dir)) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) total += await treeBytes(path);
      else if (entry.isFile) total += (await Deno.stat(path)).size;
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return total;
}

/** DENO_DIR's npm cache of the default registry. */
async function npmCacheDir(): Promise<string> {
  const info = await deno(["info", "--json"]);
  const dir = (JSON.parse(info.stdout) as { npmCache?: string }).npmCache;
  return `${dir}/registry.npmjs.org`;
}

/**
 * Plans a build: the module graph of main.ts, the npm packages it needs and
 * a lockfile holding only those, written into `dir`.
 */
async function plan(dir: string): Promise<{ lockPath: string; embedded: Embedded }> {
  const graph = await moduleGraph();
  const roots = [
    ...new Set(
      graph.modules.flatMap((m) => m.kind === "npm" && m.npmPackage ? [m.npmPackage] : []),
    ),
  ];
  const lock = JSON.parse(await Deno.readTextFile(LOCKFILE)) as Lockfile;
  const keep = npmClosure(lock, roots);
  const lockPath = `${dir}/deno.lock`;
  await Deno.writeTextFile(lockPath, JSON.stringify(pruneLockfile(lock, keep), null, 2) + "\n");
  const cache = await npmCacheDir();
  let packageBytes = 0;
  for (const key of keep) {
    if (!forThisMachine(lock.npm![key])) continue;
    const at = key.lastIndexOf("@");
    const version = key.slice(at + 1).replace(/_.*$/, "");
    packageBytes += await treeBytes(`${cache}/${key.slice(0, at)}/${version}`);
  }
  const moduleBytes = graph.modules.reduce(
    (sum, m) => sum + (m.local !== undefined && m.kind !== "npm" ? (m.size ?? 0) : 0),
    0,
  );
  return { lockPath, embedded: { packages: [...keep].sort(), moduleBytes, packageBytes } };
}

/** The last line of `stderr` that says what went wrong. */
function lastError(stderr: string): string {
  const lines = stderr.split("\n").map((line) => line.trim()).filter((line) => line !== "");
  return lines.findLast((line) => /^error:/i.test(line))?.replace(/^error:\s*/i, "") ??
    lines.at(-1) ?? "no output";
}

/**
 * The arguments of `deno compile` for `target` (this machine's when
 * undefined) into `output`, with the lockfile at `lockPath`.
 *
 * @example
 * ```ts
 * import { compileArgs } from "./compile.ts";
 * console.log(compileArgs("dist/taskq", "/tmp/deno.lock").includes("--no-config")); // true
 * ```
 */
export function compileArgs(output: string, lockPath: string, target?: string): string[] {
  const args = [
    "compile",
    "--no-config",
    `--lock=${lockPath}`,
    "--frozen",
    ...PERMISSIONS,
    "--output",
    output,
  ];
  if (target !== undefined) args.push("--target", target);
  args.push(ENTRY);
  return args;
}

/**
 * The one line explaining a failed `deno compile`, from its error output:
 * the runtime base that could not be had says where it was looked for.
 */
export function explainFailure(stderr: string, target: string | undefined): string {
  const download = /error sending request for url \((https:\/\/[^)]+\/(denort-[^)/]+\.zip))\)/
    .exec(stderr);
  if (/Setting up base binary/.test(stderr) || download !== null) {
    const cause = /(dns error|Connection refused|timed out|certificate|404 Not Found)/i
      .exec(stderr)?.[1] ?? lastError(stderr.replace(/Stack backtrace:[\s\S]*$/, ""));
    const zip = download?.[2] ?? `denort-${target ?? Deno.build.target}.zip`;
    return `cannot get Deno's runtime base ${zip} for ${target ?? Deno.build.target} ` +
      `(download from dl.deno.land failed: ${cause}); put ${zip} in ` +
      `$DENO_DIR/dl/release/v${Deno.version.deno}/ or point DENORT_BIN at a denort binary`;
  }
  const typeErrors = [...stderr.matchAll(/TS\d+ \[ERROR\]: (.*)\n(?:[\s\S]*?\n)?\s+at (\S+)/g)];
  if (typeErrors.length > 0) {
    const [, first, where] = typeErrors[0];
    return `type checking failed (${typeErrors.length} error${typeErrors.length > 1 ? "s" : ""}; ` +
      `run deno check main.ts): ${first.trim()} at ${where}`;
  }
  return lastError(stderr.replace(/Stack backtrace:[\s\S]*$/, ""));
}

/**
 * Builds `output` for `target` (this machine's when undefined).
 * @throws {CompileError} with one line when the build fails.
 */
export async function compile(
  output: string,
  target?: string,
  env: Record<string, string> = {},
): Promise<Embedded> {
  const dir = await Deno.makeTempDir({ prefix: "taskq-compile-" });
  try {
    const { lockPath, embedded } = await plan(dir);
    const result = await deno(compileArgs(output, lockPath, target), env);
    if (!result.success) throw new CompileError(explainFailure(result.stderr, target));
    return embedded;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** What `deno compile` would embed, without building anything. */
export async function measure(): Promise<Embedded> {
  const dir = await Deno.makeTempDir({ prefix: "taskq-compile-" });
  try {
    return (await plan(dir)).embedded;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The command line's targets. @throws {CompileError} for an unknown flag or target. */
function targetsOf(args: readonly string[]): (string | undefined)[] {
  if (args.includes("--all")) return [undefined, ...TARGETS];
  const targets: (string | undefined)[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const value = arg === "--target" ? args[++i] : arg.startsWith("--target=") ? arg.slice(9) : arg;
    if (value === undefined || !TARGETS.includes(value)) {
      throw new CompileError(
        `unknown target or flag ${JSON.stringify(value ?? arg)}: use --target TARGET ` +
          `(${TARGETS.join(", ")}), --all or --measure`,
      );
    }
    targets.push(value);
  }
  return targets.length > 0 ? targets : [undefined];
}

/** The size `bytes` as MB, for lines printed. */
function mb(bytes: number): string {
  return `${(bytes / BYTES_PER_MB).toFixed(2)} MB`;
}

if (import.meta.main) {
  try {
    if (Deno.args.includes("--measure")) {
      const e = await measure();
      console.log(`npm packages (${e.packages.length}): ${e.packages.join(", ")}`);
      console.log(
        `embedded: ${mb(e.moduleBytes)} of modules + ${mb(e.packageBytes)} of npm packages ` +
          `(as cached here), before Deno's runtime base`,
      );
    } else {
      for (const target of targetsOf(Deno.args)) {
        const suffix = target?.includes("windows") ? ".exe" : "";
        const output = `${DIST}taskq${target === undefined ? "" : `-${target}`}${suffix}`;
        await compile(output, target);
        console.log(`built ${output} (${mb((await Deno.stat(output)).size)})`);
      }
    }
  } catch (error) {
    if (!(error instanceof CompileError)) throw error;
    console.error(`deno task compile: ${error.message}`);
    Deno.exit(1);
  }
}
