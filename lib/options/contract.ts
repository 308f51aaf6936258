import type { DefaultRealtimeRequest } from '../connection/request.js'
import { errors } from '../errors.js'
import type { AuthOptions } from '../messages/auth.js'
import { defaultRateLimit, type RateLimitOptions, type RateLimitSettings } from '../messages/rate-limit.js'
import type { ClientRoomsOptions, ContractOptions } from '../messages/types.js'
import { check, optionalInteger } from './server-checks.js'

/** The checked options of one contract route. */
export interface ContractSettings {
  readonly rateLimit: RateLimitSettings | null
  readonly auth: Required<AuthOptions> | null
  readonly rooms: ClientRoomsOptions | null
  readonly userId: ((request: DefaultRealtimeRequest) => string | null | Promise<string | null>) | null
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
  check.object('rateLimit', rate, Object.keys(defaultRateLimit), 'an object { perSecond, burst, bytesPerSecond?, bytesBurst? }')
  const positive = (name: keyof RateLimitSettings): number => optionalInteger(`rateLimit.${name}`, rate[name], 1, Number.MAX_SAFE_INTEGER, defaultRateLimit[name])
  return { perSecond: positive('perSecond'), burst: positive('burst'), bytesPerSecond: positive('bytesPerSecond'), bytesBurst: positive('bytesBurst') }
}

/** The options of `contractHandler()` with their defaults (docs/contracts.md and docs/rooms.md list them; a test keeps them equal). */
export const defaultContractOptions = Object.freeze({
  auth: null,
  rateLimit: defaultRateLimit,
  rooms: null,
  userId: null,
  onInvalid: 'reply',
  requestTimeout: 30_000,
  validateOutgoing: false,
  maxErrors: 10,
  maxDepth: 64,
  maxEchoLength: 64,
  maxInFlight: 32
})

const CONTRACT_KEYS = Object.keys(defaultContractOptions)

/** Checks the options of `contractHandler()`; throws FST_RT_INVALID_OPTION on the first problem. */
export function contractSettings (input: ContractOptions): ContractSettings {
  const options = check.object('options', input, CONTRACT_KEYS, 'an object of contract options') as ContractOptions
  const rooms = options.rooms ?? null
  if (rooms !== null && (typeof rooms !== 'object' || typeof rooms.authorize !== 'function')) {
    throw new errors.FST_RT_INVALID_OPTION('"rooms"', 'expected { authorize: (room, context) => boolean, notices?: boolean }')
  }
  if (rooms !== null) {
    check.object('rooms', rooms, ['authorize', 'notices'], 'an object { authorize, notices? }')
    if (rooms.notices !== undefined && typeof rooms.notices !== 'boolean' && typeof rooms.notices !== 'function') {
      check.fail('rooms.notices', 'a boolean or a function (room) => boolean', rooms.notices)
    }
  }
  if (options.userId !== undefined && typeof options.userId !== 'function') {
    throw new errors.FST_RT_INVALID_OPTION('"userId"', 'expected a function (request) => string | null')
  }
  const auth = options.auth ?? null
  if (auth !== null && (typeof auth !== 'object' || typeof auth.verify !== 'function')) {
    throw new errors.FST_RT_INVALID_OPTION('"auth"', 'expected { verify: (token, request) => userId | null, timeoutMs? }')
  }
  if (auth !== null) check.object('auth', auth, ['verify', 'timeoutMs'], 'an object { verify, timeoutMs? }')
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
    requestTimeout: positive('requestTimeout', options.requestTimeout, defaultContractOptions.requestTimeout),
    validateOutgoing: options.validateOutgoing ?? false,
    maxErrors: positive('maxErrors', options.maxErrors, defaultContractOptions.maxErrors),
    maxInFlight: positive('maxInFlight', options.maxInFlight, defaultContractOptions.maxInFlight),
    maxDepth: optionalInteger('maxDepth', options.maxDepth, 1, MAX_DEPTH, defaultContractOptions.maxDepth),
    maxEchoLength: optionalInteger('maxEchoLength', options.maxEchoLength, 1, MAX_ECHO_LENGTH, defaultContractOptions.maxEchoLength)
  }
}
