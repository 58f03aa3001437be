/**
 * What `--redis` names (SPEC §6, §13): one Redis, several independent
 * shards, or a Redis Cluster.
 *
 * - `redis://…` or `rediss://…`: one Redis.
 * - `url1,url2,…`: independent shards, each a `redis://` or `rediss://` URL;
 *   a channel lives on the shard its name hashes to (broker/sharded.ts). The
 *   order matters and must be the same on every node.
 * - `redis+cluster://host:port[,host:port…]` (or `rediss+cluster://` for TLS):
 *   seed nodes of a Redis Cluster (Redis ≥ 7, sharded pub/sub). A user name
 *   and password may come before the first host, as in a URL:
 *   `redis+cluster://user:pass@host:port,host:port`.
 */

export type RedisTopology =
  | { kind: "single"; url: string }
  | { kind: "shards"; urls: string[] }
  | { kind: "cluster"; nodes: Array<{ host: string; port: number }>; tls: boolean; username?: string; password?: string };

const URL_RE = /^rediss?:\/\/\S+$/;
const HOST_PORT_RE = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

/** What an entry of the list shows in messages and logs: the URL without its password. */
export function redactedUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString().replace(/\/$/, "");
  } catch {
    return url.replace(/:[^:@/]*@/, ":***@");
  }
}

/** Parses `--redis`; throws an Error whose message names the entry at fault. */
export function parseRedisTopology(text: string): RedisTopology {
  const cluster = /^(rediss?)\+cluster:\/\/(.*)$/.exec(text);
  if (cluster) return parseCluster(cluster[1] === "rediss", cluster[2]!);
  const entries = text.split(",");
  entries.forEach((entry, i) => {
    const shown = JSON.stringify(redactedUrl(entry));
    const what = entries.length > 1 ? `entry ${i + 1} of ${entries.length} (${shown})` : shown;
    if (!URL_RE.test(entry)) throw new Error(`${what} is not a redis:// or rediss:// URL`);
    try {
      new URL(entry);
    } catch {
      throw new Error(`${what} is not a valid URL`);
    }
  });
  if (entries.length === 1) return { kind: "single", url: entries[0]! };
  const seen = new Set<string>();
  for (const entry of entries) {
    const u = new URL(entry);
    const id = `${u.hostname}:${u.port || "6379"}${u.pathname}`;
    if (seen.has(id)) throw new Error(`${JSON.stringify(redactedUrl(entry))} is listed twice: each shard must be another Redis`);
    seen.add(id);
  }
  return { kind: "shards", urls: entries };
}

function parseCluster(tls: boolean, rest: string): RedisTopology {
  let username: string | undefined;
  let password: string | undefined;
  const at = rest.lastIndexOf("@");
  if (at >= 0) {
    const auth = rest.slice(0, at);
    rest = rest.slice(at + 1);
    const colon = auth.indexOf(":");
    username = decodeURIComponent(colon < 0 ? auth : auth.slice(0, colon)) || undefined;
    password = colon < 0 ? undefined : decodeURIComponent(auth.slice(colon + 1));
  }
  const hosts = rest.replace(/\/$/, "").split(",");
  const nodes = hosts.map((h, i) => {
    const m = HOST_PORT_RE.exec(h);
    const port = m ? Number(m[2]) : 0;
    if (!m || port < 1 || port > 65535) throw new Error(`cluster node ${i + 1} of ${hosts.length} (${JSON.stringify(h)}) is not host:port`);
    return { host: m[1]!.replace(/^\[|\]$/g, ""), port };
  });
  return { kind: "cluster", nodes, tls, username, password };
}
