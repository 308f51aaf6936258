import Fastify from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { describe, expect, test } from 'tstyche'
import {
  contractHandler, defineContract, requireUser, roomHistoryRoute, roomSnapshotRoute, type RoomSnapshot,
  type ConnectionInfo, type ContractOptions, type HistoryPage, type HistoryResponse, type HistoryStamp, type Position, type PresenceEntry, type RoomHistory
} from '../lib/index.js'
import { RealtimeClient } from '../lib/client/index.js'
import type { PresenceData } from '../lib/protocol.js'

const Meta = Type.Object({ name: Type.String() })
const chat = defineContract({
  client: { say: Type.Object({ room: Type.String(), text: Type.String() }) },
  server: { message: Type.Object({ text: Type.String() }), typing: Type.Object({ user: Type.String() }) },
  presence: Meta
})
const plain = defineContract({ client: { say: Type.String() }, server: {} })
const Query = Type.Object({ user: Type.String(), room: Type.Optional(Type.String()) })
const app = Fastify().withTypeProvider<TypeBoxTypeProvider>()

describe('ctx.request in a contract handler', () => {
  test('is typed by the route\'s schema and the type provider', () => {
    app.get('/a', { realtime: true, schema: { querystring: Query } }, contractHandler(chat, {
      say (_data, ctx) { expect(ctx.request.query).type.toBe<{ user: string, room?: string }>() },
      open (ctx) { expect(ctx.request.query.user).type.toBe<string>() }
    }))
  })

  test('also through app.route()', () => {
    app.route({
      method: 'GET',
      url: '/b',
      realtime: true,
      schema: { querystring: Query },
      handler: contractHandler(chat, { say (_data, ctx) { expect(ctx.request.query.user).type.toBe<string>() } })
    })
  })

  test('reaches the userId option and the rooms authorize callback', () => {
    app.get('/c', { realtime: true, schema: { querystring: Query } }, contractHandler(chat, { say () {} }, {
      userId: (request) => { expect(request.query).type.toBe<{ user: string, room?: string }>(); return request.query.user },
      rooms: { authorize: (_room, ctx) => { expect(ctx.request.query.user).type.toBe<string>(); return true } }
    }))
  })

  test('a handler without route schema sees unknown', () => {
    app.get('/d', { realtime: true }, contractHandler(chat, { say (_data, ctx) { expect(ctx.request.query).type.toBe<unknown>() } }))
  })
})

describe('ctx.userId', () => {
  test('is string with requireUser (after tokenAuth)', () => {
    app.get('/e', { realtime: true }, contractHandler(chat, { say (_data, ctx) { expect(ctx.userId).type.toBe<string>() } }, { userId: requireUser }))
  })

  test('is string with first-message auth', () => {
    app.get('/f', { realtime: true }, contractHandler(chat, { say (_data, ctx) { expect(ctx.userId).type.toBe<string>() } }, {
      auth: { verify: (token: string) => token === 'ok' ? 'ada' : null }
    }))
  })

  test('is string | null without options, or with a userId that may return null', () => {
    app.get('/g', { realtime: true }, contractHandler(chat, { say (_data, ctx) { expect(ctx.userId).type.toBe<string | null>() } }))
    app.get('/h', { realtime: true }, contractHandler(chat, { say (_data, ctx) { expect(ctx.userId).type.toBe<string | null>() } }, {
      userId: (request) => request.realtimeUser
    }))
  })

  test('unknown options and wrong types do not compile', () => {
    expect(contractHandler(plain, { say () {} }, { bogus: 1 })).type.toRaiseError()
    expect(contractHandler(plain, { say () {} }, { userId: 1 })).type.toRaiseError()
  })
})

describe('presence and history are typed by the contract', () => {
  test('presence entries carry the contract\'s meta; join takes it', () => {
    contractHandler(chat, {
      async say ({ room }, ctx) {
        expect(await ctx.rooms.presence(room)).type.toBe<Array<PresenceEntry<{ name: string }>>>()
        await ctx.rooms.join(room, { meta: { name: 'ada' } })
        expect(ctx.rooms.join(room, { meta: { name: 1 } })).type.toRaiseError()
      }
    })
  })

  test('without a presence schema, meta is unknown', () => {
    contractHandler(plain, { async say (room, ctx) { expect((await ctx.rooms.presence(room))[0]?.meta).type.toBe<unknown>() } })
  })

  test('history is decoded: a switch on type narrows data', () => {
    contractHandler(chat, {
      async say ({ room }, ctx) {
        const page = await ctx.rooms.history(room)
        expect(page).type.toBe<RoomHistory<{ type: 'message', data: { text: string } } | { type: 'typing', data: { user: string } }>>()
        const first = page.messages[0]
        if (first?.type === 'message') expect(first.data.text).type.toBe<string>()
        if (first !== undefined) expect(first).type.toBeAssignableTo<HistoryStamp>()
      }
    })
  })

  test('the client\'s presence notices and join meta are typed', () => {
    const client = new RealtimeClient<typeof chat>({ url: 'ws://x' })
    client.onPresence((notice) => { expect(notice).type.toBe<PresenceData<{ name: string }>>() })
    expect(client.join('lobby', { meta: { name: 1 } })).type.toRaiseError()
  })
})

describe('app.realtime.history', () => {
  test('decodes by the contract given, or gives the stored page', async () => {
    expect(await app.realtime.history(chat, 'lobby')).type.toBe<RoomHistory<{ type: 'message', data: { text: string } } | { type: 'typing', data: { user: string } }>>()
    expect(await app.realtime.history('lobby')).type.toBe<HistoryPage>()
  })
})

describe('volatile sends', () => {
  test('take { volatile } on every send, typed by the contract', () => {
    contractHandler(chat, {
      async say ({ room }, ctx) {
        await ctx.rooms.publish(room, 'typing', { user: 'a' }, { volatile: true })
        await ctx.rooms.broadcast([room], 'typing', { user: 'a' }, { volatile: true })
        await ctx.rooms.toUser('bob', 'typing', { user: 'a' }, { volatile: true })
        await ctx.rooms.toRoute('typing', { user: 'a' }, { volatile: true })
        expect(ctx.rooms.publish(room, 'typing', { user: 1 }, { volatile: true })).type.toRaiseError()
        expect(ctx.rooms.publish(room, 'typing', { user: 'a' }, { volatile: 'yes' })).type.toRaiseError()
      }
    })
    expect(app.realtime.publish(chat, 'r', 'typing', { user: 'a' }, { volatile: true })).type.toBe<Promise<void>>()
    expect(app.realtime.toUser(chat, 'u', 'typing', { user: 'a' }, { later: true })).type.toRaiseError()
  })

  test('the client\'s send says whether it wrote', () => {
    const client = new RealtimeClient<typeof chat>({ url: 'ws://x' })
    expect(client.send('say', { room: 'r', text: 't' }, { volatile: true })).type.toBe<boolean>()
    expect(client.send('say', { room: 'r', text: 't' }, { volatile: 1 })).type.toRaiseError()
  })
})

describe('history queries', () => {
  test('take since, before, limit and newest; position reads alone', () => {
    contractHandler(chat, {
      async say ({ room }, ctx) {
        await ctx.rooms.history(room, { before: 42, limit: 50, newest: true })
        expect(await ctx.rooms.position(room)).type.toBe<Position>()
        expect(ctx.rooms.history(room, { newest: 'yes' })).type.toRaiseError()
        expect(ctx.rooms.history(room, { after: 3 })).type.toRaiseError()
      }
    })
    expect(app.realtime.position('r')).type.toBe<Promise<Position>>()
  })

  test('roomHistoryRoute is typed by its contract', async () => {
    const route = roomHistoryRoute({ authorize: () => true, contract: chat })
    const body = await route.handler.call(app, {} as never, {} as never)
    const first = body.messages[0]
    if (first?.type === 'typing') expect(first.data.user).type.toBe<string>()
    expect(roomHistoryRoute({ authorize: () => true }).handler).type.toBeAssignableTo<(...args: never[]) => Promise<HistoryResponse>>()
  })
})

describe('snapshot, then stream', () => {
  test('the state keeps its type through the route and app.realtime.snapshot', async () => {
    const route = roomSnapshotRoute({ authorize: () => true, state: (_room, _request, position) => ({ at: position.offset, names: ['a'] }) })
    expect(await route.handler.call(app, {} as never, {} as never)).type.toBe<RoomSnapshot<{ at: number, names: string[] }>>()
    expect(await app.realtime.snapshot('r', async () => [1, 2])).type.toBe<RoomSnapshot<number[]>>()
    expect(roomSnapshotRoute({ authorize: () => true })).type.toRaiseError()
  })

  test('the client takes a loader that returns a position', () => {
    const client = new RealtimeClient<typeof chat>({ url: 'ws://x' })
    void client.join('r', { snapshot: async () => ({ epoch: 'e', offset: 1, state: [] }) })
    expect(client.join('r', { snapshot: async () => ({ offset: 1 }) })).type.toRaiseError()
  })
})

describe('connection management', () => {
  test('disconnect takes one target, a code and a reason; connections lists', () => {
    expect(app.realtime.disconnect({ userId: 'ada' })).type.toBe<Promise<void>>()
    expect(app.realtime.disconnect({ connectionId: 'c1' }, 4000, 'token expired')).type.toBe<Promise<void>>()
    expect(app.realtime.disconnect({ room: 'r' }, 1000)).type.toBe<Promise<void>>()
    expect(app.realtime.disconnect({ user: 'ada' })).type.toRaiseError()
    expect(app.realtime.disconnect({ userId: 'ada' }, '4000')).type.toRaiseError()
    expect(app.realtime.connections({ room: 'r' })).type.toBe<ConnectionInfo[]>()
    expect(app.realtime.connections()[0]?.rooms).type.toBe<string[] | undefined>()
  })
})

describe('ctx.userId beside other inline options', () => {
  test('requireUser keeps it a string when rooms.authorize is an inline arrow', () => {
    app.get('/k', { realtime: true }, contractHandler(chat, { say (_data, ctx) { expect(ctx.userId).type.toBe<string>() } }, {
      userId: requireUser,
      rooms: { authorize: (room) => room.length > 0, notices: true }
    }))
  })

  test('an auth TypeScript cannot see for sure, inline and unannotated or optional in a declared type, stays string | null', () => {
    app.get('/l', { realtime: true }, contractHandler(chat, { say (_data, ctx) { expect(ctx.userId).type.toBe<string | null>() } }, {
      auth: { verify: (token) => token },
      rooms: { authorize: () => true }
    }))
    const declared: ContractOptions<typeof chat> = {}
    app.get('/m', { realtime: true }, contractHandler(chat, { say (_data, ctx) { expect(ctx.userId).type.toBe<string | null>() } }, declared))
  })
})
