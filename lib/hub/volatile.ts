import { roomEnvelope, type RoomMessage } from './broker.js'

// A volatile message is published unstored (`history: false`) with `"volatile":true` added to its
// body, so it crosses every broker as it is (no broker needs to carry a flag of its own) and the
// client sees it too. The hub recognizes it by the exact end of its text, which it can rebuild
// from the message's room, epoch and offset: data that happens to hold such a key cannot pass for it.

const MARK = ',"volatile":true'

/** `body` (a serialized `{ type, data }`) marked volatile. */
export function volatileBody (body: string): string {
  return `${body.slice(0, -1)}${MARK}}`
}

/** Whether a message from the broker was published volatile. */
export function isVolatile (message: RoomMessage): boolean {
  if (message.history !== false) return false
  return message.text.endsWith(roomEnvelope(`${MARK}}`, message.room, message.epoch, message.offset))
}
