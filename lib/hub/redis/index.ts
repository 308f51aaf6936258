// The `fastify-realtime/redis` entry: loaded only by apps that use Redis, so others never need ioredis.
export { RedisBroker } from './broker.js'
export type { RedisPresence } from './presence.js'
export type { RedisBrokerOptions } from './options.js'
export type { ClusterStartNode, RedisClientOption } from './cluster-client.js'
