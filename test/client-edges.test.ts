import t, { type Test } from 'tap'
import { Type } from '@sinclair/typebox'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import WebSocket, { WebSocketServer } from 'ws'
import { defineContract } from '../lib/index.js'
import { RealtimeClient, type ClientOptions, type ClientState } from '../lib/client/index.js'
import { deferred } from './support/helpers.js'

// The client against a scripted server: every frame it gets is chosen by the test.
// eslint-disable-next-line @typescript-eslint/no-unused-vars -- the scripted server needs only its type
const contract = defineContract({
  client: { ask: { data: Type.Null(), reply: Type.String() }, note: Type.String() },
  server: { news: Type.String() }
})

interface Script {
  url: string
  server: WebSocketServer
  /** Every connection the server accepted, in order. */
  sockets: WebSocket[]
  next: () => Promise<WebSocket>
  received: (socket: WebSocket) => Promise<Record<string, unknown>>
}

async function scripted (t: Test, onMessage?: (socket: WebSocket, message: Record<string, unknown>) => void): Promise<Script> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  await once(server, 'listening')
  const sockets: WebSocket[] = []
  const waiting: Array<(socket: WebSocket) => void> = []
  server.on('connection', (socket) => {
    sockets.push(socket)
    socket.on('message', (data) => { onMessage?.(socket, JSON.parse(String(data)) as Record<string, unknown>) })
    waiting.shift()?.(socket)
  })
  t.teardown(async () => {
    for (const socket of server.clients) socket.terminate()
    await new Promise((resolve) => server.close(resolve))
  })
  return {
    url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`,
    server,
    sockets,
    next: () => new Promise((resolve) => { waiting.push(resolve) }),
    received: async (socket) => JSON.parse(String((await once(socket, 'message'))[0])) as Record<string, unknown>
  }
}

function make (t: Test, url: string | (() => Promise<string>), options: Partial<ClientOptions> = {}): RealtimeClient<typeof contract> {
  const c = new RealtimeClient<typeof contract>({ url, WebSocket, backoff: { baseMs: 5, capMs: 20 }, ...options })
  t.teardown(() => { c.close() })
  return c
}

function until (c: RealtimeClient<typeof contract>, state: ClientState): Promise<void> {
  if (c.state === state) return Promise.resolve()
  return new Promise((resolve) => { const off = c.onState((now) => { if (now === state) { off(); resolve() } }) })
}

t.test('frames the client cannot use are ignored; notices, lost and stray replies reach the right listeners', async (t) => {
  const script = await scripted(t)
  const connected = script.next()
  const c = make(t, script.url)
  const socket = await connected
  await until(c, 'open')
  const joined = c.join('room-a', { meta: { color: 'red' } })
  const join = await script.received(socket)
  t.match(join, { type: '$join', data: { room: 'room-a', meta: { color: 'red' } } })
  socket.send(JSON.stringify({ type: '$join:reply', id: join.id, data: { room: 'room-a', epoch: 'e1', offset: 4 } }))
  t.match(await joined, { room: 'room-a', epoch: 'e1', offset: 4 })
  const again = c.join('room-a')
  const rejoin = await script.received(socket)
  t.match(rejoin, { data: { room: 'room-a', meta: { color: 'red' }, epoch: 'e1', offset: 4 } }, 'a second join keeps the meta and sends the position')
  socket.send(JSON.stringify({ type: '$join:reply', id: rejoin.id, data: { room: 'room-a', epoch: 'e1', offset: 4, recovered: true } }))
  await again
  const news: Array<{ data: string, room?: string }> = []
  c.on('news', (data, meta) => { news.push({ data, room: meta.room }) })
  const presence = deferred<unknown>()
  c.onPresence((notice) => { presence.resolve(notice) })
  const lost = deferred<unknown>()
  c.onLost((notice) => { lost.resolve(notice) })
  const errors: Error[] = []
  c.onError((error) => { errors.push(error) })
  socket.send(Buffer.from([1, 2, 3]))
  socket.send('{not json')
  socket.send(JSON.stringify({ data: 'no type' }))
  socket.send(JSON.stringify({ type: '$pong', data: null }))
  socket.send(JSON.stringify({ type: '$leave:reply', data: { room: 'x', left: false } }))
  socket.send(JSON.stringify({ type: 'news', data: 'stray reply id', id: 'nobody-waits' }))
  socket.send(JSON.stringify({ type: 'news', data: 'other room', room: 'room-b', epoch: 'e9', offset: 1 }))
  socket.send(JSON.stringify({ type: 'news', data: 'direct' }))
  socket.send(JSON.stringify({ type: 'error', data: { code: 'X' } }))
  socket.send(JSON.stringify({ type: '$presence', data: { room: 'room-a', event: 'join' } }))
  socket.send(JSON.stringify({ type: '$lost', data: { room: 'room-a', epoch: 'e2', offset: 0 } }))
  socket.send(JSON.stringify({ type: '$lost', data: { room: 'not-joined', epoch: 'e2', offset: 0 } }))
  t.same(await presence.promise, { room: 'room-a', event: 'join' })
  t.same(await lost.promise, { room: 'room-a', epoch: 'e2', offset: 0 })
  t.same(c.position('room-a'), { epoch: 'e2', offset: 0 }, 'after $lost the room starts from the new position')
  t.same(c.position('room-b'), null, 'a room never joined has no position')
  t.same(news, [{ data: 'stray reply id', room: undefined }, { data: 'other room', room: 'room-b' }, { data: 'direct', room: undefined }])
  t.match(errors, [{ code: 'FST_RT_CLIENT_SERVER_ERROR', message: 'The server answered with an error', data: { code: 'X' } }])
  await c.leave('never-joined')
  const leaving = c.leave('room-a', { timeoutMs: 1000 })
  const leave = await script.received(socket)
  socket.send(JSON.stringify({ type: '$leave:reply', id: leave.id, data: { room: 'room-a', left: true } }))
  await leaving
  t.same(c.joinedRooms, [])
})

t.test('url and token providers are called on every connect; a failing provider is reported and retried', async (t) => {
  let tokenCalls = 0
  const script = await scripted(t, (socket, message) => {
    if (message.type === '$auth') socket.send(JSON.stringify({ type: '$auth:reply', id: message.id, data: { userId: String(message.data) } }))
  })
  let urlCalls = 0
  const errors: Error[] = []
  const c = make(t, async () => {
    urlCalls++
    if (urlCalls === 1) throw new Error('service discovery is down')
    return script.url
  }, { token: async () => `token-${++tokenCalls}` })
  c.onError((error) => { errors.push(error) })
  await until(c, 'open')
  t.match(errors, [{ message: 'service discovery is down' }])
  t.equal(urlCalls, 2, 'tried again after the failure')
  script.sockets[0]?.close(1012, 'restarting')
  await until(c, 'reconnecting')
  await until(c, 'open')
  t.equal(tokenCalls, 2, 'a fresh token for the new connection')
  t.equal(urlCalls, 3)
  c.connect()
  t.equal(script.sockets.length, 2, 'connect() on an open client does nothing')
})

t.test('close() while the URL is still being resolved opens nothing', async (t) => {
  const release = deferred<string>()
  const script = await scripted(t)
  const c = make(t, () => release.promise)
  c.close()
  release.resolve(script.url)
  await release.promise
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(script.sockets.length, 0)
  t.equal(c.state, 'closed')
})

t.test('a request that cannot even be queued fails at once', async (t) => {
  const c = make(t, 'ws://127.0.0.1:1', { autoConnect: false, queue: { maxSize: 1 } })
  c.send('note', 'fills the queue')
  await t.rejects(c.request('ask', null), { code: 'FST_RT_CLIENT_QUEUE_FULL' })
})

t.test('leaving a room while not connected only forgets it', async (t) => {
  const c = make(t, 'ws://127.0.0.1:1', { autoConnect: false, requestTimeoutMs: 20 })
  const joining = c.join('r').catch((error: Error & { code: string }) => error.code)
  t.same(c.joinedRooms, ['r'])
  await c.leave('r')
  t.same(c.joinedRooms, [], 'no $leave is queued for a room the server never saw')
  t.equal(await joining, 'FST_RT_CLIENT_REQUEST_TIMEOUT')
})

t.test('browser events: offline drops the connection at once, online reconnects without waiting', async (t) => {
  const target = new EventTarget()
  const global = globalThis as unknown as Record<string, unknown>
  global.addEventListener = target.addEventListener.bind(target)
  global.removeEventListener = target.removeEventListener.bind(target)
  t.teardown(() => {
    delete global.addEventListener
    delete global.removeEventListener
  })
  // A browser's WebSocket has no terminate(): hide ws's.
  class BrowserLike extends WebSocket {
    override terminate (): void { throw new Error('browsers have no terminate()') }
  }
  Object.defineProperty(BrowserLike.prototype, 'terminate', { value: undefined })
  const script = await scripted(t)
  const c = make(t, script.url, { WebSocket: BrowserLike, backoff: { baseMs: 60_000, capMs: 60_000 } })
  await until(c, 'open')
  const closed = deferred<{ code: number, willReconnect: boolean }>()
  c.onClose((info) => { closed.resolve(info) })
  target.dispatchEvent(new Event('offline'))
  t.match(await closed.promise, { code: 1006, willReconnect: true })
  t.equal(c.state, 'reconnecting', 'waiting out a long backoff')
  target.dispatchEvent(new Event('offline'))
  const reopened = script.next()
  target.dispatchEvent(new Event('online'))
  await reopened
  await until(c, 'open')
  target.dispatchEvent(new Event('online'))
  t.equal(script.sockets.length, 2, 'online while connected does nothing')
  c.close()
  target.dispatchEvent(new Event('online'))
  t.equal(c.state, 'closed', 'a closed client ignores online')
})

t.test('join() before the connection opens sends one $join, and queued messages wait for the rejoin reply', async (t) => {
  const frames: Array<{ socket: number, type: unknown }> = []
  let replyJoin: (() => void) | null = null
  const script = await scripted(t, (socket, message) => {
    frames.push({ socket: script.sockets.indexOf(socket), type: message.type })
    if (message.type === '$join') {
      const reply = (): void => { socket.send(JSON.stringify({ type: '$join:reply', id: message.id, data: { room: 'r', epoch: 'e', offset: 7 } })) }
      // On the second connection the reply is held back, to show the queue waits for it.
      if (script.sockets.indexOf(socket) === 1) replyJoin = reply
      else reply()
    }
  })
  const c = make(t, script.url, { autoConnect: false })
  const joined = c.join('r', { from: { epoch: 'e', offset: 5 } })
  c.connect()
  t.match(await joined, { room: 'r', offset: 7 })
  t.same(frames.filter((frame) => frame.type === '$join').length, 1, 'one join() call, one $join')
  script.sockets[0]?.close(1012)
  await until(c, 'reconnecting')
  const secondSocket = script.next()
  c.send('note', 'sent while reconnecting')
  await secondSocket
  // eslint-disable-next-line no-unmodified-loop-condition -- set by the scripted server's handler
  while (replyJoin === null) await new Promise((resolve) => setImmediate(resolve))
  t.equal(c.state, 'reconnecting', 'not open until the rooms are joined again')
  t.same(frames.filter((frame) => frame.socket === 1).map((frame) => frame.type), ['$join'], 'nothing but the rejoin before its reply')
  const sent = script.received(script.sockets[1] as WebSocket)
  ;(replyJoin as () => void)()
  t.match(await sent, { type: 'note', data: 'sent while reconnecting' })
  t.equal(c.state, 'open')
})

t.test('join() can start from a known position, and a refused rejoin drops the room', async (t) => {
  let refuse = false
  const script = await scripted(t, (socket, message) => {
    if (message.type !== '$join') return
    if (refuse) socket.send(JSON.stringify({ type: 'error', id: message.id, data: { code: 'FST_RT_JOIN_FORBIDDEN', message: 'no' } }))
    else socket.send(JSON.stringify({ type: '$join:reply', id: message.id, data: { room: 'r', epoch: (message.data as { epoch?: string }).epoch ?? 'new', offset: 3, recovered: true } }))
  })
  const c = make(t, script.url)
  await until(c, 'open')
  const errors: Error[] = []
  c.onError((error) => { errors.push(error) })
  t.match(await c.join('r', { from: { epoch: 'loaded', offset: 2 } }), { epoch: 'loaded', recovered: true })
  refuse = true
  script.sockets[0]?.close(1012)
  await until(c, 'reconnecting')
  await until(c, 'open')
  t.same(c.joinedRooms, [], 'the refused room is left')
  t.match(errors, [{ code: 'FST_RT_CLIENT_SERVER_ERROR', data: { code: 'FST_RT_JOIN_FORBIDDEN' } }])
  const early = make(t, script.url, { autoConnect: false })
  const waiting = early.join('r')
  early.connect()
  await t.rejects(waiting, { code: 'FST_RT_CLIENT_SERVER_ERROR', data: { code: 'FST_RT_JOIN_FORBIDDEN' } }, 'a join made before open gets the refusal')
})

t.test('joins waiting for a connection fail with FST_RT_CLIENT_CLOSED when the client stops', async (t) => {
  const c = make(t, 'ws://127.0.0.1:1', { autoConnect: false })
  const waiting = c.join('r')
  c.close()
  await t.rejects(waiting, { code: 'FST_RT_CLIENT_CLOSED' })
  await t.rejects(c.join('r'), { code: 'FST_RT_CLIENT_CLOSED' })
  const refused = await scripted(t, (socket) => { socket.close(4501, 'no') })
  const d = make(t, refused.url, { autoConnect: false })
  const pending = d.join('r')
  d.connect()
  d.send('note', 'to trigger a message')
  await t.rejects(pending, { code: 'FST_RT_CLIENT_CLOSED' }, 'a terminal close fails them too')
})

t.test('a join reply and the replay read in one turn: onJoin comes first, and nothing is replayed twice on the next reconnect', async (t) => {
  const requested: Array<Record<string, unknown>> = []
  const script = await scripted(t, (socket, message) => {
    if (message.type !== '$join') return
    const data = message.data as Record<string, unknown>
    requested.push(data)
    const frames = [JSON.stringify({ type: '$join:reply', id: message.id, data: data.epoch === undefined ? { room: 'r', epoch: 'e', offset: 0 } : { room: 'r', epoch: 'e', offset: 3, recovered: true } })]
    if (requested.length === 1) frames.push(JSON.stringify({ type: 'news', data: 'n1', room: 'r', epoch: 'e', offset: 1 }))
    if (requested.length === 2) {
      frames.push(JSON.stringify({ type: 'news', data: 'n2', room: 'r', epoch: 'e', offset: 2 }))
      frames.push(JSON.stringify({ type: 'news', data: 'n3', room: 'r', epoch: 'e', offset: 3 }))
    }
    // One TCP write for the reply and what follows it, as the server's coalesced writes send them.
    const tcp = (socket as unknown as { _socket: import('node:net').Socket })._socket
    tcp.cork()
    for (const frame of frames) socket.send(frame)
    tcp.uncork()
  })
  const c = make(t, script.url)
  const events: string[] = []
  c.onJoin((outcome) => { events.push(`join@${outcome.offset}`) })
  c.on('news', (data, meta) => { events.push(`${data}@${String(meta.offset)}`) })
  await until(c, 'open')
  await c.join('r')
  t.same(c.position('r'), { epoch: 'e', offset: 1 }, 'the live message read with the reply advanced the position')
  for (const round of [2, 3]) {
    const rejoined = new Promise<void>((resolve) => { const off = c.onJoin(() => { off(); resolve() }) })
    script.sockets[round - 2]?.close(1012)
    await rejoined
    await until(c, 'open')
  }
  t.same(requested.map((data) => data.offset), [undefined, 1, 3], 'each rejoin recovers from the last message delivered')
  t.same(events, ['join@0', 'n1@1', 'join@3', 'n2@2', 'n3@3', 'join@3'], 'onJoin before the replay, each message once')
  t.same(c.position('r'), { epoch: 'e', offset: 3 })
})

t.test('an $auth answered with an error stops the client with FST_RT_CLIENT_AUTH_FAILED instead of hanging', async (t) => {
  const script = await scripted(t, (socket, message) => {
    if (message.type === '$auth') socket.send(JSON.stringify({ type: 'error', id: message.id, data: { code: 'FST_RT_UNKNOWN_MESSAGE_TYPE', message: 'Unknown message type "$auth"' } }))
  })
  const c = make(t, script.url, { token: 't' })
  const errors: Error[] = []
  c.onError((error) => { errors.push(error) })
  const closed = new Promise<{ willReconnect: boolean }>((resolve) => { c.onClose(resolve) })
  t.match(await closed, { willReconnect: false })
  t.equal(c.state, 'closed')
  t.match(errors, [{ code: 'FST_RT_CLIENT_AUTH_FAILED', data: { code: 'FST_RT_UNKNOWN_MESSAGE_TYPE' } }])
  await t.rejects(c.request('ask', null), { code: 'FST_RT_CLIENT_CLOSED' }, 'a request after it fails at once')
  t.equal(script.sockets.length, 1, 'no reconnect')
})

t.test('an $auth with no answer is reported and the client reconnects with backoff', async (t) => {
  const script = await scripted(t)
  const c = make(t, script.url, { token: 't', requestTimeoutMs: 30 })
  const errors: Error[] = []
  c.onError((error) => { errors.push(error) })
  await script.next()
  await script.next()
  t.match(errors[0], { code: 'FST_RT_CLIENT_AUTH_FAILED', message: /was not answered/ })
  t.not(c.state, 'closed')
})

t.test('close() while the socket is still connecting throws nothing, in the process or to the caller', async (t) => {
  // A TCP server that never answers the upgrade keeps the client's socket in CONNECTING.
  const { createServer } = await import('node:net')
  const held: import('node:net').Socket[] = []
  const server = createServer((socket) => { held.push(socket) })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { for (const socket of held) socket.destroy(); server.close() })
  const c = make(t, `ws://127.0.0.1:${(server.address() as AddressInfo).port}`)
  await new Promise<void>((resolve) => { server.once('connection', () => { resolve() }) })
  t.equal(c.state, 'connecting')
  c.close()
  t.equal(c.state, 'closed')
})
