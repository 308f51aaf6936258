import { isDeepStrictEqual } from 'node:util'
import { errors } from '../errors.js'
import type { BrokerRule } from './rules.js'

/** An FST_RT_BROKER_RULE error, with the broken rule in `rule`. */
export type BrokerRuleError = InstanceType<typeof errors.FST_RT_BROKER_RULE> & { readonly rule: BrokerRule }

export function broken (rule: BrokerRule, detail: string): BrokerRuleError {
  return Object.assign(new errors.FST_RT_BROKER_RULE(rule, detail), { rule })
}

/** Throws FST_RT_BROKER_RULE naming `rule` unless `condition` holds. */
export function expect (rule: BrokerRule, condition: boolean, what: string): void {
  if (!condition) throw broken(rule, what)
}

/**
 * Throws FST_RT_BROKER_RULE naming `rule` unless `actual` equals `expected` as JSON (values the
 * suite compares are never undefined at the top): a property set to undefined is one left out.
 */
export function same (rule: BrokerRule, actual: object | number | string, expected: object | number | string, what: string): void {
  const [got, wanted] = [JSON.stringify(actual), JSON.stringify(expected)]
  if (!isDeepStrictEqual(JSON.parse(got), JSON.parse(wanted))) throw broken(rule, `${what}: expected ${wanted}, got ${got}`)
}
