import { RealtimeClientError } from './errors.js'
import { checkers, describe } from '../options/checks.js'
import type { WebSocketClass } from './socket.js'

export interface ClientOptions {
  /** The server URL, or a function called before every (re)connect, e.g. to pick an instance. */
  url: string | (() => string | Promise<string>)
  /** A token sent first as `{ type: '$auth', data }`; a function is called again on every reconnect. */
  token?: string | (() => string | null | Promise<string | null>)
  /** The WebSocket class: `globalThis.WebSocket` by default (browsers, Node 22 and later), or `ws`'s. */
  WebSocket?: WebSocketClass
  protocols?: string | string[]
  /** Reconnect delays: full jitter between 0 and min(capMs, baseMs · 2^attempt). */
  backoff?: {
    /** @default 500 */ baseMs?: number
    /** @default 30000 */ capMs?: number
    /** Attempts before giving up (state `closed`). @default Infinity */ maxRetries?: number
    /** The attempt count resets only after the connection stayed up this long. @default 10000 */ resetAfterMs?: number
  }
  /** Without any message for this long, the client sends `$ping`. @default 25000 */
  pingIntervalMs?: number
  /** Without any message this long after a `$ping`, the server is taken for dead and the client reconnects. @default 10000 */
  pongTimeoutMs?: number
  /** Default timeout of `request()` and `join()`. @default 10000 */
  requestTimeoutMs?: number
  /** Messages sent while not connected wait here, bounded by count and age. */
  queue?: {
    /** @default 100 */ maxSize?: number
    /** Older messages are dropped (FST_RT_CLIENT_QUEUE_EXPIRED is reported). @default 30000 */ maxAgeMs?: number
    /** When full: 'reject' throws FST_RT_CLIENT_QUEUE_FULL from send(); 'drop-oldest' drops the oldest. @default 'reject' */
    overflow?: 'reject' | 'drop-oldest'
  }
  /** A source of randomness in [0, 1) for the jitter (seed it in tests). @default Math.random */
  random?: () => number
  /** Connect at construction. @default true */
  autoConnect?: boolean
}

/** The options of the transport, checked and with their defaults. */
export interface TransportSettings {
  readonly url: ClientOptions['url']
  readonly token: ClientOptions['token']
  readonly protocols: ClientOptions['protocols']
  readonly WebSocket: WebSocketClass
  readonly baseMs: number
  readonly capMs: number
  readonly maxRetries: number
  readonly resetAfterMs: number
  readonly pingIntervalMs: number
  readonly pongTimeoutMs: number
  readonly queueMax: number
  readonly queueMaxAge: number
  readonly overflow: 'reject' | 'drop-oldest'
  readonly random: () => number
}

/** All client options, checked and with their defaults. */
export interface ClientSettings extends TransportSettings {
  readonly requestTimeoutMs: number
  readonly autoConnect: boolean
}

// The server's option checkers, throwing the client's own error.
export const check = checkers((name, expected, value) => {
  throw new RealtimeClientError('FST_RT_CLIENT_INVALID_OPTION', `${name} must be ${expected}, got ${describe(value)}`)
})
const positive = check.optionalPositive

/** The keys the client accepts, at the top and in its two nested options (docs/client.md's table lists each). */
export const clientOptionNames = Object.freeze({
  options: Object.freeze(['url', 'token', 'WebSocket', 'protocols', 'backoff', 'pingIntervalMs', 'pongTimeoutMs', 'requestTimeoutMs', 'queue', 'random', 'autoConnect']),
  backoff: Object.freeze(['baseMs', 'capMs', 'maxRetries', 'resetAfterMs']),
  queue: Object.freeze(['maxSize', 'maxAgeMs', 'overflow'])
})

/** The defaults of the client's options that have a fixed value, named as docs/client.md's table names them. */
export const clientDefaults = Object.freeze({
  'backoff.baseMs': 500,
  'backoff.capMs': 30_000,
  'backoff.maxRetries': Number.POSITIVE_INFINITY,
  'backoff.resetAfterMs': 10_000,
  pingIntervalMs: 25_000,
  pongTimeoutMs: 10_000,
  requestTimeoutMs: 10_000,
  'queue.maxSize': 100,
  'queue.maxAgeMs': 30_000,
  'queue.overflow': 'reject' as const,
  random: Math.random,
  autoConnect: true
})

/** Checks the client's options once, at construction: FST_RT_CLIENT_INVALID_OPTION on a wrong one. */
export function clientSettings (options: ClientOptions): ClientSettings {
  check.object('options', options, clientOptionNames.options, 'an object of client options')
  if (options.backoff !== undefined) check.object('backoff', options.backoff, clientOptionNames.backoff, 'an object { baseMs?, capMs?, maxRetries?, resetAfterMs? }')
  if (options.queue !== undefined) check.object('queue', options.queue, clientOptionNames.queue, 'an object { maxSize?, maxAgeMs?, overflow? }')
  if (options.token !== undefined && typeof options.token !== 'string' && typeof options.token !== 'function') check.fail('token', 'a string or a function', options.token)
  if (options.protocols !== undefined && typeof options.protocols !== 'string' && !(Array.isArray(options.protocols) && options.protocols.every((item) => typeof item === 'string'))) {
    check.fail('protocols', 'a string or an array of strings', options.protocols)
  }
  if (options.random !== undefined) check.func('random', options.random, 'a function () => number in [0, 1)')
  if (options.autoConnect !== undefined) check.boolean('autoConnect', options.autoConnect)
  if (options.WebSocket !== undefined) check.func('WebSocket', options.WebSocket, 'a WebSocket class')
  const Impl = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketClass }).WebSocket
  if (Impl === undefined) throw new RealtimeClientError('FST_RT_CLIENT_INVALID_OPTION', 'No WebSocket class: pass one as the WebSocket option (e.g. ws in Node)')
  if (typeof options.url !== 'string' && typeof options.url !== 'function') {
    throw new RealtimeClientError('FST_RT_CLIENT_INVALID_OPTION', 'url must be a string or a function')
  }
  return {
    url: options.url,
    token: options.token,
    protocols: options.protocols,
    WebSocket: Impl,
    baseMs: positive('backoff.baseMs', options.backoff?.baseMs, clientDefaults['backoff.baseMs']),
    capMs: positive('backoff.capMs', options.backoff?.capMs, clientDefaults['backoff.capMs']),
    maxRetries: positive('backoff.maxRetries', options.backoff?.maxRetries, clientDefaults['backoff.maxRetries']),
    resetAfterMs: positive('backoff.resetAfterMs', options.backoff?.resetAfterMs, clientDefaults['backoff.resetAfterMs']),
    pingIntervalMs: positive('pingIntervalMs', options.pingIntervalMs, clientDefaults.pingIntervalMs),
    pongTimeoutMs: positive('pongTimeoutMs', options.pongTimeoutMs, clientDefaults.pongTimeoutMs),
    requestTimeoutMs: positive('requestTimeoutMs', options.requestTimeoutMs, clientDefaults.requestTimeoutMs),
    queueMax: positive('queue.maxSize', options.queue?.maxSize, clientDefaults['queue.maxSize']),
    queueMaxAge: positive('queue.maxAgeMs', options.queue?.maxAgeMs, clientDefaults['queue.maxAgeMs']),
    overflow: check.oneOf('queue.overflow', options.queue?.overflow ?? clientDefaults['queue.overflow'], ['reject', 'drop-oldest'] as const),
    random: options.random ?? clientDefaults.random,
    autoConnect: options.autoConnect ?? clientDefaults.autoConnect
  }
}
