/**
 * The seam for cross-tab sharing: a client made while a linker is installed
 * (the browser bundle installs one) asks it for a {@link Link} and, when it
 * gets one, talks through it instead of opening transports itself.
 */
import type { HeartlineOptions } from "./options.js";
import type { ClientState, Message, Position, PresenceFrame, PublishResult, ResetInfo, TransportName } from "./types.js";

/** @internal A client's connection through another context (cross-tab sharing). */
export interface Link {
  sub(channel: string, since: Position | undefined): void;
  unsub(channel: string): void;
  pub(channel: string, data: unknown): Promise<PublishResult>;
  /** Calls `method` through the hub, which gives up after `timeout` ms. */
  rpc(method: string, params: unknown, timeout: number): Promise<unknown>;
  wake(): void;
  close(): void;
}

/** @internal What a {@link Link} reports to its client. */
export interface LinkHooks {
  /** The hub's state, transport and client id (the id every tab's client takes). */
  state(to: ClientState, transport: TransportName | undefined, id: string): void;
  message(m: Message): void;
  reset(r: ResetInfo): void;
  /** A presence event of a channel this tab subscribed to. */
  pres(f: PresenceFrame): void;
  /** The server removed the subscription to `channel`. */
  gone(channel: string): void;
  /** The client id this tab knows: its own, or the last hub's (so a new hub keeps it). */
  id(): string;
  error(code: string, message: string, channel?: string): void;
  /** The position the hub's subscription to `channel` stands at, told once, before its messages. */
  pos(channel: string, p: Position): void;
  channels(): Array<[string, Position | undefined]>;
}

/** @internal Makes the link of a client, or undefined to let it connect on its own. */
export type Linker = (base: string, options: HeartlineOptions, hooks: LinkHooks) => Link | undefined;

/** @internal The installed linker, if any. */
export const sharing: { linker?: Linker } = {};

/** @internal Installs cross-tab sharing (the browser bundle does), or removes it. */
export function setLinker(l: Linker | undefined): void {
  sharing.linker = l;
}
