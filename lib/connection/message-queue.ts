import type { WSMessage } from './messages.js'

const NONE: WSMessage[] = []
const NO_SIZES: number[] = []

/**
 * Messages received but not yet read by the handler, with their byte count so the connection
 * can pause the socket above its read limit (inbound flow control).
 */
export class MessageQueue {
  // Most connections hold nothing here most of the time: the arrays are shared empties until used.
  private items: WSMessage[] = NONE
  private sizes: number[] = NO_SIZES
  private head = 0
  bytes = 0

  get length (): number {
    return this.items.length - this.head
  }

  push (message: WSMessage, size: number): void {
    if (this.items === NONE) {
      this.items = []
      this.sizes = []
    }
    this.items.push(message)
    this.sizes.push(size)
    this.bytes += size
  }

  shift (): WSMessage | undefined {
    if (this.head === this.items.length) return undefined
    const message = this.items[this.head] as WSMessage
    this.bytes -= this.sizes[this.head] as number
    this.head++
    // Compact once the consumed prefix dominates, so shifting stays O(1) amortized.
    if (this.head === this.items.length) {
      this.items = NONE
      this.sizes = NO_SIZES
      this.head = 0
    } else if (this.head > 64 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.sizes = this.sizes.slice(this.head)
      this.head = 0
    }
    return message
  }

  /** Drops unread data and control messages, keeping close and error notices (used once closing starts). */
  dropData (): void {
    const kept: WSMessage[] = []
    for (let i = this.head; i < this.items.length; i++) {
      const message = this.items[i] as WSMessage
      if (message.type === 'close' || message.type === 'error') kept.push(message)
    }
    this.items = kept
    this.sizes = kept.map(() => 0)
    this.head = 0
    this.bytes = 0
  }
}
