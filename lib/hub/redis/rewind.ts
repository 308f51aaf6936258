import type { HistoryPage, RoomMessage } from '../broker.js'

/** The newest stored message (or position) an instance has seen of a followed room. */
interface Seen {
  epoch: string | null
  offset: number
  /** The time and text of the message at `offset`; undefined when only a position showed it. */
  time: number | undefined
  text: string | undefined
}

/**
 * Finds a room's history going backwards within one epoch. Redis replicates asynchronously: after a
 * failover the promoted replica may lack messages the old master acknowledged, and the room's
 * counter hands their offsets out again, to other messages, in the same epoch. A recovery across
 * that hole would look complete. Only rooms this instance follows are watched (bounded by them);
 * the broker starts a new epoch for a room found rewound (restartScript), so every instance's
 * members get `$lost` and no recovery reaches across the hole.
 */
export class RewindWatch {
  private readonly rooms = new Map<string, Seen>()

  follow (room: string): void {
    if (!this.rooms.has(room)) this.rooms.set(room, { epoch: null, offset: 0, time: undefined, text: undefined })
  }

  forget (room: string): void {
    this.rooms.delete(room)
  }

  clear (): void {
    this.rooms.clear()
  }

  /**
   * A live message: true if it shows the room rewound. A stored message of the same epoch at or
   * below the highest offset seen is either a late copy (the same message) or, after a rewind,
   * another one: another text at the same offset, or a later time than the message seen at a
   * higher offset (within an epoch, a higher offset is never older). Unstored messages carry the
   * current offset and prove nothing.
   */
  message (message: RoomMessage): boolean {
    const seen = this.rooms.get(message.room)
    if (seen === undefined || message.history === false) return false
    if (message.epoch === seen.epoch && message.offset <= seen.offset) {
      if (seen.time === undefined) return false
      return message.offset === seen.offset ? message.text !== seen.text : message.time > seen.time
    }
    Object.assign(seen, { epoch: message.epoch, offset: message.offset, time: message.time, text: message.text })
    return false
  }

  /**
   * Before a read of the room (a catch-up, a history): returns the check of the page it brings,
   * true if the page's position, in the epoch seen, is below the highest offset seen when the read
   * was sent. (Only then: a message seen while the read is on its way may be newer than the read.)
   * Otherwise the page's newest message, or its position, is noted if it is newer.
   */
  reading (room: string): (page: HistoryPage) => boolean {
    const seen = this.rooms.get(room)
    if (seen === undefined) return notRewound
    const { epoch, offset } = seen
    return ({ position, messages }) => {
      if (position.epoch === epoch && position.offset < offset) return true
      if (position.epoch === seen.epoch && position.offset <= seen.offset) return false
      const last = messages.at(-1)
      if (last !== undefined && last.offset === position.offset) this.message(last)
      else Object.assign(seen, { epoch: position.epoch, offset: position.offset, time: undefined, text: undefined })
      return false
    }
  }
}

function notRewound (): boolean {
  return false
}
