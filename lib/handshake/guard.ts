import type { FastifyRequest } from 'fastify'
import { errors } from '../errors.js'
import type { RealtimeMetrics } from '../metrics.js'
import { shown } from './validate.js'

/**
 * Without `allowedOrigins`, a browser page may only connect to its own host: an Origin whose host
 * differs from the Host header is refused (cross-site WebSocket hijacking). No Origin passes.
 */
export function checkSameOrigin (request: FastifyRequest, metrics: RealtimeMetrics): void {
  const origin = request.headers.origin
  if (origin === undefined) return
  let host: string | null
  try {
    host = new URL(origin).host.toLowerCase()
  } catch {
    host = null
  }
  // request.host is the Host header, or X-Forwarded-Host when Fastify trusts the proxy.
  if (host !== null && host === request.host.toLowerCase()) return
  metrics.refused.origin++
  request.log.info({ origin }, 'realtime: cross-origin handshake refused (set allowedOrigins to allow it)')
  throw new errors.FST_RT_ORIGIN_FORBIDDEN(shown(origin))
}
