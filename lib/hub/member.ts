import type { FastifyBaseLogger } from 'fastify'

/**
 * One message on its way to many members, made once per fan-out. The hub knows only its text; the
 * connection layer keeps its wire form here (a WebSocket frame), built by the first member that
 * can use it and written as is to the others.
 */
export class SharedMessage {
  /** The connection layer's encoded form of `text`, or null until a member has built it. */
  wire: unknown = null

  constructor (readonly text: string) {}
}

/**
 * What the hub needs of a connection to deliver to it: the whole surface between rooms and
 * sockets. RealtimeConnection implements it; the hub imports neither ws nor the connection.
 */
export interface MemberLink {
  /** True once closing has started or the connection is gone: nothing more is delivered. */
  readonly closed: boolean
  /** Bytes the peer has not taken yet: what the slow-consumer rule bounds. */
  readonly backlog: number
  /** The request's logger (its lines carry the request id). */
  readonly request: { readonly log: FastifyBaseLogger }
  /**
   * Sends one shared message now, or queues it behind what is already queued; a closed connection
   * drops it. A `droppable` (volatile) one is dropped instead of queued: false then.
   */
  sendShared (message: SharedMessage, droppable?: boolean): boolean
  /** Closes with this code and reason. */
  close (options: { code: number, reason: string }): Promise<unknown>
}
