import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { PassThrough } from 'node:stream'
import WebSocket from 'ws'
import realtime from '../lib/index.js'
import { destroyOnError } from '../lib/handshake/handshakes.js'
import { Client, deferred } from './support/helpers.js'
import { closeCodeOfFrame, frame, rawClient } from './support/frames.js'

async function listening (setup: (app: FastifyInstance) => void, closeTimeout = 10_000): Promise<{ app: FastifyInstance, port: number }> {
  const app = Fastify()
  await app.register(realtime, { closeTimeout })
  setup(app)
  await app.listen({ host: '127.0.0.1', port: 0 })
  return { app, port: (app.server.address() as AddressInfo).port }
}

t.test('app.close() closes every connection with 1001 after what the handler already sent', async (t) => {
  const ready = deferred()
  let opened = 0
  const { app, port } = await listening((app) => {
    app.get('/', { realtime: true }, async (conn) => {
      await conn.sendText('before shutdown')
      if (++opened === 2) ready.resolve()
      for await (const message of conn) void message
    })
  })
  const clients = [new Client(new WebSocket(`ws://127.0.0.1:${port}/`)), new Client(new WebSocket(`ws://127.0.0.1:${port}/`))]
  await ready.promise
  await app.close()
  for (const c of clients) {
    t.equal(await c.text(), 'before shutdown')
    t.same(await c.closed, { code: 1001, reason: 'Server shutting down' })
  }
})

/** An app whose one connection is open and never answers a close, with closeTimeout 150 ms. */
async function withStuckPeer (): Promise<{ app: FastifyInstance, port: number, stuck: Awaited<ReturnType<typeof rawClient>> }> {
  const stuckOpen = deferred()
  const { app, port } = await listening((app) => {
    app.get('/', { realtime: true }, async (conn) => {
      stuckOpen.resolve()
      await conn.receive()
    })
  }, 150)
  const stuck = await rawClient(port, '/')
  await stuckOpen.promise
  return { app, port, stuck }
}

/** The HTTP status a new upgrade gets. */
async function upgradeStatus (port: number): Promise<number> {
  const late = new WebSocket(`ws://127.0.0.1:${port}/`)
  const [, response] = await once(late, 'unexpected-response') as [unknown, { statusCode: number }]
  late.on('error', () => {})
  late.terminate()
  return response.statusCode
}

t.test('during shutdown new upgrades get 503, and a stuck peer holds the close no longer than closeTimeout', async (t) => {
  const { app, port, stuck } = await withStuckPeer()
  const started = Date.now()
  const closing = app.close()
  t.equal(closeCodeOfFrame(await stuck.next()), 1001, 'the stuck peer is asked to close')
  t.equal(await upgradeStatus(port), 503)
  await closing
  const elapsed = Date.now() - started
  t.ok(elapsed >= 140 && elapsed < 5000, `close waited about closeTimeout (${elapsed} ms)`)
  await stuck.closed
})

t.test('an upgrade during shutdown still gets 503 when @fastify/websocket takes its upgrade listener away first (11.3.7 and later)', async (t) => {
  const { app, port, stuck } = await withStuckPeer()
  // The plugin's two listeners come first (prepended) and last; @fastify/websocket's sits between.
  const listeners = app.server.listeners('upgrade')
  const closing = app.close()
  for (const listener of listeners.slice(1, -1)) app.server.removeListener('upgrade', listener as () => void)
  t.equal(closeCodeOfFrame(await stuck.next()), 1001)
  t.equal(await upgradeStatus(port), 503, 'Fastify answered it, routed by the plugin')
  await closing
  await stuck.closed
})

t.test('a socket the plugin routes itself is guarded: an error destroys it instead of going uncaught', async (t) => {
  const socket = new PassThrough()
  socket.on('error', destroyOnError)
  socket.emit('error', new Error('reset by peer'))
  t.ok(socket.destroyed)
})

t.test('a connection whose handler is closing already is waited for, not closed twice', async (t) => {
  const { app, port } = await listening((app) => {
    app.get('/', { realtime: true }, async (conn) => {
      await conn.receive()
      await conn.close({ code: 4000 })
    })
  })
  const raw = await rawClient(port, '/')
  raw.send(frame(0x1, 'close yourself'))
  t.equal(closeCodeOfFrame(await raw.next()), 4000)
  const closing = app.close()
  raw.send(frame(0x8, Buffer.from([0x03, 0xe8])))
  await closing
  t.equal(await raw.next(), null, 'one close frame only')
})
