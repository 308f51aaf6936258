import type { FastifyBaseLogger } from 'fastify'
import { CloseCode } from '../close-codes.js'
import type { RealtimeMetrics } from '../metrics.js'
import { errors } from '../errors.js'
import { check } from '../options/server-checks.js'
import { lostNotice, presenceNotice } from '../protocol.js'
import type { Broker, HistoryPage, Position, RoomMessage } from './broker.js'
import type { PresenceEntry, PresenceStore } from './presence.js'
import { floorAt, passFloor } from './floor.js'
import { recover } from './recovery.js'
import { SharedMessage, type Member } from './member.js'
import { isVolatile, volatileBody } from './volatile.js'
import { readRange, type HistoryRange } from './history-query.js'

export interface HubSettings {
  /** Longest room name, in characters. @default 128 */
  readonly maxRoomNameLength: number
  /** A member whose unsent bytes exceed this is closed with 4008 (slow consumer, reconnectable). @default 1048576 */
  readonly slowConsumerBytes: number
  /** Rooms one connection may be in at once (its route's and its user's rooms do not count); one more is FST_RT_TOO_MANY_ROOMS. @default 100 */
  readonly maxRoomsPerConnection: number
  /** Rooms with members on this instance at once (internal rooms do not count); one more is FST_RT_TOO_MANY_ROOMS. @default 100000 */
  readonly maxRooms: number
}

export const defaultHubSettings: HubSettings = Object.freeze({ maxRoomNameLength: 128, slowConsumerBytes: 1024 * 1024, maxRoomsPerConnection: 100, maxRooms: 100_000 })

/** The close code for a member that cannot keep up: in the reconnect range. */
export const SLOW_CONSUMER_CLOSE = CloseCode.SLOW_CONSUMER

export interface JoinOptions {
  /** Shown in presence; must be JSON. */
  meta?: unknown
  /** The client's last position: with it, every message it missed is replayed (or it is told it cannot be). */
  recover?: { epoch: string, offset: number }
  /** Publish a `$presence` join notice to the room. @default false */
  notice?: boolean
  /** Runs once the member is in the room and before anything is replayed or delivered (the join reply goes here). */
  beforeDelivery?: (result: JoinResult) => Promise<void>
}

export interface JoinResult {
  readonly room: string
  readonly epoch: string
  /** Where the room stood when the member joined: messages after it are delivered live. */
  readonly offset: number
  /** Present when recovery was asked for: true if every missed message follows, false if the client must reload. */
  readonly recovered?: boolean
}

export interface HubStats {
  published: number
  delivered: number
  slowConsumerCloses: number
  lostNotices: number
  /** Volatile messages not delivered to a member that could not take them at once. */
  volatileDropped: number
}

/** How a message is sent: `volatile` ones are not stored, take no offset and are dropped, never queued, for a member that cannot take them now. */
export interface RoomSendOptions {
  /** @default false */
  volatile?: boolean
}

const INTERNAL_PREFIX = '$'
/** Longest user id `toUser` and `disconnect` take (the user's room name is made of it). */
const MAX_USER_ID_LENGTH = 1024

/** A route's, a user's or the control room: no presence, history or client joins. */
export function isInternal (room: string): boolean {
  return room.startsWith(INTERNAL_PREFIX)
}

/** Throws FST_RT_CONNECTION_CLOSED once the member's connection is closing: a join must not outlive it. */
function stillOpen (member: Member): void {
  if (member.connection.closed) throw new errors.FST_RT_CONNECTION_CLOSED('join a room')
}
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/

function notice (room: string, event: 'join' | 'leave', member: Member, meta: unknown): string {
  return presenceNotice({ room, event, connectionId: member.id, userId: member.userId, meta })
}

/**
 * Rooms on top of a broker: who is in which room on this instance (a reverse index both ways),
 * a broker subscription per room only while it has local members, and fan-out of each published
 * message (one string) to the local members, bounded per member by the slow-consumer rule.
 */
export class Hub {
  readonly stats: HubStats = { published: 0, delivered: 0, slowConsumerCloses: 0, lostNotices: 0, volatileDropped: 0 }
  private readonly local = new Map<string, Set<Member>>()
  /** Rooms in `local` that are not internal: what maxRooms bounds. */
  private appRooms = 0
  /** Per room with local members: settles once the broker subscription is live, for every joiner to wait on. */
  private readonly subscriptions = new Map<string, Promise<void>>()
  /** Subscribe and unsubscribe calls per room, in order, so a quick leave and join cannot cross. */
  private readonly transitions = new Map<string, Promise<void>>()
  /** Internal rooms whose messages are for this instance, not its members: each one's reader. */
  private readonly readers = new Map<string, (text: string) => void>()

  constructor (
    readonly broker: Broker, readonly settings: HubSettings, private readonly log: FastifyBaseLogger, readonly metrics: RealtimeMetrics,
    /** Who is in which room (the plugin's `presence` option). */
    readonly presenceStore: PresenceStore
  ) {
    broker.attach({
      message: (message) => {
        const read = this.readers.get(message.room)
        if (read !== undefined) read(message.text)
        else this.fanOut(message)
      },
      lost: (room, position) => { this.onLost(room, position) },
      error: (error) => { this.log.warn({ err: error }, 'realtime: broker error (it retries by itself)') }
    })
  }

  /** Throws FST_RT_INVALID_ROOM unless `room` is a name apps and clients may use. */
  checkRoom (room: unknown): string {
    if (typeof room !== 'string' || room.length === 0) throw new errors.FST_RT_INVALID_ROOM('expected a non-empty string')
    if (room.length > this.settings.maxRoomNameLength) {
      throw new errors.FST_RT_INVALID_ROOM(`longer than ${this.settings.maxRoomNameLength} characters`)
    }
    if (room.startsWith(INTERNAL_PREFIX)) throw new errors.FST_RT_INVALID_ROOM(`names starting with "${INTERNAL_PREFIX}" are reserved`)
    if (CONTROL.test(room)) throw new errors.FST_RT_INVALID_ROOM('control characters are not allowed')
    return room
  }

  /** Throws FST_RT_INVALID_USER_ID unless `userId` is a user id `toUser` can address. */
  checkUser (userId: unknown): string {
    if (typeof userId !== 'string' || userId.length === 0 || userId.length > MAX_USER_ID_LENGTH) {
      throw new errors.FST_RT_INVALID_USER_ID(`expected a non-empty string of at most ${MAX_USER_ID_LENGTH} characters`)
    }
    return userId
  }

  /** Throws FST_RT_INVALID_OPTION unless `options` is `{ volatile?: boolean }` or undefined. */
  static sendOptions (options: unknown): RoomSendOptions {
    if (options === undefined) return {}
    const { volatile } = check.object('send options', options, ['volatile'], 'an object { volatile?: boolean }')
    return volatile === undefined ? {} : { volatile: check.boolean('volatile', volatile) }
  }

  /** The internal room of every connection of one user. */
  static userRoom (userId: string): string {
    return `${INTERNAL_PREFIX}user:${userId}`
  }

  /** The internal room of every connection of one route. */
  static routeRoom (url: string): string {
    return `${INTERNAL_PREFIX}route:${url}`
  }

  private transition (room: string, step: () => Promise<void>): Promise<void> {
    const next = (this.transitions.get(room) ?? Promise.resolve()).then(step)
    const settled = next.catch(() => {})
    this.transitions.set(room, settled)
    void settled.then(() => { if (this.transitions.get(room) === settled) this.transitions.delete(room) })
    return next
  }

  /**
   * Puts a member in an internal room (the registry's: its route's, its user's, the control room): no presence, history or replay, so
   * no position to read; it resolves once the room's subscription is live. One per connection, so kept
   * cheap. `join` starts with it too.
   */
  enterInternal (member: Member, room: string): Promise<void> {
    member.rooms.add(room)
    let members = this.local.get(room)
    if (members === undefined) {
      members = new Set()
      this.local.set(room, members)
      if (!isInternal(room)) this.appRooms++
      this.subscriptions.set(room, this.transition(room, () => this.broker.subscribe(room)))
    }
    members.add(member)
    return this.subscriptions.get(room) as Promise<void>
  }

  /**
   * Hands the messages of an internal room to `read` instead of its members: commands to this
   * instance (the registry's control room), which its members still hold the subscription of.
   */
  readBy (room: string, read: (text: string) => void): void {
    this.readers.set(room, read)
  }

  /** This instance's members of a room, as they are now. */
  members (room: string): Iterable<Member> {
    return this.local.get(room) ?? []
  }

  /**
   * Throws FST_RT_TOO_MANY_ROOMS if `member` could not join one more room: it is in
   * maxRoomsPerConnection rooms, or the room is new here and this instance has maxRooms.
   */
  checkCapacity (member: Member, room: string): void {
    if (member.rooms.has(room)) return
    let joined = 0
    for (const name of member.rooms) if (!isInternal(name)) joined++
    const { maxRoomsPerConnection, maxRooms } = this.settings
    if (joined >= maxRoomsPerConnection) throw new errors.FST_RT_TOO_MANY_ROOMS(`this connection is in ${maxRoomsPerConnection} rooms, the most maxRoomsPerConnection allows`)
    if (this.appRooms >= maxRooms && !this.local.has(room)) throw new errors.FST_RT_TOO_MANY_ROOMS(`this server has members in ${maxRooms} rooms, the most maxRooms allows`)
  }

  /**
   * Adds the member to an app room, checked first. A member whose connection closes meanwhile is
   * taken out again (presence included) and the join rejects with FST_RT_CONNECTION_CLOSED.
   */
  async join (member: Member, room: string, options: JoinOptions = {}): Promise<JoinResult> {
    this.checkRoom(room)
    stillOpen(member)
    if (member.rooms.has(room)) {
      const position = await this.broker.position(room)
      const result: JoinResult = { room, epoch: position.epoch, offset: position.offset }
      await options.beforeDelivery?.(result)
      return result
    }
    this.checkCapacity(member, room)
    const pending = member.pending ??= new Map()
    pending.set(room, [])
    const subscribed = this.enterInternal(member, room)
    try {
      // Also when another member started the subscription: a position read before it is live could miss messages.
      await subscribed
      stillOpen(member)
      await this.presenceStore.add(room, { connectionId: member.id, userId: member.userId, meta: options.meta ?? null, joinedAt: Date.now() })
      stillOpen(member)
      const recovery = options.recover === undefined ? null : await recover(this.broker, room, options.recover.epoch, options.recover.offset)
      const position: Position = recovery?.position ?? await this.broker.position(room)
      const result: JoinResult = recovery === null
        ? { room, epoch: position.epoch, offset: position.offset }
        : { room, epoch: position.epoch, offset: position.offset, recovered: recovery.recovered }
      stillOpen(member)
      await options.beforeDelivery?.(result)
      // The replay, then what arrived meanwhile and is newer than the replay.
      for (const message of recovery?.messages ?? []) this.deliver(member, new SharedMessage(message.text))
      // What is at or before the reported offset was replayed or belongs to the past the client
      // loads itself: the floor keeps it out now, and also when a late copy of it arrives later.
      const floor = floorAt(position)
      member.floors ??= new Map()
      member.floors.set(room, floor)
      const waiting = pending.get(room) ?? []
      pending.delete(room)
      for (const message of waiting) {
        if (passFloor(floor, message)) this.deliver(member, new SharedMessage(message.text), isVolatile(message))
      }
      if (options.notice === true) {
        stillOpen(member)
        member.announced ??= new Set()
        member.announced.add(room)
        await this.broker.publish(room, notice(room, 'join', member, options.meta ?? null), { history: false })
      }
      return result
    } catch (error) {
      pending.delete(room)
      // Out of the room; if the disconnect took it out first, the presence entry added since goes too.
      if (!await this.leave(member, room)) await this.presenceStore.remove(room, member.id)
      throw error
    }
  }

  /** Removes the member from a room; false if it was not in it. A room that announced the join announces the leave. */
  async leave (member: Member, room: string, options: { notice?: boolean } = {}): Promise<boolean> {
    if (!member.rooms.delete(room)) return false
    member.pending?.delete(room)
    member.floors?.delete(room)
    const wasAnnounced = member.announced?.delete(room) === true
    const announce = options.notice ?? wasAnnounced
    const members = this.local.get(room)
    members?.delete(member)
    if (members !== undefined && members.size === 0) {
      this.local.delete(room)
      if (!isInternal(room)) this.appRooms--
      this.subscriptions.delete(room)
      await this.transition(room, async () => {
        // Someone may have joined while the unsubscribe waited its turn.
        if (!this.local.has(room)) await this.broker.unsubscribe(room)
      })
    }
    if (!isInternal(room)) {
      await this.presenceStore.remove(room, member.id)
      if (announce) await this.broker.publish(room, notice(room, 'leave', member, null), { history: false })
    }
    return true
  }

  /** Takes a closed connection out of every room, announcing the leave where the join was announced. */
  async remove (member: Member): Promise<void> {
    for (const room of [...member.rooms]) {
      try {
        await this.leave(member, room)
      } catch (error) {
        this.log.warn({ err: error, room }, 'realtime: leaving a room on disconnect failed')
      }
    }
  }

  /** One room or several, each checked (FST_RT_INVALID_ROOM), before anything is serialized or sent. */
  checkRooms (rooms: string | readonly string[]): readonly string[] {
    const list = typeof rooms === 'string' ? [rooms] : rooms
    for (const room of list) this.checkRoom(room)
    return list
  }

  /** Publishes one serialized body to each room (from checkRooms); a volatile one unstored and marked. */
  async publishAll (rooms: readonly string[], body: string, options: { except?: string } & RoomSendOptions = {}): Promise<void> {
    const volatile = options.volatile === true
    const text = volatile ? volatileBody(body) : body
    const publish = options.except === undefined ? { history: !volatile } : { history: !volatile, except: options.except }
    for (const room of rooms) await this.publish(room, text, publish)
  }

  /** Sends to every connection of a user, on every instance (not kept in history). */
  async toUser (userId: string, body: string, options?: RoomSendOptions): Promise<void> {
    const room = Hub.userRoom(this.checkUser(userId))
    await this.publish(room, Hub.sendOptions(options).volatile === true ? volatileBody(body) : body, { history: false })
  }

  /** Sends to every connection of a route, on every instance (not kept in history). */
  async toRoute (url: string, body: string, options?: RoomSendOptions): Promise<void> {
    await this.publish(Hub.routeRoom(url), Hub.sendOptions(options).volatile === true ? volatileBody(body) : body, { history: false })
  }

  /** Publishes a serialized `{ type, data }` body to a room on every instance. */
  async publish (room: string, body: string, options: { except?: string, history?: boolean } = {}): Promise<RoomMessage> {
    const message = await this.broker.publish(room, body, options)
    this.stats.published++
    return message
  }

  /** A range of the room's kept messages (see HistoryRange), with its position. */
  async history (room: string, range?: HistoryRange): Promise<HistoryPage> {
    return await readRange(this.broker, this.checkRoom(room), range)
  }

  /** The room's position: where a client that loaded the room up to now goes on from. */
  async position (room: string): Promise<Position> {
    return await this.broker.position(this.checkRoom(room))
  }

  async presence (room: string): Promise<PresenceEntry[]> {
    return await this.presenceStore.list(this.checkRoom(room))
  }

  async presenceCount (room: string): Promise<number> {
    return await this.presenceStore.count(this.checkRoom(room))
  }

  private fanOut (message: RoomMessage): void {
    const members = this.local.get(message.room)
    if (members === undefined) return
    const shared = new SharedMessage(message.text)
    const volatile = isVolatile(message)
    for (const member of members) {
      if (member.id === message.except) continue
      const waiting = member.pending?.get(message.room)
      if (waiting !== undefined) waiting.push(message)
      else if (passFloor(member.floors?.get(message.room), message)) this.deliverGuarded(member, shared, volatile)
    }
  }

  /**
   * Delivery from the broker's events (a message, a loss), outside any member's own request: a
   * failure no rule foresaw closes that member with 1011, logged with its request id; the others
   * still get the message.
   */
  private deliverGuarded (member: Member, message: SharedMessage, volatile = false): void {
    try {
      this.deliver(member, message, volatile)
    } catch (error) {
      const connection = member.connection
      connection.request.log.error({ err: error, connectionId: member.id }, 'realtime: unexpected failure delivering a room message; closing the connection with 1011')
      this.metrics.internalErrors++
      void connection.close({ code: CloseCode.INTERNAL_ERROR, reason: 'Internal error' })
    }
  }

  private deliver (member: Member, message: SharedMessage, volatile = false): void {
    const connection = member.connection
    if (connection.closed) return
    // A volatile message is worth nothing late: a member with anything unsent goes without it.
    if (volatile) {
      if (connection.backlog > 0 || !connection.sendShared(message, true)) this.stats.volatileDropped++
      else this.stats.delivered++
      return
    }
    // A member that cannot keep up is closed rather than buffered without bound; it may reconnect and recover.
    if (connection.backlog > this.settings.slowConsumerBytes) {
      this.stats.slowConsumerCloses++
      this.metrics.slowConsumerCloses++
      this.log.info({ connectionId: member.id, backlog: connection.backlog }, 'realtime: closing a slow consumer')
      void connection.close({ code: SLOW_CONSUMER_CLOSE, reason: 'Slow consumer' })
      return
    }
    this.stats.delivered++
    // One SharedMessage per fan-out: the connection layer encodes it once for every member.
    connection.sendShared(message)
  }

  private onLost (room: string, position: Position): void {
    // Internal rooms keep no history, so there is nothing a client could reload for them.
    if (isInternal(room)) return
    const members = this.local.get(room)
    if (members === undefined) return
    const shared = new SharedMessage(lostNotice({ room, epoch: position.epoch, offset: position.offset }))
    for (const member of members) {
      this.stats.lostNotices++
      // Delivery goes on after the reported position; what is below it the member reloads.
      if (member.pending?.has(room) !== true) {
        member.floors ??= new Map()
        member.floors.set(room, floorAt(position))
      }
      this.deliverGuarded(member, shared)
    }
  }
}
