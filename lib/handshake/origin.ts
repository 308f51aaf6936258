import type { FastifyRequest } from 'fastify'
import { errors } from '../errors.js'
import type { OriginCheck } from '../options.js'
import type { RealtimeMetrics } from '../metrics.js'
import { shown } from './validate.js'

/** Refuses the handshake with 403 when the route's allowedOrigins rejects the request's Origin. */
export async function checkOrigin (request: FastifyRequest, allowed: OriginCheck, metrics: RealtimeMetrics): Promise<void> {
  const origin = request.headers.origin
  if (await allowed(origin, request)) return
  metrics.refused.origin++
  request.log.info({ origin }, 'realtime: origin refused')
  throw new errors.FST_RT_ORIGIN_FORBIDDEN(shown(origin))
}
