import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import { errors } from '../errors.js'
import {
  defaultHistoryLimits, type Broker, type BrokerEvents, type HistoryLimits, type HistoryPage, type HistoryQuery,
  type Position, type PresenceEntry, type PublishOptions, type Recovery, type RoomMessage
} from './broker.js'

export interface RedisBrokerOptions {
  /**
   * An ioredis client, or a `redis://` / `rediss://` URL to create one from. A client passed in is
   * used as it is and never closed by the broker; pub/sub runs on a `duplicate()` of it.
   * @default 'redis://127.0.0.1:6379'
   */
  client?: Redis | string
  /** Prepended to every key and channel, so several apps can share one Redis. @default 'frt:' */
  keyPrefix?: string
  /** Per-room history bounds; a room's keys expire `ttlMs` after its last message. @default { size: 100, ttlMs: 300000 } */
  history?: Partial<HistoryLimits>
  /**
   * How long a presence entry lives without a refresh, in ms. The instance that added an entry
   * refreshes it every `presenceTtlMs / 2`, so a crashed instance's members disappear within this time.
   * @default 60000
   */
  presenceTtlMs?: number
  /** Publish with SPUBLISH and subscribe with SSUBSCRIBE (Redis 7; needed to scale pub/sub on Redis Cluster). @default false */
  shardedPubSub?: boolean
  /**
   * Called when background work fails: a presence refresh, the resubscription after a reconnect, a
   * catch-up from the stream, or an error of a connection the broker created. Each is retried by
   * itself (on the next refresh, reconnect or message). @default ignore
   */
  onError?: (error: Error) => void
}

/** The Redis scripts, as ioredis methods (defineCommand: EVALSHA, falling back to EVAL after a restart). */
type Script = (...args: Array<string | number>) => Promise<unknown>
interface Scripted {
  fastifyRealtimePublish: Script
  fastifyRealtimeRead: Script
  fastifyRealtimePresenceAdd: Script
  fastifyRealtimePresence: Script
  fastifyRealtimePresenceCount: Script
}
type Client = Redis & Scripted

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
-- as roomEnvelope() in broker.ts: the body without its closing brace, then room, epoch and offset
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

/** A stream entry as XREVRANGE returns it (the id is `<time ms>-<n>`); we write the fields in this order, `except` only when given. */
type StreamEntry = [id: string, fields: ['offset', string, 'text', string, ...([] | ['except', string])]]

const BAR = 0x7c

/** A room this instance subscribed to, and where its delivery stands. */
interface Subscription {
  readonly room: string
  readonly channel: string
  /** Resolves once the channel is subscribed and the starting position is known. */
  ready: Promise<void>
  /** null until the starting position is read. */
  epoch: string | null
  /** The offset of the last message delivered (or passed over as before the start, or reported lost). */
  last: number
  /** While a catch-up runs, pub/sub messages wait here; null otherwise. */
  waiting: RoomMessage[] | null
  /** The catch-up under way. */
  running: Promise<void> | null
  /** The last catch-up failed: the next message catches up first. */
  stale: boolean
  active: boolean
}

function fail (name: string, value: unknown, expected: string): never {
  let shown: string
  try {
    shown = typeof value === 'number' ? String(value) : (JSON.stringify(value) ?? String(value))
  } catch {
    shown = String(value)
  }
  throw new errors.FST_RT_INVALID_OPTION(`"RedisBroker.${name}"`, `expected ${expected}, got ${shown}`)
}

function integer (name: string, value: unknown, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(name, value, `an integer from ${min} to ${max}`)
  }
  return value
}

const optionNames = new Set(['client', 'keyPrefix', 'history', 'presenceTtlMs', 'shardedPubSub', 'onError'])
/** setInterval's largest delay; the refresh runs every presenceTtlMs / 2. */
const MAX_DELAY = 2 ** 31 - 1

interface Settings {
  client: Redis | string
  keyPrefix: string
  limits: HistoryLimits
  presenceTtlMs: number
  sharded: boolean
  onError: (error: Error) => void
}

function ignore (): void {}

function settings (input: unknown): Settings {
  if (input === undefined) input = {}
  if (typeof input !== 'object' || input === null || Array.isArray(input)) fail('options', input, 'an object')
  const options = input as Record<string, unknown>
  for (const key of Object.keys(options)) {
    if (!optionNames.has(key)) fail(key, options[key], `one of ${[...optionNames].join(', ')} (unknown option)`)
  }
  const client = options.client ?? 'redis://127.0.0.1:6379'
  if (typeof client === 'string') {
    if (!/^rediss?:\/\//.test(client) || !URL.canParse(client)) fail('client', client, 'an ioredis client or a redis:// or rediss:// URL')
  } else if (typeof client !== 'object' || typeof (client as Redis).duplicate !== 'function' || typeof (client as Redis).defineCommand !== 'function') {
    fail('client', client, 'an ioredis client or a redis:// or rediss:// URL')
  }
  const keyPrefix = options.keyPrefix ?? 'frt:'
  if (typeof keyPrefix !== 'string') fail('keyPrefix', keyPrefix, 'a string')
  const history = options.history ?? {}
  if (typeof history !== 'object' || Array.isArray(history)) fail('history', history, 'an object { size, ttlMs }')
  const { size, ttlMs, ...rest } = history as Record<string, unknown>
  for (const key of Object.keys(rest)) fail(`history.${key}`, rest[key], 'size or ttlMs (unknown option)')
  const sharded = options.shardedPubSub ?? false
  if (typeof sharded !== 'boolean') fail('shardedPubSub', sharded, 'a boolean')
  const onError = options.onError ?? ignore
  if (typeof onError !== 'function') fail('onError', onError, 'a function')
  return {
    client: client as Redis | string,
    keyPrefix,
    limits: {
      size: integer('history.size', size, 0, Number.MAX_SAFE_INTEGER, defaultHistoryLimits.size),
      ttlMs: integer('history.ttlMs', ttlMs, 1, Number.MAX_SAFE_INTEGER, defaultHistoryLimits.ttlMs)
    },
    presenceTtlMs: integer('presenceTtlMs', options.presenceTtlMs, 2, MAX_DELAY, 60_000),
    sharded,
    onError: onError as (error: Error) => void
  }
}

/** An offset from a query: negative, NaN and fractions as the offsets they select the same messages as. */
function clampOffset (value: number): number {
  return value >= 0 ? Math.min(Math.floor(value), Number.MAX_SAFE_INTEGER) : 0
}

/** The keys and channel of a room. `{room}` is a Redis Cluster hash tag: all of a room's keys share one slot. */
function roomKeys (prefix: string, room: string): { meta: string, stream: string, channel: string, presence: string, expiry: string } {
  const base = `${prefix}room:{${room}}`
  return { meta: `${base}:meta`, stream: `${base}:stream`, channel: base, presence: `${base}:presence`, expiry: `${base}:presence:expiry` }
}

/**
 * Rooms across instances on Redis: history in a stream per room, offsets and epoch in a hash,
 * messages fanned out by pub/sub only as wake-ups (a subscriber that misses one catches up from the
 * stream), presence as TTL'd entries each instance refreshes for its own connections.
 */
export class RedisBroker implements Broker {
  private readonly client: Client
  private readonly subscriber: Redis
  private readonly ownsClient: boolean
  private readonly prefix: string
  private readonly limits: HistoryLimits
  private readonly presenceTtlMs: number
  private readonly sharded: boolean
  private readonly onError: (error: Error) => void
  private events!: BrokerEvents
  /** By channel. */
  private readonly subscriptions = new Map<string, Subscription>()
  /** Presence entries this instance added and refreshes: room → connection id → JSON. */
  private readonly owned = new Map<string, Map<string, string>>()
  private readonly refreshTimer: NodeJS.Timeout
  private closed = false

  constructor (options?: RedisBrokerOptions) {
    const s = settings(options)
    this.prefix = s.keyPrefix
    this.limits = s.limits
    this.presenceTtlMs = s.presenceTtlMs
    this.sharded = s.sharded
    const own = s.onError
    // Background failures (refresh, resubscribe, catch-up, lost connections) go to the option and the hub.
    this.onError = (error: Error) => {
      own(error)
      // Before attach() there is no hub to tell yet.
      this.events?.error?.(error)
    }
    this.ownsClient = typeof s.client === 'string'
    const client = (typeof s.client === 'string' ? new Redis(s.client) : s.client) as Client
    if (this.ownsClient) client.on('error', this.onError)
    client.defineCommand('fastifyRealtimePublish', { numberOfKeys: 2, lua: publishScript })
    client.defineCommand('fastifyRealtimeRead', { numberOfKeys: 2, lua: readScript })
    client.defineCommand('fastifyRealtimePresenceAdd', { numberOfKeys: 2, lua: presenceAddScript })
    client.defineCommand('fastifyRealtimePresence', { numberOfKeys: 2, lua: presenceScript })
    client.defineCommand('fastifyRealtimePresenceCount', { numberOfKeys: 2, lua: presenceCountScript })
    this.client = client
    // Resubscribing is ours, not ioredis's: the catch-up must start only once the channels are subscribed again.
    this.subscriber = client.duplicate({ autoResubscribe: false })
    this.subscriber.on('error', this.onError)
    // Buffers: the header counts the bytes of `except`.
    this.subscriber.on(this.sharded ? 'smessageBuffer' : 'messageBuffer', (channel: Buffer, payload: Buffer) => { this.receive(channel.toString(), payload) })
    this.subscriber.on('ready', () => { this.resubscribe().catch(this.onError) })
    this.refreshTimer = setInterval(() => { this.refresh() }, Math.floor(this.presenceTtlMs / 2)).unref()
  }

  attach (events: BrokerEvents): void {
    this.events = events
  }

  async publish (room: string, body: string, options?: PublishOptions): Promise<RoomMessage> {
    const keys = roomKeys(this.prefix, room)
    const stored = options?.history !== false
    const except = options?.except
    const [epoch, offset, time, text] = await this.client.fastifyRealtimePublish(
      keys.meta, keys.stream, randomUUID(), body, JSON.stringify(room), stored ? 1 : 0,
      this.limits.size, this.limits.ttlMs, keys.channel, this.sharded ? 1 : 0, except === undefined ? 0 : 1, except ?? ''
    ) as [string, string, string, string]
    const message: RoomMessage = { room, epoch, offset: Number(offset), time: Number(time), text }
    return stored ? message : { ...message, history: false }
  }

  async subscribe (room: string): Promise<void> {
    const channel = roomKeys(this.prefix, room).channel
    const existing = this.subscriptions.get(channel)
    if (existing !== undefined) return existing.ready
    const subscription: Subscription = {
      room, channel, ready: Promise.resolve(), epoch: null, last: 0, waiting: [], running: null, stale: false, active: true
    }
    this.subscriptions.set(channel, subscription)
    subscription.ready = (async () => {
      try {
        await this.listen([channel])
        // The starting position, read once the channel is subscribed: everything after it is delivered.
        await this.catchUp(subscription)
      } catch (error) {
        if (subscription.active) await this.unsubscribe(room)
        throw error
      }
    })()
    return subscription.ready
  }

  async unsubscribe (room: string): Promise<void> {
    const channel = roomKeys(this.prefix, room).channel
    const subscription = this.subscriptions.get(channel)
    if (subscription === undefined) return
    subscription.active = false
    // Whatever still arrives, or waits in a delivery loop under way, goes nowhere.
    subscription.waiting = []
    this.subscriptions.delete(channel)
    await (this.sharded ? this.subscriber.sunsubscribe(channel) : this.subscriber.unsubscribe(channel))
  }

  private async listen (channels: string[]): Promise<void> {
    if (this.sharded) {
      // Standalone Redis takes several at once, Cluster only channels of one slot: one command each.
      await Promise.all(channels.map((channel) => this.subscriber.ssubscribe(channel)))
    } else {
      await this.subscriber.subscribe(...channels)
    }
  }

  /** After the subscriber reconnects: subscribe again, then catch every room up from its stream. */
  private async resubscribe (): Promise<void> {
    const subscriptions = [...this.subscriptions.values()]
    // Runs before anything arrives on the new connection ('ready' is emitted first): a message that
    // comes in before the catch-up starts must not be delivered ahead of the ones it missed.
    for (const subscription of subscriptions) subscription.stale = true
    if (subscriptions.length === 0) return
    await this.listen(subscriptions.map((subscription) => subscription.channel))
    for (const subscription of subscriptions) this.catchUp(subscription).catch(this.onError)
  }

  private receive (channel: string, payload: Buffer): void {
    const subscription = this.subscriptions.get(channel)
    // A message may still arrive between unsubscribe() and Redis confirming it.
    if (subscription === undefined) return
    const first = payload.indexOf(BAR)
    const second = payload.indexOf(BAR, first + 1)
    const third = payload.indexOf(BAR, second + 1)
    const fourth = third + 2
    const fifth = payload.indexOf(BAR, fourth + 1)
    const exceptEnd = fifth + 1 + Number(payload.toString('latin1', fourth + 1, fifth))
    let message: RoomMessage = {
      room: subscription.room,
      epoch: payload.toString('latin1', second + 1, third),
      offset: Number(payload.toString('latin1', 0, first)),
      time: Number(payload.toString('latin1', first + 1, second)),
      text: payload.toString('utf8', exceptEnd)
    }
    if (payload[third + 1] === 0x30) message = { ...message, history: false }
    if (fifth !== fourth + 1) message = { ...message, except: payload.toString('utf8', fifth + 1, exceptEnd) }
    this.accept(subscription, message)
  }

  /**
   * Delivers a message in order, or holds it while catching up, or starts a catch-up if messages
   * before it are missing. A stored message is next when its offset is one more than the last; an
   * unstored one (history: false) carries the room's offset then, so it is due when that offset is
   * delivered, and is never a duplicate.
   */
  private accept (subscription: Subscription, message: RoomMessage): void {
    if (subscription.waiting !== null) {
      subscription.waiting.push(message)
      return
    }
    if (!subscription.stale) {
      const stored = message.history !== false
      if (message.epoch === subscription.epoch) {
        if (message.offset <= subscription.last) {
          // Unstored: due. Stored: delivered already (by a catch-up).
          if (!stored) this.events.message(message)
          return
        }
        if (stored && message.offset === subscription.last + 1) {
          subscription.last = message.offset
          this.events.message(message)
          return
        }
      } else if (message.offset === (stored ? 1 : 0)) {
        // The room expired and started again. The connection was up all along (a reconnect would
        // have caught up first), so no message of the old epoch was missed.
        subscription.epoch = message.epoch
        subscription.last = message.offset
        this.events.message(message)
        return
      }
    }
    subscription.waiting = [message]
    this.catchUp(subscription).catch(this.onError)
  }

  /**
   * Reads what the room has after the last delivered offset and delivers it, then the pub/sub
   * messages that arrived meanwhile; if the missing messages are gone, reports the room lost and
   * goes on from its current position. The first catch-up of a subscription only reads that
   * position. A call while one runs joins it: if it read too early, the next message shows the gap.
   */
  private catchUp (subscription: Subscription): Promise<void> {
    subscription.waiting ??= []
    subscription.running ??= this.catchUpNow(subscription)
    return subscription.running
  }

  private async catchUpNow (subscription: Subscription): Promise<void> {
    let caughtUp: RoomMessage[] = []
    try {
      const since = subscription.last
      const { position, entries } = await this.read(subscription.room, since, this.limits.size)
      if (!subscription.active) return
      if (subscription.epoch === null) {
        subscription.epoch = position.epoch
        subscription.last = position.offset
      } else if (position.epoch === subscription.epoch && complete(entries, since, position.offset)) {
        caughtUp = entries.map((entry) => {
          const message = toMessage(subscription.room, position.epoch, entry)
          const except = entry[1][5]
          return except === undefined ? message : { ...message, except }
        })
      } else {
        subscription.epoch = position.epoch
        subscription.last = position.offset
        this.events.lost(subscription.room, position)
      }
      subscription.stale = false
    } catch (error) {
      // What waited is still in the stream: the next message catches up from the same offset.
      subscription.stale = true
      subscription.waiting = null
      throw error
    } finally {
      subscription.running = null
    }
    // Set by catchUp(), cleared only above on failure and here. Delivered by accept(), like the
    // rest: in order, once, and not after unsubscribe() (which makes `waiting` a sink).
    const waiting = subscription.waiting as RoomMessage[]
    subscription.waiting = null
    // In publish order: a stored message before what came in after it, an unstored one after the
    // stored message whose offset it carries.
    let next = 0
    for (const message of waiting) {
      while (next < caughtUp.length && caughtUp[next]!.offset <= message.offset) this.accept(subscription, caughtUp[next++]!)
      this.accept(subscription, message)
    }
    while (next < caughtUp.length) this.accept(subscription, caughtUp[next++]!)
  }

  /** The room's position and its retained entries after `since`, at most `max`, oldest first. */
  private async read (room: string, since: number, max: number): Promise<{ position: Position, entries: StreamEntry[] }> {
    const keys = roomKeys(this.prefix, room)
    const [epoch, offset, entries] = await this.client.fastifyRealtimeRead(
      keys.meta, keys.stream, randomUUID(), this.limits.ttlMs, since, max
    ) as [string, string, StreamEntry[]]
    return { position: { epoch, offset: Number(offset) }, entries: entries.reverse() }
  }

  async position (room: string): Promise<Position> {
    return (await this.read(room, 0, 0)).position
  }

  async history (room: string, query: HistoryQuery = {}): Promise<HistoryPage> {
    const since = clampOffset(query.since ?? 0)
    const { position, entries } = await this.read(room, since, this.limits.size)
    let messages = entries.map((entry) => toMessage(room, position.epoch, entry)).filter((message) => message.offset > since)
    if (query.limit !== undefined) messages = messages.slice(0, clampOffset(query.limit))
    return { position, messages }
  }

  async recover (room: string, epoch: string, offset: number): Promise<Recovery> {
    const valid = typeof epoch === 'string' && Number.isSafeInteger(offset) && offset >= 0
    const { position, entries } = await this.read(room, valid ? offset : 0, valid ? this.limits.size : 0)
    if (!valid || epoch !== position.epoch || offset > position.offset || !complete(entries, offset, position.offset)) {
      return { recovered: false, position, messages: [] }
    }
    return { recovered: true, position, messages: entries.map((entry) => toMessage(room, epoch, entry)) }
  }

  async presenceAdd (room: string, entry: PresenceEntry): Promise<void> {
    const json = JSON.stringify(entry)
    let mine = this.owned.get(room)
    if (mine === undefined) this.owned.set(room, mine = new Map())
    mine.set(entry.connectionId, json)
    const keys = roomKeys(this.prefix, room)
    await this.client.fastifyRealtimePresenceAdd(keys.presence, keys.expiry, this.presenceTtlMs, entry.connectionId, json)
  }

  async presenceRemove (room: string, connectionId: string): Promise<void> {
    const mine = this.owned.get(room)
    if (mine !== undefined) {
      mine.delete(connectionId)
      if (mine.size === 0) this.owned.delete(room)
    }
    const keys = roomKeys(this.prefix, room)
    await this.client.multi().hdel(keys.presence, connectionId).zrem(keys.expiry, connectionId).exec()
  }

  async presence (room: string): Promise<PresenceEntry[]> {
    const keys = roomKeys(this.prefix, room)
    const values = await this.client.fastifyRealtimePresence(keys.presence, keys.expiry) as string[]
    return values.map((value) => JSON.parse(value) as PresenceEntry)
  }

  async presenceCount (room: string): Promise<number> {
    const keys = roomKeys(this.prefix, room)
    return await this.client.fastifyRealtimePresenceCount(keys.presence, keys.expiry) as number
  }

  /** Extends this instance's entries (and adds them back if Redis lost them). */
  private refresh (): void {
    for (const [room, mine] of this.owned) {
      const keys = roomKeys(this.prefix, room)
      const args: string[] = []
      for (const [connectionId, json] of mine) args.push(connectionId, json)
      this.client.fastifyRealtimePresenceAdd(keys.presence, keys.expiry, this.presenceTtlMs, ...args).catch(this.onError)
    }
  }

  /**
   * Stops refreshing, removes this instance's presence entries, and quits the connections it
   * created. A client passed in stays open.
   */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    clearInterval(this.refreshTimer)
    for (const subscription of this.subscriptions.values()) {
      subscription.active = false
      subscription.waiting = []
    }
    this.subscriptions.clear()
    const pipeline = this.client.pipeline()
    for (const [room, mine] of this.owned) {
      const keys = roomKeys(this.prefix, room)
      pipeline.hdel(keys.presence, ...mine.keys()).zrem(keys.expiry, ...mine.keys())
    }
    this.owned.clear()
    // Unreachable Redis: the entries expire within presenceTtlMs anyway, and closing must not fail.
    await pipeline.exec().catch(this.onError)
    // disconnect, not quit: nothing is pending any more, and QUIT would reject when Redis is down.
    this.subscriber.disconnect()
    if (this.ownsClient) this.client.disconnect()
  }
}

/**
 * Whether `entries` (the newest, oldest first) are all the messages after `since` up to `offset`:
 * the stream's offsets are dense and end at `offset` (see publishScript), so counting is enough.
 */
function complete (entries: StreamEntry[], since: number, offset: number): boolean {
  return entries.length === offset - since
}

function toMessage (room: string, epoch: string, [id, fields]: StreamEntry): RoomMessage {
  return { room, epoch, offset: Number(fields[1]), time: Number(id.slice(0, id.indexOf('-'))), text: fields[3] }
}
