import type { FastifyInstance, FastifyRequest } from 'fastify'
import { errors } from './errors.js'

/** Who may read a room over HTTP: the history and snapshot routes ask it for every request. */
export type RoomReadAuthorizer = (room: string, request: FastifyRequest) => boolean | Promise<boolean>

/** Throws FST_RT_INVALID_OPTION unless `authorize` is a function (both routes require one). */
export function checkAuthorize (options: { authorize?: unknown } | undefined): void {
  if (typeof options?.authorize !== 'function') {
    throw new errors.FST_RT_INVALID_OPTION('"authorize"', 'expected a function (room, request) => boolean')
  }
}

/** The room of a request, checked (400 FST_RT_INVALID_ROOM) and authorized (403 FST_RT_JOIN_FORBIDDEN). */
export async function readableRoom (app: FastifyInstance, authorize: RoomReadAuthorizer, name: unknown, request: FastifyRequest): Promise<string> {
  const room = app.realtime.checkRoom(name)
  if (await authorize(room, request) !== true) throw new errors.FST_RT_JOIN_FORBIDDEN(JSON.stringify(room))
  return room
}
