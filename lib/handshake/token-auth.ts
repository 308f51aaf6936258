import type { FastifyReply, FastifyRequest } from 'fastify'
import { errors } from '../errors.js'
import { check } from '../options/server-checks.js'
import { kTokenAuth } from '../symbols.js'

/** Where a handshake token may come from. */
export type TokenSource = 'header' | 'query' | 'cookie' | 'protocol'

export interface TokenAuthOptions {
  /** Returns the user id for a valid token, or null to refuse it with 403. The token is never logged. */
  verify: (token: string, request: FastifyRequest) => string | null | Promise<string | null>
  /** Where to look, in this order. @default ['header', 'protocol', 'cookie', 'query'] */
  from?: readonly TokenSource[]
  /** The query parameter. Its value is redacted in logs when it is in the plugin's `redactQuery`. @default 'token' */
  queryParam?: string
  /** The cookie. @default 'token' */
  cookieName?: string
  /** The subprotocol that marks the next offered one as the token (`new WebSocket(url, ['access_token', token])`); list it in the route's `protocols`. @default 'access_token' */
  protocolMarker?: string
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The user id `tokenAuth()` verified for this request, or null. */
    realtimeUser: string | null
  }
}

/**
 * The user `tokenAuth()` verified, for a contract route's `userId` option: there it makes
 * `ctx.userId` a `string`. Throws FST_RT_UNAUTHORIZED (401) when the request has none, which only a
 * route without `tokenAuth()` in its `onRequest` hooks can get to (the connection closes with 1011).
 */
export function requireUser (request: Pick<FastifyRequest, 'realtimeUser'>): string {
  const user = request.realtimeUser
  if (typeof user !== 'string') throw new errors.FST_RT_UNAUTHORIZED()
  return user
}

const SOURCES = new Set<TokenSource>(['header', 'query', 'cookie', 'protocol'])

/** The defaults of tokenAuth()'s optional options (docs/security.md's table lists each). */
export const tokenAuthDefaults = Object.freeze({
  from: Object.freeze(['header', 'protocol', 'cookie', 'query'] as const),
  queryParam: 'token',
  cookieName: 'token',
  protocolMarker: 'access_token'
})

/** Every key tokenAuth() accepts. */
export const tokenAuthOptionNames = Object.freeze(['verify', ...Object.keys(tokenAuthDefaults)])

function fromHeader (request: FastifyRequest): string | null {
  const header = request.headers.authorization
  const match = header === undefined ? null : /^Bearer\s+(\S+)$/i.exec(header)
  return match?.[1] ?? null
}

/** A cookie value unescaped; one with a malformed escape is passed on as it is, for verify to refuse. */
function decoded (value: string): string {
  try {
    return decodeURIComponent(value)
  } catch {
    return value
  }
}

function fromCookie (request: FastifyRequest, name: string): string | null {
  for (const pair of (request.headers.cookie ?? '').split(';')) {
    const eq = pair.indexOf('=')
    if (eq !== -1 && pair.slice(0, eq).trim() === name) return decoded(pair.slice(eq + 1).trim())
  }
  return null
}

function fromProtocol (request: FastifyRequest, marker: string): string | null {
  const offered = (request.headers['sec-websocket-protocol'] ?? '').split(',').map((item) => item.trim())
  const at = offered.indexOf(marker)
  return at === -1 ? null : offered[at + 1] ?? null
}

function fromQuery (request: FastifyRequest, param: string): string | null {
  const value = (request.query as Record<string, unknown> | undefined)?.[param]
  return typeof value === 'string' ? value : null
}

/**
 * An onRequest hook that authenticates the handshake before the upgrade: 401 without a token, 403
 * for a refused one. The user id lands in `request.realtimeUser` (for a contract route's `userId`).
 */
export function tokenAuth (options: TokenAuthOptions) {
  if (typeof options?.verify !== 'function') throw new errors.FST_RT_INVALID_OPTION('"verify"', 'expected a function (token, request) => userId | null')
  const from = options.from ?? tokenAuthDefaults.from
  if (!Array.isArray(from) || from.length === 0 || !from.every((source) => SOURCES.has(source))) {
    throw new errors.FST_RT_INVALID_OPTION('"from"', `expected some of ${[...SOURCES].join(', ')}`)
  }
  check.object('tokenAuth', options, tokenAuthOptionNames, 'an object { verify, from?, queryParam?, cookieName?, protocolMarker? }')
  const queryParam = options.queryParam === undefined ? tokenAuthDefaults.queryParam : check.string('queryParam', options.queryParam)
  const cookieName = options.cookieName === undefined ? tokenAuthDefaults.cookieName : check.token('cookieName', options.cookieName)
  const marker = options.protocolMarker === undefined ? tokenAuthDefaults.protocolMarker : check.token('protocolMarker', options.protocolMarker)
  const hook = async function realtimeTokenAuth (request: FastifyRequest, _reply: FastifyReply): Promise<void> {
    let token: string | null = null
    for (const source of from) {
      token = source === 'header'
        ? fromHeader(request)
        : source === 'cookie' ? fromCookie(request, cookieName) : source === 'protocol' ? fromProtocol(request, marker) : fromQuery(request, queryParam)
      if (token !== null) break
    }
    const metrics = request.server.realtime.metrics as { authFailures: number }
    if (token === null) {
      metrics.authFailures++
      throw new errors.FST_RT_UNAUTHORIZED()
    }
    let user: string | null
    try {
      user = await options.verify(token, request)
    } catch (error) {
      request.log.error({ err: error }, 'realtime: tokenAuth verify failed')
      user = null
    }
    if (typeof user !== 'string') {
      metrics.authFailures++
      throw new errors.FST_RT_TOKEN_REFUSED()
    }
    request.realtimeUser = user
  }
  Object.defineProperty(hook, kTokenAuth, { value: { from, queryParam, cookieName, protocolMarker: marker } })
  return hook
}
