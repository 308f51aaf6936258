import t, { type Test } from 'tap'
import { Type } from '@sinclair/typebox'
import WebSocket from 'ws'
import { CloseCode, contractHandler, defineContract, shouldReconnect } from '../lib/index.js'
import { RealtimeClient, type CloseInfo } from '../lib/client/index.js'
import { build, client, type Client } from './support/helpers.js'
import { redisUnavailable, redisUrl } from './support/redis-server.js'

const chat = defineContract({
  client: { enter: { data: Type.Object({ room: Type.String() }), reply: Type.String() } },
  server: {}
})

function route () {
  return contractHandler(chat, {
    async enter ({ room }, ctx) { await ctx.rooms.join(room); return ctx.rooms.connectionId }
  }, { userId: (request) => (request.query as { user?: string }).user ?? null })
}

async function app (t: Test, broker?: Parameters<typeof build>[2]) {
  return await build(t, (app) => { app.get('/chat', { realtime: true }, route()) }, broker)
}

async function enter (c: Client, room: string): Promise<string> {
  const id = Math.random().toString(36).slice(2)
  c.ws.send(JSON.stringify({ type: 'enter', data: { room }, id }))
  for (;;) {
    const message = JSON.parse(await c.text()) as { id?: string, data: string }
    if (message.id === id) return message.data
  }
}

t.test('connections lists this instance\'s connections, all or by room, user or id', async (t) => {
  const { url, app: server } = await app(t)
  const ada = await client(t, `${url}/chat?user=ada`)
  const bob = await client(t, `${url}/chat?user=bob`)
  const adaId = await enter(ada, 'lobby')
  await enter(bob, 'other')
  t.equal(server.realtime.connections().length, 2)
  t.same(server.realtime.connections({ room: 'lobby' }), [{ connectionId: adaId, userId: 'ada', rooms: ['lobby'] }])
  t.same(server.realtime.connections({ userId: 'bob' }).map((info) => info.rooms), [['other']])
  t.same(server.realtime.connections({ connectionId: adaId }).map((info) => info.userId), ['ada'])
  t.same(server.realtime.connections({ userId: 'nobody' }), [])
  t.same(server.realtime.connections({ room: 'empty' }), [])
})

t.test('disconnect closes every connection of a user with 4500 by default; the others stay', async (t) => {
  const { url, app: server } = await app(t)
  const ada1 = await client(t, `${url}/chat?user=ada`)
  const ada2 = await client(t, `${url}/chat?user=ada`)
  const bob = await client(t, `${url}/chat?user=bob`)
  await server.realtime.disconnect({ userId: 'ada' })
  t.match(await ada1.closed, { code: CloseCode.DISCONNECTED, reason: 'Disconnected' })
  t.match(await ada2.closed, { code: 4500 })
  t.equal(await enter(bob, 'r').then((id) => typeof id), 'string', 'bob is still served')
  t.equal(server.realtime.connections({ userId: 'ada' }).length, 0)
})

t.test('disconnect by connection id and by room, with a code and a reason', async (t) => {
  const { url, app: server } = await app(t)
  const a = await client(t, `${url}/chat?user=a`)
  const b = await client(t, `${url}/chat?user=b`)
  const c = await client(t, `${url}/chat`)
  const aId = await enter(a, 'r')
  await enter(b, 'r')
  await enter(c, 'elsewhere')
  await server.realtime.disconnect({ connectionId: aId }, 4000, 'token expired')
  t.match(await a.closed, { code: 4000, reason: 'token expired' })
  await server.realtime.disconnect({ room: 'r' }, 1000, 'room closed')
  t.match(await b.closed, { code: 1000, reason: 'room closed' })
  t.equal(server.realtime.connections().length, 1, 'the member of another room stays')
  await server.realtime.disconnect({ userId: 'nobody' })
  await server.realtime.disconnect({ connectionId: 'no-such-id' })
  await server.realtime.disconnect({ room: 'nobody-here' })
  t.equal(server.realtime.connections().length, 1, 'unknown ids and empty rooms close nothing')
})

t.test('bad disconnect targets, codes and reasons are refused with their codes', async (t) => {
  const { app: server } = await app(t)
  const bad: Array<[unknown[], string]> = [
    [[{}], 'FST_RT_INVALID_DISCONNECT'],
    [[{ userId: 'a', room: 'b' }], 'FST_RT_INVALID_DISCONNECT'],
    [[{ user: 'a' }], 'FST_RT_INVALID_DISCONNECT'],
    [[null], 'FST_RT_INVALID_DISCONNECT'],
    [['ada'], 'FST_RT_INVALID_DISCONNECT'],
    [[{ connectionId: '' }], 'FST_RT_INVALID_DISCONNECT'],
    [[{ connectionId: 'x'.repeat(129) }], 'FST_RT_INVALID_DISCONNECT'],
    [[{ userId: 'a' }, 1005], 'FST_RT_INVALID_DISCONNECT'],
    [[{ userId: 'a' }, 999], 'FST_RT_INVALID_DISCONNECT'],
    [[{ userId: 'a' }, 5000], 'FST_RT_INVALID_DISCONNECT'],
    [[{ userId: 'a' }, '4000'], 'FST_RT_INVALID_DISCONNECT'],
    [[{ userId: 'a' }, 4000, 'é'.repeat(62)], 'FST_RT_INVALID_DISCONNECT'],
    [[{ userId: 'a' }, 4000, 42], 'FST_RT_INVALID_DISCONNECT'],
    [[{ userId: '' }], 'FST_RT_INVALID_USER_ID'],
    [[{ userId: 7 }], 'FST_RT_INVALID_USER_ID'],
    [[{ room: '$user:a' }], 'FST_RT_INVALID_ROOM']
  ]
  for (const [args, code] of bad) {
    await t.rejects((server.realtime.disconnect as (...values: unknown[]) => Promise<void>)(...args), { code }, JSON.stringify(args))
  }
  t.throws(() => server.realtime.connections({ room: '' }), { code: 'FST_RT_INVALID_ROOM' })
  t.throws(() => server.realtime.connections({ userId: '' }), { code: 'FST_RT_INVALID_USER_ID' })
  t.throws(() => server.realtime.connections({ nope: 1 } as never), { code: 'FST_RT_INVALID_DISCONNECT' })
})

t.test('the client stops after 4500 and reconnects after a code in the reconnect range', async (t) => {
  const { url, app: server } = await app(t)
  t.notOk(shouldReconnect(CloseCode.DISCONNECTED))
  const closes: CloseInfo[] = []
  const c = new RealtimeClient<typeof chat>({ url: `${url.replace('http', 'ws')}/chat?user=ada`, WebSocket, backoff: { baseMs: 5, capMs: 10 } })
  t.teardown(() => { c.close() })
  const states: string[] = []
  const reopened = new Promise<void>((resolve) => { c.onState((state) => { states.push(state); if (state === 'open' && states.filter((s) => s === 'open').length === 2) resolve() }) })
  c.onClose((info) => { closes.push(info) })
  await new Promise<void>((resolve) => { c.onState((state) => { if (state === 'open') resolve() }) })
  await server.realtime.disconnect({ userId: 'ada' }, 4000, 'come back')
  await reopened
  t.match(closes, [{ code: 4000, willReconnect: true }])
  const stopped = new Promise<void>((resolve) => { c.onState((state) => { if (state === 'closed') resolve() }) })
  await server.realtime.disconnect({ userId: 'ada' })
  await stopped
  t.match(closes[1], { code: 4500, willReconnect: false })
})

t.test('disconnect reaches connections on every instance through Redis', { skip: redisUnavailable() ?? false }, async (t) => {
  const { RedisBroker } = await import('../lib/hub/redis/index.js')
  const redis = await redisUrl(t)
  const keyPrefix = `disconnect-${Math.random().toString(36).slice(2)}:`
  const one = await app(t, { broker: new RedisBroker({ client: redis, keyPrefix }) })
  const two = await app(t, { broker: new RedisBroker({ client: redis, keyPrefix }) })
  const far = await client(t, `${two.url}/chat?user=ada`)
  const near = await client(t, `${one.url}/chat?user=ada`)
  await enter(far, 'r')
  await enter(near, 'r')
  t.equal(one.app.realtime.connections().length, 1, 'each instance lists its own')
  await one.app.realtime.disconnect({ userId: 'ada' }, 4001, 'logged out')
  t.match(await far.closed, { code: 4001, reason: 'logged out' })
  t.match(await near.closed, { code: 4001 })
})
