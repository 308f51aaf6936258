import t from 'tap'
import { Type } from '@sinclair/typebox'
import { once } from 'node:events'
import WebSocket from 'ws'
import { contractHandler, defineContract, redactUrl } from '../lib/index.js'
import { build, client, deferred, rawResponse, handshake } from './support/helpers.js'

const echo = defineContract({ client: { ping: { data: Type.Integer(), reply: Type.Integer() } }, server: {} })

async function refusedStatus (url: string, options?: WebSocket.ClientOptions, protocols?: string[]): Promise<{ status: number, body: string }> {
  const ws = new WebSocket(url, protocols, options)
  const [, response] = await once(ws, 'unexpected-response') as [unknown, import('node:http').IncomingMessage]
  let body = ''
  for await (const chunk of response) body += String(chunk)
  ws.on('error', () => {})
  ws.terminate()
  return { status: response.statusCode as number, body }
}

t.test('without allowedOrigins, a page of another site is refused (403); same host and no Origin pass', async (t) => {
  const { url, port, app } = await build(t, (app) => { app.get('/', { realtime: true }, async (conn) => { await conn.sendText('hi') }) })
  const other = await refusedStatus(url, { origin: 'https://evil.example' })
  t.equal(other.status, 403)
  t.match(JSON.parse(other.body), { code: 'FST_RT_ORIGIN_FORBIDDEN' })
  t.equal((await refusedStatus(url, { origin: 'null' })).status, 403, 'an opaque origin is refused')
  const same = await client(t, url, undefined, { origin: `http://127.0.0.1:${port}` })
  t.equal(await same.text(), 'hi', 'the same host passes')
  const none = await client(t, url)
  t.equal(await none.text(), 'hi', 'a client without Origin passes')
  t.equal(app.realtime.metrics.refused.origin, 2)
  const open = await build(t, (app) => { app.get('/', { realtime: { allowedOrigins: '*' } }, async (conn) => { await conn.sendText('open') }) })
  t.equal(await (await client(t, open.url, undefined, { origin: 'https://anyone.example' })).text(), 'open', "allowedOrigins '*' opens it up")
})

t.test('maxConnections refuses with 503 and maxConnectionsPerIp with 429, and both free up when connections close', async (t) => {
  const { url, app } = await build(t, (app) => {
    app.get('/', { realtime: true }, async (conn) => { await conn.receive() })
  }, { maxConnections: 2, maxConnectionsPerIp: 2 })
  const first = await client(t, url)
  await client(t, url)
  const over = await refusedStatus(url)
  t.equal(over.status, 503)
  t.match(JSON.parse(over.body), { code: 'FST_RT_TOO_MANY_CONNECTIONS' })
  first.ws.close()
  await first.closed
  // The server notices the close asynchronously; the gauge shows when it has.
  while (app.realtime.metrics.connections['/'] !== 1) await new Promise((resolve) => setImmediate(resolve))
  await client(t, url)
  const perIp = await build(t, (app) => {
    app.get('/', { realtime: true }, async (conn) => { await conn.receive() })
  }, { maxConnectionsPerIp: 1 })
  await client(t, perIp.url)
  const tooMany = await refusedStatus(perIp.url)
  t.equal(tooMany.status, 429)
  t.match(JSON.parse(tooMany.body), { code: 'FST_RT_TOO_MANY_CONNECTIONS_FROM_IP' })
  t.same(perIp.app.realtime.metrics.refused, { origin: 0, maxConnections: 0, maxConnectionsPerIp: 1, handshakeTimeout: 0 })
  t.equal(app.realtime.metrics.refused.maxConnections, 1)
})

t.test('a handshake whose hooks take longer than handshakeTimeout is dropped; others are served', async (t) => {
  const release = deferred()
  t.teardown(() => { release.resolve() })
  const { url, port, app } = await build(t, (app) => {
    app.get('/', {
      realtime: true,
      preHandler: async (request) => { if (request.headers['x-slow'] !== undefined) await release.promise }
    }, async (conn) => { await conn.sendText('served') })
  }, { handshakeTimeout: 80 })
  const { socket } = await rawResponseOpen(port, handshake('/', { 'X-Slow': '1' }))
  await once(socket, 'close')
  t.equal(app.realtime.metrics.refused.handshakeTimeout, 1)
  t.equal(await (await client(t, url)).text(), 'served')
})

t.test('handshake deadlines are each their own: one that expires leaves a later one running', async (t) => {
  const releaseSecond = deferred()
  const releaseFirst = deferred()
  const secondWaiting = deferred()
  t.teardown(() => { releaseFirst.resolve(); releaseSecond.resolve() })
  const { port, app } = await build(t, (app) => {
    app.get('/', {
      realtime: true,
      preHandler: async (request) => {
        if (request.headers['x-first'] !== undefined) await releaseFirst.promise
        if (request.headers['x-second'] !== undefined) {
          secondWaiting.resolve()
          await releaseSecond.promise
        }
      }
    }, async (conn) => { await conn.sendText('served') })
  }, { handshakeTimeout: 600 })
  const first = await rawResponseOpen(port, handshake('/', { 'X-First': '1' }))
  // The second starts 300 ms later, so it is still inside its own 600 ms when the first expires
  // (with room for a slow machine to answer it).
  const since = Date.now()
  while (Date.now() < since + 300) await new Promise((resolve) => setImmediate(resolve))
  const second = await rawResponseOpen(port, handshake('/', { 'X-Second': '1' }))
  await secondWaiting.promise
  await once(first.socket, 'close')
  t.equal(app.realtime.metrics.refused.handshakeTimeout, 1, 'the first was dropped')
  t.equal(second.socket.destroyed, false, 'the second is still open')
  const upgraded = new Promise<string>((resolve) => { second.socket.on('data', (chunk: Buffer) => { resolve(chunk.toString('latin1').split('\r\n')[0] as string) }) })
  releaseSecond.resolve()
  t.equal(await upgraded, 'HTTP/1.1 101 Switching Protocols')
  second.socket.destroy()
})

async function rawResponseOpen (port: number, request: string): Promise<{ socket: import('node:net').Socket }> {
  const net = await import('node:net')
  const socket = net.connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write(request)
  socket.resume()
  return { socket }
}

t.test('query tokens never reach the log; redactUrl keeps everything else', async (t) => {
  const lines: string[] = []
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, async (conn) => { await conn.sendText('ok') })
  }, {}, { logger: { level: 'info', stream: { write (line: string) { lines.push(line) } } } })
  const c = await client(t, `${url}/?room=lobby&token=s3cr3t-value&access_token=another-s3cr3t`)
  t.equal(await c.text(), 'ok')
  const incoming = lines.find((line) => line.includes('incoming request'))
  t.ok(incoming?.includes('room=lobby'), 'other parameters stay')
  t.notOk(lines.some((line) => line.includes('s3cr3t')), 'no secret in any log line')
  t.equal(redactUrl('/ws', ['token']), '/ws')
  t.equal(redactUrl('/ws?TOKEN=x&flag&%74oken=y&a=1', ['token']), '/ws?TOKEN=[redacted]&flag&%74oken=[redacted]&a=1')
  t.equal(redactUrl('/ws?%E0%A4%A=1', ['token']), '/ws?%E0%A4%A=1', 'a malformed escape is left alone')
})

t.test('a realtime route\'s own serializers are kept, and its req serializer is shown the redacted URL', async (t) => {
  const lines: string[] = []
  const { url } = await build(t, (app) => {
    app.get('/', {
      realtime: true,
      logSerializers: { req: (request: { url: string, headers: Record<string, unknown> }) => ({ path: request.url, agent: request.headers['user-agent'] }) }
    }, async (conn) => { await conn.sendText('ok') })
    app.get('/other', {
      realtime: true,
      logSerializers: { extra: (value: number) => `extra ${value}` }
    }, async (conn, request) => { request.log.info({ extra: 1 }, 'handler ran'); await conn.sendText('ok') })
  }, {}, { logger: { level: 'info', stream: { write (line: string) { lines.push(line) } } } })
  const c = await client(t, `${url}/?token=s3cr3t-value`, undefined, { headers: { 'user-agent': 'probe' } })
  t.equal(await c.text(), 'ok')
  t.ok(lines.some((line) => line.includes('"req":{"path":"/?token=[redacted]","agent":"probe"}')), 'its own fields, with the URL redacted')
  const other = await client(t, `${url}/other?token=s3cr3t-value`)
  t.equal(await other.text(), 'ok')
  t.ok(lines.some((line) => line.includes('"url":"/other?token=[redacted]"')), 'the app\'s req serializer, redacted, beside the route\'s others')
  t.ok(lines.some((line) => line.includes('"extra":"extra 1"')), 'which still apply')
  t.notOk(lines.some((line) => line.includes('s3cr3t')))
})

t.test('with a logger that is not pino, a realtime route\'s request line still has the URL redacted', async (t) => {
  const lines: string[] = []
  type Serializers = Record<string, (value: never) => unknown>
  // A minimal logger that applies the serializers its children are given, as Fastify expects.
  const logger = (serializers: Serializers): Record<string, unknown> => {
    const write = (object: unknown, message?: string): void => {
      const fields = typeof object === 'object' && object !== null
        ? Object.fromEntries(Object.entries(object).map(([key, value]) => [key, serializers[key]?.(value as never) ?? String(value)]))
        : object
      lines.push(JSON.stringify({ fields, message }))
    }
    return { level: 'info', info: write, warn: write, error: write, debug: write, fatal: write, trace: write, child: (_bindings: object, options?: { serializers?: Serializers }) => logger({ ...serializers, ...options?.serializers }) }
  }
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, async (conn) => { await conn.sendText('ok') })
  }, {}, { loggerInstance: logger({}) as never })
  t.equal(await (await client(t, `${url}/?token=s3cr3t-value`)).text(), 'ok')
  t.ok(lines.some((line) => line.includes('"url":"/?token=[redacted]"') && line.includes('"method":"GET"')), 'Fastify\'s fields, redacted')
  t.notOk(lines.some((line) => line.includes('s3cr3t')))
})

t.test('the message rate: over it a message is dropped with one error envelope, and a flood is closed with 1008', async (t) => {
  const { url, app } = await build(t, (app) => {
    app.get('/', { realtime: true }, contractHandler(echo, { ping: (n) => n }, { rateLimit: { perSecond: 1, burst: 3 } }))
    app.get('/free', { realtime: true }, contractHandler(echo, { ping: (n) => n }, { rateLimit: false }))
  })
  const c = await client(t, url)
  for (let i = 1; i <= 4; i++) c.ws.send(JSON.stringify({ type: 'ping', data: i, id: i }))
  const got = [JSON.parse(await c.text()), JSON.parse(await c.text()), JSON.parse(await c.text()), JSON.parse(await c.text())]
  t.same(got.filter((message) => message.type === 'ping:reply').map((message) => message.id), [1, 2, 3])
  t.match(got.find((message) => message.type === 'error'), { data: { code: 'FST_RT_RATE_LIMITED' } })
  for (let i = 5; i <= 12; i++) c.ws.send(JSON.stringify({ type: 'ping', data: i, id: i }))
  t.same(await c.closed, { code: 1008, reason: 'Rate limit exceeded' })
  t.ok(app.realtime.metrics.rateLimitHits >= 4)
  const free = await client(t, `${url}/free`)
  for (let i = 1; i <= 300; i++) free.ws.send(JSON.stringify({ type: 'ping', data: i, id: i }))
  let replies = 0
  while (replies < 300) if (JSON.parse(await free.text()).type === 'ping:reply') replies++
  t.equal(replies, 300, 'rateLimit: false lets every message through')
  t.throws(() => contractHandler(echo, { ping: (n) => n }, { rateLimit: 'fast' as never }), { code: 'FST_RT_INVALID_OPTION', message: /"rateLimit"/ })
  t.throws(() => contractHandler(echo, { ping: (n) => n }, { rateLimit: { perSecond: 0, burst: 1 } }), { code: 'FST_RT_INVALID_OPTION', message: /perSecond/ })
  t.throws(() => contractHandler(echo, { ping: (n) => n }, { rateLimit: { perSecond: 1, burst: 1, bytesBurst: 0 } }), { code: 'FST_RT_INVALID_OPTION', message: /rateLimit\.bytesBurst/ })
})

t.test('the byte rate: a message over it is dropped with one error envelope naming bytes, a flood is closed with 1008, others are served', async (t) => {
  const big = defineContract({ client: { put: { data: Type.String(), reply: Type.Integer() } }, server: {} })
  const { url, app } = await build(t, (app) => {
    // The byte bucket refills at 1 byte a second: what is spent stays spent for the test.
    app.get('/', { realtime: true }, contractHandler(big, { put: (text) => text.length }, { rateLimit: { perSecond: 1000, burst: 10, bytesPerSecond: 1, bytesBurst: 2000 } }))
  })
  const c = await client(t, url)
  const payload = 'x'.repeat(880)
  for (let i = 1; i <= 4; i++) c.ws.send(JSON.stringify({ type: 'put', data: payload, id: i }))
  const got = [JSON.parse(await c.text()), JSON.parse(await c.text()), JSON.parse(await c.text()), JSON.parse(await c.text())]
  // 2000 bytes: the first two leave 200, which lets a third through into debt; the fourth waits for it.
  t.same(got.filter((message) => message.type === 'put:reply').map((message) => message.id), [1, 2, 3])
  t.same(got.find((message) => message.type === 'error'), {
    type: 'error',
    data: { code: 'FST_RT_RATE_LIMITED', message: 'Over the rate limit of 1 bytes per second (bursts of 2000 bytes): this message was dropped', errors: [] }
  })
  for (let i = 5; i <= 16; i++) c.ws.send(JSON.stringify({ type: 'put', data: 'tiny', id: i }))
  t.same(await c.closed, { code: 1008, reason: 'Rate limit exceeded' })
  t.ok(app.realtime.metrics.rateLimitHits >= 11)
  const other = await client(t, url)
  other.ws.send(JSON.stringify({ type: 'put', data: payload, id: 'other' }))
  t.same(JSON.parse(await other.text()), { type: 'put:reply', data: 880, id: 'other' }, 'each connection has its own budget')
})

t.test('a connection whose unsent bytes pass maxBufferedBytes is closed with 4008 and its sends reject', async (t) => {
  const outcome = deferred<string>()
  const { url, app } = await build(t, (app) => {
    app.get('/', { realtime: { maxBufferedBytes: 256 * 1024, writeLimit: 16 * 1024 * 1024 } }, async (conn) => {
      const chunk = Buffer.alloc(64 * 1024)
      // Bounded: the kernel takes a few MiB before the connection's own buffer grows.
      for (let i = 0; i < 2000; i++) {
        const failed = await conn.sendBinary(chunk).then(() => null, (error: Error & { code: string }) => error.code)
        if (failed !== null) { outcome.resolve(failed); break }
      }
      await conn.whenClosed()
    })
  })
  const c = await client(t, url)
  const socket = (c.ws as unknown as { _socket: import('node:net').Socket })._socket
  socket.pause()
  t.equal(await outcome.promise, 'FST_RT_SLOW_CONSUMER')
  t.equal(app.realtime.metrics.slowConsumerCloses, 1)
  socket.resume()
  t.equal((await c.closed).code, 4008)
})

t.test('metrics count connections, messages, bytes and failures, and speak Prometheus at metricsRoute', async (t) => {
  const { url, app } = await build(t, (app) => {
    app.get('/m', { realtime: true }, contractHandler(echo, { ping: (n) => n }))
    app.get('/beat', { realtime: { heartbeat: 40 } }, async (conn) => { await conn.receive() })
  }, { metricsRoute: '/metrics' })
  const c = await client(t, `${url}/m`)
  c.ws.send(JSON.stringify({ type: 'ping', data: 7, id: 1 }))
  await c.text()
  c.ws.send('not json')
  await c.text()
  const dead = await client(t, `${url}/beat`, undefined, { autoPong: false })
  await dead.closed
  const metrics = app.realtime.metrics
  t.equal(metrics.connections['/m'], 1)
  t.equal(metrics.messagesIn, 2)
  t.ok(metrics.messagesOut >= 2)
  t.ok(metrics.bytesIn > 0 && metrics.bytesOut > 0)
  t.equal(metrics.validationErrors, 1)
  t.equal(metrics.heartbeatKills, 1)
  const response = await app.inject({ url: '/metrics' })
  t.equal(response.headers['content-type'], 'text/plain; version=0.0.4')
  t.match(response.body, /# TYPE realtime_connections gauge\nrealtime_connections\{route="\/m"\} 1/)
  t.match(response.body, /realtime_messages_total\{direction="in"\} 2/)
  t.match(response.body, /realtime_heartbeat_kills_total 1/)
  t.match(response.body, /realtime_handshakes_refused_total\{reason="origin"\} 0/)
  t.equal(app.realtime.prometheus(), response.body)
  const empty = await build(t, () => {})
  t.match(empty.app.realtime.prometheus(), /realtime_connections 0/, 'no routes yet: a zero sample')
})

t.test('restarting() makes app.close() say 1012 instead of 1001', async (t) => {
  const Fastify = (await import('fastify')).default
  const realtime = (await import('../lib/index.js')).default
  const app = Fastify()
  await app.register(realtime)
  app.get('/', { realtime: true }, async (conn) => { await conn.sendText('up'); await conn.receive() })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const c = await client(t, `ws://127.0.0.1:${(app.server.address() as import('node:net').AddressInfo).port}`)
  await c.text()
  app.realtime.restarting()
  await app.close()
  t.same(await c.closed, { code: 1012, reason: 'Server restarting' })
})

t.test('the security options are checked at registration', async (t) => {
  const Fastify = (await import('fastify')).default
  const realtime = (await import('../lib/index.js')).default
  for (const [options, message] of [
    [{ maxConnections: 0 }, /"maxConnections"/],
    [{ maxConnectionsPerIp: 1.5 }, /"maxConnectionsPerIp"/],
    [{ handshakeTimeout: 'soon' }, /"handshakeTimeout"/],
    [{ redactQuery: 'token' }, /"redactQuery"/],
    [{ metricsRoute: 'metrics' }, /"metricsRoute"/]
  ] as const) {
    const app = Fastify()
    await t.rejects(async () => { await app.register(realtime, options as never) }, { code: 'FST_RT_INVALID_OPTION', message })
    await app.close().catch(() => {})
  }
})

void rawResponse

t.test('tokenAuth reads the token from a header, the access_token subprotocol, a cookie or the query; 401 without, 403 refused', async (t) => {
  const lines: string[] = []
  const { tokenAuth } = await import('../lib/index.js')
  const users: Record<string, string> = { 'tok-ada': 'ada' }
  const { url, app } = await build(t, (app) => {
    app.get('/', {
      realtime: { protocols: ['access_token'] },
      onRequest: tokenAuth({ verify: (token) => { if (token === 'boom') throw new Error('store down'); return users[token] ?? null } })
    }, contractHandler(echo, { ping: (n, ctx) => ctx.userId === 'ada' ? n : -1 }, { userId: (request) => request.realtimeUser }))
    app.get('/query-only', {
      realtime: true,
      onRequest: tokenAuth({ verify: (token) => users[token] ?? null, from: ['query'], queryParam: 'auth' })
    }, async (conn, request) => { await conn.sendText(String(request.realtimeUser)) })
  }, {}, { logger: { level: 'info', stream: { write (line: string) { lines.push(line) } } } })
  const ask = async (c: Awaited<ReturnType<typeof client>>): Promise<unknown> => {
    c.ws.send(JSON.stringify({ type: 'ping', data: 5, id: 1 }))
    return JSON.parse(await c.text()).data
  }
  t.equal(await ask(await client(t, url, undefined, { headers: { authorization: 'Bearer tok-ada' } })), 5, 'header')
  const viaProtocol = await client(t, url, ['access_token', 'tok-ada'])
  t.equal(viaProtocol.ws.protocol, 'access_token', 'the marker is the chosen subprotocol')
  t.equal(await ask(viaProtocol), 5, 'subprotocol')
  t.equal(await ask(await client(t, url, undefined, { headers: { cookie: 'theme=dark; token=tok-ada' } })), 5, 'cookie')
  t.equal(await ask(await client(t, `${url}/?token=tok-ada`)), 5, 'query')
  const missing = await refusedStatus(url)
  t.equal(missing.status, 401)
  t.equal((await refusedStatus(url, {}, ['access_token'])).status, 401, 'the marker without a token after it is no token')
  t.match(JSON.parse(missing.body), { code: 'FST_RT_UNAUTHORIZED' })
  const refused = await refusedStatus(`${url}/?token=nope`)
  t.equal(refused.status, 403)
  t.match(JSON.parse(refused.body), { code: 'FST_RT_TOKEN_REFUSED' })
  t.equal((await refusedStatus(url, { headers: { authorization: 'Bearer boom' } })).status, 403, 'a throwing verify refuses')
  t.equal((await refusedStatus(url, { headers: { cookie: 'token=%E0%A4%A' } })).status, 403, 'a cookie with a malformed escape is a token verify refuses, not a 500')
  t.ok(lines.some((line) => line.includes('realtime: tokenAuth verify failed')))
  t.equal((await refusedStatus(`${url}/query-only`, { headers: { authorization: 'Bearer tok-ada' } })).status, 401, 'from: [query] ignores the header')
  t.equal(await (await client(t, `${url}/query-only?auth=tok-ada`)).text(), 'ada')
  t.equal((await refusedStatus(`${url}/query-only?other=1`)).status, 401)
  t.equal(app.realtime.metrics.authFailures, 7)
  t.notOk(lines.some((line) => line.includes('tok-ada') && !line.includes('[redacted]')), 'no token in the logs')
  t.throws(() => tokenAuth({} as never), { code: 'FST_RT_INVALID_OPTION', message: /"verify"/ })
  t.throws(() => tokenAuth({ verify: () => null, from: ['body' as never] }), { code: 'FST_RT_INVALID_OPTION', message: /"from"/ })
  t.throws(() => tokenAuth({ verify: () => null, from: [] }), { code: 'FST_RT_INVALID_OPTION', message: /"from"/ })
})

t.test('on a unix socket without trustProxy there is no client address, so no per-address limit applies', async (t) => {
  const Fastify = (await import('fastify')).default
  const realtime = (await import('../lib/index.js')).default
  const { tmpdir } = await import('node:os')
  const path = `${tmpdir()}/fastify-realtime-${process.pid}-${Date.now()}.sock`
  const app = Fastify()
  await app.register(realtime, { maxConnectionsPerIp: 1 })
  app.get('/', { realtime: true }, async (conn, request) => { await conn.sendText(String(request.ip)); await conn.receive() })
  await app.listen({ path })
  t.teardown(() => app.close())
  const first = await client(t, `ws+unix://${path}:/`)
  const second = await client(t, `ws+unix://${path}:/`)
  t.equal(await first.text(), 'undefined')
  t.equal(await second.text(), 'undefined', 'a second connection is not refused with 429')
  first.ws.close()
  await first.closed
})
