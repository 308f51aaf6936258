import t from 'tap'
import { once } from 'node:events'
import type { RealtimeConnection, WSMessage } from '../lib/index.js'
import { RealtimeSocket } from '../lib/connection/socket.js'
import { build, client, deferred } from './support/helpers.js'

t.test('receive() returns text and binary messages with their data', async (t) => {
  const got: WSMessage[] = []
  const done = deferred()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, async (conn) => {
      got.push(await conn.receive(), await conn.receive())
      done.resolve()
    })
  })
  const c = await client(t, url)
  c.ws.send('héllo')
  c.ws.send(Buffer.from([1, 2, 3]))
  await done.promise
  t.same(got[0], { type: 'text', data: 'héllo', extra: null })
  t.equal(got[1]?.type, 'binary')
  t.ok(Buffer.isBuffer(got[1]?.data))
  t.same([...(got[1]?.data as Buffer)], [1, 2, 3])
  t.equal((await c.closed).code, 1000, 'a handler that returns closes with 1000')
})

t.test('async iteration yields messages and ends on the peer close, which the handler still sees', async (t) => {
  const seen: string[] = []
  const result = deferred<{ code: number | null, last: WSMessage }>()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, async (conn) => {
      for await (const message of conn) seen.push(message.data as string)
      result.resolve({ code: conn.closeCode, last: await conn.receive() })
    })
  })
  const c = await client(t, url)
  c.ws.send('a')
  c.ws.send('b')
  c.ws.close(4001, 'bye')
  const closed = await c.closed
  const { code, last } = await result.promise
  t.same(seen, ['a', 'b'])
  t.equal(code, 4001, 'closeCode is the peer code')
  t.equal(closed.code, 4001, 'the peer close is echoed')
  t.ok(last.type === 'closing' || last.type === 'closed', 'after the close, receive() reports the end')
})

t.test('the handler sees the close message with code and reason', async (t) => {
  const got = deferred<WSMessage>()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, async (conn) => { got.resolve(await conn.receive()) })
  })
  const c = await client(t, url)
  c.ws.close(4100, 'going')
  t.same(await got.promise, { type: 'close', data: 4100, extra: 'going' })
})

t.test('an empty close frame is reported as 1005', async (t) => {
  const got = deferred<WSMessage>()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, async (conn) => { got.resolve(await conn.receive()) })
  })
  const c = await client(t, url)
  c.ws.close()
  t.same(await got.promise, { type: 'close', data: 1005, extra: '' })
})

t.test('typed receive helpers reject the wrong type and bad JSON and keep the connection usable', async (t) => {
  const errors: string[] = []
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, async (conn) => {
      await conn.receiveText().catch((error: Error & { code: string }) => { errors.push(error.code) })
      await conn.receiveBinary().catch((error: Error & { code: string }) => { errors.push(error.code) })
      await conn.receiveJson().catch((error: Error & { code: string }) => { errors.push(error.code) })
      const value = await conn.receiveJson<{ n: number }>()
      const bytes = await conn.receiveBinary()
      await conn.sendJson({ n: value.n + 1, bytes: bytes.length, errors })
    })
  })
  const c = await client(t, url)
  c.ws.send(Buffer.from([1]))
  c.ws.send('text')
  c.ws.send('{not json')
  c.ws.send('{"n":41}')
  c.ws.send(Buffer.from([1, 2]))
  t.same(JSON.parse(await c.text()), {
    n: 42,
    bytes: 2,
    errors: ['FST_RT_MESSAGE_TYPE', 'FST_RT_MESSAGE_TYPE', 'FST_RT_INVALID_JSON']
  })
})

t.test('send helpers send text, binary and JSON, and refuse what they cannot send', async (t) => {
  const errors: string[] = []
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, async (conn) => {
      await conn.sendText('t')
      await conn.sendBinary(new Uint8Array([9, 8]))
      await conn.sendBinary(new ArrayBuffer(3))
      await conn.sendJson({ ok: true })
      const bad: Array<() => Promise<void>> = [
        () => conn.sendJson({ big: 1n }),
        () => conn.sendJson(undefined),
        () => conn.sendText(42 as unknown as string),
        () => conn.sendBinary('nope' as unknown as Buffer),
        () => conn.ping(Buffer.alloc(126)),
        () => conn.pong('x'.repeat(200))
      ]
      for (const attempt of bad) await attempt().catch((error: Error & { code: string }) => { errors.push(error.code) })
      await conn.sendJson(errors)
    })
  })
  const c = await client(t, url)
  t.same(await c.next(), { data: Buffer.from('t'), isBinary: false })
  t.same(await c.next(), { data: Buffer.from([9, 8]), isBinary: true })
  t.same((await c.next()).data.length, 3)
  t.same(JSON.parse(await c.text()), { ok: true })
  t.same(JSON.parse(await c.text()), [
    'FST_RT_NOT_SERIALIZABLE', 'FST_RT_NOT_SERIALIZABLE', 'FST_RT_MESSAGE_TYPE', 'FST_RT_MESSAGE_TYPE',
    'FST_RT_CONTROL_PAYLOAD_TOO_LARGE', 'FST_RT_CONTROL_PAYLOAD_TOO_LARGE'
  ])
})

t.test('ping() and pong() send control frames with their payload', async (t) => {
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, async (conn) => {
      await conn.receive()
      await conn.ping('p1')
      await conn.pong(Buffer.from('p2'))
      await conn.receive()
    })
  })
  const c = await client(t, url)
  const ping = once(c.ws, 'ping') as Promise<[Buffer]>
  const pong = once(c.ws, 'pong') as Promise<[Buffer]>
  c.ws.send('go')
  t.equal((await ping)[0].toString(), 'p1')
  t.equal((await pong)[0].toString(), 'p2')
  c.ws.send('end')
})

t.test('a second concurrent receive() throws at once and the first is unaffected', async (t) => {
  const result = deferred<{ code: string, first: WSMessage }>()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, async (conn) => {
      const first = conn.receive()
      const code = await conn.receive().then(() => 'none', (error: Error & { code: string }) => error.code)
      await conn.sendText('ready')
      result.resolve({ code, first: await first })
    })
  })
  const c = await client(t, url)
  t.equal(await c.text(), 'ready')
  c.ws.send('x')
  const { code, first } = await result.promise
  t.equal(code, 'FST_RT_CONCURRENT_RECEIVE')
  t.same(first, { type: 'text', data: 'x', extra: null })
})

t.test('close() is idempotent, checks its code and reason, and sending after it throws', async (t) => {
  const result = deferred<Record<string, unknown>>()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, async (conn) => {
      const badCode = await conn.close({ code: 1006 }).catch((error: Error & { code: string }) => error.code)
      const badCode2 = await conn.close({ code: 2999 }).catch((error: Error & { code: string }) => error.code)
      const longReason = await conn.close({ reason: 'x'.repeat(124) }).catch((error: Error & { code: string }) => error.code)
      const first = await conn.close({ code: 4200, reason: 'done' })
      const second = await conn.close()
      const send = await conn.sendText('late').catch((error: Error & { code: string }) => error.code)
      const ping = await conn.ping().catch((error: Error & { code: string }) => error.code)
      result.resolve({ badCode, badCode2, longReason, first, second, send, ping, closed: conn.closed, closeCode: conn.closeCode })
    })
  })
  const c = await client(t, url)
  const closed = await c.closed
  t.same(closed, { code: 4200, reason: 'done' })
  t.same(await result.promise, {
    badCode: 'FST_RT_INVALID_CLOSE_CODE',
    badCode2: 'FST_RT_INVALID_CLOSE_CODE',
    longReason: 'FST_RT_CLOSE_REASON_TOO_LONG',
    first: true,
    second: false,
    send: 'FST_RT_CONNECTION_CLOSED',
    ping: 'FST_RT_CONNECTION_CLOSED',
    closed: true,
    closeCode: 4200
  })
})

t.test('receive() after close returns closed four times, then throws', async (t) => {
  const result = deferred<string[]>()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, async (conn) => {
      await conn.close()
      const types: string[] = []
      for (let i = 0; i < 5; i++) {
        types.push(await conn.receive().then((m) => m.type, (error: Error & { code: string }) => error.code))
      }
      result.resolve(types)
    })
  })
  await client(t, url)
  t.same(await result.promise, ['closed', 'closed', 'closed', 'closed', 'FST_RT_RECEIVE_AFTER_CLOSE'])
})

t.test('close() while a receive() is pending gives it a closing message', async (t) => {
  const result = deferred<WSMessage>()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, async (conn) => {
      const pending = conn.receive()
      const closing = conn.close()
      result.resolve(await pending)
      await closing
    })
  })
  const c = await client(t, url)
  t.same(await result.promise, { type: 'closing', data: null, extra: null })
  t.equal((await c.closed).code, 1000)
})

t.test('a handler that throws is logged with the request id and closes with 1011', async (t) => {
  const lines: Array<Record<string, unknown>> = []
  const stream = { write (line: string) { lines.push(JSON.parse(line)) } }
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, async () => { throw new Error('boom') })
  }, {}, { logger: { level: 'error', stream } })
  const c = await client(t, url)
  const closed = await c.closed
  t.equal(closed.code, 1011)
  t.equal(closed.reason, 'Internal error')
  const line = lines.find((entry) => entry.msg === 'realtime: handler failed')
  t.ok(line, 'the failure is logged')
  t.ok(line?.reqId, 'with the request id')
  t.match(line?.err, { message: 'boom' })
  const next = await client(t, url)
  t.equal((await next.closed).code, 1011, 'the server still serves the next client')
})

t.test('a peer that drops TCP ends receive() with closed, closeCode 1006 and a connection-lost exception', async (t) => {
  const result = deferred<{ message: WSMessage, code: number | null, exception: string | undefined }>()
  const started = deferred()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, async (conn) => {
      started.resolve()
      const message = await conn.receive()
      result.resolve({ message, code: conn.closeCode, exception: (conn.exception as Error & { code: string } | null)?.code })
    })
  })
  const c = await client(t, url)
  await started.promise
  c.ws.terminate()
  t.same(await result.promise, {
    message: { type: 'closed', data: null, extra: null },
    code: 1006,
    exception: 'FST_RT_CONNECTION_LOST'
  })
})

t.test('a receive timeout rejects, sends nothing and leaves the connection open', async (t) => {
  const result = deferred<{ first: string, perCall: string, after: WSMessage, closed: boolean }>()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: { receiveTimeout: 40 } }, async (conn) => {
      const first = await conn.receive().then(() => 'none', (error: Error & { code: string }) => error.code)
      const perCall = await conn.receive({ timeout: 20 }).then(() => 'none', (error: Error & { code: string }) => error.code)
      await conn.sendText('still here')
      const after = await conn.receive({ timeout: null })
      result.resolve({ first, perCall, after, closed: conn.closed })
    })
  })
  const c = await client(t, url)
  t.equal(await c.text(), 'still here')
  c.ws.send('late')
  t.same(await result.promise, {
    first: 'FST_RT_RECEIVE_TIMEOUT',
    perCall: 'FST_RT_RECEIVE_TIMEOUT',
    after: { type: 'text', data: 'late', extra: null },
    closed: false
  })
})

t.test('sends wait above the write limit, so a fast producer does not grow memory without bound', async (t) => {
  const size = 256 * 1024
  const count = 40
  const writeLimit = 64 * 1024
  let maxBuffered = 0
  const stalled = deferred()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: { writeLimit } }, async (conn) => {
      const chunk = Buffer.alloc(size, 7)
      for (let i = 0; i < count; i++) {
        if (conn.bufferedAmount > writeLimit) stalled.resolve()
        await conn.sendBinary(chunk)
        maxBuffered = Math.max(maxBuffered, conn.bufferedAmount)
      }
      await conn.receive()
    })
  })
  const c = await client(t, url)
  const socket = (c.ws as unknown as { _socket: import('node:net').Socket })._socket
  socket.pause()
  await stalled.promise
  socket.resume()
  let received = 0
  while (received < count) {
    const message = await c.next()
    t.equal(message.data.length, size)
    received++
  }
  t.ok(maxBuffered <= writeLimit + size, `buffered at most the limit plus one message (${maxBuffered})`)
  c.ws.close()
})

t.test('reading pauses above the read limit and resumes once the handler catches up', async (t) => {
  const pauses = { paused: 0, resumed: 0 }
  const pause = RealtimeSocket.prototype.pause
  const resume = RealtimeSocket.prototype.resume
  const paused = deferred()
  RealtimeSocket.prototype.pause = function (this: RealtimeSocket) { pauses.paused++; paused.resolve(); pause.call(this) }
  RealtimeSocket.prototype.resume = function (this: RealtimeSocket) { pauses.resumed++; resume.call(this) }
  t.teardown(() => {
    RealtimeSocket.prototype.pause = pause
    RealtimeSocket.prototype.resume = resume
  })
  const go = deferred()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: { readLimit: 2048 } }, async (conn) => {
      await go.promise
      const got: string[] = []
      for (let i = 0; i < 10; i++) got.push((await conn.receiveText()).slice(0, 2))
      await conn.sendJson(got)
    })
  })
  const c = await client(t, url)
  for (let i = 0; i < 10; i++) c.ws.send(`${i}`.padStart(2, '0') + 'x'.repeat(1022))
  await paused.promise
  go.resolve()
  t.same(JSON.parse(await c.text()), ['00', '01', '02', '03', '04', '05', '06', '07', '08', '09'])
  t.ok(pauses.paused >= 1)
  t.ok(pauses.resumed >= 1)
})

t.test('terminate() drops the connection without a close frame', async (t) => {
  const conn = deferred<RealtimeConnection>()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, async (c) => {
      conn.resolve(c)
      c.terminate()
      c.terminate()
      await c.whenClosed()
    })
  })
  const c = await client(t, url)
  t.equal((await c.closed).code, 1006)
  const server = await conn.promise
  await server.whenClosed()
  t.equal(server.closeCode, 1006)
  t.equal(server.closed, true)
  server.terminate()
  t.equal(server.closeCode, 1006, 'terminate() after the end changes nothing')
})

t.test('close() while reading is paused resumes it, so the peer close can arrive', async (t) => {
  const pause = RealtimeSocket.prototype.pause
  const resume = RealtimeSocket.prototype.resume
  const paused = deferred()
  let resumed = 0
  RealtimeSocket.prototype.pause = function (this: RealtimeSocket) { paused.resolve(); pause.call(this) }
  RealtimeSocket.prototype.resume = function (this: RealtimeSocket) { resumed++; resume.call(this) }
  t.teardown(() => {
    RealtimeSocket.prototype.pause = pause
    RealtimeSocket.prototype.resume = resume
  })
  const go = deferred()
  const result = deferred<{ ok: boolean, code: number | null }>()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: { readLimit: 1024, closeTimeout: 5000 } }, async (conn) => {
      await go.promise
      const ok = await conn.close({ code: 4000 })
      result.resolve({ ok, code: conn.closeCode })
    })
  })
  const c = await client(t, url)
  for (let i = 0; i < 10; i++) c.ws.send('x'.repeat(1024))
  await paused.promise
  go.resolve()
  t.equal((await c.closed).code, 4000)
  t.same(await result.promise, { ok: true, code: 4000 }, 'the peer answered within closeTimeout')
  t.ok(resumed >= 1)
})

t.test('sends and pings waiting on a dead socket reject with FST_RT_CONNECTION_CLOSED', async (t) => {
  const stalled = deferred()
  const result = deferred<string[]>()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: { writeLimit: 1024 } }, async (conn) => {
      const chunk = Buffer.alloc(64 * 1024)
      // Bounded: the kernel buffers a few MiB at most before bufferedAmount grows. A turn ends
      // between sends, so what stays buffered is what the kernel refused, not this turn's frames.
      for (let i = 0; i < 2000 && conn.bufferedAmount <= 1024; i++) {
        await conn.sendBinary(chunk)
        await new Promise((resolve) => setImmediate(resolve))
      }
      const waiting = [conn.sendBinary(chunk), conn.ping()]
      stalled.resolve()
      result.resolve(await Promise.all(waiting.map((p) => p.then(() => 'sent', (error: Error & { code: string }) => error.code))))
    })
  })
  const c = await client(t, url)
  const socket = (c.ws as unknown as { _socket: import('node:net').Socket })._socket
  socket.pause()
  await stalled.promise
  c.ws.terminate()
  t.same(await result.promise, ['FST_RT_CONNECTION_CLOSED', 'FST_RT_CONNECTION_CLOSED'])
})

t.test('a socket error that is not a protocol error is reported as a lost connection', async (t) => {
  const proto = RealtimeSocket.prototype as unknown as { setSocket: (...args: unknown[]) => unknown }
  const original = proto.setSocket
  const sockets: RealtimeSocket[] = []
  proto.setSocket = function (this: RealtimeSocket, ...args: unknown[]) { sockets.push(this); return original.apply(this, args) }
  t.teardown(() => { proto.setSocket = original })
  const result = deferred<{ message: WSMessage, exception: string | undefined }>()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, async (conn) => {
      const message = await conn.receive()
      result.resolve({ message, exception: (conn.exception as Error & { code: string } | null)?.code })
    })
  })
  await client(t, url)
  // What ws emits when a write fails (its sender's error path); only the first error counts.
  sockets[0]?.emit('error', new Error('write failed'))
  sockets[0]?.emit('error', Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }))
  const { message, exception } = await result.promise
  t.equal(message.type, 'error')
  t.equal((message.data as Error & { code: string }).code, 'FST_RT_CONNECTION_LOST')
  t.equal(((message.data as Error).cause as Error).message, 'write failed')
  t.equal(exception, 'FST_RT_CONNECTION_LOST')
})
