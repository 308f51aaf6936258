/**
 * The long fuzz runs, `npm run fuzz`: the frame fuzzer of test/reliability/fuzz.test.ts and the
 * structured fuzzer of test/reliability/envelope-fuzz.test.ts, many more cases of each.
 *
 * - FUZZ_KIND: `frames`, `envelopes` or both (the default), one after the other.
 * - FUZZ_SEED: the seed of both (a fresh one when unset; printed for replay).
 * - FUZZ_ITERATIONS: frame fuzz cases (default 20000). FUZZ_MESSAGES: envelope fuzz messages
 *   (default 1000000).
 * - FUZZ_MINUTES: a bound per fuzzer (default 60).
 *
 * The envelope fuzz runs its server in a process of its own and, when redis-server is installed (or
 * REDIS_URL is set), against a Redis broker too. Prints progress and a summary; exits 1 on any
 * failure, crash, unhandled rejection or uncaught exception. Everything listens on 127.0.0.1.
 */
import type { Test } from 'tap'
import { fuzzSettings, runFuzz, type BatchReport } from '../test/support/fuzz.js'
import { envelopeFuzzSettings, problems, runEnvelopeFuzz } from '../test/support/envelope-fuzz.js'
import { redisUnavailable, startRedisServer } from '../test/support/redis-server.js'

const kind = process.env.FUZZ_KIND ?? 'both'
if (!['frames', 'envelopes', 'both'].includes(kind)) throw new TypeError(`FUZZ_KIND must be frames, envelopes or both, got ${kind}`)
const minutes = Number(process.env.FUZZ_MINUTES ?? 60)
const processErrors: string[] = []
process.on('unhandledRejection', (reason) => { processErrors.push(`unhandledRejection: ${String((reason as Error)?.stack ?? reason)}`) })
process.on('uncaughtException', (error) => { processErrors.push(`uncaughtException: ${error.stack ?? String(error)}`) })

const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`
let failed = false

async function frames (): Promise<void> {
  const { seed, iterations } = fuzzSettings(20_000)
  console.log(`## frame fuzz: seed ${seed}, ${iterations} iterations, at most ${minutes} min (replay with FUZZ_KIND=frames FUZZ_SEED=${seed} FUZZ_ITERATIONS=${iterations})`)
  const summary = await runFuzz({
    seed,
    iterations,
    batchSize: 100,
    concurrency: 16,
    boundMs: 4000,
    maxDurationMs: minutes * 60_000,
    onBatch (batch: BatchReport) {
      if (batch.index % 10 === 0) {
        console.log(`batch ${batch.index}: heap ${mib(batch.heapUsed)}, rss ${mib(batch.rss)}, ${batch.elapsedMs} ms, echo ${batch.echoed ? 'ok' : 'FAILED'}, process errors so far ${processErrors.length}`)
      }
    }
  })
  const first = summary.batches[0]
  const last = summary.batches[summary.batches.length - 1]
  console.log('\nsummary')
  console.log(`  seed ${summary.seed}, ran ${summary.ran} of ${summary.iterations} cases (${summary.frameCases} frame, ${summary.jsonCases} JSON) in ${(summary.durationMs / 1000).toFixed(1)} s`)
  console.log(`  frame cases ended with ${JSON.stringify(summary.frameOutcomes)}`)
  console.log(`  JSON cases ended with ${JSON.stringify(summary.jsonOutcomes)}`)
  console.log(`  server endings ${JSON.stringify(summary.serverEndings)}`)
  console.log(`  contract replies ${JSON.stringify(summary.replies)}`)
  console.log(`  error logs ${JSON.stringify(summary.errorLogs)}`)
  if (first !== undefined && last !== undefined) {
    console.log(`  heap after GC (${summary.gcForced ? 'forced' : 'not forced'}): batch 0 ${mib(first.heapUsed)}, batch ${last.index} ${mib(last.heapUsed)}; rss ${mib(first.rss)} → ${mib(last.rss)}`)
  }
  console.log(`  connections left open after a batch: ${summary.leftOpen}; batches without an echo: ${summary.batches.filter((b) => !b.echoed).length}`)
  // Failures of one kind repeat: print each distinct reason once, with its first case and a count.
  const distinct = new Map<string, { first: (typeof summary.failures)[number], count: number }>()
  for (const failure of summary.failures) {
    const seen = distinct.get(failure.why)
    if (seen === undefined) distinct.set(failure.why, { first: failure, count: 1 })
    else seen.count++
  }
  console.log(`  failures: ${summary.failures.length}`)
  for (const [why, { first: f, count }] of distinct) console.log(`    ${count} × ${why} (first: case ${f.case}, ${f.kind}: ${f.label})`)
  if (summary.failures.length > 0) failed = true
}

async function envelopes (): Promise<void> {
  const { seed, messages } = envelopeFuzzSettings(1_000_000)
  const cleanups: Array<() => Promise<void>> = []
  let redisUrl: string | null = process.env.REDIS_URL ?? null
  const unavailable = redisUnavailable()
  if (redisUrl === null && unavailable === null) {
    // startRedisServer stops the server on a test's teardown: here, at the end of the run.
    const fakeTest = { teardown (fn: () => Promise<void>) { cleanups.push(fn) } } as unknown as Test
    redisUrl = (await startRedisServer(fakeTest)).url
  } else if (redisUrl === null) {
    console.log(unavailable)
  }
  console.log(`## envelope fuzz: seed ${seed}, ${messages} messages, brokers memory${redisUrl === null ? '' : ' and redis'}, at most ${minutes} min (replay with FUZZ_KIND=envelopes FUZZ_SEED=${seed} FUZZ_MESSAGES=${messages})`)
  try {
    const summary = await runEnvelopeFuzz({
      seed,
      messages,
      redisUrl,
      concurrency: 32,
      maxDurationMs: minutes * 60_000,
      // Past closeTimeout (10 s) and the fuzz routes' request and auth timeouts: every timer has run.
      idleMs: 15_000,
      onProgress ({ messages: sent, connections, elapsedMs, failures }) {
        console.log(`${sent} messages on ${connections} connections, ${(elapsedMs / 1000).toFixed(0)} s, ${Math.round(sent / (elapsedMs / 1000))} messages/s, failures ${failures}`)
      }
    })
    const found = problems(summary)
    const end = summary.end
    console.log('\nsummary')
    console.log(`  seed ${summary.seed}: ${summary.messages} messages on ${summary.connections} connections in ${(summary.durationMs / 1000).toFixed(1)} s (${Math.round(summary.messages / (summary.durationMs / 1000))} messages/s), brokers ${summary.brokers.join(', ')}`)
    console.log(`  crashes: ${summary.crashed === null ? 0 : 1} (server process), uncaught exceptions and unhandled rejections in the server: ${end?.faults ?? 'unknown'}, 1011 closes: ${end?.internalErrors ?? 'unknown'}, schema violations in handlers: ${end?.violations ?? 'unknown'}`)
    if (end !== null) {
      console.log(`  server after a forced GC: rss ${mib(summary.start.rss)} → ${mib(end.rss)}, heap ${mib(summary.start.heapUsed)} → ${mib(end.heapUsed)}; CPU ${((end.cpuMicros - summary.start.cpuMicros) / 1e6).toFixed(1)} s (${Math.round((end.cpuMicros - summary.start.cpuMicros) / summary.messages)} µs per message)`)
      if (summary.idle !== null) console.log(`  server 15 s later, after a forced GC: rss ${mib(summary.idle.rss)}, heap ${mib(summary.idle.heapUsed)}`)
      console.log(`  server endings ${JSON.stringify(end.endings)}`)
      console.log(`  server error logs ${JSON.stringify(end.errorLogs)}`)
    }
    console.log(`  replies ${JSON.stringify(summary.replies)}`)
    console.log(`  closes ${JSON.stringify(summary.closes)}`)
    console.log(`  problems: ${found.length}`)
    for (const problem of found) console.log(`    ${problem}`)
    if (found.length > 0) failed = true
  } finally {
    for (const cleanup of cleanups) await cleanup()
  }
}

if (kind !== 'envelopes') await frames()
if (kind !== 'frames') await envelopes()
const distinctErrors = [...new Set(processErrors.map((e) => e.split('\n').slice(0, 6).join('\n')))]
console.log(`unhandled rejections / uncaught exceptions in this process: ${processErrors.length} (${distinctErrors.length} distinct)`)
for (const error of distinctErrors) console.log(error.replace(/^/gm, '    '))
process.exitCode = !failed && processErrors.length === 0 ? 0 : 1
