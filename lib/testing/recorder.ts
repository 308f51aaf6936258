import type { BrokerEvents, Position, RoomMessage } from '../hub/broker.js'
import { broken } from './expect.js'

/** Records what a broker delivers; `until()` waits for a count, with a deadline. */
export class Recorder implements BrokerEvents {
  readonly messages: RoomMessage[] = []
  readonly losses: Array<{ room: string, position: Position }> = []
  readonly errors: Error[] = []
  private check: (() => void) | null = null
  /** Called with each message as it is delivered, after it is recorded. */
  onMessage: ((message: RoomMessage) => void) | null = null

  /** @param timeoutMs how long `until()` waits before it fails instead of hanging */
  constructor (private readonly timeoutMs = 5_000) {}

  message (message: RoomMessage): void {
    this.messages.push(message)
    this.onMessage?.(message)
    this.check?.()
  }

  lost (room: string, position: Position): void {
    this.losses.push({ room, position })
    this.check?.()
  }

  error (error: Error): void {
    this.errors.push(error)
  }

  /**
   * Resolves once `count` messages (or, with `losses`, that many losses) were delivered in all;
   * rejects with FST_RT_BROKER_RULE (live-delivery) after the timeout.
   */
  async until (count: number, what: 'messages' | 'losses' = 'messages'): Promise<void> {
    const done = (): boolean => (what === 'messages' ? this.messages.length : this.losses.length) >= count
    if (done()) return
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.check = null
        reject(broken('live-delivery', `${count} ${what} not delivered within ${this.timeoutMs} ms; got ${this.messages.length} messages, ${this.losses.length} losses`))
      }, this.timeoutMs)
      this.check = () => {
        if (!done()) return
        clearTimeout(timer)
        this.check = null
        resolve()
      }
    })
  }
}
