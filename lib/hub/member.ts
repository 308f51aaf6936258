import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type { RoomMessage } from './broker.js'
import type { Floor } from './floor.js'

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

// Connection ids: unique across instances (a random prefix per process) and cheap (a counter).
const ID_PREFIX = randomUUID().slice(0, 13)
let lastId = 0

/** One connection known to the hub: its link, its user, and its rooms. */
export class Member {
  readonly id = `${ID_PREFIX}${(++lastId).toString(36)}`
  readonly rooms = new Set<string>()
  /** Rooms being joined: their live messages wait here until the join reply and replay are out. Made on the first join (most members never join one). */
  pending: Map<string, RoomMessage[]> | null = null
  /** Rooms whose join was announced: their leave (or this connection's end) is announced too. Made on the first such join. */
  announced: Set<string> | null = null
  /** App rooms joined: the floor under which nothing is delivered again (floor.ts). Made on the first join. */
  floors: Map<string, Floor> | null = null

  constructor (readonly connection: MemberLink, readonly userId: string | null) {}
}
