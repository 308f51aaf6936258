import { errors } from '../errors.js'
import type { RealtimeMetrics } from '../metrics.js'
import type { GuardSettings } from '../options/guard.js'

/**
 * The connection limits, counted in slots: a handshake takes one when it passes the limit check
 * and gives it back when its socket closes, so handshakes still in their hooks count as well as
 * open connections, and no outcome can keep one.
 */
export class ConnectionSlots {
  private total = 0
  private readonly perIp = new Map<string, number>()

  constructor (private readonly guard: GuardSettings, private readonly metrics: RealtimeMetrics) {}

  /** Takes a slot for `ip`, or throws 503 (all taken) or 429 (all of this address's taken). */
  take (ip: string | undefined): void {
    if (this.total >= this.guard.maxConnections) {
      this.metrics.refused.maxConnections++
      throw new errors.FST_RT_TOO_MANY_CONNECTIONS(this.guard.maxConnections)
    }
    // No address (a unix socket without trustProxy): no per-address limit rather than one shared bucket.
    if (ip !== undefined) {
      const held = this.perIp.get(ip) ?? 0
      if (held >= this.guard.maxConnectionsPerIp) {
        this.metrics.refused.maxConnectionsPerIp++
        throw new errors.FST_RT_TOO_MANY_CONNECTIONS_FROM_IP(this.guard.maxConnectionsPerIp)
      }
      this.perIp.set(ip, held + 1)
    }
    this.total++
  }

  give (ip: string | undefined): void {
    this.total--
    if (ip === undefined) return
    const left = (this.perIp.get(ip) as number) - 1
    if (left === 0) this.perIp.delete(ip)
    else this.perIp.set(ip, left)
  }
}
