import type { Redis } from 'ioredis'
import { errors } from '../../errors.js'
import { defaultHistoryLimits, type HistoryLimits } from '../broker.js'

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

export interface Settings {
  client: Redis | string
  keyPrefix: string
  limits: HistoryLimits
  presenceTtlMs: number
  sharded: boolean
  onError: (error: Error) => void
}

const optionNames = new Set(['client', 'keyPrefix', 'history', 'presenceTtlMs', 'shardedPubSub', 'onError'])
/** setInterval's largest delay; the presence refresh runs every presenceTtlMs / 2. */
const MAX_DELAY = 2 ** 31 - 1

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

function ignore (): void {}

/** Checks RedisBrokerOptions once, at construction: FST_RT_INVALID_OPTION names the option and what it got. */
export function settings (input: unknown): Settings {
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
