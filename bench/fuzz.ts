/**
 * The long fuzz run: the cases of test/reliability/fuzz.test.ts, many more of them. Run with
 * `npm run fuzz`; FUZZ_SEED and FUZZ_ITERATIONS (default 20000) choose the run, FUZZ_MINUTES
 * (default 30) bounds it. Prints one line per 10 batches and a summary; exits 1 on any failure,
 * unhandled rejection or uncaught exception. Everything listens on 127.0.0.1.
 */
import { fuzzSettings, runFuzz, type BatchReport } from '../test/fuzz.js'

const { seed, iterations } = fuzzSettings(20_000)
const minutes = Number(process.env.FUZZ_MINUTES ?? 30)
const processErrors: string[] = []
process.on('unhandledRejection', (reason) => { processErrors.push(`unhandledRejection: ${String((reason as Error)?.stack ?? reason)}`) })
process.on('uncaughtException', (error) => { processErrors.push(`uncaughtException: ${error.stack ?? String(error)}`) })

const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`

console.log(`fuzz: seed ${seed}, ${iterations} iterations, at most ${minutes} min (replay with FUZZ_SEED=${seed} FUZZ_ITERATIONS=${iterations})`)
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
const distinctErrors = [...new Set(processErrors.map((e) => e.split('\n').slice(0, 6).join('\n')))]
console.log(`  unhandled rejections / uncaught exceptions: ${processErrors.length} (${distinctErrors.length} distinct)`)
for (const error of distinctErrors) console.log(error.replace(/^/gm, '    '))
process.exitCode = summary.failures.length === 0 && processErrors.length === 0 ? 0 : 1
