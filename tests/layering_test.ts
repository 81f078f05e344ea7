/**
 * The layering of lib/: every relative import of `main.ts` and of every `.ts`
 * file under `lib/` (reachable from main.ts or not) must go in a direction
 * that docs/ARCHITECTURE.md allows, and every file under `lib/` must belong to
 * a layer. The rules are read from that document's three tables (layers,
 * interfaces of sealed layers, exceptions), so the document and this test
 * cannot drift apart.
 *
 * Imports are found by a small scanner over the source text (static
 * `import … from "…"`, side-effect `import "…"`, `export … from "…"` and
 * `import("…")` with a literal specifier), which skips comments, strings,
 * template literals and regular expressions, so an import written in a doc
 * comment or in generated code is not taken for a real one. Only relative
 * specifiers (`./`, `../`) are edges; `node:` and `npm:` ones are not.
 *
 * A failure lists every offending edge, one per line, as
 * `FILE:LINE → IMPORTED FILE (why)`. The self-tests feed the scanner and the
 * checker synthetic input to prove they catch what they should.
 *
 * @module
 */

import assert from "node:assert/strict";

/** The repository root, as a file URL ending in `/`. */
const ROOT = new URL("../", import.meta.url);

/** The document the rules are read from, relative to the repository root. */
const DOC_PATH = "docs/ARCHITECTURE.md";

/** Header of the layer table in {@link DOC_PATH}. */
const LAYERS_HEADER = ["layer", "files", "may import"];
/** Header of the table of sealed layers' interfaces. */
const SEALED_HEADER = ["sealed layer", "interface"];
/** Header of the table of single edges allowed past an interface. */
const EXCEPTIONS_HEADER = ["importer", "may also import"];

/** Extensions of the files whose imports are scanned. */
const SOURCE_EXTENSIONS = [".ts", ".tsx", ".mts", ".cts"];

// ------------------------------------------------------------ the rules

/** One row of the layer table. */
interface Layer {
  name: string;
  /** Folders (ending in `/`) and single files that make up the layer. */
  files: string[];
  /** Layers it may import (its own included). */
  layers: Set<string>;
  /** Single files of other layers it may import. */
  singleFiles: Set<string>;
  /** Whether it may import every layer (`*`). */
  all: boolean;
}

/** The rules of docs/ARCHITECTURE.md. */
interface Rules {
  layers: Map<string, Layer>;
  /** Sealed layer → the files other layers may import from it. */
  sealed: Map<string, Set<string>>;
  /** Importer file → the files it may import past a sealed layer's interface. */
  exceptions: Map<string, Set<string>>;
}

/** Every markdown table of `markdown`, as rows of trimmed cells (the header row first). */
function markdownTables(markdown: string): string[][][] {
  const tables: string[][][] = [];
  let current: string[][] | undefined;
  let inFence = false;
  for (const raw of markdown.split("\n")) {
    const line = raw.trim();
    if (line.startsWith("```")) inFence = !inFence;
    if (inFence || !line.startsWith("|")) {
      current = undefined;
      continue;
    }
    const cells = line.replace(/^\|/, "").replace(/\|$/, "").split("|").map((c) => c.trim());
    if (cells.every((c) => /^:?-+:?$/.test(c))) continue; // the delimiter row
    if (current === undefined) {
      current = [];
      tables.push(current);
    }
    current.push(cells);
  }
  return tables;
}

/** The body rows of the one table of `markdown` whose header is `header`. */
function tableRows(markdown: string, header: string[]): string[][] {
  const found = markdownTables(markdown).filter((t) =>
    t[0].length === header.length && t[0].every((cell, i) => cell.toLowerCase() === header[i])
  );
  if (found.length !== 1) {
    throw new Error(
      `${DOC_PATH} must hold exactly one table headed | ${
        header.join(" | ")
      } | (found ${found.length})`,
    );
  }
  return found[0].slice(1);
}

/** The comma-separated entries of a cell, without backticks. */
function entries(cell: string): string[] {
  return cell.split(",").map((e) => e.trim().replace(/^`(.*)`$/, "$1")).filter((e) => e !== "");
}

/** Whether an entry names a file or folder rather than a layer. */
function isPath(entry: string): boolean {
  return entry.includes("/") || entry.includes(".");
}

/** Reads the rules from the text of docs/ARCHITECTURE.md; throws on a malformed or inconsistent table. */
function parseRules(markdown: string): Rules {
  const layers = new Map<string, Layer>();
  const claimed = new Map<string, string>();
  for (const row of tableRows(markdown, LAYERS_HEADER)) {
    const [name, files, mayImport] = row;
    if (!/^[a-z][a-z0-9_-]*$/.test(name)) throw new Error(`bad layer name ${JSON.stringify(name)}`);
    if (layers.has(name)) throw new Error(`layer ${name} is listed twice`);
    const layer: Layer = {
      name,
      files: entries(files),
      layers: new Set([name]),
      singleFiles: new Set(),
      all: false,
    };
    if (layer.files.length === 0) throw new Error(`layer ${name} has no files`);
    for (const file of layer.files) {
      const owner = claimed.get(file);
      if (owner !== undefined) throw new Error(`${file} is in both ${owner} and ${name}`);
      claimed.set(file, name);
    }
    for (const entry of entries(mayImport)) {
      if (entry === "*") layer.all = true;
      else if (isPath(entry)) layer.singleFiles.add(entry);
      else layer.layers.add(entry);
    }
    layers.set(name, layer);
  }
  const knownLayer = (name: string, where: string) => {
    if (!layers.has(name)) throw new Error(`${where} names ${JSON.stringify(name)}, not a layer`);
  };
  for (const layer of layers.values()) {
    for (const name of layer.layers) knownLayer(name, `the may-import list of ${layer.name}`);
  }

  const sealed = new Map<string, Set<string>>();
  for (const [name, files] of tableRows(markdown, SEALED_HEADER)) {
    knownLayer(name, "the interface table");
    sealed.set(name, new Set(entries(files)));
  }
  const exceptions = new Map<string, Set<string>>();
  for (const [importer, files] of tableRows(markdown, EXCEPTIONS_HEADER)) {
    for (const from of entries(importer)) {
      const set = exceptions.get(from) ?? new Set<string>();
      for (const file of entries(files)) set.add(file);
      exceptions.set(from, set);
    }
  }
  const rules: Rules = { layers, sealed, exceptions };
  const named = [
    ...[...layers.values()].flatMap((l) => [...l.singleFiles]),
    ...[...sealed.values()].flatMap((s) => [...s]),
    ...[...exceptions].flatMap(([from, to]) => [from, ...to]),
  ];
  for (const path of named) {
    if (layerOf(rules, path) === undefined) throw new Error(`${path} is named but in no layer`);
  }
  return rules;
}

/** The layer `path` (relative to the repository root) belongs to: its own entry, else the deepest folder. */
function layerOf(rules: Rules, path: string): string | undefined {
  let best: string | undefined;
  let bestLength = -1;
  for (const layer of rules.layers.values()) {
    for (const entry of layer.files) {
      if (entry === path) return layer.name;
      if (entry.endsWith("/") && path.startsWith(entry) && entry.length > bestLength) {
        best = layer.name;
        bestLength = entry.length;
      }
    }
  }
  return best;
}

// ------------------------------------------------------------ the scanner

/** A token of the scanner: only what finding imports needs. */
interface Token {
  kind: "name" | "string" | "punct" | "other";
  value: string;
  line: number;
}

/** Keywords after which a `/` starts a regular expression, not a division. */
const REGEX_AFTER = new Set([
  "return",
  "typeof",
  "case",
  "do",
  "else",
  "in",
  "of",
  "new",
  "delete",
  "void",
  "throw",
  "instanceof",
  "yield",
  "await",
]);

/** Splits TypeScript source into names, string literals and punctuation, skipping comments, templates and regexes. */
function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  let line = 1;
  let depth = 0; // open braces
  const templateDepths: number[] = []; // brace depth at which each open `${` closes

  const advance = (to: number) => {
    for (let k = i; k < to && k < source.length; k++) if (source[k] === "\n") line++;
    i = to;
  };
  /** Reads template text from `i` up to its end or its next `${`. */
  const readTemplate = () => {
    while (i < source.length) {
      const c = source[i];
      if (c === "\\") advance(i + 2);
      else if (c === "`") {
        advance(i + 1);
        break;
      } else if (c === "$" && source[i + 1] === "{") {
        advance(i + 2);
        templateDepths.push(depth);
        depth++;
        break;
      } else advance(i + 1);
    }
    tokens.push({ kind: "other", value: "`template`", line });
  };
  const regexAllowed = () => {
    const prev = tokens.at(-1);
    if (prev === undefined) return true;
    if (prev.kind === "name") return REGEX_AFTER.has(prev.value);
    if (prev.kind === "punct") return ![")", "]", "}"].includes(prev.value);
    return false;
  };

  while (i < source.length) {
    const c = source[i];
    const next = source[i + 1];
    if (c === "\n" || c === " " || c === "\t" || c === "\r" || c === "\uFEFF") {
      advance(i + 1);
    } else if (c === "/" && next === "/") {
      const end = source.indexOf("\n", i);
      advance(end === -1 ? source.length : end);
    } else if (c === "/" && next === "*") {
      const end = source.indexOf("*/", i + 2);
      advance(end === -1 ? source.length : end + 2);
    } else if (c === '"' || c === "'") {
      const startLine = line;
      let value = "";
      let k = i + 1;
      while (k < source.length && source[k] !== c && source[k] !== "\n") {
        if (source[k] === "\\") k++;
        value += source[k] ?? "";
        k++;
      }
      advance(k + 1);
      tokens.push({ kind: "string", value, line: startLine });
    } else if (c === "`") {
      advance(i + 1);
      readTemplate();
    } else if (c === "/" && regexAllowed()) {
      let k = i + 1;
      let inClass = false;
      while (k < source.length && source[k] !== "\n") {
        const r = source[k];
        if (r === "\\") k++;
        else if (r === "[") inClass = true;
        else if (r === "]") inClass = false;
        else if (r === "/" && !inClass) break;
        k++;
      }
      k++;
      while (k < source.length && /[a-z]/i.test(source[k])) k++;
      advance(k);
      tokens.push({ kind: "other", value: "/regex/", line });
    } else if (/[A-Za-z_$\u0080-\uFFFF]/.test(c)) {
      let k = i + 1;
      while (k < source.length && /[\w$\u0080-\uFFFF]/.test(source[k])) k++;
      tokens.push({ kind: "name", value: source.slice(i, k), line });
      advance(k);
    } else if (/[0-9]/.test(c) || (c === "." && next !== undefined && /[0-9]/.test(next))) {
      let k = i + 1;
      while (k < source.length && /[\w.]/.test(source[k])) k++;
      tokens.push({ kind: "other", value: source.slice(i, k), line });
      advance(k);
    } else if (c === "}" && templateDepths.length > 0 && templateDepths.at(-1) === depth - 1) {
      templateDepths.pop();
      depth--;
      advance(i + 1);
      readTemplate();
    } else {
      if (c === "{") depth++;
      if (c === "}") depth--;
      tokens.push({ kind: "punct", value: c, line });
      advance(i + 1);
    }
  }
  return tokens;
}

/** One import found in a source text. */
interface FoundImport {
  specifier: string;
  line: number;
}

/** The specifiers (any, not only relative) that `source` imports or re-exports, in order. */
function scanImports(source: string): FoundImport[] {
  const tokens = tokenize(source);
  const found: FoundImport[] = [];
  const is = (k: number, kind: Token["kind"], value?: string) =>
    tokens[k]?.kind === kind && (value === undefined || tokens[k].value === value);
  /** From `k`, skips an import clause and returns the index of `from`, if a `from "…"` ends it. */
  const fromClause = (k: number): number | undefined => {
    for (; k < tokens.length; k++) {
      if (is(k, "name", "from") && is(k + 1, "string")) return k;
      const ok = is(k, "name") || ["{", "}", ",", "*"].some((p) => is(k, "punct", p));
      if (!ok) return undefined;
    }
    return undefined;
  };
  for (let k = 0; k < tokens.length; k++) {
    const t = tokens[k];
    if (t.kind !== "name" || is(k - 1, "punct", ".")) continue;
    if (t.value === "import") {
      if (is(k + 1, "punct", "(") && is(k + 2, "string")) {
        found.push({ specifier: tokens[k + 2].value, line: tokens[k + 2].line });
      } else if (is(k + 1, "string")) {
        found.push({ specifier: tokens[k + 1].value, line: tokens[k + 1].line });
      } else if (!is(k + 1, "punct")) {
        const from = fromClause(k + 1);
        if (from !== undefined) found.push({ specifier: tokens[from + 1].value, line: t.line });
      } else if (is(k + 1, "punct", "{") || is(k + 1, "punct", "*")) {
        const from = fromClause(k + 1);
        if (from !== undefined) found.push({ specifier: tokens[from + 1].value, line: t.line });
      }
    } else if (t.value === "export") {
      let j = k + 1;
      if (is(j, "name", "type")) j++;
      if (is(j, "punct", "*")) {
        j++;
        if (is(j, "name", "as")) j += 2;
      } else if (is(j, "punct", "{")) {
        while (j < tokens.length && !is(j, "punct", "}")) j++;
        j++;
      } else continue;
      if (is(j, "name", "from") && is(j + 1, "string")) {
        found.push({ specifier: tokens[j + 1].value, line: t.line });
      }
    }
  }
  return found;
}

// ------------------------------------------------------------ the graph

/** One import of one file by another, both relative to the repository root. */
interface Edge {
  from: string;
  to: string;
  line: number;
}

/** The relative imports of `source` (the file `path`), resolved to repository paths. */
function edgesOf(path: string, source: string): Edge[] {
  const base = new URL(path, ROOT);
  return scanImports(source)
    .filter((i) => i.specifier.startsWith("./") || i.specifier.startsWith("../"))
    .map((i) => {
      const url = new URL(i.specifier, base);
      url.search = "";
      url.hash = "";
      const to = url.href.startsWith(ROOT.href)
        ? decodeURIComponent(url.href.slice(ROOT.href.length))
        : url.href;
      return { from: path, to, line: i.line };
    });
}

/** Every file under the folder `dir` (relative to the root), recursively, sorted. */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir(new URL(dir, ROOT))) {
    const path = `${dir}${entry.name}`;
    if (entry.isDirectory) out.push(...await filesUnder(`${path}/`));
    else if (entry.isFile) out.push(path);
  }
  return out.sort();
}

/**
 * Every violation of `rules` by `files` (those that must belong to a layer)
 * and `edges`, one line each, sorted; empty when the graph is clean.
 */
function checkGraph(rules: Rules, files: readonly string[], edges: readonly Edge[]): string[] {
  const violations = new Set<string>();
  for (const file of files) {
    if (layerOf(rules, file) === undefined) {
      violations.add(`${file}: belongs to no layer (place its folder in ${DOC_PATH})`);
    }
  }
  for (const { from, to, line } of edges) {
    const fromLayer = layerOf(rules, from);
    if (fromLayer === undefined) continue; // reported above
    const layer = rules.layers.get(fromLayer)!;
    const toLayer = layerOf(rules, to);
    const where = `${from}:${line} → ${to}`;
    if (toLayer === undefined) {
      violations.add(`${where} (the imported file belongs to no layer)`);
    } else if (
      toLayer !== fromLayer && !layer.all && !layer.layers.has(toLayer) &&
      !layer.singleFiles.has(to)
    ) {
      const detail = layer.singleFiles.size > 0 && [...layer.singleFiles].some((f) =>
          layerOf(rules, f) === toLayer
        )
        ? ` (only ${
          [...layer.singleFiles].filter((f) => layerOf(rules, f) === toLayer).join(", ")
        })`
        : "";
      violations.add(`${where} (${fromLayer} may not import ${toLayer}${detail})`);
    } else if (
      toLayer !== fromLayer && rules.sealed.has(toLayer) && !rules.sealed.get(toLayer)!.has(to) &&
      !layer.singleFiles.has(to) && !rules.exceptions.get(from)?.has(to)
    ) {
      const open = [...rules.sealed.get(toLayer)!].join(", ");
      violations.add(`${where} (outside ${toLayer}'s interface: ${open})`);
    }
  }
  return [...violations].sort();
}

/** Reads the real rules, files and edges of the repository. */
async function repositoryGraph(): Promise<{ rules: Rules; files: string[]; edges: Edge[] }> {
  const rules = parseRules(await Deno.readTextFile(new URL(DOC_PATH, ROOT)));
  const files = await filesUnder("lib/");
  const scanned = ["main.ts", ...files.filter((f) => SOURCE_EXTENSIONS.some((e) => f.endsWith(e)))];
  const edges: Edge[] = [];
  for (const path of scanned) {
    edges.push(...edgesOf(path, await Deno.readTextFile(new URL(path, ROOT))));
  }
  return { rules, files, edges };
}

// ------------------------------------------------------------ the tests

Deno.test("layering: every import of main.ts and lib/ goes a way docs/ARCHITECTURE.md allows", async () => {
  const { files, edges, rules } = await repositoryGraph();
  assert.ok(files.length > 0 && edges.length > 0, "lib/ was found and has imports");
  const violations = checkGraph(rules, files, edges);
  if (violations.length > 0) {
    assert.fail(
      `${violations.length} import(s) against the layering of ${DOC_PATH}:\n  ` +
        violations.join("\n  "),
    );
  }
});

Deno.test("layering self-test: the scanner finds real imports only", () => {
  const source = [
    `/** @example import { x } from "./in_doc_comment.ts"; */`,
    `// import "./in_line_comment.ts";`,
    `import { a, type B } from "./a.ts";`,
    `import type { C } from "../c.ts";`,
    `import D, * as E from "./d.ts";`,
    `import "./side_effect.ts";`,
    `import text from "./page.html" with { type: "text" };`,
    `import {`,
    `  multi,`,
    `  line,`,
    `} from "./multi.ts";`,
    `export { f } from "./f.ts";`,
    `export * from "./star.ts";`,
    `export * as ns from "./ns.ts";`,
    `export type { G } from "./g.ts";`,
    `export { local };`,
    `export const from = "./not_an_import.ts";`,
    `const s = 'import { y } from "./in_string.ts"';`,
    'const t = `import { z } from "./in_template.ts" ${`nested ${\'}\'}`} import("./t.ts")`;',
    `const r = /import("\\.\\/in_regex.ts")/;`,
    `const half = 4 / 2; const m = import.meta.url;`,
    `const lazy = await import("./lazy.ts");`,
    `type L = typeof import("./type_only.ts");`,
    `obj.import("./method_call.ts");`,
    `import { q } from "npm:msgpackr@2.1.4";`,
  ].join("\n");
  assert.deepEqual(scanImports(source), [
    { specifier: "./a.ts", line: 3 },
    { specifier: "../c.ts", line: 4 },
    { specifier: "./d.ts", line: 5 },
    { specifier: "./side_effect.ts", line: 6 },
    { specifier: "./page.html", line: 7 },
    { specifier: "./multi.ts", line: 8 },
    { specifier: "./f.ts", line: 12 },
    { specifier: "./star.ts", line: 13 },
    { specifier: "./ns.ts", line: 14 },
    { specifier: "./g.ts", line: 15 },
    { specifier: "./lazy.ts", line: 22 },
    { specifier: "./type_only.ts", line: 23 },
    { specifier: "npm:msgpackr@2.1.4", line: 25 },
  ]);
  assert.deepEqual(edgesOf("lib/cli/x.ts", `import { y } from "../broker/local.ts?x#y";`), [
    { from: "lib/cli/x.ts", to: "lib/broker/local.ts", line: 1 },
  ]);
});

Deno.test("layering self-test: the checker catches a synthetic violation of each kind", async () => {
  const rules = parseRules(await Deno.readTextFile(new URL(DOC_PATH, ROOT)));
  const edge = (from: string, to: string): Edge => ({ from, to, line: 1 });
  const allowed = [
    edge("lib/util/deque.ts", "lib/util/other.ts"),
    edge("lib/model/codec.ts", "lib/errors.ts"),
    edge("lib/broker/local.ts", "lib/engine/engine.ts"),
    edge("lib/server/master.ts", "lib/broker/local.ts"),
    edge("lib/server/native_session.ts", "lib/broker/broker.ts"),
    edge("lib/mod.ts", "lib/broker/local.ts"),
    edge("lib/http/server.ts", "lib/server/front_end.ts"),
    edge("lib/python/mod.ts", "lib/python/frontend.ts"),
    edge("main.ts", "lib/python/mod.ts"),
    edge("main.ts", "deno.json"),
  ];
  assert.deepEqual(checkGraph(rules, ["lib/util/deque.ts", "lib/mod.ts"], allowed), []);

  const forbidden = [
    edge("lib/util/deque.ts", "lib/model/types.ts"),
    edge("lib/cli/master.ts", "lib/broker/local.ts"),
    edge("lib/cli/master.ts", "lib/python/cli.ts"),
    edge("lib/http/server.ts", "lib/server/native_session.ts"),
    edge("lib/mod.ts", "lib/engine/engine.ts"),
    edge("lib/wire/frame.ts", "lib/nowhere.ts"),
    edge("main.ts", "lib/store/sqlite.ts"),
  ];
  assert.deepEqual(checkGraph(rules, ["lib/newdir/x.ts", "lib/util/deque.ts"], forbidden), [
    "lib/cli/master.ts:1 → lib/broker/local.ts (outside broker's interface: " +
    "lib/broker/broker.ts, lib/broker/errors.ts, lib/broker/telemetry.ts)",
    "lib/cli/master.ts:1 → lib/python/cli.ts (cli may not import python)",
    "lib/http/server.ts:1 → lib/server/native_session.ts (http may not import server " +
    "(only lib/server/front_end.ts, lib/server/master.ts))",
    "lib/mod.ts:1 → lib/engine/engine.ts (api may not import engine)",
    "lib/newdir/x.ts: belongs to no layer (place its folder in docs/ARCHITECTURE.md)",
    "lib/util/deque.ts:1 → lib/model/types.ts (util may not import model)",
    "lib/wire/frame.ts:1 → lib/nowhere.ts (the imported file belongs to no layer)",
    "main.ts:1 → lib/store/sqlite.ts (main may not import store)",
  ]);
});

Deno.test("layering self-test: a malformed rule table is refused", () => {
  const doc = (layers: string, sealed = "", exceptions = "") =>
    [
      "| layer | files | may import |",
      "| --- | --- | --- |",
      layers,
      "",
      "| sealed layer | interface |",
      "| --- | --- |",
      sealed,
      "",
      "| importer | may also import |",
      "| --- | --- |",
      exceptions,
    ].join("\n");
  const ok = parseRules(doc("| a | `lib/a/` | a, b |\n| b | `lib/b/` | b |"));
  assert.equal(layerOf(ok, "lib/a/x/y.ts"), "a");
  assert.equal(layerOf(ok, "lib/c.ts"), undefined);
  assert.throws(() => parseRules(doc("| a | `lib/a/` | a, bee |")), /"bee", not a layer/);
  assert.throws(
    () => parseRules(doc("| a | `lib/a/` | a |\n| b | `lib/a/` | b |")),
    /lib\/a\/ is in both a and b/,
  );
  assert.throws(() => parseRules(doc("| a | `lib/a/` | a |", "| z | `lib/a/x.ts` |")), /"z"/);
  assert.throws(
    () => parseRules(doc("| a | `lib/a/` | a |", "", "| `lib/q.ts` | `lib/a/x.ts` |")),
    /lib\/q\.ts is named but in no layer/,
  );
  assert.throws(() => parseRules("no tables"), /exactly one table/);
});
