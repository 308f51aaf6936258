import type { FastifyRequest } from 'fastify'
import type { DeadlineClock, DeadlineOwner } from '../connection/timers.js'

/**
 * The deadline of every handshake in progress, from the upgrade request to the upgrade, on the
 * shared clock rather than a timer each. All have the same length, so they expire in the order they
 * started: a Map in insertion order is the queue, and finishing one is a delete.
 */
export class HandshakeDeadlines implements DeadlineOwner {
  private readonly started = new Map<FastifyRequest, number>()

  constructor (
    private readonly clock: DeadlineClock,
    private readonly timeout: number,
    private readonly expire: (request: FastifyRequest) => void
  ) {}

  start (request: FastifyRequest): void {
    const at = Date.now() + this.timeout
    this.started.set(request, at)
    this.clock.schedule(this, at)
  }

  /** The handshake was answered or upgraded (finishing one that is not running does nothing). */
  finish (request: FastifyRequest): void {
    this.started.delete(request)
  }

  /** @internal */
  onDeadline (now: number): number {
    for (const [request, at] of this.started) {
      if (at > now) return at
      this.started.delete(request)
      this.expire(request)
    }
    return Infinity
  }
}
