/**
 * A connection's message rate: two token buckets, one counting messages and one counting bytes.
 * Each fills at its rate per second up to its burst.
 */
export interface RateLimitOptions {
  /** Messages per second. @default 100 */
  perSecond: number
  /** Messages at once. @default 200 */
  burst: number
  /** Bytes of messages per second. @default 1048576 (1 MiB) */
  bytesPerSecond?: number
  /**
   * Bytes at once. A message is let through while the byte bucket is not empty and then takes its
   * size out of it, into debt if it must, so one message may be larger than this (up to maxMsgSize).
   * @default 4194304 (4 MiB)
   */
  bytesBurst?: number
}

export type RateLimitSettings = Required<RateLimitOptions>

export const defaultRateLimit: RateLimitSettings = Object.freeze({ perSecond: 100, burst: 200, bytesPerSecond: 1024 * 1024, bytesBurst: 4 * 1024 * 1024 })

/**
 * One connection's buckets, as pure arithmetic: the caller passes the time, and reads what refused
 * a message from `refusedBy` (the session turns it into an error envelope).
 */
export class RateLimiter {
  private messages: number
  private bytes: number
  private refilledAt: number
  /** Messages refused in a row. */
  strikes = 0
  /** What refused the last message. */
  refusedBy: 'messages' | 'bytes' = 'messages'

  constructor (readonly settings: RateLimitSettings, now: number) {
    this.messages = settings.burst
    this.bytes = settings.bytesBurst
    this.refilledAt = now
  }

  /** Takes one message of `size` bytes from the buckets at time `now` (ms), or refuses it (and counts a strike). */
  admit (size: number, now: number): boolean {
    const { perSecond, burst, bytesPerSecond, bytesBurst } = this.settings
    const elapsed = now - this.refilledAt
    this.refilledAt = now
    this.messages = Math.min(burst, this.messages + elapsed * perSecond / 1000)
    this.bytes = Math.min(bytesBurst, this.bytes + elapsed * bytesPerSecond / 1000)
    if (this.messages >= 1 && this.bytes > 0) {
      this.messages -= 1
      this.bytes -= size
      this.strikes = 0
      return true
    }
    this.refusedBy = this.messages >= 1 ? 'bytes' : 'messages'
    this.strikes++
    return false
  }

  /** A peer that keeps sending through a whole burst of refusals is flooding: its connection is closed. */
  get flooding (): boolean {
    return this.strikes > this.settings.burst
  }
}
