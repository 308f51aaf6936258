import t from 'tap'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { Type } from '@sinclair/typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { contractHandler, defineContract, type RealtimeConnection, type RealtimeRequest } from '../lib/index.js'
import { build, client, deferred } from './support/helpers.js'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

declare module 'fastify' {
  interface FastifyRequest {
    tenant: string | null
    shout: (text: string) => string
    host2: string
  }
}

const ask = defineContract({ client: { who: { data: Type.Null(), reply: Type.Unknown() } }, server: {} })

/** What a handler sees of its request, read on the server. */
function describe (request: RealtimeRequest): Record<string, unknown> {
  const record = request as unknown as Record<string, unknown>
  return {
    id: request.id,
    ip: request.ip,
    agent: request.headers['user-agent'],
    query: request.query,
    params: request.params,
    url: request.url,
    logs: typeof request.log.info,
    tenant: request.tenant,
    fromHook: record.fromHook,
    shout: request.shout('hi'),
    host2: request.host2,
    raw: 'raw' in request,
    body: 'body' in request,
    socket: 'socket' in request,
    routeOptions: 'routeOptions' in request
  }
}

t.test('a connection keeps a record of its request: what handlers use and what hooks set, not the raw request', async (t) => {
  const seen = deferred<{ same: boolean, described: Record<string, unknown> }>()
  const { url } = await build(t, (app) => {
    app.decorateRequest('tenant', null)
    app.decorateRequest('shout', function (text: string) { return text.toUpperCase() })
    app.decorateRequest('host2', { getter (this: FastifyRequest) { return `${this.headers.host ?? ''}!` } })
    app.addHook('onRequest', async (request) => {
      request.tenant = 'acme'
      ;(request as unknown as Record<string, unknown>).fromHook = 42
    })
    app.get('/rooms/:room', { realtime: true }, async (conn: RealtimeConnection, request) => {
      seen.resolve({ same: conn.request === request, described: describe(request) })
      await conn.receive()
    })
  })
  const c = await client(t, `${url}/rooms/lobby?x=1`, undefined, { headers: { 'user-agent': 'test-agent' } })
  const { same, described } = await seen.promise
  t.ok(same, 'the handler gets connection.request')
  t.match(described, {
    id: String,
    ip: '127.0.0.1',
    agent: 'test-agent',
    query: { x: '1' },
    params: { room: 'lobby' },
    url: '/rooms/lobby?x=1',
    logs: 'function',
    tenant: 'acme',
    fromHook: 42,
    shout: 'HI',
    host2: /^127\.0\.0\.1:\d+!$/,
    raw: false,
    body: false,
    socket: false,
    routeOptions: false
  })
  c.ws.close()
  await c.closed
})

t.test('a contract route\'s ctx.request is connection.request, with the decorations of every context up to the route\'s', async (t) => {
  const seen = deferred<{ same: boolean, shout: string }>()
  const { url } = await build(t, async (app) => {
    app.decorateRequest('shout', function (text: string) { return text })
    await app.register(async (child) => {
      child.decorateRequest('host2', { getter: () => 'child' })
      child.get('/', { realtime: true }, contractHandler(ask, {
        who: (_data, ctx) => {
          seen.resolve({ same: ctx.request === ctx.connection.request, shout: `${ctx.request.shout('a')}${ctx.request.host2}` })
          return null
        }
      }))
    })
  })
  const c = await client(t, `${url}/`)
  c.ws.send(JSON.stringify({ type: 'who', data: null, id: 1 }))
  t.same(await seen.promise, { same: true, shout: 'achild' })
  c.ws.close()
  await c.closed
})

t.test('once upgraded, Fastify\'s request and reply and the IncomingMessage can be collected', async (t) => {
  const refs: Array<WeakRef<object>> = []
  const opened = deferred()
  const { url } = await build(t, (app) => {
    app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
      if (request.ws) refs.push(new WeakRef(request), new WeakRef(reply), new WeakRef(request.raw))
    })
    app.get('/', { realtime: true }, async (conn: RealtimeConnection) => {
      opened.resolve()
      await conn.receive()
    })
    app.get('/contract', { realtime: true }, contractHandler(ask, { who: () => null }))
  })
  const a = await client(t, `${url}/`)
  const b = await client(t, `${url}/contract`)
  await opened.promise
  // Collection needs the upgrade's own turn and its timers to be over.
  await new Promise((resolve) => setImmediate(resolve))
  gc()
  t.equal(refs.length, 6)
  t.same(refs.map((ref) => ref.deref() === undefined), [true, true, true, true, true, true], 'request, reply and raw request of both routes are gone')
  a.ws.close()
  b.ws.close()
  await Promise.all([a.closed, b.closed])
})
