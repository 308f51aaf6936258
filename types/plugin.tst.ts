import Fastify, { type FastifyRequest } from 'fastify'
import { describe, expect, test } from 'tstyche'
import realtime, {
  CloseCode, RECONNECT_RANGE, TERMINAL_RANGE, errors, realtime as namedRealtime,
  type RealtimeErrorCode, type RealtimePluginOptions, type RealtimeRouteOptions
} from '../lib/index.js'

const app = Fastify()

describe('plugin options', () => {
  test('register() accepts the options and no options', () => {
    expect(app.register(realtime)).type.not.toRaiseError()
    expect(app.register(namedRealtime, {})).type.not.toRaiseError()
    expect(app.register(realtime, { heartbeat: 1000 })).type.not.toRaiseError()
    expect(app.register(realtime, {
      closeTimeout: 5000,
      receiveTimeout: null,
      autoClose: false,
      autoPing: false,
      heartbeat: null,
      protocols: ['chat.v2', 'chat.v1'] as const,
      requireProtocol: true,
      compress: { serverMaxWindowBits: 12, clientNoContextTakeover: true, level: 6, memLevel: 9, threshold: 256 },
      maxMsgSize: 0,
      readLimit: 1 << 20,
      writeLimit: 1 << 16,
      prefix: '/ws'
    })).type.not.toRaiseError()
  })

  test('allowedOrigins takes rules or a function', () => {
    expect(app.register(realtime, { allowedOrigins: 'https://example.com' })).type.not.toRaiseError()
    expect(app.register(realtime, { allowedOrigins: ['https://example.com', /\.example\.com$/, '*'] })).type.not.toRaiseError()
    expect(app.register(realtime, {
      allowedOrigins: async (origin, request) => {
        expect(origin).type.toBe<string | undefined>()
        expect(request).type.toBe<FastifyRequest>()
        return origin === undefined
      }
    })).type.not.toRaiseError()
  })

  test('options of the wrong type are rejected', () => {
    expect(app.register(realtime, { heartbeat: '1' })).type.toRaiseError("Type 'string' is not assignable to type 'number'")
    expect(app.register(realtime, { compress: 'yes' })).type.toRaiseError()
    expect(app.register(realtime, { protocols: 'chat' })).type.toRaiseError()
    expect(app.register(realtime, { allowedOrigins: 42 })).type.toRaiseError()
  })

  test('unknown options are rejected', () => {
    expect(app.register(realtime, { hearbeat: 1000 })).type.toRaiseError("'hearbeat' does not exist")
    expect(app.register(realtime, { compress: { lvl: 1 } })).type.toRaiseError("'lvl' does not exist")
  })

  test('route options are the plugin options', () => {
    expect<RealtimeRouteOptions>().type.toBe<RealtimePluginOptions>()
  })
})

describe('exports', () => {
  test('close codes are literal numbers', () => {
    expect(CloseCode.GOING_AWAY).type.toBe<1001>()
    expect(CloseCode.INTERNAL_ERROR).type.toBe<1011>()
    expect(RECONNECT_RANGE).type.toBe<{ readonly min: 4000, readonly max: 4499 }>()
    expect(TERMINAL_RANGE).type.toBe<{ readonly min: 4500, readonly max: 4999 }>()
  })

  test('error codes are the keys of errors', () => {
    expect<RealtimeErrorCode>().type.toBe<keyof typeof errors>()
    expect<'FST_RT_UPGRADE_REQUIRED'>().type.toBeAssignableTo<RealtimeErrorCode>()
    expect<'FST_RT_NOPE'>().type.not.toBeAssignableTo<RealtimeErrorCode>()
    expect(new errors.FST_RT_RECEIVE_TIMEOUT(100).code).type.toBe<'FST_RT_RECEIVE_TIMEOUT'>()
  })
})
