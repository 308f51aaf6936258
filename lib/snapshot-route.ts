import { Type, type Static } from '@sinclair/typebox'
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteShorthandOptions } from 'fastify'
import type { Position } from './hub/broker.js'
import { check } from './options/server-checks.js'
import { checkAuthorize, readableRoom, type RoomReadAuthorizer } from './room-route.js'
import type { RoomSnapshot } from './decorator.js'

const Querystring = Type.Object({ room: Type.String({ minLength: 1 }) })

export type SnapshotQuerystring = Static<typeof Querystring>

export interface SnapshotRouteOptions<S> {
  /** Decides whether the request may read the room; refused requests get 403 FST_RT_JOIN_FORBIDDEN. */
  authorize: RoomReadAuthorizer
  /** The app's state of the room, read after `position` (the room's position, read first); must be JSON. */
  state: (room: string, request: FastifyRequest, position: Position) => S | Promise<S>
}

/** Every key roomSnapshotRoute() accepts (docs/rooms.md's table lists each). */
export const snapshotRouteOptionNames = Object.freeze(['authorize', 'state'])

/**
 * Options and handler of a GET route (`?room=`) answering `{ room, epoch, offset, state }`: the
 * room's position, then the app's state read after it. A client loads it, then joins from that
 * position (`client.join(room, { snapshot })`), and loads it again when the room cannot be
 * recovered. Register it where the app's auth hooks run: `app.get('/snapshot', roomSnapshotRoute({ authorize, state }))`.
 */
export function roomSnapshotRoute<S> (options: SnapshotRouteOptions<S>): RouteShorthandOptions & {
  handler: (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) => Promise<RoomSnapshot<S>>
} {
  checkAuthorize(options)
  check.object('roomSnapshotRoute', options, snapshotRouteOptionNames, 'an object { authorize, state }')
  const state = check.func<SnapshotRouteOptions<S>['state']>('state', options.state, 'a function (room, request, position) => state')
  return {
    schema: { querystring: Querystring },
    async handler (this: FastifyInstance, request: FastifyRequest) {
      const room = await readableRoom(this, options.authorize, (request.query as SnapshotQuerystring).room, request)
      return await this.realtime.snapshot(room, (position) => state(room, request, position))
    }
  }
}
