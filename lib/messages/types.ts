import type { IncomingMessage } from 'node:http'
import type {
  FastifyInstance, FastifySchema, FastifyTypeProvider, FastifyTypeProviderDefault, RawServerDefault, RouteGenericInterface
} from 'fastify'
import type { RealtimeConnection } from '../connection/connection.js'
import type { DefaultRealtimeRequest, RealtimeRequest } from '../connection/request.js'
import type { Position, PresenceEntry } from '../hub/broker.js'
import type { HistoryRange } from '../hub/history-query.js'
import type { JoinOptions, JoinResult, RoomSendOptions } from '../hub/hub.js'
import type { AuthOptions } from './auth.js'
import type { ClientData, ClientType, Contract, HandlerResult, PresenceMeta, ServerData, ServerMessage, ServerType } from './contract.js'
import type { RoomHistory } from './history.js'
import type { RateLimitOptions } from './rate-limit.js'

// The public types of contract routes: their options, the context handlers get, the handler map.

export type { AuthOptions } from './auth.js'
export type { RateLimitOptions } from './rate-limit.js'

/**
 * What a contract route's connections keep of their request (`RealtimeRequest`), typed by the
 * route's schema and the app's type provider: the route passes both to `contractHandler()`
 * (`request.query` is `Static<querystring>` with TypeBox).
 */
export type RouteRequest<S extends FastifySchema = FastifySchema, TP extends FastifyTypeProvider = FastifyTypeProviderDefault> =
  RealtimeRequest<RouteGenericInterface, RawServerDefault, IncomingMessage, S, TP>

/**
 * Who a route's connections belong to: `string` where the options guarantee a user, else
 * `string | null`, from the options as `contractHandler()` infers them: `O` the whole object and
 * `UF` its `userId`. A `userId` function that never returns null (`requireUser` after
 * `tokenAuth()`) makes it a string; so does a required `auth`, where TypeScript infers the whole
 * options object: it cannot when the object holds a function with unannotated parameters (typed
 * from context later), so annotate `verify`'s (`(token: string) => ...`). Anything less sure is
 * `string | null`.
 */
export type UserIdOf<UF, O> = O extends { auth: object }
  ? string
  : UF extends (...args: never[]) => infer U ? (null extends Awaited<U> ? string | null : string) : string | null

/** Rooms clients join and leave themselves, with `$join` and `$leave` messages. */
export interface ClientRoomsOptions<C extends Contract = Contract, R = DefaultRealtimeRequest, U extends string | null = string | null> {
  /** Decides every client join; required, so no room is open to clients by accident. */
  authorize: (this: FastifyInstance, room: string, context: MessageContext<C, R, U>) => boolean | Promise<boolean>
  /** Publish `$presence` join and leave notices, for every room or the rooms a function picks (each costs a fan-out). @default false */
  notices?: boolean | ((room: string) => boolean)
}

/** How a contract route treats bad input and requests. */
export interface ContractOptions<C extends Contract = Contract, R = DefaultRealtimeRequest, U extends string | null = string | null> {
  /** Authenticate with the first message; until then nothing the client sends is dispatched. Handlers then see `ctx.userId` as `string`. */
  auth?: AuthOptions<R>
  /**
   * Messages per connection, counted and in bytes: token buckets of `burst` messages refilled at
   * `perSecond`, and of `bytesBurst` bytes refilled at `bytesPerSecond`. A message over either gets
   * FST_RT_RATE_LIMITED and is dropped; a client that keeps going for another burst is closed with 1008.
   * @default { perSecond: 100, burst: 200, bytesPerSecond: 1048576, bytesBurst: 4194304 }
   */
  rateLimit?: RateLimitOptions | false
  /** Let clients join rooms with `$join` (and leave with `$leave`), each join checked by `authorize`. */
  rooms?: ClientRoomsOptions<C, R, U>
  /**
   * The user behind a connection (for presence and `toUser`); null for anonymous. A function that
   * never returns null (`requireUser` after `tokenAuth`) makes `ctx.userId` a `string`. @default () => null
   */
  userId?: (request: R) => string | null | Promise<string | null>
  /** Bad messages get an error envelope ('reply', the connection stays open) or close the connection with 1007 or 1008. @default 'reply' */
  onInvalid?: 'reply' | 1007 | 1008
  /** How long a request (a message with an `id`) may take before it gets a timeout error, in ms. @default 30000 */
  requestTimeout?: number
  /** Check outgoing messages and replies against their schemas at run time too (on in tests, off in production). @default false */
  validateOutgoing?: boolean
  /** Validation errors listed in one error envelope (fewer when their paths are long: see the README's error envelope reference). @default 10 */
  maxErrors?: number
  /**
   * How deeply a message's `data` may nest objects and arrays (`{}` is one level). A message nested
   * deeper is refused with FST_RT_MESSAGE_TOO_DEEP before it is parsed, so no check, error listing or
   * serialization ever walks deeper than this.
   * @default 64
   */
  maxDepth?: number
  /** Client-chosen strings an error repeats (a message type, a room, a property name in a path) are cut to this many characters. @default 64 */
  maxEchoLength?: number
  /** Handlers running at once for one connection; above it, reading waits. @default 32 */
  maxInFlight?: number
}

/** Rooms, presence and history from inside a handler; sends are typed by the contract. */
export interface RoomsApi<C extends Contract> {
  /** This connection's id in presence and in `except`. */
  readonly connectionId: string
  /** The rooms this connection is in. */
  readonly joined: ReadonlySet<string>
  /** Joins a room; with `recover`, replays what the client missed or reports `recovered: false`. */
  join (room: string, options?: Pick<JoinOptions, 'recover' | 'notice'> & { meta?: PresenceMeta<C> }): Promise<JoinResult>
  leave (room: string, options?: { notice?: boolean }): Promise<boolean>
  /**
   * Sends to every member of the rooms, on every instance, this connection included; kept in the
   * history with the next offset. With `{ volatile: true }`: not kept, no offset, and dropped for a
   * member that cannot take it at once (see docs/rooms.md#volatile-messages).
   */
  publish<K extends ServerType<C>>(rooms: string | readonly string[], type: K, data: ServerData<C, K>, options?: RoomSendOptions): Promise<void>
  /** Sends to every member of the rooms except this connection (`volatile` as for publish). */
  broadcast<K extends ServerType<C>>(rooms: string | readonly string[], type: K, data: ServerData<C, K>, options?: RoomSendOptions): Promise<void>
  /** Sends to every connection of a user, on every instance (not kept in history; `volatile` as for publish). */
  toUser<K extends ServerType<C>>(userId: string, type: K, data: ServerData<C, K>, options?: RoomSendOptions): Promise<void>
  /** Sends to every connection of this route, on every instance (not kept in history; `volatile` as for publish). */
  toRoute<K extends ServerType<C>>(type: K, data: ServerData<C, K>, options?: RoomSendOptions): Promise<void>
  /** Who is in the room, on every instance; `meta` is typed by the contract's `presence` schema. */
  presence (room: string): Promise<Array<PresenceEntry<PresenceMeta<C>>>>
  presenceCount (room: string): Promise<number>
  /**
   * The room's kept messages, decoded and typed by the contract, oldest first, with the room's
   * position: after an offset (`since`), before one (`before`), the latest (`limit` with `newest`).
   */
  history (room: string, query?: HistoryRange): Promise<RoomHistory<ServerMessage<C>>>
  /** The room's position, read alone. */
  position (room: string): Promise<Position>
}

/** What every handler gets beside its data. */
export interface MessageContext<C extends Contract, R = DefaultRealtimeRequest, U extends string | null = string | null> {
  readonly connection: RealtimeConnection
  /** The request that opened the connection, typed by the route's schema and type provider. */
  readonly request: R
  /** The user id from the route's `userId` or `auth` option (`string` where they guarantee one), or null. */
  readonly userId: U
  /** Sends a server-to-client message of the contract, typed by its schema. */
  send<K extends ServerType<C>>(type: K, data: ServerData<C, K>): Promise<void>
  readonly rooms: RoomsApi<C>
}

/** The context of one client message: its type and, for a request, its id. */
export interface RequestContext<C extends Contract, K extends ClientType<C>, R = DefaultRealtimeRequest, U extends string | null = string | null> extends MessageContext<C, R, U> {
  readonly type: K
  /** The request id the client sent, or undefined for a plain event. */
  readonly id: string | number | undefined
}

export type MessageHandler<C extends Contract, K extends ClientType<C>, R = DefaultRealtimeRequest, U extends string | null = string | null> =
  (this: FastifyInstance, data: ClientData<C, K>, context: RequestContext<C, K, R, U>) => HandlerResult<C, K>

/** One handler per client message type, plus optional lifecycle handlers. */
export type MessageHandlers<C extends Contract, R = DefaultRealtimeRequest, U extends string | null = string | null> = { [K in ClientType<C>]: MessageHandler<C, K, R, U> } & {
  /** After the upgrade, before any message is dispatched. */
  open?: (this: FastifyInstance, context: MessageContext<C, R, U>) => unknown
  /** After the connection ended: the close code (null if unknown) and the peer's reason. */
  close?: (this: FastifyInstance, context: MessageContext<C, R, U>, code: number | null, reason: string) => unknown
  /** A handler failed or the connection failed (the error is also logged). */
  error?: (this: FastifyInstance, context: MessageContext<C, R, U>, error: Error) => unknown
  /** Binary messages; without it they are refused with FST_RT_BINARY_NOT_ACCEPTED. */
  binary?: (this: FastifyInstance, data: Buffer, context: MessageContext<C, R, U>) => unknown
}

/** A handler of the map, as the session calls it. */
export type AnyHandler = (this: FastifyInstance, ...args: unknown[]) => unknown
