/**
 * Seeded fuzzing of the wire (raw frames) and of contract routes (random JSON): a short run here;
 * `npm run fuzz` runs the same cases for longer (bench/fuzz.ts). Replay a run with the seed it
 * prints: `FUZZ_SEED=<seed> FUZZ_ITERATIONS=<n> npx tap test/reliability/fuzz.test.ts`.
 */
import t from 'tap'
import { Random, frameCase, fuzzSettings, jsonCase, runFuzz } from '../support/fuzz.js'
import '../support/process-guard.js'

const { seed, iterations } = fuzzSettings(400)

t.test('the same seed gives the same cases', async (t) => {
  const a = new Random(seed)
  const b = new Random(seed)
  for (let i = 0; i < 20; i++) {
    const x = frameCase(a)
    const y = frameCase(b)
    t.same(x.chunks, y.chunks)
    t.same(jsonCase(a).messages, jsonCase(b).messages)
  }
})

t.test(`random frames and random JSON never crash the server, every connection ends, and it keeps serving (seed ${seed}, ${iterations} cases)`, async (t) => {
  t.comment(`fuzz seed ${seed}, ${iterations} iterations (replay with FUZZ_SEED=${seed} FUZZ_ITERATIONS=${iterations})`)
  const processErrors: string[] = []
  const onRejection = (reason: unknown): void => { processErrors.push(`unhandledRejection: ${String((reason as Error)?.stack ?? reason)}`) }
  const onException = (error: Error): void => { processErrors.push(`uncaughtException: ${error.stack ?? String(error)}`) }
  process.on('unhandledRejection', onRejection)
  process.on('uncaughtException', onException)
  t.teardown(() => {
    process.removeListener('unhandledRejection', onRejection)
    process.removeListener('uncaughtException', onException)
  })

  const summary = await runFuzz({ seed, iterations, batchSize: 50, concurrency: 12, boundMs: 4000, maxDurationMs: 25_000 })

  t.comment(`ran ${summary.ran} cases (${summary.frameCases} frame, ${summary.jsonCases} JSON) in ${summary.durationMs} ms`)
  t.comment(`frame cases ended with ${JSON.stringify(summary.frameOutcomes)}`)
  t.comment(`JSON cases ended with ${JSON.stringify(summary.jsonOutcomes)}`)
  t.comment(`server endings ${JSON.stringify(summary.serverEndings)}`)
  t.same(processErrors, [], 'no unhandled rejection or uncaught exception')
  t.same(summary.failures, [], 'every case met its oracle and every connection ended within the bound')
  t.equal(summary.leftOpen, 0, 'the server had no connection left after any batch')
  t.ok(summary.batches.every((batch) => batch.echoed), 'after every batch a fresh client still gets its echo')
  t.ok(summary.ran >= Math.min(iterations, 100), `ran at least 100 cases or all of them (${summary.ran})`)

  // Memory: the heap after a forced GC (or RSS without one), first batch against the last.
  const first = summary.batches[0]
  const last = summary.batches[summary.batches.length - 1]
  if (first !== undefined && last !== undefined && summary.batches.length > 1) {
    const measure = summary.gcForced ? 'heapUsed' : 'rss'
    const growth = last[measure] - first[measure]
    const bound = Math.max(32 * 2 ** 20, first[measure] / 2)
    t.comment(`${measure} after batch 1: ${(first[measure] / 2 ** 20).toFixed(1)} MiB, after batch ${summary.batches.length}: ${(last[measure] / 2 ** 20).toFixed(1)} MiB`)
    t.ok(growth < bound, `${measure} grew by ${(growth / 2 ** 20).toFixed(1)} MiB, under ${(bound / 2 ** 20).toFixed(0)} MiB`)
  }
})
