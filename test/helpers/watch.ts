/**
 * What the hub does before it listens to a channel on a broker shared by
 * several nodes: declare interest, read the channel's position, and (for a
 * test that wants every later message through the listener) wait until the
 * interest has taken effect.
 */
import type { Broker } from "../../src/broker/broker.js";
import { waitFor } from "./recorded.js";

export async function watch(b: Broker, ...channels: string[]): Promise<void> {
  if (!b.interest) return;
  for (const channel of channels) {
    b.interest(channel, true);
    await b.read(channel);
  }
  const subscribed = (b as { isSubscribed?(channel: string): boolean }).isSubscribed;
  if (subscribed) await waitFor(() => channels.every((c) => subscribed.call(b, c)), 5000, `the subscription to ${channels.join(", ")}`);
}
