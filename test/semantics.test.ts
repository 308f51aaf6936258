import t from 'tap'
import { once } from 'node:events'
import WebSocket from 'ws'
import type { RealtimeConnection, WSMessage } from '../lib/index.js'
import { build, client, deferred } from './support/helpers.js'
import { closeCodeOfFrame, closePayload, frame, rawClient } from './support/frames.js'

type Coded = Error & { code: string, closeCode?: number }

t.test('autoPing on: pings are answered at once with their payload, even while the handler is not reading', async (t) => {
  const release = deferred()
  const got = deferred<WSMessage>()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, async (conn) => {
      await release.promise
      got.resolve(await conn.receive())
    })
  })
  const c = await client(t, url)
  const pong = once(c.ws, 'pong') as Promise<[Buffer]>
  c.ws.ping('hello')
  t.equal((await pong)[0].toString(), 'hello')
  c.ws.pong('unsolicited')
  c.ws.send('after')
  release.resolve()
  t.same(await got.promise, { type: 'text', data: 'after', extra: null }, 'pings and pongs never reach the handler')
})

t.test('autoPing off: pings and pongs reach the handler and nothing is answered automatically', async (t) => {
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: { autoPing: false } }, async (conn) => {
      const ping = await conn.receive()
      const pong = await conn.receive()
      await conn.sendJson([ping.type, String(ping.data), pong.type, String(pong.data)])
      await conn.pong(ping.data as Buffer)
      await conn.receive()
    })
  })
  const c = await client(t, url)
  const events: string[] = []
  c.ws.on('pong', (data: Buffer) => { events.push(`pong:${data.toString()}`) })
  c.ws.on('message', () => { events.push('message') })
  const pong = once(c.ws, 'pong')
  c.ws.ping('p')
  c.ws.pong('q')
  t.same(JSON.parse(await c.text()), ['ping', 'p', 'pong', 'q'])
  await pong
  t.same(events, ['message', 'pong:p'], 'the only pong is the one the handler sent, after its message')
})

t.test('autoClose off: the handler sees the close, may still send, and chooses its own close code', async (t) => {
  const state = deferred<{ close: WSMessage, closedBefore: boolean, next: WSMessage, code: number | null }>()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: { autoClose: false } }, async (conn) => {
      const close = await conn.receive()
      const closedBefore = conn.closed
      const next = await conn.receive()
      await conn.sendText('parting words')
      await conn.close({ code: 4002, reason: 'server says bye' })
      state.resolve({ close, closedBefore, next, code: conn.closeCode })
    })
  })
  const c = await client(t, url)
  c.ws.close(4001, 'client bye')
  t.equal(await c.text(), 'parting words', 'a message sent after the peer close arrives')
  t.same(await c.closed, { code: 4002, reason: 'server says bye' })
  t.same(await state.promise, {
    close: { type: 'close', data: 4001, extra: 'client bye' },
    closedBefore: false,
    next: { type: 'closing', data: null, extra: null },
    code: 4001
  })
})

t.test('autoClose off: closeTimeout bounds a handler that never answers the peer close', async (t) => {
  const conn = deferred<RealtimeConnection>()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: { autoClose: false, closeTimeout: 60 } }, async (c) => {
      conn.resolve(c)
      await c.receive()
      await c.whenClosed()
    })
  })
  const c = await client(t, url)
  const started = Date.now()
  c.ws.close(4001)
  t.equal((await c.closed).code, 1006, 'the connection is dropped, not answered')
  t.ok(Date.now() - started >= 50, 'not before closeTimeout')
  const server = await conn.promise
  t.equal((server.exception as Coded).code, 'FST_RT_CLOSE_TIMEOUT')
  t.equal(server.closeCode, 1006)
})

t.test('server close() discards data until the peer close and reports the peer code', async (t) => {
  const result = deferred<{ ok: boolean, code: number | null, message: WSMessage }>()
  const { port } = await build(t, (app) => {
    app.get('/', { realtime: true }, async (conn) => {
      await conn.receive()
      const ok = await conn.close({ code: 4000 })
      result.resolve({ ok, code: conn.closeCode, message: await conn.receive() })
    })
  })
  const raw = await rawClient(port, '/')
  raw.send(frame(0x1, 'go'))
  t.equal(closeCodeOfFrame(await raw.next()), 4000)
  raw.send(frame(0x1, 'ignored'))
  raw.send(frame(0x8, closePayload(3333)))
  t.same(await result.promise, { ok: true, code: 3333, message: { type: 'closed', data: null, extra: null } })
  t.equal(await raw.next(), null, 'no second close frame, then TCP closes')
})

t.test('server close() drops TCP after closeTimeout when the peer never answers', async (t) => {
  const result = deferred<{ ok: boolean, code: number | null, exception: string | undefined, elapsed: number }>()
  const { port } = await build(t, (app) => {
    app.get('/', { realtime: { closeTimeout: 80 } }, async (conn) => {
      await conn.receive()
      const started = Date.now()
      const ok = await conn.close()
      result.resolve({ ok, code: conn.closeCode, exception: (conn.exception as Coded | null)?.code, elapsed: Date.now() - started })
    })
  })
  const raw = await rawClient(port, '/')
  raw.send(frame(0x1, 'go'))
  t.equal(closeCodeOfFrame(await raw.next()), 1000)
  await raw.closed
  const { elapsed, ...rest } = await result.promise
  t.same(rest, { ok: true, code: 1006, exception: 'FST_RT_CLOSE_TIMEOUT' })
  t.ok(elapsed >= 70, `waited about closeTimeout (${elapsed} ms)`)
})

t.test('heartbeat: an idle client that answers pings stays connected and sees a ping about every interval', async (t) => {
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: { heartbeat: 60 } }, async (conn) => { await conn.receive() })
  })
  // Taken before connecting: the server's interval starts at the upgrade, before the client's 'open'.
  const started = Date.now()
  const c = await client(t, url)
  const times: number[] = []
  for (let i = 0; i < 3; i++) {
    await once(c.ws, 'ping')
    times.push(Date.now() - started)
  }
  t.ok((times[0] as number) >= 50, `first ping after about the interval (${times[0]} ms)`)
  t.equal(c.ws.readyState, WebSocket.OPEN, 'still open after three pings')
  c.ws.close()
})

t.test('heartbeat: received data postpones the ping', async (t) => {
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: { heartbeat: 300 } }, async (conn) => {
      for await (const message of conn) void message
    })
  })
  const c = await client(t, url)
  let pings = 0
  c.ws.on('ping', () => { pings++ })
  // 25 messages 20 ms apart: never 300 ms of silence, so never a ping.
  for (let i = 0; i < 25; i++) {
    c.ws.send('tick')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  t.equal(pings, 0)
  c.ws.close()
})

t.test('heartbeat: no answer within half the interval drops TCP, closeCode 1006, and a pending receive() gets the error', async (t) => {
  const result = deferred<{ message: WSMessage, code: number | null, exception: Coded | null }>()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: { heartbeat: 60 } }, async (conn) => {
      const message = await conn.receive()
      result.resolve({ message, code: conn.closeCode, exception: conn.exception as Coded | null })
    })
  })
  const c = await client(t, url, undefined, { autoPong: false })
  const opened = Date.now()
  const ping = once(c.ws, 'ping')
  await ping
  const pingAt = Date.now()
  const closed = await c.closed
  const droppedAt = Date.now()
  t.equal(closed.code, 1006, 'no close frame')
  t.ok(pingAt - opened >= 50, `ping after the interval (${pingAt - opened} ms)`)
  t.ok(droppedAt - pingAt >= 20, `dropped about half the interval after the ping (${droppedAt - pingAt} ms)`)
  const { message, code, exception } = await result.promise
  t.equal(message.type, 'error')
  t.equal((message.data as Coded).code, 'FST_RT_HEARTBEAT_TIMEOUT')
  t.equal(code, 1006)
  t.equal(exception?.code, 'FST_RT_HEARTBEAT_TIMEOUT')
  t.equal(exception?.closeCode, 1006)
})

t.test('maxMsgSize: exactly the limit passes, one byte more closes with 1009, and the server keeps serving', async (t) => {
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: { maxMsgSize: 1024 } }, async (conn) => {
      for await (const message of conn) {
        if (message.type === 'text') await conn.sendText(String(message.data.length))
        if (message.type === 'error') await conn.sendText('unreachable')
      }
    })
  })
  const c = await client(t, url)
  c.ws.send('x'.repeat(1024))
  t.equal(await c.text(), '1024')
  c.ws.send('x'.repeat(1025))
  t.equal((await c.closed).code, 1009)
  const next = await client(t, url)
  next.ws.send('ok')
  t.equal(await next.text(), '2')
})

t.test('maxMsgSize counts fragments together', async (t) => {
  const error = deferred<WSMessage>()
  const { port } = await build(t, (app) => {
    app.get('/', { realtime: { maxMsgSize: 1000 } }, async (conn) => { error.resolve(await conn.receive()) })
  })
  const raw = await rawClient(port, '/')
  raw.send(frame(0x1, 'a'.repeat(600), { fin: false }))
  raw.send(frame(0x0, 'b'.repeat(600)))
  t.equal(closeCodeOfFrame(await raw.next()), 1009)
  const message = await error.promise
  t.equal(message.type, 'error')
  t.equal((message.data as Coded).code, 'FST_RT_PROTOCOL_ERROR')
  t.equal((message.data as Coded).closeCode, 1009)
})

t.test('maxMsgSize is per route, and 0 means unlimited', async (t) => {
  const { url } = await build(t, (app) => {
    app.get('/small', { realtime: true }, async (conn) => { await conn.sendText(String((await conn.receiveText()).length)) })
    app.get('/unlimited', { realtime: { maxMsgSize: 0 } }, async (conn) => { await conn.sendText(String((await conn.receiveText()).length)) })
  }, { maxMsgSize: 100 })
  const small = await client(t, `${url}/small`)
  small.ws.send('x'.repeat(101))
  t.equal((await small.closed).code, 1009)
  const big = await client(t, `${url}/unlimited`)
  big.ws.send('x'.repeat(5 * 1024 * 1024))
  t.equal(await big.text(), String(5 * 1024 * 1024))
})

const violations: Array<{ title: string, bytes: () => Buffer, code: number }> = [
  { title: 'invalid UTF-8 in a text message', bytes: () => frame(0x1, Buffer.from([0xff, 0xfe])), code: 1007 },
  { title: 'a reserved opcode', bytes: () => frame(0x3, 'x'), code: 1002 },
  { title: 'an unmasked client frame', bytes: () => frame(0x1, 'x', { mask: false }), code: 1002 },
  { title: 'RSV2 set', bytes: () => frame(0x1, 'x', { rsv: 2 }), code: 1002 },
  { title: 'RSV1 without negotiated compression', bytes: () => frame(0x1, 'x', { rsv: 4 }), code: 1002 },
  { title: 'a fragmented control frame', bytes: () => frame(0x9, 'x', { fin: false }), code: 1002 },
  { title: 'a continuation without a message', bytes: () => frame(0x0, 'x'), code: 1002 },
  { title: 'a new data frame inside a fragmented message', bytes: () => Buffer.concat([frame(0x1, 'a', { fin: false }), frame(0x1, 'b', { fin: false })]), code: 1002 },
  { title: 'a close code 1006 on the wire', bytes: () => frame(0x8, closePayload(1006)), code: 1002 },
  { title: 'a close code above 4999', bytes: () => frame(0x8, closePayload(5000)), code: 1002 },
  { title: 'a one-byte close payload', bytes: () => frame(0x8, Buffer.from([3])), code: 1002 },
  { title: 'a close reason that is not UTF-8', bytes: () => frame(0x8, Buffer.concat([closePayload(1000), Buffer.from([0xff])])), code: 1007 }
]

for (const violation of violations) {
  t.test(`${violation.title} closes with ${violation.code}, the handler gets the error, and the server keeps serving`, async (t) => {
    const result = deferred<{ message: WSMessage, after: WSMessage, code: number | null }>()
    const { port, url } = await build(t, (app) => {
      app.get('/', { realtime: true }, async (conn) => {
        if (conn.request.headers['x-echo'] === undefined) {
          const message = await conn.receive()
          result.resolve({ message, after: await conn.receive(), code: conn.closeCode })
          return
        }
        await conn.sendText(await conn.receiveText())
      })
    })
    const raw = await rawClient(port, '/')
    raw.send(violation.bytes())
    t.equal(closeCodeOfFrame(await raw.next()), violation.code)
    t.equal(await raw.next(), null, 'then TCP closes without waiting')
    const { message, after, code } = await result.promise
    t.equal(message.type, 'error')
    t.equal((message.data as Coded).code, 'FST_RT_PROTOCOL_ERROR')
    t.equal((message.data as Coded).closeCode, violation.code)
    t.equal(after.type, 'closed')
    t.equal(code, 1006)
    const next = await client(t, url, undefined, { headers: { 'x-echo': '1' } })
    next.ws.send('still serving')
    t.equal(await next.text(), 'still serving')
  })
}

t.test('corrupt deflate data closes with 1007 and reaches the handler as a protocol error', async (t) => {
  const result = deferred<{ message: WSMessage, code: number | null }>()
  const { port, url } = await build(t, (app) => {
    app.get('/', { realtime: { compress: true } }, async (conn) => {
      if (conn.request.headers['x-echo'] !== undefined) {
        await conn.sendText(await conn.receiveText())
        return
      }
      const message = await conn.receive()
      await conn.whenClosed()
      result.resolve({ message, code: conn.closeCode })
    })
  })
  const raw = await rawClient(port, '/', { 'Sec-WebSocket-Extensions': 'permessage-deflate' })
  raw.send(frame(0x2, Buffer.from([0xff, 0xff, 0xff, 0xff]), { rsv: 4 }))
  t.equal(closeCodeOfFrame(await raw.next()), 1007)
  const { message, code } = await result.promise
  t.equal(message.type, 'error')
  t.equal((message.data as Coded).code, 'FST_RT_PROTOCOL_ERROR')
  t.equal((message.data as Coded).closeCode, 1007)
  t.equal(code, 1006)
  const next = await client(t, url, undefined, { headers: { 'x-echo': '1' }, perMessageDeflate: true })
  next.ws.send('compressed and fine')
  t.equal(await next.text(), 'compressed and fine')
})

t.test('the longest closeTimeout does not overflow the timers ws and Node use', async (t) => {
  const result = deferred<{ ok: boolean, code: number | null }>()
  const warnings: string[] = []
  const onWarning = (warning: Error): void => { warnings.push(warning.name) }
  process.on('warning', onWarning)
  t.teardown(() => { process.off('warning', onWarning) })
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: { closeTimeout: 2 ** 31 - 1 } }, async (conn) => {
      await conn.receive()
      const ok = await conn.close({ code: 4000 })
      result.resolve({ ok, code: conn.closeCode })
    })
  }, { closeTimeout: 2 ** 31 - 1 })
  const c = await client(t, url)
  c.ws.send('close please')
  t.equal((await c.closed).code, 4000)
  t.same(await result.promise, { ok: true, code: 4000 }, 'the handshake completed normally')
  t.notOk(warnings.includes('TimeoutOverflowWarning'))
})

t.test('heartbeat: a connection paused because the handler is behind is not killed for the peer\'s silence', async (t) => {
  const killed = deferred()
  const release = deferred()
  const counted = deferred<number>()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: { heartbeat: 60, readLimit: 1024 } }, async (conn) => {
      if (conn.request.headers['x-idle'] !== undefined) {
        await conn.receive()
        killed.resolve()
        return
      }
      await release.promise
      let count = 0
      for (let i = 0; i < 20; i++) count += (await conn.receiveText()).length
      counted.resolve(count)
    })
  })
  // Neither client answers pings. The busy one floods past the read limit, so its socket is paused.
  const busy = await client(t, url, undefined, { autoPong: false })
  for (let i = 0; i < 20; i++) busy.ws.send('x'.repeat(1024))
  await client(t, url, undefined, { autoPong: false, headers: { 'x-idle': '1' } })
  await killed.promise
  t.equal(busy.ws.readyState, WebSocket.OPEN, 'the idle client was dropped, the paused one was not')
  release.resolve()
  t.equal(await counted.promise, 20 * 1024, 'every queued message is delivered')
})
