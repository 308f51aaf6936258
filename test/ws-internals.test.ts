import t, { type Test } from 'tap'
import { Type } from '@sinclair/typebox'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { once } from 'node:events'
import type { IncomingMessage } from 'node:http'
import WebSocket, { WebSocketServer } from 'ws'
import * as wsModule from 'ws'
import { contractHandler, defineContract, type RealtimeConnection, type WSMessage } from '../lib/index.js'
import { RealtimeSocket } from '../lib/connection/socket.js'
import { kRouteServer } from '../lib/symbols.js'
import {
  probeWs, releaseUpgrade, senderIdle, textFrame, wsFeatures, type WsFeatures, type WsModule
} from '../lib/connection/ws-internals.js'
import { build, client, deferred } from './support/helpers.js'
import { closePayload, frame, rawClient } from './support/frames.js'

// lib/connection/ws-internals.ts holds every private reach into ws, @fastify/websocket and Node;
// each is probed at startup and falls back to public API. This file checks the probes on the
// installed versions and on doctored ones, and runs the connection with every fallback in use.

const ws = wsModule as unknown as Required<WsModule>

t.test('the installed ws passes every probe', async (t) => {
  t.same(probeWs(ws), { sharedFrames: true, closeFrameFlag: true })
  t.same(wsFeatures, { sharedFrames: true, closeFrameFlag: true }, 'what the plugin runs with')
  t.same([...textFrame(Buffer.from('hi')) as Buffer], [0x81, 2, 0x68, 0x69], 'a text frame: FIN + opcode 1, unmasked length 2, the payload')
})

t.test('a ws without what the fast path needs fails its probe', async (t) => {
  const frames = (frame: NonNullable<Required<WsModule>['Sender']['frame']>, Sender = ws.Sender): WsModule => ({
    WebSocket: ws.WebSocket,
    Sender: Object.assign(class extends Sender {}, { frame })
  })
  t.equal(probeWs({ WebSocket: ws.WebSocket }).sharedFrames, false, 'no Sender export')
  t.equal(probeWs({ WebSocket: ws.WebSocket, Sender: class {} as unknown as Required<WsModule>['Sender'] }).sharedFrames, false, 'no Sender.frame')
  t.equal(probeWs(frames(() => { throw new Error('changed signature') })).sharedFrames, false, 'a frame() that throws')
  t.equal(probeWs(frames(() => [Buffer.from([0x81, 2]), Buffer.from('ho')])).sharedFrames, false, 'a frame() with other bytes')
  const renamed = class { _queue = []; state = 0 } as unknown as Required<WsModule>['Sender']
  t.equal(probeWs(frames(ws.Sender.frame as NonNullable<typeof ws.Sender.frame>, renamed)).sharedFrames, false, 'a sender whose state field was renamed')
  const noSender = class extends ws.WebSocket { constructor (...args: [null, undefined, object]) { super(...args); delete (this as { _sender?: unknown })._sender } }
  t.equal(probeWs({ WebSocket: noSender, Sender: ws.Sender }).sharedFrames, false, 'a socket without _sender')
  const noFlag = class extends ws.WebSocket { constructor (...args: [null, undefined, object]) { super(...args); delete (this as { _closeFrameReceived?: unknown })._closeFrameReceived } }
  t.same(probeWs({ WebSocket: noFlag, Sender: ws.Sender }), { sharedFrames: true, closeFrameFlag: false }, 'a socket without _closeFrameReceived')
})

t.test('ws sender: idle is state 0 with an empty queue, busy while a message is being compressed, never idle before it has a socket', async (t) => {
  t.equal(senderIdle(new WebSocket(null as unknown as string, undefined, {})), false)
  const states = deferred<boolean[]>()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: { compress: { threshold: 0 } } }, async (conn) => {
      const socket = (conn as unknown as { ws: WebSocket }).ws
      const idle = senderIdle(socket)
      void conn.sendText('x'.repeat(100_000))
      states.resolve([idle, senderIdle(socket)])
      await conn.receive()
    })
  })
  const c = await client(t, `${url}/`, undefined, { perMessageDeflate: true })
  t.same(await states.promise, [true, false], 'idle before the send, busy while deflating')
  t.equal((await c.text()).length, 100_000)
  c.ws.close()
  await c.closed
})

t.test('each route is upgraded by a ws server with its own settings as public options; routes that agree share one', async (t) => {
  const servers = new Map<string, WebSocketServer>()
  const seen = deferred()
  const remember = (app: FastifyInstance, path: string, realtime: object): void => {
    // The route's options stay behind with Fastify's request: a hook copies what the handler reads.
    const keep = (request: FastifyRequest, _reply: unknown, done: () => void): void => {
      (request as unknown as { routeServer: unknown }).routeServer = (request.routeOptions.config as unknown as { [kRouteServer]: WebSocketServer })[kRouteServer]
      done()
    }
    app.get(path, { realtime, onRequest: keep }, async (conn) => {
      servers.set(path, (conn.request as unknown as { routeServer: WebSocketServer }).routeServer)
      if (servers.size === 3) seen.resolve()
      await conn.receive()
    })
  }
  const { url } = await build(t, (app) => {
    remember(app, '/a', { maxMsgSize: 1234, autoPing: false, closeTimeout: 700, compress: { level: 6, memLevel: 5 } })
    remember(app, '/b', { maxMsgSize: 1234, autoPing: false, closeTimeout: 700, compress: { level: 6, memLevel: 5, threshold: 10 } })
    remember(app, '/c', { maxMsgSize: 99 })
  })
  for (const path of ['/a', '/b', '/c']) await client(t, `${url}${path}`, undefined, { perMessageDeflate: true })
  await seen.promise
  const a = servers.get('/a') as WebSocketServer
  t.match(a.options, {
    noServer: true,
    clientTracking: false,
    WebSocket: RealtimeSocket,
    maxPayload: 1234,
    autoPong: false,
    closeTimeout: 1400,
    perMessageDeflate: { threshold: 0, zlibDeflateOptions: { level: 6, memLevel: 5 } }
  })
  t.equal(servers.get('/b'), a, 'threshold is ours, not ws\'s: the same server')
  t.match(servers.get('/c')?.options, { maxPayload: 99, autoPong: true, closeTimeout: 20_000, perMessageDeflate: false })
})

t.test('per-route limits hold on the wire: maxMsgSize (also inflated), autoPing off, compression negotiated', async (t) => {
  const pinged = deferred<WSMessage>()
  const { url } = await build(t, (app) => {
    app.get('/small', { realtime: { maxMsgSize: 100, compress: true } }, async (conn) => {
      await conn.sendText(`${conn.request.headers['sec-websocket-extensions'] ?? ''}`)
      await conn.receive()
    })
    app.get('/pings', { realtime: { autoPing: false } }, async (conn) => {
      pinged.resolve(await conn.receive())
      await conn.receive()
    })
  }, { maxMsgSize: 1000 })
  const small = await client(t, `${url}/small`, undefined, { perMessageDeflate: true })
  t.match(await small.text(), /^permessage-deflate/, 'compression was negotiated')
  // 500 bytes of one letter deflate to a few: the limit counts the inflated size.
  small.ws.send('a'.repeat(500), { compress: true })
  t.equal((await small.closed).code, 1009)
  const pings = await client(t, `${url}/pings`)
  const pong = once(pings.ws, 'pong')
  pings.ws.ping('p')
  t.same(await pinged.promise, { type: 'ping', data: Buffer.from('p'), extra: null }, 'the handler sees the ping')
  const raced = await Promise.race([pong.then(() => 'pong'), new Promise((resolve) => setImmediate(resolve, 'none'))])
  t.equal(raced, 'none', 'ws did not answer it')
})

/** Runs `body` with ws features switched off, as if a newer ws had changed them. */
function without (t: Test, off: Array<keyof WsFeatures>): void {
  const saved = { ...wsFeatures }
  for (const name of off) wsFeatures[name] = false
  t.teardown(() => { Object.assign(wsFeatures, saved) })
}

const chat = defineContract({
  client: { enter: { data: Type.String(), reply: Type.String() } },
  server: { message: Type.Object({ n: Type.Integer() }) }
})

t.test('fallbacks: with every private feature off, messages, broadcasts, limits and close handshakes behave the same', async (t) => {
  without(t, ['sharedFrames', 'closeFrameFlag'])
  t.equal(textFrame(Buffer.from('hi')), null, 'no shared frames are built')
  const deferredClose = deferred<{ close: WSMessage, code: number | null }>()
  const closes = deferred<{ messages: WSMessage[], code: number | null, error: string | undefined }>()
  const { url, app, port } = await build(t, (app) => {
    app.get('/echo', { realtime: { maxMsgSize: 64 } }, async (conn) => {
      for await (const message of conn) if (message.type === 'text') await conn.sendText(message.data)
    })
    app.get('/rooms', { realtime: true }, contractHandler(chat, { enter: async (room, ctx) => (await ctx.rooms.join(room)).room }))
    app.get('/late', { realtime: { autoClose: false } }, async (conn) => {
      const close = await conn.receive()
      await conn.sendText('parting words')
      await conn.close({ code: 4002, reason: 'bye' })
      deferredClose.resolve({ close, code: conn.closeCode })
    })
    app.get('/plain', { realtime: true }, async (conn) => {
      const messages: WSMessage[] = []
      for (;;) {
        const message = await conn.receive()
        messages.push(message)
        if (message.type === 'closed') break
      }
      closes.resolve({ messages, code: conn.closeCode, error: (conn.exception as { code?: string } | null)?.code })
    })
  })

  const echo = await client(t, `${url}/echo`)
  echo.ws.send('hello')
  t.equal(await echo.text(), 'hello', 'a message and its answer')
  echo.ws.send('x'.repeat(65))
  t.equal((await echo.closed).code, 1009, 'maxMsgSize')

  const members = [await client(t, `${url}/rooms`), await client(t, `${url}/rooms`), await client(t, `${url}/rooms`, undefined, { perMessageDeflate: true })]
  for (const member of members) {
    member.ws.send(JSON.stringify({ type: 'enter', data: 'lobby', id: 1 }))
    t.same(JSON.parse(await member.text()), { type: 'enter:reply', data: 'lobby', id: 1 })
  }
  for (let n = 0; n < 50; n++) await app.realtime.publish(chat, 'lobby', 'message', { n })
  for (const member of members) {
    const got: number[] = []
    for (let n = 0; n < 50; n++) got.push((JSON.parse(await member.text()) as { data: { n: number } }).data.n)
    t.same(got, Array.from({ length: 50 }, (_, n) => n), 'every broadcast, in order, through ws.send()')
  }
  t.equal(app.realtime.stats.delivered, 150)

  const late = await client(t, `${url}/late`)
  late.ws.close(4001, 'client bye')
  t.equal(await late.text(), 'parting words', 'autoClose off: the reply to a peer close waits for the handler')
  t.same(await late.closed, { code: 4002, reason: 'bye' })
  t.same(await deferredClose.promise, { close: { type: 'close', data: 4001, extra: 'client bye' }, code: 4001 })

  // An empty close frame (no code) is the peer's close too; a protocol error is not.
  const empty = await rawClient(port, '/late')
  empty.send(frame(0x8))
  t.match(await empty.next(), { opcode: 0x1, payload: Buffer.from('parting words') })
  t.match(await empty.next(), { opcode: 0x8 })
  empty.send(frame(0x8, closePayload(4002)))
  await empty.closed
  const broken = await rawClient(port, '/plain')
  broken.send(frame(0x3, 'reserved opcode'))
  const result = await closes.promise
  t.equal(result.error, 'FST_RT_PROTOCOL_ERROR')
  t.notOk(result.messages.some((message) => message.type === 'close'), 'a protocol error is not taken for a peer close')
  t.equal(result.code, 1006)
})

t.test('a @fastify/websocket that upgrades past the bridge: routes on the plugin\'s settings still work, others are refused with 1011', async (t) => {
  const lines: string[] = []
  const { url, app } = await build(t, (app) => {
    app.get('/same', { realtime: true }, async (conn) => {
      await conn.sendText('served')
      await conn.receive()
    })
    app.get('/own', { realtime: { maxMsgSize: 10 } }, async (conn) => { await conn.receive() })
  }, {}, { logger: { level: 'error', stream: { write (line: string) { lines.push(line) } } } })
  // The bridge is an own property of @fastify/websocket's server; without it, ws's method runs.
  delete (app.websocketServer as unknown as { handleUpgrade?: unknown }).handleUpgrade
  const same = await client(t, `${url}/same`)
  t.equal(await same.text(), 'served')
  const own = await client(t, `${url}/own`)
  t.same(await own.closed, { code: 1011, reason: 'Internal error' })
  t.match(lines.join(''), /did not reach this route's ws server/)
  same.ws.close()
  await same.closed
})

t.test('app.injectWS() upgrades a realtime route through its own server, on the stream it made', async (t) => {
  const { app } = await build(t, (app) => {
    app.get('/echo', { realtime: { maxMsgSize: 10 } }, async (conn) => {
      const message = await conn.receiveText()
      await conn.sendText(message)
      // An injected stream closes when destroyed, not after a close handshake.
      conn.terminate()
    })
  })
  const socket = await app.injectWS('/echo')
  const closed = once(socket, 'close')
  socket.send('hello')
  const [data] = await once(socket, 'message') as [Buffer]
  t.equal(data.toString(), 'hello')
  await closed
})

t.test('@fastify/websocket: after the upgrade the TCP socket no longer points at the upgrade ServerResponse', async (t) => {
  const seen = deferred<unknown>()
  const { url } = await build(t, (app) => {
    app.addHook('onRequest', async (request) => {
      (request as unknown as { tcp: unknown }).tcp = request.raw.socket
    })
    app.get('/', { realtime: true }, async (conn: RealtimeConnection) => {
      const tcp = (conn.request as unknown as { tcp: { _httpMessage: unknown } }).tcp
      seen.resolve(tcp._httpMessage)
      await conn.receive()
    })
  })
  const c = await client(t, `${url}/`)
  t.equal(await seen.promise, null, 'the socket no longer points at the upgrade ServerResponse')
  c.ws.close()
  await c.closed
  // Found as not expected (no socket, no ServerResponse): nothing is let go, nothing fails.
  const bare = { socket: undefined } as unknown as IncomingMessage
  releaseUpgrade(bare)
  t.same(bare, { socket: undefined })
})

t.test('ws calls close() on the socket, still OPEN, when the peer close frame arrives', async (t) => {
  const calls: Array<{ code: number | undefined, readyState: number, received: unknown }> = []
  const original = RealtimeSocket.prototype.close
  RealtimeSocket.prototype.close = function (this: RealtimeSocket, code?: number, data?: string | Buffer) {
    calls.push({ code, readyState: this.readyState, received: (this as unknown as { _closeFrameReceived: unknown })._closeFrameReceived })
    return original.call(this, code, data)
  }
  t.teardown(() => { RealtimeSocket.prototype.close = original })
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, async (conn) => { await conn.receive() })
  })
  const c = await client(t, url)
  c.ws.close(4321)
  await c.closed
  t.same(calls[0], { code: 4321, readyState: WebSocket.OPEN, received: true })
})
