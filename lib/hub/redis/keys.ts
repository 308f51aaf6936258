import { roomOfTag, roomTag } from './key-tags.js'

/** The keys and channel of one room. */
export interface RoomKeys {
  /** A hash: the room's epoch and last offset. */
  readonly meta: string
  /** A stream: the kept messages, one entry per offset. */
  readonly stream: string
  /** The pub/sub channel (its name is the keys' common base). */
  readonly channel: string
  /** A hash: connection id → JSON presence entry. */
  readonly presence: string
  /** A sorted set: connection id by the time its presence entry expires. */
  readonly expiry: string
}

/** The keys and channel of a room. The room's tag (key-tags.ts) puts all of them in one Redis Cluster slot. */
export function roomKeys (prefix: string, room: string): RoomKeys {
  const base = `${prefix}room:${roomTag(room)}`
  return { meta: `${base}:meta`, stream: `${base}:stream`, channel: base, presence: `${base}:presence`, expiry: `${base}:presence:expiry` }
}

/** The room of a channel made by roomKeys(): `<prefix>room:{<tag>}`. */
export function roomOfChannel (prefix: string, channel: string): string {
  return roomOfTag(channel.slice(prefix.length + 6, -1))
}
