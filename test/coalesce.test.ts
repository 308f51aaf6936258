import t from 'tap'
import type { Socket } from 'node:net'
import { build, client, deferred } from './helpers.js'

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

t.test('every frame sent within one event-loop turn leaves in one write, in order', async (t) => {
  const counts = deferred<{ writev: number[], write: number, heldWhileCorked: boolean }>()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, async (conn, request) => {
      await conn.receive()
      const socket = request.raw.socket
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
    app.get('/', { realtime: true }, async (conn, request) => {
      await conn.receive()
      const seen = spy(request.raw.socket)
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
