/**
 * A bound on sockets that are not subscriber connections: sockets still
 * sending their headers, publishes and other requests in progress, and idle
 * kept-alive connections. Subscriber connections (WebSocket, SSE, held polls)
 * are bounded by `--max-connections` and `--max-connections-per-ip`; every
 * other socket counts here, per peer address (`--max-pending-connections-per-ip`)
 * and in total (`--max-pending-connections`). A new socket past either limit
 * is closed at once, before node:http reads a byte from it.
 *
 * Nothing is kept per socket but two fields on the socket and a shared
 * 'close' listener: one Map of open sockets per peer address, and the
 * subscriber counts the connection registry keeps already. The pending
 * sockets of an address are its open sockets minus its subscriber
 * connections, so a socket moves between the two by itself when it is
 * admitted as a subscriber and when it goes back to idle keep-alive.
 */
import type { Socket } from "node:net";
import { normalizeAddress } from "./client-address.js";

const PEER = Symbol("heartline.peer");
const LIMITS = Symbol("heartline.socketLimits");
type CountedSocket = Socket & { [PEER]?: string; [LIMITS]?: SocketLimits };

export interface SocketLimitOptions {
  /** Pending sockets in total; 0 = no limit. */
  maxPending: number;
  /** Pending sockets per peer address; 0 = no limit. Not applied when the peer is a trusted proxy. */
  maxPendingPerIp: number;
  /** Subscriber connections open in total, and from one address. */
  subscribers: () => number;
  subscribersOf: (address: string) => number;
  /** Counts a refused socket. */
  onRefused: (perAddress: boolean) => void;
}

export class SocketLimits {
  /** Open sockets per peer address. */
  private readonly open = new Map<string, number>();
  private total = 0;

  constructor(private readonly options: SocketLimitOptions) {}

  /**
   * A socket was accepted ('connection'). Counts it, or closes it at once when
   * it would pass a limit. A socket already counted (one handed back to
   * node:http after a poll) is left alone.
   */
  accept(socket: Socket): void {
    const s = socket as CountedSocket;
    if (s[LIMITS] !== undefined) return;
    const peer = normalizeAddress(socket.remoteAddress ?? "") ?? "unknown";
    const o = this.options;
    const n = this.open.get(peer) ?? 0;
    if (o.maxPending > 0 && this.total - o.subscribers() >= o.maxPending) {
      o.onRefused(false);
      socket.destroy();
      return;
    }
    if (o.maxPendingPerIp > 0 && n - o.subscribersOf(peer) >= o.maxPendingPerIp) {
      o.onRefused(true);
      socket.destroy();
      return;
    }
    s[PEER] = peer;
    s[LIMITS] = this;
    this.open.set(peer, n + 1);
    this.total++;
    socket.once("close", onClose);
  }

  release(peer: string): void {
    this.total--;
    const n = (this.open.get(peer) ?? 1) - 1;
    if (n <= 0) this.open.delete(peer);
    else this.open.set(peer, n);
  }

  /** Open sockets counted, and the peer addresses they come from. */
  get counts(): { sockets: number; addresses: number } {
    return { sockets: this.total, addresses: this.open.size };
  }
}

function onClose(this: CountedSocket): void {
  this[LIMITS]?.release(this[PEER]!);
}
