// The typed chat's server: token auth, rooms, an online list, a typing indicator, history on
// reconnect. Type-checked with the package's published types (npm run typecheck); no casts.
import Fastify from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import realtime, { contractHandler, MessageError, requireUser, roomSnapshotRoute, tokenAuth } from 'fastify-realtime'
import { chat } from './contract.js'

const USERS = new Map([['ada-token', 'ada'], ['bob-token', 'bob']])
const verify = (token: string): string | null => USERS.get(token) ?? null
const ROOM = /^[a-z0-9-]{1,32}$/

const app = Fastify({ logger: true }).withTypeProvider<TypeBoxTypeProvider>()
await app.register(realtime, { history: { size: 200, ttlMs: 3_600_000 } })

app.get('/chat', {
  realtime: { protocols: ['access_token'] },
  schema: { querystring: Type.Object({ device: Type.Union([Type.Literal('web'), Type.Literal('mobile')]) }) },
  onRequest: tokenAuth({ verify })
}, contractHandler(chat, {
  async say ({ room, text }, ctx) {
    if (!ctx.rooms.joined.has(room)) throw new MessageError('NOT_A_MEMBER', 'Join the room first')
    await ctx.rooms.publish(room, 'message', { user: ctx.userId, text, at: Date.now() })
  },
  async typing ({ room }, ctx) {
    if (ctx.rooms.joined.has(room)) await ctx.rooms.broadcast(room, 'typing', { user: ctx.userId }, { volatile: true })
  }
}, {
  userId: requireUser,
  // Clients join with $join { room, meta: { device } }, checked against the contract's presence schema.
  rooms: { authorize: (room) => ROOM.test(room), notices: true }
}))

// The online list: who is in a room now, with each member's device.
app.get('/online', {
  schema: { querystring: Type.Object({ room: Type.String({ pattern: ROOM.source }) }) },
  onRequest: tokenAuth({ verify })
}, async (request) => {
  const entries = await app.realtime.presence(request.query.room)
  return entries.map((entry) => ({ user: entry.userId, meta: entry.meta }))
})

// History on (re)connect: the room's position, then its last 50 messages up to it.
app.get('/snapshot', {
  onRequest: tokenAuth({ verify }),
  ...roomSnapshotRoute({
    authorize: (room) => ROOM.test(room),
    state: async (room, _request, position) =>
      (await app.realtime.history(chat, room, { before: position.offset + 1, limit: 50, newest: true })).messages
  })
})

// Logout: close every connection of the user, on every instance; 4500 tells the client to stop.
app.post('/logout', { onRequest: tokenAuth({ verify }) }, async (request) => {
  await app.realtime.disconnect({ userId: requireUser(request) }, 4500, 'Logged out')
  return { ok: true }
})

await app.listen({ port: Number(process.env.PORT ?? 3000) })
