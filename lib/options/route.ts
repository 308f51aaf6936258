import type { FastifyRequest } from 'fastify'
import { check } from './server-checks.js'

/** permessage-deflate parameters (RFC 7692) and zlib tuning. */
export interface CompressOptions {
  /** Largest LZ77 window the server compresses with, 9-15. @default 15 */
  serverMaxWindowBits?: number
  /** Largest window the client may compress with, 8-15. Below 15, an offer without `client_max_window_bits` is declined (the limit could not be applied), as ws does. @default 15 */
  clientMaxWindowBits?: number
  /** Reset the server's compressor after each message (less memory, worse ratio). @default false */
  serverNoContextTakeover?: boolean
  /** Ask the client to reset its compressor after each message. @default false */
  clientNoContextTakeover?: boolean
  /** zlib compression level, 0-9. @default 1 (fastest, as aiohttp) */
  level?: number
  /** zlib memory level, 1-9. @default 8 */
  memLevel?: number
  /** Messages smaller than this many bytes are sent uncompressed. @default 0 (compress every message, as aiohttp) */
  threshold?: number
}

/** An allowed origin: an exact origin (`https://example.com`), `'*'` for any, or a RegExp. */
export type OriginRule = string | RegExp
/** Decides whether a browser origin may open a connection; `origin` is undefined when the request has none. */
export type OriginCheck = (origin: string | undefined, request: FastifyRequest) => boolean | Promise<boolean>

/** Options mirroring aiohttp's `WebSocketResponse`, global on `register` and overridable per route. */
export interface RealtimeRouteOptions {
  /** How long `close()` waits for the peer's close frame before dropping TCP, in ms (aiohttp `timeout`). @default 10000 */
  closeTimeout?: number
  /** Default wait of each `receive()`, in ms; null waits forever (aiohttp `receive_timeout`). @default null */
  receiveTimeout?: number | null
  /** Answer the peer's close frame automatically (aiohttp `autoclose`). @default true */
  autoClose?: boolean
  /** Answer pings and swallow pongs automatically (aiohttp `autoping`). @default true */
  autoPing?: boolean
  /** Send a ping after this many ms without received data; drop the connection if nothing arrives within half of it (aiohttp `heartbeat`). @default null */
  heartbeat?: number | null
  /** Subprotocols this route speaks; the first one the client offers that is in this list is chosen (aiohttp `protocols`). @default [] */
  protocols?: readonly string[]
  /** Refuse a handshake with 400 when the client offers subprotocols and none is supported (instead of upgrading without one). @default false */
  requireProtocol?: boolean
  /** Negotiate permessage-deflate: false, true, or parameters (aiohttp `compress`). @default false */
  compress?: boolean | CompressOptions
  /** Largest message accepted, in bytes after inflation; one byte more closes with 1009; 0 is unlimited (aiohttp `max_msg_size`). @default 4194304 */
  maxMsgSize?: number
  /**
   * Browser origins allowed to connect: rules, or a function. Unset, a same-host check: an `Origin`
   * whose host differs from the `Host` header is refused with 403, a request without `Origin`
   * passes. A same-host check cannot see DNS rebinding; set this in production.
   * @default undefined (same host only)
   */
  allowedOrigins?: OriginRule | readonly OriginRule[] | OriginCheck
  /** Bytes of received messages the handler has not read yet; above it reading from the socket pauses. @default 1048576 */
  readLimit?: number
  /** Bytes buffered for sending above which `send*()` waits until the data is written. @default 65536 */
  writeLimit?: number
  /** Unsent bytes above which the connection is closed with 4008 (slow consumer, reconnectable); 0 is unlimited. @default 8388608 */
  maxBufferedBytes?: number
}

export type RealtimePluginOptions = RealtimeRouteOptions

export interface NormalizedCompress {
  readonly serverMaxWindowBits: number
  readonly clientMaxWindowBits: number
  readonly serverNoContextTakeover: boolean
  readonly clientNoContextTakeover: boolean
  readonly level: number
  readonly memLevel: number
  readonly threshold: number
}

/** The checked, frozen settings one route's connections run with. */
export interface RouteSettings {
  readonly closeTimeout: number
  readonly receiveTimeout: number | null
  readonly autoClose: boolean
  readonly autoPing: boolean
  readonly heartbeat: number | null
  readonly protocols: readonly string[]
  readonly requireProtocol: boolean
  readonly compress: NormalizedCompress | null
  readonly maxMsgSize: number
  readonly allowedOrigins: OriginCheck | null
  readonly readLimit: number
  readonly writeLimit: number
  readonly maxBufferedBytes: number
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

export const defaultSettings: RouteSettings = Object.freeze({
  closeTimeout: 10_000,
  receiveTimeout: null,
  autoClose: true,
  autoPing: true,
  heartbeat: null,
  protocols: Object.freeze([]),
  requireProtocol: false,
  compress: null,
  maxMsgSize: 4 * 1024 * 1024,
  allowedOrigins: null,
  readLimit: 1024 * 1024,
  writeLimit: 64 * 1024,
  maxBufferedBytes: 8 * 1024 * 1024
})

const defaultCompress: NormalizedCompress = Object.freeze({
  serverMaxWindowBits: 15,
  clientMaxWindowBits: 15,
  serverNoContextTakeover: false,
  clientNoContextTakeover: false,
  level: 1,
  memLevel: 8,
  threshold: 0
})

const optionNames = new Set<string>(Object.keys(defaultSettings))
const compressNames = new Set<string>(Object.keys(defaultCompress))

const { duration, integer, boolean } = check

function fail (name: string, value: unknown, expected: string): never {
  return check.fail(name, expected, value)
}

function protocols (name: string, value: unknown): readonly string[] {
  if (!Array.isArray(value)) fail(name, value, 'an array of subprotocol tokens')
  for (const item of value) {
    if (typeof item !== 'string' || !TOKEN.test(item)) fail(name, value, 'an array of subprotocol tokens')
  }
  if (new Set(value).size !== value.length) fail(name, value, 'subprotocols without duplicates')
  return Object.freeze([...value as string[]])
}

function compress (value: unknown, base: NormalizedCompress | null): NormalizedCompress | null {
  if (value === false) return null
  if (value === true) return base ?? defaultCompress
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    fail('compress', value, 'a boolean or an object of permessage-deflate parameters')
  }
  const input = value as Record<string, unknown>
  for (const key of Object.keys(input)) {
    if (!compressNames.has(key)) fail(`compress.${key}`, input[key], `one of ${[...compressNames].join(', ')} (unknown option)`)
  }
  const from = base ?? defaultCompress
  const pick = <K extends keyof NormalizedCompress>(key: K, check: (name: string, v: unknown) => NormalizedCompress[K]): NormalizedCompress[K] =>
    input[key] === undefined ? from[key] : check(`compress.${key}`, input[key])
  return Object.freeze({
    serverMaxWindowBits: pick('serverMaxWindowBits', (n, v) => integer(n, v, 9, 15)),
    clientMaxWindowBits: pick('clientMaxWindowBits', (n, v) => integer(n, v, 8, 15)),
    serverNoContextTakeover: pick('serverNoContextTakeover', boolean),
    clientNoContextTakeover: pick('clientNoContextTakeover', boolean),
    level: pick('level', (n, v) => integer(n, v, 0, 9)),
    memLevel: pick('memLevel', (n, v) => integer(n, v, 1, 9)),
    threshold: pick('threshold', (n, v) => integer(n, v, 0, Number.MAX_SAFE_INTEGER))
  })
}

function originMatcher (value: unknown): OriginCheck {
  if (typeof value === 'function') return value as OriginCheck
  const rules = Array.isArray(value) ? value as unknown[] : [value]
  if (rules.length === 0) fail('allowedOrigins', value, 'at least one origin')
  const exact = new Set<string>()
  const patterns: RegExp[] = []
  let any = false
  for (const rule of rules) {
    if (rule === '*') any = true
    else if (typeof rule === 'string' && rule.length > 0) exact.add(rule.toLowerCase())
    else if (rule instanceof RegExp) patterns.push(rule)
    else fail('allowedOrigins', value, 'origin strings, RegExps or a function (origin, request) => boolean')
  }
  // A request without Origin does not come from a browser page, so there is no site to protect.
  return (origin) => {
    if (origin === undefined || any) return true
    const lower = origin.toLowerCase()
    return exact.has(lower) || patterns.some((pattern) => { pattern.lastIndex = 0; return pattern.test(origin) })
  }
}

/**
 * Checks `input` over `base` (the global settings, or the defaults) and returns frozen settings.
 * Throws FST_RT_INVALID_OPTION naming the option and the value on the first problem.
 */
export function normalizeOptions (input: unknown, base: RouteSettings = defaultSettings): RouteSettings {
  if (input === undefined || input === true) return base
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    fail('options', input, 'an object')
  }
  const options = input as Record<string, unknown>
  for (const key of Object.keys(options)) {
    if (!optionNames.has(key)) fail(key, options[key], `one of ${[...optionNames].join(', ')} (unknown option)`)
  }
  const has = (key: keyof RouteSettings): boolean => options[key] !== undefined
  return Object.freeze({
    closeTimeout: has('closeTimeout') ? duration('closeTimeout', options.closeTimeout, false) as number : base.closeTimeout,
    receiveTimeout: has('receiveTimeout') ? duration('receiveTimeout', options.receiveTimeout, true) : base.receiveTimeout,
    autoClose: has('autoClose') ? boolean('autoClose', options.autoClose) : base.autoClose,
    autoPing: has('autoPing') ? boolean('autoPing', options.autoPing) : base.autoPing,
    heartbeat: has('heartbeat') ? duration('heartbeat', options.heartbeat, true) : base.heartbeat,
    protocols: has('protocols') ? protocols('protocols', options.protocols) : base.protocols,
    requireProtocol: has('requireProtocol') ? boolean('requireProtocol', options.requireProtocol) : base.requireProtocol,
    compress: has('compress') ? compress(options.compress, base.compress) : base.compress,
    maxMsgSize: has('maxMsgSize') ? integer('maxMsgSize', options.maxMsgSize, 0, Number.MAX_SAFE_INTEGER) : base.maxMsgSize,
    allowedOrigins: has('allowedOrigins') ? originMatcher(options.allowedOrigins) : base.allowedOrigins,
    readLimit: has('readLimit') ? integer('readLimit', options.readLimit, 1, Number.MAX_SAFE_INTEGER) : base.readLimit,
    writeLimit: has('writeLimit') ? integer('writeLimit', options.writeLimit, 0, Number.MAX_SAFE_INTEGER) : base.writeLimit,
    maxBufferedBytes: has('maxBufferedBytes') ? integer('maxBufferedBytes', options.maxBufferedBytes, 0, Number.MAX_SAFE_INTEGER) : base.maxBufferedBytes
  })
}
