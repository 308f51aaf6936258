import type { FastifyRequest } from 'fastify'
import { errors } from '../errors.js'
import { optionalInteger } from '../options.js'
import type { RealtimeMetrics } from '../metrics.js'
import { shown } from './validate.js'

/** Plugin-wide bounds on handshakes and connections. */
export interface GuardSettings {
  /** Open connections in all, on every route; more get 503. */
  readonly maxConnections: number
  /** Open connections from one client address (Fastify's `request.ip`, so trustProxy-aware); more get 429. */
  readonly maxConnectionsPerIp: number
  /** From the first byte of the upgrade request to the upgrade, hooks included; a slower handshake is dropped. */
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

/** What the guard reads: how many connections are open, in all and per address. */
export interface GuardState {
  readonly connections: { readonly size: number }
  readonly perIp: ReadonlyMap<string, number>
  readonly metrics: RealtimeMetrics
}

/** Refuses a handshake over the connection limits: 503 in all, 429 per address. */
export function checkLimits (request: FastifyRequest, guard: GuardSettings, state: GuardState): void {
  if (state.connections.size >= guard.maxConnections) {
    state.metrics.refused.maxConnections++
    throw new errors.FST_RT_TOO_MANY_CONNECTIONS(guard.maxConnections)
  }
  // No address (a unix socket without trustProxy): no per-address limit rather than one shared bucket.
  if (request.ip !== undefined && (state.perIp.get(request.ip) ?? 0) >= guard.maxConnectionsPerIp) {
    state.metrics.refused.maxConnectionsPerIp++
    throw new errors.FST_RT_TOO_MANY_CONNECTIONS_FROM_IP(guard.maxConnectionsPerIp)
  }
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

/** The request URL with the values of secret-looking query parameters replaced. */
export function redactUrl (url: string, keys: readonly string[]): string {
  const query = url.indexOf('?')
  if (query === -1) return url
  const params = url.slice(query + 1).split('&').map((pair) => {
    const eq = pair.indexOf('=')
    const name = eq === -1 ? pair : pair.slice(0, eq)
    let decoded: string
    try {
      decoded = decodeURIComponent(name).toLowerCase()
    } catch {
      decoded = name.toLowerCase()
    }
    return eq !== -1 && keys.includes(decoded) ? `${name}=[redacted]` : pair
  })
  return `${url.slice(0, query)}?${params.join('&')}`
}

/** Fastify's request serializer, with the URL redacted. */
export function redactingRequestSerializer (keys: readonly string[]) {
  return function serializeRequest (request: FastifyRequest): Record<string, unknown> {
    return {
      method: request.method,
      url: redactUrl(request.url, keys),
      version: request.headers['accept-version'],
      host: request.host,
      remoteAddress: request.ip,
      remotePort: request.socket?.remotePort
    }
  }
}
