/**
 * Fails the test during which the process sees an `uncaughtException` or an `unhandledRejection`.
 *
 * Without this, tap routes such an error to the test whose async context raised it, or swallows it
 * when a listener of the test's own is installed; either way a server that would have crashed in
 * production could pass. Here every test file (through test/support/helpers.ts, or by importing this module)
 * listens for both events: the innermost running test fails with the error, and one that fires
 * between tests fails the whole file through its exit code.
 */
import type { Test } from 'tap'

const running: Test[] = []
const betweenTests: string[] = []

function describe (error: unknown): string {
  return error instanceof Error ? (error.stack ?? error.message) : String(error)
}

function fault (event: 'uncaughtException' | 'unhandledRejection', error: unknown): void {
  const test = running[running.length - 1]
  if (test === undefined) {
    betweenTests.push(`${event}: ${describe(error)}`)
    return
  }
  test.fail(`the process saw an ${event}: nothing a test does may raise one`, { diagnostic: true, error: describe(error) })
}

// Only in a test process: a benchmark that imports a test module (bench/fuzz.ts) counts faults
// itself, and must not load tap at all (its root test would end the process after 30 s).
if (process.env.TAP === '1') {
  const { default: t } = await import('tap')
  process.on('uncaughtException', (error) => { fault('uncaughtException', error) })
  process.on('unhandledRejection', (reason) => { fault('unhandledRejection', reason) })
  t.beforeEach((test) => { running.push(test) })
  t.afterEach((test) => { running.splice(running.lastIndexOf(test), 1) })
  process.on('exit', () => {
    if (betweenTests.length === 0) return
    process.stderr.write(`process faults outside any test:\n${betweenTests.join('\n')}\n`)
    process.exitCode = 1
  })
}
