import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { RealtimeConnection } from '../connection/connection.js'
import type { WSMessage } from '../connection/messages.js'
import { errors } from '../errors.js'
import { optionalInteger } from '../options.js'
import { LIFECYCLE, type CompiledClientType, type CompiledContract } from './compile.js'
import type { ClientCheck } from './client-check.js'
import { compiledFor, describeErrors, serializeOutgoing } from './outgoing.js'
import type { ClientData, ClientType, Contract, HandlerResult, ServerData, ServerType } from './contract.js'
import { MessageError } from './message-error.js'
import { closeReason, cutEcho, errorEnvelope, listErrors, type ValidationErrors } from './error-envelope.js'
import { nestsDeeperThan } from './json-depth.js'
import { isId, MAX_ID_LENGTH, type Id } from './request-id.js'
import { authenticate, type AuthOptions } from './auth.js'
import { RateLimiter, rateLimitSettings, type RateLimitOptions, type RateLimitSettings } from './rate-limit.js'
import { Type } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import type { HistoryPage, HistoryQuery, PresenceEntry } from '../hub/broker.js'
import { Hub, Member, type JoinOptions, type JoinResult } from '../hub/hub.js'
import { kHub } from '../symbols.js'
import { CloseCode } from '../close-codes.js'
import { DeadlineClock, type DeadlineOwner } from '../connection/timers.js'

export type { AuthOptions } from './auth.js'
export type { RateLimitOptions } from './rate-limit.js'

/** Rooms clients join and leave themselves, with `$join` and `$leave` messages. */
export interface ClientRoomsOptions<C extends Contract = Contract> {
  /** Decides every client join; required, so no room is open to clients by accident. */
  authorize: (this: FastifyInstance, room: string, context: MessageContext<C>) => boolean | Promise<boolean>
  /** Publish `$presence` join and leave notices, for every room or the rooms a function picks (each costs a fan-out). @default false */
  notices?: boolean | ((room: string) => boolean)
}

/** How a contract route treats bad input and requests. */
export interface ContractOptions<C extends Contract = Contract> {
  /** Authenticate with the first message; until then nothing the client sends is dispatched. */
  auth?: AuthOptions
  /**
   * Messages per connection, counted and in bytes: token buckets of `burst` messages refilled at
   * `perSecond`, and of `bytesBurst` bytes refilled at `bytesPerSecond`. A message over either gets
   * FST_RT_RATE_LIMITED and is dropped; a client that keeps going for another burst is closed with 1008.
   * @default { perSecond: 100, burst: 200, bytesPerSecond: 1048576, bytesBurst: 4194304 }
   */
  rateLimit?: RateLimitOptions | false
  /** Let clients join rooms with `$join` (and leave with `$leave`), each join checked by `authorize`. */
  rooms?: ClientRoomsOptions<C>
  /** The user behind a connection (for presence and `toUser`); null for anonymous. @default () => null */
  userId?: (request: FastifyRequest) => string | null | Promise<string | null>
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
  join (room: string, options?: Pick<JoinOptions, 'meta' | 'recover' | 'notice'>): Promise<JoinResult>
  leave (room: string, options?: { notice?: boolean }): Promise<boolean>
  /** Sends to every member of the rooms, on every instance, this connection included. */
  publish<K extends ServerType<C>>(rooms: string | readonly string[], type: K, data: ServerData<C, K>): Promise<void>
  /** Sends to every member of the rooms except this connection. */
  broadcast<K extends ServerType<C>>(rooms: string | readonly string[], type: K, data: ServerData<C, K>): Promise<void>
  /** Sends to every connection of a user, on every instance (not kept in history). */
  toUser<K extends ServerType<C>>(userId: string, type: K, data: ServerData<C, K>): Promise<void>
  /** Sends to every connection of this route, on every instance (not kept in history). */
  toRoute<K extends ServerType<C>>(type: K, data: ServerData<C, K>): Promise<void>
  presence (room: string): Promise<PresenceEntry[]>
  presenceCount (room: string): Promise<number>
  history (room: string, query?: HistoryQuery): Promise<HistoryPage>
}

/** What every handler gets beside its data. */
export interface MessageContext<C extends Contract> {
  readonly connection: RealtimeConnection
  readonly request: FastifyRequest
  /** The user id from the route's `userId` option, or null. */
  readonly userId: string | null
  /** Sends a server-to-client message of the contract, typed by its schema. */
  send<K extends ServerType<C>>(type: K, data: ServerData<C, K>): Promise<void>
  readonly rooms: RoomsApi<C>
}

/** The context of one client message: its type and, for a request, its id. */
export interface RequestContext<C extends Contract, K extends ClientType<C>> extends MessageContext<C> {
  readonly type: K
  /** The request id the client sent, or undefined for a plain event. */
  readonly id: string | number | undefined
}

export type MessageHandler<C extends Contract, K extends ClientType<C>> =
  (this: FastifyInstance, data: ClientData<C, K>, context: RequestContext<C, K>) => HandlerResult<C, K>

/** One handler per client message type, plus optional lifecycle handlers. */
export type MessageHandlers<C extends Contract> = { [K in ClientType<C>]: MessageHandler<C, K> } & {
  /** After the upgrade, before any message is dispatched. */
  open?: (this: FastifyInstance, context: MessageContext<C>) => unknown
  /** After the connection ended: the close code (null if unknown) and the peer's reason. */
  close?: (this: FastifyInstance, context: MessageContext<C>, code: number | null, reason: string) => unknown
  /** A handler failed or the connection failed (the error is also logged). */
  error?: (this: FastifyInstance, context: MessageContext<C>, error: Error) => unknown
  /** Binary messages; without it they are refused with FST_RT_BINARY_NOT_ACCEPTED. */
  binary?: (this: FastifyInstance, data: Buffer, context: MessageContext<C>) => unknown
}

type AnyHandler = (this: FastifyInstance, ...args: unknown[]) => unknown

interface Settings {
  readonly rateLimit: RateLimitSettings | null
  readonly auth: Required<AuthOptions> | null
  readonly rooms: ClientRoomsOptions | null
  readonly userId: ((request: FastifyRequest) => string | null | Promise<string | null>) | null
  readonly onInvalid: 'reply' | 1007 | 1008
  readonly requestTimeout: number
  readonly validateOutgoing: boolean
  readonly maxErrors: number
  readonly maxInFlight: number
  readonly maxDepth: number
  readonly maxEchoLength: number
}

// Bounds of the options: deeper data could overflow the stack in a recursive schema's error listing,
// and longer echoes defeat their purpose.
const MAX_DEPTH = 256
const MAX_ECHO_LENGTH = 1024

type ClientEntry = CompiledClientType

/** A request whose handler returned a promise, until it settles or times out. */
interface PendingRequest {
  readonly type: string
  readonly id: Id | undefined
  readonly deadline: number
  timedOut: boolean
}

/** One timer for every pending request of every connection, as connections share one for their own deadlines. */
const requestClock = new DeadlineClock()

function settingsOf (options: ContractOptions): Settings {
  const rooms = options.rooms ?? null
  if (rooms !== null && (typeof rooms !== 'object' || typeof rooms.authorize !== 'function')) {
    throw new errors.FST_RT_INVALID_OPTION('"rooms"', 'expected { authorize: (room, context) => boolean, notices?: boolean }')
  }
  if (options.userId !== undefined && typeof options.userId !== 'function') {
    throw new errors.FST_RT_INVALID_OPTION('"userId"', 'expected a function (request) => string | null')
  }
  const auth = options.auth ?? null
  if (auth !== null && (typeof auth !== 'object' || typeof auth.verify !== 'function')) {
    throw new errors.FST_RT_INVALID_OPTION('"auth"', 'expected { verify: (token, request) => userId | null, timeoutMs? }')
  }
  if (auth !== null && options.userId !== undefined) {
    throw new errors.FST_RT_INVALID_OPTION('"userId"', 'with "auth", the user id is what auth.verify returns')
  }
  const onInvalid = options.onInvalid ?? 'reply'
  if (onInvalid !== 'reply' && onInvalid !== 1007 && onInvalid !== 1008) {
    throw new errors.FST_RT_INVALID_OPTION('"onInvalid"', `expected 'reply', 1007 or 1008, got ${String(onInvalid)}`)
  }
  const positive = (name: string, value: number | undefined, fallback: number): number => optionalInteger(name, value, 1, 2 ** 31 - 1, fallback)
  if (options.validateOutgoing !== undefined && typeof options.validateOutgoing !== 'boolean') {
    throw new errors.FST_RT_INVALID_OPTION('"validateOutgoing"', `expected a boolean, got ${String(options.validateOutgoing)}`)
  }
  return {
    rateLimit: rateLimitSettings(options.rateLimit),
    auth: auth === null ? null : { verify: auth.verify, timeoutMs: positive('auth.timeoutMs', auth.timeoutMs, 10_000) },
    rooms,
    userId: options.userId ?? null,
    onInvalid,
    requestTimeout: positive('requestTimeout', options.requestTimeout, 30_000),
    validateOutgoing: options.validateOutgoing ?? false,
    maxErrors: positive('maxErrors', options.maxErrors, 10),
    maxInFlight: positive('maxInFlight', options.maxInFlight, 32),
    maxDepth: optionalInteger('maxDepth', options.maxDepth, 1, MAX_DEPTH, 64),
    maxEchoLength: optionalInteger('maxEchoLength', options.maxEchoLength, 1, MAX_ECHO_LENGTH, 64)
  }
}

function checkHandlers (compiled: CompiledContract, handlers: Record<string, unknown>): void {
  if (typeof handlers !== 'object' || handlers === null) throw new errors.FST_RT_INVALID_HANDLERS('expected an object of handlers')
  for (const [name, handler] of Object.entries(handlers)) {
    if (typeof handler !== 'function') throw new errors.FST_RT_INVALID_HANDLERS(`"${name}" must be a function`)
    if (!LIFECYCLE.has(name) && !compiled.client.has(name)) {
      throw new errors.FST_RT_INVALID_HANDLERS(`"${name}" has no schema in the contract's client messages`)
    }
  }
  for (const type of compiled.client.keys()) {
    if (handlers[type] === undefined) throw new errors.FST_RT_INVALID_HANDLERS(`client message type "${type}" has no handler`)
  }
}

/**
 * Builds the handler of a contract route: every schema is compiled now, once; each connection then
 * parses, validates and dispatches every message to its handler, and answers requests.
 */
export function contractHandler<C extends Contract> (contract: C, handlers: NoInfer<MessageHandlers<C>>, options: NoInfer<ContractOptions<C>> = {}) {
  const compiled = compiledFor(contract)
  checkHandlers(compiled, handlers as Record<string, unknown>)
  const settings = settingsOf(options as ContractOptions)
  return async function realtimeContract (this: FastifyInstance, connection: RealtimeConnection, request: FastifyRequest): Promise<void> {
    const hub = (this as unknown as { [kHub]: Hub })[kHub]
    let userId = settings.userId === null ? null : await settings.userId(request)
    if (settings.auth !== null) {
      const verified = await authenticate(connection, request, settings.auth, hub.metrics, settings.maxDepth)
      if (verified === null) return
      userId = verified
    }
    const session = new Session(this, compiled, handlers as unknown as Record<string, AnyHandler>, settings, connection, request, hub, new Member(connection, userId))
    // Returned, not awaited, so this frame is not kept for the life of the connection.
    return session.serve()
  }
}

// A reply to a client that left has nobody to reach.
function ignoreGone (): void {}

function isThenable (value: unknown): value is PromiseLike<unknown> {
  return typeof (value as { then?: unknown } | null)?.then === 'function'
}

function noticesFor (rooms: ClientRoomsOptions, room: string): boolean {
  return typeof rooms.notices === 'function' ? rooms.notices(room) : rooms.notices === true
}

const JoinData = TypeCompiler.Compile(Type.Object({
  room: Type.String(),
  epoch: Type.Optional(Type.String({ maxLength: 64 })),
  offset: Type.Optional(Type.Integer({ minimum: 0 })),
  meta: Type.Optional(Type.Unknown())
}))
const LeaveData = TypeCompiler.Compile(Type.Object({ room: Type.String() }))
const MAX_META_BYTES = 1024

/** The rooms API of one connection. */
class SessionRooms implements RoomsApi<Contract> {
  constructor (private readonly session: Session) {}

  get connectionId (): string {
    return this.session.member.id
  }

  get joined (): ReadonlySet<string> {
    return this.session.member.rooms
  }

  join (room: string, options?: Pick<JoinOptions, 'meta' | 'recover' | 'notice'>): Promise<JoinResult> {
    return this.session.hub.join(this.session.member, room, options)
  }

  async leave (room: string, options?: { notice?: boolean }): Promise<boolean> {
    this.session.hub.checkRoom(room)
    return await this.session.hub.leave(this.session.member, room, options)
  }

  publish (rooms: string | readonly string[], type: string, data: unknown): Promise<void> {
    return this.session.publish(rooms, type, data, undefined)
  }

  broadcast (rooms: string | readonly string[], type: string, data: unknown): Promise<void> {
    return this.session.publish(rooms, type, data, this.session.member.id)
  }

  async toUser (userId: string, type: string, data: unknown): Promise<void> {
    await this.session.hub.toUser(userId, this.session.serialize(type, data))
  }

  async toRoute (type: string, data: unknown): Promise<void> {
    await this.session.hub.toRoute(this.session.routeUrl, this.session.serialize(type, data))
  }

  presence (room: string): Promise<PresenceEntry[]> {
    return this.session.hub.presence(room)
  }

  presenceCount (room: string): Promise<number> {
    return this.session.hub.presenceCount(room)
  }

  history (room: string, query?: HistoryQuery): Promise<HistoryPage> {
    return this.session.hub.history(room, query)
  }
}

/**
 * The request clock's hold on a session. The clock keeps a cancelled entry until its time comes
 * (up to requestTimeout), so it holds this small object, and the session is let go when its
 * connection ends.
 */
class RequestDeadlines implements DeadlineOwner {
  constructor (public session: Session | null) {}

  onDeadline (now: number): number {
    // A cancelled owner is never called: the session is still there.
    return (this.session as Session).onDeadline(now)
  }
}

class Session {
  private inFlight = 0
  /** Requests awaiting their handler's promise, in the order they started. */
  private pending: Set<PendingRequest> | null = null
  private readonly limiter: RateLimiter | null
  private readonly deadlines = new RequestDeadlines(this)
  /** The last of this connection's $join and $leave requests, which run in order. */
  private roomRequests: Promise<void> | null = null
  /** The reason in the peer's close frame, for the close handler. */
  private closeReason = ''
  private readonly context: MessageContext<Contract>

  constructor (
    private readonly app: FastifyInstance,
    private readonly compiled: CompiledContract,
    private readonly handlers: Record<string, AnyHandler>,
    private readonly settings: Settings,
    private readonly connection: RealtimeConnection,
    readonly request: FastifyRequest,
    readonly hub: Hub,
    readonly member: Member
  ) {
    this.context = { connection, request, userId: member.userId, send: (type, data) => this.send(type, data), rooms: new SessionRooms(this) }
    this.limiter = settings.rateLimit === null ? null : new RateLimiter(settings.rateLimit)
    // A handler only runs for a matched route, so its URL is always known.
    this.routeUrl = request.routeOptions.url as string
  }

  /** The route this connection came in on. */
  readonly routeUrl: string

  /** Registers the connection with the hub, runs it, and always takes it out of every room. */
  serve (): Promise<void> {
    // A promise chain, not an async function: an open connection then holds one suspended frame (run's), not two.
    return this.enter().then(() => this.run()).finally(() => this.hub.disconnect(this.member))
  }

  private async enter (): Promise<void> {
    await this.hub.enterInternal(this.member, Hub.routeRoom(this.routeUrl))
    if (this.member.userId !== null) await this.hub.enterInternal(this.member, Hub.userRoom(this.member.userId))
  }

  serialize (type: string, data: unknown): string {
    return serializeOutgoing(this.compiled, type, data, this.settings.validateOutgoing)
  }

  /** One serialization for every room, each published on every instance. */
  async publish (rooms: string | readonly string[], type: string, data: unknown, except: string | undefined): Promise<void> {
    const list = this.hub.checkRooms(rooms)
    await this.hub.publishAll(list, this.serialize(type, data), except === undefined ? {} : { except })
  }

  async run (): Promise<void> {
    const { handlers, context, connection } = this
    // A failing open handler fails the connection (logged, close 1011) like any route handler.
    await handlers.open?.call(this.app, context)
    // From here messages are pushed to accept() as they arrive: no promise or suspended loop per
    // message, and a read that brings several frames dispatches them all in its own turn.
    connection.attach(this)
    await connection.whenClosed()
    requestClock.cancel(this.deadlines)
    this.deadlines.session = null
    if (handlers.close !== undefined) await this.guard('close', () => handlers.close?.call(this.app, context, this.connection.closeCode, this.closeReason))
  }

  /**
   * @internal Each message of the connection, in order, while reading is not held back (maxInFlight).
   * The one entry from the socket's events into the router: nothing thrown here reaches ws or the
   * process. What no rule foresaw ends this connection with 1011; every other connection goes on.
   */
  accept (message: WSMessage): void {
    try {
      this.take(message)
    } catch (error) {
      this.crash(error)
    }
  }

  private take (message: WSMessage): void {
    if (message.type === 'text' || message.type === 'binary') {
      if (this.limiter !== null && !this.admit(this.limiter, message.type === 'text' ? Buffer.byteLength(message.data) : message.data.length)) return
      if (message.type === 'text') {
        const outcome = this.dispatchText(message.data)
        if (outcome !== true) this.occupy(outcome)
      } else if (this.handlers.binary === undefined) {
        this.occupy(this.refuse(new errors.FST_RT_BINARY_NOT_ACCEPTED(), undefined))
      } else {
        const binary = this.handlers.binary
        this.occupy(this.guard('binary', () => binary.call(this.app, message.data, this.context)))
      }
    } else if (message.type === 'error') {
      this.occupy(this.report(message.data))
    } else if (message.type === 'close') {
      this.closeReason = message.extra
    }
  }

  /** Lets a message of `size` bytes through the rate limit, or answers FST_RT_RATE_LIMITED and drops it. */
  private admit (limiter: RateLimiter, size: number): boolean {
    if (limiter.admit(size)) return true
    this.hub.metrics.rateLimitHits++
    // One envelope per burst of refusals: answering each would let a flood amplify itself.
    if (limiter.strikes === 1) this.writeNow(errorEnvelope(limiter.refusal(), undefined))
    // Closing starts at once: the connection takes no more messages, queued ones are dropped.
    if (limiter.flooding) void this.connection.close({ code: CloseCode.POLICY_VIOLATION, reason: 'Rate limit exceeded' })
    return false
  }

  /**
   * Parses, checks and dispatches one text message. Returns true, or (for bad input and room
   * requests) a promise of false when the connection is being closed.
   */
  private dispatchText (text: string): true | Promise<boolean> {
    // `data` sits one level inside the envelope.
    if (nestsDeeperThan(text, this.settings.maxDepth + 1)) {
      return this.refuse(new errors.FST_RT_MESSAGE_TOO_DEEP(this.settings.maxDepth), undefined)
    }
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch {
      return this.refuse(new errors.FST_RT_MESSAGE_NOT_JSON(), undefined)
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      return this.refuse(new errors.FST_RT_MESSAGE_NOT_ENVELOPE(`got ${Array.isArray(parsed) ? 'an array' : parsed === null ? 'null' : typeof parsed}`), undefined)
    }
    const envelope = parsed as { type?: unknown, data?: unknown, id?: unknown }
    const id = envelope.id
    if (id !== undefined && !isId(id)) {
      return this.refuse(new errors.FST_RT_MESSAGE_NOT_ENVELOPE(`"id" must be a string of at most ${MAX_ID_LENGTH} characters or a finite number`), undefined)
    }
    if (typeof envelope.type !== 'string') {
      return this.refuse(new errors.FST_RT_MESSAGE_NOT_ENVELOPE('"type" must be a string'), id)
    }
    const type = envelope.type
    if (type === '$ping') {
      // Liveness for clients that cannot see WebSocket pings (browsers).
      this.writeNow(JSON.stringify({ type: '$pong', data: null, id }))
      return true
    }
    if (this.settings.rooms !== null && (type === '$join' || type === '$leave')) {
      return this.roomRequest(type, envelope.data, id, text.length)
    }
    const entry = this.compiled.client.get(type)
    if (entry === undefined) {
      return this.refuse(new errors.FST_RT_UNKNOWN_MESSAGE_TYPE(JSON.stringify(cutEcho(type, this.settings.maxEchoLength))), id)
    }
    const data = envelope.data
    if (!entry.check.Check(data)) {
      return this.refuse(new errors.FST_RT_INVALID_MESSAGE_DATA(JSON.stringify(type)), id, this.validationErrors(entry.check, data, text.length))
    }
    this.handle(type, entry, data, id)
    return true
  }

  /** The failures of a check that failed, bounded (see listErrors) by the size of the message, `messageLength`. */
  private validationErrors (check: ClientCheck, data: unknown, messageLength: number): ValidationErrors {
    return listErrors(check.Errors(data), this.settings.maxErrors, this.settings.maxEchoLength, messageLength)
  }

  /** A client's own `$join` or `$leave`: checked, authorized, answered with `<type>:reply`. */
  private roomRequest (type: '$join' | '$leave', data: unknown, id: Id | undefined, messageLength: number): true | Promise<boolean> {
    const check = type === '$join' ? JoinData : LeaveData
    if (!check.Check(data)) {
      return this.refuse(new errors.FST_RT_INVALID_MESSAGE_DATA(JSON.stringify(type)), id, this.validationErrors(check, data, messageLength))
    }
    const request = data as { room: string, epoch?: string, offset?: number, meta?: unknown }
    try {
      this.hub.checkRoom(request.room)
    } catch (error) {
      return this.refuse(error as Error & { code: string }, id)
    }
    if (type === '$join' && (request.epoch === undefined) !== (request.offset === undefined)) {
      return this.refuse(new errors.FST_RT_INVALID_MESSAGE_DATA(JSON.stringify(type)), id, [{ path: '/offset', message: 'epoch and offset go together' }])
    }
    if (request.meta !== undefined && Buffer.byteLength(JSON.stringify(request.meta)) > MAX_META_BYTES) {
      return this.refuse(new errors.FST_RT_INVALID_MESSAGE_DATA(JSON.stringify(type)), id, [{ path: '/meta', message: `Expected at most ${MAX_META_BYTES} bytes of JSON` }])
    }
    // A connection's room requests run one after another, in the order they came: a $leave sent
    // right after a $join applies to the room joined. Neither ever rejects.
    const previous = this.roomRequests ?? Promise.resolve()
    this.roomRequests = previous.then(async () => { await (type === '$join' ? this.clientJoin(request, id) : this.clientLeave(request.room, id)) })
    this.occupy(this.roomRequests)
    return true
  }

  private async clientJoin (request: { room: string, epoch?: string, offset?: number, meta?: unknown }, id: Id | undefined): Promise<void> {
    const rooms = this.settings.rooms as ClientRoomsOptions
    try {
      // Before authorize, which may be costly: a join over the bounds is refused either way.
      this.hub.checkCapacity(this.member, request.room)
      if (await rooms.authorize.call(this.app, request.room, this.context) !== true) {
        await this.sendError(new errors.FST_RT_JOIN_FORBIDDEN(JSON.stringify(cutEcho(request.room, this.settings.maxEchoLength))), id)
        return
      }
      const options: JoinOptions = {
        meta: request.meta,
        notice: noticesFor(rooms, request.room),
        // The reply goes out before the replay and the live messages, so the client knows where it stands.
        beforeDelivery: (result) => this.write(JSON.stringify({ type: '$join:reply', data: result, id }))
      }
      if (request.epoch !== undefined) options.recover = { epoch: request.epoch, offset: request.offset as number }
      await this.hub.join(this.member, request.room, options)
    } catch (error) {
      const code = (error as { code?: unknown }).code
      // The client left meanwhile: nobody to tell, and its join left nothing behind (see Hub.join).
      if (code === 'FST_RT_CONNECTION_CLOSED') return
      if (code === 'FST_RT_TOO_MANY_ROOMS') await this.sendError(error as Error & { code: string }, id)
      else await this.failed('$join', error as Error, id)
    }
  }

  private async clientLeave (room: string, id: Id | undefined): Promise<void> {
    try {
      const left = await this.hub.leave(this.member, room)
      await this.write(JSON.stringify({ type: '$leave:reply', data: { room, left }, id }))
    } catch (error) {
      await this.failed('$leave', error as Error, id)
    }
  }

  /** Counts `task` as running (reading waits above maxInFlight) until it settles; it is not awaited. */
  private occupy (task: Promise<unknown>): void {
    this.start()
    // A task never rejects by design; one that does is a failure no rule foresaw, as a throw in accept().
    task.then(undefined, (error: unknown) => { this.crash(error) }).then(() => { this.release() })
  }

  /**
   * A failure no rule foresaw, while handling this connection's messages: logged with the request id,
   * reported to the error handler, and the connection is closed with 1011. Nothing else is touched.
   */
  private crash (error: unknown): void {
    this.request.log.error({ err: error }, 'realtime: unexpected failure while handling a message; closing the connection with 1011')
    this.hub.metrics.internalErrors++
    // close() only throws for a bad code or reason, and these are fixed.
    void this.connection.close({ code: CloseCode.INTERNAL_ERROR, reason: 'Internal error' })
    void this.report(error instanceof Error ? error : new Error(String(error)))
  }

  /** One more task running; at maxInFlight reading waits, so the peer is held back too. */
  private start (): void {
    if (++this.inFlight === this.settings.maxInFlight) this.connection.holdMessages(true)
  }

  private release (): void {
    if (this.inFlight-- === this.settings.maxInFlight) this.connection.holdMessages(false)
  }

  /**
   * Runs the handler of a checked message. A handler that returns a plain value is answered in this
   * turn, with no promise, timer or task: the common, cheap case. A promise becomes a task, and for a
   * request it gets a deadline on the shared request clock.
   */
  private handle (type: string, entry: ClientEntry, data: unknown, id: Id | undefined): void {
    const handler = this.handlers[type] as AnyHandler
    const context: RequestContext<Contract, string> = {
      connection: this.connection,
      request: this.request,
      userId: this.member.userId,
      send: this.context.send,
      rooms: this.context.rooms,
      type,
      id
    }
    let result: unknown
    try {
      result = handler.call(this.app, data, context)
    } catch (error) {
      this.occupy(this.failed(type, error as Error, id))
      return
    }
    if (isThenable(result)) {
      this.awaitResult(type, entry, result, id)
    } else if (id !== undefined) {
      let text: string
      try {
        text = this.replyText(type, entry, result, id)
      } catch (error) {
        this.occupy(this.failed(type, error as Error, id))
        return
      }
      this.writeNow(text)
    }
  }

  private awaitResult (type: string, entry: ClientEntry, result: PromiseLike<unknown>, id: Id | undefined): void {
    // Only a request (with an id) has a deadline; an event's handler may take as long as it takes.
    const pending: PendingRequest = { type, id, deadline: id === undefined ? Infinity : Date.now() + this.settings.requestTimeout, timedOut: false }
    this.start()
    // A request dispatched after its connection ended (it waited behind maxInFlight) has nobody to time out for.
    if (id !== undefined && this.deadlines.session !== null) {
      (this.pending ??= new Set()).add(pending)
      requestClock.schedule(this.deadlines, pending.deadline)
    }
    Promise.resolve(result).then(
      async (value) => { await this.settle(pending, entry, value, null) },
      async (error: Error) => { await this.settle(pending, entry, undefined, error) }
    ).catch((error: unknown) => { this.crash(error) })
  }

  /** Answers a request whose handler's promise settled (or reports the failure of an event handler). */
  private async settle (pending: PendingRequest, entry: ClientEntry, value: unknown, error: Error | null): Promise<void> {
    const { type, id } = pending
    if (pending.timedOut) {
      // The client has its timeout error and the slot was freed then; a failure is still reported.
      if (error !== null) await this.failedLate(type, error)
      return
    }
    this.pending?.delete(pending)
    try {
      if (error !== null) {
        await this.failed(type, error, id)
      } else if (id !== undefined) {
        let text: string
        try {
          text = this.replyText(type, entry, value, id)
        } catch (failure) {
          await this.failed(type, failure as Error, id)
          return
        }
        await this.write(text)
      }
    } finally {
      this.release()
    }
  }

  /** @internal The request clock: answers every request past its deadline with FST_RT_REQUEST_TIMEOUT. */
  onDeadline (now: number): number {
    // Requests start in order with one timeout, so deadlines are in insertion order.
    const list = this.pending as Set<PendingRequest>
    for (const pending of list) {
      if (pending.deadline > now) return pending.deadline
      list.delete(pending)
      pending.timedOut = true
      this.release()
      this.writeNow(errorEnvelope(new errors.FST_RT_REQUEST_TIMEOUT(JSON.stringify(pending.type), this.settings.requestTimeout), pending.id))
    }
    return Infinity
  }

  /** The reply envelope of a request, checked when validateOutgoing is on. */
  private replyText (type: string, entry: ClientEntry, value: unknown, id: Id): string {
    const data = value === undefined ? null : value
    const reply = entry.reply
    if (reply !== null && value === undefined) {
      throw new errors.FST_RT_INVALID_OUTGOING(`reply to ${JSON.stringify(type)}`, 'the handler returned nothing')
    }
    if (reply !== null && this.settings.validateOutgoing && !reply.check.Check(data)) {
      throw new errors.FST_RT_INVALID_OUTGOING(`reply to ${JSON.stringify(type)}`, describeErrors(reply.check.Errors(data)))
    }
    const envelope = { type: entry.replyType, data, id }
    return reply === null ? JSON.stringify(envelope) : reply.serialize(envelope)
  }

  /** Sends a server message of the contract; every failure is a rejection, never a throw. */
  async send (type: string, data: unknown): Promise<void> {
    await this.connection.sendText(serializeOutgoing(this.compiled, type, data, this.settings.validateOutgoing))
  }

  /** Runs a handler or lifecycle hook; a failure is logged and answered. Returns false if it failed. */
  private async guard (name: string, run: () => unknown): Promise<boolean> {
    try {
      await run()
      return true
    } catch (error) {
      await this.failed(name, error as Error, undefined)
      return false
    }
  }

  private async failed (type: string, error: Error, id: Id | undefined): Promise<void> {
    const envelope = error instanceof MessageError ? this.messageErrorEnvelope(type, error, id) : null
    if (envelope !== null) {
      await this.write(envelope)
    } else {
      this.request.log.error({ err: error, messageType: type }, 'realtime: message handler failed')
      await this.sendError(new errors.FST_RT_HANDLER_FAILED(JSON.stringify(type)), id)
    }
    await this.report(error)
  }

  /** A MessageError's envelope, or null (logged) when its details have no JSON form: the client then gets FST_RT_HANDLER_FAILED. */
  private messageErrorEnvelope (type: string, error: MessageError, id: Id | undefined): string | null {
    try {
      return errorEnvelope(error, id)
    } catch (failure) {
      this.request.log.error({ err: failure, messageType: type, code: error.code }, 'realtime: a MessageError could not be sent: its details are not JSON')
      return null
    }
  }

  private async failedLate (type: string, error: Error): Promise<void> {
    this.request.log.error({ err: error, messageType: type }, 'realtime: message handler failed after its request timed out')
    await this.report(error)
  }

  private async report (error: Error): Promise<void> {
    const handler = this.handlers.error
    if (handler === undefined) return
    try {
      await handler.call(this.app, this.context, error)
    } catch (failure) {
      this.request.log.error({ err: failure }, 'realtime: error handler failed')
    }
  }

  /** Answers bad input by the route's policy; returns false when the connection is being closed. */
  private async refuse (error: Error & { code: string }, id: Id | undefined, list?: ValidationErrors): Promise<boolean> {
    this.hub.metrics.validationErrors++
    if (this.settings.onInvalid === 'reply') {
      await this.write(errorEnvelope(error, id, list))
      return true
    }
    await this.connection.close({ code: this.settings.onInvalid, reason: closeReason(error.message) })
    return false
  }

  private sendError (error: Error & { code: string }, id: Id | undefined): Promise<void> {
    return this.write(errorEnvelope(error, id))
  }

  /**
   * Writes in this turn when nothing has to wait; otherwise the write is a task, so a peer that
   * does not read holds up reading (maxInFlight) as a waiting write would.
   */
  private writeNow (text: string): void {
    if (this.connection.closed || this.connection.sendTextNow(text)) return
    this.occupy(this.write(text))
  }

  /** Writes unless the connection is gone: a reply to a client that left is not an error. */
  private async write (text: string): Promise<void> {
    if (this.connection.closed) return
    // sendText of a string only fails when the socket is gone: closing on its own (a protocol error, a
    // slow consumer) before this connection says so. Nobody is left to tell.
    await this.connection.sendText(text).catch(ignoreGone)
  }
}
