/**
 * Runs the broker conformance suite (tests/broker_conformance.ts) against the
 * local broker (lib/broker/local.ts): once with its items in memory, and once
 * over SQLite in a fresh temporary data directory per broker (removed after
 * the test), which also runs the durability tests by reopening that directory.
 *
 * @module
 */

import type { Broker } from "../lib/broker/broker.ts";
import { openLocalBroker } from "../lib/broker/local.ts";
import {
  brokerConformance,
  type BrokerFactory,
  type ConformanceOptions,
} from "./broker_conformance.ts";

brokerConformance({
  name: "local broker (memory)",
  durable: false,
  open: (options) => openLocalBroker({ store: "memory", ...options }),
});

/** The SQLite factory: one temporary data directory per opened broker, shared by its reopenings. */
function sqliteFactory(): BrokerFactory {
  const data = new Map<Broker, { dir: string; options: ConformanceOptions }>();
  return {
    name: "local broker (sqlite)",
    durable: true,
    async open(options) {
      const dir = await Deno.makeTempDir({ prefix: "taskq-conformance-" });
      try {
        const broker = await openLocalBroker({ store: { sqlite: dir }, ...options });
        data.set(broker, { dir, options });
        return broker;
      } catch (error) {
        await Deno.remove(dir, { recursive: true });
        throw error;
      }
    },
    async reopen(closed) {
      const entry = data.get(closed);
      if (entry === undefined) throw new Error("reopen: not a broker of this factory");
      const broker = await openLocalBroker({ store: { sqlite: entry.dir }, ...entry.options });
      data.set(broker, entry);
      return broker;
    },
    async cleanup(opened) {
      const entry = data.get(opened);
      if (entry === undefined) return;
      for (const [broker, other] of data) if (other === entry) data.delete(broker);
      await Deno.remove(entry.dir, { recursive: true });
    },
  };
}

brokerConformance(sqliteFactory());
