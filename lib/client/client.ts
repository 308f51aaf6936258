import type { ClientData, ClientType, Contract, PresenceMeta, ReplyData, ServerData, ServerType } from '../messages/contract.js'
import { AUTH, envelope, ERROR, JOIN_REPLY, LEAVE_REPLY, LOST, PONG, PRESENCE, type LostData, type PresenceData } from '../protocol.js'
import { check, clientSettings, type ClientOptions } from './options.js'
import { Requests, serverError } from './requests.js'
import type { SnapshotLoader, SnapshotPosition } from './resync.js'
import { Rooms, type JoinOutcome, type MessageMeta } from './rooms.js'
import { Transport, type ClientState, type CloseInfo } from './transport.js'

type Listener<A extends unknown[]> = (...args: A) => void

/**
 * A typed, reconnecting client for a contract route. `send` accepts only the contract's client
 * messages, `on` hands out its server messages, `request` returns the typed reply. It reconnects
 * with full-jitter backoff after reconnectable close codes, rejoins its rooms recovering from the
 * last offset it saw, and queues what is sent while it is away.
 */
export class RealtimeClient<C extends Contract> {
  private readonly transport: Transport
  private readonly requests: Requests
  private readonly rooms: Rooms
  private readonly handlers = new Map<string, Set<Listener<[unknown, MessageMeta]>>>()
  private readonly stateListeners = new Set<Listener<[ClientState]>>()
  private readonly joinListeners = new Set<Listener<[JoinOutcome]>>()
  private readonly lostListeners = new Set<Listener<[{ room: string, epoch: string, offset: number }]>>()
  private readonly presenceListeners = new Set<Listener<[unknown]>>()
  private readonly errorListeners = new Set<Listener<[Error]>>()
  private readonly closeListeners = new Set<Listener<[CloseInfo]>>()

  constructor (options: ClientOptions) {
    const settings = clientSettings(options)
    this.transport = new Transport(settings, {
      received: (raw) => { this.received(raw) },
      authenticate: async (token, socket) => await this.requests.call(AUTH, token, undefined, socket),
      ready: async (socket) => await this.rooms.rejoin(socket),
      lost: (error) => { this.requests.failAll(error) },
      stopped: () => { this.rooms.failWaiters() },
      failRequest: (id, error) => this.requests.fail(id, error),
      state: (state) => { emit(this.stateListeners, state) },
      close: (info) => { emit(this.closeListeners, info) },
      error: (error) => { emit(this.errorListeners, error) }
    })
    this.requests = new Requests(this.transport, settings.requestTimeoutMs)
    this.rooms = new Rooms(this.transport, this.requests, {
      deliver: (type, data, meta) => { this.dispatch(type, data, meta) },
      joined: (outcome) => { emit(this.joinListeners, outcome) },
      lost: (lost) => { emit(this.lostListeners, lost) },
      error: (error) => { emit(this.errorListeners, error) }
    }, settings.requestTimeoutMs)
    if (settings.autoConnect) this.transport.connect()
  }

  /** connecting, open, reconnecting or closed. */
  get state (): ClientState {
    return this.transport.state
  }

  /** The rooms this client is in (joined again after every reconnect). */
  get joinedRooms (): string[] {
    return this.rooms.names
  }

  /** Where each joined room stands, as last seen; what a rejoin recovers from. */
  position (room: string): { epoch: string, offset: number } | null {
    return this.rooms.position(room)
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
    if (options?.volatile === true) return this.transport.transmitVolatile(envelope(type, data))
    return this.transport.transmit(envelope(type, data))
  }

  /** Sends a request and resolves with its typed reply; rejects with a RealtimeClientError. */
  request<K extends ClientType<C>>(type: K, data: ClientData<C, K>, options?: { timeoutMs?: number }): Promise<ReplyData<C, K>> {
    return this.requests.call(type, data, options?.timeoutMs) as Promise<ReplyData<C, K>>
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
  join (room: string, options?: { meta?: PresenceMeta<C>, from?: SnapshotPosition, snapshot?: SnapshotLoader, timeoutMs?: number }): Promise<JoinOutcome> {
    return this.rooms.join(room, options)
  }

  leave (room: string, options?: { timeoutMs?: number }): Promise<void> {
    return this.rooms.leave(room, options?.timeoutMs)
  }

  /** Connects (again) if not connected; done at construction unless autoConnect is false. */
  connect (): void {
    this.transport.connect()
  }

  /** Closes for good: no more reconnects; pending requests and queued messages fail. */
  close (code = 1000, reason = ''): void {
    this.transport.close(code, reason)
  }

  // ---- receiving ----

  private received (raw: unknown): void {
    if (typeof raw !== 'string') return
    let message: { type?: unknown, data?: unknown, id?: unknown, room?: unknown, epoch?: unknown, offset?: unknown }
    try {
      message = JSON.parse(raw) as typeof message
    } catch {
      return
    }
    const type = message.type
    if (typeof type !== 'string') return
    if (message.id !== undefined && this.requests.settle(String(message.id), type, message.data)) return
    if (type === ERROR) {
      emit(this.errorListeners, serverError(message.data))
      return
    }
    if (type === PRESENCE) {
      emit(this.presenceListeners, message.data)
      return
    }
    if (type === LOST) {
      this.rooms.lost(message.data as LostData)
      return
    }
    if (type === PONG || type === JOIN_REPLY || type === LEAVE_REPLY) return
    if (typeof message.room === 'string') {
      this.rooms.received({ type, data: message.data, room: message.room, epoch: message.epoch as string, offset: message.offset as number })
      return
    }
    this.dispatch(type, message.data, {})
  }

  private dispatch (type: string, data: unknown, meta: MessageMeta): void {
    const set = this.handlers.get(type)
    if (set !== undefined) for (const listener of set) listener(data, meta)
  }
}

function add<T> (set: Set<T>, listener: T): () => void {
  set.add(listener)
  return () => { set.delete(listener) }
}

function emit<A> (set: Set<Listener<[A]>>, value: A): void {
  for (const listener of set) listener(value)
}
