import t, { type Test } from 'tap'
import { Type } from '@sinclair/typebox'
import { contractHandler, defineContract, MemoryBroker, roomHistoryRoute, type Broker, type Position } from '../lib/index.js'
import { build } from './support/helpers.js'
import { redisUnavailable, redisUrl } from './support/redis-server.js'

const feed = defineContract({
  client: { latest: { data: Type.Object({ room: Type.String(), n: Type.Integer() }), reply: Type.Array(Type.Integer()) } },
  server: { item: Type.Object({ n: Type.Integer() }) }
})

async function app (t: Test, broker?: Broker) {
  return await build(t, (app) => {
    app.get('/ws', { realtime: true }, contractHandler(feed, {
      async latest ({ room, n }, ctx) { return (await ctx.rooms.history(room, { limit: n, newest: true })).messages.map((message) => message.data.n) }
    }))
    app.get('/history', roomHistoryRoute({ authorize: () => true, contract: feed, maxLimit: 5 }))
  }, broker === undefined ? { history: { size: 8 } } : { broker })
}

const offsets = (page: { messages: ReadonlyArray<{ offset: number }> }): number[] => page.messages.map((message) => message.offset)

async function ranges (t: Test, broker?: Broker) {
  const { app: server } = await app(t, broker)
  const room = `feed-${Math.random().toString(36).slice(2)}`
  for (let n = 1; n <= 10; n++) await server.realtime.publish(feed, room, 'item', { n })
  const read = server.realtime
  t.same(offsets(await read.history(room, { limit: 3, newest: true })), [8, 9, 10], 'the latest 3, oldest first')
  t.same(offsets(await read.history(room, { before: 6, limit: 2, newest: true })), [4, 5], 'the 2 just before 6')
  t.same(offsets(await read.history(room, { before: 6 })), [3, 4, 5], 'everything kept before 6 (the bounds keep 8)')
  t.same(offsets(await read.history(room, { since: 3, before: 9, limit: 2 })), [4, 5], 'the oldest 2 between 3 and 9')
  t.same(offsets(await read.history(room, { since: 3, before: 9, limit: 2, newest: true })), [7, 8], 'the newest 2 between 3 and 9')
  t.same(offsets(await read.history(room, { before: 1000, limit: 2, newest: true })), [9, 10], 'a before past the position')
  t.same(offsets(await read.history(room, { limit: 20, newest: true })), [3, 4, 5, 6, 7, 8, 9, 10], 'no more than is kept')
  t.same(offsets(await read.history(room, { newest: true })), [3, 4, 5, 6, 7, 8, 9, 10])
  const none = await read.history(room, { limit: 0, newest: true })
  t.same(offsets(none), [])
  t.equal(none.position.offset, 10)
  const position: Position = await read.position(room)
  t.match(position, { epoch: none.position.epoch, offset: 10 })
  const decoded = await read.history(feed, room, { limit: 1, newest: true })
  t.match(decoded.messages, [{ type: 'item', data: { n: 10 }, offset: 10 }])
  return { server, room }
}

t.test('history ranges on the memory broker: latest N, before, after, both ends; position alone', async (t) => {
  const { server, room } = await ranges(t, new MemoryBroker({ history: { size: 8 } }))
  const page = await server.inject({ url: `/history?room=${room}&before=9&newest=true&limit=10` })
  t.equal(page.statusCode, 200)
  t.same(page.json().messages.map((message: { offset: number }) => message.offset), [4, 5, 6, 7, 8], 'the route caps the page at maxLimit, from the newest end')
  t.match(page.json().messages[0], { type: 'item', data: { n: 4 }, room, offset: 4 })
  const bad = await server.inject({ url: `/history?room=${room}&newest=maybe` })
  t.equal(bad.statusCode, 400)
})

t.test('history ranges on Redis give the same answers', { skip: redisUnavailable() ?? false }, async (t) => {
  const { RedisBroker } = await import('../lib/hub/redis/index.js')
  await ranges(t, new RedisBroker({ client: await redisUrl(t), keyPrefix: `ranges-${Math.random().toString(36).slice(2)}:`, history: { size: 8 } }))
})

t.test('the latest N end at the page\'s position, also when messages come in between the two reads', async (t) => {
  class Busy extends MemoryBroker {
    extra = 2
    override async position (room: string): Promise<Position> {
      const position = await super.position(room)
      // Published after the position was read, before the history is.
      for (; this.extra > 0; this.extra--) await this.publish(room, '{"type":"item","data":{"n":0}}')
      return position
    }
  }
  const { app: server } = await app(t, new Busy())
  for (let n = 1; n <= 5; n++) await server.realtime.publish(feed, 'busy', 'item', { n })
  const page = await server.realtime.history('busy', { limit: 3, newest: true })
  t.same(offsets(page), [5, 6, 7])
  t.equal(page.position.offset, 7, 'a client going on from the position misses nothing and sees nothing twice')
})

t.test('bad history queries and rooms are refused with their codes', async (t) => {
  const { app: server } = await app(t)
  const bad: unknown[] = [{ since: -1 }, { before: 'x' }, { limit: 1.5 }, { newest: 'yes' }, { bogus: 1 }, 'since=1', null, [1], { since: Number.MAX_SAFE_INTEGER + 2 }]
  for (const query of bad) await t.rejects(server.realtime.history('r', query as never), { code: 'FST_RT_INVALID_HISTORY_QUERY' }, JSON.stringify(query))
  await t.rejects(server.realtime.history('$user:x'), { code: 'FST_RT_INVALID_ROOM' })
  await t.rejects(server.realtime.position(42 as never), { code: 'FST_RT_INVALID_ROOM' })
  await t.rejects(server.realtime.position(''), { code: 'FST_RT_INVALID_ROOM' })
  t.throws(() => roomHistoryRoute({ authorize: () => true, contract: 'chat' as never }), { code: 'FST_RT_INVALID_OPTION', message: /contract/ })
})
