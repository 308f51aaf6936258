// The one set of option checkers: durations, integers, numbers, booleans, strings, tokens, functions,
// enums and option objects. It imports nothing, so the browser client uses it too: each side makes
// its checkers with its own error (FST_RT_INVALID_OPTION on the server, the client's own code there).

/** Throws the caller's coded error for option `name`. */
export type OptionFailure = (name: string, expected: string, value: unknown) => never

// Node timers overflow above this (about 24.8 days) and fire at once.
export const MAX_DELAY = 2 ** 31 - 1
/** An HTTP token (RFC 9110): subprotocols, cookie-safe names. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

/** `value` as an error message shows it: what was given, never a stack of JSON quirks. */
export function describe (value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  // JSON shows Infinity and NaN as null, and a RegExp in an array as {}: the message would name the wrong value.
  if (typeof value === 'number' || typeof value === 'bigint') return String(value)
  if (Array.isArray(value)) return `[${value.map(describe).join(',')}]`
  if (typeof value === 'function') return 'a function'
  if (value instanceof RegExp) return String(value)
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}

export interface Checkers {
  readonly fail: OptionFailure
  /** A duration in ms, 1 to MAX_DELAY; null too when `nullable`. */
  duration (name: string, value: unknown, nullable: boolean): number | null
  /** An integer in [min, max]. */
  integer (name: string, value: unknown, min: number, max: number): number
  /** `fallback` when `value` is undefined, else `integer()`. */
  optionalInteger (name: string, value: unknown, min: number, max: number, fallback: number): number
  /** `fallback` when `value` is undefined, else a number above 0 (Infinity included). */
  optionalPositive (name: string, value: unknown, fallback: number): number
  boolean (name: string, value: unknown): boolean
  /** A non-empty string. */
  string (name: string, value: unknown): string
  /** An HTTP token (a subprotocol, a cookie name). */
  token (name: string, value: unknown): string
  func<F extends (...args: never[]) => unknown> (name: string, value: unknown, expected: string): F
  /** One of `allowed`. */
  oneOf<T> (name: string, value: unknown, allowed: readonly T[]): T
  /** A plain object whose keys are all in `allowed` (an unknown key is named with its path). */
  object (name: string, value: unknown, allowed: readonly string[], expected: string): Record<string, unknown>
}

/** The checkers, throwing with `fail`. */
export function checkers (fail: OptionFailure): Checkers {
  const integer = (name: string, value: unknown, min: number, max: number): number => {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) fail(name, `an integer from ${min} to ${max}`, value)
    return value
  }
  return {
    fail,
    duration (name, value, nullable) {
      if (value === null && nullable) return null
      if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > MAX_DELAY) {
        fail(name, `${nullable ? 'null or ' : ''}a duration in ms between 1 and ${MAX_DELAY}`, value)
      }
      return value
    },
    integer,
    optionalInteger: (name, value, min, max, fallback) => value === undefined ? fallback : integer(name, value, min, max),
    optionalPositive (name, value, fallback) {
      if (value === undefined) return fallback
      if (typeof value !== 'number' || Number.isNaN(value) || value <= 0) fail(name, 'a positive number', value)
      return value
    },
    boolean (name, value) {
      if (typeof value !== 'boolean') fail(name, 'a boolean', value)
      return value
    },
    string (name, value) {
      if (typeof value !== 'string' || value.length === 0) fail(name, 'a non-empty string', value)
      return value
    },
    token (name, value) {
      if (typeof value !== 'string' || !TOKEN.test(value)) fail(name, 'a token (letters, digits and !#$%&\'*+-.^_`|~)', value)
      return value
    },
    func<F> (name: string, value: unknown, expected: string): F {
      if (typeof value !== 'function') fail(name, expected, value)
      return value as F
    },
    oneOf<T> (name: string, value: unknown, allowed: readonly T[]): T {
      if (!allowed.includes(value as T)) fail(name, `one of ${allowed.map(describe).join(', ')}`, value)
      return value as T
    },
    object (name, value, allowed, expected) {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(name, expected, value)
      const input = value as Record<string, unknown>
      for (const key of Object.keys(input)) {
        if (!allowed.includes(key)) fail(`${name}.${key}`, `one of ${allowed.join(', ')} (unknown option)`, input[key])
      }
      return input
    }
  }
}
