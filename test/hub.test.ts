import t, { type Test } from 'tap'
import { Type } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import {
  contractHandler, defineContract, MemoryBroker, MemoryPresence, SLOW_CONSUMER_CLOSE,
  type BrokerEvents, type ContractOptions, type HistoryQuery, type MessageHandlers, type RealtimeHubOptions
} from '../lib/index.js'
import { connectTest } from '../lib/testing/index.js'
import { build, client, deferred, type Client } from './support/helpers.js'

const chat = defineContract({
  client: {
    enter: { data: Type.Object({ room: Type.String(), meta: Type.Optional(Type.Unknown()) }), reply: Type.Object({ room: Type.String(), epoch: Type.String(), offset: Type.Integer() }) },
    exit: { data: Type.Object({ room: Type.String() }), reply: Type.Boolean() },
    say: Type.Object({ rooms: Type.Array(Type.String()), text: Type.String() }),
    shout: Type.Object({ room: Type.String(), text: Type.String() }),
    dm: Type.Object({ user: Type.String(), text: Type.String() }),
    all: Type.Object({ text: Type.String() }),
    who: { data: Type.Object({ room: Type.String() }), reply: Type.Object({ count: Type.Integer(), users: Type.Array(Type.Union([Type.String(), Type.Null()])), meta: Type.Array(Type.Unknown()) }) },
    past: { data: Type.Object({ room: Type.String(), since: Type.Integer() }), reply: Type.Array(Type.String()) },
    mine: { data: Type.Null(), reply: Type.Array(Type.String()) }
  },
  server: {
    message: Type.Object({ text: Type.String(), from: Type.Union([Type.String(), Type.Null()]) })
  }
})

const routeOptions: ContractOptions<typeof chat> = {
  validateOutgoing: true,
  userId: (request) => (request.query as { user?: string }).user ?? null,
  rooms: { authorize: (room) => room.startsWith('lobby') || room.startsWith('r') }
}

/** Stubs for every client type but the ones given. */
function chatHandlersWith (own: Partial<MessageHandlers<typeof chat>>): MessageHandlers<typeof chat> {
  const stubs = Object.fromEntries(Object.keys(chat.client).map((key) => [key, () => null]))
  return { ...stubs, ...own } as unknown as MessageHandlers<typeof chat>
}

function chatRoute (options: ContractOptions<typeof chat> = {}) {
  return contractHandler(chat, {
    async enter ({ room, meta }, ctx) {
      const joined = await ctx.rooms.join(room, { meta })
      return { room: joined.room, epoch: joined.epoch, offset: joined.offset }
    },
    exit: ({ room }, ctx) => ctx.rooms.leave(room),
    async say ({ rooms, text }, ctx) { await ctx.rooms.publish(rooms, 'message', { text, from: ctx.userId }) },
    async shout ({ room, text }, ctx) { await ctx.rooms.broadcast(room, 'message', { text, from: ctx.userId }) },
    async dm ({ user, text }, ctx) { await ctx.rooms.toUser(user, 'message', { text, from: ctx.userId }) },
    async all ({ text }, ctx) { await ctx.rooms.toRoute('message', { text, from: ctx.userId }) },
    async who ({ room }, ctx) {
      const entries = await ctx.rooms.presence(room)
      return { count: await ctx.rooms.presenceCount(room), users: entries.map((entry) => entry.userId).sort(), meta: entries.map((entry) => entry.meta) }
    },
    async past ({ room, since }, ctx) {
      const page = await ctx.rooms.history(room, { since })
      return page.messages.map((message) => message.data.text)
    },
    mine: (_data, ctx) => [...ctx.rooms.joined].filter((room) => !room.startsWith('$')).sort()
  }, { ...routeOptions, ...options })
}

async function app (t: Test, hub: RealtimeHubOptions = {}, options: ContractOptions<typeof chat> = {}, setup?: (app: FastifyInstance) => void) {
  return await build(t, (app) => {
    app.get('/chat', { realtime: true }, chatRoute(options))
    app.get('/other', { realtime: true }, chatRoute(options))
    setup?.(app)
  }, hub)
}

async function json (c: Client): Promise<Record<string, unknown>> {
  return JSON.parse(await c.text()) as Record<string, unknown>
}

let ids = 0
async function request (c: Client, type: string, data: unknown): Promise<Record<string, unknown>> {
  const id = ++ids
  c.ws.send(JSON.stringify({ type, data, id }))
  for (;;) {
    const message = await json(c)
    if (message.id === id) return message
  }
}

async function join (c: Client, room: string, extra: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
  return await request(c, '$join', { room, ...extra })
}

/** The typed test client of /chat (or /other) as `user`, over app.injectWS(); closed on teardown. */
async function member (t: Test, fastify: FastifyInstance, user?: string, path = '/chat') {
  const c = await connectTest(fastify, path, chat, user === undefined ? {} : { query: { user } })
  t.teardown(() => { c.close() })
  return c
}

t.test('members of a room get what is published to it, with room, epoch and increasing offsets', async (t) => {
  const { app: fastify } = await app(t)
  const a = await member(t, fastify, 'ada')
  const b = await member(t, fastify, 'bob')
  const { epoch, offset } = await a.join('lobby')
  t.equal(offset, 0)
  await b.join('lobby')
  a.send('say', { rooms: ['lobby'], text: 'one' })
  a.send('say', { rooms: ['lobby'], text: 'two' })
  for (const c of [a, b]) {
    t.same(await c.nextWithMeta('message'), { data: { text: 'one', from: 'ada' }, meta: { room: 'lobby', epoch, offset: 1 } })
    t.same(await c.nextWithMeta('message'), { data: { text: 'two', from: 'ada' }, meta: { room: 'lobby', epoch, offset: 2 } })
  }
})

t.test('broadcast leaves the sender out; publish to several rooms reaches each', async (t) => {
  const { app: fastify } = await app(t)
  const a = await member(t, fastify, 'ada')
  const b = await member(t, fastify, 'bob')
  await a.join('lobby')
  await b.join('lobby')
  await b.join('lobby2')
  a.send('shout', { room: 'lobby', text: 'not to me' })
  t.match(await b.nextWithMeta('message'), { data: { text: 'not to me' }, meta: { room: 'lobby' } })
  a.send('say', { rooms: ['lobby', 'lobby2'], text: 'both' })
  t.match(await a.nextWithMeta('message'), { data: { text: 'both' }, meta: { room: 'lobby' } }, 'the sender gets a publish but not its own broadcast')
  t.match(await b.nextWithMeta('message'), { data: { text: 'both' }, meta: { room: 'lobby' } })
  t.match(await b.nextWithMeta('message'), { data: { text: 'both' }, meta: { room: 'lobby2' } })
})

t.test('toUser reaches every connection of that user only; toRoute every connection of the route only', async (t) => {
  const { app: fastify } = await app(t)
  const [ada1, ada2, bob, elsewhere] = await Promise.all([member(t, fastify, 'ada'), member(t, fastify, 'ada'), member(t, fastify, 'bob'), member(t, fastify, 'ada', '/other')])
  bob.send('dm', { user: 'ada', text: 'psst' })
  for (const c of [ada1, ada2, elsewhere]) t.same(await c.next('message'), { text: 'psst', from: 'bob' })
  bob.send('all', { text: 'everyone here' })
  for (const c of [ada1, ada2, bob]) t.match(await c.next('message'), { text: 'everyone here' })
  elsewhere.send('all', { text: 'other route' })
  t.match(await elsewhere.next('message'), { text: 'other route' }, 'a connection of /other gets only its own route message')
  bob.send('dm', { user: 'bob', text: 'to myself' })
  t.match(await bob.next('message'), { text: 'to myself' }, 'bob did not get the /other route message before this')
})

t.test('the app.realtime decorator publishes from an HTTP route and reads presence and history', async (t) => {
  const { app: fastify } = await app(t, {}, {}, (app) => {
    app.post('/announce', async (request) => {
      await app.realtime.publish(chat, 'lobby', 'message', { text: (request.body as { text: string }).text, from: null })
      await app.realtime.toUser(chat, 'ada', 'message', { text: 'just you', from: null })
      await app.realtime.toRoute(chat, '/chat', 'message', { text: 'route wide', from: null })
      return { members: await app.realtime.presenceCount('lobby') }
    })
  })
  const a = await member(t, fastify, 'ada')
  await a.join('lobby', { meta: { color: 'red' } })
  const response = await fastify.inject({ method: 'POST', url: '/announce', payload: { text: 'hello all' } })
  t.same(response.json(), { members: 1 })
  t.match(await a.nextWithMeta('message'), { data: { text: 'hello all', from: null }, meta: { room: 'lobby', offset: 1 } })
  t.same(await a.collect('message', 2), [{ text: 'just you', from: null }, { text: 'route wide', from: null }])
  const page = await fastify.realtime.history('lobby')
  t.equal(page.messages.length, 1)
  t.match(await fastify.realtime.presence('lobby'), [{ userId: 'ada', meta: { color: 'red' }, connectionId: String, joinedAt: Number }])
  t.ok(fastify.realtime.stats.published >= 3)
  t.ok(fastify.realtime.broker instanceof MemoryBroker)
})

t.test('presence lists members with user, meta and join time, counts them, and forgets those who leave', async (t) => {
  const { app: fastify } = await app(t)
  const a = await member(t, fastify, 'ada')
  const b = await member(t, fastify)
  await a.join('lobby', { meta: { role: 'host' } })
  await b.request('enter', { room: 'lobby', meta: 'guest' })
  t.same(await a.request('who', { room: 'lobby' }), { count: 2, users: ['ada', null], meta: [{ role: 'host' }, 'guest'] })
  t.same(await b.request('exit', { room: 'lobby' }), true)
  t.same(await b.request('exit', { room: 'lobby' }), false, 'leaving twice is a no-op')
  t.same(await a.request('who', { room: 'lobby' }), { count: 1, users: ['ada'], meta: [{ role: 'host' }] })
  a.close()
  const check = await member(t, fastify)
  // The hub removes a closed connection on its own; wait for that through presence.
  for (let i = 0; i < 50 && (await check.request('who', { room: 'lobby' })).count > 0; i++);
  t.same(await check.request('who', { room: 'lobby' }), { count: 0, users: [], meta: [] })
})

t.test('join and leave notices reach the other members when the route asks for them', async (t) => {
  const { app: fastify } = await app(t, {}, { rooms: { authorize: () => true, notices: true } })
  const a = await member(t, fastify, 'ada')
  const b = await member(t, fastify, 'bob')
  await a.join('lobby')
  t.match(await a.nextEvent('presence'), { room: 'lobby', event: 'join', userId: 'ada' }, 'a member sees its own join')
  await b.join('lobby', { meta: { x: 1 } })
  t.match(await a.nextEvent('presence'), { room: 'lobby', event: 'join', userId: 'bob', meta: { x: 1 } })
  await b.leave('lobby')
  t.match(await a.nextEvent('presence'), { room: 'lobby', event: 'leave', userId: 'bob' })
  await b.join('lobby')
  t.match(await a.nextEvent('presence'), { event: 'join', userId: 'bob' })
  await b.drop()
  t.match(await a.nextEvent('presence'), { event: 'leave', userId: 'bob' }, 'a disconnect is a leave')
})

t.test('history answers since and limit, bounded by size', async (t) => {
  const { app: fastify } = await app(t, { history: { size: 3 } })
  const a = await member(t, fastify, 'ada')
  await a.join('lobby')
  for (const text of ['1', '2', '3', '4', '5']) a.send('say', { rooms: ['lobby'], text })
  await a.collect('message', 5)
  t.same(await a.request('past', { room: 'lobby', since: 0 }), ['3', '4', '5'])
  t.same(await a.request('past', { room: 'lobby', since: 4 }), ['5'])
  const page = await fastify.realtime.history('lobby', { since: 2, limit: 2 })
  t.same(page.messages.map((message) => message.offset), [3, 4])
  t.equal(page.position.offset, 5)
})

t.test('recovery: a reconnecting client gets every missed message in order, then live ones, and recovered: true', async (t) => {
  const { app: fastify } = await app(t)
  const a = await member(t, fastify, 'ada')
  const b = await member(t, fastify, 'bob')
  const { epoch } = await a.join('lobby')
  await b.join('lobby')
  b.send('say', { rooms: ['lobby'], text: 'seen' })
  await a.next('message')
  await a.drop()
  for (const text of ['missed 1', 'missed 2', 'missed 3']) b.send('say', { rooms: ['lobby'], text })
  await b.collect('message', 4)
  await a.resume()
  await a.nextEvent('join')
  t.match(await a.nextEvent('join'), { room: 'lobby', epoch, offset: 4, recovered: true })
  b.send('say', { rooms: ['lobby'], text: 'live' })
  t.same((await a.collect('message', 4)).map((message) => message.text), ['missed 1', 'missed 2', 'missed 3', 'live'])
})

t.test('recovery that is impossible says recovered: false and replays nothing', async (t) => {
  const { app: fastify } = await app(t, { history: { size: 2 } })
  const a = await member(t, fastify, 'ada')
  const { epoch } = await a.join('lobby')
  for (const text of ['1', '2', '3', '4']) a.send('say', { rooms: ['lobby'], text })
  await a.collect('message', 4)
  const joinFrom = async (from: { epoch: string, offset: number }) => {
    const c = await member(t, fastify, 'bob')
    return { c, joined: await c.join('lobby', { from }) }
  }
  const [b, c, d, e] = await Promise.all([{ epoch, offset: 1 }, { epoch: 'another-epoch', offset: 4 }, { epoch, offset: 99 }, { epoch, offset: 3 }].map(joinFrom)) as Array<Awaited<ReturnType<typeof joinFrom>>>
  t.match(b?.joined, { recovered: false, offset: 4 }, 'offset 2 aged out')
  t.match(c?.joined, { recovered: false, epoch, offset: 4 })
  t.match(d?.joined, { recovered: false }, 'an offset from the future')
  t.match(e?.joined, { recovered: true, offset: 4 })
  t.match(await e?.c.nextWithMeta('message'), { data: { text: '4' }, meta: { offset: 4 } }, 'recoverable when nothing aged out')
  a.send('say', { rooms: ['lobby'], text: 'live' })
  for (const late of [b, c, d]) t.match(await late?.c.nextWithMeta('message'), { data: { text: 'live' }, meta: { offset: 5 } }, 'no partial replay, only live messages')
})

const badJoins: Array<{ title: string, data: unknown, code: string }> = [
  { title: 'a room name that is too long', data: { room: 'r'.repeat(129) }, code: 'FST_RT_INVALID_ROOM' },
  { title: 'an empty room name', data: { room: '' }, code: 'FST_RT_INVALID_ROOM' },
  { title: 'a reserved room name', data: { room: '$user:ada' }, code: 'FST_RT_INVALID_ROOM' },
  { title: 'a room name with control characters', data: { room: 'r\u0000x' }, code: 'FST_RT_INVALID_ROOM' },
  { title: 'a room the route does not allow', data: { room: 'secret' }, code: 'FST_RT_JOIN_FORBIDDEN' },
  { title: 'a room that is not a string', data: { room: 42 }, code: 'FST_RT_INVALID_MESSAGE_DATA' },
  { title: 'a negative offset', data: { room: 'lobby', epoch: 'e', offset: -1 }, code: 'FST_RT_INVALID_MESSAGE_DATA' },
  { title: 'a fractional offset', data: { room: 'lobby', epoch: 'e', offset: 1.5 }, code: 'FST_RT_INVALID_MESSAGE_DATA' },
  { title: 'an offset that is a string', data: { room: 'lobby', epoch: 'e', offset: 'abc' }, code: 'FST_RT_INVALID_MESSAGE_DATA' },
  { title: 'an epoch without an offset', data: { room: 'lobby', epoch: 'e' }, code: 'FST_RT_INVALID_MESSAGE_DATA' },
  { title: 'an epoch that is too long', data: { room: 'lobby', epoch: 'e'.repeat(65), offset: 1 }, code: 'FST_RT_INVALID_MESSAGE_DATA' },
  { title: 'meta over 1 KiB', data: { room: 'lobby', meta: 'm'.repeat(1100) }, code: 'FST_RT_INVALID_MESSAGE_DATA' },
  { title: 'no data at all', data: null, code: 'FST_RT_INVALID_MESSAGE_DATA' }
]

for (const bad of badJoins) {
  t.test(`a $join with ${bad.title} gets ${bad.code}, and the connection can still join a room`, async (t) => {
    const { url } = await app(t)
    const a = await client(t, `${url}/chat?user=ada`)
    const reply = await request(a, '$join', bad.data)
    t.equal(reply.type, 'error')
    t.equal((reply.data as { code: string }).code, bad.code)
    t.notOk(JSON.stringify(reply).includes('m'.repeat(1100)), 'nothing large is echoed')
    t.match((await join(a, 'lobby')).data, { room: 'lobby', offset: 0 })
    t.same((await request(a, 'mine', null)).data, ['lobby'], 'the bad join left nothing behind')
  })
}

t.test('$leave of a bad room name is refused; $join and $leave are unknown types on a route without client rooms', async (t) => {
  const { url } = await app(t, {}, { rooms: undefined })
  const plain = await client(t, `${url}/chat`)
  t.match(await request(plain, '$join', { room: 'lobby' }), { type: 'error', data: { code: 'FST_RT_UNKNOWN_MESSAGE_TYPE' } })
  const { url: url2 } = await app(t)
  const c = await client(t, `${url2}/chat`)
  t.match(await request(c, '$leave', { room: '$route:/chat' }), { type: 'error', data: { code: 'FST_RT_INVALID_ROOM' } })
  t.match(await request(c, '$leave', {}), { type: 'error', data: { code: 'FST_RT_INVALID_MESSAGE_DATA' } })
  t.match(await request(c, '$leave', { room: 'lobby' }), { type: '$leave:reply', data: { room: 'lobby', left: false } })
})

t.test('a member that cannot keep up is closed with 4008 and counted; the others keep receiving', async (t) => {
  const { url, app: fastify } = await app(t, { slowConsumerBytes: 64 * 1024 })
  const slow = await client(t, `${url}/chat?user=slow`)
  const fast = await client(t, `${url}/chat?user=fast`)
  await join(slow, 'lobby')
  await join(fast, 'lobby')
  const socket = (slow.ws as unknown as { _socket: import('node:net').Socket })._socket
  socket.pause()
  const text = 'x'.repeat(64 * 1024)
  // Bounded: the kernel absorbs a few MiB before the server's buffer grows past the limit.
  let sent = 0
  const closed = slow.closed
  let settled = false
  void closed.then(() => { settled = true })
  // eslint-disable-next-line no-unmodified-loop-condition -- set when the socket closes
  while (!settled && sent < 400) {
    await fastify.realtime.publish(chat, 'lobby', 'message', { text, from: null })
    sent++
    await json(fast)
    if (fastify.realtime.stats.slowConsumerCloses > 0) socket.resume()
  }
  t.equal((await closed).code, SLOW_CONSUMER_CLOSE)
  t.equal(fastify.realtime.stats.slowConsumerCloses, 1)
  await fastify.realtime.publish(chat, 'lobby', 'message', { text: 'after', from: null })
  t.match(await json(fast), { data: { text: 'after' } }, 'the fast member still receives')
})

t.test('members are told when the broker lost messages of their room', async (t) => {
  let events: BrokerEvents | null = null
  class Leaky extends MemoryBroker {
    override attach (handlers: BrokerEvents): void {
      events = handlers
      super.attach(handlers)
    }
  }
  const { url, app: fastify } = await app(t, { broker: new Leaky() })
  const a = await client(t, `${url}/chat?user=ada`)
  await join(a, 'lobby')
  ;(events as unknown as BrokerEvents).lost('lobby', { epoch: 'new', offset: 0 })
  ;(events as unknown as BrokerEvents).lost('nobody-here', { epoch: 'new', offset: 0 })
  ;(events as unknown as BrokerEvents).lost('$route:/chat', { epoch: 'new', offset: 0 })
  t.same(await json(a), { type: '$lost', data: { room: 'lobby', epoch: 'new', offset: 0 } })
  t.equal(fastify.realtime.stats.lostNotices, 1)
})

t.test('a broker failure during a join fails that join only and leaves the member out of the room', async (t) => {
  class Failing extends MemoryPresence {
    override async add (): Promise<void> { throw new Error('broker down') }
  }
  const { app: fastify } = await app(t, { presence: new Failing() })
  const a = await member(t, fastify, 'ada')
  await t.rejects(a.join('lobby'), { code: 'FST_RT_CLIENT_SERVER_ERROR', data: { code: 'FST_RT_HANDLER_FAILED' } })
  t.same(await a.request('mine', null), [])
})

t.test('leaving and joining again at once keeps the subscription', async (t) => {
  const { url } = await app(t)
  const a = await client(t, `${url}/chat?user=ada`)
  await join(a, 'lobby')
  a.ws.send(JSON.stringify({ type: '$leave', data: { room: 'lobby' }, id: 'l' }))
  a.ws.send(JSON.stringify({ type: '$join', data: { room: 'lobby' }, id: 'j' }))
  const replies = new Set<unknown>()
  while (replies.size < 2) replies.add((await json(a)).id)
  a.ws.send(JSON.stringify({ type: 'say', data: { rooms: ['lobby'], text: 'still subscribed' } }))
  t.match(await json(a), { data: { text: 'still subscribed' } })
})

t.test('hub options and a bad broker are refused at registration', async (t) => {
  const Fastify = (await import('fastify')).default
  const realtime = (await import('../lib/index.js')).default
  for (const [options, message] of [
    [{ broker: {} }, /"broker"/],
    [{ maxRoomNameLength: 0 }, /"maxRoomNameLength".*got 0/],
    [{ slowConsumerBytes: 'lots' }, /"slowConsumerBytes"/]
  ] as const) {
    const app = Fastify()
    await t.rejects(async () => { await app.register(realtime, options as never) }, { code: 'FST_RT_INVALID_OPTION', message })
    await app.close().catch(() => {})
  }
  const small = defineContract({ client: { go: Type.Null() }, server: {} })
  t.throws(() => contractHandler(small, { go () {} }, { rooms: {} as never }), { code: 'FST_RT_INVALID_OPTION', message: /"rooms"/ })
  t.throws(() => contractHandler(small, { go () {} }, { userId: 'ada' as never }), { code: 'FST_RT_INVALID_OPTION', message: /"userId"/ })
  t.throws(() => defineContractChecked({ client: { $join: Type.Null() }, server: {} }), { code: 'FST_RT_INVALID_CONTRACT', message: /reserved/ })
  t.throws(() => defineContractChecked({ client: {}, server: { $lost: Type.Null() } }), { code: 'FST_RT_INVALID_CONTRACT', message: /reserved/ })
})

function defineContractChecked (definition: Parameters<typeof defineContract>[0]): unknown {
  return contractHandler(defineContract(definition), {} as never)
}

t.test('the broker is closed when the app closes', async (t) => {
  const closed = deferred()
  class Watched extends MemoryBroker {
    override async close (): Promise<void> { closed.resolve(); await super.close() }
  }
  const { app: fastify } = await app(t, { broker: new Watched() })
  await fastify.close()
  await closed.promise
  t.pass('closed')
})

t.test('joining a room twice answers with the current position and changes nothing', async (t) => {
  const { url } = await app(t)
  const a = await client(t, `${url}/chat?user=ada`)
  await join(a, 'lobby')
  a.ws.send(JSON.stringify({ type: 'say', data: { rooms: ['lobby'], text: 'one' } }))
  await json(a)
  t.match((await join(a, 'lobby')).data, { room: 'lobby', offset: 1 })
  t.same((await request(a, 'who', { room: 'lobby' })).data, { count: 1, users: ['ada'], meta: [null] })
})

t.test('the decorator publishes to several rooms with one call; the connection id is stable', async (t) => {
  const ids: string[] = []
  const { url, app: fastify } = await build(t, (app) => {
    const handlers = chatHandlersWith({
      async enter ({ room }, ctx) {
        ids.push(ctx.rooms.connectionId, ctx.rooms.connectionId)
        const joined = await ctx.rooms.join(room)
        return { room: joined.room, epoch: joined.epoch, offset: joined.offset }
      }
    })
    app.get('/chat', { realtime: true }, contractHandler(chat, handlers))
  })
  const a = await client(t, `${url}/chat`)
  await request(a, 'enter', { room: 'one' })
  await request(a, 'enter', { room: 'two' })
  await fastify.realtime.publish(chat, ['one', 'two'], 'message', { text: 'twice', from: null })
  t.match(await json(a), { room: 'one', data: { text: 'twice' } })
  t.match(await json(a), { room: 'two', data: { text: 'twice' } })
  t.equal(new Set(ids).size, 1)
})

t.test('a broker failure while leaving is logged, answered, and does not stop the disconnect', async (t) => {
  const warnings: string[] = []
  class Sticky extends MemoryPresence {
    override async remove (): Promise<void> { throw new Error('broker down') }
  }
  const { url } = await build(t, (app) => {
    app.get('/chat', { realtime: true }, chatRoute())
  }, { presence: new Sticky() }, { logger: { level: 'warn', stream: { write (line: string) { warnings.push(JSON.parse(line).msg as string) } } } })
  const a = await client(t, `${url}/chat?user=ada`)
  await join(a, 'lobby')
  await join(a, 'lobby2')
  t.match(await request(a, '$leave', { room: 'lobby' }), { type: 'error', data: { code: 'FST_RT_HANDLER_FAILED' } })
  a.ws.close()
  await a.closed
  const check = await client(t, `${url}/chat?user=bob`)
  for (let i = 0; i < 50 && !warnings.includes('realtime: leaving a room on disconnect failed'); i++) await request(check, 'mine', null)
  t.ok(warnings.includes('realtime: leaving a room on disconnect failed'))
})

t.test('a message published while a recovery is read is delivered once, after the replay', async (t) => {
  let sneak: (() => Promise<unknown>) | null = null
  let sneakPosition: (() => Promise<unknown>) | null = null
  class Busy extends MemoryBroker {
    override async position (room: string) {
      if (room === 'lobby') {
        const sneak = sneakPosition
        sneakPosition = null
        await sneak?.()
      }
      return await super.position(room)
    }

    override async history (room: string, query?: HistoryQuery) {
      // Another instance publishes between this member's subscription and the recovery read (a read since an offset).
      if (query?.since !== undefined) await sneak?.()
      return await super.history(room, query)
    }
  }
  const { url, app: fastify } = await app(t, { broker: new Busy() })
  const a = await client(t, `${url}/chat?user=ada`)
  const first = await join(a, 'lobby')
  sneak = () => fastify.realtime.publish(chat, 'lobby', 'message', { text: 'during recovery', from: null })
  const b = await client(t, `${url}/chat?user=bob`)
  const reply = await join(b, 'lobby', { epoch: (first.data as { epoch: string }).epoch, offset: 0 })
  t.match(reply.data, { recovered: true, offset: 1 })
  t.match(await json(b), { data: { text: 'during recovery' }, offset: 1 })
  sneak = null
  await fastify.realtime.publish(chat, 'lobby', 'message', { text: 'next', from: null })
  t.match(await json(b), { data: { text: 'next' }, offset: 2 }, 'the buffered copy was not delivered a second time')
  sneakPosition = () => fastify.realtime.publish(chat, 'lobby', 'message', { text: 'during a plain join', from: null })
  const c = await client(t, `${url}/chat?user=cy`)
  const plain = await join(c, 'lobby')
  t.match(plain.data, { offset: 3 }, 'the reply counts the message published during the join')
  await fastify.realtime.publish(chat, 'lobby', 'message', { text: 'after the join', from: null })
  t.match(await json(c), { data: { text: 'after the join' }, offset: 4 }, 'offset 3 is in the past the reply reported, so it is not sent')
})

t.test('live-only messages arriving during a recovery are delivered after the replay', async (t) => {
  let sneak: (() => Promise<unknown>) | null = null
  class Busy extends MemoryBroker {
    override async history (room: string, query?: HistoryQuery) {
      if (query?.since !== undefined) await sneak?.()
      return await super.history(room, query)
    }
  }
  const { url, app: fastify } = await app(t, { broker: new Busy() })
  const a = await client(t, `${url}/chat?user=ada`)
  const first = await join(a, 'lobby')
  await fastify.realtime.publish(chat, 'lobby', 'message', { text: 'stored', from: null })
  await json(a)
  sneak = () => fastify.realtime.broker.publish('lobby', JSON.stringify({ type: 'message', data: { text: 'live only', from: null } }), { history: false })
  const b = await client(t, `${url}/chat?user=bob`)
  t.match((await join(b, 'lobby', { epoch: (first.data as { epoch: string }).epoch, offset: 0 })).data, { recovered: true, offset: 1 })
  t.match(await json(b), { data: { text: 'stored' }, offset: 1 }, 'the replay first')
  t.match(await json(b), { data: { text: 'live only' }, offset: 1 }, 'then the live-only message, which took no offset')
})

t.test('join and leave notices take no offsets, so recovery still works with notices on', async (t) => {
  const { app: fastify } = await app(t, {}, { rooms: { authorize: () => true, notices: true } })
  const a = await member(t, fastify, 'ada')
  const b = await member(t, fastify, 'bob')
  await a.join('lobby')
  await b.join('lobby')
  b.send('say', { rooms: ['lobby'], text: 'seen' })
  t.match(await a.nextWithMeta('message'), { meta: { offset: 1 } }, 'two join notices did not use offsets')
  await a.drop()
  b.send('say', { rooms: ['lobby'], text: 'missed' })
  await b.collect('message', 2)
  await a.resume()
  await a.nextEvent('join')
  t.match(await a.nextEvent('join'), { recovered: true, offset: 2 })
  t.match(await a.nextWithMeta('message'), { data: { text: 'missed' }, meta: { offset: 2 } })
})

t.test('a leave that overtakes a join leaves the member out', async (t) => {
  const { url } = await app(t)
  const a = await client(t, `${url}/chat?user=ada`)
  a.ws.send(JSON.stringify({ type: '$join', data: { room: 'lobby' }, id: 'j' }))
  a.ws.send(JSON.stringify({ type: '$leave', data: { room: 'lobby' }, id: 'l' }))
  const replies = new Map<unknown, unknown>()
  while (replies.size < 2) {
    const message = await json(a)
    replies.set(message.id, message.data)
  }
  t.same(replies.get('l'), { room: 'lobby', left: true })
  t.same((await request(a, 'mine', null)).data, [])
})

t.test('a message for a room with no local member, or for a member already closed, goes nowhere', async (t) => {
  let events: BrokerEvents | null = null
  class Open extends MemoryBroker {
    override attach (handlers: BrokerEvents): void { events = handlers; super.attach(handlers) }
  }
  const closing = deferred()
  const { url, app: fastify } = await build(t, (app) => {
    app.get('/chat', { realtime: true }, contractHandler(chat, chatHandlersWith({
      async enter ({ room }, ctx) {
        const joined = await ctx.rooms.join(room)
        return { room: joined.room, epoch: joined.epoch, offset: joined.offset }
      },
      // Still a member here: the hub takes the connection out of its rooms after this handler.
      async close () {
        await app.realtime.publish(chat, 'lobby', 'message', { text: 'to a closed member', from: null })
        closing.resolve()
      }
    })))
  }, { broker: new Open() })
  ;(events as unknown as BrokerEvents).message({ room: 'empty', epoch: 'e', offset: 1, time: Date.now(), text: '{}' })
  const a = await client(t, `${url}/chat`)
  await request(a, 'enter', { room: 'lobby' })
  const delivered = fastify.realtime.stats.delivered
  a.ws.close()
  await closing.promise
  t.equal(fastify.realtime.stats.delivered, delivered, 'nothing was sent to the closed connection')
})

t.test('notices can be picked per room, and a server-side announced join is announced on disconnect too', async (t) => {
  const { app: fastify } = await app(t, {}, { rooms: { authorize: () => true, notices: (room) => room.startsWith('loud') } })
  const watcher = await member(t, fastify, 'watcher')
  await watcher.join('loud')
  t.match(await watcher.nextEvent('presence'), { event: 'join', room: 'loud', userId: 'watcher' })
  await watcher.join('quiet')
  const guest = await member(t, fastify, 'guest')
  await guest.join('quiet')
  await guest.join('loud')
  t.match(await watcher.nextEvent('presence'), { event: 'join', room: 'loud', userId: 'guest' }, 'only the loud room announced')
  guest.close()
  t.match(await watcher.nextEvent('presence'), { event: 'leave', room: 'loud', userId: 'guest' }, 'and only its leave')
  t.same(await watcher.request('mine', null), ['loud', 'quiet'])
  await t.rejects(watcher.nextEvent('presence', { timeoutMs: 0 }), { code: 'FST_RT_TEST_TIMEOUT' }, 'no notice from the quiet room came before that reply')
})

t.test('a background broker error is logged as a warning and nothing else breaks', async (t) => {
  let events: BrokerEvents | null = null
  class Noisy extends MemoryBroker {
    override attach (handlers: BrokerEvents): void { events = handlers; super.attach(handlers) }
  }
  const lines: Array<Record<string, unknown>> = []
  const { url } = await build(t, (app) => {
    app.get('/chat', { realtime: true }, chatRoute())
  }, { broker: new Noisy() }, { logger: { level: 'warn', stream: { write (line: string) { lines.push(JSON.parse(line)) } } } })
  events!.error?.(new Error('reconnecting'))
  t.match(lines, [{ msg: 'realtime: broker error (it retries by itself)', err: { message: 'reconnecting' } }])
  const a = await client(t, `${url}/chat?user=ada`)
  t.match((await join(a, 'lobby')).data, { room: 'lobby' })
})
