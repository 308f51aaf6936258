import { defaultHistoryLimits, type HistoryLimits } from '../hub/broker.js'
import { check } from './server-checks.js'

/** `history` ({ size, ttlMs }) checked over the defaults: the plugin's option and the MemoryBroker's. */
export function historyLimits (name: string, value: unknown): HistoryLimits {
  if (value === undefined) return defaultHistoryLimits
  const input = check.object(name, value, ['size', 'ttlMs'], 'an object { size, ttlMs }')
  return Object.freeze({
    size: check.optionalInteger(`${name}.size`, input.size, 0, Number.MAX_SAFE_INTEGER, defaultHistoryLimits.size),
    ttlMs: check.optionalInteger(`${name}.ttlMs`, input.ttlMs, 1, Number.MAX_SAFE_INTEGER, defaultHistoryLimits.ttlMs)
  })
}
