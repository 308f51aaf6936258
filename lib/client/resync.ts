import { RealtimeClientError } from './errors.js'

/** A room's position, as a snapshot helper returns it with the app's state. */
export interface SnapshotPosition {
  readonly epoch: string
  readonly offset: number
}

/**
 * Loads the app's state of a room (with the server's snapshot helper) and returns the position it
 * was taken at. The client calls it before it first joins, and again whenever the room can no
 * longer be recovered; it joins, or goes on, from exactly that position.
 */
export type SnapshotLoader = () => Promise<SnapshotPosition>

/** A room message held while the app reloads. */
export interface HeldMessage {
  readonly type: string
  readonly data: unknown
  readonly room: string
  readonly epoch: string
  readonly offset: number
}

/** Live messages held per room while its snapshot loads, at most this many (then the client joins again from the snapshot). */
export const MAX_HELD = 1000
/** Reloads in a row that did not bring the room back before the client gives up (FST_RT_CLIENT_RESYNC_FAILED). */
export const MAX_RESYNCS = 3

/** The re-sync state of one room joined with a snapshot loader. */
export class RoomResync {
  /** Live messages held while the snapshot loads; null when none is loading. */
  held: HeldMessage[] | null = null
  /** More came in than MAX_HELD while loading: the held ones were let go. */
  overflowed = false
  /** Reloads in a row that ended in a new join rather than in the live stream. */
  attempts = 0
  /** The room is being joined again from a snapshot: what arrives until the join reply is dropped (the join replays it). */
  rejoining = false
  /** The snapshot the live stream went on from: messages still in flight up to it are in the app's state already. */
  through: SnapshotPosition | null = null

  constructor (readonly load: SnapshotLoader) {}

  /**
   * Whether a live message is not for the app now: held while the snapshot loads, or already in
   * the snapshot the stream went on from. False: deliver it.
   */
  hold (message: HeldMessage): boolean {
    if (this.held === null) {
      const through = this.through
      if (through === null) return false
      if (message.epoch === through.epoch && message.offset <= through.offset) return true
      this.through = null
      return false
    }
    if (this.held.length >= MAX_HELD) {
      this.overflowed = true
      this.held.length = 0
    }
    if (!this.overflowed) this.held.push(message)
    return true
  }
}

/** The position a loader returned, checked: FST_RT_CLIENT_INVALID_OPTION otherwise. */
export function snapshotPosition (value: unknown): SnapshotPosition {
  const position = value as { epoch?: unknown, offset?: unknown } | null
  if (typeof position !== 'object' || position === null || typeof position.epoch !== 'string' || position.epoch.length === 0 ||
    typeof position.offset !== 'number' || !Number.isSafeInteger(position.offset) || position.offset < 0) {
    throw new RealtimeClientError('FST_RT_CLIENT_INVALID_OPTION', 'A snapshot loader must resolve with { epoch: string, offset: integer >= 0 }')
  }
  return { epoch: position.epoch, offset: position.offset }
}
