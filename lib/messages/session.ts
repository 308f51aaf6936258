import type { FastifyInstance } from 'fastify'
import type { RealtimeConnection } from '../connection/connection.js'
import type { DefaultRealtimeRequest } from '../connection/request.js'
import type { WSMessage } from '../connection/messages.js'
import type { DeadlineClock, DeadlineOwner } from '../connection/timers.js'
import { CloseCode } from '../close-codes.js'
import { errors } from '../errors.js'
import { Hub, type RoomSendOptions } from '../hub/hub.js'
import type { Member } from '../hub/member.js'
import type { ClientCheck } from './client-check.js'
import type { CompiledClientType, CompiledContract } from './compile.js'
import type { Contract } from './contract.js'
import type { ContractSettings } from '../options/contract.js'
import { closeReason, cutEcho, errorEnvelope, listErrors, type ValidationErrors } from './error-envelope.js'
import { nestsDeeperThan } from '../connection/json-depth.js'
import { MessageError } from './message-error.js'
import { describeErrors, serializeOutgoing } from './outgoing.js'
import { RateLimiter } from './rate-limit.js'
import { isId, MAX_ID_LENGTH, type Id } from './request-id.js'
import { RoomRequests, type RoomRequestOwner } from './room-requests.js'
import { envelope, JOIN, LEAVE, PING, PONG } from '../protocol.js'
import { SessionRooms, type RoomsOwner } from './session-rooms.js'
import { isThenable } from './thenable.js'
import type { AnyHandler, MessageContext, RequestContext } from './types.js'

type ClientEntry = CompiledClientType

/** A request whose handler returned a promise, until it settles or times out. */
interface PendingRequest {
  readonly type: string
  readonly id: Id | undefined
  readonly deadline: number
  timedOut: boolean
}

// A reply to a client that left has nobody to reach.
function ignoreGone (): void {}

// An open session has nothing more to do until its connection closes (Session.closed).
function waitForClose (): void {}

/**
 * The clock's hold on a session's requests. The clock keeps a cancelled entry until its time comes
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

/**
 * How a session tells its route that it is over: done (the connection closes with 1000 if it has
 * not closed already), or failed (logged; it closes with 1011).
 */
export interface SessionEnd {
  done (connection: RealtimeConnection): void
  failed (connection: RealtimeConnection, error: unknown): void
}

/**
 * One connection of a contract route: takes its messages as they arrive, checks and dispatches each
 * to its handler, answers requests (with a deadline on the plugin's clock) and bounds what runs at once.
 */
// Also the connection's MessageSink (an internal interface, checked where attach() takes it).
export class Session implements RoomsOwner, RoomRequestOwner {
  private inFlight = 0
  /** Requests awaiting their handler's promise, in the order they started. */
  private pending: Set<PendingRequest> | null = null
  private readonly limiter: RateLimiter | null
  private readonly deadlines = new RequestDeadlines(this)
  /** A client's own $join and $leave, on a route with `rooms`. */
  private readonly roomRequests: RoomRequests | null
  /** The reason in the peer's close frame, for the close handler. */
  private closeReason = ''
  readonly context: MessageContext<Contract>
  readonly app: FastifyInstance
  /** Told once the session is over (serve()). */
  private end: SessionEnd | null = null

  constructor (
    private readonly compiled: CompiledContract,
    private readonly handlers: Record<string, AnyHandler>,
    readonly settings: ContractSettings,
    private readonly connection: RealtimeConnection,
    readonly request: DefaultRealtimeRequest,
    readonly hub: Hub,
    /** The plugin instance's clock, which also runs its connections' deadlines. */
    private readonly clock: DeadlineClock,
    readonly member: Member
  ) {
    this.app = connection.app
    this.context = { connection, request, userId: member.userId, send: (type, data) => this.send(type, data), rooms: new SessionRooms(this) }
    this.limiter = settings.rateLimit === null ? null : new RateLimiter(settings.rateLimit, Date.now())
    this.roomRequests = settings.rooms === null ? null : new RoomRequests(this, settings.rooms, compiled.presence)
    this.routeUrl = connection.route
  }

  /** The route this connection came in on. */
  readonly routeUrl: string

  /**
   * Registers the connection with the registry, runs its open handler, then takes its messages; once it
   * has closed, runs the close handler, always takes it out of every room, and tells `end`. Callbacks
   * rather than an async function: an open connection holds no promise, frame or closure of its own.
   */
  serve (end: SessionEnd): void {
    this.end = end
    this.after(this.connection.plugin.registry.enter(this.member, this.routeUrl).then(() => this.open()), waitForClose)
  }

  serialize (type: string, data: unknown): string {
    return serializeOutgoing(this.compiled, type, data, this.settings.validateOutgoing)
  }

  /** One serialization for every room, each published on every instance. */
  async publish (rooms: string | readonly string[], type: string, data: unknown, except: string | undefined, options: RoomSendOptions | undefined): Promise<void> {
    const list = this.hub.checkRooms(rooms)
    const send = Hub.sendOptions(options)
    await this.hub.publishAll(list, this.serialize(type, data), except === undefined ? send : { ...send, except })
  }

  /** Runs the open handler; a failing one fails the connection (logged, close 1011) like any route handler. */
  private open (): Promise<void> | undefined {
    const opened: unknown = this.handlers.open?.call(this.app, this.context)
    if (isThenable(opened)) return Promise.resolve(opened).then(() => { this.connection.attach(this) })
    // From here messages are pushed to accept() as they arrive: no promise or suspended loop per
    // message, and a read that brings several frames dispatches them all in its own turn.
    this.connection.attach(this)
    return undefined
  }

  /** @internal The connection closed: the close handler runs (its failure is reported, as a message handler's). */
  closed (): void {
    this.clock.cancel(this.deadlines)
    this.deadlines.session = null
    const close = this.handlers.close
    if (close === undefined) {
      this.finish(null)
      return
    }
    // guard() reports a failing close handler itself and resolves.
    this.after(this.guard('close', () => close.call(this.app, this.context, this.connection.closeCode, this.closeReason)), () => { this.finish(null) })
  }

  /** Runs `next` once `step` has resolved; a step that rejects ends the session as failed (the route logs it and closes with 1011). */
  private after (step: Promise<unknown>, next: () => void): void {
    step.then(next, (error: unknown) => { this.finish({ error }) })
  }

  /** Out of the registry and every room whatever happened (what it could not leave is logged), then the route is told. */
  private finish (failure: { error: unknown } | null): void {
    const end = this.end as SessionEnd
    const tell = (): void => { failure === null ? end.done(this.connection) : end.failed(this.connection, failure.error) }
    this.connection.plugin.registry.exit(this.member).then(tell, tell)
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
    if (limiter.admit(size, Date.now())) return true
    this.hub.metrics.rateLimitHits++
    // One envelope per burst of refusals: answering each would let a flood amplify itself.
    if (limiter.strikes === 1) this.writeNow(errorEnvelope(rateLimited(limiter), undefined))
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
    const received = parsed as { type?: unknown, data?: unknown, id?: unknown }
    const id = received.id
    if (id !== undefined && !isId(id)) {
      return this.refuse(new errors.FST_RT_MESSAGE_NOT_ENVELOPE(`"id" must be a string of at most ${MAX_ID_LENGTH} characters or a finite number`), undefined)
    }
    if (typeof received.type !== 'string') {
      return this.refuse(new errors.FST_RT_MESSAGE_NOT_ENVELOPE('"type" must be a string'), id)
    }
    const type = received.type
    if (type === PING) {
      // Liveness for clients that cannot see WebSocket pings (browsers).
      this.writeNow(envelope(PONG, null, id))
      return true
    }
    if (this.roomRequests !== null && (type === JOIN || type === LEAVE)) {
      return this.roomRequests.take(type, received.data, id, text.length)
    }
    const entry = this.compiled.client.get(type)
    if (entry === undefined) {
      return this.refuse(new errors.FST_RT_UNKNOWN_MESSAGE_TYPE(JSON.stringify(cutEcho(type, this.settings.maxEchoLength))), id)
    }
    const data = received.data
    if (!entry.check.Check(data)) {
      return this.refuse(new errors.FST_RT_INVALID_MESSAGE_DATA(JSON.stringify(type)), id, this.validationErrors(entry.check, data, text.length))
    }
    this.handle(type, entry, data, id)
    return true
  }

  /** The failures of a check that failed, bounded (see listErrors) by the size of the message, `messageLength`. */
  validationErrors (check: ClientCheck, data: unknown, messageLength: number): ValidationErrors {
    return listErrors(check.Errors(data), this.settings.maxErrors, this.settings.maxEchoLength, messageLength)
  }

  /** Counts `task` as running (reading waits above maxInFlight) until it settles; it is not awaited. */
  occupy (task: Promise<unknown>): void {
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
   * request it gets a deadline on the plugin's clock.
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
      this.clock.schedule(this.deadlines, pending.deadline)
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

  /** @internal The clock: answers every request past its deadline with FST_RT_REQUEST_TIMEOUT. */
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

  async failed (type: string, error: Error, id: Id | undefined): Promise<void> {
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
  async refuse (error: Error & { code: string }, id: Id | undefined, list?: ValidationErrors): Promise<boolean> {
    this.hub.metrics.validationErrors++
    if (this.settings.onInvalid === 'reply') {
      await this.write(errorEnvelope(error, id, list))
      return true
    }
    await this.connection.close({ code: this.settings.onInvalid, reason: closeReason(error.message) })
    return false
  }

  sendError (error: Error & { code: string }, id: Id | undefined): Promise<void> {
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
  async write (text: string): Promise<void> {
    if (this.connection.closed) return
    // sendText of a string only fails when the socket is gone: closing on its own (a protocol error, a
    // slow consumer) before this connection says so. Nobody is left to tell.
    await this.connection.sendText(text).catch(ignoreGone)
  }
}

/** The error for the limiter's last refusal. */
function rateLimited (limiter: RateLimiter): Error & { code: string } {
  const { perSecond, burst, bytesPerSecond, bytesBurst } = limiter.settings
  return limiter.refusedBy === 'messages'
    ? new errors.FST_RT_RATE_LIMITED(`${perSecond} messages`, burst)
    : new errors.FST_RT_RATE_LIMITED(`${bytesPerSecond} bytes`, `${bytesBurst} bytes`)
}
