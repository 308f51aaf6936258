import type { AnyRedis } from './cluster-client.js'

/** The Redis scripts, as ioredis methods (defineCommand: EVALSHA, falling back to EVAL after a restart). */
type Script = (...args: Array<string | number>) => Promise<unknown>
interface Scripted {
  fastifyRealtimePublish: Script
  fastifyRealtimeRead: Script
  fastifyRealtimeRestart: Script
  fastifyRealtimePresenceAdd: Script
  fastifyRealtimePresence: Script
  fastifyRealtimePresenceCount: Script
}
export type Client = AnyRedis & Scripted

/** Redis time in ms, from inside a script: every instance measures ages and expiries on one clock. */
const now = `
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
`

/**
 * Gives a room an epoch if it has none. A room without an epoch has no history worth keeping: a
 * stream left over (say, after the meta hash was evicted) belongs to the old epoch and goes.
 * KEYS: meta, stream; `epoch` and `ttl` are locals of the caller.
 */
const ensureEpoch = `
local created = redis.call('HSETNX', KEYS[1], 'epoch', epoch) == 1
if created then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'offset', 0)
  redis.call('PEXPIRE', KEYS[1], ttl)
end
`

/**
 * KEYS: meta, stream. ARGV: new epoch, body, JSON room name, stored (1/0), size, ttl ms, channel,
 * sharded (1/0), has except (1/0), except. A stored message takes the next offset and goes into the
 * stream (unless size is 0); an unstored one carries the current offset. Every stored message is
 * added in the script that gives it its offset, and a new epoch starts with no stream, so the
 * stream's offsets are dense and end at the room's offset.
 * Returns { epoch, offset, time, text }. The channel gets `offset|time|epoch|stored|n|` followed by
 * the n bytes of `except` (n empty without one) and the text; the stream entry gets `except` after
 * the text, for catch-ups (history leaves it out).
 */
const publishScript = `${now}
local epoch, ttl = ARGV[1], tonumber(ARGV[6])
${ensureEpoch}
epoch = redis.call('HGET', KEYS[1], 'epoch')
local stored = ARGV[4] == '1'
local offset
if stored then
  offset = string.format('%d', redis.call('HINCRBY', KEYS[1], 'offset', 1))
else
  offset = redis.call('HGET', KEYS[1], 'offset')
end
redis.call('PEXPIRE', KEYS[1], ttl)
local time = string.format('%d', now)
local body = ARGV[2]
-- as roomEnvelope() in hub/broker.ts: the body without its closing brace, then room, epoch and offset
local text = string.sub(body, 1, -2) .. ',"room":' .. ARGV[3] .. ',"epoch":"' .. epoch .. '","offset":' .. offset .. '}'
local except, exceptLength = ARGV[10], ''
if ARGV[9] == '1' then exceptLength = string.len(except) else except = '' end
if stored and tonumber(ARGV[5]) > 0 then
  local id
  if ARGV[9] == '1' then
    id = redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[5], '*', 'offset', offset, 'text', text, 'except', except)
  else
    id = redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[5], '*', 'offset', offset, 'text', text)
  end
  -- The message's time is its id's: the age limit (MINID) and history agree to the millisecond.
  time = string.match(id, '^%d+')
  redis.call('XTRIM', KEYS[2], 'MINID', string.format('%d', math.max(0, now - ttl + 1)))
  redis.call('PEXPIRE', KEYS[2], ttl)
end
redis.call(ARGV[8] == '1' and 'SPUBLISH' or 'PUBLISH', ARGV[7], offset .. '|' .. time .. '|' .. epoch .. '|' .. ARGV[4] .. '|' .. exceptLength .. '|' .. except .. text)
return { epoch, offset, time, text }
`

/**
 * KEYS: meta, stream. ARGV: new epoch (used only if the room has none), ttl ms, since, at most.
 * Returns { epoch, offset, entries }: the newest retained entries after offset `since` (offsets are
 * dense, so there are at most offset - since of them), newest first, none older than the ttl.
 */
const readScript = `${now}
local epoch, ttl = ARGV[1], tonumber(ARGV[2])
${ensureEpoch}
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'offset')
local offset = tonumber(meta[2])
local count = math.min(offset - tonumber(ARGV[3]), tonumber(ARGV[4]))
local entries = {}
if count > 0 then
  entries = redis.call('XREVRANGE', KEYS[2], '+', string.format('%d', math.max(0, now - ttl + 1)), 'COUNT', count)
end
return { meta[1], meta[2], entries }
`

/**
 * KEYS: meta, stream. ARGV: old epoch, new epoch, ttl ms, least age ms of the epoch, channel,
 * sharded (1/0). Starts the new epoch (offset 0, no stream) if the room is still at the old one and
 * its epoch was not started by this script less than the least age ago (0: whatever its age), and
 * tells every instance on the channel: `0|time|epoch|1||`, a stored message at offset 0 of the new
 * epoch, which no publish makes, so each instance's delivery finds the epoch changed, catches up
 * and reports the room lost. Returns { epoch, offset }: the room's position after.
 */
const restartScript = `${now}
local epoch, ttl = ARGV[2], tonumber(ARGV[3])
${ensureEpoch}
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'offset', 'restarted')
local minAge = tonumber(ARGV[4])
if meta[1] == ARGV[1] and (minAge == 0 or not meta[3] or now - tonumber(meta[3]) >= minAge) then
  local time = string.format('%d', now)
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0, 'restarted', time)
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call(ARGV[6] == '1' and 'SPUBLISH' or 'PUBLISH', ARGV[5], '0|' .. time .. '|' .. epoch .. '|1||')
  return { epoch, '0' }
end
return { meta[1], meta[2] }
`

/** Drops the entries of KEYS (hash, expiry zset) whose expiry has passed; HDEL in chunks, as Lua's unpack() is bounded. */
const cleanPresence = `${now}
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for i = 1, #gone, 1000 do
  redis.call('HDEL', KEYS[1], unpack(gone, i, math.min(i + 999, #gone)))
end
if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now) end
`

/** KEYS: hash, expiry zset. ARGV: ttl ms, then connection id and JSON entry pairs. Both keys live as long as their newest entry. */
const presenceAddScript = `${cleanPresence}
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[2], now + ttl, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
`

const presenceScript = `${cleanPresence}
return redis.call('HVALS', KEYS[1])
`

const presenceCountScript = `${cleanPresence}
return redis.call('ZCOUNT', KEYS[2], '(' .. string.format('%d', now), '+inf')
`

/** Teaches a client the scripts (each runs by EVALSHA, and by EVAL again after a Redis restart). */
export function withScripts (client: AnyRedis): Client {
  client.defineCommand('fastifyRealtimePublish', { numberOfKeys: 2, lua: publishScript })
  client.defineCommand('fastifyRealtimeRead', { numberOfKeys: 2, lua: readScript })
  client.defineCommand('fastifyRealtimeRestart', { numberOfKeys: 2, lua: restartScript })
  client.defineCommand('fastifyRealtimePresenceAdd', { numberOfKeys: 2, lua: presenceAddScript })
  client.defineCommand('fastifyRealtimePresence', { numberOfKeys: 2, lua: presenceScript })
  client.defineCommand('fastifyRealtimePresenceCount', { numberOfKeys: 2, lua: presenceCountScript })
  return client as Client
}
