import type { Redis } from 'ioredis'
import { defaultHistoryLimits, type HistoryLimits } from '../broker.js'
import { MAX_DELAY } from '../../options/checks.js'
import { historyLimits } from '../../options/history.js'
import { check } from '../../options/server-checks.js'

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

function ignore (): void {}

/** The defaults of RedisBroker's options (docs/rooms.md's table lists each). */
export const redisBrokerDefaults = Object.freeze({
  client: 'redis://127.0.0.1:6379',
  keyPrefix: 'frt:',
  history: defaultHistoryLimits,
  presenceTtlMs: 60_000,
  shardedPubSub: false,
  onError: ignore
})

/** Every key RedisBroker accepts. */
export const optionNames = Object.freeze(Object.keys(redisBrokerDefaults))

/** Checks RedisBrokerOptions once, at construction, with the plugin's checkers: FST_RT_INVALID_OPTION names the option and what it got. */
export function settings (input: unknown): Settings {
  const options = check.object('RedisBroker', input ?? {}, optionNames, 'an object')
  const client = options.client ?? redisBrokerDefaults.client
  const clientExpected = 'an ioredis client or a redis:// or rediss:// URL'
  if (typeof client === 'string') {
    if (!/^rediss?:\/\//.test(client) || !URL.canParse(client)) check.fail('RedisBroker.client', clientExpected, client)
  } else if (typeof client !== 'object' || typeof (client as Redis).duplicate !== 'function' || typeof (client as Redis).defineCommand !== 'function') {
    check.fail('RedisBroker.client', clientExpected, client)
  }
  const keyPrefix = options.keyPrefix ?? redisBrokerDefaults.keyPrefix
  if (typeof keyPrefix !== 'string') check.fail('RedisBroker.keyPrefix', 'a string', keyPrefix)
  return {
    client: client as Redis | string,
    keyPrefix: keyPrefix as string,
    limits: historyLimits('RedisBroker.history', options.history),
    // The presence refresh runs every presenceTtlMs / 2, on setInterval.
    presenceTtlMs: check.optionalInteger('RedisBroker.presenceTtlMs', options.presenceTtlMs, 2, MAX_DELAY, redisBrokerDefaults.presenceTtlMs),
    sharded: options.shardedPubSub === undefined ? redisBrokerDefaults.shardedPubSub : check.boolean('RedisBroker.shardedPubSub', options.shardedPubSub),
    onError: options.onError === undefined ? redisBrokerDefaults.onError : check.func<(error: Error) => void>('RedisBroker.onError', options.onError, 'a function')
  }
}
