import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { describe, expect, test } from 'tstyche'
import type { RealtimeConnection, RealtimeRequest } from '../lib/index.js'

const app = Fastify()
const typed = app.withTypeProvider<TypeBoxTypeProvider>()
const room = Type.Object({ room: Type.String() })

describe('app.get() with realtime', () => {
  test('the handler gets the connection and what it keeps of the request', () => {
    app.get('/x', { realtime: true }, async (conn, request) => {
      expect(conn).type.toBe<RealtimeConnection>()
      expect(request).type.toBe<RealtimeRequest>()
    })
    app.get('/x', { realtime: { heartbeat: 1000, protocols: ['chat'] } }, async (conn, request) => {
      expect(conn).type.toBe<RealtimeConnection>()
      expect(request).type.toBe<RealtimeRequest>()
    })
  })

  test('the kept request has what handlers use, typed from the route, and nothing that needs the raw request', () => {
    typed.get('/rooms/:room', { realtime: true, schema: { params: room, querystring: Type.Object({ page: Type.Number() }) } }, async (_conn, request) => {
      expect(request.params).type.toBe<{ room: string }>()
      expect(request.query).type.toBe<{ page: number }>()
      expect(request.id).type.toBe<string>()
      expect(request.ip).type.toBe<string>()
      expect(request.url).type.toBe<string>()
      expect(request.headers['user-agent']).type.toBe<string | undefined>()
      expect(request.log).type.toBe<FastifyRequest['log']>()
      // Decorations (augmented FastifyRequest members) are kept: tokenAuth()'s own is one.
      expect(request.realtimeUser).type.toBe<string | null>()
      expect(request).type.not.toHaveProperty('raw')
      expect(request).type.not.toHaveProperty('socket')
      expect(request).type.not.toHaveProperty('body')
      expect(request).type.not.toHaveProperty('server')
      expect(request).type.not.toHaveProperty('routeOptions')
      expect(request).type.not.toHaveProperty('ips')
    })
  })

  test('the handler may return a value, which is ignored', () => {
    expect(app.get('/x', { realtime: true }, (conn) => conn.close({ code: 4500 }))).type.not.toRaiseError()
    expect(app.get('/x', { realtime: true }, async (conn) => { return await conn.receive() })).type.not.toRaiseError()
  })

  test('the handler may be synchronous and runs with the instance as this', () => {
    app.get('/x', { realtime: true }, function (conn) {
      expect(this).type.toBe<FastifyInstance>()
      conn.terminate()
    })
  })

  test('it returns the instance for chaining', () => {
    expect(app.get('/x', { realtime: true }, async () => {})).type.toBe<FastifyInstance>()
  })

  test('a route without realtime keeps the plain request and reply', () => {
    app.get('/plain', async (request, reply) => {
      expect(request).type.toBe<FastifyRequest>()
      expect(reply.code).type.toBeCallableWith(200)
    })
  })

  test('an explicit route generic types the request', () => {
    app.get<{ Querystring: { room: string }, Params: { id: string } }>('/x/:id', { realtime: true }, async (_conn, request) => {
      expect(request.query.room).type.toBe<string>()
      expect(request.params.id).type.toBe<string>()
    })
  })

  test('a TypeBox querystring schema types request.query in the handler', () => {
    typed.get('/x', { realtime: true, schema: { querystring: room } }, async (conn, request) => {
      expect(conn).type.toBe<RealtimeConnection>()
      expect(request.query.room).type.toBe<string>()
      expect(request.query).type.not.toHaveProperty('other')
    })
  })

  test('a TypeBox schema types request.query in the hooks that run before the upgrade', () => {
    typed.get('/x', {
      realtime: true,
      schema: { querystring: room, headers: Type.Object({ authorization: Type.String() }) },
      onRequest: async (request) => { expect(request.query.room).type.toBe<string>() },
      preValidation: async (request) => { expect(request.headers.authorization).type.toBe<string>() },
      preHandler: async (request, reply) => {
        expect(request.query.room).type.toBe<string>()
        expect(reply.code).type.toBeCallableWith(401)
      }
    }, async (_conn, request) => {
      expect(request.headers.authorization).type.toBe<string>()
    })
  })
})

describe('app.route() with realtime', () => {
  test('the handler gets the connection and what it keeps of the request', () => {
    app.route({
      method: 'GET',
      url: '/x',
      realtime: { closeTimeout: 5000, compress: { threshold: 1024 } },
      handler: async (conn, request) => {
        expect(conn).type.toBe<RealtimeConnection>()
        expect(request).type.toBe<RealtimeRequest>()
      }
    })
    app.route({
      method: 'GET',
      url: '/x',
      realtime: true,
      handler: async (conn) => { expect(conn).type.toBe<RealtimeConnection>() }
    })
  })

  test('a TypeBox querystring schema types request.query in the handler', () => {
    typed.route({
      method: 'GET',
      url: '/x',
      realtime: true,
      schema: { querystring: room },
      handler: async (_conn, request) => { expect(request.query.room).type.toBe<string>() }
    })
  })

  test('a route without realtime keeps the plain request and reply', () => {
    app.route({
      method: 'GET',
      url: '/plain',
      handler: async (request, reply) => {
        expect(request).type.toBe<FastifyRequest>()
        expect(reply.send).type.toBeCallableWith('ok')
      }
    })
  })
})

describe('route option mistakes do not compile', () => {
  test('an unknown realtime option is rejected', () => {
    expect(app.get('/x', { realtime: { hearbeat: 1000 } }, async () => {})).type.toRaiseError("'hearbeat' does not exist")
    expect(app.get('/x', { realtime: { closeTimout: 10 } }, async () => {})).type.toRaiseError("'closeTimout' does not exist")
    expect(app.route({ method: 'GET', url: '/x', realtime: { hearbeat: 1000 }, handler: async () => {} }))
      .type.toRaiseError("'hearbeat' does not exist")
  })

  test('a realtime option of the wrong type is rejected', () => {
    expect(app.get('/x', { realtime: { closeTimeout: '10' } }, async () => {})).type.toRaiseError(
      "Type 'string' is not assignable to type 'number'"
    )
    expect(app.get('/x', { realtime: { autoPing: 'yes' } }, async () => {})).type.toRaiseError(
      "Type 'string' is not assignable to type 'boolean"
    )
    expect(app.get('/x', { realtime: { compress: { level: '1' } } }, async () => {})).type.toRaiseError(
      "Type 'string' is not assignable to type 'number'"
    )
    expect(app.get('/x', { realtime: { compress: { lvl: 1 } } }, async () => {})).type.toRaiseError("'lvl' does not exist")
    expect(app.get('/x', { realtime: 'yes' }, async () => {})).type.toRaiseError()
    expect(app.route({ method: 'GET', url: '/x', realtime: { closeTimeout: '10' }, handler: async () => {} }))
      .type.toRaiseError("Type 'string' is not assignable to type 'number'")
  })

  test('a realtime handler that reads the connection as a reply is rejected', () => {
    expect(app.get('/x', { realtime: true }, async (conn) => { conn.code(200) })).type.toRaiseError(
      "Property 'code' does not exist on type 'RealtimeConnection'"
    )
  })
})
