import type { FastifyRequest } from 'fastify'
import { errors } from '../errors.js'
import { optionalInteger } from '../options.js'
import type { AuthOptions } from './auth.js'
import { defaultRateLimit, type RateLimitOptions, type RateLimitSettings } from './rate-limit.js'
import type { ClientRoomsOptions, ContractOptions } from './types.js'

/** The checked options of one contract route. */
export interface ContractSettings {
  readonly rateLimit: RateLimitSettings | null
  readonly auth: Required<AuthOptions> | null
  readonly rooms: ClientRoomsOptions | null
  readonly userId: ((request: FastifyRequest) => string | null | Promise<string | null>) | null
  readonly onInvalid: 'reply' | 1007 | 1008
  readonly requestTimeout: number
  readonly validateOutgoing: boolean
  readonly maxErrors: number
  readonly maxInFlight: number
  readonly maxDepth: number
  readonly maxEchoLength: number
}

// Bounds of the options: deeper data could overflow the stack in a recursive schema's error listing,
// and longer echoes defeat their purpose.
const MAX_DEPTH = 256
const MAX_ECHO_LENGTH = 1024

/** The checked settings of the `rateLimit` option, or null for `false`. */
function rateLimitSettings (option: RateLimitOptions | false | undefined): RateLimitSettings | null {
  if (option === false) return null
  const rate = option ?? defaultRateLimit
  if (typeof rate !== 'object' || rate === null) {
    throw new errors.FST_RT_INVALID_OPTION('"rateLimit"', 'expected { perSecond, burst, bytesPerSecond?, bytesBurst? } or false')
  }
  const positive = (name: keyof RateLimitSettings): number => optionalInteger(`rateLimit.${name}`, rate[name], 1, Number.MAX_SAFE_INTEGER, defaultRateLimit[name])
  return { perSecond: positive('perSecond'), burst: positive('burst'), bytesPerSecond: positive('bytesPerSecond'), bytesBurst: positive('bytesBurst') }
}

/** Checks the options of `contractHandler()`; throws FST_RT_INVALID_OPTION on the first problem. */
export function contractSettings (options: ContractOptions): ContractSettings {
  const rooms = options.rooms ?? null
  if (rooms !== null && (typeof rooms !== 'object' || typeof rooms.authorize !== 'function')) {
    throw new errors.FST_RT_INVALID_OPTION('"rooms"', 'expected { authorize: (room, context) => boolean, notices?: boolean }')
  }
  if (options.userId !== undefined && typeof options.userId !== 'function') {
    throw new errors.FST_RT_INVALID_OPTION('"userId"', 'expected a function (request) => string | null')
  }
  const auth = options.auth ?? null
  if (auth !== null && (typeof auth !== 'object' || typeof auth.verify !== 'function')) {
    throw new errors.FST_RT_INVALID_OPTION('"auth"', 'expected { verify: (token, request) => userId | null, timeoutMs? }')
  }
  if (auth !== null && options.userId !== undefined) {
    throw new errors.FST_RT_INVALID_OPTION('"userId"', 'with "auth", the user id is what auth.verify returns')
  }
  const onInvalid = options.onInvalid ?? 'reply'
  if (onInvalid !== 'reply' && onInvalid !== 1007 && onInvalid !== 1008) {
    throw new errors.FST_RT_INVALID_OPTION('"onInvalid"', `expected 'reply', 1007 or 1008, got ${String(onInvalid)}`)
  }
  const positive = (name: string, value: number | undefined, fallback: number): number => optionalInteger(name, value, 1, 2 ** 31 - 1, fallback)
  if (options.validateOutgoing !== undefined && typeof options.validateOutgoing !== 'boolean') {
    throw new errors.FST_RT_INVALID_OPTION('"validateOutgoing"', `expected a boolean, got ${String(options.validateOutgoing)}`)
  }
  return {
    rateLimit: rateLimitSettings(options.rateLimit),
    auth: auth === null ? null : { verify: auth.verify, timeoutMs: positive('auth.timeoutMs', auth.timeoutMs, 10_000) },
    rooms,
    userId: options.userId ?? null,
    onInvalid,
    requestTimeout: positive('requestTimeout', options.requestTimeout, 30_000),
    validateOutgoing: options.validateOutgoing ?? false,
    maxErrors: positive('maxErrors', options.maxErrors, 10),
    maxInFlight: positive('maxInFlight', options.maxInFlight, 32),
    maxDepth: optionalInteger('maxDepth', options.maxDepth, 1, MAX_DEPTH, 64),
    maxEchoLength: optionalInteger('maxEchoLength', options.maxEchoLength, 1, MAX_ECHO_LENGTH, 64)
  }
}
