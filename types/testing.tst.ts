// The in-process test client and the AsyncAPI document, as an app's tests and build steps see them.
import { Type } from '@sinclair/typebox'
import Fastify from 'fastify'
import { describe, expect, test } from 'tstyche'
import { defineContract, type AsyncApiDocument } from '../lib/index.js'
import { connectTest, TestClient } from '../lib/testing/index.js'
import type { RealtimeClient } from '../lib/client/index.js'

const chat = defineContract({
  client: { who: { data: Type.Object({ room: Type.String() }), reply: Type.Array(Type.String()) }, say: Type.Object({ text: Type.String() }) },
  server: { message: Type.Object({ text: Type.String(), at: Type.Integer() }) }
})
const app = Fastify()
const client = await connectTest(app, '/chat', chat, { query: { room: 'lobby', n: [1, 2] }, headers: { authorization: 'Bearer x' }, token: 't' })

describe('connectTest()', () => {
  test('resolves with the typed client of the contract, a RealtimeClient', () => {
    expect(client).type.toBe<TestClient<typeof chat>>()
    expect(client).type.toBeAssignableTo<RealtimeClient<typeof chat>>()
    expect(client.request('who', { room: 'lobby' })).type.toBe<Promise<string[]>>()
    expect(client.send).type.not.toBeCallableWith('say', { text: 1 })
  })

  test('waits are typed by the message type', () => {
    expect(client.next('message')).type.toBe<Promise<{ text: string, at: number }>>()
    expect(client.collect('message', 2)).type.toBe<Promise<Array<{ text: string, at: number }>>>()
    expect(client.seen('message')).type.toBe<ReadonlyArray<{ text: string, at: number }>>()
    expect(client.next).type.not.toBeCallableWith('who')
    expect(client.nextEvent('join')).type.toBe<Promise<import('../lib/client/index.js').JoinOutcome>>()
    expect(client.nextEvent).type.not.toBeCallableWith('nothing')
  })

  test('options are checked', () => {
    expect(connectTest).type.not.toBeCallableWith(app, '/chat', chat, { query: { a: {} } })
    expect(connectTest).type.not.toBeCallableWith(app, '/chat', chat, { client: { url: 'ws://x' } })
  })
})

describe('app.realtime.asyncapi()', () => {
  test('returns the document, with info options', () => {
    expect(app.realtime.asyncapi({ title: 'Chat', servers: { prod: { host: 'h', protocol: 'wss' } } })).type.toBe<AsyncApiDocument>()
    expect(app.realtime.asyncapi).type.not.toBeCallableWith({ servers: { prod: { host: 'h', protocol: 'http' } } })
  })
})
