/**
 * The master's HTTP side, as the `./http` subpath of taskq: the dashboard,
 * the JSON API and `/metrics`, given to {@link serve} as a front-end, and the
 * token its clients send.
 *
 * @example
 * ```ts
 * import { serve } from "../mod.ts";
 * import { httpFrontEnd, httpToken } from "./mod.ts";
 * const master = await serve({
 *   listen: "127.0.0.1:0",
 *   authkey: "abc",
 *   frontEnds: [httpFrontEnd({ listen: "127.0.0.1:0" })],
 * });
 * const url = master.frontEnds[0].address;
 * const token = httpToken(new TextEncoder().encode("abc"));
 * const reply = await fetch(`${url}api/state`, { headers: { authorization: `Bearer ${token}` } });
 * console.log((await reply.json()).clients); // 0
 * await master.close();
 * ```
 *
 * @module
 */

export {
  checkHttpAddress,
  httpFrontEnd,
  type HttpFrontEndOptions,
  type HttpOptions,
  HttpServer,
  serveHttp,
} from "./server.ts";
export { httpToken } from "./token.ts";
export type { DeadQueueCount, DeadReply, ItemsReply } from "./server.ts";
export type { JobView, LimitsView } from "./jobs.ts";
export type { ByteStream, HttpLimits, StreamListener } from "./http1.ts";
export type {
  ClientRow,
  DashboardSource,
  DashboardState,
  DeadItem,
  QueueRow,
  StateQuery,
} from "./state.ts";
export type { History, HistorySeries, Rates } from "./rates.ts";
export type { StatusRow } from "../model/status_rows.ts";
