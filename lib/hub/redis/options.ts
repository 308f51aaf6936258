import type { ClusterStartNode, RedisClientOption } from './cluster-client.js'
import { prefixProblem } from './key-tags.js'
import { defaultHistoryLimits, type HistoryLimits } from '../broker.js'
import { MAX_DELAY } from '../../options/checks.js'
import { historyLimits } from '../../options/history.js'
import { check } from '../../options/server-checks.js'

export interface RedisBrokerOptions {
  /**
   * Where Redis is: a `redis://` / `rediss://` URL (one Redis), a list of them or of `{ host, port }`
   * (the startup nodes of a Redis Cluster: the broker makes an ioredis `Cluster`, with sharded
   * subscribers when `shardedPubSub` is on), or an ioredis `Redis` or `Cluster` of your own. A client
   * passed in is used as it is and never closed by the broker; pub/sub runs on a `duplicate()` of it,
   * which the broker sets up for sharded pub/sub itself.
   * @default 'redis://127.0.0.1:6379'
   */
  client?: RedisClientOption
  /**
   * Prepended to every key and channel, so several apps can share one Redis. It may not hold `{` or
   * `}`: on a Redis Cluster that would put every room in one slot. @default 'frt:'
   */
  keyPrefix?: string
  /** Per-room history bounds; a room's keys expire `ttlMs` after its last message. @default { size: 100, ttlMs: 300000 } */
  history?: Partial<HistoryLimits>
  /**
   * How long a presence entry lives without a refresh, in ms. The instance that added an entry
   * refreshes it every `presenceTtlMs / 2`, so a crashed instance's members disappear within this time.
   * @default 60000
   */
  presenceTtlMs?: number
  /**
   * Publish with SPUBLISH and subscribe with SSUBSCRIBE (Redis 7): on a Redis Cluster each message
   * then stays on the shard of its room, where classic pub/sub copies it to every node. Use it on a
   * cluster; on one Redis it changes nothing. @default false
   */
  shardedPubSub?: boolean
  /**
   * On a Redis Cluster: how often the broker reads the slot map to find rooms whose slot moved or
   * whose master failed over, in ms; such rooms are subscribed again where they now live and catch
   * up from their stream. It also reads it at once when a node leaves or reports an error. Unused
   * on one Redis. @default 5000
   */
  topologyCheckMs?: number
  /**
   * Called when background work fails: a presence refresh, the resubscription after a reconnect, a
   * catch-up from the stream, or an error of a connection the broker created. Each is retried by
   * itself (on the next refresh, reconnect or message). @default ignore
   */
  onError?: (error: Error) => void
}

export interface Settings {
  client: RedisClientOption
  keyPrefix: string
  limits: HistoryLimits
  presenceTtlMs: number
  sharded: boolean
  topologyCheckMs: number
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
  topologyCheckMs: 5000,
  onError: ignore
})

/** Every key RedisBroker accepts. */
export const optionNames = Object.freeze(Object.keys(redisBrokerDefaults))

/** Checks RedisBrokerOptions once, at construction, with the plugin's checkers: FST_RT_INVALID_OPTION names the option and what it got. */
export function settings (input: unknown): Settings {
  const options = check.object('RedisBroker', input ?? {}, optionNames, 'an object')
  const client = checkClient(options.client ?? redisBrokerDefaults.client)
  const keyPrefix = options.keyPrefix ?? redisBrokerDefaults.keyPrefix
  if (typeof keyPrefix !== 'string') check.fail('RedisBroker.keyPrefix', 'a string', keyPrefix)
  const problem = prefixProblem(keyPrefix as string)
  if (problem !== null) check.fail('RedisBroker.keyPrefix', problem, keyPrefix)
  return {
    client,
    keyPrefix: keyPrefix as string,
    limits: historyLimits('RedisBroker.history', options.history),
    // The presence refresh runs every presenceTtlMs / 2, on setInterval.
    presenceTtlMs: check.optionalInteger('RedisBroker.presenceTtlMs', options.presenceTtlMs, 2, MAX_DELAY, redisBrokerDefaults.presenceTtlMs),
    sharded: options.shardedPubSub === undefined ? redisBrokerDefaults.shardedPubSub : check.boolean('RedisBroker.shardedPubSub', options.shardedPubSub),
    topologyCheckMs: check.optionalInteger('RedisBroker.topologyCheckMs', options.topologyCheckMs, 1, MAX_DELAY, redisBrokerDefaults.topologyCheckMs),
    onError: options.onError === undefined ? redisBrokerDefaults.onError : check.func<(error: Error) => void>('RedisBroker.onError', options.onError, 'a function')
  }
}

const CLIENT_EXPECTED = 'an ioredis Redis or Cluster, a redis:// or rediss:// URL, or a non-empty list of such URLs or { host, port } nodes'

function isUrl (value: unknown): value is string {
  return typeof value === 'string' && /^rediss?:\/\//.test(value) && URL.canParse(value)
}

function isNode (value: unknown): value is ClusterStartNode {
  if (isUrl(value)) return true
  if (typeof value !== 'object' || value === null) return false
  const { host, port } = value as { host?: unknown, port?: unknown }
  return typeof host === 'string' && host !== '' && Number.isInteger(port) && (port as number) > 0 && (port as number) < 65536
}

/** A URL, a node list or an ioredis client (Redis or Cluster: both can duplicate and define scripts). */
function checkClient (client: unknown): RedisClientOption {
  if (typeof client === 'string') {
    if (!isUrl(client)) check.fail('RedisBroker.client', CLIENT_EXPECTED, client)
  } else if (Array.isArray(client)) {
    if (client.length === 0 || !client.every(isNode)) check.fail('RedisBroker.client', CLIENT_EXPECTED, client)
  } else if (typeof client !== 'object' || client === null ||
    typeof (client as { duplicate?: unknown }).duplicate !== 'function' || typeof (client as { defineCommand?: unknown }).defineCommand !== 'function') {
    check.fail('RedisBroker.client', CLIENT_EXPECTED, client)
  }
  return client as RedisClientOption
}
