import t, { type Test } from 'tap'
import { Type } from '@sinclair/typebox'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import WebSocket, { WebSocketServer } from 'ws'
import { contractHandler, defineContract, MemoryBroker, MemoryPresence, type MessageHandlers } from '../lib/index.js'
import { RealtimeClient } from '../lib/client/index.js'
import { defaultHubSettings, Hub } from '../lib/hub/hub.js'
import { Member, SharedMessage, type MemberLink } from '../lib/hub/member.js'
import { isVolatile, volatileBody } from '../lib/hub/volatile.js'
import { createMetrics } from '../lib/metrics.js'
import { build, client, type Client } from './support/helpers.js'
import { redisUnavailable, redisUrl } from './support/redis-server.js'

const typing = defineContract({
  client: {
    enter: { data: Type.Object({ room: Type.String() }), reply: Type.Integer() },
    typing: Type.Object({ room: Type.String() }),
    shout: Type.Object({ room: Type.String() }),
    poke: Type.Object({ user: Type.String() }),
    everyone: Type.Null(),
    bad: Type.Object({ room: Type.String(), options: Type.Unknown() }),
    burst: Type.Object({ room: Type.String() })
  },
  server: { typing: Type.Object({ user: Type.String() }), big: Type.String() }
})

async function json (c: Client): Promise<Record<string, unknown>> {
  return JSON.parse(await c.text()) as Record<string, unknown>
}

/** Handlers that only join: for apps whose messages come from app.realtime. */
const joinOnly: MessageHandlers<typeof typing> = {
  async enter ({ room }, ctx) { return (await ctx.rooms.join(room)).offset },
  typing () {},
  shout () {},
  poke () {},
  everyone () {},
  bad () {},
  burst () {}
}

async function app (t: Test) {
  return await build(t, (app) => {
    app.get('/chat', { realtime: true }, contractHandler(typing, {
      async enter ({ room }, ctx) { return (await ctx.rooms.join(room)).offset },
      async typing ({ room }, ctx) { await ctx.rooms.publish(room, 'typing', { user: ctx.userId ?? '?' }, { volatile: true }) },
      async shout ({ room }, ctx) { await ctx.rooms.broadcast(room, 'typing', { user: ctx.userId ?? '?' }, { volatile: true }) },
      async poke ({ user }, ctx) { await ctx.rooms.toUser(user, 'typing', { user: ctx.userId ?? '?' }, { volatile: true }) },
      async everyone (_data, ctx) { await ctx.rooms.toRoute('typing', { user: ctx.userId ?? '?' }, { volatile: true }) },
      async bad ({ room, options }, ctx) { await ctx.rooms.publish(room, 'typing', { user: 'x' }, options as never) },
      async burst ({ room }, ctx) {
        // In one turn: a stored message over writeLimit, then a volatile one, which cannot go out now.
        const big = ctx.rooms.publish(room, 'big', 'x'.repeat(100_000))
        await ctx.rooms.publish(room, 'typing', { user: 'late' }, { volatile: true })
        await big
      }
    }, { userId: (request) => (request.query as { user?: string }).user ?? null, rooms: { authorize: () => true }, validateOutgoing: true }))
  })
}

async function ask (c: Client, type: string, data: unknown): Promise<Record<string, unknown>> {
  const id = Math.random().toString(36).slice(2)
  c.ws.send(JSON.stringify({ type, data, id }))
  for (;;) {
    const message = await json(c)
    if (message.id === id) return message
  }
}

t.test('a volatile publish reaches the members marked volatile, takes no offset and is not kept', async (t) => {
  const { url, app: server } = await app(t)
  const a = await client(t, `${url}/chat?user=ada`)
  const b = await client(t, `${url}/chat?user=bob`)
  await ask(a, 'enter', { room: 'r' })
  await ask(b, 'enter', { room: 'r' })
  a.ws.send(JSON.stringify({ type: 'typing', data: { room: 'r' } }))
  for (const c of [a, b]) t.match(await json(c), { type: 'typing', data: { user: 'ada' }, volatile: true, room: 'r', offset: 0 })
  const page = await server.realtime.history('r')
  t.equal(page.position.offset, 0, 'no offset was taken')
  t.equal(page.messages.length, 0, 'nothing was kept')
  // broadcast leaves the sender out; toUser and toRoute reach their connections.
  a.ws.send(JSON.stringify({ type: 'shout', data: { room: 'r' } }))
  t.match(await json(b), { type: 'typing', volatile: true })
  a.ws.send(JSON.stringify({ type: 'poke', data: { user: 'bob' } }))
  t.match(await json(b), { type: 'typing', data: { user: 'ada' }, volatile: true })
  a.ws.send(JSON.stringify({ type: 'everyone', data: null }))
  t.match(await json(a), { type: 'typing', volatile: true }, 'the sender had no broadcast to see: its first message is toRoute\'s')
  t.match(await json(b), { type: 'typing', volatile: true })
})

t.test('app.realtime sends volatile too; every send checks its options and its user', async (t) => {
  const { url, app: server } = await app(t)
  const a = await client(t, `${url}/chat?user=ada`)
  await ask(a, 'enter', { room: 'r' })
  await server.realtime.publish(typing, 'r', 'typing', { user: 'srv' }, { volatile: true })
  t.match(await json(a), { data: { user: 'srv' }, volatile: true, offset: 0 })
  await server.realtime.toUser(typing, 'ada', 'typing', { user: 'dm' }, { volatile: true })
  t.match(await json(a), { data: { user: 'dm' }, volatile: true })
  await server.realtime.publish(typing, 'r', 'typing', { user: 'plain' }, {})
  t.match(await json(a), { data: { user: 'plain' }, offset: 1 }, '{} is a plain, stored send')
  await server.realtime.toRoute(typing, '/chat', 'typing', { user: 'all' }, { volatile: false })
  const plain = await json(a)
  t.match(plain, { data: { user: 'all' } })
  t.notOk('volatile' in plain, 'volatile: false sends a plain message')
  await t.rejects(server.realtime.publish(typing, 'r', 'typing', { user: 'x' }, { volatile: 'yes' } as never), { code: 'FST_RT_INVALID_OPTION', message: /volatile/ })
  await t.rejects(server.realtime.publish(typing, 'r', 'typing', { user: 'x' }, { later: true } as never), { code: 'FST_RT_INVALID_OPTION', message: /later/ })
  await t.rejects(server.realtime.toRoute(typing, '/chat', 'typing', { user: 'x' }, 'volatile' as never), { code: 'FST_RT_INVALID_OPTION' })
  await t.rejects(server.realtime.toUser(typing, '', 'typing', { user: 'x' }), { code: 'FST_RT_INVALID_USER_ID' })
  await t.rejects(server.realtime.toUser(typing, 42 as never, 'typing', { user: 'x' }), { code: 'FST_RT_INVALID_USER_ID' })
  await t.rejects(server.realtime.toUser(typing, 'u'.repeat(1025), 'typing', { user: 'x' }), { code: 'FST_RT_INVALID_USER_ID' })
  await t.rejects(server.realtime.publish(typing, '$r', 'typing', { user: 'x' }, { volatile: true }), { code: 'FST_RT_INVALID_ROOM' })
  await t.rejects(server.realtime.publish(typing, 'r', 'nope' as never, { user: 'x' } as never, { volatile: true }), { code: 'FST_RT_UNKNOWN_OUTGOING_TYPE' })
  // A handler's bad options fail its message like any handler error; the connection stays.
  t.match(await ask(a, 'bad', { room: 'r', options: { volatile: 1 } }), { type: 'error', data: { code: 'FST_RT_HANDLER_FAILED' } })
  t.match(await ask(a, 'enter', { room: 'r2' }), { data: 0 })
})

t.test('a real connection over its write limit in this turn drops the volatile message that follows', async (t) => {
  const { url, app: server } = await app(t)
  const a = await client(t, `${url}/chat?user=ada`)
  await ask(a, 'enter', { room: 'b' })
  a.ws.send(JSON.stringify({ type: 'burst', data: { room: 'b' } }))
  t.match(await json(a), { type: 'big', offset: 1 })
  await server.realtime.publish(typing, 'b', 'typing', { user: 'after' }, { volatile: true })
  t.match(await json(a), { type: 'typing', data: { user: 'after' } }, 'the next message is the later volatile one: the one in the burst was dropped')
  t.equal(server.realtime.stats.volatileDropped, 1)
})

t.test('a volatile message to a compressing connection goes out through the usual path when it can', async (t) => {
  const { url, app: server } = await build(t, (app) => {
    app.get('/z', { realtime: { compress: true } }, contractHandler(typing, joinOnly))
  })
  const a = await client(t, `${url}/z`)
  await ask(a, 'enter', { room: 'z' })
  await server.realtime.publish(typing, 'z', 'typing', { user: 'squeezed' }, { volatile: true })
  t.match(await json(a), { data: { user: 'squeezed' }, volatile: true })
})

/** A member link whose backlog and writes the test decides. */
function link (backlog: number, writable = true): MemberLink & { sent: string[] } {
  const sent: string[] = []
  return {
    closed: false,
    backlog,
    request: { log: { error () {} } as never },
    sendShared (message: SharedMessage, droppable?: boolean) {
      if (droppable === true && !writable) return false
      sent.push(message.text)
      return true
    },
    close: async () => {},
    sent
  }
}

t.test('a volatile message is dropped for a member with anything unsent, or that cannot write now; never closed as slow', async (t) => {
  const hub = new Hub(new MemoryBroker(), defaultHubSettings, { info () {}, warn () {} } as never, createMetrics(), new MemoryPresence())
  const fast = link(0)
  const behind = link(10)
  const full = link(0, false)
  for (const l of [fast, behind, full]) await hub.join(new Member(l, null), 'r')
  await hub.publishAll(['r'], '{"type":"t","data":1}', { volatile: true })
  t.equal(fast.sent.length, 1)
  t.equal(behind.sent.length, 0)
  t.equal(full.sent.length, 0)
  t.equal(hub.stats.volatileDropped, 2)
  await hub.publishAll(['r'], '{"type":"t","data":2}')
  t.equal(behind.sent.length, 1, 'a stored message still goes to a member below the slow-consumer bound')
  t.equal(hub.stats.slowConsumerCloses, 0)
})

t.test('only the hub\'s own mark makes a message volatile, not data that looks like it', async (t) => {
  const base = { room: 'r', epoch: 'e', offset: 3, time: 0 }
  const mark = (body: string) => `${body.slice(0, -1)},"room":"r","epoch":"e","offset":3}`
  t.ok(isVolatile({ ...base, history: false, text: mark(volatileBody('{"type":"t","data":1}')) }))
  t.notOk(isVolatile({ ...base, history: false, text: mark('{"type":"t","data":{"volatile":true}}') }), 'a key in data')
  t.notOk(isVolatile({ ...base, text: mark(volatileBody('{"type":"t","data":1}')) }), 'a stored message never is')
})

async function scripted (t: Test) {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  await once(server, 'listening')
  const received: unknown[] = []
  let arrived = (): void => {}
  server.on('connection', (socket) => { socket.on('message', (data) => { received.push(JSON.parse(String(data))); arrived() }) })
  /** Resolves once `count` messages have arrived. */
  const receivedCount = async (count: number): Promise<void> => {
    while (received.length < count) await new Promise<void>((resolve) => { arrived = resolve })
  }
  t.teardown(async () => {
    for (const socket of server.clients) socket.terminate()
    await new Promise((resolve) => server.close(resolve))
  })
  return { url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`, received, receivedCount }
}

t.test('the client never queues a volatile send: false while not open or with unsent bytes, true once written', async (t) => {
  const { url, received, receivedCount } = await scripted(t)
  const c = new RealtimeClient<typeof typing>({ url, WebSocket, autoConnect: false })
  t.teardown(() => { c.close() })
  t.equal(c.send('typing', { room: 'r' }, { volatile: true }), false, 'dropped before connecting')
  t.equal(c.send('typing', { room: 'queued' }), false, 'a plain send is queued')
  const open = new Promise<void>((resolve) => { c.onState((state) => { if (state === 'open') resolve() }) })
  c.connect()
  await open
  t.equal(c.send('typing', { room: 'now' }, { volatile: true }), true)
  t.equal(c.send('typing', { room: 'plain' }), true)
  // The scripted server receives in order: the queued send, the volatile one, the plain one; never the dropped one.
  await receivedCount(3)
  t.same(received, [{ type: 'typing', data: { room: 'queued' } }, { type: 'typing', data: { room: 'now' } }, { type: 'typing', data: { room: 'plain' } }])
  t.throws(() => c.send('typing', { room: 'r' }, { volatile: 'yes' } as never), { code: 'FST_RT_CLIENT_INVALID_OPTION' })
  t.throws(() => c.send('typing', { room: 'r' }, { soon: true } as never), { code: 'FST_RT_CLIENT_INVALID_OPTION' })
  c.close()
  t.throws(() => c.send('typing', { room: 'r' }, { volatile: true }), { code: 'FST_RT_CLIENT_CLOSED' })
})

t.test('a client socket with unsent bytes drops a volatile send', async (t) => {
  const sent: string[] = []
  class Buffered {
    static instance: Buffered | null = null
    readyState = 0
    bufferedAmount = 5
    onopen: ((event: unknown) => void) | null = null
    onmessage = null
    onclose = null
    onerror = null
    constructor () { Buffered.instance = this }
    send (data: string) { sent.push(data) }
    close () {}
  }
  const c = new RealtimeClient<typeof typing>({ url: 'ws://unused', WebSocket: Buffered })
  t.teardown(() => { c.close() })
  const open = new Promise<void>((resolve) => { c.onState((state) => { if (state === 'open') resolve() }) })
  const socket = Buffered.instance as Buffered
  socket.readyState = 1
  socket.onopen?.({})
  await open
  t.equal(c.send('typing', { room: 'r' }, { volatile: true }), false)
  socket.bufferedAmount = 0
  t.equal(c.send('typing', { room: 'r' }, { volatile: true }), true)
  t.equal(c.send('typing', { room: 'r' }, {}), true, 'no options of note: a plain send')
  delete (socket as { bufferedAmount?: number }).bufferedAmount
  t.equal(c.send('typing', { room: 'r' }, { volatile: true }), true, 'a socket that does not report unsent bytes sends')
  t.equal(sent.length, 3)
})

t.test('a volatile message crosses instances on Redis, unstored and still marked', { skip: redisUnavailable() ?? false }, async (t) => {
  const { RedisBroker } = await import('../lib/hub/redis/index.js')
  const redis = await redisUrl(t)
  const keyPrefix = `volatile-${Math.random().toString(36).slice(2)}:`
  const one = await build(t, () => {}, { broker: new RedisBroker({ client: redis, keyPrefix }) })
  const two = await build(t, (app) => {
    app.get('/chat', { realtime: true }, contractHandler(typing, joinOnly, { rooms: { authorize: () => true } }))
  }, { broker: new RedisBroker({ client: redis, keyPrefix }) })
  const member = await client(t, `${two.url}/chat`)
  await ask(member, 'enter', { room: 'shared' })
  await one.app.realtime.publish(typing, 'shared', 'typing', { user: 'far' }, { volatile: true })
  t.match(await json(member), { type: 'typing', data: { user: 'far' }, volatile: true, offset: 0 })
  t.equal((await two.app.realtime.history('shared')).messages.length, 0)
})
