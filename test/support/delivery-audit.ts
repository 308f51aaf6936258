import type { Broker, BrokerEvents, RoomMessage } from '../../lib/hub/broker.js'

/** What one subscriber saw of one room, in order, with the time of each event: messages by the number in their body. */
interface Seen {
  readonly events: Array<{ kind: 'message', n: number, at: number } | { kind: 'lost', at: number }>
}

/** The figures of a fault run, summed over the subscribers (stall: the longest of any). */
export interface AuditReport {
  /** Publishes that resolved (each subscriber should get each of them). */
  acknowledged: number
  /** Publishes that rejected: never acknowledged, so never owed. */
  failedPublishes: number
  /** Acknowledged messages delivered, summed over the subscribers. */
  delivered: number
  /** Deliveries of a message delivered before. */
  duplicated: number
  /** Deliveries of a message published before one delivered earlier. */
  reordered: number
  /** Acknowledged, neither delivered nor followed by a `lost` event: must be 0. */
  silentlyLost: number
  /** Acknowledged, not delivered, with a `lost` event after its acknowledgement (the members get `$lost`). */
  announcedLost: number
  /** The longest time from a publish's acknowledgement to its delivery (or the loss that announced it), in ms. */
  longestStallMs: number
}

/** The number a fault run's message carries: `{ "type": "chat", "data": { "n": N } }`. */
function numberOf (message: RoomMessage): number {
  return (JSON.parse(message.text) as { data: { n: number } }).data.n
}

/**
 * Watches subscribers of one room and the publishes made to it (one publisher, one at a time, each
 * body numbered), then says what each subscriber got of each acknowledged message: delivered once,
 * twice, out of order, announced lost, or lost silently. Messages are told apart by their number,
 * not their offset: a failover that loses writes Redis had acknowledged gives their offsets again.
 */
export class DeliveryAudit {
  private readonly seen: Seen[] = []
  /** n → when its publish was acknowledged. */
  private readonly acked = new Map<number, number>()
  private failed = 0
  private published = 0
  private check: (() => void) | null = null

  constructor (readonly room: string) {}

  /** Attaches a subscriber broker to the audit (before it subscribes). */
  watch (broker: Broker): void {
    const seen: Seen = { events: [] }
    this.seen.push(seen)
    const events: BrokerEvents = {
      message: (message: RoomMessage) => {
        seen.events.push({ kind: 'message', n: numberOf(message), at: Date.now() })
        this.check?.()
      },
      lost: () => {
        seen.events.push({ kind: 'lost', at: Date.now() })
        this.check?.()
      }
    }
    broker.attach(events)
  }

  /** Publishes the next numbered message, recording its acknowledgement (or the failure). */
  async publish (publisher: Broker): Promise<void> {
    const n = ++this.published
    try {
      await publisher.publish(this.room, JSON.stringify({ type: 'chat', data: { n } }))
      this.acked.set(n, Date.now())
    } catch {
      this.failed++
    }
  }

  /** How many acknowledged messages a subscriber has neither received nor been told of. */
  private outstanding (): number {
    let missing = 0
    for (const seen of this.seen) {
      const { delivered, lostAt } = this.coverage(seen)
      for (const [n, at] of this.acked) if (!delivered.has(n) && !lostAt.some((time) => time >= at)) missing++
    }
    return missing
  }

  /** Resolves once every subscriber has every acknowledged message delivered or announced lost, or after `timeoutMs`. */
  async settle (timeoutMs: number): Promise<void> {
    if (this.outstanding() === 0) return
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        this.check = null
        resolve()
      }
      const timer = setTimeout(done, timeoutMs)
      this.check = () => { if (this.outstanding() === 0) done() }
    })
  }

  private coverage (seen: Seen): { delivered: Map<number, number>, lostAt: number[], duplicated: number, reordered: number } {
    const delivered = new Map<number, number>()
    const lostAt: number[] = []
    let duplicated = 0
    let reordered = 0
    let last = 0
    for (const event of seen.events) {
      if (event.kind === 'lost') {
        lostAt.push(event.at)
        continue
      }
      if (delivered.has(event.n)) {
        duplicated++
        continue
      }
      delivered.set(event.n, event.at)
      if (event.n < last) reordered++
      last = Math.max(last, event.n)
    }
    return { delivered, lostAt, duplicated, reordered }
  }

  report (): AuditReport {
    const report: AuditReport = {
      acknowledged: this.acked.size, failedPublishes: this.failed, delivered: 0, duplicated: 0, reordered: 0, silentlyLost: 0, announcedLost: 0, longestStallMs: 0
    }
    for (const seen of this.seen) {
      const { delivered, lostAt, duplicated, reordered } = this.coverage(seen)
      report.duplicated += duplicated
      report.reordered += reordered
      for (const [n, ackedAt] of this.acked) {
        const at = delivered.get(n) ?? lostAt.find((time) => time >= ackedAt)
        if (delivered.has(n)) report.delivered++
        else if (at !== undefined) report.announcedLost++
        else report.silentlyLost++
        if (at !== undefined) report.longestStallMs = Math.max(report.longestStallMs, at - ackedAt)
      }
    }
    return report
  }
}

/** One line of the fault table. */
export function reportLine (name: string, r: AuditReport): string {
  return `${name}: acknowledged ${r.acknowledged} (failed publishes ${r.failedPublishes}), delivered ${r.delivered}, duplicated ${r.duplicated}, ` +
    `reordered ${r.reordered}, silently lost ${r.silentlyLost}, announced lost ${r.announcedLost}, longest stall ${r.longestStallMs} ms`
}
