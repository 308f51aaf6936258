import type { IncomingMessage } from 'node:http'
import t, { type Test } from 'tap'
import Fastify from 'fastify'
import WebSocket, { type ClientOptions } from 'ws'
import realtime, { tokenAuth, type RealtimeConnection } from '../lib/index.js'
import { assertEchoes, build, client, echoHandler, handshake, once, rawResponse } from './support/helpers.js'

/** Opens a ws client that the server must refuse; resolves with the HTTP status and parsed JSON body. */
async function refused (t: Test, url: string, options?: ClientOptions, protocols?: string | string[]): Promise<{ status: number, body: Record<string, unknown> }> {
  const ws = new WebSocket(url, protocols, options)
  // ws reports a refused handshake as 'unexpected-response'; terminating it later emits 'error'.
  ws.on('error', () => {})
  t.teardown(() => { ws.terminate() })
  const [, response] = await once(ws, 'unexpected-response') as [unknown, IncomingMessage]
  let text = ''
  for await (const chunk of response) text += String(chunk)
  return { status: response.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }
}

function json (body: string): Record<string, unknown> {
  return JSON.parse(body) as Record<string, unknown>
}

/** An app with one echo route at `/ws`. */
async function echoApp (t: Test) {
  return build(t, (app) => {
    app.get('/ws', { realtime: true }, echoHandler)
  })
}

// ---- the HTTP lifecycle before the upgrade ----

t.test('onRequest, preParsing, preValidation and preHandler hooks all run before the upgrade, in order', async (t) => {
  const { url } = await build(t, (app) => {
    app.get('/ws', {
      realtime: true,
      onRequest: async (request) => { (request as unknown as { order: string[] }).order = ['onRequest'] },
      preParsing: async (request) => { (request as unknown as { order: string[] }).order.push('preParsing') },
      preValidation: async (request) => { (request as unknown as { order: string[] }).order.push('preValidation') },
      preHandler: async (request) => { (request as unknown as { order: string[] }).order.push('preHandler') }
    }, async (conn, request) => {
      const order = (request as unknown as { order: string[] }).order
      await conn.sendJson([...order, 'handler'])
    })
  })
  const c = await client(t, `${url}/ws`)
  t.same(JSON.parse(await c.text()), ['onRequest', 'preParsing', 'preValidation', 'preHandler', 'handler'])
  t.equal((await c.closed).code, 1000)
})

t.test('an onRequest hook that replies 401 stops the upgrade and the client sees 401', async (t) => {
  let handlerRuns = 0
  const { url } = await build(t, (app) => {
    app.get('/ws', {
      realtime: true,
      onRequest: async (request, reply) => {
        if (request.headers.authorization !== 'Bearer good') await reply.code(401).send({ error: 'no token' })
      }
    }, async (conn) => {
      handlerRuns++
      await echoHandler(conn)
    })
  })
  const { status, body } = await refused(t, `${url}/ws`, { headers: { authorization: 'Bearer bad' } })
  t.equal(status, 401)
  t.same(body, { error: 'no token' })
  t.equal(handlerRuns, 0, 'the realtime handler never ran')
  await assertEchoes(t, `${url}/ws`, undefined, { headers: { authorization: 'Bearer good' } })
  t.equal(handlerRuns, 1)
})

t.test('a preHandler hook that replies 403 stops the upgrade and the client sees 403', async (t) => {
  const { url } = await build(t, (app) => {
    app.get('/ws', {
      realtime: true,
      preHandler: async (request, reply) => {
        if (request.headers['x-role'] !== 'admin') await reply.code(403).send({ error: 'admins only' })
      }
    }, echoHandler)
  })
  const { status, body } = await refused(t, `${url}/ws`, { headers: { 'x-role': 'guest' } })
  t.equal(status, 403)
  t.same(body, { error: 'admins only' })
  await assertEchoes(t, `${url}/ws`, undefined, { headers: { 'x-role': 'admin' } })
})

t.test('an invalid querystring fails schema validation with 400 before the upgrade', async (t) => {
  let handlerRuns = 0
  const { url, port } = await build(t, (app) => {
    app.get('/ws', {
      realtime: true,
      schema: { querystring: { type: 'object', properties: { room: { type: 'integer' } }, required: ['room'] } }
    }, async (conn) => { handlerRuns++; await echoHandler(conn) })
  })
  const { status, body } = await refused(t, `${url}/ws?room=lobby`)
  t.equal(status, 400)
  t.equal(body.code, 'FST_ERR_VALIDATION')
  t.match(body.message, /querystring\/room must be integer/)
  const raw = await rawResponse(port, handshake('/ws'))
  t.equal(raw.status, 400, 'a missing required parameter is refused too')
  t.match(json(raw.body).message, /querystring must have required property 'room'/)
  t.equal(handlerRuns, 0)
  await assertEchoes(t, `${url}/ws?room=7`)
})

t.test('invalid headers fail schema validation with 400 before the upgrade', async (t) => {
  const { url } = await build(t, (app) => {
    app.get('/ws', {
      realtime: true,
      schema: { headers: { type: 'object', properties: { 'x-client-version': { type: 'string', pattern: '^\\d+$' } }, required: ['x-client-version'] } }
    }, echoHandler)
  })
  const { status, body } = await refused(t, `${url}/ws`, { headers: { 'x-client-version': 'beta' } })
  t.equal(status, 400)
  t.equal(body.code, 'FST_ERR_VALIDATION')
  t.match(body.message, /headers\/x-client-version must match pattern/)
  await assertEchoes(t, `${url}/ws`, undefined, { headers: { 'x-client-version': '3' } })
})

t.test('invalid route params fail schema validation with 400 before the upgrade', async (t) => {
  const { url } = await build(t, (app) => {
    app.get('/rooms/:id', {
      realtime: true,
      schema: { params: { type: 'object', properties: { id: { type: 'integer', minimum: 1 } } } }
    }, async (conn, request) => {
      await conn.sendJson(request.params)
      await echoHandler(conn)
    })
  })
  const { status, body } = await refused(t, `${url}/rooms/zero`)
  t.equal(status, 400)
  t.equal(body.code, 'FST_ERR_VALIDATION')
  t.match(body.message, /params\/id must be integer/)
  const c = await client(t, `${url}/rooms/12`)
  t.same(JSON.parse(await c.text()), { id: 12 }, 'params are coerced by the schema')
  c.ws.send('hi')
  t.equal(await c.text(), 'hi')
})

t.test('a realtime route inside a plugin registered with a prefix is served under the prefix', async (t) => {
  const { url, app } = await build(t, async (app) => {
    await app.register(async (child) => {
      child.get('/chat', { realtime: true }, echoHandler)
    }, { prefix: '/v1' })
  })
  await assertEchoes(t, `${url}/v1/chat`)
  const plain = await app.inject({ method: 'GET', url: '/v1/chat' })
  t.equal(plain.statusCode, 426)
  const { status } = await refused(t, `${url}/chat`)
  t.equal(status, 404, 'the unprefixed path does not exist')
  await assertEchoes(t, `${url}/v1/chat`)
})

t.test('a hook in one child plugin does not apply to a sibling plugin\'s realtime route', async (t) => {
  const ran: string[] = []
  const { url } = await build(t, async (app) => {
    await app.register(async (guarded) => {
      guarded.addHook('onRequest', async (request, reply) => {
        ran.push(request.url)
        await reply.code(401).send({ error: 'guarded' })
      })
      guarded.get('/guarded', { realtime: true }, echoHandler)
    })
    await app.register(async (open) => {
      open.get('/open', { realtime: true }, echoHandler)
    })
  })
  await assertEchoes(t, `${url}/open`)
  t.same(ran, [], 'the sibling\'s hook never ran for /open')
  const { status } = await refused(t, `${url}/guarded`)
  t.equal(status, 401)
  t.same(ran, ['/guarded'])
  await assertEchoes(t, `${url}/open`)
})

// ---- plain HTTP and malformed handshakes ----

t.test('a plain HTTP GET to a realtime route gets 426 with Upgrade: websocket (app.inject)', async (t) => {
  const { app, url } = await echoApp(t)
  const response = await app.inject({ method: 'GET', url: '/ws' })
  t.equal(response.statusCode, 426)
  t.equal(response.headers.upgrade, 'websocket')
  const body = response.json<Record<string, unknown>>()
  t.equal(body.code, 'FST_RT_UPGRADE_REQUIRED')
  t.equal(body.statusCode, 426)
  await assertEchoes(t, `${url}/ws`)
})

t.test('a plain HTTP GET over the network gets 426 too', async (t) => {
  const { port, url } = await echoApp(t)
  const response = await rawResponse(port, 'GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')
  t.equal(response.status, 426)
  t.equal(response.headers.upgrade, 'websocket')
  t.equal(json(response.body).code, 'FST_RT_UPGRADE_REQUIRED')
  await assertEchoes(t, `${url}/ws`)
})

interface BadHandshake {
  title: string
  headers: Record<string, string | null>
  message: RegExp
  version?: boolean
}

const badHandshakes: BadHandshake[] = [
  { title: 'an Upgrade header other than websocket (h2c) is refused with 400', headers: { Upgrade: 'h2c' }, message: /Upgrade header must be "websocket", got "h2c"/ },
  { title: 'an Upgrade header listing websocket with another protocol is refused with 400', headers: { Upgrade: 'websocket, h2c' }, message: /Upgrade header must be "websocket", got "websocket, h2c"/ },
  {
    title: 'a Connection header without the upgrade token is refused with 400 by the HTTP fallback',
    headers: { Connection: 'keep-alive, notupgrade' },
    message: /Connection header must contain the "upgrade" token, got "keep-alive, notupgrade"/
  },
  { title: 'a handshake without Sec-WebSocket-Key is refused with 400', headers: { 'Sec-WebSocket-Key': null }, message: /Sec-WebSocket-Key header must be 16 bytes in base64, got none/ },
  { title: 'a Sec-WebSocket-Key that is not 16 bytes of base64 is refused with 400', headers: { 'Sec-WebSocket-Key': 'c2hvcnQ=' }, message: /Sec-WebSocket-Key header must be 16 bytes in base64, got "c2hvcnQ="/ },
  { title: 'Sec-WebSocket-Version 7 is refused with 400 and the supported versions', headers: { 'Sec-WebSocket-Version': '7' }, message: /unsupported Sec-WebSocket-Version "7"/, version: true },
  { title: 'a missing Sec-WebSocket-Version is refused with 400 and the supported versions', headers: { 'Sec-WebSocket-Version': null }, message: /unsupported Sec-WebSocket-Version none/, version: true }
]

for (const bad of badHandshakes) {
  t.test(bad.title, async (t) => {
    let handlerRuns = 0
    const { port, url } = await build(t, (app) => {
      app.get('/ws', { realtime: true }, async (conn) => { handlerRuns++; await echoHandler(conn) })
    })
    const response = await rawResponse(port, handshake('/ws', bad.headers))
    t.equal(response.status, 400)
    const body = json(response.body)
    t.equal(body.code, 'FST_RT_BAD_HANDSHAKE')
    t.match(body.message, bad.message)
    if (bad.version === true) t.equal(response.headers['sec-websocket-version'], '13, 8')
    t.notOk('sec-websocket-accept' in response.headers, 'the connection was not upgraded')
    t.equal(handlerRuns, 0)
    await assertEchoes(t, `${url}/ws`)
  })
}

t.test('Upgrade: WebSocket (capitalised) is accepted with 101', async (t) => {
  const { port, url } = await echoApp(t)
  const response = await rawResponse(port, handshake('/ws', { Upgrade: 'WebSocket' }))
  t.equal(response.status, 101)
  // RFC 6455 §1.3: base64(sha1(key + GUID)) for the sample key.
  t.equal(response.headers['sec-websocket-accept'], 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=')
  await assertEchoes(t, `${url}/ws`)
})

// ---- allowedOrigins ----

async function forbidden (t: Test, port: number, path: string, origin: string): Promise<void> {
  const response = await rawResponse(port, handshake(path, { Origin: origin }))
  t.equal(response.status, 403, `${origin} is refused on ${path}`)
  const body = json(response.body)
  t.equal(body.code, 'FST_RT_ORIGIN_FORBIDDEN')
  t.match(body.message, origin)
}

async function allowed (t: Test, url: string, origin?: string): Promise<void> {
  await assertEchoes(t, url, undefined, origin === undefined ? {} : { origin })
}

t.test('a global allowedOrigins string matches case-insensitively and refuses other origins with 403', async (t) => {
  const { port, url } = await build(t, (app) => {
    app.get('/ws', { realtime: true }, echoHandler)
  }, { allowedOrigins: 'https://Example.com' })
  await allowed(t, `${url}/ws`, 'https://example.COM')
  await forbidden(t, port, '/ws', 'https://evil.example')
  await forbidden(t, port, '/ws', 'https://example.com.evil.example')
  await allowed(t, `${url}/ws`, 'https://example.com')
})

t.test('a request without an Origin header passes list rules', async (t) => {
  const { url, port } = await build(t, (app) => {
    app.get('/ws', { realtime: true }, echoHandler)
  }, { allowedOrigins: ['https://example.com', /^https:\/\/[a-z]+\.example\.com$/] })
  const response = await rawResponse(port, handshake('/ws'))
  t.equal(response.status, 101)
  await allowed(t, `${url}/ws`)
})

t.test('route allowedOrigins override the global ones', async (t) => {
  const { port, url } = await build(t, (app) => {
    app.get('/global', { realtime: true }, echoHandler)
    app.get('/route', { realtime: { allowedOrigins: 'https://admin.example' } }, echoHandler)
  }, { allowedOrigins: 'https://example.com' })
  await allowed(t, `${url}/global`, 'https://example.com')
  await forbidden(t, port, '/global', 'https://admin.example')
  await allowed(t, `${url}/route`, 'https://admin.example')
  await forbidden(t, port, '/route', 'https://example.com')
  await allowed(t, `${url}/route`, 'https://admin.example')
})

t.test('a RegExp allowedOrigins rule matches origins', async (t) => {
  const { port, url } = await build(t, (app) => {
    app.get('/ws', { realtime: { allowedOrigins: /^https:\/\/[a-z]+\.example\.com$/ } }, echoHandler)
  })
  await allowed(t, `${url}/ws`, 'https://app.example.com')
  await allowed(t, `${url}/ws`, 'https://docs.example.com')
  await forbidden(t, port, '/ws', 'https://example.com')
  await forbidden(t, port, '/ws', 'http://app.example.com')
  await allowed(t, `${url}/ws`, 'https://app.example.com')
})

t.test('a global RegExp with the g flag gives the same answer every time', async (t) => {
  const { port, url } = await build(t, (app) => {
    app.get('/ws', { realtime: true }, echoHandler)
  }, { allowedOrigins: /^https:\/\/app\.example$/g })
  await allowed(t, `${url}/ws`, 'https://app.example')
  await allowed(t, `${url}/ws`, 'https://app.example')
  await forbidden(t, port, '/ws', 'https://other.example')
  await allowed(t, `${url}/ws`, 'https://app.example')
})

t.test('allowedOrigins \'*\' allows any origin', async (t) => {
  const { url } = await build(t, (app) => {
    app.get('/ws', { realtime: { allowedOrigins: '*' } }, echoHandler)
  }, { allowedOrigins: 'https://example.com' })
  await allowed(t, `${url}/ws`, 'https://anything.example')
  await allowed(t, `${url}/ws`, 'null')
  await allowed(t, `${url}/ws`)
})

t.test('an allowedOrigins array mixes strings and RegExps', async (t) => {
  const { port, url } = await build(t, (app) => {
    app.get('/ws', { realtime: { allowedOrigins: ['https://one.example', /^https:\/\/two\.example(?::\d+)?$/] } }, echoHandler)
  })
  await allowed(t, `${url}/ws`, 'https://ONE.example')
  await allowed(t, `${url}/ws`, 'https://two.example:8443')
  await forbidden(t, port, '/ws', 'https://three.example')
  await allowed(t, `${url}/ws`, 'https://one.example')
})

t.test('an allowedOrigins function decides with the origin and the request', async (t) => {
  const calls: Array<[string | undefined, string]> = []
  const { port, url } = await build(t, (app) => {
    app.get('/ws', {
      realtime: {
        allowedOrigins: (origin, request) => {
          calls.push([origin, request.url])
          return origin === 'https://trusted.example' || request.headers['x-internal'] === 'yes'
        }
      }
    }, echoHandler)
  })
  await allowed(t, `${url}/ws`, 'https://trusted.example')
  await forbidden(t, port, '/ws?from=test', 'https://untrusted.example')
  const response = await rawResponse(port, handshake('/ws'))
  t.equal(response.status, 403, 'a function also decides for requests without Origin')
  t.same(calls[0], ['https://trusted.example', '/ws'])
  t.same(calls[1], ['https://untrusted.example', '/ws?from=test'], 'the function gets the request')
  t.same(calls[2], [undefined, '/ws'], 'a function also decides for requests without Origin')
  await assertEchoes(t, `${url}/ws`, undefined, { origin: 'https://other.example', headers: { 'x-internal': 'yes' } })
})

t.test('an async allowedOrigins function is awaited', async (t) => {
  const { port, url } = await build(t, (app) => {
    app.get('/ws', {
      realtime: {
        allowedOrigins: async (origin) => {
          await new Promise((resolve) => setImmediate(resolve))
          return origin === 'https://async.example'
        }
      }
    }, echoHandler)
  })
  await allowed(t, `${url}/ws`, 'https://async.example')
  await forbidden(t, port, '/ws', 'https://sync.example')
  const response = await rawResponse(port, handshake('/ws'))
  t.equal(response.status, 403, 'the function refused a request without Origin')
  await allowed(t, `${url}/ws`, 'https://async.example')
})

// ---- subprotocols ----

function reportProtocol (conn: RealtimeConnection): Promise<void> {
  return conn.sendJson({ protocol: conn.protocol }).then(() => echoHandler(conn))
}

t.test('the first client-offered subprotocol that the route supports is chosen', async (t) => {
  const { url } = await build(t, (app) => {
    app.get('/ws', { realtime: { protocols: ['a', 'b'] } }, reportProtocol)
  })
  const c = await client(t, `${url}/ws`, ['b', 'a'])
  t.equal(c.ws.protocol, 'b')
  t.same(JSON.parse(await c.text()), { protocol: 'b' }, 'conn.protocol is the chosen one')
  const d = await client(t, `${url}/ws`, ['x', 'a', 'b'])
  t.equal(d.ws.protocol, 'a')
  t.same(JSON.parse(await d.text()), { protocol: 'a' })
})

t.test('conn.protocol is null when the client offers no subprotocol', async (t) => {
  const { url, port } = await build(t, (app) => {
    app.get('/ws', { realtime: { protocols: ['a', 'b'] } }, reportProtocol)
  })
  const c = await client(t, `${url}/ws`)
  t.equal(c.ws.protocol, '')
  t.same(JSON.parse(await c.text()), { protocol: null })
  const response = await rawResponse(port, handshake('/ws'))
  t.equal(response.status, 101)
  t.notOk('sec-websocket-protocol' in response.headers)
})

t.test('no common subprotocol upgrades without Sec-WebSocket-Protocol and logs a warning', async (t) => {
  const lines: Array<Record<string, unknown>> = []
  const stream = { write (line: string) { lines.push(JSON.parse(line) as Record<string, unknown>) } }
  let resolveProtocol!: (protocol: string | null) => void
  const seen = new Promise<string | null>((resolve) => { resolveProtocol = resolve })
  const { port, url } = await build(t, (app) => {
    app.get('/ws', { realtime: { protocols: ['a', 'b'] } }, async (conn) => {
      resolveProtocol(conn.protocol)
      await echoHandler(conn)
    })
  }, {}, { logger: { level: 'warn', stream } })
  const response = await rawResponse(port, handshake('/ws', { 'Sec-WebSocket-Protocol': 'x' }))
  t.equal(response.status, 101)
  t.notOk('sec-websocket-protocol' in response.headers, 'no subprotocol header')
  t.equal(await seen, null, 'conn.protocol is null')
  const warning = lines.find((line) => line.level === 40)
  t.ok(warning, 'a warning was logged')
  // Only counted: a token may travel as an offered subprotocol.
  t.match(warning, { msg: /no common subprotocol/, offered: 1, supported: ['a', 'b'], reqId: String })
  await assertEchoes(t, `${url}/ws`, 'b')
})

t.test('requireProtocol refuses a handshake without a common subprotocol with 400', async (t) => {
  const { port, url } = await build(t, (app) => {
    app.get('/ws', { realtime: { protocols: ['a', 'b'], requireProtocol: true } }, echoHandler)
  })
  const response = await rawResponse(port, handshake('/ws', { 'Sec-WebSocket-Protocol': 'x, y' }))
  t.equal(response.status, 400)
  const body = json(response.body)
  t.equal(body.code, 'FST_RT_NO_SUBPROTOCOL')
  t.equal(body.message, 'None of the 2 offered subprotocols is supported; this route supports: a, b', 'what was offered is counted, never repeated')
  const { status } = await refused(t, `${url}/ws`, {}, 'z')
  t.equal(status, 400, 'a ws client is refused the same way')
  await assertEchoes(t, `${url}/ws`, ['x', 'a'])
})

t.test('a route without protocols never echoes the client\'s first offer', async (t) => {
  const { port, url } = await build(t, (app) => {
    app.get('/ws', { realtime: true }, reportProtocol)
    // A route with protocols must not make ws's default (first offer) apply elsewhere.
    app.get('/other', { realtime: { protocols: ['chat'] } }, reportProtocol)
  })
  const response = await rawResponse(port, handshake('/ws', { 'Sec-WebSocket-Protocol': 'chat, x' }))
  t.equal(response.status, 101)
  t.notOk('sec-websocket-protocol' in response.headers)
  const other = await rawResponse(port, handshake('/other', { 'Sec-WebSocket-Protocol': 'x, chat' }))
  t.equal(other.headers['sec-websocket-protocol'], 'chat')
  const c = await client(t, `${url}/ws`)
  t.same(JSON.parse(await c.text()), { protocol: null })
  c.ws.send('still there')
  t.equal(await c.text(), 'still there')
})

for (const header of ['a, , b', 'a b', 'a,', 'a;b']) {
  t.test(`a malformed Sec-WebSocket-Protocol header ${JSON.stringify(header)} is refused with 400`, async (t) => {
    const { port, url } = await build(t, (app) => {
      app.get('/ws', { realtime: { protocols: ['a', 'b'] } }, echoHandler)
    })
    const response = await rawResponse(port, handshake('/ws', { 'Sec-WebSocket-Protocol': header }))
    t.equal(response.status, 400)
    const body = json(response.body)
    t.equal(body.code, 'FST_RT_BAD_HANDSHAKE')
    t.equal(body.message, 'Bad WebSocket handshake: the Sec-WebSocket-Protocol header must be a comma-separated list of tokens', 'the header is not repeated')
    await assertEchoes(t, `${url}/ws`, 'a')
  })
}

// ---- route registration ----

t.test('a realtime route with method POST throws FST_RT_INVALID_ROUTE at registration', async (t) => {
  const { url } = await build(t, (app) => {
    t.throws(() => app.post('/ws-post', { realtime: true }, echoHandler as never), { code: 'FST_RT_INVALID_ROUTE', message: /\/ws-post.*POST/ })
    t.throws(() => app.route({ method: ['GET', 'PUT'], url: '/ws-put', realtime: true, handler: echoHandler }), { code: 'FST_RT_INVALID_ROUTE', message: /GET, PUT/ })
    app.get('/ws', { realtime: true }, echoHandler)
  })
  await assertEchoes(t, `${url}/ws`)
})

t.test('the automatic HEAD route of a realtime route answers 426', async (t) => {
  const { app, port, url } = await echoApp(t)
  const response = await app.inject({ method: 'HEAD', url: '/ws' })
  t.equal(response.statusCode, 426)
  t.equal(response.headers.upgrade, 'websocket')
  const raw = await rawResponse(port, 'HEAD /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')
  t.equal(raw.status, 426)
  await assertEchoes(t, `${url}/ws`)
})

t.test('requireProtocol on a route without protocols refuses any offer and says it supports none', async (t) => {
  const { app } = await build(t, (app) => {
    app.get('/strict', { realtime: { requireProtocol: true } }, echoHandler)
  })
  const { status, body } = await rawResponse((app.server.address() as import('node:net').AddressInfo).port, handshake('/strict', { 'Sec-WebSocket-Protocol': 'chat' }))
  t.equal(status, 400)
  t.match(json(body), { code: 'FST_RT_NO_SUBPROTOCOL', message: /supports: none/ })
})

t.test('a route\'s own onRequest hooks, given as an array, run after the handshake checks', async (t) => {
  const order: string[] = []
  const { url, port } = await build(t, (app) => {
    app.get('/', {
      realtime: true,
      onRequest: [
        async () => { order.push('first') },
        async () => { order.push('second') }
      ]
    }, echoHandler)
  })
  await assertEchoes(t, url)
  t.same(order, ['first', 'second'])
  order.length = 0
  const { status } = await rawResponse(port, handshake('/', { 'Sec-WebSocket-Key': 'short' }))
  t.equal(status, 400)
  t.same(order, [], 'a malformed handshake is refused before the route hooks run')
})

t.test('realtime: false leaves an ordinary HTTP route', async (t) => {
  const { app } = await build(t, (app) => {
    app.get('/plain', { realtime: false }, async () => ({ plain: true }))
  })
  const response = await app.inject({ method: 'GET', url: '/plain' })
  t.same(response.json(), { plain: true })
})

t.test('handshake headers that never became an upgrade get a 400 that says what is missing', async (t) => {
  const { app, url } = await build(t, (app) => {
    app.get('/ws', { realtime: true }, echoHandler)
  })
  const onlyKey = await app.inject({ method: 'GET', url: '/ws', headers: { 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' } })
  t.equal(onlyKey.statusCode, 400)
  t.match(onlyKey.json().message, /Upgrade header must be "websocket", got none/)
  const noConnection = await app.inject({ method: 'GET', url: '/ws', headers: { upgrade: 'websocket' } })
  t.equal(noConnection.statusCode, 400)
  t.match(noConnection.json().message, /Connection header must contain the "upgrade" token, got none/)
  // inject() never upgrades, so even a complete handshake lands on the HTTP path.
  const complete = await app.inject({
    method: 'GET',
    url: '/ws',
    headers: { upgrade: 'websocket', connection: 'upgrade', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13' }
  })
  t.equal(complete.statusCode, 400)
  t.match(complete.json().message, /the request was not upgraded/)
  await assertEchoes(t, `${url}/ws`)
})

t.test('a long header value is cut short in the error message', async (t) => {
  const { port, url } = await build(t, (app) => {
    app.get('/ws', { realtime: true }, echoHandler)
  })
  const { status, body } = await rawResponse(port, handshake('/ws', { 'Sec-WebSocket-Key': 'k'.repeat(60) }))
  t.equal(status, 400)
  const message = String(json(body).message)
  t.match(message, /got "k{40}\.\.\."/)
  t.notMatch(message, /k{41}/)
  await assertEchoes(t, `${url}/ws`)
})

t.test('app.injectWS, which sends the version as a number, reaches the route\'s checks and hooks', async (t) => {
  const app = Fastify()
  await app.register(realtime)
  app.get('/ws', { realtime: true, onRequest: tokenAuth({ verify: (token) => token === 'good' ? 'ada' : null }) }, echoHandler)
  app.get('/plain', async () => 'plain')
  await app.ready()
  t.teardown(() => app.close())
  await t.rejects(app.injectWS('/ws'), { message: 'Unexpected server response: 401' })
  await t.rejects(app.injectWS('/ws?token=bad'), { message: 'Unexpected server response: 403' })
  await t.rejects(app.injectWS('/plain'), { message: 'Unexpected server response: 404' })
})
