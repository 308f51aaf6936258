import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import { Handshakes } from './handshakes.js'

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

type Serializer = (value: object) => unknown

// pino's public symbol for a logger's serializers (Fastify's own logger factory reads it too).
const kSerializers = Symbol.for('pino.serializers')

/** Fastify's request fields: what a logger that is not pino is given (it has no serializers to wrap). */
function requestFields (request: object): Record<string, unknown> {
  const { method, url, headers, host, ip, socket } = request as FastifyRequest
  return { method, url, version: headers['accept-version'], host, remoteAddress: ip, remotePort: socket?.remotePort }
}

/** The `req` serializer of a pino logger (Fastify's, or the app's); Fastify's fields for another logger. */
export function requestSerializerOf (log: FastifyBaseLogger): Serializer {
  return serializersOf(log)?.req ?? requestFields
}

function serializersOf (log: FastifyBaseLogger): Record<string, Serializer> | undefined {
  return (log as { [kSerializers]?: Record<string, Serializer> })[kSerializers]
}

/**
 * `serialize` shown the request with its URL redacted: whatever the serializer reads from `url`
 * (Fastify's default, or the app's own) is the redacted one, and every other field is kept.
 */
export function redactingSerializer (serialize: Serializer, keys: readonly string[]): Serializer {
  return function serializeRedacted (request: object) {
    const url = redactUrl((request as { url: string }).url, keys)
    return serialize(Object.create(request, { url: { value: url } }) as object)
  }
}

/**
 * Redacts the request line of every upgrade request, whatever it reaches: a 404, an app route, a
 * route registered before the plugin. Fastify logs it with its root logger's serializers (the 404
 * handler's context exists before any plugin, so neither route serializers nor a child logger
 * factory reach it), so the root's `req` serializer is wrapped; plain HTTP requests keep it as is.
 */
export function redactUpgradeRequests (log: FastifyBaseLogger, keys: readonly string[]): void {
  const serializers = serializersOf(log)
  if (serializers?.req === undefined) return
  const serialize = serializers.req
  const redacted = redactingSerializer(serialize, keys)
  serializers.req = function serializeRequest (request: object) {
    return Handshakes.isUpgrade((request as { raw?: object }).raw) ? redacted(request) : serialize(request)
  }
}
