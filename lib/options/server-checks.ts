import { errors } from '../errors.js'
import { checkers, describe } from './checks.js'

/** The checkers of the server's options: every problem is FST_RT_INVALID_OPTION naming the option and the value. */
export const check = checkers((name, expected, value) => {
  throw new errors.FST_RT_INVALID_OPTION(`"${name}"`, `expected ${expected}, got ${describe(value)}`)
})

/** `fallback` when `value` is undefined, else `value` checked as an integer in [min, max] (FST_RT_INVALID_OPTION otherwise). */
export const optionalInteger = check.optionalInteger
