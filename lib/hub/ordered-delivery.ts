import type { BrokerEvents, HistoryPage, HistoryQuery, RoomMessage } from './broker.js'
import { replayable } from './recovery.js'

/**
 * Reads a room for a catch-up: its position and its kept messages after `query.since`, oldest
 * first, as `Broker.history()` does; a broker whose history drops `except` should keep it here, so
 * that a caught-up message still skips its sender. `{ limit: 0 }` asks for the position only.
 */
export type ReadRoom = (room: string, query: HistoryQuery) => Promise<HistoryPage>

/** A room being followed, and where its delivery stands. */
interface Followed {
  readonly room: string
  /** Resolves once the transport listens and the starting position is known. */
  ready: Promise<void>
  /** null until the starting position is read. */
  epoch: string | null
  /** The offset of the last message delivered (or passed over as before the start, or reported lost). */
  last: number
  /** While a catch-up runs, messages wait here; null otherwise. */
  waiting: RoomMessage[] | null
  /** The catch-up under way. */
  running: Promise<void> | null
  /** The last catch-up failed, or the transport reconnected: the next message catches up first. */
  stale: boolean
  active: boolean
}

function ignore (): void {}

/**
 * Delivers each followed room's messages once and in offset order, whatever order and gaps the
 * transport has (rule order-after-gap): a message after a gap waits while the gap is read from the
 * history; when the history no longer holds it, `lost` is reported and delivery goes on from the
 * room's position. Written once for every broker: MemoryBroker (whose transport never skips) and
 * RedisBroker (whose pub/sub does, on a reconnect) both deliver through it, and so can yours.
 *
 * A broker calls `follow()` from `subscribe()`, `unfollow()` from `unsubscribe()`, `receive()` for
 * each message its transport brings, and `resume()` when its transport reconnected.
 */
export class OrderedDelivery {
  private events: BrokerEvents = { message: ignore, lost: ignore }
  private readonly rooms = new Map<string, Followed>()
  /** Catch-ups in the background report to events.error; each is retried with the room's next message. */
  private readonly report = (error: Error): void => { this.events.error?.(error) }

  constructor (private readonly read: ReadRoom) {}

  /** Where messages, losses and the failures of background catch-ups go: the broker's `attach()` passes its events on. */
  attach (events: BrokerEvents): void {
    this.events = events
  }

  /**
   * Follows a room: `listen()` starts the transport's subscription, then the room's position is
   * read and every message after it is delivered. Following a room again joins the first call. If
   * either step fails, the room is not followed and, unless `unfollow()` came first, `undo()` (the
   * broker's unsubscribe) runs before the returned promise rejects.
   */
  follow (room: string, listen: () => Promise<void>, undo: () => Promise<void>): Promise<void> {
    const existing = this.rooms.get(room)
    if (existing !== undefined) return existing.ready
    const followed: Followed = { room, ready: Promise.resolve(), epoch: null, last: 0, waiting: [], running: null, stale: false, active: true }
    this.rooms.set(room, followed)
    followed.ready = (async () => {
      try {
        await listen()
        // The starting position, read once the transport listens: everything after it is delivered.
        await this.catchUp(followed)
      } catch (error) {
        if (followed.active) await undo()
        throw error
      }
    })()
    return followed.ready
  }

  /** Stops following a room; false if it was not followed. Whatever still arrives, or waits, goes nowhere. */
  unfollow (room: string): boolean {
    const followed = this.rooms.get(room)
    if (followed === undefined) return false
    followed.active = false
    followed.waiting = []
    this.rooms.delete(room)
    return true
  }

  /** A message from the transport; one of a room not followed (say, just unfollowed) is dropped. */
  receive (message: RoomMessage): void {
    const followed = this.rooms.get(message.room)
    if (followed !== undefined) this.accept(followed, message)
  }

  /**
   * After the transport reconnected (or, given `rooms`, after those rooms' subscriptions moved, as
   * on a Redis Cluster slot move or failover): each room is marked stale before anything arrives on
   * the new subscription (a message that comes in before the catch-up starts must not be delivered
   * ahead of the ones it missed), `listen()` subscribes them again, then each catches up. Rooms not
   * followed are left out.
   */
  async resume (listen: (rooms: string[]) => Promise<void>, rooms?: Iterable<string>): Promise<void> {
    const all: Followed[] = []
    if (rooms === undefined) all.push(...this.rooms.values())
    else for (const room of rooms) { const followed = this.rooms.get(room); if (followed !== undefined) all.push(followed) }
    for (const followed of all) followed.stale = true
    if (all.length === 0) return
    await listen(all.map((followed) => followed.room))
    for (const followed of all) this.catchUp(followed).catch(this.report)
  }

  /** The rooms followed now. */
  followed (): IterableIterator<string> {
    return this.rooms.keys()
  }

  /** Stops following every room (the broker closes). */
  clear (): void {
    for (const room of [...this.rooms.keys()]) this.unfollow(room)
  }

  /**
   * Delivers a message in order, or holds it while catching up, or starts a catch-up if messages
   * before it are missing. A stored message is next when its offset is one more than the last; an
   * unstored one (history: false) carries the room's offset then, so it is due when that offset is
   * delivered, and is never a duplicate.
   */
  private accept (followed: Followed, message: RoomMessage): void {
    if (followed.waiting !== null) {
      followed.waiting.push(message)
      return
    }
    if (!followed.stale) {
      const stored = message.history !== false
      if (message.epoch === followed.epoch) {
        if (message.offset <= followed.last) {
          // Unstored: due. Stored: delivered already (by a catch-up).
          if (!stored) this.events.message(message)
          return
        }
        if (stored && message.offset === followed.last + 1) {
          followed.last = message.offset
          this.events.message(message)
          return
        }
      } else if (message.offset === (stored ? 1 : 0)) {
        // The room expired and started again. The transport was up all along (a reconnect would
        // have caught up first), so no message of the old epoch was missed.
        followed.epoch = message.epoch
        followed.last = message.offset
        this.events.message(message)
        return
      }
    }
    followed.waiting = [message]
    this.catchUp(followed).catch(this.report)
  }

  /**
   * Reads what the room has after the last delivered offset and delivers it, then the messages
   * that arrived meanwhile; if the missing messages are gone, reports the room lost and goes on
   * from its current position. The first catch-up of a room only reads that position. A call while
   * one runs joins it: if it read too early, the next message shows the gap.
   */
  private catchUp (followed: Followed): Promise<void> {
    followed.waiting ??= []
    followed.running ??= this.catchUpNow(followed)
    return followed.running
  }

  private async catchUpNow (followed: Followed): Promise<void> {
    let caughtUp: readonly RoomMessage[] = []
    try {
      const since = followed.last
      const first = followed.epoch === null
      const page = await this.read(followed.room, first ? { limit: 0 } : { since })
      if (!followed.active) return
      const { position } = page
      if (first) {
        followed.epoch = position.epoch
        followed.last = position.offset
      } else if (replayable(page, followed.epoch as string, since)) {
        caughtUp = page.messages
      } else {
        followed.epoch = position.epoch
        followed.last = position.offset
        this.events.lost(followed.room, position)
      }
      followed.stale = false
    } catch (error) {
      // What waited is still in the history: the next message catches up from the same offset.
      followed.stale = true
      followed.waiting = null
      throw error
    } finally {
      followed.running = null
    }
    // Set by catchUp(), cleared only above on failure and here. Delivered by accept(), like the
    // rest: in order, once, and not after unfollow() (which makes `waiting` a sink).
    const waiting = followed.waiting as RoomMessage[]
    followed.waiting = null
    // In publish order: a stored message before what came in after it, an unstored one after the
    // stored message whose offset it carries.
    let next = 0
    for (const message of waiting) {
      while (next < caughtUp.length && caughtUp[next]!.offset <= message.offset) this.accept(followed, caughtUp[next++]!)
      this.accept(followed, message)
    }
    while (next < caughtUp.length) this.accept(followed, caughtUp[next++]!)
  }
}
