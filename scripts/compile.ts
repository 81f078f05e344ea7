/**
 * `deno task compile`: builds one self-contained taskq executable per target
 * into dist/ (`dist/taskq-TARGET`, plus `dist/taskq` for this machine).
 *
 * `deno compile` downloads Deno's runtime base binary for each target, so this
 * needs internet access. Pass target triples as arguments to build only those.
 *
 * @module
 */

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

/** Arguments of `deno compile` for `target` (this machine's when undefined) into `output`. */
export function compileArgs(output: string, target?: string): string[] {
  const args = ["compile", ...PERMISSIONS, "--output", output];
  if (target !== undefined) args.push("--target", target);
  args.push(new URL("../main.ts", import.meta.url).pathname);
  return args;
}

async function compile(output: string, target?: string): Promise<boolean> {
  console.log(`building ${output}`);
  const { success } = await new Deno.Command(Deno.execPath(), {
    args: compileArgs(output, target),
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  return success;
}

if (import.meta.main) {
  const dist = new URL("../dist/", import.meta.url).pathname;
  let ok = await compile(`${dist}taskq`);
  for (const target of Deno.args.length > 0 ? Deno.args : TARGETS) {
    const suffix = target.includes("windows") ? ".exe" : "";
    ok = (await compile(`${dist}taskq-${target}${suffix}`, target)) && ok;
  }
  Deno.exit(ok ? 0 : 1);
}
