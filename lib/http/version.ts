/**
 * taskq's version as the HTTP side reports it (`taskq_build_info` in
 * `/metrics`). The HTTP side may not import deno.json (docs/ARCHITECTURE.md),
 * so the number is written here too; tests/http_metrics_test.ts checks that
 * it is deno.json's `version`.
 *
 * @example
 * ```ts
 * import { TASKQ_VERSION } from "./version.ts";
 * console.log(/^\d+\.\d+\.\d+/.test(TASKQ_VERSION)); // true
 * ```
 *
 * @module
 */

/** taskq's version: deno.json's `version`. */
export const TASKQ_VERSION = "0.1.0";
