import { randomUUID } from 'node:crypto'
import {
  roomEnvelope, wholeQueryNumber, type Broker, type BrokerEvents, type HistoryLimits, type HistoryPage, type HistoryQuery,
  type Position, type PublishOptions, type RoomMessage
} from './broker.js'
import { errors } from '../errors.js'
import { historyLimits } from '../options/history.js'
import { optionalInteger } from '../options/server-checks.js'
import { OrderedDelivery } from './ordered-delivery.js'

interface Room {
  epoch: string
  offset: number
  /** Retained messages, oldest first. */
  history: RoomMessage[]
  subscribed: boolean
  /** The room's epoch and offset are kept until then (ttlMs after its last message), as on Redis. */
  keepUntil: number
}

export interface MemoryBrokerOptions {
  history?: Partial<HistoryLimits>
  /**
   * Rooms kept at once. A room stays for `history.ttlMs` after its last message, also once empty,
   * so that its epoch and history serve recovery; past this many, creating one drops the oldest room
   * with no subscription (the hub subscribes while a room has members here) (a client recovering from it then gets `recovered: false`).
   * When every room is in use, the new one is refused with FST_RT_TOO_MANY_ROOMS.
   * @default 200000
   */
  maxRooms?: number
}

/**
 * The default broker: one process, nothing to set up. Epochs are random per process, so after a
 * restart every client's recovery correctly answers `recovered: false`. Publishing and storing are
 * one synchronous step, so history and offsets are atomic per room; delivery goes through
 * OrderedDelivery like every broker's (in one process nothing is ever skipped). Presence is the
 * plugin's default MemoryPresence: this broker offers no store of its own.
 */
export class MemoryBroker implements Broker {
  private readonly rooms = new Map<string, Room>()
  private readonly limits: HistoryLimits
  private readonly maxRooms: number
  private readonly delivery = new OrderedDelivery((room, query) => this.history(room, query))
  private lastSweep = Date.now()

  constructor (options: MemoryBrokerOptions = {}) {
    this.limits = historyLimits('history', options.history)
    this.maxRooms = optionalInteger('maxRooms', options.maxRooms, 1, Number.MAX_SAFE_INTEGER, 200_000)
  }

  attach (events: BrokerEvents): void {
    this.delivery.attach(events)
  }

  private room (name: string, now: number): Room {
    this.sweep(now)
    let room = this.rooms.get(name)
    if (room === undefined) {
      if (this.rooms.size >= this.maxRooms && !this.dropIdleRoom()) {
        throw new errors.FST_RT_TOO_MANY_ROOMS(`the memory broker keeps ${this.maxRooms} rooms, the most its maxRooms allows, and each has members`)
      }
      room = { epoch: randomUUID(), offset: 0, history: [], subscribed: false, keepUntil: now + this.limits.ttlMs }
      this.rooms.set(name, room)
    }
    return room
  }

  /** Drops the oldest room with no subscription; rooms in use move to the back, so each is passed over once. */
  private dropIdleRoom (): boolean {
    for (let left = this.rooms.size; left > 0; left--) {
      const [name, room] = this.rooms.entries().next().value as [string, Room]
      this.rooms.delete(name)
      if (!room.subscribed) return true
      this.rooms.set(name, room)
    }
    return false
  }

  /** Now and then, every room is trimmed, so rooms nobody touches again are dropped too. */
  private sweep (now: number): void {
    if (now - this.lastSweep < Math.min(this.limits.ttlMs, 60_000)) return
    this.lastSweep = now
    for (const [name, room] of this.rooms) this.trim(name, room, now)
  }

  /** Drops what is over the size or past the age, and a room nobody uses any more. */
  private trim (name: string, room: Room, now: number): void {
    const history = room.history
    const minTime = now - this.limits.ttlMs
    let drop = Math.max(0, history.length - this.limits.size)
    while (drop < history.length && (history[drop] as RoomMessage).time <= minTime) drop++
    if (drop > 0) history.splice(0, drop)
    // A room recreated later gets a new epoch, which tells clients its history is gone: correct, and bounded.
    if (history.length === 0 && !room.subscribed && now >= room.keepUntil) this.rooms.delete(name)
  }

  async publish (name: string, body: string, options?: PublishOptions): Promise<RoomMessage> {
    const now = Date.now()
    const room = this.room(name, now)
    const stored = options?.history !== false
    const offset = stored ? ++room.offset : room.offset
    room.keepUntil = now + this.limits.ttlMs
    const text = roomEnvelope(body, name, room.epoch, offset)
    const message: RoomMessage = stored ? { room: name, epoch: room.epoch, offset, time: now, text } : { room: name, epoch: room.epoch, offset, time: now, text, history: false }
    if (stored) {
      room.history.push(message)
      this.trim(name, room, now)
    }
    if (room.subscribed) this.delivery.receive(options?.except === undefined ? message : { ...message, except: options.except })
    return message
  }

  async subscribe (name: string): Promise<void> {
    this.room(name, Date.now()).subscribed = true
    await this.delivery.follow(name, listening, () => this.unsubscribe(name))
  }

  async unsubscribe (name: string): Promise<void> {
    this.delivery.unfollow(name)
    const room = this.rooms.get(name)
    if (room === undefined) return
    room.subscribed = false
    this.trim(name, room, Date.now())
  }

  async position (name: string): Promise<Position> {
    const room = this.room(name, Date.now())
    return { epoch: room.epoch, offset: room.offset }
  }

  async history (name: string, query: HistoryQuery = {}): Promise<HistoryPage> {
    const now = Date.now()
    const room = this.room(name, now)
    this.trim(name, room, now)
    const since = wholeQueryNumber(query.since ?? 0)
    const after = query.limit === 0 ? [] : room.history.filter((message) => message.offset > since)
    const messages = query.limit === undefined ? after : after.slice(0, wholeQueryNumber(query.limit))
    return { position: { epoch: room.epoch, offset: room.offset }, messages }
  }

  async close (): Promise<void> {
    this.delivery.clear()
    this.rooms.clear()
  }
}

/** In one process there is no transport to start: delivery follows a room as soon as it is subscribed. */
async function listening (): Promise<void> {}
