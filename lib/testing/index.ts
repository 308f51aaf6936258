// `fastify-realtime/testing`: the in-process test client of an app (test-client.ts), and the
// conformance suite a broker or presence store proves itself with.
// It needs no test framework: a check is a named async function that rejects with
// FST_RT_BROKER_RULE, naming the rule, when the broker breaks it.
import { brokerChecks, type BrokerCheck, type BrokerConformanceOptions } from './broker-checks.js'
import { presenceChecks, type PresenceConformanceOptions } from './presence-checks.js'

export { brokerChecks, presenceChecks }
export type { BrokerCheck, BrokerConformanceOptions, PresenceConformanceOptions }
export { entry } from './presence-checks.js'
export { brokerRules, type BrokerRule } from './rules.js'
export { Recorder } from './recorder.js'
export type { BrokerRuleError } from './expect.js'
export { connectTest, TestClient } from './test-client.js'
export type { ConnectTestOptions, Received, TestClientEvents } from './test-client.js'

/** A test runner's `test(name, fn)`: node:test's `test`, or `(name, fn) => t.test(name, fn)` with tap. */
export type RegisterTest = (name: string, fn: () => Promise<void>) => unknown

/**
 * Registers every check as a test of your runner:
 * `brokerConformance(test, { create: (limits) => new MyBroker(limits) })`, with node:test's
 * `test`; with `presence`, the presence store's checks too.
 */
export function brokerConformance (test: RegisterTest, options: BrokerConformanceOptions, presence?: PresenceConformanceOptions): void {
  const checks = [...brokerChecks(options), ...(presence === undefined ? [] : presenceChecks(presence))]
  for (const check of checks) test(check.name, () => check.run())
}

export interface CheckFailure {
  readonly check: BrokerCheck
  /** Usually FST_RT_BROKER_RULE with the rule in `rule`; anything else the broker threw otherwise. */
  readonly error: unknown
}

/** Runs checks one after another, without a test runner; resolves with the failures (none: the broker conforms). */
export async function runChecks (checks: readonly BrokerCheck[]): Promise<CheckFailure[]> {
  const failures: CheckFailure[] = []
  for (const check of checks) {
    try {
      await check.run()
    } catch (error) {
      failures.push({ check, error })
    }
  }
  return failures
}
