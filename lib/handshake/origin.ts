import type { FastifyRequest } from 'fastify'
import { errors } from '../errors.js'
import type { OriginCheck } from '../options/route.js'
import type { RealtimeMetrics } from '../metrics.js'
import { shown } from './validate.js'

/** Throws FST_RT_ORIGIN_FORBIDDEN (403) unless `allowed` said yes to the request's Origin. */
function originVerdict (allowed: boolean, request: FastifyRequest, metrics: RealtimeMetrics): void {
  if (allowed) return
  const origin = request.headers.origin
  metrics.refused.origin++
  request.log.info({ origin }, 'realtime: origin refused')
  throw new errors.FST_RT_ORIGIN_FORBIDDEN(shown(origin))
}

/**
 * Refuses the handshake with 403 when the route's allowedOrigins rejects the request's Origin.
 * Returns a promise only when the check itself is asynchronous, so most handshakes stay synchronous.
 */
export function checkOrigin (request: FastifyRequest, allowed: OriginCheck, metrics: RealtimeMetrics): void | Promise<void> {
  const verdict = allowed(request.headers.origin, request)
  if (typeof verdict === 'boolean') return originVerdict(verdict, request, metrics)
  return Promise.resolve(verdict).then((value) => { originVerdict(value, request, metrics) })
}
