import { check } from './server-checks.js'

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

/** Checks the guard keys of `register()`'s options over the defaults. */
export function guardSettings (options: Record<string, unknown>): GuardSettings {
  const count = (name: 'maxConnections' | 'maxConnectionsPerIp' | 'handshakeTimeout', max: number): number =>
    check.optionalInteger(name, options[name], 1, max, defaultGuardSettings[name])
  const redact = options.redactQuery ?? defaultGuardSettings.redactQuery
  if (!Array.isArray(redact) || !redact.every((key) => typeof key === 'string')) check.fail('redactQuery', 'an array of query parameter names', redact)
  return Object.freeze({
    maxConnections: count('maxConnections', Number.MAX_SAFE_INTEGER),
    maxConnectionsPerIp: count('maxConnectionsPerIp', Number.MAX_SAFE_INTEGER),
    handshakeTimeout: count('handshakeTimeout', 2 ** 31 - 1),
    redactQuery: Object.freeze((redact as string[]).map((key) => key.toLowerCase()))
  })
}
