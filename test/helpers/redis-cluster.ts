/**
 * A private Redis Cluster for a test file: redis-server processes in cluster
 * mode on free loopback ports (never 6379), no persistence, joined into one
 * cluster with every slot covered. Masters split the 16384 slots evenly; a
 * replica follows the first master, so killing that master (SIGKILL) fails
 * over to the replica within a few seconds (node timeout 1 s, replicas always
 * eligible). Also RedisShards: independent, non-cluster servers.
 */
import { Redis } from "ioredis";
import { RedisServer } from "./redis.js";

export const SLOTS = 16384;
const NODE_TIMEOUT_MS = 1000;

/** The cluster slot of a key: CRC16 (XMODEM) of its hash tag, or of the whole key, mod 16384. */
export function slotOf(key: string): number {
  const bytes = Buffer.from(key);
  const open = bytes.indexOf("{");
  if (open >= 0) {
    const close = bytes.indexOf("}", open + 1);
    if (close > open + 1) return crc16(bytes.subarray(open + 1, close)) % SLOTS;
  }
  return crc16(bytes) % SLOTS;
}

function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const b of bytes) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** One command on a fresh connection to 127.0.0.1:port; rejects at once if the node is down. */
export async function nodeCommand(port: number, ...args: (string | number)[]): Promise<unknown> {
  const r = new Redis({ port, host: "127.0.0.1", lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 2000 });
  r.on("error", () => {});
  try {
    await r.connect();
    return await r.call(String(args[0]), ...args.slice(1).map(String));
  } finally {
    r.disconnect();
  }
}

function info(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\r\n")) {
    const i = line.indexOf(":");
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

interface NodeLine {
  id: string;
  port: number;
  flags: string[];
  masterId: string;
  slots: string[];
}

/** Parses CLUSTER NODES. */
function parseNodes(text: string): NodeLine[] {
  return text
    .trim()
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const f = line.split(" ");
      return { id: f[0]!, port: Number(f[1]!.split(":")[1]!.split("@")[0]), flags: f[2]!.split(","), masterId: f[3]!, slots: f.slice(8) };
    });
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      if (await check()) return;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`redis cluster: ${what} within ${timeoutMs} ms${last ? ` (last error: ${String(last)})` : ""}`);
    await pause(50);
  }
}

export class RedisCluster {
  /** Node ids by port. */
  private readonly ids = new Map<number, string>();
  /** Replica port by the port of the master it follows. */
  private readonly replicaOfMaster = new Map<number, number>();

  private constructor(
    private readonly masterNodes: RedisServer[],
    private readonly replicaNodes: RedisServer[],
  ) {}

  /** Every node, masters first. */
  get nodes(): RedisServer[] {
    return [...this.masterNodes, ...this.replicaNodes];
  }

  /** The ports of the nodes started as masters, in slot order. */
  get masterPorts(): number[] {
    return this.masterNodes.map((n) => n.port);
  }

  /** `127.0.0.1:<port>` of the nodes started as masters. */
  get seeds(): string[] {
    return this.masterNodes.map((n) => n.address);
  }

  /** `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,…` */
  get url(): string {
    return `redis+cluster://${this.seeds.join(",")}`;
  }

  /** The port of the replica that follows the master started on `port`, if any. */
  replicaOf(port: number): number | undefined {
    return this.replicaOfMaster.get(port);
  }

  /**
   * Starts `masters` masters (slots split evenly, in order) and `replicas` (0 or 1) replica of the
   * first master; resolves once every node reports cluster_state:ok, knows every node, and the replica's link is up.
   */
  static async start(opts: { masters: number; replicas?: 0 | 1 }): Promise<RedisCluster> {
    const { masters, replicas = 0 } = opts;
    if (masters < 1 || masters > 16) throw new Error("masters: 1 to 16");
    const spawnNode = () =>
      RedisServer.start([
        "--cluster-enabled", "yes",
        "--cluster-config-file", "nodes.conf",
        "--cluster-node-timeout", String(NODE_TIMEOUT_MS),
        // A replica may take over whatever the age of its last contact with the master.
        "--cluster-replica-validity-factor", "0",
        // The replica's first sync starts at once, not after the default 5 s wait for more replicas.
        "--repl-diskless-sync-delay", "0",
      ]);
    const all = await Promise.allSettled(Array.from({ length: masters + replicas }, spawnNode));
    const started = all.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
    const failed = all.find((r) => r.status === "rejected");
    if (failed) {
      await Promise.all(started.map((n) => n.stop()));
      throw (failed as PromiseRejectedResult).reason;
    }
    const c = new RedisCluster(started.slice(0, masters), started.slice(masters));
    try {
      await c.join();
    } catch (err) {
      await c.stop();
      throw err;
    }
    return c;
  }

  private async join(): Promise<void> {
    const all = this.nodes;
    for (const n of all) this.ids.set(n.port, String(await nodeCommand(n.port, "CLUSTER", "MYID")));
    // Slots and distinct config epochs first, then MEET: as redis-cli --cluster create does.
    const masters = this.masterNodes;
    for (let i = 0; i < masters.length; i++) {
      const from = Math.floor((i * SLOTS) / masters.length);
      const to = Math.floor(((i + 1) * SLOTS) / masters.length) - 1;
      await nodeCommand(masters[i]!.port, "CLUSTER", "ADDSLOTSRANGE", from, to);
    }
    for (let i = 0; i < all.length; i++) await nodeCommand(all[i]!.port, "CLUSTER", "SET-CONFIG-EPOCH", i + 1);
    for (const n of all.slice(1)) await nodeCommand(all[0]!.port, "CLUSTER", "MEET", "127.0.0.1", n.port);
    const first = masters[0]!.port;
    const firstId = this.ids.get(first)!;
    for (const r of this.replicaNodes) {
      await until("the replica learns its master", 10_000, async () =>
        parseNodes(String(await nodeCommand(r.port, "CLUSTER", "NODES"))).some((l) => l.id === firstId),
      );
      await nodeCommand(r.port, "CLUSTER", "REPLICATE", firstId);
      this.replicaOfMaster.set(first, r.port);
    }
    await this.waitSettled(all.map((n) => n.port), 20_000);
  }

  /** Every listed node: state ok, all slots ok, knows every node, agrees on who replicates whom; replica links up. */
  private async waitSettled(ports: number[], timeoutMs: number): Promise<void> {
    await until("the cluster settles", timeoutMs, async () => {
      for (const port of ports) {
        const i = info(String(await nodeCommand(port, "CLUSTER", "INFO")));
        if (i.cluster_state !== "ok" || i.cluster_slots_ok !== String(SLOTS) || i.cluster_known_nodes !== String(this.nodes.length)) return false;
        const lines = parseNodes(String(await nodeCommand(port, "CLUSTER", "NODES")));
        for (const [m, r] of this.replicaOfMaster) {
          const rl = lines.find((l) => l.port === r);
          if (!rl || !ports.includes(m)) continue;
          if (!rl.flags.includes("slave") || rl.masterId !== this.ids.get(m)) return false;
        }
      }
      for (const [m, r] of this.replicaOfMaster) {
        if (!ports.includes(m) || !ports.includes(r)) continue;
        if (info(String(await nodeCommand(r, "INFO", "replication"))).master_link_status !== "up") return false;
      }
      return true;
    });
  }

  /** The port of the master now serving `slot`, as a live node sees it. */
  async masterForSlot(slot: number): Promise<number> {
    for (const n of this.nodes.filter((x) => x.alive)) {
      try {
        const slots = (await nodeCommand(n.port, "CLUSTER", "SLOTS")) as [number, number, [string, number, string]][];
        const hit = slots.find(([from, to]) => slot >= from && slot <= to);
        if (hit) return Number(hit[2][1]);
      } catch {
        // try the next node
      }
    }
    throw new Error(`no live node serves slot ${slot}`);
  }

  /** The port of the master now serving `key`. */
  masterOf(key: string): Promise<number> {
    return this.masterForSlot(slotOf(key));
  }

  /** SIGKILLs a node started as a master: by index in masterPorts (below 16) or by port. Resolves once it is gone. */
  async killMaster(indexOrPort: number): Promise<number> {
    const node = indexOrPort < 16 ? this.masterNodes[indexOrPort] : this.nodes.find((n) => n.port === indexOrPort);
    if (!node) throw new Error(`no node ${indexOrPort}`);
    await node.kill();
    return node.port;
  }

  /**
   * Resolves, with the replica's port, once the replica of the (killed) master on `port` is a
   * master holding slots on every live node's view and every live node says cluster_state:ok.
   */
  async waitFailover(port: number, timeoutMs = 15_000): Promise<number> {
    const replica = this.replicaOfMaster.get(port);
    if (replica === undefined) throw new Error(`the master on ${port} has no replica`);
    const live = this.nodes.filter((n) => n.alive).map((n) => n.port);
    await until(`the replica on ${replica} takes over from ${port}`, timeoutMs, async () => {
      for (const p of live) {
        const i = info(String(await nodeCommand(p, "CLUSTER", "INFO")));
        if (i.cluster_state !== "ok" || i.cluster_slots_ok !== String(SLOTS)) return false;
        const lines = parseNodes(String(await nodeCommand(p, "CLUSTER", "NODES")));
        const r = lines.find((l) => l.port === replica);
        if (!r || !r.flags.includes("master") || r.slots.length === 0) return false;
        const old = lines.find((l) => l.port === port);
        if (old && old.slots.length > 0) return false;
      }
      return true;
    });
    this.replicaOfMaster.delete(port);
    return replica;
  }

  /** Kills every node and removes their directories. */
  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()));
  }
}

/** Independent (non-cluster) servers, e.g. for client-side sharding. */
export class RedisShards {
  private constructor(readonly servers: RedisServer[]) {}

  static async start(count: number): Promise<RedisShards> {
    const all = await Promise.allSettled(Array.from({ length: count }, () => RedisServer.start()));
    const started = all.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
    const failed = all.find((r) => r.status === "rejected");
    if (failed) {
      await Promise.all(started.map((n) => n.stop()));
      throw (failed as PromiseRejectedResult).reason;
    }
    return new RedisShards(started);
  }

  /** `redis://127.0.0.1:<port>` of each server. */
  get urls(): string[] {
    return this.servers.map((s) => s.url);
  }

  /** The urls joined by commas. */
  get url(): string {
    return this.urls.join(",");
  }

  async stop(): Promise<void> {
    await Promise.all(this.servers.map((s) => s.stop()));
  }
}
