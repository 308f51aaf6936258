import { Cluster, Redis, type ClusterOptions } from 'ioredis'

/** A Redis Cluster node to start from: a `redis://` / `rediss://` URL, or a host and port. */
export type ClusterStartNode = string | { readonly host: string, readonly port: number }

/** What RedisBroker's `client` option takes. */
export type RedisClientOption = Redis | Cluster | string | readonly ClusterStartNode[]

/** One Redis or a Redis Cluster, as ioredis gives them. */
export type AnyRedis = Redis | Cluster

/** Whether a client is an ioredis Cluster (its public `isCluster` flag). */
export function isCluster (client: AnyRedis): client is Cluster {
  return (client as Cluster).isCluster === true
}

/**
 * The command client for the option: a URL makes one Redis, a list of nodes a Cluster; a client
 * passed in is used as it is. `sharded` sets up the Cluster's sharded subscribers (SSUBSCRIBE goes
 * to the master of each channel's slot, which a default Cluster does not do).
 */
export function commandClient (option: RedisClientOption, sharded: boolean): AnyRedis {
  if (typeof option === 'string') return new Redis(option)
  if (!Array.isArray(option)) return option as AnyRedis
  const nodes = option as readonly ClusterStartNode[]
  return new Cluster([...nodes], clusterOptions(nodes, sharded))
}

/**
 * Options for a Cluster made from a node list: the first URL's credentials and TLS for every node
 * (ioredis applies a URL's only to the node it names, and the others are discovered).
 */
export function clusterOptions (nodes: readonly ClusterStartNode[], sharded: boolean): ClusterOptions {
  const first = nodes.find((node): node is string => typeof node === 'string')
  const options: ClusterOptions = { shardedSubscribers: sharded }
  if (first === undefined) return options
  const url = new URL(first)
  const redisOptions: NonNullable<ClusterOptions['redisOptions']> = {}
  if (url.username !== '') redisOptions.username = decodeURIComponent(url.username)
  if (url.password !== '') redisOptions.password = decodeURIComponent(url.password)
  if (url.protocol === 'rediss:') redisOptions.tls = {}
  options.redisOptions = redisOptions
  return options
}

/**
 * The pub/sub connection of a broker, a duplicate of its command client. Resubscribing after a
 * reconnect is the broker's, not ioredis's: the catch-up must start only once the channels are
 * subscribed again. A Cluster's duplicate gets sharded subscribers when `sharded`, whatever the
 * client passed in was set up for.
 */
export function subscriberOf (client: AnyRedis, sharded: boolean): AnyRedis {
  if (!isCluster(client)) return client.duplicate({ autoResubscribe: false })
  return client.duplicate([], { shardedSubscribers: sharded, lazyConnect: false })
}

/** Attempts of a (un)subscribe on a Cluster's pub/sub connection. */
const SUBSCRIBE_ATTEMPTS = 3

/**
 * Runs a subscribe or unsubscribe, and on a Cluster runs it again if it fails, up to 3 times:
 * ioredis (5.x) replaces a cluster subscriber connection whose ready check crossed its first
 * subscription, rejecting the commands it held, and the next attempt goes to the new connection.
 */
export async function subscribing (connection: AnyRedis, run: () => Promise<unknown>): Promise<void> {
  for (let attempt = 1; attempt < SUBSCRIBE_ATTEMPTS && isCluster(connection); attempt++) {
    try {
      await run()
      return
    } catch {
      // The next attempt goes to the connection that replaced the failed one.
    }
  }
  await run()
}
