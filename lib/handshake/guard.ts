import type { FastifyRequest } from 'fastify'
import { errors } from '../errors.js'
import { optionalInteger } from '../options.js'
import type { RealtimeMetrics } from '../metrics.js'
import { shown } from './validate.js'

/** Plugin-wide bounds on handshakes and connections. */
export interface GuardSettings {
  /** Connections in all, on every route, handshakes past the limit check included; more get 503. */
  readonly maxConnections: number
  /** The same, from one client address (Fastify's `request.ip`, so trustProxy-aware); more get 429. */
  readonly maxConnectionsPerIp: number
  /** From a socket's accept to its first request head and, for an upgrade, to the upgrade, hooks included (see handshakes.ts). */
  readonly handshakeTimeout: number
  /** Query parameters whose values never reach a log line. */
  readonly redactQuery: readonly string[]
}

export const defaultGuardSettings: GuardSettings = Object.freeze({
  maxConnections: 10_000,
  maxConnectionsPerIp: 100,
  handshakeTimeout: 10_000,
  redactQuery: Object.freeze(['token', 'access_token', 'auth', 'authorization', 'key', 'api_key', 'apikey', 'jwt', 'password', 'secret', 'signature', 'sig'])
})

export const GUARD_KEYS = new Set(['maxConnections', 'maxConnectionsPerIp', 'handshakeTimeout', 'redactQuery'])

export function guardSettings (options: Record<string, unknown>): GuardSettings {
  const count = (name: 'maxConnections' | 'maxConnectionsPerIp' | 'handshakeTimeout', max: number): number =>
    optionalInteger(name, options[name], 1, max, defaultGuardSettings[name])
  const redact = options.redactQuery ?? defaultGuardSettings.redactQuery
  if (!Array.isArray(redact) || !redact.every((key) => typeof key === 'string')) {
    throw new errors.FST_RT_INVALID_OPTION('"redactQuery"', 'expected an array of query parameter names')
  }
  return Object.freeze({
    maxConnections: count('maxConnections', Number.MAX_SAFE_INTEGER),
    maxConnectionsPerIp: count('maxConnectionsPerIp', Number.MAX_SAFE_INTEGER),
    handshakeTimeout: count('handshakeTimeout', 2 ** 31 - 1),
    redactQuery: Object.freeze(redact.map((key) => key.toLowerCase()))
  })
}

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
