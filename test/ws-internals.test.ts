import t from 'tap'
import { readFileSync } from 'node:fs'
import WebSocket from 'ws'
import { RealtimeSocket } from '../lib/connection/socket.js'
import { build, client, deferred } from './helpers.js'

// lib/connection/ws-internals.ts and lib/connection/socket.ts rely on these private ws details.
// If a ws upgrade breaks one, this file says which.

interface Private {
  _receiver: { _maxPayload: number }
  _extensions: Record<string, { _maxPayload: number, _options: { zlibDeflateOptions?: { level: number, memLevel: number } } } | undefined>
  _autoPong: boolean
  _closeTimeout: number
  _closeFrameReceived: boolean
}

/**
 * Whether the installed `name` is in package.json's caret range for it. Apps get the newest version
 * of the range: this file checks the one installed here, the consumer test (test/consumer/) runs
 * the documented examples, which use every one of these details, on the newest.
 */
function inDeclaredRange (name: string): { range: string, version: string, ok: boolean } {
  const ours = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { dependencies: Record<string, string> }
  const { version } = JSON.parse(readFileSync(new URL(`../node_modules/${name}/package.json`, import.meta.url), 'utf8')) as { version: string }
  const range = ours.dependencies[name] as string
  const [floor, found] = [range.slice(1), version].map((v) => v.split('.').map(Number)) as [number[], number[]]
  const atLeast = found[1] !== floor[1] ? (found[1] as number) > (floor[1] as number) : (found[2] as number) >= (floor[2] as number)
  return { range, version, ok: range.startsWith('^') && found[0] === floor[0] && atLeast }
}

t.test('ws is installed in the range package.json declares', async (t) => {
  const { range, version, ok } = inDeclaredRange('ws')
  t.ok(ok, `ws ${version} is in ${range}`)
})

t.test('per-route limits land on the private fields ws reads', async (t) => {
  const seen = deferred<Private>()
  // setSocket is ws's private entry point for a server-side upgrade; it sees every new socket.
  const proto = RealtimeSocket.prototype as unknown as { setSocket: (...args: unknown[]) => unknown }
  const original = proto.setSocket
  const sockets: RealtimeSocket[] = []
  proto.setSocket = function (this: RealtimeSocket, ...args: unknown[]) {
    sockets.push(this)
    return original.apply(this, args)
  }
  t.teardown(() => { proto.setSocket = original })
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: { maxMsgSize: 1234, autoPing: false, closeTimeout: 700, compress: { level: 6, memLevel: 5 } } }, async (conn) => {
      seen.resolve(sockets[0] as unknown as Private)
      await conn.receive()
    })
  })
  const c = await client(t, url, undefined, { perMessageDeflate: true })
  const raw = await seen.promise
  t.equal(raw._receiver._maxPayload, 1234)
  t.equal(raw._autoPong, false)
  t.equal(raw._closeTimeout, 1400)
  const deflate = raw._extensions['permessage-deflate']
  t.ok(deflate, 'compression was negotiated')
  t.equal(deflate?._maxPayload, 1234)
  t.same(deflate?._options.zlibDeflateOptions, { level: 6, memLevel: 5 })
  c.ws.close()
})

t.test('ws calls close() on the socket, still OPEN, when the peer close frame arrives', async (t) => {
  const calls: Array<{ code: number | undefined, readyState: number, received: boolean }> = []
  const original = RealtimeSocket.prototype.close
  RealtimeSocket.prototype.close = function (this: RealtimeSocket, code?: number, data?: string | Buffer) {
    calls.push({ code, readyState: this.readyState, received: (this as unknown as Private)._closeFrameReceived })
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

t.test('@fastify/websocket: after the upgrade the request no longer holds the socket, the head or the ServerResponse', async (t) => {
  const { range, version, ok } = inDeclaredRange('@fastify/websocket')
  t.ok(ok, `@fastify/websocket ${version} is in ${range}`)
  const seen = deferred<{ keys: string[], values: unknown[], response: unknown }>()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, async (conn) => {
      const raw = conn.request.raw as unknown as Record<symbol, unknown> & { socket: { _httpMessage: unknown } }
      const symbols = Object.getOwnPropertySymbols(raw).filter((key) => key.description === 'ws-socket' || key.description === 'ws-head')
      seen.resolve({
        keys: symbols.map((key) => key.description as string).sort(),
        values: symbols.map((key) => raw[key]),
        response: raw.socket._httpMessage
      })
      await conn.receive()
    })
  })
  const c = await client(t, `${url}/`)
  const state = await seen.promise
  t.same(state.keys, ['ws-head', 'ws-socket'], '@fastify/websocket keeps the socket and the head under these symbols')
  t.same(state.values, [undefined, undefined], 'both are let go after the upgrade')
  t.equal(state.response, null, 'the socket no longer points at the upgrade ServerResponse')
  c.ws.close()
  await c.closed
})

t.test('ws sender: idle is state 0 with an empty queue, and busy while a message is being compressed', async (t) => {
  const { senderIdle, textFrame } = await import('../lib/connection/ws-internals.js')
  const states = deferred<boolean[]>()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: { compress: { threshold: 0 } } }, async (conn) => {
      const ws = (conn as unknown as { ws: WebSocket }).ws
      const idle = senderIdle(ws)
      void conn.sendText('x'.repeat(100_000))
      states.resolve([idle, senderIdle(ws)])
      await conn.receive()
    })
  })
  const c = await client(t, `${url}/`)
  t.same(await states.promise, [true, false], 'idle before the send, busy while deflating')
  t.equal((await c.text()).length, 100_000)
  t.same([...textFrame(Buffer.from('hi'))], [0x81, 2, 0x68, 0x69], 'a text frame: FIN + opcode 1, unmasked length 2, the payload')
  c.ws.close()
  await c.closed
})
