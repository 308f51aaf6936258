import t from 'tap'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { contractHandler, defineContract, requireUser, tokenAuth } from '../lib/index.js'
import { build, client, type Client } from './support/helpers.js'

const chat = defineContract({
  client: {
    whoami: { data: Type.Null(), reply: Type.Object({ user: Type.String(), page: Type.Integer() }) },
    say: Type.Object({ room: Type.String(), text: Type.String() }),
    past: { data: Type.Object({ room: Type.String() }), reply: Type.Array(Type.Object({ text: Type.String(), offset: Type.Integer(), time: Type.Integer() })) },
    where: { data: Type.Object({ room: Type.String() }), reply: Type.Integer() },
    who: { data: Type.Object({ room: Type.String() }), reply: Type.Array(Type.String()) }
  },
  server: { message: Type.Object({ text: Type.String() }) },
  presence: Type.Object({ name: Type.String({ maxLength: 8 }) })
})

const ping = defineContract({ client: { hi: Type.Null() }, server: {} })
const Query = Type.Object({ page: Type.Integer() })

async function json (c: Client): Promise<Record<string, unknown>> {
  return JSON.parse(await c.text()) as Record<string, unknown>
}

let ids = 0
async function ask (c: Client, type: string, data: unknown): Promise<Record<string, unknown>> {
  const id = ++ids
  c.ws.send(JSON.stringify({ type, data, id }))
  for (;;) {
    const message = await json(c)
    if (message.id === id) return message
  }
}

async function app (t: Parameters<typeof build>[0]) {
  return await build(t, (app) => {
    app.withTypeProvider<TypeBoxTypeProvider>().get('/chat', {
      realtime: true,
      schema: { querystring: Query },
      onRequest: tokenAuth({ verify: (token) => token === 'ada-token' ? 'ada' : null })
    }, contractHandler(chat, {
      // The querystring was coerced by the route's schema: page is a number here.
      whoami: (_data, ctx) => ({ user: ctx.userId, page: ctx.request.query.page }),
      async say ({ room, text }, ctx) { await ctx.rooms.publish(room, 'message', { text }) },
      async past ({ room }, ctx) {
        const page = await ctx.rooms.history(room)
        return page.messages.map((message) => ({ text: message.data.text, offset: message.offset, time: message.time }))
      },
      async where ({ room }, ctx) { return (await ctx.rooms.position(room)).offset },
      async who ({ room }, ctx) { return (await ctx.rooms.presence(room)).map((entry) => entry.meta.name) }
    }, { userId: requireUser, rooms: { authorize: () => true } }))
    // No tokenAuth: requireUser finds no user.
    app.get('/open', { realtime: true }, contractHandler(ping, { hi: () => null }, { userId: requireUser }))
  })
}

t.test('requireUser gives tokenAuth\'s user; the route schema\'s coerced query reaches ctx.request', async (t) => {
  const { url } = await app(t)
  const c = await client(t, `${url}/chat?page=3&token=ada-token`)
  t.match(await ask(c, 'whoami', null), { type: 'whoami:reply', data: { user: 'ada', page: 3 } })
})

t.test('requireUser on a route without tokenAuth closes the connection with 1011', async (t) => {
  const { url } = await app(t)
  const c = await client(t, `${url}/open?page=1`)
  t.match(await c.closed, { code: 1011 })
  t.throws(() => requireUser({ realtimeUser: null } as never), { code: 'FST_RT_UNAUTHORIZED' })
})

t.test('a $join meta is checked against the contract\'s presence schema; presence returns it', async (t) => {
  const { url } = await app(t)
  const c = await client(t, `${url}/chat?page=1&token=ada-token`)
  t.match(await ask(c, '$join', { room: 'lobby', meta: { name: 42 } }), {
    type: 'error', data: { code: 'FST_RT_INVALID_MESSAGE_DATA', errors: [{ path: '/meta/name' }] }
  })
  t.match(await ask(c, '$join', { room: 'lobby', meta: { name: 'much too long' } }), { type: 'error', data: { code: 'FST_RT_INVALID_MESSAGE_DATA' } })
  t.match(await ask(c, '$join', { room: 'lobby' }), { type: 'error', data: { code: 'FST_RT_INVALID_MESSAGE_DATA', errors: [{ path: '/meta' }] } }, 'a required meta must be sent')
  t.match(await ask(c, '$join', { room: 'lobby', meta: { name: 'ada' } }), { type: '$join:reply', data: { room: 'lobby' } })
  t.match(await ask(c, 'who', { room: 'lobby' }), { data: ['ada'] })
})

t.test('history in a handler is decoded: typed data, offset and publish time', async (t) => {
  const { url } = await app(t)
  const c = await client(t, `${url}/chat?page=1&token=ada-token`)
  const before = Date.now()
  c.ws.send(JSON.stringify({ type: 'say', data: { room: 'h', text: 'one' } }))
  const reply = await ask(c, 'past', { room: 'h' })
  const [first] = reply.data as Array<{ text: string, offset: number, time: number }>
  t.match(first, { text: 'one', offset: 1 })
  t.match(await ask(c, 'where', { room: 'h' }), { data: 1 }, 'ctx.rooms.position reads the position alone')
  t.ok(first !== undefined && first.time >= before && first.time <= Date.now())
})

t.test('a presence schema that is not TypeBox is refused at registration', async (t) => {
  const bad = defineContract({ client: {}, server: {}, presence: { type: 'object' } as never })
  t.throws(() => contractHandler(bad, {}), { code: 'FST_RT_INVALID_CONTRACT', message: /presence must be a TypeBox schema/ })
})

t.test('app.realtime.history with a contract decodes; without one it gives the stored texts; bad input is refused', async (t) => {
  const { app: server } = await app(t)
  await server.realtime.publish(chat, 'news', 'message', { text: 'hi' })
  const decoded = await server.realtime.history(chat, 'news')
  t.match(decoded.messages, [{ type: 'message', data: { text: 'hi' }, room: 'news', offset: 1, time: Number }])
  t.equal(decoded.position.offset, 1)
  const raw = await server.realtime.history('news')
  t.match(raw.messages, [{ text: /"text":"hi"/ }])
  await t.rejects(server.realtime.history(chat, 42 as never), { code: 'FST_RT_INVALID_ROOM' })
  await t.rejects(server.realtime.history(7 as never, 'news'), { code: 'FST_RT_INVALID_CONTRACT' })
})
