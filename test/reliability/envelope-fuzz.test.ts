/**
 * A seeded, bounded share of the structured fuzzer (test/support/envelope-fuzz.ts): hostile envelopes of
 * every client message type on every route kind, on the memory broker and a real Redis. `npm run
 * fuzz` runs a million messages. Replay a run with the seed it prints:
 * `FUZZ_SEED=<seed> FUZZ_MESSAGES=<n> npx tap test/reliability/envelope-fuzz.test.ts`.
 */
import t from 'tap'
import { envelopeFuzzSettings, problems, runEnvelopeFuzz } from '../support/envelope-fuzz.js'
import { redisUnavailable, redisUrl } from '../support/redis-server.js'
import '../support/process-guard.js'

const { seed, messages } = envelopeFuzzSettings(12_000)
const unavailable = redisUnavailable()
if (unavailable !== null) t.comment(unavailable)

t.test(`hostile envelopes on every route kind and broker: no crash, no 1011, no data past a schema, bounded replies (seed ${seed}, ${messages} messages)`, async (t) => {
  t.comment(`envelope fuzz seed ${seed}, ${messages} messages (replay with FUZZ_SEED=${seed} FUZZ_MESSAGES=${messages})`)
  const summary = await runEnvelopeFuzz({ seed, messages, redisUrl: unavailable === null ? await redisUrl(t) : null, concurrency: 16, maxDurationMs: 40_000 })
  const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`
  t.comment(`sent ${summary.messages} messages on ${summary.connections} connections in ${summary.durationMs} ms, brokers ${summary.brokers.join(', ')}`)
  t.comment(`server rss ${mib(summary.start.rss)} → ${mib(summary.end?.rss ?? 0)}, heap ${mib(summary.start.heapUsed)} → ${mib(summary.end?.heapUsed ?? 0)}`)
  t.comment(`replies ${JSON.stringify(summary.replies)}`)
  t.comment(`closes ${JSON.stringify(summary.closes)}`)
  t.same(problems(summary), [], 'nothing wrong')
  t.same(summary.brokers, unavailable === null ? ['memory', 'redis'] : ['memory'], 'every broker there is')
  t.ok(summary.messages >= Math.min(messages, 2000), `sent at least 2000 messages or all of them (${summary.messages})`)
  for (const route of ['/raw', '/contract', '/strict', '/limited', '/rooms']) {
    t.ok(Object.keys(summary.closes).some((key) => key.includes(` ${route} `)), `${route} was fuzzed`)
  }
})
