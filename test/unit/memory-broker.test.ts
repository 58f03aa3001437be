import { ManualClock } from "../../src/clock.js";
import { MemoryBroker } from "../../src/broker/memory.js";
import type { Broker } from "../../src/broker/broker.js";
import { brokerSuite } from "../shared/broker-suite.js";

const clocks = new WeakMap<Broker, ManualClock>();

brokerSuite("memory", {
  async make({ historySize, historyTtl }) {
    const clock = new ManualClock();
    const b = new MemoryBroker({ historySize, historyTtl, clock });
    clocks.set(b, clock);
    return b;
  },
  async advance(b, seconds) {
    const clock = clocks.get(b)!;
    clock.advance(seconds * 1000);
    b.sweep(clock.now());
  },
});
