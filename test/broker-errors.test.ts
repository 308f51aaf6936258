import t from 'tap'
import { redisUnavailable } from './support/redis-server.js'
import { freePort } from './support/helpers.js'

// A RedisBroker that cannot reach Redis reports the connection errors, before and after attach().
const unavailable = redisUnavailable()
if (unavailable !== null) t.comment(unavailable)

t.test('connection errors go to onError before attach() and to the hub\'s error event after', { skip: unavailable ?? false }, async (t) => {
  const { RedisBroker } = await import('../lib/hub/redis/index.js')
  const port = await freePort()
  const optionErrors: Error[] = []
  let first!: () => void
  const early = new Promise<void>((resolve) => { first = resolve })
  const broker = new RedisBroker({ client: `redis://127.0.0.1:${port}`, onError: (error) => { optionErrors.push(error); first() } })
  t.teardown(() => broker.close())
  await early
  t.ok(optionErrors.length >= 1, 'an error before attach() reaches the option alone')
  const hubErrors: Error[] = []
  let next!: () => void
  const later = new Promise<void>((resolve) => { next = resolve })
  broker.attach({ message () {}, lost () {}, error (error) { hubErrors.push(error); next() } })
  await later
  t.match(hubErrors[0], { code: 'ECONNREFUSED' }, 'after attach() the hub hears about it too')
})

t.test('closing a broker whose Redis is gone resolves: an app can always shut down', { skip: unavailable ?? false }, async (t) => {
  const { RedisBroker } = await import('../lib/hub/redis/index.js')
  const { startRedisServer } = await import('./support/redis-server.js')
  const server = await startRedisServer(t)
  const broker = new RedisBroker({ client: server.url })
  broker.attach({ message () {}, lost () {}, error () {} })
  await broker.subscribe('r')
  await broker.presence.add('r', { connectionId: 'c', userId: null, meta: null, joinedAt: Date.now() })
  await server.stop()
  await broker.close()
  t.pass('close() resolved with Redis down')
})
