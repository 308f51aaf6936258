import t, { type Test } from 'tap'
import type { Socket } from 'node:net'
import type { FastifyInstance } from 'fastify'
import type { RealtimeConnection } from '../lib/index.js'
import { build, client, deferred } from './support/helpers.js'

// Coalesced writes rely on two things this file pins: ws writes an uncompressed frame to the socket
// synchronously inside send() (so a corked socket holds it), and Node hands the writes held by a
// corked socket to _writev in one call when it is uncorked.

function spy (socket: Socket): { writev: number[], write: number } {
  const counts = { writev: [] as number[], write: 0 }
  const raw = socket as unknown as { _writev: (chunks: unknown[], cb: () => void) => void, _write: (...args: unknown[]) => void }
  const writev = raw._writev.bind(socket)
  const write = raw._write.bind(socket)
  raw._writev = (chunks, cb) => { counts.writev.push(chunks.length); writev(chunks, cb) }
  raw._write = (...args) => { counts.write++; write(...args) }
  return counts
}

/** The TCP socket of each upgrade, kept on the request by a hook: the connection keeps a record, not the raw request. */
function keepSocket (app: FastifyInstance): void {
  app.addHook('onRequest', async (request) => { (request as unknown as { tcp: Socket }).tcp = request.raw.socket })
}

t.test('every frame sent within one event-loop turn leaves in one write, in order', async (t) => {
  const counts = deferred<{ writev: number[], write: number, heldWhileCorked: boolean }>()
  const { url } = await build(t, (app) => {
    keepSocket(app)
    app.get('/', { realtime: true }, async (conn, request) => {
      await conn.receive()
      const socket = (request as unknown as { tcp: Socket }).tcp
      const seen = spy(socket)
      void conn.sendText('one')
      const heldWhileCorked = socket.writableLength > 0 && seen.write === 0 && seen.writev.length === 0
      void conn.sendText('two')
      void conn.sendBinary(Buffer.from('three'))
      void conn.ping('four')
      await new Promise((resolve) => setImmediate(resolve))
      counts.resolve({ ...seen, heldWhileCorked })
      await conn.receive()
    })
  })
  const c = await client(t, url)
  const pinged = new Promise((resolve) => c.ws.once('ping', resolve))
  c.ws.send('go')
  t.same([await c.text(), await c.text(), (await c.next()).data.toString()], ['one', 'two', 'three'])
  await pinged
  const { writev, write, heldWhileCorked } = await counts.promise
  t.ok(heldWhileCorked, 'ws wrote the frame into the corked socket synchronously')
  t.equal(write, 0, 'no separate write per frame')
  t.equal(writev.length, 1, 'one writev for the whole turn')
  t.ok((writev[0] as number) >= 4, `holding every frame (${writev[0]} chunks)`)
  c.ws.close()
})

t.test('a lone message is not held past its turn, and frames of the next turn go out separately', async (t) => {
  const done = deferred<number[]>()
  const { url } = await build(t, (app) => {
    keepSocket(app)
    app.get('/', { realtime: true }, async (conn, request) => {
      await conn.receive()
      const seen = spy((request as unknown as { tcp: Socket }).tcp)
      await conn.sendText('first turn')
      await new Promise((resolve) => setImmediate(resolve))
      await conn.sendText('second turn')
      await new Promise((resolve) => setImmediate(resolve))
      done.resolve(seen.writev.concat(Array(seen.write).fill(1) as number[]))
      await conn.receive()
    })
  })
  const c = await client(t, url)
  c.ws.send('go')
  t.equal(await c.text(), 'first turn')
  t.equal(await c.text(), 'second turn')
  t.equal((await done.promise).length, 2, 'one write per turn')
  c.ws.close()
})

t.test('a burst published to a room in one turn does not make a fast member a slow consumer', async (t) => {
  const { Type } = await import('@sinclair/typebox')
  const { contractHandler, defineContract } = await import('../lib/index.js')
  const news = defineContract({ client: { noop: Type.Null() }, server: { item: Type.String() } })
  const { url, app } = await build(t, (app) => {
    app.get('/', { realtime: true }, contractHandler(news, { noop () {} }, { rooms: { authorize: () => true } }))
  }, { slowConsumerBytes: 64 * 1024 })
  const c = await client(t, url)
  c.ws.send(JSON.stringify({ type: '$join', data: { room: 'feed' }, id: 1 }))
  await c.text()
  const text = 'x'.repeat(16 * 1024)
  // 40 × 16 KiB in one turn: 640 KiB held by the cork, ten times the slow-consumer limit.
  await Promise.all(Array.from({ length: 40 }, () => app.realtime.publish(news, 'feed', 'item', text)))
  for (let i = 0; i < 40; i++) t.equal(JSON.parse(await c.text()).data.length, 16 * 1024)
  t.equal(app.realtime.metrics.slowConsumerCloses, 0)
})

type Coded = Error & { code?: string }
/** What each promise came to: 'sent', or the error code it was refused with. */
async function outcomes (promises: Array<Promise<unknown>>): Promise<string[]> {
  return await Promise.all(promises.map(async (promise) => await promise.then(() => 'sent', (error: Coded) => error.code ?? error.message)))
}

/**
 * A route with writeLimit 0 (every send after the first waits until it is written, so each has a
 * promise to settle) that runs `turn` in one event-loop turn on the client's first message. Resolves
 * with what the client saw, in order (messages, pings, its close code), and how each promise `turn`
 * returned settled.
 */
async function oneTurn (t: Test, turn: (conn: RealtimeConnection) => Array<Promise<unknown>>): Promise<{ events: string[], sends: string[] }> {
  const result = deferred<string[]>()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: { writeLimit: 0 } }, async (conn) => {
      await conn.receive()
      result.resolve(await outcomes(turn(conn)))
    })
  })
  const c = await client(t, url)
  const events: string[] = []
  c.ws.on('message', (data: Buffer) => { events.push(data.toString()) })
  c.ws.on('ping', (data: Buffer) => { events.push(`ping ${data.toString()}`) })
  const closed = new Promise<void>((resolve) => { c.ws.once('close', (code: number) => { events.push(`close ${code}`); resolve() }) })
  c.ws.send('go')
  await closed
  return { events, sends: await result.promise }
}

t.test('terminate() in the turn that sent frames writes them first: every send and ping resolves and the peer gets them before the drop', async (t) => {
  const { events, sends } = await oneTurn(t, (conn) => {
    const sent = [conn.sendText('a'), conn.sendText('b'), conn.ping('c'), conn.sendBinary(Buffer.from('d'))]
    conn.terminate()
    return sent
  })
  t.same(events, ['a', 'b', 'ping c', 'd', 'close 1006'], 'all of it, in order, then the drop without a close frame')
  t.same(sends, ['sent', 'sent', 'sent', 'sent'])
})

t.test('terminate() while the peer reads nothing settles every pending send: refused with FST_RT_CONNECTION_CLOSED where it was not written', async (t) => {
  const filled = deferred()
  const result = deferred<string[]>()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: { writeLimit: 1024 } }, async (conn) => {
      await conn.receive()
      const chunk = Buffer.alloc(64 * 1024)
      // Until the kernel takes no more: what stays buffered past a turn is what the peer did not read.
      for (let i = 0; i < 2000 && conn.bufferedAmount <= 1024; i++) {
        await conn.sendBinary(chunk)
        await new Promise((resolve) => setImmediate(resolve))
      }
      filled.resolve()
      const sends = [conn.sendBinary(chunk), conn.ping(), conn.sendText('last')]
      conn.terminate()
      result.resolve(await outcomes(sends))
    })
  })
  const c = await client(t, url)
  const socket = (c.ws as unknown as { _socket: Socket })._socket
  c.ws.send('go')
  socket.pause()
  await filled.promise
  t.same(await result.promise, ['FST_RT_CONNECTION_CLOSED', 'FST_RT_CONNECTION_CLOSED', 'FST_RT_CONNECTION_CLOSED'])
})

t.test('close() in the turn that sent frames loses none: they reach the peer in order before the close frame, and every send resolves', async (t) => {
  const { events, sends } = await oneTurn(t, (conn) => [
    conn.sendText('m0'), conn.sendText('m1'), conn.ping('p'), conn.sendText('m2'), conn.close({ code: 4001, reason: 'done' })
  ])
  t.same(events, ['m0', 'm1', 'ping p', 'm2', 'close 4001'])
  t.same(sends, ['sent', 'sent', 'sent', 'sent', 'sent'])
})

t.test('close() then terminate() in one turn: the frames and the close frame before the drop still go out', async (t) => {
  const { events, sends } = await oneTurn(t, (conn) => {
    const sent = [conn.sendText('x'), conn.sendText('y')]
    void conn.close({ code: 4002 })
    conn.terminate()
    return sent
  })
  t.same(events, ['x', 'y', 'close 4002'], 'the peer read the close frame before the drop')
  t.same(sends, ['sent', 'sent'])
})
