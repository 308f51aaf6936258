import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type, type Static } from '@sinclair/typebox'
import { describe, expect, test } from 'tstyche'
import {
  contractHandler, defineContract, MessageError,
  type ClientData, type ClientType, type MessageContext, type MessageHandlers, type RealtimeConnection, type RealtimeRequest, type ReplyData,
  type ServerData, type ServerType
} from '../lib/index.js'

const Join = Type.Object({ room: Type.String({ minLength: 1 }) })
const Members = Type.Object({ members: Type.Array(Type.String()) })
const Say = Type.Object({ text: Type.String({ maxLength: 500 }) })
const Message = Type.Object({ from: Type.String(), text: Type.String() })
const Joined = Type.Object({ room: Type.String(), user: Type.String() })

const chat = defineContract({
  client: {
    join: { data: Join, reply: Members },
    say: Say,
    leave: { data: Type.Null() }
  },
  server: { message: Message, joined: Joined }
})
type Chat = typeof chat

const app = Fastify()

describe('handler data', () => {
  test('is Static<schema> for a bare schema and for { data, reply }', () => {
    contractHandler(chat, {
      join (data) {
        expect(data).type.toBe<Static<typeof Join>>()
        expect(data).type.toBe<{ room: string }>()
        return { members: [] }
      },
      say (data) { expect(data).type.toBe<{ text: string }>() },
      leave (data) { expect(data).type.toBe<null>() }
    })
  })

  test('the context carries the message type, the id, the connection and the request', () => {
    contractHandler(chat, {
      join (_data, ctx) {
        expect(ctx.type).type.toBe<'join'>()
        expect(ctx.id).type.toBe<string | number | undefined>()
        expect(ctx.connection).type.toBe<RealtimeConnection>()
        expect(ctx.request).type.toBe<RealtimeRequest>()
        return { members: [] }
      },
      say (_data, ctx) { expect(ctx.type).type.toBe<'say'>() },
      leave () {}
    })
  })

  test('handlers run with the Fastify instance as this', () => {
    contractHandler(chat, {
      join () {
        expect(this).type.toBe<FastifyInstance>()
        return { members: [] }
      },
      say () {},
      leave () {}
    })
  })
})

describe('ctx.send()', () => {
  test('takes a server message type and its data', () => {
    contractHandler(chat, {
      async join (data, ctx) {
        expect(ctx.send('joined', { room: data.room, user: 'ada' })).type.toBe<Promise<void>>()
        expect(ctx.send).type.toBeCallableWith('message', { from: 'ada', text: 'hi' })
        return { members: [] }
      },
      say () {},
      leave () {}
    })
  })

  test('rejects a type the contract does not have', () => {
    contractHandler(chat, {
      join () { return { members: [] } },
      async say (_data, ctx) {
        expect(ctx.send).type.not.toBeCallableWith('shout', { text: 'hi' })
        expect(ctx.send('shout', { text: 'hi' })).type.toRaiseError('"shout"')
        // Client message types and reply types are not server messages either.
        expect(ctx.send).type.not.toBeCallableWith('say', { text: 'hi' })
        expect(ctx.send).type.not.toBeCallableWith('join:reply', { members: [] })
      },
      leave () {}
    })
  })

  test('rejects data that does not match the schema', () => {
    contractHandler(chat, {
      join () { return { members: [] } },
      async say (_data, ctx) {
        expect(ctx.send('message', { from: 'ada', text: 42 })).type.toRaiseError("Type 'number' is not assignable to type 'string'")
        expect(ctx.send('message', { from: 'ada' })).type.toRaiseError("'text' is missing")
        expect(ctx.send('joined', { from: 'ada', text: 'hi' })).type.toRaiseError()
        expect(ctx.send).type.not.toBeCallableWith('message')
      },
      leave () {}
    })
  })

  test('is typed in the lifecycle handlers too', () => {
    contractHandler(chat, {
      join () { return { members: [] } },
      say () {},
      leave () {},
      async open (ctx) {
        expect(ctx).type.toBe<MessageContext<Chat>>()
        expect(ctx.send).type.toBeCallableWith('joined', { room: 'lobby', user: 'ada' })
        expect(ctx.send).type.not.toBeCallableWith('joined', { room: 1 })
      }
    })
  })
})

describe('replies', () => {
  test('a handler for a type with a reply schema returns the reply type, sync or async', () => {
    expect(contractHandler(chat, { join: () => ({ members: ['ada'] }), say () {}, leave () {} })).type.not.toRaiseError()
    expect(contractHandler(chat, { join: async () => ({ members: ['ada'] }), say () {}, leave () {} })).type.not.toRaiseError()
  })

  test('a wrong reply is an error', () => {
    expect(contractHandler(chat, { join: () => ({ members: 'ada' }), say () {}, leave () {} }))
      .type.toRaiseError("Type 'string' is not assignable to type 'string[]'")
    expect(contractHandler(chat, { join: async () => ({ member: ['ada'] }), say () {}, leave () {} })).type.toRaiseError()
    expect(contractHandler(chat, { join: () => 'ok', say () {}, leave () {} })).type.toRaiseError()
  })

  test('a handler for a type with a reply schema that returns nothing is an error', () => {
    expect(contractHandler(chat, { join () {}, say () {}, leave () {} })).type.toRaiseError()
    expect(contractHandler(chat, { async join () {}, say () {}, leave () {} })).type.toRaiseError()
    // A path without a return would answer with data that breaks the reply schema.
    expect(contractHandler(chat, {
      join (data) { if (data.room !== '') return { members: [] } },
      say () {},
      leave () {}
    })).type.toRaiseError()
    expect(contractHandler(chat, { join: () => undefined, say () {}, leave () {} })).type.toRaiseError()
  })

  test('without a reply schema any return compiles', () => {
    expect(contractHandler(chat, { join: () => ({ members: [] }), say: () => 42, leave: async () => ({ any: 'thing' }) }))
      .type.not.toRaiseError()
    expect(contractHandler(chat, { join: () => ({ members: [] }), say () {}, leave () {} })).type.not.toRaiseError()
  })

  test('MessageError can be thrown from a handler of any type', () => {
    expect(contractHandler(chat, {
      join (data) {
        if (data.room === 'secret') throw new MessageError('ROOM_FORBIDDEN', 'You may not join this room', { room: data.room })
        return { members: [] }
      },
      say () { throw new MessageError('MUTED', 'You are muted') },
      leave () {}
    })).type.not.toRaiseError()
    expect(new MessageError('A', 'b').code).type.toBe<string>()
    expect(new MessageError('A', 'b').details).type.toBe<unknown>()
  })
})

describe('the handler map', () => {
  test('a handler for a type the contract does not have is an error', () => {
    expect(contractHandler(chat, { join: () => ({ members: [] }), say () {}, leave () {}, shout () {} }))
      .type.toRaiseError("'shout' does not exist")
  })

  test('a missing handler is an error', () => {
    expect(contractHandler(chat, { join: () => ({ members: [] }), say () {} })).type.toRaiseError("'leave' is missing")
    expect(contractHandler(chat, {})).type.toRaiseError()
  })

  test('lifecycle handlers are optional and typed', () => {
    contractHandler(chat, {
      join: () => ({ members: [] }),
      say () {},
      leave () {},
      open (ctx) { expect(ctx).type.toBe<MessageContext<Chat>>() },
      close (ctx, code, reason) {
        expect(ctx).type.toBe<MessageContext<Chat>>()
        expect(code).type.toBe<number | null>()
        expect(reason).type.toBe<string>()
      },
      error (_ctx, error) { expect(error).type.toBe<Error>() },
      binary (data) { expect(data).type.toBe<Buffer>() }
    })
  })

  test('a lifecycle handler with the wrong signature is an error', () => {
    expect(contractHandler(chat, { join: () => ({ members: [] }), say () {}, leave () {}, close (_ctx, code: string) { return code } }))
      .type.toRaiseError()
    expect(contractHandler(chat, { join: () => ({ members: [] }), say () {}, leave () {}, binary (data: string) { return data } }))
      .type.toRaiseError()
  })

  test('a handler map can be declared apart with MessageHandlers<typeof contract>', () => {
    const handlers: MessageHandlers<Chat> = { join: () => ({ members: [] }), say () {}, leave () {} }
    expect(contractHandler(chat, handlers)).type.not.toRaiseError()
    expect(contractHandler(chat, { ...handlers, error (_ctx, error) { expect(error).type.toBe<Error>() } })).type.not.toRaiseError()
    expect(() => { const missing: MessageHandlers<Chat> = { join: () => ({ members: [] }), say () {} }; return missing })
      .type.toRaiseError("'leave' is missing")
  })

  test('options are typed', () => {
    const handlers: MessageHandlers<Chat> = { join: () => ({ members: [] }), say () {}, leave () {} }
    expect(contractHandler).type.toBeCallableWith(chat, handlers, { onInvalid: 1008, requestTimeout: 5000, validateOutgoing: true, maxErrors: 5, maxInFlight: 8 })
    expect(contractHandler).type.toBeCallableWith(chat, handlers, { onInvalid: 'reply' })
    expect(contractHandler).type.not.toBeCallableWith(chat, handlers, { onInvalid: 1011 })
    expect(contractHandler).type.not.toBeCallableWith(chat, handlers, { requestTimeout: '5s' })
    expect(contractHandler).type.not.toBeCallableWith(chat, handlers, { timeout: 5000 })
  })
})

describe('on a route', () => {
  const handlers: MessageHandlers<Chat> = { join: () => ({ members: [] }), say () {}, leave () {} }

  test('contractHandler() is a realtime route handler for app.get() and app.route()', () => {
    expect(app.get('/chat', { realtime: true }, contractHandler(chat, handlers))).type.toBe<FastifyInstance>()
    expect(app.get('/chat', { realtime: { heartbeat: 30_000 } }, contractHandler(chat, handlers))).type.not.toRaiseError()
    expect(app.route({ method: 'GET', url: '/chat', realtime: true, handler: contractHandler(chat, handlers) })).type.not.toRaiseError()
  })

  test('it fits a route of an app with a TypeBox type provider and a querystring schema', () => {
    // request.query is typed in hooks and function handlers (types/route.tst.ts) and in ctx.request (types/typed-context.tst.ts).
    const typed = app.withTypeProvider<TypeBoxTypeProvider>()
    expect(typed.get('/chat', { realtime: true, schema: { querystring: Type.Object({ token: Type.String() }) } }, contractHandler(chat, handlers)))
      .type.not.toRaiseError()
  })

  test('it is not a plain HTTP handler', () => {
    expect(app.get('/chat', contractHandler(chat, handlers))).type.toRaiseError()
  })
})

describe('contract types', () => {
  test('ClientType and ServerType are the literal unions of message types', () => {
    expect<ClientType<Chat>>().type.toBe<'join' | 'say' | 'leave'>()
    expect<ServerType<Chat>>().type.toBe<'message' | 'joined'>()
  })

  test('ClientData, ServerData and ReplyData', () => {
    expect<ClientData<Chat, 'join'>>().type.toBe<{ room: string }>()
    expect<ClientData<Chat, 'say'>>().type.toBe<{ text: string }>()
    expect<ClientData<Chat, 'leave'>>().type.toBe<null>()
    expect<ServerData<Chat, 'message'>>().type.toBe<{ from: string, text: string }>()
    expect<ServerData<Chat, 'joined'>>().type.toBe<Static<typeof Joined>>()
    expect<ReplyData<Chat, 'join'>>().type.toBe<{ members: string[] }>()
    expect<ReplyData<Chat, 'say'>>().type.toBe<unknown>()
    expect<ReplyData<Chat, 'leave'>>().type.toBe<unknown>()
  })

  test('they refuse message types the contract does not have', () => {
    expect<ClientData<Chat, 'shout'>>().type.toRaiseError()
    expect<ServerData<Chat, 'say'>>().type.toRaiseError()
    expect<ReplyData<Chat, 'message'>>().type.toRaiseError()
  })

  test('defineContract() keeps the schemas and refuses a spec that is not a schema', () => {
    expect(chat.client.say).type.toBe<typeof Say>()
    expect(chat.server.joined).type.toBe<typeof Joined>()
    expect(defineContract({ client: { say: 'string' }, server: {} })).type.toRaiseError()
    expect(defineContract({ client: { join: { reply: Members } }, server: {} })).type.toRaiseError()
    expect(defineContract({ client: {} })).type.toRaiseError("'server' is missing")
  })
})
