import { errors } from '../errors.js'
import { optionalInteger } from '../options.js'

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

/** The checked settings of the `rateLimit` option, or null for `false`. */
export function rateLimitSettings (option: RateLimitOptions | false | undefined): RateLimitSettings | null {
  if (option === false) return null
  const rate = option ?? defaultRateLimit
  if (typeof rate !== 'object' || rate === null) {
    throw new errors.FST_RT_INVALID_OPTION('"rateLimit"', 'expected { perSecond, burst, bytesPerSecond?, bytesBurst? } or false')
  }
  const positive = (name: keyof RateLimitSettings): number => optionalInteger(`rateLimit.${name}`, rate[name], 1, Number.MAX_SAFE_INTEGER, defaultRateLimit[name])
  return { perSecond: positive('perSecond'), burst: positive('burst'), bytesPerSecond: positive('bytesPerSecond'), bytesBurst: positive('bytesBurst') }
}

/** One connection's buckets. `admit` says whether a message goes through, `refusal` why the last did not. */
export class RateLimiter {
  private messages: number
  private bytes: number
  private refilledAt = Date.now()
  /** Messages refused in a row. */
  strikes = 0
  /** What refused the last message: 'messages' or 'bytes'. */
  private refusedBy: 'messages' | 'bytes' = 'messages'

  constructor (private readonly settings: RateLimitSettings) {
    this.messages = settings.burst
    this.bytes = settings.bytesBurst
  }

  /** Takes one message of `size` bytes from the buckets, or refuses it (and counts a strike). */
  admit (size: number): boolean {
    const { perSecond, burst, bytesPerSecond, bytesBurst } = this.settings
    const now = Date.now()
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

  /** The error for the last refusal. */
  refusal (): Error & { code: string } {
    const { perSecond, burst, bytesPerSecond, bytesBurst } = this.settings
    return this.refusedBy === 'messages'
      ? new errors.FST_RT_RATE_LIMITED(`${perSecond} messages`, burst)
      : new errors.FST_RT_RATE_LIMITED(`${bytesPerSecond} bytes`, `${bytesBurst} bytes`)
  }

  /** A peer that keeps sending through a whole burst of refusals is flooding: its connection is closed. */
  get flooding (): boolean {
    return this.strikes > this.settings.burst
  }
}
