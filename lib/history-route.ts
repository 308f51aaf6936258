import { Type, type Static } from '@sinclair/typebox'
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteShorthandOptions } from 'fastify'
import { check } from './options/server-checks.js'
import { checkAuthorize, readableRoom, type RoomReadAuthorizer } from './room-route.js'
import type { HistoryPage } from './hub/broker.js'
import type { Contract, ServerMessage } from './messages/contract.js'

const Querystring = Type.Object({
  room: Type.String({ minLength: 1 }),
  since: Type.Optional(Type.Integer({ minimum: 0 })),
  before: Type.Optional(Type.Integer({ minimum: 0 })),
  limit: Type.Optional(Type.Integer({ minimum: 1 })),
  newest: Type.Optional(Type.Boolean())
})

const Page = Type.Object({
  room: Type.String(),
  epoch: Type.String(),
  offset: Type.Integer(),
  /** Each message as clients receive it live: `{ type, data, room, epoch, offset }`. */
  messages: Type.Array(Type.Object({
    type: Type.String(),
    data: Type.Unknown(),
    room: Type.String(),
    epoch: Type.String(),
    offset: Type.Integer()
  }))
})

export type HistoryQuerystring = Static<typeof Querystring>

/**
 * What the history route answers: the room's position and its messages as members received them
 * live. `M` is a contract's `ServerMessage<C>`, which types each message's `type` and `data`.
 */
export interface HistoryResponse<M = { type: string, data: unknown }> {
  room: string
  epoch: string
  offset: number
  messages: Array<M & { room: string, epoch: string, offset: number }>
}

export interface HistoryRouteOptions<C extends Contract = Contract> {
  /** The contract of the room's messages: it types the response (for a client that shares it). @default none */
  contract?: C
  /** Decides whether the request may read the room; refused requests get 403 FST_RT_JOIN_FORBIDDEN. */
  authorize: RoomReadAuthorizer
  /** The most messages one request may ask for. @default 100 */
  maxLimit?: number
}

/** The default of roomHistoryRoute()'s optional option (docs/rooms.md's table lists each option). */
export const historyRouteDefaults = Object.freeze({ maxLimit: 100 })

/** Every key roomHistoryRoute() accepts. */
export const historyRouteOptionNames = Object.freeze(['authorize', 'contract', ...Object.keys(historyRouteDefaults)])

/**
 * Options and handler of a GET route that returns a room's history
 * (`?room=&since=&before=&limit=&newest=`), so a client can load the past over HTTP before it
 * connects, or page back. Register it where the app's auth hooks run:
 * `app.get('/history', roomHistoryRoute({ authorize }))`.
 */
export function roomHistoryRoute<C extends Contract = Contract> (options: HistoryRouteOptions<C>): RouteShorthandOptions & {
  handler: (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) => Promise<HistoryResponse<ServerMessage<C>>>
} {
  checkAuthorize(options)
  check.object('roomHistoryRoute', options, historyRouteOptionNames, 'an object { authorize, contract?, maxLimit? }')
  if (options.contract !== undefined && (typeof options.contract !== 'object' || options.contract === null)) check.fail('contract', 'a contract (defineContract())', options.contract)
  const maxLimit = options.maxLimit ?? historyRouteDefaults.maxLimit
  check.integer('maxLimit', maxLimit, 1, Number.MAX_SAFE_INTEGER)
  return {
    schema: { querystring: Querystring, response: { 200: Page } },
    async handler (this: FastifyInstance, request: FastifyRequest) {
      const query = request.query as HistoryQuerystring
      const room = await readableRoom(this, options.authorize, query.room, request)
      const range = { since: query.since ?? 0, limit: Math.min(query.limit ?? maxLimit, maxLimit), newest: query.newest ?? false }
      const page: HistoryPage = await this.realtime.history(room, query.before === undefined ? range : { ...range, before: query.before })
      return {
        room,
        epoch: page.position.epoch,
        offset: page.position.offset,
        messages: page.messages.map((message) => JSON.parse(message.text) as HistoryResponse<ServerMessage<C>>['messages'][number])
      }
    }
  }
}
