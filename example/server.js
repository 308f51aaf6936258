// The demo chat server: `npm start` builds the package and runs this file on http://127.0.0.1:3000.
//
// It imports the built package by its own name ('fastify-realtime', resolved through package.json's
// "exports" to dist/), exactly as an app that installed it would.
//
//   PORT, HOST   where to listen (default 127.0.0.1:3000)
//   REDIS_URL    share rooms, presence and history through Redis instead of this process's memory:
//                REDIS_URL=redis://127.0.0.1:6379 npm start, then a second instance on another PORT
//   LOG_LEVEL    the Fastify logger's level (default info)
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import Fastify, { LogController } from 'fastify'
import fastifyStatic from '@fastify/static'
import { Type } from '@sinclair/typebox'
import realtime, { contractHandler, MessageError, roomSnapshotRoute } from 'fastify-realtime'
import { chat, ROOM_NAME } from './contract.js'

const PORT = Number(process.env.PORT ?? 3000)
const HOST = process.env.HOST ?? '127.0.0.1'

// ---- users ----
// Three demo users with fixed tokens (the page offers them as buttons; a real app never ships
// tokens to a page), and guests: POST /login { name } gives a new name a random token. Guest
// tokens live in this process's memory only, so after a restart the page logs in again with the
// same name (see tokenFor in public/app.js) before it reconnects.
const DEMO_USERS = new Map([['ada-token', 'ada'], ['bob-token', 'bob'], ['cy-token', 'cy']])
const RESERVED = new Set(DEMO_USERS.values())
const MAX_GUESTS = 1000
const guestByToken = new Map()
const tokenByGuest = new Map()

/** The user a token belongs to, or null. */
function userOf (token) {
  if (typeof token !== 'string') return null
  return DEMO_USERS.get(token) ?? guestByToken.get(token) ?? null
}

/** The token of an `Authorization: Bearer <token>` header. */
function bearer (request) {
  const header = request.headers.authorization ?? ''
  return header.startsWith('Bearer ') ? header.slice(7) : null
}

// ---- the app ----
const app = Fastify({
  logger: { level: process.env.LOG_LEVEL ?? 'info' },
  // No line per request: the page's static files would drown the chat's own lines.
  logController: new LogController({ disableRequestLogging: true })
})

// One process keeps rooms in memory (new epochs after a restart, so clients get recovered: false);
// with REDIS_URL, every instance on that Redis shares them. ioredis is loaded only then.
const history = { size: 200, ttlMs: 60 * 60 * 1000 }
let broker
if (process.env.REDIS_URL) {
  const { RedisBroker } = await import('fastify-realtime/redis')
  broker = new RedisBroker({
    client: process.env.REDIS_URL,
    keyPrefix: 'frt-demo:',
    history,
    onError: (err) => { app.log.warn({ err }, 'redis broker') }
  })
}
// The chat's AsyncAPI document at /asyncapi.json and /asyncapi.yaml, and a page of it at /asyncapi
// (rendered by @asyncapi/react-component's bundle, served from node_modules: no CDN).
const asyncapi = {
  title: 'fastify-realtime demo chat',
  version: '0.1.0',
  description: 'Rooms with presence and history: join with $join, talk with say, ask who is there with who.',
  servers: { demo: { host: `${HOST.includes(':') ? `[${HOST}]` : HOST}:${PORT}`, protocol: 'ws', description: 'npm start' } }
}
await app.register(realtime, broker === undefined ? { history, asyncapi } : { broker, asyncapi })

app.get('/chat', {
  // Pings after 15 s without traffic, and drops a client that does not answer within 7.5 s.
  realtime: { heartbeat: 15_000 }
}, contractHandler(chat, {
  async say ({ room, text }, ctx) {
    if (!ctx.rooms.joined.has(room)) throw new MessageError('NOT_A_MEMBER', 'Join the room first')
    // To every member on every instance, the sender included, and kept in the room's history.
    await ctx.rooms.publish(room, 'message', { user: ctx.userId, text, at: Date.now() })
  },

  async typing ({ room }, ctx) {
    if (!ctx.rooms.joined.has(room)) return
    // To the others only, now or never: not kept, no offset, dropped for a page that lags.
    await ctx.rooms.broadcast(room, 'typing', { user: ctx.userId }, { volatile: true })
  },

  async who ({ room }, ctx) {
    if (!ctx.rooms.joined.has(room)) throw new MessageError('NOT_A_MEMBER', 'Join the room first')
    const entries = await ctx.rooms.presence(room)
    return entries.map((entry) => ({ connectionId: entry.connectionId, user: entry.userId ?? 'anonymous' }))
  }
}, {
  // The first message must be { type: '$auth', data: token }: refused tokens are closed with 4501.
  auth: { verify: (token) => userOf(token), timeoutMs: 5_000 },
  // Clients join rooms themselves with $join; every member sees $presence join and leave notices.
  rooms: { authorize: (room) => ROOM_NAME.test(room), notices: true },
  requestTimeout: 5_000
}))

// Snapshot, then stream: GET /snapshot?room=lobby (with the page's token) reads the room's position,
// then its last 100 messages up to it. The page's client joins from exactly that position, and
// loads it again by itself when the room cannot be recovered (a restart, a $lost notice).
app.get('/snapshot', roomSnapshotRoute({
  authorize: (room, request) => ROOM_NAME.test(room) && userOf(bearer(request)) !== null,
  state: async (room, _request, position) =>
    (await app.realtime.history(chat, room, { before: position.offset + 1, limit: 100, newest: true })).messages
}))

// A guest picks a name; the same name logs in again with its previous token (a page that
// reconnects), or freely once this process has forgotten it (after a restart).
app.post('/login', {
  schema: {
    body: Type.Object({
      name: Type.String({ pattern: '^[a-z0-9_-]{1,20}$' }),
      token: Type.Optional(Type.String({ maxLength: 64 }))
    })
  }
}, async (request, reply) => {
  const { name, token } = request.body
  if (RESERVED.has(name)) return reply.code(409).send({ error: `"${name}" is a demo user: use its button` })
  const held = tokenByGuest.get(name)
  if (held !== undefined) {
    if (held === token) return { user: name, token: held }
    return reply.code(409).send({ error: `"${name}" is taken` })
  }
  if (tokenByGuest.size >= MAX_GUESTS) return reply.code(503).send({ error: 'Too many guests, try again later' })
  const issued = randomBytes(18).toString('base64url')
  tokenByGuest.set(name, issued)
  guestByToken.set(issued, name)
  return { user: name, token: issued }
})

// The page, and the browser client as ES modules: /lib/client/index.js imports /lib/close-codes.js,
// /lib/protocol.js and /lib/options/checks.js.
const here = (path) => fileURLToPath(new URL(path, import.meta.url))
await app.register(fastifyStatic, { root: here('./public/') })
await app.register(fastifyStatic, {
  root: here('../dist/'),
  prefix: '/lib/',
  decorateReply: false,
  allowedPath: (path) => path.startsWith('/client/') || path === '/close-codes.js' || path === '/protocol.js' || path === '/options/checks.js'
})

// ---- shutdown ----
// app.close() refuses new upgrades (503), closes every socket with 1001 "Server shutting down", so
// the pages reconnect, and closes the broker last. A second signal does not wait.
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    app.log.info(`${signal}: closing`)
    process.once(signal, () => { process.exit(1) })
    app.close().then(() => { app.log.info('closed') }, (err) => {
      app.log.error({ err }, 'close failed')
      process.exitCode = 1
    })
  })
}

await app.listen({ port: PORT, host: HOST })
const { port } = app.server.address()
const shown = HOST.includes(':') ? `[${HOST}]` : HOST
console.log(`fastify-realtime demo: http://${shown}:${port} (its AsyncAPI document: /asyncapi)`)
