import t from 'tap'
import Fastify from 'fastify'
import { once } from 'node:events'
import { readFile } from 'node:fs/promises'
import http2 from 'node:http2'
import net from 'node:net'
import tls from 'node:tls'
import WebSocket from 'ws'
import realtime from '../lib/index.js'
import { build, client, deferred, echoHandler, handshake } from './support/helpers.js'

/** A raw TCP client that has sent `bytes` (maybe none) and reads whatever comes back. */
async function stalled (port: number, bytes: string): Promise<{ socket: net.Socket, startedAt: number, received: () => string }> {
  const startedAt = Date.now()
  const socket = net.connect(port, '127.0.0.1')
  await once(socket, 'connect')
  if (bytes !== '') socket.write(bytes)
  let received = ''
  socket.on('data', (chunk: Buffer) => { received += chunk.toString('latin1') })
  return { socket, startedAt, received: () => received }
}

const fixture = (name: string): Promise<Buffer> => readFile(new URL(`support/fixtures/${name}`, import.meta.url))

t.test('a client that sends half a request line and stalls is dropped within handshakeTimeout; others are served meanwhile', async (t) => {
  const { app, url, port } = await build(t, (app) => {
    app.get('/ws', { realtime: true }, echoHandler)
    app.get('/plain', async () => 'plain')
  }, { handshakeTimeout: 1000 })
  const slow = await stalled(port, 'GET /ws?room=lob')
  const closed = once(slow.socket, 'close')
  // Served while the slow one waits: a WebSocket client and a plain request.
  const c = await client(t, `${url}/ws`)
  c.ws.send('meanwhile')
  t.equal(await c.text(), 'meanwhile')
  t.equal(await (await fetch(`http://127.0.0.1:${port}/plain`)).text(), 'plain')
  await closed
  const elapsed = Date.now() - slow.startedAt
  t.comment(`half a request line dropped after ${elapsed} ms (handshakeTimeout 1000)`)
  t.ok(elapsed >= 990, `not before its deadline (${elapsed} ms)`)
  t.ok(elapsed < 1000 + 1500, `within handshakeTimeout and a margin for a loaded machine (${elapsed} ms)`)
  t.equal(slow.received(), '', 'dropped without an answer')
  t.equal(app.realtime.metrics.refused.handshakeTimeout, 1)
  c.ws.send('after')
  t.equal(await c.text(), 'after', 'the open connection is untouched')
})

t.test('a client that never sends a byte, or stops inside its headers, is dropped too', async (t) => {
  const { app, url, port } = await build(t, (app) => {
    app.get('/ws', { realtime: true }, echoHandler)
  }, { handshakeTimeout: 150 })
  const silent = await stalled(port, '')
  const inHeaders = await stalled(port, handshake('/ws').slice(0, -4))
  await Promise.all([once(silent.socket, 'close'), once(inHeaders.socket, 'close')])
  t.equal(app.realtime.metrics.refused.handshakeTimeout, 2)
  const c = await client(t, `${url}/ws`)
  c.ws.send('next')
  t.equal(await c.text(), 'next')
})

t.test('after its first request a keep-alive connection is the app\'s: idle past handshakeTimeout, it stays', async (t) => {
  const { app, port } = await build(t, (app) => {
    app.get('/plain', async () => 'plain')
  }, { handshakeTimeout: 150 })
  const keepAlive = await stalled(port, 'GET /plain HTTP/1.1\r\nHost: x\r\n\r\n')
  await once(keepAlive.socket, 'data')
  // A later socket's drop is the clock: by then the first has idled longer than handshakeTimeout.
  const later = await stalled(port, '')
  await once(later.socket, 'close')
  t.equal(keepAlive.socket.destroyed, false, 'the keep-alive connection is open')
  keepAlive.socket.write('GET /plain HTTP/1.1\r\nHost: x\r\n\r\n')
  await once(keepAlive.socket, 'data')
  t.match(keepAlive.received(), /plain[\s\S]*HTTP\/1\.1 200 OK[\s\S]*plain$/, 'and serves its next request')
  t.equal(app.realtime.metrics.refused.handshakeTimeout, 1)
  keepAlive.socket.destroy()
})

t.test('the app\'s hooks registered before the plugin count in handshakeTimeout too', async (t) => {
  const gate = deferred()
  t.teardown(() => { gate.resolve() })
  const lines: string[] = []
  const app = Fastify({ logger: { level: 'info', stream: { write (line: string) { lines.push(line) } } } })
  app.addHook('onRequest', async (request) => { if (request.headers['x-hold'] !== undefined) await gate.promise })
  await app.register(realtime, { handshakeTimeout: 100 })
  app.get('/ws', { realtime: true }, echoHandler)
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const { port } = app.server.address() as net.AddressInfo
  const held = await stalled(port, handshake('/ws', { 'X-Hold': '1' }))
  await once(held.socket, 'close')
  t.equal(app.realtime.metrics.refused.handshakeTimeout, 1)
  t.ok(lines.some((line) => line.includes('realtime: handshake took too long, dropped')), 'logged, though before the plugin knew its request')
})

t.test('an upgrade that is a later request on a keep-alive connection has a deadline from its head', async (t) => {
  const gate = deferred()
  t.teardown(() => { gate.resolve() })
  const { app, port } = await build(t, (app) => {
    app.get('/plain', async () => 'plain')
    app.get('/ws', { realtime: true, preHandler: async () => { await gate.promise } }, echoHandler)
  }, { handshakeTimeout: 150 })
  const conn = await stalled(port, 'GET /plain HTTP/1.1\r\nHost: x\r\n\r\n')
  await once(conn.socket, 'data')
  const upgradeAt = Date.now()
  conn.socket.write(handshake('/ws'))
  await once(conn.socket, 'close')
  t.ok(Date.now() - upgradeAt >= 140, 'its deadline started with its own head')
  t.equal(app.realtime.metrics.refused.handshakeTimeout, 1)
})

t.test('an upgrade after a plain request on a keep-alive connection is served, async hooks and all', async (t) => {
  const { port } = await build(t, (app) => {
    app.get('/plain', async () => 'plain')
    app.get('/ws', { realtime: true, preHandler: async () => { await new Promise((resolve) => setImmediate(resolve)) } }, async (conn) => { await conn.sendText('upgraded') })
  })
  const conn = await stalled(port, 'GET /plain HTTP/1.1\r\nHost: x\r\n\r\n')
  await once(conn.socket, 'data')
  conn.socket.write(handshake('/ws'))
  await once(conn.socket, 'close')
  // eslint-disable-next-line no-control-regex -- a WebSocket frame header is binary
  t.match(conn.received(), /HTTP\/1\.1 200 OK[\s\S]*plain(HTTP\/1\.1 101 Switching Protocols\r\n[\s\S]*\r\n\r\n)\x81\x08upgraded/, 'the 101 and the first message follow the first response')
})

t.test('a connection of a @fastify/websocket route of the app outlives handshakeTimeout', async (t) => {
  const { app, port } = await build(t, (app) => {
    app.get('/raw', { websocket: true }, (socket) => { socket.on('message', (data: Buffer) => { socket.send(data.toString()) }) })
  }, { handshakeTimeout: 150 })
  const ws = new WebSocket(`ws://127.0.0.1:${port}/raw`)
  t.teardown(() => { ws.terminate() })
  await once(ws, 'open')
  const later = await stalled(port, '')
  await once(later.socket, 'close')
  ws.send('still here')
  const [reply] = await once(ws, 'message') as [Buffer]
  t.equal(reply.toString(), 'still here')
  t.equal(app.realtime.metrics.handshakes, 0, 'it never held a slot of the plugin')
})

t.test('on an https server the deadline starts once TLS is up, and wss is served', async (t) => {
  const [key, cert] = await Promise.all([fixture('tls-key.pem'), fixture('tls-cert.pem')])
  const app = Fastify({ https: { key, cert } })
  await app.register(realtime, { handshakeTimeout: 150 })
  app.get('/ws', { realtime: true }, echoHandler)
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const { port } = app.server.address() as net.AddressInfo
  const silent = tls.connect({ port, host: '127.0.0.1', ca: cert, servername: 'localhost' })
  await once(silent, 'secureConnect')
  await once(silent, 'close')
  t.equal(app.realtime.metrics.refused.handshakeTimeout, 1, 'a TLS client that sends no request is dropped')
  const c = await client(t, `wss://127.0.0.1:${port}/ws`, undefined, { ca: cert })
  c.ws.send('over tls')
  t.equal(await c.text(), 'over tls')
})

t.test('on an HTTP/2 server no head deadline is armed (HTTP/2 has no upgrade)', async (t) => {
  const app = Fastify({ http2: true })
  await app.register(realtime, { handshakeTimeout: 50 })
  app.get('/plain', async () => 'plain')
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const { port } = app.server.address() as net.AddressInfo
  const session = http2.connect(`http://127.0.0.1:${port}`)
  t.teardown(() => { session.close() })
  await once(session, 'connect')
  const since = Date.now()
  while (Date.now() < since + 200) await new Promise((resolve) => setImmediate(resolve))
  const stream = session.request({ ':path': '/plain' })
  let body = ''
  stream.setEncoding('utf8')
  stream.on('data', (chunk: string) => { body += chunk })
  await once(stream, 'end')
  t.equal(body, 'plain', 'a session idle for 4 × handshakeTimeout still serves')
  t.equal(app.realtime.metrics.refused.handshakeTimeout, 0)
})
