import { Type } from '@sinclair/typebox'
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import realtime, { contractHandler, defineContract, MessageError, tokenAuth, type ContractOptions } from '../lib/index.js'
import { connectTest } from '../lib/testing/index.js'
import './support/process-guard.js'

const contract = defineContract({
  client: {
    say: Type.Object({ room: Type.String(), text: Type.String() }),
    echo: { data: Type.Object({ n: Type.Integer() }), reply: Type.Object({ n: Type.Integer(), user: Type.Union([Type.String(), Type.Null()]) }) },
    fail: Type.Null()
  },
  server: {
    said: Type.Object({ text: Type.String() }),
    hello: Type.Object({ query: Type.String(), client: Type.String() })
  }
})

/** An app with a chat route (rooms open to all, `userId` from tokenAuth), closed on teardown. No listen(). */
async function chatApp (t: Test, route: Record<string, unknown> = {}, options: ContractOptions<typeof contract> = {}): Promise<FastifyInstance> {
  const app = Fastify({ logger: false })
  t.teardown(() => app.close())
  await app.register(realtime)
  app.get('/chat', { realtime: true, ...route }, contractHandler(contract, {
    async open (ctx) {
      const query = ctx.request.query as { q?: string }
      if (query.q !== undefined) await ctx.send('hello', { query: query.q, client: String(ctx.request.headers['x-client']) })
    },
    async say ({ room, text }, ctx) { await ctx.rooms.publish(room, 'said', { text }) },
    echo: ({ n }, ctx) => ({ n, user: ctx.userId }),
    fail () { throw new MessageError('NOPE', 'not today') }
  }, { rooms: { authorize: () => true }, ...options }))
  return app
}

t.test('connectTest connects the typed client without a port: send, request, next and collect', async (t) => {
  const app = await chatApp(t)
  const client = await connectTest(app, '/chat', contract)
  t.teardown(() => { client.close() })
  t.equal(app.server.listening, false, 'the app never listened')
  t.equal(client.state, 'open')
  t.same(await client.request('echo', { n: 7 }), { n: 7, user: null })
  await client.join('lobby')
  for (const text of ['a', 'b', 'c']) client.send('say', { room: 'lobby', text })
  t.same(await client.next('said'), { text: 'a' })
  t.same(await client.collect('said', 2), [{ text: 'b' }, { text: 'c' }])
  t.same(client.seen('said'), [{ text: 'a' }, { text: 'b' }, { text: 'c' }])
  client.send('say', { room: 'lobby', text: 'd' })
  t.match(await client.nextWithMeta('said', { timeoutMs: 1000 }), { data: { text: 'd' }, meta: { room: 'lobby', offset: 4 } })
  t.same(client.seen('hello'), [], 'nothing of a type never received')
  client.send('fail', null)
  t.match(await client.nextEvent('error'), { code: 'FST_RT_CLIENT_SERVER_ERROR', data: { code: 'NOPE' } })
})

t.test('a wait that times out fails with FST_RT_TEST_TIMEOUT, naming what came instead', async (t) => {
  const app = await chatApp(t)
  const client = await connectTest(app, '/chat', contract, { query: { q: 'x' }, timeoutMs: 50 })
  t.teardown(() => { client.close() })
  await t.rejects(client.next('said'), { code: 'FST_RT_TEST_TIMEOUT', message: 'The test client waited for a "said" message for 50 ms; received and not taken meanwhile: hello ×1' })
  await client.join('lobby')
  client.send('say', { room: 'lobby', text: 'only one' })
  await t.rejects(client.collect('said', 2, { timeoutMs: 80 }), { code: 'FST_RT_TEST_TIMEOUT', message: /waited for 2 "said" messages \(got 1\) for 80 ms/ })
  await t.rejects(client.nextEvent('lost'), { code: 'FST_RT_TEST_TIMEOUT', message: /a lost event for 50 ms/ })
  await t.rejects(client.collect('said', 1), { code: 'FST_RT_TEST_TIMEOUT', message: /1 "said" messages \(got 0\) for 50 ms/ })
  await client.resume({ timeoutMs: 100 })
  t.equal(client.state, 'open', 'resume() on an open client resolves at once')
})

t.test('query, headers and tokens reach the route as on a real upgrade', async (t) => {
  const app = await chatApp(t, { onRequest: tokenAuth({ verify: (token) => token === 'good' ? 'ada' : null }) }, { userId: (request) => request.realtimeUser })
  const client = await connectTest(app, '/chat', contract, { query: { q: ['1', 2] }, headers: { authorization: 'Bearer good', 'x-client': 'tap' } })
  t.teardown(() => { client.close() })
  t.same(await client.next('hello'), { query: '1,2', client: 'tap' })
  t.same(await client.request('echo', { n: 1 }), { n: 1, user: 'ada' })
  await t.rejects(connectTest(app, '/chat', contract, { headers: { authorization: 'Bearer bad' } }), {
    code: 'FST_RT_TEST_CONNECT_FAILED',
    message: 'The test client could not connect: Unexpected server response: 403'
  })
  const first = await chatApp(t, {}, { auth: { verify: (token) => token === 'secret' ? 'bob' : null } })
  const authed = await connectTest(first, '/chat?x=1', contract, { token: 'secret', query: { q: 'y' } })
  t.teardown(() => { authed.close() })
  t.same(await authed.request('echo', { n: 2 }), { n: 2, user: 'bob' })
  await t.rejects(connectTest(first, '/chat', contract, { token: 'wrong' }), { code: 'FST_RT_TEST_CONNECT_FAILED', message: 'The test client could not connect: the connection closed with 4501 before it opened' })
})

t.test('drop() and resume(): the client reconnects, rejoins and recovers what it missed', async (t) => {
  const app = await chatApp(t)
  const client = await connectTest(app, '/chat', contract)
  t.teardown(() => { client.close() })
  const other = await connectTest(app, '/chat', contract)
  t.teardown(() => { other.close() })
  await client.join('lobby')
  await other.join('lobby')
  other.send('say', { room: 'lobby', text: 'before' })
  t.same(await client.next('said'), { text: 'before' })
  t.match(await client.drop(), { code: 1006, willReconnect: true })
  t.equal(client.state, 'reconnecting', 'its reconnect is held until resume()')
  other.send('say', { room: 'lobby', text: 'while away' })
  t.same(await other.next('said'), { text: 'before' })
  t.same(await other.next('said'), { text: 'while away' })
  await client.resume()
  t.equal(client.state, 'open')
  t.match(await client.nextEvent('join'), { room: 'lobby', offset: 0 }, 'the first join')
  t.match(await client.nextEvent('join'), { room: 'lobby', recovered: true }, 'the rejoin recovered')
  t.same(await client.next('said'), { text: 'while away' })
})

t.test('the socket follows the client: subprotocols, a close while connecting, a close while dropped', async (t) => {
  const app = await chatApp(t, { protocols: ['v1'] })
  const client = await connectTest(app, '/chat', contract, { client: { protocols: ['v1'] } })
  t.same(await client.request('echo', { n: 3 }), { n: 3, user: null })
  await client.drop({ timeoutMs: 1000 })
  // Closed while its socket is held: the socket is never started.
  client.close()
  t.equal(client.state, 'closed')
  await t.rejects(client.resume(), { code: 'FST_RT_TEST_CONNECT_FAILED', message: /the client is closed/ })
  // A client closed as it connects: its socket closes as soon as it opens.
  const { TestClient } = await import('../lib/testing/test-client.js')
  const { SocketFactory } = await import('../lib/testing/injected-socket.js')
  const factory = new SocketFactory(app, {})
  const early = new TestClient(contract, factory, 'ws://injected.test/chat', { client: { protocols: 'v1' } })
  early.connect()
  const socket = factory.current
  early.close()
  t.equal(socket?.readyState, 2)
  socket?.close()
  socket?.send('ignored')
})

t.test('keep bounds what a test client holds; a binary frame reaches the client as bytes, which it ignores', async (t) => {
  const app = Fastify({ logger: false })
  t.teardown(() => app.close())
  await app.register(realtime)
  const raw = defineContract({ client: { go: Type.Null() }, server: { tick: Type.Integer(), done: Type.Null() } })
  app.get('/raw', { realtime: true }, async (conn) => {
    await conn.receive()
    await conn.sendBinary(Buffer.from([1, 2]))
    for (let n = 1; n <= 5; n++) await conn.sendText(JSON.stringify({ type: 'tick', data: n }))
    await conn.sendText(JSON.stringify({ type: 'done', data: null }))
    await conn.receive()
  })
  const client = await connectTest(app, '/raw', raw, { keep: 3 })
  t.teardown(() => { client.close() })
  client.send('go', null)
  await client.next('done')
  t.same(client.seen('tick'), [3, 4, 5], 'the last three only')
  t.same(await client.collect('tick', 3), [3, 4, 5], 'the older ones not taken were dropped')
  await t.rejects(client.next('done', { timeoutMs: 20 }), { message: /received and not taken meanwhile: nothing$/ })
})
