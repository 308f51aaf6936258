/**
 * The Redis broker on one Redis against a 3-master Redis Cluster with sharded pub/sub, in the same
 * run: publish throughput and end-to-end lag. Run with `npm run bench:redis-cluster`; see
 * bench/README.md. Needs redis-server 7 and redis-cli.
 */
import { performance } from 'node:perf_hooks'
import { RedisBroker } from '../lib/hub/redis/index.js'
import type { RoomMessage } from '../lib/hub/broker.js'
import { freePort } from '../test/support/helpers.js'
import { clusterUnavailable, startRedisCluster } from '../test/support/redis-cluster.js'
import { redisServerPath, spawnServer, stopServer } from '../test/support/redis-server.js'
import { gitState, machine, median, num, spread } from './harness.js'
import { procCpu } from './processes.js'

const ROUNDS = Number(process.env.REDIS_CLUSTER_ROUNDS ?? 3)
/** Messages of the throughput phase, published with FLIGHT in flight over ROOMS rooms. */
const BURST = Number(process.env.REDIS_CLUSTER_BURST ?? 20_000)
const FLIGHT = 64
const ROOMS = 100
/** Messages of the lag phase, paced at PACED_PER_S (1 ms apart: the lag without queueing). */
const PACED = 2000
const PACED_PER_S = 1000
/** The whole run gives up after this. */
const RUN_LIMIT_MS = 10 * 60_000

const unavailable = await clusterUnavailable()
if (unavailable !== null) {
  console.log(unavailable)
  process.exit(1)
}
const limit = setTimeout(() => {
  console.error(`bench:redis-cluster gave up after ${RUN_LIMIT_MS / 60_000} minutes`)
  process.exit(1)
}, RUN_LIMIT_MS).unref()

const stops: Array<() => Promise<void>> = []
const owner = { teardown: (stop: () => Promise<void>) => { stops.push(stop) } }

const port = await freePort()
const single = await spawnServer(redisServerPath() as string, port)
stops.push(() => stopServer(single, 'SIGKILL'))
const cluster = await startRedisCluster(owner, { replicas: 0 })

interface Target {
  readonly name: string
  readonly options: ConstructorParameters<typeof RedisBroker>[0]
  readonly pids: () => number[]
}
const targets: Target[] = [
  { name: 'one Redis, classic pub/sub', options: { client: `redis://127.0.0.1:${port}` }, pids: () => [single.pid as number] },
  { name: '3-master cluster, sharded pub/sub', options: { client: [...cluster.urls], shardedPubSub: true }, pids: () => cluster.pids() }
]

interface Sample { perSecond: number, nodeCpuUs: number, redisCpuUs: number, burstLagP50: number, burstLagP99: number, pacedLagP50: number, pacedLagP99: number }
const samples = new Map<string, Sample[]>(targets.map((target) => [target.name, []]))

function percentile (values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] as number
}

const body = (): string => JSON.stringify({ type: 'bench', data: { t: performance.now() } })

async function measure (target: Target, round: number): Promise<Sample> {
  const keyPrefix = `bench-${round}-${Date.now()}:`
  const publisher = new RedisBroker({ ...target.options, keyPrefix })
  const subscriber = new RedisBroker({ ...target.options, keyPrefix })
  publisher.attach({ message () {}, lost () {} })
  let lags: number[] = []
  let expected = 0
  let done: (() => void) | null = null
  let lost = 0
  subscriber.attach({
    message (message: RoomMessage) {
      lags.push(performance.now() - (JSON.parse(message.text) as { data: { t: number } }).data.t)
      if (lags.length === expected) done?.()
    },
    lost () { lost++ }
  })
  const rooms = Array.from({ length: ROOMS }, (_, i) => `room-${i}`)
  for (const room of rooms) await subscriber.subscribe(room)
  // Warm-up: every room once, and the scripts loaded on every node.
  expected = ROOMS
  let all = new Promise<void>((resolve) => { done = resolve })
  for (const room of rooms) await publisher.publish(room, body())
  await all

  // Throughput: BURST messages, FLIGHT in flight, round-robin over the rooms.
  lags = []
  expected = BURST
  all = new Promise<void>((resolve) => { done = resolve })
  const pids = target.pids()
  const redisBefore = pids.map((pid) => procCpu(pid) ?? 0)
  const cpuBefore = process.cpuUsage()
  const start = performance.now()
  let next = 0
  await Promise.all(Array.from({ length: FLIGHT }, async () => {
    while (next < BURST) {
      const n = next++
      await publisher.publish(rooms[n % ROOMS] as string, body())
    }
  }))
  const elapsed = performance.now() - start
  await all
  const cpu = process.cpuUsage(cpuBefore)
  const redisCpu = pids.reduce((sum, pid, i) => sum + (procCpu(pid) ?? 0) - (redisBefore[i] as number), 0)
  const burstLags = lags

  // Lag: PACED messages, one every 1000 / PACED_PER_S ms.
  lags = []
  expected = PACED
  all = new Promise<void>((resolve) => { done = resolve })
  const pacedStart = performance.now()
  for (let n = 0; n < PACED; n++) {
    const due = pacedStart + n * 1000 / PACED_PER_S
    const wait = due - performance.now()
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
    void publisher.publish(rooms[n % ROOMS] as string, body())
  }
  await all
  await publisher.close()
  await subscriber.close()
  if (lost > 0) throw new Error(`${target.name}: ${lost} rooms reported lost`)
  return {
    perSecond: BURST / elapsed * 1000,
    nodeCpuUs: (cpu.user + cpu.system) / BURST,
    redisCpuUs: redisCpu / BURST,
    burstLagP50: percentile(burstLags, 0.5),
    burstLagP99: percentile(burstLags, 0.99),
    pacedLagP50: percentile(lags, 0.5),
    pacedLagP99: percentile(lags, 0.99)
  }
}

try {
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? targets : [...targets].reverse()
    for (const target of order) samples.get(target.name)?.push(await measure(target, round))
  }
} finally {
  for (const stop of stops.reverse()) await stop()
  clearTimeout(limit)
}

const ms = (value: number): string => value.toFixed(2)
console.log(`${machine()}; ${gitState()}.`)
console.log(`${ROUNDS} rounds, the targets alternating; one Node process publishes (${FLIGHT} in flight over ${ROOMS} rooms) and subscribes (a second broker instance).`)
console.log('Each cell: median over the rounds (min–max). Lag: publish call to delivery at the subscriber, in ms.\n')
console.log(`| target | publishes/s (${num(BURST)}, ${FLIGHT} in flight) | Node CPU µs per message (publish + deliver) | redis-server CPU µs per message (all nodes) | lag p50 / p99 under that load | lag p50 / p99 at ${PACED_PER_S}/s |`)
console.log('| --- | --- | --- | --- | --- | --- |')
for (const target of targets) {
  const list = samples.get(target.name) as Sample[]
  const pick = (key: keyof Sample): number[] => list.map((sample) => sample[key])
  console.log(`| ${target.name} | ${spread(pick('perSecond'), num)} | ${spread(pick('nodeCpuUs'), num)} | ${spread(pick('redisCpuUs'), num)} | ` +
    `${ms(median(pick('burstLagP50')))} / ${ms(median(pick('burstLagP99')))} | ${ms(median(pick('pacedLagP50')))} / ${ms(median(pick('pacedLagP99')))} |`)
}
