/**
 * The two Lua scripts of the Redis broker. Each runs atomically inside Redis,
 * which is what makes offsets, history and fan-out agree across nodes.
 *
 * Per channel (both keys share the hash tag `{<channel>}`, so they live in one
 * slot of a Redis Cluster):
 * - `<prefix>{<channel>}:m` — hash `{epoch, offset}`: the channel's lifetime
 *   and its latest offset;
 * - `<prefix>{<channel>}:s` — stream of the last `historySize` messages, entry
 *   id `<offset>-0`, one field `d` holding the message's data as JSON.
 * - `<prefix>{<channel>}:k:<idempotency key>` — string `<epoch>\n<offset>`:
 *   the first result of a publish made with that key, set with `PX
 *   idempotencyTtl` by the script that stored the message. Its hash tag puts
 *   it in the channel's slot, so the check and the store stay one atomic
 *   script in a Redis Cluster too; it is why keys are per channel.
 * The meta hash and the stream expire `historyTtl` after the channel's last publish. A missing meta
 * hash means the history is gone (expired, evicted, Redis restarted without
 * data): the next read or publish starts a new epoch, given by the node, and
 * drops any stream left over.
 *
 * The fan-out notification, published on the channel's own pub/sub name
 * `<prefix>{<channel>}:f` inside the same script (so notifications leave in
 * offset order; the hash tag keeps it in the channel's slot, which a script
 * on a Redis Cluster needs to SPUBLISH it), is
 * `<epoch>\n<offset>\n<channel>\n<message JSON>`.
 */

/** The pub/sub name of a channel's notifications, in its hash slot. */
export function notificationName(prefix: string, channel: string): string {
  return prefix + "{" + channel + "}:f";
}

/** The channel's meta hash and stream, in its hash slot. */
export function channelKeys(prefix: string, channel: string): [meta: string, stream: string] {
  return [prefix + "{" + channel + "}:m", prefix + "{" + channel + "}:s"];
}

/** The record of an idempotency key, in the channel's hash slot. */
export function onceKey(prefix: string, channel: string, idempotencyKey: string): string {
  return prefix + "{" + channel + "}:k:" + idempotencyKey;
}

/**
 * KEYS: meta, stream, and (publish with an idempotency key) the key's record.
 * ARGV: [1] epoch for a new history, [2] channel as a JSON string, [3] data JSON,
 * [4] history size, [5] ttl in ms, [6] notification name, [7] channel name,
 * [8] (with the third key) ms the idempotency key is kept.
 * Returns `{epoch, offset, repeated (0|1)}`: with a key already recorded,
 * the recorded result and 1, having stored and published nothing.
 * `command` publishes the notification: PUBLISH on one Redis, SPUBLISH
 * (sharded pub/sub, Redis ≥ 7) on a Redis Cluster.
 */
export const publishLua = (command: "PUBLISH" | "SPUBLISH"): string => `
if KEYS[3] then
  local first = redis.call('GET', KEYS[3])
  if first then
    local nl = string.find(first, '\\n', 1, true)
    return {string.sub(first, 1, nl - 1), tonumber(string.sub(first, nl + 1)), 1}
  end
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local id = string.format('%d', offset)
if tonumber(ARGV[4]) > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], id .. '-0', 'd', ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('${command}', ARGV[6], epoch .. '\\n' .. id .. '\\n' .. ARGV[7] .. '\\n' ..
  '{"channel":' .. ARGV[2] .. ',"offset":' .. id .. ',"data":' .. ARGV[3] .. '}')
if KEYS[3] then
  redis.call('SET', KEYS[3], epoch .. '\\n' .. id, 'PX', ARGV[8])
end
return {epoch, offset, 0}
`;

/**
 * KEYS: meta, stream.
 * ARGV: [1] epoch for a new history, [2] ttl in ms, [3] since epoch ('' = no
 * position), [4] since offset, [5] limit (-1 = no limit).
 * Returns `{epoch, offset, recovered (0|1), id1, data1, id2, data2, …}`.
 * `recovered` is 1 when the position is in this epoch, not in the future, and
 * every message after it is still in the stream (at most `limit` are returned).
 */
export const READ_LUA = `
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'offset')
local epoch = meta[1]
local offset = 0
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  offset = tonumber(meta[2]) or 0
end
local out = {epoch, offset, 0}
if ARGV[3] ~= epoch then return out end
local since = tonumber(ARGV[4])
if since > offset then return out end
if since == offset then
  out[3] = 1
  return out
end
local limit = tonumber(ARGV[5])
local start = string.format('%d', since + 1)
local entries
if limit < 0 then
  entries = redis.call('XRANGE', KEYS[2], start, '+')
else
  entries = redis.call('XRANGE', KEYS[2], start, '+', 'COUNT', math.max(limit, 1))
end
if #entries == 0 or tonumber(string.match(entries[1][1], '^%d+')) ~= since + 1 then return out end
out[3] = 1
local n = #entries
if limit >= 0 and n > limit then n = limit end
for i = 1, n do
  out[#out + 1] = entries[i][1]
  out[#out + 1] = entries[i][2][2]
end
return out
`;

/**
 * KEYS: meta, stream. ARGV: [1] epoch.
 * Drops the channel's history when its epoch is still ARGV[1] (the next read
 * or publish starts a new one); returns 1 when it did.
 */
export const RENEW_LUA = `
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
`;
