import { JOIN, LEAVE, type LostData } from '../protocol.js'
import { RealtimeClientError } from './errors.js'
import { check } from './options.js'
import type { Requests } from './requests.js'
import { MAX_RESYNCS, RoomResync, snapshotPosition, type HeldMessage, type SnapshotLoader, type SnapshotPosition } from './resync.js'
import type { WebSocketLike } from './socket.js'
import type { Transport } from './transport.js'

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

/** What the rooms hand to the app. */
export interface RoomEvents {
  /** A room message, after its position is kept. */
  deliver (type: string, data: unknown, meta: MessageMeta): void
  joined (outcome: JoinOutcome): void
  lost (lost: LostData): void
  error (error: Error): void
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

/**
 * The rooms a client is in: joined once per connection, recovering from the last position seen, and
 * with a snapshot loader re-synced when they cannot be recovered.
 */
export class Rooms {
  private readonly rooms = new Map<string, RoomState>()

  constructor (
    private readonly transport: Transport,
    private readonly requests: Requests,
    private readonly events: RoomEvents,
    private readonly timeoutMs: number
  ) {}

  get names (): string[] {
    return [...this.rooms.keys()]
  }

  position (room: string): { epoch: string, offset: number } | null {
    return this.rooms.get(room)?.position ?? null
  }

  async join (room: string, options?: { meta?: unknown, from?: SnapshotPosition, snapshot?: SnapshotLoader, timeoutMs?: number }): Promise<JoinOutcome> {
    if (this.transport.closed) throw new RealtimeClientError('FST_RT_CLIENT_CLOSED', 'The client is closed')
    if (options?.snapshot !== undefined) check.func('snapshot', options.snapshot, 'a function () => Promise<{ epoch, offset }>')
    const state: RoomState = this.rooms.get(room) ?? { meta: undefined, position: null, resync: null, joinedOn: null, waiters: [] }
    if (options?.meta !== undefined) state.meta = options.meta
    if (options?.from !== undefined) state.position = { epoch: options.from.epoch, offset: options.from.offset }
    if (options?.snapshot !== undefined) {
      state.resync = new RoomResync(options.snapshot)
      state.position = snapshotPosition(await options.snapshot())
    }
    this.rooms.set(room, state)
    if (this.transport.state === 'open') return await this.joinRoom(room, state, options?.timeoutMs)
    const timeout = options?.timeoutMs ?? this.timeoutMs
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

  async leave (room: string, timeoutMs?: number): Promise<void> {
    if (!this.rooms.delete(room)) return
    if (this.transport.state === 'open') await this.requests.call(LEAVE, { room }, timeoutMs)
  }

  /**
   * Joins every room not joined on this socket yet (those added meanwhile too). False if the socket
   * was replaced while the joins were out.
   */
  async rejoin (socket: WebSocketLike): Promise<boolean> {
    for (;;) {
      const rejoin = [...this.rooms].filter(([, state]) => state.joinedOn !== socket)
      if (rejoin.length === 0) return true
      const results = await Promise.allSettled(rejoin.map(([room, state]) => this.joinRoom(room, state, undefined, socket)))
      if (socket !== this.transport.socket) return false
      for (const [index, result] of results.entries()) {
        if (result.status === 'rejected') {
          // A refused rejoin (say, no longer authorized) leaves the room rather than retrying forever.
          const [room, state] = rejoin[index] as [string, RoomState]
          this.rooms.delete(room)
          for (const waiter of state.waiters.splice(0)) { clearTimeout(waiter.timer); waiter.reject(result.reason as Error) }
          this.events.error(result.reason as Error)
        }
      }
    }
  }

  /** The client stopped: joins waiting for a connection never get one. */
  failWaiters (): void {
    const closed = new RealtimeClientError('FST_RT_CLIENT_CLOSED', 'The client is closed')
    for (const state of this.rooms.values()) {
      for (const waiter of state.waiters.splice(0)) {
        clearTimeout(waiter.timer)
        waiter.reject(closed)
      }
    }
  }

  /** The server lost messages of a room: the room stands at the `$lost` position, and re-syncs with a loader. */
  lost (lost: LostData): void {
    const state = this.rooms.get(lost.room)
    if (state !== undefined) state.position = { epoch: lost.epoch, offset: lost.offset }
    this.events.lost(lost)
    if (state !== undefined) this.resync(lost.room, state, lost)
  }

  /** A room message: held while its room re-syncs, else delivered. */
  received (message: HeldMessage): void {
    if (this.rooms.get(message.room)?.resync?.hold(message) === true) return
    this.deliver(message)
  }

  /** A room message to the app, after its position is kept. */
  private deliver (message: HeldMessage): void {
    this.advance(message.room, message.epoch, message.offset)
    this.events.deliver(message.type, message.data, { room: message.room, epoch: message.epoch, offset: message.offset })
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
      this.events.error(error as Error)
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
      this.events.error(new RealtimeClientError('FST_RT_CLIENT_RESYNC_FAILED', `${room} could not be re-synced after ${MAX_RESYNCS} reloads; it stays joined live`))
      for (const message of held) this.deliver(message)
      return
    }
    // Behind the live stream or from another epoch: leave, and join again from the snapshot, which
    // replays what follows it; what arrives until the join reply is dropped.
    state.position = snapshot
    const socket = this.transport.socket
    // The connection dropped while the app reloaded: the rejoin after the reconnect starts from the snapshot.
    /* c8 ignore next */
    if (socket === null || state.joinedOn !== socket) return
    resync.held = []
    resync.rejoining = true
    this.requests.call(LEAVE, { room }, undefined, socket)
      .then(async () => { if (this.rooms.get(room) === state) await this.joinRoom(room, state, undefined, socket) })
      .catch((error: unknown) => { this.events.error(error as Error) })
  }

  /** Keeps the newest position seen per joined room: what a rejoin recovers from. */
  private advance (room: string, epoch: string, offset: number): void {
    const state = this.rooms.get(room)
    if (state === undefined) return
    if (state.position === null || state.position.epoch !== epoch || offset > state.position.offset) {
      state.position = { epoch, offset }
    }
  }

  private async joinRoom (room: string, state: RoomState, timeoutMs?: number, socket?: WebSocketLike): Promise<JoinOutcome> {
    const data: Record<string, unknown> = { room }
    if (state.meta !== undefined) data.meta = state.meta
    const from = state.position
    if (from !== null) {
      data.epoch = from.epoch
      data.offset = from.offset
    }
    return await this.requests.call(JOIN, data, timeoutMs, socket, (reply) => { this.joined(state, reply as JoinOutcome, from) }) as JoinOutcome
  }

  /**
   * A join reply, applied as it is read: the replayed and live messages that follow it in the same
   * read then advance the position from here (and reach the app after onJoin), instead of an awaited
   * continuation setting it back afterwards, which would replay them again on the next reconnect.
   */
  private joined (state: RoomState, outcome: JoinOutcome, from: { epoch: string, offset: number } | null): void {
    state.joinedOn = this.transport.socket
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
    this.events.joined(outcome)
    if (outcome.recovered === false) this.resync(outcome.room, state, outcome)
    else if (resync !== null) resync.attempts = 0
  }
}
