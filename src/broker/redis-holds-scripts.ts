/**
 * The Lua scripts of the Redis holds (see redis-holds.ts for the layout).
 * Each runs atomically inside Redis: the change of a hold, the version bump
 * and the PUBLISH of the change are one step, so changes leave Redis in
 * version order and every node agrees on who holds what.
 *
 * Every script takes the four keys of one set, in this order (one hash tag,
 * one slot of a Redis Cluster):
 *   KEYS[1] `<prefix>{<set>}:ph`  zset of holds, member `<key>\n<nodeId>`, score = expiry (clock ms)
 *   KEYS[2] `<prefix>{<set>}:pm`  hash key → member JSON text
 *   KEYS[3] `<prefix>{<set>}:pc`  hash key → number of holds of that key
 *   KEYS[4] `<prefix>{<set>}:pv`  string: the set's version
 *
 * A change is published as
 * `<version> <previous> <j|l>\n<set as JSON>\n<key as JSON>\n<member text>`
 * (JSON strings hold no raw newline, so the member text is the rest).
 * Versions are decimal integers, `max(last + 1, Redis TIME in µs)`; they stay
 * below 2^53 for the next two centuries, so they are exact in Lua and in JS.
 *
 * Key lifetime (`settle`): the keys of a set live until the latest expiry
 * pushed so far plus a margin (never shortened; moved only when that adds
 * more than half the margin, so a renewal rarely costs a PEXPIRE); when the
 * last hold goes, Redis drops the empty zset and hashes, and the version
 * alone stays for the margin, so a set emptied and held again at once still
 * gets a version above the last one.
 */

/** Shared head of the scripts that change holds: version bump + publish, and key lifetime. */
const PRELUDE = `
local version = nil
local last = nil
local function bump(channel, kind, key, member)
  if last == nil then
    local raw = redis.call('GET', KEYS[4])
    last = raw and tonumber(raw) or 0
  end
  local t = redis.call('TIME')
  local v = tonumber(t[1]) * 1000000 + tonumber(t[2])
  if v <= last then v = last + 1 end
  local vs = string.format('%d', v)
  redis.call('PUBLISH', channel, vs .. ' ' .. string.format('%d', last) .. ' ' .. kind .. '\\n' ..
    cjson.encode(ARGV[1]) .. '\\n' .. cjson.encode(key) .. '\\n' .. member)
  last = v
  version = vs
end
local function settle(ttl, margin)
  local cur = redis.call('PTTL', KEYS[1])
  if cur == -2 then
    redis.call('DEL', KEYS[2], KEYS[3])
    if version then redis.call('SET', KEYS[4], version, 'PX', margin) end
    return
  end
  local want = math.max(ttl, tonumber(margin))
  if cur < want - tonumber(margin) / 2 then
    redis.call('PEXPIRE', KEYS[1], want)
    redis.call('PEXPIRE', KEYS[2], want)
    redis.call('PEXPIRE', KEYS[3], want)
    cur = want
  end
  if version then redis.call('SET', KEYS[4], version, 'PX', cur)
  elseif redis.call('PTTL', KEYS[4]) < cur then redis.call('PEXPIRE', KEYS[4], cur) end
end
local function keyOf(hold)
  return string.sub(hold, 1, -(tonumber(ARGV[2]) + 2))
end
`;

/**
 * hold. ARGV: [1] set, [2] node id length, [3] changes channel, [4] margin ms,
 * [5] `<key>\n<nodeId>`, [6] key, [7] member text, [8] expiry, [9] key ttl ms.
 * Returns 1 for a join, 0 for a renewal (or a key another node holds too).
 */
export const HOLD_LUA =
  PRELUDE +
  `
local added = redis.call('ZADD', KEYS[1], 'GT', ARGV[8], ARGV[5])
redis.call('HSET', KEYS[2], ARGV[6], ARGV[7])
local joined = 0
if added == 1 and redis.call('HINCRBY', KEYS[3], ARGV[6], 1) == 1 then
  bump(ARGV[3], 'j', ARGV[6], ARGV[7])
  joined = 1
end
settle(tonumber(ARGV[9]), ARGV[4])
return joined
`;

/**
 * release. ARGV: [1] set, [2] node id length, [3] changes channel, [4] margin ms,
 * [5] `<key>\n<nodeId>`, [6] key.
 * Returns 1 for a leave (this node's hold was the last), 0 otherwise.
 */
export const RELEASE_LUA =
  PRELUDE +
  `
if redis.call('ZREM', KEYS[1], ARGV[5]) == 0 then return 0 end
local left = 0
if redis.call('HINCRBY', KEYS[3], ARGV[6], -1) <= 0 then
  local member = redis.call('HGET', KEYS[2], ARGV[6]) or 'null'
  redis.call('HDEL', KEYS[2], ARGV[6])
  redis.call('HDEL', KEYS[3], ARGV[6])
  bump(ARGV[3], 'l', ARGV[6], member)
  left = 1
end
settle(0, ARGV[4])
return left
`;

/**
 * expire. ARGV: [1] set, [2] node id length, [3] changes channel, [4] margin ms,
 * [5] now, [6] most holds removed by this call.
 * Removes the holds with expiry ≤ now (any node's), oldest first; returns how
 * many it removed (the caller calls again when it hit the limit), then the
 * JSON of each member that left.
 */
export const EXPIRE_LUA =
  PRELUDE +
  `
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[5], 'LIMIT', 0, tonumber(ARGV[6]))
local out = {#gone}
for i = 1, #gone do
  local key = keyOf(gone[i])
  redis.call('ZREM', KEYS[1], gone[i])
  if redis.call('HINCRBY', KEYS[3], key, -1) <= 0 then
    local member = redis.call('HGET', KEYS[2], key) or 'null'
    redis.call('HDEL', KEYS[2], key)
    redis.call('HDEL', KEYS[3], key)
    bump(ARGV[3], 'l', key, member)
    out[#out + 1] = member
  end
end
if #gone > 0 then settle(0, ARGV[4]) end
return out
`;

/**
 * refresh (this node's holds of one set). ARGV: [1] expiry, [2] key ttl ms,
 * [3] margin ms, [4…] `<key>\n<nodeId>` of each hold. `ZADD XX GT`: renews only holds that
 * exist, never shortens one; at most {@link REFRESH_BATCH} holds per call.
 * The keys' lifetime follows (never shortened). Returns nothing of use.
 */
export const REFRESH_LUA = `
local args = {'XX', 'GT'}
for i = 4, #ARGV do
  args[#args + 1] = ARGV[1]
  args[#args + 1] = ARGV[i]
end
redis.call('ZADD', KEYS[1], unpack(args))
local ttl = tonumber(ARGV[2])
local cur = redis.call('PTTL', KEYS[1])
if cur ~= -2 and cur < ttl - tonumber(ARGV[3]) / 2 then
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end
end
return 0
`;

/** Most holds per refresh call: keeps `unpack` and each script's run short. */
export const REFRESH_BATCH = 1000;

/**
 * members. ARGV: [1] now, [2] node id length.
 * Returns `{version, member1, member2, …}`: the members with at least one hold
 * expiring after `now`, and the version they stand at, in one step.
 */
export const MEMBERS_LUA = `
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')
local cut = -(tonumber(ARGV[2]) + 2)
local seen = {}
local keys = {}
for i = 1, #live do
  local key = string.sub(live[i], 1, cut)
  if not seen[key] then
    seen[key] = true
    keys[#keys + 1] = key
  end
end
local out = {redis.call('GET', KEYS[4]) or '0'}
for i = 1, #keys, 1000 do
  local texts = redis.call('HMGET', KEYS[2], unpack(keys, i, math.min(i + 999, #keys)))
  for j = 1, #texts do
    if texts[j] then out[#out + 1] = texts[j] end
  end
end
return out
`;
