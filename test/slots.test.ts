import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import realtime, { tokenAuth } from '../lib/index.js'
import { attempt, build, client, deferred, echoHandler, handshake } from './support/helpers.js'

/** Waits, turn by turn, until the server side shows `condition`. */
async function until (condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setImmediate(resolve))
}

/** A raw TCP handshake, written and left open. */
async function rawOpen (port: number, request: string): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write(request)
  socket.resume()
  return socket
}

function openConnections (app: FastifyInstance): number {
  return Object.values(app.realtime.metrics.connections).reduce((sum, count) => sum + count, 0)
}

/** Nothing held: no handshake slot, no connection, and the address's one slot can be taken again. */
async function assertDrained (t: Test, app: FastifyInstance, url: string): Promise<void> {
  await until(() => app.realtime.metrics.handshakes === 0 && openConnections(app) === 0)
  t.pass('no slot is held')
  const c = await client(t, url)
  c.ws.send('next')
  t.equal(await c.text(), 'next', 'the next client is served')
  c.ws.close()
  await c.closed
  await until(() => openConnections(app) === 0)
}

t.test('10 concurrent handshakes held by an async tokenAuth with maxConnectionsPerIp 3: 3 are upgraded, 7 get 429', async (t) => {
  const gate = deferred()
  t.teardown(() => { gate.resolve() })
  const { app, url } = await build(t, (app) => {
    app.get('/', {
      realtime: true,
      onRequest: tokenAuth({ verify: async (token) => { await gate.promise; return token } })
    }, echoHandler)
  }, { maxConnectionsPerIp: 3 })
  const attempts = Array.from({ length: 10 }, () => attempt(t, `${url}/?token=user`))
  await until(() => app.realtime.metrics.refused.maxConnectionsPerIp === 7)
  t.equal(app.realtime.metrics.handshakes, 3, 'three handshakes hold a slot while verify waits')
  gate.resolve()
  const statuses = (await Promise.all(attempts)).map(({ status }) => status)
  t.same(statuses.filter((status) => status === 101).length, 3)
  t.same(statuses.filter((status) => status === 429).length, 7)
  t.equal(app.realtime.metrics.handshakes, 0, 'their slots passed to the connections')
  t.equal(app.realtime.metrics.connections['/'], 3)
  for (const { ws, status } of await Promise.all(attempts)) if (status === 101) ws.close()
  await until(() => openConnections(app) === 0)
  // The three freed slots are taken again, and no more.
  const again = await Promise.all(Array.from({ length: 4 }, () => attempt(t, `${url}/?token=user`)))
  t.same(again.map(({ status }) => status).sort(), [101, 101, 101, 429])
})

t.test('maxConnections counts handshakes in their hooks too (503)', async (t) => {
  const gate = deferred()
  t.teardown(() => { gate.resolve() })
  const { app, url } = await build(t, (app) => {
    app.get('/', { realtime: true, preHandler: async () => { await gate.promise } }, echoHandler)
  }, { maxConnections: 2 })
  const held = [attempt(t, url), attempt(t, url)]
  await until(() => app.realtime.metrics.handshakes === 2)
  t.equal((await attempt(t, url)).status, 503)
  gate.resolve()
  t.same((await Promise.all(held)).map(({ status }) => status), [101, 101])
})

t.test('a slot is given back when a later hook refuses the handshake', async (t) => {
  const { app, url } = await build(t, (app) => {
    app.get('/', {
      realtime: true,
      preHandler: async (request, reply) => { if (request.query !== null && 'deny' in (request.query as object)) await reply.code(401).send('no') }
    }, echoHandler)
  }, { maxConnectionsPerIp: 1 })
  t.equal((await attempt(t, `${url}/?deny`)).status, 401)
  await assertDrained(t, app, url)
})

t.test('a slot is given back when the client goes away during the hooks', async (t) => {
  const gate = deferred()
  const waiting = deferred()
  t.teardown(() => { gate.resolve() })
  const { app, url, port } = await build(t, (app) => {
    app.get('/', {
      realtime: true,
      preHandler: async (request) => {
        if (request.headers['x-hold'] === undefined) return
        waiting.resolve()
        await gate.promise
      }
    }, echoHandler)
  }, { maxConnectionsPerIp: 1 })
  const socket = await rawOpen(port, handshake('/', { 'X-Hold': '1' }))
  await waiting.promise
  t.equal(app.realtime.metrics.handshakes, 1)
  socket.destroy()
  // The server reads nothing of an upgrade socket before the upgrade, so it learns of the
  // close when it answers (or at the deadline).
  gate.resolve()
  await assertDrained(t, app, url)
})

t.test('a hook that finishes after handshakeTimeout dropped its socket takes no slot', async (t) => {
  const gate = deferred()
  const checked = deferred()
  const serverSide = deferred<net.Socket>()
  t.teardown(() => { gate.resolve() })
  const { app, url, port } = await build(t, (app) => {
    app.server.once('upgrade', (_request, socket: net.Socket) => { serverSide.resolve(socket) })
    // App-level hooks run before the route's handshake check.
    app.addHook('onRequest', async (request) => { if (request.headers['x-hold'] !== undefined) await gate.promise })
    app.get('/', {
      realtime: true,
      onRequest: async (request) => { if (request.headers['x-hold'] !== undefined) checked.resolve() }
    }, echoHandler)
  }, { maxConnectionsPerIp: 1, handshakeTimeout: 100 })
  await rawOpen(port, handshake('/', { 'X-Hold': '1' }))
  const dropped = await serverSide.promise
  if (!dropped.closed) await once(dropped, 'close')
  t.equal(app.realtime.metrics.refused.handshakeTimeout, 1)
  gate.resolve()
  await checked.promise
  t.equal(app.realtime.metrics.handshakes, 0, 'the check passed without taking a slot')
  await assertDrained(t, app, url)
})

t.test('a slot is given back when handshakeTimeout drops the handshake', async (t) => {
  const gate = deferred()
  t.teardown(() => { gate.resolve() })
  const { app, url, port } = await build(t, (app) => {
    app.get('/', { realtime: true, preHandler: async (request) => { if (request.headers['x-hold'] !== undefined) await gate.promise } }, echoHandler)
  }, { maxConnectionsPerIp: 1, handshakeTimeout: 100 })
  const socket = await rawOpen(port, handshake('/', { 'X-Hold': '1' }))
  await once(socket, 'close')
  t.equal(app.realtime.metrics.refused.handshakeTimeout, 1)
  await assertDrained(t, app, url)
})

t.test('a slot is given back when ws refuses an upgrade the hooks let through', async (t) => {
  const { app, url, port } = await build(t, (app) => {
    app.get('/', { realtime: { protocols: ['a'] } }, echoHandler)
  }, { maxConnectionsPerIp: 1 })
  // A repeated subprotocol is a list of tokens, but ws refuses it with its own 400.
  const socket = await rawOpen(port, handshake('/', { 'Sec-WebSocket-Protocol': 'a, a' }))
  const [head] = await once(socket, 'data') as [Buffer]
  t.match(head.toString('latin1'), /^HTTP\/1\.1 400 /)
  await assertDrained(t, app, url)
})

t.test('a slot is given back when the handler throws, and when the connection closes', async (t) => {
  const { app, url } = await build(t, (app) => {
    app.get('/boom', { realtime: true }, () => { throw new Error('handler failed') })
    app.get('/', { realtime: true }, echoHandler)
  }, { maxConnectionsPerIp: 1 })
  const c = await client(t, `${url}/boom`)
  t.equal((await c.closed).code, 1011)
  await assertDrained(t, app, url)
})

t.test('a handshake held while the app closes gets 503 from ws and gives its slot back', async (t) => {
  const gate = deferred()
  const waiting = deferred()
  const app = Fastify()
  await app.register(realtime, { maxConnectionsPerIp: 1 })
  app.get('/', { realtime: true, preHandler: async () => { waiting.resolve(); await gate.promise } }, echoHandler)
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as net.AddressInfo
  const held = attempt(t, `ws://127.0.0.1:${port}/`)
  await waiting.promise
  t.equal(app.realtime.metrics.handshakes, 1)
  const wsClosed = once(app.websocketServer, 'close')
  const closing = app.close()
  await wsClosed
  gate.resolve()
  t.equal((await held).status, 503)
  await closing
  t.equal(app.realtime.metrics.handshakes, 0)
})

t.test('on a unix socket (no address) only the total limit counts', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'realtime-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const path = join(dir, 'app.sock')
  const app = Fastify()
  await app.register(realtime, { maxConnections: 2, maxConnectionsPerIp: 1 })
  app.get('/', { realtime: true }, echoHandler)
  await app.listen({ path })
  t.teardown(() => app.close())
  const open = (): ReturnType<typeof attempt> => attempt(t, `ws+unix://${path}:/`)
  const first = await open()
  const second = await open()
  t.same([first.status, second.status], [101, 101], 'two from "no address" pass a per-address limit of 1')
  t.equal((await open()).status, 503)
  first.ws.close()
  await until(() => openConnections(app) === 1)
  t.equal((await open()).status, 101)
})
