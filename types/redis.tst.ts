import { Cluster, Redis } from 'ioredis'
import { describe, expect, test } from 'tstyche'
import { RedisBroker, type RedisBrokerOptions } from '../lib/hub/redis/index.js'

describe('RedisBroker client', () => {
  test('takes one Redis, a Cluster, a URL, or a list of URLs and nodes', () => {
    expect(new RedisBroker({ client: new Redis({ lazyConnect: true }) })).type.not.toRaiseError()
    expect(new RedisBroker({ client: new Cluster([{ host: '127.0.0.1', port: 7000 }], { lazyConnect: true }), shardedPubSub: true })).type.not.toRaiseError()
    expect(new RedisBroker({ client: 'redis://127.0.0.1:6379' })).type.not.toRaiseError()
    expect(new RedisBroker({ client: ['redis://127.0.0.1:7000', { host: '127.0.0.1', port: 7001 }], topologyCheckMs: 1000 })).type.not.toRaiseError()
  })

  test('refuses what is none of these', () => {
    expect({ client: 6379 }).type.not.toBeAssignableTo<RedisBrokerOptions>()
    expect({ client: [{ host: '127.0.0.1' }] }).type.not.toBeAssignableTo<RedisBrokerOptions>()
    expect({ topologyCheckMs: '5000' }).type.not.toBeAssignableTo<RedisBrokerOptions>()
  })
})
