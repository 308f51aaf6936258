import type { HistoryPage, Position } from '../hub/broker.js'

/** Where a kept room message stands, beside its `{ type, data }`. */
export interface HistoryStamp {
  readonly room: string
  readonly epoch: string
  readonly offset: number
  /** When it was published, in ms since the epoch. */
  readonly time: number
}

/**
 * A room's kept messages, decoded, oldest first, with the room's position when they were read. `M`
 * is a contract's `ServerMessage<C>`: the union of its `{ type, data }`, so a switch on `type` narrows `data`.
 */
export interface RoomHistory<M = { type: string, data: unknown }> {
  readonly position: Position
  readonly messages: Array<M & HistoryStamp>
}

/**
 * Decodes a history page. Its texts were serialized from the contract's schemas when they were
 * published (by this app), so they are parsed, not checked again.
 */
export function decodeHistory<M> (page: HistoryPage): RoomHistory<M> {
  return {
    position: page.position,
    messages: page.messages.map((message) => ({ ...JSON.parse(message.text), time: message.time }))
  }
}
