import { CloseCode, shouldReconnect } from '../close-codes.js'
import type { ClientData, ClientType, Contract, PresenceMeta, ReplyData, ServerData, ServerType } from '../messages/contract.js'
import { backoffDelay } from './backoff.js'
import { RealtimeClientError } from './errors.js'
import { MAX_RESYNCS, RoomResync, snapshotPosition, type HeldMessage, type SnapshotLoader, type SnapshotPosition } from './resync.js'
import { checkers, describe } from '../options/checks.js'
import { AUTH, envelope, ERROR, JOIN, JOIN_REPLY, LEAVE, LEAVE_REPLY, LOST, PING, PONG, PRESENCE, type LostData, type PresenceData } from '../protocol.js'

/**
 * An event handler slot of a socket. The client only ever assigns to these, never calls them, so a
 * socket whose events carry more (`ws`'s, a browser's) must fit: declared through a method, whose
 * parameter TypeScript compares both ways, where a plain function type would reject the richer event.
 */
export type SocketEventHandler<E> = { handle (event: E): void }['handle']

/** The part of the WHATWG WebSocket the client uses; browsers' and `ws`'s both fit. */
export interface WebSocketLike {
  readonly readyState: number
  /** Bytes sent but not yet written to the network, where the socket reports it: a volatile send is dropped above 0. */
  readonly bufferedAmount?: number
  send (data: string): void
  close (code?: number, reason?: string): void
  onopen: SocketEventHandler<unknown> | null
  onmessage: SocketEventHandler<{ data: unknown }> | null
  onclose: SocketEventHandler<{ code: number, reason: string }> | null
  onerror: SocketEventHandler<unknown> | null
}

/** A WebSocket constructor: `ws`'s `WebSocket` in Node, `globalThis.WebSocket` in a browser. */
export type WebSocketClass = new (url: string, protocols?: string | string[]) => WebSocketLike

export type ClientState = 'connecting' | 'open' | 'reconnecting' | 'closed'

export interface ClientOptions {
  /** The server URL, or a function called before every (re)connect, e.g. to pick an instance. */
  url: string | (() => string | Promise<string>)
  /** A token sent first as `{ type: '$auth', data }`; a function is called again on every reconnect. */
  token?: string | (() => string | null | Promise<string | null>)
  /** The WebSocket class: `globalThis.WebSocket` by default (browsers, Node 22 and later), or `ws`'s. */
  WebSocket?: WebSocketClass
  protocols?: string | string[]
  /** Reconnect delays: full jitter between 0 and min(capMs, baseMs · 2^attempt). */
  backoff?: {
    /** @default 500 */ baseMs?: number
    /** @default 30000 */ capMs?: number
    /** Attempts before giving up (state `closed`). @default Infinity */ maxRetries?: number
    /** The attempt count resets only after the connection stayed up this long. @default 10000 */ resetAfterMs?: number
  }
  /** Without any message for this long, the client sends `$ping`. @default 25000 */
  pingIntervalMs?: number
  /** Without any message this long after a `$ping`, the server is taken for dead and the client reconnects. @default 10000 */
  pongTimeoutMs?: number
  /** Default timeout of `request()` and `join()`. @default 10000 */
  requestTimeoutMs?: number
  /** Messages sent while not connected wait here, bounded by count and age. */
  queue?: {
    /** @default 100 */ maxSize?: number
    /** Older messages are dropped (FST_RT_CLIENT_QUEUE_EXPIRED is reported). @default 30000 */ maxAgeMs?: number
    /** When full: 'reject' throws FST_RT_CLIENT_QUEUE_FULL from send(); 'drop-oldest' drops the oldest. @default 'reject' */
    overflow?: 'reject' | 'drop-oldest'
  }
  /** A source of randomness in [0, 1) for the jitter (seed it in tests). @default Math.random */
  random?: () => number
  /** Connect at construction. @default true */
  autoConnect?: boolean
}

/** Where a room message sits: the room's epoch and offset (from the `room`, `epoch`, `offset` fields). */
export interface MessageMeta {
  readonly room?: string
  readonly epoch?: string
  readonly offset?: number
}

/** The answer to a join, from the first `join()` or the automatic rejoin after a reconnect. */
export interface JoinOutcome {
  readonly room: string
  readonly epoch: string
  readonly offset: number
  /** Present on a rejoin with a known position: true if every missed message follows, false if the app must reload. */
  readonly recovered?: boolean
}

export interface CloseInfo {
  readonly code: number
  readonly reason: string
  /** False once the client stops: closed by the app, a terminal code, or maxRetries reached. */
  readonly willReconnect: boolean
}

interface Pending {
  resolve (value: unknown): void
  reject (error: Error): void
  timer: ReturnType<typeof setTimeout>
  /**
   * Runs as the reply is read, before any frame that came after it in the same read: `ws` delivers
   * every frame of a read in one turn, before a resumed `await` would see the reply.
   */
  onReply?: (data: unknown) => void
}

interface Queued {
  text: string
  at: number
  /** The request waiting for this message's reply, if it is one. */
  id?: string
}

interface RoomState {
  meta: unknown
  position: { epoch: string, offset: number } | null
  /** With a snapshot loader: how the room is reloaded when it cannot be recovered. */
  resync: RoomResync | null
  /** The socket this room was last joined on: a room is joined once per connection. */
  joinedOn: WebSocketLike | null
  /** join() calls made while not connected, settled by the join on the next connection. */
  waiters: Array<{ resolve (outcome: JoinOutcome): void, reject (error: Error): void, timer: ReturnType<typeof setTimeout> }>
}

type Listener<A extends unknown[]> = (...args: A) => void

const OPEN = 1
// The close code of a connection that ended without a close frame.
const DROPPED = 1006

// The server's option checkers, throwing the client's own error.
const check = checkers((name, expected, value) => {
  throw new RealtimeClientError('FST_RT_CLIENT_INVALID_OPTION', `${name} must be ${expected}, got ${describe(value)}`)
})
const positive = check.optionalPositive

/** The keys the client accepts, at the top and in its two nested options (docs/client.md's table lists each). */
export const clientOptionNames = Object.freeze({
  options: Object.freeze(['url', 'token', 'WebSocket', 'protocols', 'backoff', 'pingIntervalMs', 'pongTimeoutMs', 'requestTimeoutMs', 'queue', 'random', 'autoConnect']),
  backoff: Object.freeze(['baseMs', 'capMs', 'maxRetries', 'resetAfterMs']),
  queue: Object.freeze(['maxSize', 'maxAgeMs', 'overflow'])
})

/** The defaults of the client's options that have a fixed value, named as docs/client.md's table names them. */
export const clientDefaults = Object.freeze({
  'backoff.baseMs': 500,
  'backoff.capMs': 30_000,
  'backoff.maxRetries': Number.POSITIVE_INFINITY,
  'backoff.resetAfterMs': 10_000,
  pingIntervalMs: 25_000,
  pongTimeoutMs: 10_000,
  requestTimeoutMs: 10_000,
  'queue.maxSize': 100,
  'queue.maxAgeMs': 30_000,
  'queue.overflow': 'reject' as const,
  random: Math.random,
  autoConnect: true
})

/**
 * A typed, reconnecting client for a contract route. `send` accepts only the contract's client
 * messages, `on` hands out its server messages, `request` returns the typed reply. It reconnects
 * with full-jitter backoff after reconnectable close codes, rejoins its rooms recovering from the
 * last offset it saw, and queues what is sent while it is away.
 */
export class RealtimeClient<C extends Contract> {
  private readonly options: ClientOptions
  private readonly WebSocketImpl: WebSocketClass
  private readonly baseMs: number
  private readonly capMs: number
  private readonly maxRetries: number
  private readonly resetAfterMs: number
  private readonly pingIntervalMs: number
  private readonly pongTimeoutMs: number
  private readonly requestTimeoutMs: number
  private readonly queueMax: number
  private readonly queueMaxAge: number
  private readonly overflow: 'reject' | 'drop-oldest'
  private readonly random: () => number

  private socket: WebSocketLike | null = null
  private currentState: ClientState = 'closed'
  private stopped = false
  private attempt = 0
  private nextId = 0
  private lastMessageAt = 0
  private pingSentAt = 0
  private livenessTimer: ReturnType<typeof setTimeout> | null = null
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null
  private stableTimer: ReturnType<typeof setTimeout> | null = null
  private readonly pending = new Map<string, Pending>()
  private readonly queue: Queued[] = []
  private readonly rooms = new Map<string, RoomState>()
  private readonly handlers = new Map<string, Set<Listener<[unknown, MessageMeta]>>>()
  private readonly stateListeners = new Set<Listener<[ClientState]>>()
  private readonly joinListeners = new Set<Listener<[JoinOutcome]>>()
  private readonly lostListeners = new Set<Listener<[{ room: string, epoch: string, offset: number }]>>()
  private readonly presenceListeners = new Set<Listener<[unknown]>>()
  private readonly errorListeners = new Set<Listener<[Error]>>()
  private readonly closeListeners = new Set<Listener<[CloseInfo]>>()
  private readonly onOnline = (): void => { this.online() }
  private readonly onOffline = (): void => { this.offline() }

  constructor (options: ClientOptions) {
    check.object('options', options, clientOptionNames.options, 'an object of client options')
    if (options.backoff !== undefined) check.object('backoff', options.backoff, clientOptionNames.backoff, 'an object { baseMs?, capMs?, maxRetries?, resetAfterMs? }')
    if (options.queue !== undefined) check.object('queue', options.queue, clientOptionNames.queue, 'an object { maxSize?, maxAgeMs?, overflow? }')
    if (options.token !== undefined && typeof options.token !== 'string' && typeof options.token !== 'function') check.fail('token', 'a string or a function', options.token)
    if (options.protocols !== undefined && typeof options.protocols !== 'string' && !(Array.isArray(options.protocols) && options.protocols.every((item) => typeof item === 'string'))) {
      check.fail('protocols', 'a string or an array of strings', options.protocols)
    }
    if (options.random !== undefined) check.func('random', options.random, 'a function () => number in [0, 1)')
    if (options.autoConnect !== undefined) check.boolean('autoConnect', options.autoConnect)
    if (options.WebSocket !== undefined) check.func('WebSocket', options.WebSocket, 'a WebSocket class')
    this.options = options
    const Impl = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketClass }).WebSocket
    if (Impl === undefined) throw new RealtimeClientError('FST_RT_CLIENT_INVALID_OPTION', 'No WebSocket class: pass one as the WebSocket option (e.g. ws in Node)')
    if (typeof options.url !== 'string' && typeof options.url !== 'function') {
      throw new RealtimeClientError('FST_RT_CLIENT_INVALID_OPTION', 'url must be a string or a function')
    }
    this.WebSocketImpl = Impl
    this.baseMs = positive('backoff.baseMs', options.backoff?.baseMs, clientDefaults['backoff.baseMs'])
    this.capMs = positive('backoff.capMs', options.backoff?.capMs, clientDefaults['backoff.capMs'])
    this.maxRetries = positive('backoff.maxRetries', options.backoff?.maxRetries, clientDefaults['backoff.maxRetries'])
    this.resetAfterMs = positive('backoff.resetAfterMs', options.backoff?.resetAfterMs, clientDefaults['backoff.resetAfterMs'])
    this.pingIntervalMs = positive('pingIntervalMs', options.pingIntervalMs, clientDefaults.pingIntervalMs)
    this.pongTimeoutMs = positive('pongTimeoutMs', options.pongTimeoutMs, clientDefaults.pongTimeoutMs)
    this.requestTimeoutMs = positive('requestTimeoutMs', options.requestTimeoutMs, clientDefaults.requestTimeoutMs)
    this.queueMax = positive('queue.maxSize', options.queue?.maxSize, clientDefaults['queue.maxSize'])
    this.queueMaxAge = positive('queue.maxAgeMs', options.queue?.maxAgeMs, clientDefaults['queue.maxAgeMs'])
    this.overflow = check.oneOf('queue.overflow', options.queue?.overflow ?? clientDefaults['queue.overflow'], ['reject', 'drop-oldest'] as const)
    this.random = options.random ?? clientDefaults.random
    const events = globalThis as { addEventListener?: (type: string, listener: () => void) => void }
    if (typeof events.addEventListener === 'function') {
      events.addEventListener('online', this.onOnline)
      events.addEventListener('offline', this.onOffline)
    }
    if (options.autoConnect ?? clientDefaults.autoConnect) this.connect()
  }

  /** connecting, open, reconnecting or closed. */
  get state (): ClientState {
    return this.currentState
  }

  /** The rooms this client is in (joined again after every reconnect). */
  get joinedRooms (): string[] {
    return [...this.rooms.keys()]
  }

  /** Where each joined room stands, as last seen; what a rejoin recovers from. */
  position (room: string): { epoch: string, offset: number } | null {
    return this.rooms.get(room)?.position ?? null
  }

  // ---- events; each `on*` returns a function that removes the listener ----

  on<K extends ServerType<C>>(type: K, listener: (data: ServerData<C, K>, meta: MessageMeta) => void): () => void {
    let set = this.handlers.get(type)
    if (set === undefined) {
      set = new Set()
      this.handlers.set(type, set)
    }
    set.add(listener as Listener<[unknown, MessageMeta]>)
    return () => { set.delete(listener as Listener<[unknown, MessageMeta]>) }
  }

  onState (listener: (state: ClientState) => void): () => void { return add(this.stateListeners, listener) }
  /** Every join reply, including the automatic rejoins with their `recovered` flag. */
  onJoin (listener: (outcome: JoinOutcome) => void): () => void { return add(this.joinListeners, listener) }
  /** The server lost messages of a room (e.g. its Redis restarted): reload that room from your source. */
  onLost (listener: (lost: { room: string, epoch: string, offset: number }) => void): () => void { return add(this.lostListeners, listener) }
  /** `$presence` join and leave notices; `meta` is typed by the contract's `presence` schema (null on a leave). */
  onPresence (listener: (notice: PresenceData<PresenceMeta<C>>) => void): () => void {
    return add(this.presenceListeners, listener as Listener<[unknown]>)
  }

  /** Error envelopes that answer no request, and expired queue entries. */
  onError (listener: (error: Error) => void): () => void { return add(this.errorListeners, listener) }
  onClose (listener: (info: CloseInfo) => void): () => void { return add(this.closeListeners, listener) }

  // ---- sending ----

  /**
   * Sends a client message of the contract now (true), or queues it while the client is not open
   * (false). With `{ volatile: true }` (a typing indicator, a cursor) it is never queued: it is
   * dropped (false) unless the client is open and its socket has nothing unsent.
   */
  send<K extends ClientType<C>>(type: K, data: ClientData<C, K>, options?: { volatile?: boolean }): boolean {
    if (options !== undefined) {
      check.object('send options', options, ['volatile'], 'an object { volatile?: boolean }')
      if (options.volatile !== undefined) check.boolean('volatile', options.volatile)
    }
    if (options?.volatile === true) {
      const socket = this.openSocket()
      if (socket === null || (socket.bufferedAmount ?? 0) > 0) return false
      socket.send(envelope(type, data))
      return true
    }
    return this.transmit(envelope(type, data))
  }

  /** Sends a request and resolves with its typed reply; rejects with a RealtimeClientError. */
  request<K extends ClientType<C>>(type: K, data: ClientData<C, K>, options?: { timeoutMs?: number }): Promise<ReplyData<C, K>> {
    return this.call(type, data, options?.timeoutMs) as Promise<ReplyData<C, K>>
  }

  /**
   * Joins a room; after a reconnect it is joined again, recovering from the last offset seen. `from`
   * is a position the app already has (e.g. history loaded over HTTP): the join recovers from there.
   * `snapshot` loads the app's state with the server's snapshot helper and returns its position:
   * it is called first, the join goes on from exactly there, and it is called again whenever the
   * room can no longer be recovered (`recovered: false`, `$lost`): the client re-syncs instead of
   * leaving the app to reload (see docs/rooms.md#snapshot-then-stream).
   * Called while not connected, it joins as soon as the connection opens.
   */
  async join (room: string, options?: { meta?: PresenceMeta<C>, from?: SnapshotPosition, snapshot?: SnapshotLoader, timeoutMs?: number }): Promise<JoinOutcome> {
    if (this.stopped && this.currentState === 'closed') throw new RealtimeClientError('FST_RT_CLIENT_CLOSED', 'The client is closed')
    if (options?.snapshot !== undefined) check.func('snapshot', options.snapshot, 'a function () => Promise<{ epoch, offset }>')
    const state: RoomState = this.rooms.get(room) ?? { meta: undefined, position: null, resync: null, joinedOn: null, waiters: [] }
    if (options?.meta !== undefined) state.meta = options.meta
    if (options?.from !== undefined) state.position = { epoch: options.from.epoch, offset: options.from.offset }
    if (options?.snapshot !== undefined) {
      state.resync = new RoomResync(options.snapshot)
      state.position = snapshotPosition(await options.snapshot())
    }
    this.rooms.set(room, state)
    if (this.currentState === 'open') return await this.joinRoom(room, state, options?.timeoutMs)
    const timeout = options?.timeoutMs ?? this.requestTimeoutMs
    return await new Promise<JoinOutcome>((resolve, reject) => {
      const waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          state.waiters.splice(state.waiters.indexOf(waiter), 1)
          reject(new RealtimeClientError('FST_RT_CLIENT_REQUEST_TIMEOUT', `Not joined to ${room} within ${timeout} ms`))
        }, timeout)
      }
      state.waiters.push(waiter)
    })
  }

  async leave (room: string, options?: { timeoutMs?: number }): Promise<void> {
    if (!this.rooms.delete(room)) return
    if (this.currentState === 'open') await this.call(LEAVE, { room }, options?.timeoutMs)
  }

  /** Connects (again) if not connected; done at construction unless autoConnect is false. */
  connect (): void {
    if (this.socket !== null || this.reconnectTimer !== null) return
    this.stopped = false
    void this.open()
  }

  /** Closes for good: no more reconnects; pending requests and queued messages fail. */
  close (code = 1000, reason = ''): void {
    this.stopped = true
    this.clearTimers()
    const events = globalThis as { removeEventListener?: (type: string, listener: () => void) => void }
    if (typeof events.removeEventListener === 'function') {
      events.removeEventListener('online', this.onOnline)
      events.removeEventListener('offline', this.onOffline)
    }
    const socket = this.socket
    this.socket = null
    if (socket !== null) {
      detach(socket)
      socket.close(code, reason)
    }
    this.failPending(new RealtimeClientError('FST_RT_CLIENT_CLOSED', 'The client is closed'))
    this.failJoinWaiters()
    this.queue.length = 0
    this.setState('closed')
    emit(this.closeListeners, { code, reason, willReconnect: false })
  }

  // ---- connection ----

  private async open (): Promise<void> {
    this.setState(this.attempt === 0 ? 'connecting' : 'reconnecting')
    let url: string
    let token: string | null
    try {
      url = typeof this.options.url === 'string' ? this.options.url : await this.options.url()
      token = typeof this.options.token === 'function' ? await this.options.token() : this.options.token ?? null
    } catch (error) {
      this.report(error as Error)
      this.scheduleReconnect(DROPPED, 'url or token provider failed')
      return
    }
    if (this.stopped) return
    const socket = new this.WebSocketImpl(url, this.options.protocols)
    this.socket = socket
    socket.onopen = () => { void this.opened(socket, token) }
    socket.onmessage = (event) => { this.received(event.data) }
    socket.onclose = (event) => { this.dropped(socket, event.code, event.reason) }
    socket.onerror = ignoreError
  }

  private async opened (socket: WebSocketLike, token: string | null): Promise<void> {
    this.lastMessageAt = Date.now()
    this.armLiveness()
    if (token !== null) {
      try {
        await this.call(AUTH, token, undefined, socket)
      } catch (error) {
        this.authFailed(socket, error as RealtimeClientError)
        return
      }
    }
    // Rooms first (those added meanwhile too), then what was queued: a queued message may need its room.
    for (;;) {
      const rejoin = [...this.rooms].filter(([, state]) => state.joinedOn !== socket)
      if (rejoin.length === 0) break
      const results = await Promise.allSettled(rejoin.map(([room, state]) => this.joinRoom(room, state, undefined, socket)))
      if (socket !== this.socket) return
      for (const [index, result] of results.entries()) {
        if (result.status === 'rejected') {
          // A refused rejoin (say, no longer authorized) leaves the room rather than retrying forever.
          const [room, state] = rejoin[index] as [string, RoomState]
          this.rooms.delete(room)
          for (const waiter of state.waiters.splice(0)) { clearTimeout(waiter.timer); waiter.reject(result.reason as Error) }
          this.report(result.reason as Error)
        }
      }
    }
    this.setState('open')
    this.stableTimer = setTimeout(() => { this.attempt = 0 }, this.resetAfterMs)
    this.flush()
  }

  /**
   * The `$auth` request failed. A refused token is closed by the server with 4501 (dropped() takes it
   * from there) and a dropped socket is already handled; what is left must not hang in 'connecting':
   * an error answer means this route will never take the token (stop for good), no answer means the
   * server is unwell (drop the socket and reconnect with backoff). Both are reported.
   */
  private authFailed (socket: WebSocketLike, error: RealtimeClientError): void {
    if (socket !== this.socket) return
    if (error.code === 'FST_RT_CLIENT_SERVER_ERROR') {
      this.report(new RealtimeClientError('FST_RT_CLIENT_AUTH_FAILED', `The server refused $auth: ${error.message}`, error.data))
      this.close(CloseCode.POLICY_VIOLATION, 'The server refused $auth')
      return
    }
    this.report(new RealtimeClientError('FST_RT_CLIENT_AUTH_FAILED', `$auth was not answered: ${error.message}`))
    abandon(socket)
    this.dropped(socket, DROPPED, '$auth was not answered')
  }

  /** The current socket is gone (its handlers are only ever attached to the current one). */
  private dropped (socket: WebSocketLike, code: number, reason: string): void {
    detach(socket)
    this.socket = null
    this.clearTimers()
    this.failPending(new RealtimeClientError('FST_RT_CLIENT_CONNECTION_LOST', `The connection closed (${code}) before the reply arrived`))
    if (!shouldReconnect(code)) {
      this.stopped = true
      this.failJoinWaiters()
      this.setState('closed')
      emit(this.closeListeners, { code, reason, willReconnect: false })
      return
    }
    this.scheduleReconnect(code, reason)
  }

  private scheduleReconnect (code: number, reason: string): void {
    if (this.attempt >= this.maxRetries) {
      this.stopped = true
      this.failJoinWaiters()
      this.setState('closed')
      emit(this.closeListeners, { code, reason, willReconnect: false })
      return
    }
    const delay = backoffDelay(this.attempt, this.baseMs, this.capMs, this.random)
    this.attempt++
    this.setState('reconnecting')
    emit(this.closeListeners, { code, reason, willReconnect: true })
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null
      void this.open()
    }, delay)
  }

  /** No message for a while: ask; no answer either: the server is gone, reconnect. */
  private armLiveness (): void {
    const now = Date.now()
    const waitingForPong = this.pingSentAt > this.lastMessageAt
    const due = waitingForPong ? this.pingSentAt + this.pongTimeoutMs : this.lastMessageAt + this.pingIntervalMs
    this.livenessTimer = setTimeout(() => { this.checkLiveness() }, Math.max(0, due - now))
  }

  private checkLiveness (): void {
    this.livenessTimer = null
    // Every path that drops the socket clears this timer, so the socket is still there.
    const socket = this.socket as WebSocketLike
    const now = Date.now()
    if (this.pingSentAt > this.lastMessageAt) {
      if (now >= this.pingSentAt + this.pongTimeoutMs) {
        // A dead server never completes a close handshake: drop the socket and go on at once.
        abandon(socket)
        this.dropped(socket, DROPPED, 'no answer to $ping')
        return
      }
    } else if (now >= this.lastMessageAt + this.pingIntervalMs && socket.readyState === OPEN) {
      this.pingSentAt = now
      socket.send(envelope(PING, null))
    }
    this.armLiveness()
  }

  private online (): void {
    if (this.stopped || this.socket !== null) return
    // The network is back: try now instead of waiting out the backoff.
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer)
    this.reconnectTimer = null
    this.attempt = 0
    void this.open()
  }

  private offline (): void {
    const socket = this.socket
    if (socket === null) return
    abandon(socket)
    this.dropped(socket, DROPPED, 'the browser went offline')
  }

  // ---- receiving ----

  private received (raw: unknown): void {
    this.lastMessageAt = Date.now()
    if (typeof raw !== 'string') return
    let message: { type?: unknown, data?: unknown, id?: unknown, room?: unknown, epoch?: unknown, offset?: unknown }
    try {
      message = JSON.parse(raw) as typeof message
    } catch {
      return
    }
    const type = message.type
    if (typeof type !== 'string') return
    if (message.id !== undefined && this.settle(String(message.id), type, message.data)) return
    if (type === ERROR) {
      this.report(new RealtimeClientError('FST_RT_CLIENT_SERVER_ERROR', errorMessage(message.data), message.data))
      return
    }
    if (type === PRESENCE) {
      emit(this.presenceListeners, message.data)
      return
    }
    if (type === LOST) {
      const lost = message.data as LostData
      const state = this.rooms.get(lost.room)
      if (state !== undefined) state.position = { epoch: lost.epoch, offset: lost.offset }
      emit(this.lostListeners, lost)
      if (state !== undefined) this.resync(lost.room, state, lost)
      return
    }
    if (type === PONG || type === JOIN_REPLY || type === LEAVE_REPLY) return
    if (typeof message.room === 'string') {
      const held = { type, data: message.data, room: message.room, epoch: message.epoch as string, offset: message.offset as number }
      if (this.rooms.get(held.room)?.resync?.hold(held) === true) return
      this.deliver(held)
      return
    }
    this.dispatch(type, message.data, {})
  }

  /** A room message to the app, after its position is kept. */
  private deliver (message: HeldMessage): void {
    this.advance(message.room, message.epoch, message.offset)
    this.dispatch(message.type, message.data, { room: message.room, epoch: message.epoch, offset: message.offset })
  }

  private dispatch (type: string, data: unknown, meta: MessageMeta): void {
    const set = this.handlers.get(type)
    if (set !== undefined) for (const listener of set) listener(data, meta)
  }

  /**
   * A room joined with a snapshot loader that cannot be recovered from where the client stood: live
   * messages from `live` on are held while the app reloads. A snapshot at or past `live` in the same
   * epoch lets the held messages after it through (none is missed: they came in live after `live`;
   * none is seen twice: the snapshot holds those up to its offset); otherwise the room is joined
   * again from the snapshot, which the server recovers.
   */
  private resync (room: string, state: RoomState, live: SnapshotPosition): void {
    const resync = state.resync
    if (resync === null || resync.held !== null) return
    const held: HeldMessage[] = []
    resync.held = held
    resync.overflowed = false
    // Called in a promise: a loader that throws at once must not throw out of the socket's event.
    Promise.resolve().then(async () => snapshotPosition(await resync.load())).then((snapshot) => { this.resynced(room, state, resync, held, live, snapshot) }, (error: unknown) => {
      // The app could not reload: what was held goes through, as without a loader.
      resync.held = null
      this.report(error as Error)
      if (this.rooms.get(room) === state) for (const message of held) this.deliver(message)
    })
  }

  private resynced (room: string, state: RoomState, resync: RoomResync, held: HeldMessage[], live: SnapshotPosition, snapshot: SnapshotPosition): void {
    resync.held = null
    if (this.rooms.get(room) !== state) return
    if (!resync.overflowed && snapshot.epoch === live.epoch && snapshot.offset >= live.offset) {
      resync.attempts = 0
      state.position = snapshot
      resync.through = snapshot
      for (const message of held) if (!resync.hold(message)) this.deliver(message)
      return
    }
    if (++resync.attempts > MAX_RESYNCS) {
      resync.attempts = 0
      this.report(new RealtimeClientError('FST_RT_CLIENT_RESYNC_FAILED', `${room} could not be re-synced after ${MAX_RESYNCS} reloads; it stays joined live`))
      for (const message of held) this.deliver(message)
      return
    }
    // Behind the live stream or from another epoch: leave, and join again from the snapshot, which
    // replays what follows it; what arrives until the join reply is dropped.
    state.position = snapshot
    const socket = this.socket
    // The connection dropped while the app reloaded: the rejoin after the reconnect starts from the snapshot.
    /* c8 ignore next */
    if (socket === null || state.joinedOn !== socket) return
    resync.held = []
    resync.rejoining = true
    this.call(LEAVE, { room }, undefined, socket)
      .then(async () => { if (this.rooms.get(room) === state) await this.joinRoom(room, state, undefined, socket) })
      .catch((error: unknown) => { this.report(error as Error) })
  }

  /** Keeps the newest position seen per joined room: what a rejoin recovers from. */
  private advance (room: string, epoch: string, offset: number): void {
    const state = this.rooms.get(room)
    if (state === undefined) return
    if (state.position === null || state.position.epoch !== epoch || offset > state.position.offset) {
      state.position = { epoch, offset }
    }
  }

  /** Resolves or rejects the request with this id; false if none waits for it. */
  private settle (id: string, type: string, data: unknown): boolean {
    const pending = this.pending.get(id)
    if (pending === undefined) return false
    this.pending.delete(id)
    clearTimeout(pending.timer)
    if (type === ERROR) {
      pending.reject(new RealtimeClientError('FST_RT_CLIENT_SERVER_ERROR', errorMessage(data), data))
      return true
    }
    pending.onReply?.(data)
    pending.resolve(data)
    return true
  }

  // ---- internals ----

  private async joinRoom (room: string, state: RoomState, timeoutMs?: number, socket?: WebSocketLike): Promise<JoinOutcome> {
    const data: Record<string, unknown> = { room }
    if (state.meta !== undefined) data.meta = state.meta
    const from = state.position
    if (from !== null) {
      data.epoch = from.epoch
      data.offset = from.offset
    }
    return await this.call(JOIN, data, timeoutMs, socket, (reply) => { this.joined(state, reply as JoinOutcome, from) }) as JoinOutcome
  }

  /**
   * A join reply, applied as it is read: the replayed and live messages that follow it in the same
   * read then advance the position from here (and reach the app after onJoin), instead of an awaited
   * continuation setting it back afterwards, which would replay them again on the next reconnect.
   */
  private joined (state: RoomState, outcome: JoinOutcome, from: { epoch: string, offset: number } | null): void {
    state.joinedOn = this.socket
    const resync = state.resync
    if (resync !== null) {
      resync.through = null
      if (resync.rejoining) {
        resync.rejoining = false
        resync.held = null
      }
    }
    // Recovered: the replay follows and advances from where the client stood. Otherwise the reply is
    // where it stands now.
    state.position = outcome.recovered === true && from !== null ? from : { epoch: outcome.epoch, offset: outcome.offset }
    for (const waiter of state.waiters.splice(0)) {
      clearTimeout(waiter.timer)
      waiter.resolve(outcome)
    }
    emit(this.joinListeners, outcome)
    if (outcome.recovered === false) this.resync(outcome.room, state, outcome)
    else if (resync !== null) resync.attempts = 0
  }

  private call (type: string, data: unknown, timeoutMs: number | undefined, socket?: WebSocketLike, onReply?: (data: unknown) => void): Promise<unknown> {
    if (this.stopped && this.currentState === 'closed') return Promise.reject(new RealtimeClientError('FST_RT_CLIENT_CLOSED', 'The client is closed'))
    const id = `c${++this.nextId}`
    return new Promise((resolve, reject) => {
      const timeout = timeoutMs ?? this.requestTimeoutMs
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new RealtimeClientError('FST_RT_CLIENT_REQUEST_TIMEOUT', `No reply to ${type} within ${timeout} ms`))
      }, timeout)
      this.pending.set(id, onReply === undefined ? { resolve, reject, timer } : { resolve, reject, timer, onReply })
      const text = envelope(type, data, id)
      try {
        if (socket !== undefined) socket.send(text)
        else this.transmit(text, id)
      } catch (error) {
        this.pending.delete(id)
        clearTimeout(timer)
        // eslint-disable-next-line prefer-promise-reject-errors -- whatever the socket threw, as it threw it
        reject(error as Error)
      }
    })
  }

  /** The socket to send on now, or null while the client is not open; throws FST_RT_CLIENT_CLOSED once it is closed for good. */
  private openSocket (): WebSocketLike | null {
    if (this.stopped && this.currentState === 'closed') throw new RealtimeClientError('FST_RT_CLIENT_CLOSED', 'The client is closed')
    const socket = this.socket
    return this.currentState === 'open' && socket !== null && socket.readyState === OPEN ? socket : null
  }

  /** Sends now (true) or queues (false). */
  private transmit (text: string, id?: string): boolean {
    const socket = this.openSocket()
    if (socket !== null) {
      socket.send(text)
      return true
    }
    this.expire(Date.now())
    if (this.queue.length >= this.queueMax) {
      if (this.overflow === 'reject') throw new RealtimeClientError('FST_RT_CLIENT_QUEUE_FULL', `The offline queue holds ${this.queueMax} messages already`)
      this.dropQueued(this.queue.shift() as Queued, new RealtimeClientError('FST_RT_CLIENT_QUEUE_FULL', 'Dropped from the full offline queue for a newer message'))
    }
    this.queue.push(id === undefined ? { text, at: Date.now() } : { text, at: Date.now(), id })
    return false
  }

  private expire (now: number): void {
    while (this.queue.length > 0 && now - (this.queue[0] as Queued).at > this.queueMaxAge) {
      this.dropQueued(this.queue.shift() as Queued, new RealtimeClientError('FST_RT_CLIENT_QUEUE_EXPIRED', `A queued message waited more than ${this.queueMaxAge} ms`))
    }
  }

  /** A dropped request fails at once; a dropped event is reported. */
  private dropQueued (queued: Queued, error: RealtimeClientError): void {
    const pending = queued.id === undefined ? undefined : this.pending.get(queued.id)
    if (pending === undefined) {
      this.report(error)
      return
    }
    this.pending.delete(queued.id as string)
    clearTimeout(pending.timer)
    pending.reject(error)
  }

  private flush (): void {
    this.expire(Date.now())
    const socket = this.socket as WebSocketLike
    for (const queued of this.queue.splice(0)) socket.send(queued.text)
  }

  /** The client stopped: joins waiting for a connection never get one. */
  private failJoinWaiters (): void {
    const closed = new RealtimeClientError('FST_RT_CLIENT_CLOSED', 'The client is closed')
    for (const state of this.rooms.values()) {
      for (const waiter of state.waiters.splice(0)) {
        clearTimeout(waiter.timer)
        waiter.reject(closed)
      }
    }
  }

  private failPending (error: RealtimeClientError): void {
    for (const pending of this.pending.values()) {
      clearTimeout(pending.timer)
      pending.reject(error)
    }
    this.pending.clear()
  }

  private clearTimers (): void {
    for (const timer of [this.livenessTimer, this.reconnectTimer, this.stableTimer]) if (timer !== null) clearTimeout(timer)
    this.livenessTimer = this.reconnectTimer = this.stableTimer = null
  }

  private setState (state: ClientState): void {
    if (state === this.currentState) return
    this.currentState = state
    emit(this.stateListeners, state)
  }

  private report (error: Error): void {
    emit(this.errorListeners, error)
  }
}

function add<T> (set: Set<T>, listener: T): () => void {
  set.add(listener)
  return () => { set.delete(listener) }
}

function emit<A> (set: Set<Listener<[A]>>, value: A): void {
  for (const listener of set) listener(value)
}

/** Drops a socket without waiting for a close handshake: `ws` can terminate; a browser closes in the background. */
function abandon (socket: WebSocketLike): void {
  const terminate = (socket as { terminate?: () => void }).terminate
  if (typeof terminate === 'function') terminate.call(socket)
  else socket.close()
}

function detach (socket: WebSocketLike): void {
  socket.onopen = socket.onmessage = socket.onclose = null
  // Not null: `ws` emits 'error' when a socket still connecting is closed, and an 'error' event
  // nobody listens to would be thrown out of the process.
  socket.onerror = ignoreError
}

function ignoreError (): void {}

function errorMessage (data: unknown): string {
  const message = (data as { message?: unknown } | null)?.message
  return typeof message === 'string' ? message : 'The server answered with an error'
}
