import t, { type Test } from 'tap'
import { Type } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import { once } from 'node:events'
import WebSocket from 'ws'
import { contractHandler, defineContract } from '../lib/index.js'
import { RealtimeClient, RealtimeClientError, backoffDelay, type ClientOptions, type ClientState } from '../lib/client/index.js'
import { build, deferred } from './support/helpers.js'

const chat = defineContract({
  client: {
    say: Type.Object({ room: Type.String(), text: Type.String() }),
    echo: { data: Type.Object({ text: Type.String() }), reply: Type.Object({ text: Type.String() }) },
    slow: { data: Type.Object({ ms: Type.Integer() }), reply: Type.Null() },
    fail: Type.Null()
  },
  server: { message: Type.Object({ text: Type.String(), from: Type.String() }) }
})

const tokens: Record<string, string> = { 'ada-token': 'ada', 'bob-token': 'bob' }

function route (app: FastifyInstance): void {
  app.get('/chat', { realtime: true }, contractHandler(chat, {
    async say ({ room, text }, ctx) { await ctx.rooms.publish(room, 'message', { text, from: ctx.userId ?? '?' }) },
    echo: ({ text }) => ({ text }),
    async slow ({ ms }) { await new Promise((resolve) => setTimeout(resolve, ms)); return null },
    fail () { throw new Error('nope') }
  }, {
    auth: { verify: (token) => tokens[token] ?? null, timeoutMs: 2000 },
    rooms: { authorize: () => true }
  }))
}

/** A seeded random in [0, 1): the same sequence every run (mulberry32). */
function seeded (seed: number): () => number {
  let state = seed
  return () => {
    state = (state + 0x6D2B79F5) | 0
    let value = Math.imul(state ^ (state >>> 15), 1 | state)
    value = (value + Math.imul(value ^ (value >>> 7), 61 | value)) ^ value
    return ((value ^ (value >>> 14)) >>> 0) / 4294967296
  }
}

function makeClient (t: Test, url: string, options: Partial<ClientOptions> = {}): RealtimeClient<typeof chat> {
  const c = new RealtimeClient<typeof chat>({
    url: `${url}/chat`,
    token: 'ada-token',
    WebSocket,
    backoff: { baseMs: 20, capMs: 200 },
    ...options
  })
  t.teardown(() => { c.close() })
  return c
}

function until (c: RealtimeClient<typeof chat>, state: ClientState): Promise<void> {
  if (c.state === state) return Promise.resolve()
  return new Promise((resolve) => {
    const off = c.onState((now) => { if (now === state) { off(); resolve() } })
  })
}

t.test('backoff has full jitter within [0, min(cap, base · 2^n)) and is reproducible with a seed', async (t) => {
  const a = seeded(42)
  const b = seeded(42)
  for (let attempt = 0; attempt < 12; attempt++) {
    const ceiling = Math.min(1000, 50 * 2 ** attempt)
    const delay = backoffDelay(attempt, 50, 1000, a)
    t.ok(delay >= 0 && delay < ceiling, `attempt ${attempt}: ${delay} < ${ceiling}`)
    t.equal(backoffDelay(attempt, 50, 1000, b), delay, 'the same seed gives the same delays')
  }
  t.equal(backoffDelay(100, 50, 1000, () => 0.999999), 999, 'a huge attempt is capped, not Infinity')
  t.ok(backoffDelay(3, 50, 1000) < 400, 'Math.random by default')
})

t.test('typed send, receive and request/reply against a real server, with first-message auth', async (t) => {
  const { url } = await build(t, route)
  const c = makeClient(t, url)
  const states: ClientState[] = []
  c.onState((state) => { states.push(state) })
  await until(c, 'open')
  t.same(await c.request('echo', { text: 'hello' }), { text: 'hello' })
  const joined = await c.join('lobby')
  t.match(joined, { room: 'lobby', offset: 0 })
  const got = deferred<{ text: string, from: string, room?: string, offset?: number }>()
  c.on('message', (data, meta) => { got.resolve({ ...data, room: meta.room, offset: meta.offset }) })
  c.send('say', { room: 'lobby', text: 'hi all' })
  t.same(await got.promise, { text: 'hi all', from: 'ada', room: 'lobby', offset: 1 }, 'the user id comes from the token')
  t.same(c.position('lobby'), { epoch: joined.epoch, offset: 1 })
  t.same(c.joinedRooms, ['lobby'])
  t.same(states, ['open'], 'connecting is the initial state, then open after the auth reply')
})

t.test('a server error reply rejects the request with the server\'s code; a request timeout rejects too', async (t) => {
  const { url } = await build(t, route)
  const c = makeClient(t, url)
  await until(c, 'open')
  const failed = await c.request('fail', null).catch((error: RealtimeClientError) => error)
  t.match(failed, { code: 'FST_RT_CLIENT_SERVER_ERROR', data: { code: 'FST_RT_HANDLER_FAILED' } })
  const late = await c.request('slow', { ms: 200 }, { timeoutMs: 30 }).catch((error: RealtimeClientError) => error)
  t.match(late, { code: 'FST_RT_CLIENT_REQUEST_TIMEOUT' })
  const errors: Error[] = []
  c.onError((error) => { errors.push(error) })
  const reported = deferred()
  c.onError(() => { reported.resolve() })
  c.send('say', { room: 42 as unknown as string, text: 'bad' })
  await reported.promise
  t.match(errors[0], { code: 'FST_RT_CLIENT_SERVER_ERROR', data: { code: 'FST_RT_INVALID_MESSAGE_DATA' } }, 'an error envelope without id reaches onError')
})

t.test('a refused token closes with 4501 and the client does not retry; a silent client is closed with 4401', async (t) => {
  const { url } = await build(t, route)
  const c = makeClient(t, url, { token: 'wrong' })
  const closed = deferred<{ code: number, willReconnect: boolean }>()
  c.onClose((info) => { closed.resolve(info) })
  t.match(await closed.promise, { code: 4501, willReconnect: false })
  t.equal(c.state, 'closed')
  await t.rejects(c.request('echo', { text: 'x' }), { code: 'FST_RT_CLIENT_CLOSED' })
  const raw = new WebSocket(`${url}/chat`)
  t.teardown(() => raw.terminate())
  await once(raw, 'open')
  raw.send(JSON.stringify({ type: 'echo', data: { text: 'before auth' } }))
  const [code] = await once(raw, 'close') as [number]
  t.equal(code, 4501, 'a first message that is not $auth is refused')
  const quick = await build(t, (app) => {
    app.get('/chat', { realtime: true }, contractHandler(chat, {
      say () {}, echo: ({ text }) => ({ text }), slow: () => null, fail () {}
    }, { auth: { verify: () => 'x', timeoutMs: 50 } }))
  })
  const silent = new WebSocket(`${quick.url}/chat`)
  t.teardown(() => silent.terminate())
  await once(silent, 'open')
  const [silentCode, reason] = await once(silent, 'close') as [number, Buffer]
  t.equal(silentCode, 4401, 'a client that never authenticates is closed with 4401')
  t.equal(reason.toString(), 'Authentication timed out')
})

t.test('it reconnects after the server restarts, rejoins its rooms and recovers what it missed', async (t) => {
  const first = await build(t, route)
  const port = first.port
  const c = makeClient(t, first.url)
  await until(c, 'open')
  await c.join('lobby')
  const received: string[] = []
  c.on('message', (data) => { received.push(data.text) })
  const closes: number[] = []
  c.onClose((info) => { closes.push(info.code) })
  await first.app.close()
  await until(c, 'reconnecting')
  t.equal(closes[0], 1001, 'the server went away with 1001')
  const second = await build(t, route, {}, {})
  // The same port, as a restarted server would have: build() listened on a new one, so move it.
  await second.app.close()
  const { default: Fastify } = await import('fastify')
  const { default: realtime } = await import('../lib/index.js')
  const again = Fastify()
  await again.register(realtime)
  route(again)
  await again.listen({ host: '127.0.0.1', port })
  t.teardown(() => again.close())
  const rejoined = deferred<{ recovered?: boolean }>()
  c.onJoin((outcome) => { rejoined.resolve(outcome) })
  await until(c, 'open')
  t.match(await rejoined.promise, { room: 'lobby', recovered: false }, 'a new process has a new epoch: recovered false')
  await again.realtime.publish(chat, 'lobby', 'message', { text: 'after restart', from: 'server' })
  const got = deferred()
  c.on('message', () => { got.resolve() })
  await got.promise
  t.same(received, ['after restart'], 'the rejoined room delivers again')
})

t.test('recovery after a dropped connection to the same server replays exactly what was missed', async (t) => {
  const { url, app } = await build(t, route)
  const c = makeClient(t, url)
  await until(c, 'open')
  await c.join('news')
  const texts: string[] = []
  const three = deferred()
  c.on('message', (data) => { texts.push(data.text); if (texts.length === 3) three.resolve() })
  await app.realtime.publish(chat, 'news', 'message', { text: 'one', from: 's' })
  // Drop the TCP connection without a close frame, as a network failure would.
  const recovered = deferred<{ recovered?: boolean }>()
  c.onJoin((outcome) => { recovered.resolve(outcome) })
  const rawSocket = (c as unknown as { transport: { socket: { _socket: import('node:net').Socket } } }).transport.socket._socket
  await new Promise<void>((resolve) => { c.onState((state) => { if (state === 'reconnecting') resolve() }); rawSocket.destroy() })
  await app.realtime.publish(chat, 'news', 'message', { text: 'two', from: 's' })
  await app.realtime.publish(chat, 'news', 'message', { text: 'three', from: 's' })
  t.match(await recovered.promise, { room: 'news', recovered: true })
  await three.promise
  t.same(texts, ['one', 'two', 'three'])
})

t.test('two drops in a row: every message arrives once, in order, each rejoin after its onJoin', async (t) => {
  const { url, app } = await build(t, route)
  const c = makeClient(t, url)
  await until(c, 'open')
  await c.join('feed')
  const events: string[] = []
  c.onJoin((outcome) => { events.push(`join recovered=${String(outcome.recovered)}`) })
  c.on('message', (data) => { events.push(data.text) })
  let sent = 0
  const publish = async (): Promise<void> => { await app.realtime.publish(chat, 'feed', 'message', { text: `m${++sent}`, from: 's' }) }
  const socketOf = (): import('node:net').Socket => (c as unknown as { transport: { socket: { _socket: import('node:net').Socket } } }).transport.socket._socket
  for (let drop = 0; drop < 2; drop++) {
    const rejoined = new Promise<void>((resolve) => { const off = c.onJoin(() => { off(); resolve() }) })
    await new Promise<void>((resolve) => { const off = c.onState((state) => { if (state === 'reconnecting') { off(); resolve() } }); socketOf().destroy() })
    await publish()
    await publish()
    await rejoined
    await until(c, 'open')
  }
  const last = deferred()
  c.on('message', (data) => { if (data.text === 'm5') last.resolve() })
  await publish()
  await last.promise
  t.same(events, ['join recovered=true', 'm1', 'm2', 'join recovered=true', 'm3', 'm4', 'm5'])
  t.match(c.position('feed'), { offset: 5 })
})

t.test('requests in flight fail with FST_RT_CLIENT_CONNECTION_LOST when the connection drops', async (t) => {
  const { url } = await build(t, route)
  const c = makeClient(t, url)
  await until(c, 'open')
  const pending = c.request('slow', { ms: 1000 })
  const rawSocket = (c as unknown as { transport: { socket: { _socket: import('node:net').Socket } } }).transport.socket._socket
  rawSocket.destroy()
  await t.rejects(pending, { code: 'FST_RT_CLIENT_CONNECTION_LOST' })
})

t.test('the offline queue is bounded by count and age, with reject or drop-oldest when full', async (t) => {
  const { url } = await build(t, route)
  const rejecting = makeClient(t, url, { autoConnect: false, queue: { maxSize: 2 } })
  rejecting.send('say', { room: 'r', text: '1' })
  rejecting.send('say', { room: 'r', text: '2' })
  t.throws(() => { rejecting.send('say', { room: 'r', text: '3' }) }, { code: 'FST_RT_CLIENT_QUEUE_FULL' })
  const dropping = makeClient(t, url, { autoConnect: false, queue: { maxSize: 2, overflow: 'drop-oldest' } })
  const first = dropping.request('echo', { text: '1' })
  const second = dropping.request('echo', { text: '2' })
  const third = dropping.request('echo', { text: '3' })
  await t.rejects(first, { code: 'FST_RT_CLIENT_QUEUE_FULL' }, 'the oldest request is dropped and fails at once')
  dropping.send('say', { room: 'q', text: 'pushes out the second' })
  await t.rejects(second, { code: 'FST_RT_CLIENT_QUEUE_FULL' })
  dropping.connect()
  t.same(await third, { text: '3' }, 'what stayed queued is sent, in order, once open')
  const expiring = makeClient(t, url, { autoConnect: false, queue: { maxAgeMs: 1 } })
  const expired = deferred<Error>()
  expiring.onError((error) => { expired.resolve(error) })
  expiring.send('say', { room: 'q', text: 'stale' })
  const stale = expiring.request('echo', { text: 'stale request' })
  const started = Date.now()
  while (Date.now() - started < 3) { /* let 1 ms pass without a timer */ }
  expiring.send('say', { room: 'q', text: 'fresh' })
  t.match(await expired.promise, { code: 'FST_RT_CLIENT_QUEUE_EXPIRED' }, 'an expired event is reported')
  await t.rejects(stale, { code: 'FST_RT_CLIENT_QUEUE_EXPIRED' }, 'an expired request fails')
})

t.test('a dead server (no answer to $ping) is detected and the client reconnects', async (t) => {
  const { url } = await build(t, route)
  const c = makeClient(t, url, { pingIntervalMs: 40, pongTimeoutMs: 40 })
  await until(c, 'open')
  // Stop reading on the client side: no $pong can reach it, as with a server that hangs.
  const socket = (c as unknown as { transport: { socket: { _socket: import('node:net').Socket } } }).transport.socket._socket
  socket.pause()
  const closed = deferred<{ code: number, willReconnect: boolean }>()
  c.onClose((info) => { closed.resolve(info) })
  t.match(await closed.promise, { code: 1006, willReconnect: true })
  await until(c, 'open')
  t.pass('reconnected')
})

t.test('maxRetries gives up, terminal codes stop retries, and close() stops everything', async (t) => {
  const { url, app } = await build(t, route)
  const port = new URL(url).port
  await app.close()
  const c = makeClient(t, `ws://127.0.0.1:${port}`, { backoff: { baseMs: 5, capMs: 10, maxRetries: 2 } })
  const last = deferred<{ willReconnect: boolean }>()
  c.onClose((info) => { if (!info.willReconnect) last.resolve(info) })
  await last.promise
  t.equal(c.state, 'closed')
  t.throws(() => { c.send('say', { room: 'r', text: 'x' }) }, { code: 'FST_RT_CLIENT_CLOSED' })
})

t.test('client options are checked', async (t) => {
  const base = { url: 'ws://127.0.0.1:1', WebSocket, autoConnect: false }
  t.throws(() => new RealtimeClient({ ...base, backoff: { baseMs: 0 } }), { code: 'FST_RT_CLIENT_INVALID_OPTION' })
  t.throws(() => new RealtimeClient({ ...base, queue: { overflow: 'drop' as never } }), { code: 'FST_RT_CLIENT_INVALID_OPTION' })
  t.throws(() => new RealtimeClient({ ...base, url: 42 as never }), { code: 'FST_RT_CLIENT_INVALID_OPTION' })
})

t.test('without the WebSocket option the client takes the global one, and refuses to start without either', async (t) => {
  // Node 22 and later have a global WebSocket, Node 20 has none: set it either way, then hide it.
  const saved = Object.getOwnPropertyDescriptor(globalThis, 'WebSocket')
  const global = globalThis as { WebSocket?: unknown }
  t.teardown(() => {
    if (saved === undefined) delete global.WebSocket
    else Object.defineProperty(globalThis, 'WebSocket', saved)
  })
  const { url } = await build(t, route)
  global.WebSocket = WebSocket
  const c = makeClient(t, url, { WebSocket: undefined })
  await until(c, 'open')
  delete global.WebSocket
  t.throws(() => new RealtimeClient({ url: 'ws://x', autoConnect: false }), { code: 'FST_RT_CLIENT_INVALID_OPTION', message: /WebSocket/ })
})
