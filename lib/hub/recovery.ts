import type { Broker, HistoryPage, Position, RoomMessage } from './broker.js'

/** What a reconnecting client gets: everything it missed in order, or `recovered: false` and nothing. */
export type Recovery =
  | { readonly recovered: true, readonly position: Position, readonly messages: readonly RoomMessage[] }
  | { readonly recovered: false, readonly position: Position, readonly messages: readonly [] }

/**
 * Recovers a client that last saw `offset` of `epoch` (as it sent them: anything): every message
 * after it if the epoch is current and the history still holds all of them, else
 * `recovered: false` and nothing, never a partial replay. Computed here once, from one history read
 * (position and messages of one moment), for every broker.
 */
export async function recover (broker: Broker, room: string, epoch: unknown, offset: unknown): Promise<Recovery> {
  const valid = typeof epoch === 'string' && typeof offset === 'number' && Number.isSafeInteger(offset) && offset >= 0
  const { position, messages } = await broker.history(room, valid ? { since: offset } : { limit: 0 })
  if (!valid || !replayable({ position, messages }, epoch, offset)) {
    // An offset of this epoch beyond the room's position: the history went backwards (Broker.rewound).
    const rewound = valid && epoch === position.epoch && offset > position.offset ? broker.rewound : undefined
    return { recovered: false, position: rewound === undefined ? position : await rewound.call(broker, room, position), messages: [] }
  }
  return { recovered: true, position, messages }
}

/**
 * Whether `page` (a history read after `since`) is everything after `since` of `epoch`: the same
 * epoch, and exactly the offsets after `since` up to the position. A broker keeps its history dense
 * and unbroken, so the count would do; checking each offset also keeps a broker that breaks the
 * rule from replaying a hole. Used by recovery and by OrderedDelivery's catch-up.
 */
export function replayable (page: HistoryPage, epoch: string, since: number): boolean {
  const { position, messages } = page
  if (position.epoch !== epoch || messages.length !== position.offset - since) return false
  for (let i = 0; i < messages.length; i++) {
    if ((messages[i] as RoomMessage).offset !== since + 1 + i) return false
  }
  return true
}
