// The contract router's synchronous path: messages taken without a promise each, plain-value replies
// written in the same turn, and the cases where it has to hand over to the waiting path.
import t from 'tap'
import { Type } from '@sinclair/typebox'
import type { Socket } from 'node:net'
import type WebSocket from 'ws'
import { contractHandler, defineContract, type RealtimeConnection } from '../lib/index.js'
import { build, client, deferred } from './support/helpers.js'

const contract = defineContract({
  client: {
    echo: { data: Type.Object({ n: Type.Integer(), pad: Type.String() }), reply: Type.Object({ n: Type.Integer(), pad: Type.String() }) },
    wait: { data: Type.String(), reply: Type.String() }
  },
  server: {}
})

function pauseReading (ws: WebSocket): Socket {
  const socket = (ws as unknown as { _socket: Socket })._socket
  socket.pause()
  return socket
}

t.test('a reader that stops reading gets every plain-value reply, in order, once it reads again', async (t) => {
  const handled: number[] = []
  const hundredth = deferred()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: { writeLimit: 1024 } }, contractHandler(contract, {
      echo: (data) => {
        handled.push(data.n)
        if (data.n === 99) hundredth.resolve()
        return data
      },
      wait: (text) => text
    }, { rateLimit: false, maxInFlight: 4 }))
  })
  const c = await client(t, `${url}/`)
  const socket = pauseReading(c.ws)
  const pad = 'x'.repeat(8 * 1024)
  for (let n = 0; n < 100; n++) c.ws.send(JSON.stringify({ type: 'echo', data: { n, pad }, id: n }))
  socket.resume()
  await hundredth.promise
  for (let n = 0; n < 100; n++) {
    const reply = JSON.parse(await c.text()) as { type: string, id: number, data: { n: number, pad: string } }
    if (reply.id !== n || reply.data.n !== n || reply.data.pad !== pad) t.fail(`reply ${n} out of order or damaged: ${JSON.stringify(reply).slice(0, 80)}`)
  }
  t.same(handled, Array.from({ length: 100 }, (_, n) => n), 'every message was handled once, in order')
  c.ws.send(JSON.stringify({ type: 'wait', data: 'after', id: 'a' }))
  t.same(JSON.parse(await c.text()), { type: 'wait:reply', data: 'after', id: 'a' }, 'the connection still answers')
})

t.test('plain-value replies to a peer that does not read close it as a slow consumer (4008)', async (t) => {
  const { url, app } = await build(t, (app) => {
    app.get('/', { realtime: { writeLimit: 1024 * 1024, maxBufferedBytes: 16 * 1024 } }, contractHandler(contract, {
      echo: (data) => data,
      wait: (text) => text
    }, { rateLimit: false }))
  })
  const c = await client(t, `${url}/`)
  const socket = pauseReading(c.ws)
  const pad = 'y'.repeat(32 * 1024)
  // The socket buffers of both sides take a few MiB before ws has to hold anything back.
  for (let n = 0; n < 400; n++) c.ws.send(JSON.stringify({ type: 'echo', data: { n, pad }, id: n }))
  while (app.realtime.metrics.slowConsumerCloses === 0) await new Promise((resolve) => setImmediate(resolve))
  socket.resume()
  t.equal((await c.closed).code, 4008)
})

t.test('a request that times out is answered at its own deadline, not at an earlier request\'s', async (t) => {
  const first = deferred<string>()
  const started: Array<() => void> = []
  const firstStarted = deferred()
  const secondStarted = deferred()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, contractHandler(contract, {
      echo: (data) => data,
      wait: async (text) => {
        if (text === 'first') {
          firstStarted.resolve()
          return await first.promise
        }
        secondStarted.resolve()
        return await new Promise<string>((resolve) => { started.push(() => { resolve('never') }) })
      }
    }, { requestTimeout: 200 }))
  })
  t.teardown(() => { for (const finish of started) finish() })
  const c = await client(t, `${url}/`)
  c.ws.send(JSON.stringify({ type: 'wait', data: 'first', id: 1 }))
  await firstStarted.promise
  // The second request starts 100 ms later, so its deadline is well after the first one's, even
  // when the clock's timer fires late on a busy machine. Time passing is what is tested here.
  const since = Date.now()
  while (Date.now() < since + 100) await new Promise((resolve) => setImmediate(resolve))
  const secondSent = Date.now()
  c.ws.send(JSON.stringify({ type: 'wait', data: 'second', id: 2 }))
  await secondStarted.promise
  first.resolve('done')
  t.same(JSON.parse(await c.text()), { type: 'wait:reply', data: 'done', id: 1 })
  const timeout = JSON.parse(await c.text()) as { id: number, data: { code: string } }
  t.equal(timeout.id, 2)
  t.equal(timeout.data.code, 'FST_RT_REQUEST_TIMEOUT')
  t.ok(Date.now() - secondSent >= 199, 'the second request had its whole 200 ms')
})

t.test('sendTextNow refuses once the connection is closing, and sendText reports why', async (t) => {
  const outcome = deferred<[boolean, string]>()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, async (conn: RealtimeConnection) => {
      const closing = conn.close()
      const code = await conn.sendText('late').then(() => 'sent', (error: Error & { code: string }) => error.code)
      outcome.resolve([conn.sendTextNow('late'), code])
      await closing
    })
  })
  const c = await client(t, `${url}/`)
  t.same(await outcome.promise, [false, 'FST_RT_CONNECTION_CLOSED'])
  t.equal((await c.closed).code, 1000)
})

t.test('on a contract route the router takes every message: a handler\'s own receive() is refused', async (t) => {
  const refused = deferred<string>()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, contractHandler(contract, {
      echo: (data) => data,
      wait: async (text, ctx) => {
        await ctx.connection.receive().catch((error: Error & { code: string }) => { refused.resolve(error.code) })
        return text
      }
    }))
  })
  const c = await client(t, `${url}/`)
  c.ws.send(JSON.stringify({ type: 'wait', data: 'w', id: 1 }))
  t.equal(await refused.promise, 'FST_RT_CONCURRENT_RECEIVE')
  t.same(JSON.parse(await c.text()), { type: 'wait:reply', data: 'w', id: 1 })
  c.ws.send(JSON.stringify({ type: 'echo', data: { n: 1, pad: '' }, id: 2 }))
  t.same(JSON.parse(await c.text()), { type: 'echo:reply', data: { n: 1, pad: '' }, id: 2 }, 'the next message still reaches its handler')
})

const roomContract = defineContract({
  client: { go: Type.Null() },
  server: { big: Type.Object({ text: Type.String() }), small: Type.Object({ text: Type.String() }) }
})

t.test('a broadcast is framed once, and a member whose ws sender is busy compressing still gets it in order', async (t) => {
  // Below the write limit (64 KiB), so only ws's busy sender keeps the broadcast from the fast path.
  const big = 'abc'.repeat(10_000)
  const { url, app } = await build(t, (app) => {
    app.get('/', { realtime: { compress: { threshold: 1024 } } }, contractHandler(roomContract, {
      go: async (_data, ctx) => {
        // Compressed in zlib's thread pool: ws holds later messages back until it is done.
        void ctx.send('big', { text: big })
        await ctx.rooms.publish('r', 'small', { text: 'after the big one' })
      }
    }, { rooms: { authorize: () => true } }))
  })
  const compressing = await client(t, `${url}/`)
  const plain = await client(t, `${url}/`, undefined, { perMessageDeflate: false })
  for (const c of [compressing, plain]) {
    c.ws.send(JSON.stringify({ type: '$join', data: { room: 'r' }, id: 1 }))
    t.equal((JSON.parse(await c.text()) as { type: string }).type, '$join:reply')
  }
  await app.realtime.publish(roomContract, 'r', 'small', { text: 'to everyone' })
  for (const c of [compressing, plain]) t.match(JSON.parse(await c.text()), { type: 'small', data: { text: 'to everyone' }, room: 'r', offset: 1 })
  compressing.ws.send(JSON.stringify({ type: 'go', data: null }))
  t.same(JSON.parse(await compressing.text()), { type: 'big', data: { text: big } }, 'the compressed message first')
  t.match(JSON.parse(await compressing.text()), { type: 'small', data: { text: 'after the big one' }, offset: 2 }, 'then the broadcast')
  t.match(JSON.parse(await plain.text()), { type: 'small', data: { text: 'after the big one' }, offset: 2 })
})

t.test('client room requests run in order, and a server-side leave that overtakes its join leaves the member out', async (t) => {
  const rooms = defineContract({
    client: { race: { data: Type.Null(), reply: Type.Object({ left: Type.Boolean(), joined: Type.Array(Type.String()) }) } },
    server: {}
  })
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, contractHandler(rooms, {
      race: async (_data, ctx) => {
        const joining = ctx.rooms.join('lobby')
        const left = await ctx.rooms.leave('lobby')
        await joining
        return { left, joined: [...ctx.rooms.joined].filter((room) => !room.startsWith('$')) }
      }
    }, { rooms: { authorize: () => true } }))
  })
  const c = await client(t, `${url}/`)
  c.ws.send(JSON.stringify({ type: 'race', data: null, id: 1 }))
  t.same(JSON.parse(await c.text()), { type: 'race:reply', data: { left: true, joined: [] }, id: 1 })
  // Sent together: the leave waits for the join before it, so it finds the member in the room.
  c.ws.send(JSON.stringify({ type: '$join', data: { room: 'hall' }, id: 2 }))
  c.ws.send(JSON.stringify({ type: '$leave', data: { room: 'hall' }, id: 3 }))
  t.match(JSON.parse(await c.text()), { type: '$join:reply', id: 2 })
  t.same(JSON.parse(await c.text()), { type: '$leave:reply', data: { room: 'hall', left: true }, id: 3 })
})

t.test('a room message for a connection whose socket is already closing is dropped, with nothing thrown or rejected', async (t) => {
  const { SharedMessage } = await import('../lib/hub/member.js')
  const dropped = deferred<{ state: boolean, sent: number }>()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, async (conn: RealtimeConnection) => {
      // The socket closing under a connection that has not seen it yet: what a fan-out can meet.
      const ws = (conn as unknown as { ws: WebSocket }).ws
      ws.close(1000)
      const before = app.realtime.metrics.messagesOut
      conn.sendShared(new SharedMessage('{"type":"late","data":null}'))
      dropped.resolve({ state: conn.closed, sent: app.realtime.metrics.messagesOut - before })
      await conn.whenClosed()
    })
  })
  const c = await client(t, `${url}/`)
  const closed = c.closed
  t.same(await dropped.promise, { state: false, sent: 0 }, 'the connection was still open to the hub, and nothing was counted as sent')
  t.equal((await closed).code, 1000)
})
