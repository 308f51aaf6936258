import Fastify, { type FastifyRequest } from 'fastify'
import { describe, expect, test } from 'tstyche'
import type { RealtimeConnection, RealtimeRequest, WSMessage, WSMessageType } from '../lib/index.js'

// Only the types are under test: the handler body is never run.
declare const conn: RealtimeConnection

describe('receiving', () => {
  test('receive() returns a WSMessage', () => {
    expect(conn.receive()).type.toBe<Promise<WSMessage>>()
    expect(conn.receive({ timeout: 500 })).type.toBe<Promise<WSMessage>>()
    expect(conn.receive({ timeout: null })).type.toBe<Promise<WSMessage>>()
    expect(conn.receive).type.not.toBeCallableWith({ timeout: '500' })
  })

  test('narrowing on msg.type types data and extra', async () => {
    const msg = await conn.receive()
    if (msg.type === 'text') {
      expect(msg.data).type.toBe<string>()
      expect(msg.extra).type.toBe<null>()
    }
    if (msg.type === 'binary') expect(msg.data).type.toBe<Buffer>()
    if (msg.type === 'ping' || msg.type === 'pong') expect(msg.data).type.toBe<Buffer>()
    if (msg.type === 'close') {
      expect(msg.data).type.toBe<number>()
      expect(msg.extra).type.toBe<string>()
    }
    if (msg.type === 'closing' || msg.type === 'closed') expect(msg.data).type.toBe<null>()
    if (msg.type === 'error') expect(msg.data).type.toBe<Error>()
  })

  test('WSMessageType lists every message type', () => {
    expect<WSMessageType>().type.toBe<'text' | 'binary' | 'ping' | 'pong' | 'close' | 'closing' | 'closed' | 'error'>()
  })

  test('a message cannot be read as the wrong type without narrowing', async () => {
    const msg = await conn.receive()
    expect(msg.data).type.toBe<string | Buffer | number | Error | null>()
    expect(() => { const text: string = msg.data; return text }).type.toRaiseError("is not assignable to type 'string'")
  })

  test('messages are read-only', async () => {
    const msg = await conn.receive()
    expect(() => { msg.type = 'text' }).type.toRaiseError('read-only')
  })

  test('the typed receive helpers', () => {
    expect(conn.receiveText()).type.toBe<Promise<string>>()
    expect(conn.receiveBinary()).type.toBe<Promise<Buffer>>()
    expect(conn.receiveJson()).type.toBe<Promise<unknown>>()
    expect(conn.receiveJson<{ n: number }>()).type.toBe<Promise<{ n: number }>>()
    expect(conn.receiveJson<string[]>({ timeout: 100 })).type.toBe<Promise<string[]>>()
  })

  test('async iteration yields WSMessage', async () => {
    for await (const msg of conn) {
      expect(msg).type.toBeAssignableTo<WSMessage>()
      if (msg.type === 'text') expect(msg.data).type.toBe<string>()
    }
  })
})

describe('sending', () => {
  test('send methods resolve to void', () => {
    expect(conn.sendText('hi')).type.toBe<Promise<void>>()
    expect(conn.sendBinary(Buffer.from('hi'))).type.toBe<Promise<void>>()
    expect(conn.sendJson({ any: ['value'] })).type.toBe<Promise<void>>()
    expect(conn.ping()).type.toBe<Promise<void>>()
    expect(conn.pong('payload')).type.toBe<Promise<void>>()
  })

  test('compress can be chosen per call', () => {
    expect(conn.sendText).type.toBeCallableWith('hi', { compress: false })
    expect(conn.sendBinary).type.toBeCallableWith(new Uint8Array(2), { compress: true })
    expect(conn.sendJson).type.toBeCallableWith({ a: 1 }, { compress: true })
    expect(conn.sendText).type.not.toBeCallableWith('hi', { compress: 'yes' })
    expect(conn.sendText).type.not.toBeCallableWith('hi', { compres: true })
  })

  test('each send method takes its own payload type', () => {
    expect(conn.sendBinary).type.toBeCallableWith(new ArrayBuffer(2))
    expect(conn.sendBinary).type.toBeCallableWith(new DataView(new ArrayBuffer(2)))
    expect(conn.sendText).type.not.toBeCallableWith(Buffer.from('hi'))
    expect(conn.sendText).type.not.toBeCallableWith({ a: 1 })
    expect(conn.sendBinary).type.not.toBeCallableWith('hi')
    expect(conn.ping).type.toBeCallableWith(Buffer.from('x'))
    expect(conn.ping).type.not.toBeCallableWith(42)
  })
})

describe('closing and state', () => {
  test('close() resolves to whether this call closed the connection', () => {
    expect(conn.close()).type.toBe<Promise<boolean>>()
    expect(conn.close({ code: 4000, reason: 'slow consumer' })).type.toBe<Promise<boolean>>()
    expect(conn.close).type.not.toBeCallableWith({ code: '1000' })
    expect(conn.close).type.not.toBeCallableWith(1000)
  })

  test('whenClosed() and terminate()', () => {
    expect(conn.whenClosed()).type.toBe<Promise<void>>()
    expect(conn.terminate()).type.toBe<void>()
  })

  test('state properties', () => {
    expect(conn.closeCode).type.toBe<number | null>()
    expect(conn.exception).type.toBe<Error | null>()
    expect(conn.protocol).type.toBe<string | null>()
    expect(conn.closed).type.toBe<boolean>()
    expect(conn.bufferedAmount).type.toBe<number>()
    expect(conn.request).type.toBe<RealtimeRequest>()
  })

  test('state that the connection owns is read-only', () => {
    expect(() => { conn.protocol = 'chat' }).type.toRaiseError('read-only')
    expect(() => { conn.closed = true }).type.toRaiseError('read-only')
    expect(() => { conn.exception = null }).type.toRaiseError('read-only')
  })
})

describe('in a route handler', () => {
  test('a receive loop narrows messages', () => {
    Fastify().get('/x', { realtime: true }, async (conn) => {
      for (;;) {
        const msg = await conn.receive()
        if (msg.type === 'text') await conn.sendText(msg.data)
        else if (msg.type === 'binary') await conn.sendBinary(msg.data)
        else if (msg.type === 'error') expect(msg.data).type.toBe<Error>()
        else if (msg.type === 'close' || msg.type === 'closing' || msg.type === 'closed') break
      }
    })
  })
})
