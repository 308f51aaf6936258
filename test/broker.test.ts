import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { MemoryBroker } from '../lib/hub/memory.js'
import { MemoryPresence } from '../lib/hub/presence.js'
import { recover } from '../lib/hub/recovery.js'
import type { RedisBroker as RedisBrokerClass, RedisBrokerOptions } from '../lib/hub/redis/index.js'
import { brokerConformance, entry, Recorder, type BrokerConformanceOptions, type PresenceConformanceOptions } from '../lib/testing/index.js'
import { redisBrokers } from './support/redis-brokers.js'
import { redisServerPath, redisUnavailable, redisUrl, startRedisServer } from './support/redis-server.js'
import './support/process-guard.js'

const body = (n: number): string => JSON.stringify({ type: 'chat', data: { n } })

/** Each conformance check as a tap subtest. */
const tapTest = (t: Test) => (name: string, fn: () => Promise<void>) => t.test(name, fn)

brokerConformance(tapTest(t), { name: 'MemoryBroker', create: (limits) => new MemoryBroker({ history: limits }) }, { name: 'MemoryPresence', create: () => new MemoryPresence() })

t.test('MemoryBroker: a subscribed room publishes before attach() without failing', async (t) => {
  const broker = new MemoryBroker()
  await broker.subscribe('a')
  t.equal((await broker.publish('a', body(1))).offset, 1)
  await broker.close()
})

// Redis: skipped loudly without redis-server or REDIS_URL. lib/hub/redis/ is imported only when
// Redis is there, so coverage does not count a file no test could load.
const unavailable = redisUnavailable()
if (unavailable !== null) t.comment(unavailable)
t.test('RedisBroker', { skip: unavailable ?? false }, async (t) => {
  const { RedisBroker } = await import('../lib/hub/redis/index.js')
  redisTests(t, RedisBroker, await redisUrl(t))
})

function redisTests (t: Test, RedisBroker: typeof RedisBrokerClass, url: string): void {
  /** A key prefix of this test's own: tests never see each other's keys, even on a shared REDIS_URL. */
  const newPrefix = (): string => `frt-test:${randomUUID()}:`

  /** A RedisBroker closed on teardown, attached to a new Recorder. */
  function broker (t: Test, options: RedisBrokerOptions): { broker: RedisBrokerClass, events: Recorder } {
    const made = new RedisBroker(options)
    const events = new Recorder()
    made.attach(events)
    t.teardown(() => made.close())
    return { broker: made, events }
  }

  /** A plain ioredis client for looking at keys, killing connections and so on. */
  function admin (t: Test, name?: string): Redis {
    const client = new Redis(url, name === undefined ? {} : { connectionName: name })
    t.teardown(() => { client.disconnect() })
    return client
  }

  /** Drops the pub/sub connections of the clients named `name` (ioredis reconnects them). */
  async function killSubscriber (redis: Redis, name: string): Promise<number> {
    const list = await redis.client('LIST') as string
    const ids = list.split('\n')
      .filter((line) => line.includes(` name=${name} `) && /\bflags=\w*P/.test(line))
      .map((line) => /\bid=(\d+)/.exec(line)?.[1] as string)
    for (const id of ids) await redis.client('KILL', 'ID', id)
    return ids.length
  }

  /** Brokers on one Redis: each new one with a key prefix of its own, a peer with its broker's. */
  const onRedis = (name: string, extra: RedisBrokerOptions = {}): BrokerConformanceOptions =>
    redisBrokers(RedisBroker, name, () => ({ client: url, keyPrefix: newPrefix(), ...extra }))
  /** RedisPresence stores, each of a broker closed after the check. */
  function presenceOnRedis (): PresenceConformanceOptions {
    const brokers: RedisBrokerClass[] = []
    const keyPrefix = new WeakMap<object, string>()
    const make = (prefix: string): RedisBrokerClass['presence'] => {
      const made = new RedisBroker({ client: url, keyPrefix: prefix })
      brokers.push(made)
      keyPrefix.set(made.presence, prefix)
      return made.presence
    }
    return {
      name: 'RedisPresence',
      create: () => make(newPrefix()),
      peer: (store) => make(keyPrefix.get(store) as string),
      cleanup: async () => { for (const made of brokers.splice(0)) await made.close() }
    }
  }
  brokerConformance(tapTest(t), onRedis('RedisBroker'), presenceOnRedis())
  brokerConformance(tapTest(t), onRedis('RedisBroker (sharded pub/sub)', { shardedPubSub: true }))

  t.test('RedisBroker: the key layout, with a hash tag per room', async (t) => {
    const keyPrefix = newPrefix()
    const { broker: b } = broker(t, { client: url, keyPrefix })
    const redis = admin(t)
    const message = await b.publish('lobby', body(1))
    await b.presence.add('lobby', entry('c1'))
    t.same((await redis.keys(`${keyPrefix}*`)).sort(), [
      `${keyPrefix}room:{lobby}:meta`,
      `${keyPrefix}room:{lobby}:presence`,
      `${keyPrefix}room:{lobby}:presence:expiry`,
      `${keyPrefix}room:{lobby}:stream`
    ])
    t.same(await redis.hgetall(`${keyPrefix}room:{lobby}:meta`), { epoch: message.epoch, offset: '1' })
    const [id, fields] = (await redis.xrange(`${keyPrefix}room:{lobby}:stream`, '-', '+'))[0] as [string, string[]]
    t.equal(id.split('-')[0], String(message.time), 'a time-based stream id')
    t.same(fields, ['offset', '1', 'text', message.text], 'the time is the id')
    for (const key of await redis.keys(`${keyPrefix}*`)) {
      const ttl = await redis.pttl(key)
      t.ok(ttl > 0, `${key} expires (in ${ttl} ms)`)
    }
  })

  t.test('RedisBroker: the default key prefix is frt:', async (t) => {
    const room = `default-prefix-${randomUUID()}`
    const { broker: b } = broker(t, { client: url })
    const redis = admin(t)
    await b.publish(room, body(1))
    t.equal(await redis.exists(`frt:room:{${room}}:meta`, `frt:room:{${room}}:stream`), 2)
    await redis.del(`frt:room:{${room}}:meta`, `frt:room:{${room}}:stream`)
  })

  t.test('RedisBroker: a dead room vanishes from Redis and comes back with a new epoch', async (t) => {
    const keyPrefix = newPrefix()
    const ttlMs = 100
    const { broker: b, events } = broker(t, { client: url, keyPrefix, history: { ttlMs } })
    const redis = admin(t)
    await b.subscribe('d')
    const m1 = await b.publish('d', body(1))
    await events.until(1)
    await sleep(ttlMs * 1.5)
    t.equal(await redis.exists(`${keyPrefix}room:{d}:meta`, `${keyPrefix}room:{d}:stream`), 0, 'its keys expired')
    const m2 = await b.publish('d', body(2))
    t.not(m2.epoch, m1.epoch, 'a new epoch')
    t.equal(m2.offset, 1, 'counting from 1 again')
    await events.until(2)
    t.same(events.messages, [m1, m2], 'the subscriber follows: the connection was up, nothing was missed')
    await sleep(ttlMs * 1.5)
    const notice = await b.publish('d', body(0), { history: false })
    t.not(notice.epoch, m2.epoch, 'an unstored message starts a new epoch too')
    t.equal(notice.offset, 0)
    await events.until(3)
    t.same(events.messages, [m1, m2, notice])
    t.same(events.losses, [])
  })

  t.test('RedisBroker: history.size 0 keeps no history', async (t) => {
    const keyPrefix = newPrefix()
    const { broker: b } = broker(t, { client: url, keyPrefix, history: { size: 0 } })
    const m1 = await b.publish('z', body(1))
    t.same(await b.history('z'), { position: { epoch: m1.epoch, offset: 1 }, messages: [] })
    t.same(await recover(b, 'z', m1.epoch, 0), { recovered: false, position: { epoch: m1.epoch, offset: 1 }, messages: [] })
    t.same(await recover(b, 'z', m1.epoch, 1), { recovered: true, position: { epoch: m1.epoch, offset: 1 }, messages: [] })
    t.equal(await admin(t).exists(`${keyPrefix}room:{z}:stream`), 0, 'no stream')
  })

  t.test('RedisBroker: a gap in pub/sub is filled from the stream, or reported lost', async (t) => {
    const keyPrefix = newPrefix()
    const history = { size: 5 }
    // Sharded publishes (SPUBLISH) never reach a plain SUBSCRIBE: to the subscriber they are lost wake-ups.
    const { broker: silent } = broker(t, { client: url, keyPrefix, history, shardedPubSub: true })
    const { broker: loud } = broker(t, { client: url, keyPrefix, history })
    const { broker: b, events } = broker(t, { client: url, keyPrefix, history })
    await b.subscribe('g')
    const missed = [await silent.publish('g', body(1)), { ...await silent.publish('g', body(2), { except: 'c|9 ☃' }), except: 'c|9 ☃' }]
    // m3 starts the catch-up; m4 comes in while it reads, waits, and is delivered once.
    const [m3, m4] = await Promise.all([loud.publish('g', body(3)), loud.publish('g', body(4))])
    await events.until(4)
    t.same(events.messages, [...missed, m3, m4], 'the missed messages first (with their except), then the newer ones')
    // A missed unstored message takes no offset: nothing to miss. One that shows a gap waits for the catch-up.
    await silent.publish('g', body(0), { history: false })
    const m5 = await silent.publish('g', body(5))
    const notice = await loud.publish('g', body(0), { history: false })
    const m6 = await loud.publish('g', body(6))
    await events.until(7)
    t.same(events.messages.slice(4), [m5, notice, m6], 'the stored message first, then the notice that carries its offset')
    // More missed than the stream keeps: lost.
    for (let n = 7; n <= 12; n++) await silent.publish('g', body(n))
    const m13 = await loud.publish('g', body(13))
    await events.until(1, 'losses')
    t.same(events.losses, [{ room: 'g', position: { epoch: m3.epoch, offset: 13 } }], 'lost, at the position after the gap')
    const m14 = await loud.publish('g', body(14))
    await events.until(8)
    t.same(events.messages.slice(7), [m14], 'then on from there')
    t.notOk(events.messages.some((message) => message.offset === m13.offset), 'the message that showed the gap is covered by the loss')
  })

  t.test('RedisBroker: a subscriber reports a room lost when it restarted unseen', async (t) => {
    const keyPrefix = newPrefix()
    const ttlMs = 100
    const { broker: silent } = broker(t, { client: url, keyPrefix, shardedPubSub: true, history: { ttlMs } })
    const { broker: loud } = broker(t, { client: url, keyPrefix, history: { ttlMs } })
    const { broker: b, events } = broker(t, { client: url, keyPrefix, history: { ttlMs } })
    await b.subscribe('e')
    const m1 = await loud.publish('e', body(1))
    await events.until(1)
    await sleep(ttlMs * 1.5)
    const unseen = await silent.publish('e', body(1))
    const m2 = await loud.publish('e', body(2))
    t.not(unseen.epoch, m1.epoch)
    await events.until(1, 'losses')
    t.same(events.losses, [{ room: 'e', position: { epoch: m2.epoch, offset: 2 } }])
    const m3 = await loud.publish('e', body(3))
    await events.until(2)
    t.same(events.messages, [m1, m3])
  })

  t.test('RedisBroker: after its pub/sub connection drops, a subscriber catches up in order', async (t) => {
    const keyPrefix = newPrefix()
    const name = `frt-sub-${randomUUID()}`
    const { broker: publisher } = broker(t, { client: url, keyPrefix })
    const { broker: b, events } = broker(t, { client: admin(t, name), keyPrefix })
    await b.subscribe('c')
    const m1 = await publisher.publish('c', body(1))
    await events.until(1)
    t.equal(await killSubscriber(admin(t), name), 1, 'its pub/sub connection is gone')
    // Published while it reconnects: only the stream has them.
    const missed = [await publisher.publish('c', body(2)), await publisher.publish('c', body(3))]
    await events.until(3)
    const m4 = await publisher.publish('c', body(4))
    await events.until(4)
    t.same(events.messages, [m1, ...missed, m4], 'each once, in order')
    t.same(events.losses, [])
  })

  t.test('RedisBroker: a failed catch-up is reported and retried with the next message', async (t) => {
    const keyPrefix = newPrefix()
    const name = `frt-sub-${randomUUID()}`
    const errors: Error[] = []
    let failedNow = (): void => {}
    const failed = new Promise<void>((resolve) => { failedNow = resolve })
    const client = admin(t, name)
    const options: RedisBrokerOptions = { client, keyPrefix, onError: (error) => { errors.push(error); failedNow() } }
    const { broker: publisher } = broker(t, { client: url, keyPrefix })
    const { broker: b, events } = broker(t, options)
    await b.subscribe('f')
    client.disconnect()
    t.equal(await killSubscriber(admin(t), name), 1)
    // The subscriber reconnects, subscribes again, and cannot read the stream.
    await failed
    t.match(errors[0], { message: /Connection is closed/ })
    client.connect().catch(() => {})
    await once(client, 'ready')
    const m1 = await publisher.publish('f', body(1))
    await events.until(1)
    const m2 = await publisher.publish('f', body(2))
    await events.until(2)
    t.same(events.messages, [m1, m2])
    t.same(events.losses, [])
  })

  t.test('RedisBroker: subscribe() rejects when the room cannot be read, and subscribes nothing', async (t) => {
    const keyPrefix = newPrefix()
    const client = admin(t)
    await once(client, 'ready')
    const { broker: b, events } = broker(t, { client, keyPrefix })
    client.disconnect()
    await t.rejects(b.subscribe('x'), { message: /Connection is closed/ })
    const rejected = t.rejects(b.subscribe('y'), { message: /Connection is closed/ }, 'also when unsubscribed meanwhile')
    await b.unsubscribe('y')
    await rejected
    client.connect().catch(() => {})
    await once(client, 'ready')
    await b.subscribe('x')
    const m1 = await b.publish('x', body(1))
    await events.until(1)
    t.same(events.messages, [m1])
  })

  t.test('RedisBroker: unsubscribe() before subscribe() resolved delivers nothing', async (t) => {
    const { broker: b, events } = broker(t, { client: url, keyPrefix: newPrefix() })
    const pending = b.subscribe('u')
    await b.unsubscribe('u')
    await pending
    await b.subscribe('sentinel')
    await b.publish('u', body(1))
    const sentinel = await b.publish('sentinel', body(1))
    await events.until(1)
    t.same(events.messages, [sentinel])
  })

  t.test('RedisBroker: unsubscribe() in the message handler drops what was already on its way', async (t) => {
    const keyPrefix = newPrefix()
    const { broker: publisher } = broker(t, { client: url, keyPrefix })
    const { broker: b, events } = broker(t, { client: url, keyPrefix })
    await b.subscribe('w')
    let unsubscribed: Promise<void> | null = null
    events.onMessage = () => { unsubscribed ??= b.unsubscribe('w') }
    const [m1] = await Promise.all([publisher.publish('w', body(1)), publisher.publish('w', body(2))])
    await events.until(1)
    // Redis answers UNSUBSCRIBE after the message it had already sent: once it has, message 2 came and went.
    await unsubscribed
    t.same(events.messages, [m1])
  })

  t.test('RedisBroker: two instances on one server', async (t) => {
    const keyPrefix = newPrefix()
    const { broker: a, events: aEvents } = broker(t, { client: url, keyPrefix })
    const { broker: b, events: bEvents } = broker(t, { client: url, keyPrefix })
    await b.subscribe('room')
    const m1 = await a.publish('room', body(1))
    await bEvents.until(1)
    t.same(bEvents.messages, [m1], 'a publish on A reaches B')
    t.same(aEvents.messages, [], 'A did not subscribe')
    await a.presence.add('room', entry('a1'))
    await b.presence.add('room', entry('b1'))
    t.same((await a.presence.list('room')).map((e) => e.connectionId).sort(), ['a1', 'b1'], 'presence lists the entries of both')
    t.same(await recover(b, 'room', m1.epoch, 0), { recovered: true, position: { epoch: m1.epoch, offset: 1 }, messages: [m1] })
    t.same(await b.history('room'), await a.history('room'))
    await b.close()
    t.same((await a.presence.list('room')).map((e) => e.connectionId), ['a1'], 'closing B removed its own entry only')
  })

  t.test('RedisBroker: a crashed instance disappears from presence within presenceTtlMs', async (t) => {
    const keyPrefix = newPrefix()
    const presenceTtlMs = 200
    const redis = admin(t)
    const crashing = admin(t)
    await once(crashing, 'ready')
    const { broker: alive } = broker(t, { client: url, keyPrefix, presenceTtlMs })
    const { broker: crashed } = broker(t, { client: crashing, keyPrefix, presenceTtlMs })
    await alive.presence.add('p', entry('alive'))
    await crashed.presence.add('p', entry('crashed'))
    t.equal(await alive.presence.count('p'), 2)
    // The crash: its connection is gone without removing anything (its refreshes fail from now on).
    crashing.disconnect()
    await sleep(presenceTtlMs * 1.5)
    t.equal(await alive.presence.count('p'), 1, 'the count ignores the expired entry')
    t.same(await alive.presence.list('p'), [entry('alive')], 'the list drops it; the live one was refreshed')
    t.equal(await redis.hlen(`${keyPrefix}room:{p}:presence`), 1, 'and Redis no longer holds it')
    t.equal(await redis.zcard(`${keyPrefix}room:{p}:presence:expiry`), 1)
    await crashed.close()
    t.equal(await alive.presence.count('p'), 1, 'closing the crashed instance removed nothing')
  })

  t.test('RedisBroker: a client passed in stays open; the connections it made are closed', async (t) => {
    const name = `frt-own-${randomUUID()}`
    const client = admin(t, name)
    const redis = admin(t)
    const b = new RedisBroker({ client, keyPrefix: newPrefix() })
    b.attach(new Recorder())
    await b.subscribe('a')
    const named = async (): Promise<number> => ((await redis.client('LIST') as string).match(new RegExp(` name=${name} `, 'g')) ?? []).length
    t.equal(await named(), 2, 'the client and the pub/sub duplicate')
    await b.close()
    t.equal(await client.ping(), 'PONG', 'the client passed in still works')
    // close() drops the duplicate's socket; Redis lists it until it has read the FIN (bounded look).
    let left = await named()
    for (let i = 0; i < 100 && left !== 1; i++) left = await named()
    t.equal(left, 1, 'the duplicate is gone')
  })

  t.test('RedisBroker: a URL makes a client of its own', async (t) => {
    const b = new RedisBroker({ client: url, keyPrefix: newPrefix() })
    b.attach(new Recorder())
    t.equal((await b.publish('a', body(1))).offset, 1)
    await b.close()
    await t.rejects(b.publish('a', body(2)), { message: /Connection is closed/ }, 'closed with the broker')
  })

  t.test('RedisBroker: without options it connects to redis://127.0.0.1:6379', async (t) => {
    const b = new RedisBroker()
    await b.close()
    await new RedisBroker(undefined).close()
    t.pass('closed before it connected')
  })

  t.test('RedisBroker: invalid options throw FST_RT_INVALID_OPTION', async (t) => {
    const circular: Record<string, unknown> = {}
    circular.self = circular
    const cases: Array<[unknown, RegExp]> = [
      ['redis://x', /"RedisBroker": expected an object, got "redis:\/\/x"/],
      [[], /"RedisBroker": expected an object, got \[\]/],
      [{ url }, /"RedisBroker\.url": expected one of client, keyPrefix, history, presenceTtlMs, shardedPubSub, topologyCheckMs, onError \(unknown option\)/],
      [{ client: 'http://127.0.0.1' }, /"RedisBroker\.client": expected an ioredis Redis or Cluster, a redis:\/\/ or rediss:\/\/ URL, or a non-empty list of such URLs or \{ host, port \} nodes, got "http:\/\/127\.0\.0\.1"/],
      [{ client: [] }, /"RedisBroker\.client": .*got \[\]/],
      [{ client: ['redis://127.0.0.1:7000', 'http://127.0.0.1:7001'] }, /"RedisBroker\.client": .*got \["redis:\/\/127\.0\.0\.1:7000","http:\/\/127\.0\.0\.1:7001"\]/],
      [{ client: [{ host: '127.0.0.1', port: 0 }] }, /"RedisBroker\.client": .*got \[\{"host":"127\.0\.0\.1","port":0\}\]/],
      [{ client: [{ host: '', port: 7000 }] }, /"RedisBroker\.client": .*got/],
      [{ client: [null] }, /"RedisBroker\.client": .*got \[null\]/],
      [{ client: [7000] }, /"RedisBroker\.client": .*got \[7000\]/],
      [{ client: [{ host: 1, port: 7000 }] }, /"RedisBroker\.client": .*got/],
      [{ client: [{ host: 'a', port: 7000.5 }] }, /"RedisBroker\.client": .*got/],
      [{ client: [{ host: 'a', port: 65536 }] }, /"RedisBroker\.client": .*got/],
      [{ keyPrefix: 'app{1}:' }, /"RedisBroker\.keyPrefix": expected a string without "\{" or "\}" \(a brace would put every room in one Redis Cluster slot\), got "app\{1\}:"/],
      [{ keyPrefix: 'app}' }, /"RedisBroker\.keyPrefix": .*got "app\}"/],
      [{ topologyCheckMs: 0 }, /"RedisBroker\.topologyCheckMs": expected an integer from 1 to 2147483647, got 0/],
      [{ client: 'redis://[nope' }, /"RedisBroker\.client": .*got "redis:\/\/\[nope"/],
      [{ client: 6379 }, /"RedisBroker\.client": .*got 6379/],
      [{ client: {} }, /"RedisBroker\.client": .*got \{\}/],
      [{ client: { duplicate () {} } }, /"RedisBroker\.client": .*got \{\}/],
      [{ client: circular }, /"RedisBroker\.client": .*got \[object Object\]/],
      [{ keyPrefix: 1 }, /"RedisBroker\.keyPrefix": expected a string, got 1/],
      [{ keyPrefix: () => 'x' }, /"RedisBroker\.keyPrefix": expected a string, got a function/],
      [{ history: 100 }, /"RedisBroker\.history": expected an object \{ size, ttlMs \}, got 100/],
      [{ history: [] }, /"RedisBroker\.history": expected an object/],
      [{ history: { max: 1 } }, /"RedisBroker\.history\.max": expected one of size, ttlMs \(unknown option\), got 1/],
      [{ history: { size: -1 } }, /"RedisBroker\.history\.size": expected an integer from 0 to 9007199254740991, got -1/],
      [{ history: { size: 1.5 } }, /"RedisBroker\.history\.size": .*got 1\.5/],
      [{ history: { ttlMs: 0 } }, /"RedisBroker\.history\.ttlMs": expected an integer from 1 to 9007199254740991, got 0/],
      [{ history: { ttlMs: '100' } }, /"RedisBroker\.history\.ttlMs": .*got "100"/],
      [{ presenceTtlMs: 1 }, /"RedisBroker\.presenceTtlMs": expected an integer from 2 to 2147483647, got 1/],
      [{ presenceTtlMs: 2 ** 31 }, /"RedisBroker\.presenceTtlMs": .*got 2147483648/],
      [{ presenceTtlMs: 10n }, /"RedisBroker\.presenceTtlMs": .*got 10$/],
      [{ shardedPubSub: 'yes' }, /"RedisBroker\.shardedPubSub": expected a boolean, got "yes"/],
      [{ onError: true }, /"RedisBroker\.onError": expected a function, got true/]
    ]
    for (const [options, message] of cases) {
      const error = (() => {
        try {
          return new RedisBroker(options as RedisBrokerOptions)
        } catch (error) {
          return error
        }
      })()
      t.type(error, TypeError, message.source)
      t.match(error, { code: 'FST_RT_INVALID_OPTION', message }, message.source)
    }
  })

  t.test('RedisBroker: redis-server restarted mid-stream (no persistence)', { skip: redisServerPath() === null ? 'needs redis-server (apt-get install redis-server) to restart it' : false }, async (t) => {
    const server = await startRedisServer(t)
    const keyPrefix = newPrefix()
    const presenceTtlMs = 200
    const errors: Error[] = []
    const onError = (error: Error): void => { errors.push(error) }
    const { broker: publisher } = broker(t, { client: server.url, keyPrefix, onError })
    const { broker: b, events } = broker(t, { client: server.url, keyPrefix, onError, presenceTtlMs })
    await b.subscribe('r')
    await b.presence.add('r', entry('c1'))
    const m1 = await publisher.publish('r', body(1))
    await events.until(1)
    await server.restart()
    // Queued while the publisher reconnects; the scripts are gone from Redis and are sent again.
    const m2 = await publisher.publish('r', body(2))
    t.not(m2.epoch, m1.epoch, 'the history was lost with the server: a new epoch')
    await events.until(1, 'losses')
    const [loss] = events.losses
    t.equal(loss?.room, 'r')
    t.equal(loss?.position.epoch, m2.epoch, 'lost() gives the new position')
    t.ok(loss!.position.offset <= 1, `at offset ${String(loss?.position.offset)}`)
    const m3 = await publisher.publish('r', body(3))
    // m1, then m2 unless the loss covers it, then m3.
    await events.until(loss!.position.offset === 1 ? 2 : 3)
    t.same(events.messages.at(-1), m3, 'publishing and delivery go on')
    t.same(events.messages.filter((message) => message.epoch === m2.epoch).map((message) => message.offset),
      loss!.position.offset === 1 ? [2] : [1, 2], 'each message of the new epoch once, after the loss')
    t.equal(events.losses.length, 1, 'lost() once')
    t.comment(`connection errors reported while Redis was down: ${errors.length}`)
    // The refresh (every presenceTtlMs / 2) puts the instance's entries back.
    await sleep(presenceTtlMs)
    t.same(await b.presence.list('r'), [entry('c1')], 'presence is back after a refresh')
  })

  t.test('RedisBroker: publish round trip on Redis (1000 messages)', async (t) => {
    const keyPrefix = newPrefix()
    const { broker: b, events } = broker(t, { client: url, keyPrefix })
    await b.subscribe('bench')
    let start = performance.now()
    for (let n = 0; n < 1000; n++) await b.publish('bench', body(n))
    const sequential = performance.now() - start
    await events.until(1000)
    start = performance.now()
    await Promise.all(Array.from({ length: 1000 }, (_, n) => b.publish('bench', body(n))))
    await events.until(2000)
    const pipelined = performance.now() - start
    t.comment(`1000 publishes one after another: ${sequential.toFixed(0)} ms (${(sequential / 1000 * 1000).toFixed(0)} µs each); 1000 at once, until all delivered: ${pipelined.toFixed(0)} ms`)
    t.same(events.messages.map((message) => message.offset), Array.from({ length: 2000 }, (_, n) => n + 1), 'all delivered in order')
  })
}

t.test('the memory broker and presence ignore leaving rooms they never had', async (t) => {
  const { MemoryBroker } = await import('../lib/hub/memory.js')
  const { MemoryPresence } = await import('../lib/hub/presence.js')
  const broker = new MemoryBroker()
  broker.attach({ message () {}, lost () {} })
  await broker.unsubscribe('never-seen')
  const presence = new MemoryPresence()
  await presence.remove('never-seen', 'x')
  t.equal(await presence.count('never-seen'), 0)
  t.same(await presence.list('never-seen'), [])
})
