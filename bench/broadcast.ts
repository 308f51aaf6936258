/**
 * Room fan-out: fastify-realtime against a plain ws server, with 1000 clients in one room. Run
 * with `npm run bench:broadcast`; see bench/README.md. Every server runs in a child process
 * (bench/broadcast-server.ts), a fresh one per variant and round; everything is on 127.0.0.1.
 */
import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { arch, cpus, platform } from 'node:os'
import WebSocket from 'ws'
import { createHarness, median, type Server } from './harness.js'
import { procCpu, startRedis, which } from './processes.js'

const CLIENTS = 1000
const ROUNDS = Number(process.env.BROADCAST_ROUNDS ?? 5)
/** Single-message fan-outs per variant and round (ROUNDS × this samples in all). */
const SINGLES = 6
const BURSTS = 2
const BURST_SIZE = 200
/** Clients connecting at once (under the listen backlog). */
const CONNECT_BATCH = 100
/** Every client checks the order of what it receives, `seq` by `seq`; the others only count. */
const CHECK_EVERY = 50
const WAIT_MS = 30_000
const GLOBAL_TIMEOUT_MS = 10 * 60_000

const here = new URL('.', import.meta.url)
const serverScript = new URL('broadcast-server.ts', here).pathname
const harness = createHarness(WAIT_MS, GLOBAL_TIMEOUT_MS)
const { withTimeout } = harness

// ---- servers ----

const startServer = async (args: string[]): Promise<Server> => await harness.startServer(serverScript, args)
const stopServer = harness.stopServer
const serverCpu = harness.serverCpu

async function post (port: number, path: string, body: unknown): Promise<void> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body)
  })
  if (!response.ok) throw new Error(`bench: POST ${path} answered ${response.status}: ${await response.text()}`)
  await response.arrayBuffer()
}

// ---- clients ----

/**
 * All clients of one variant. Each counts the room messages it gets; `expect(n)` resolves once
 * every client has n more. Every CHECK_EVERY-th client also checks that `seq` goes up by one.
 */
class Clients {
  private readonly sockets: WebSocket[] = []
  private remaining = 0
  private done: (() => void) | null = null
  private readonly lastSeq = new Map<WebSocket, number>()
  failure: Error | null = null

  async connect (port: number, count: number): Promise<void> {
    for (let start = 0; start < count; start += CONNECT_BATCH) {
      const batch: Array<Promise<void>> = []
      for (let i = start; i < Math.min(count, start + CONNECT_BATCH); i++) batch.push(this.open(port, i))
      await withTimeout(Promise.all(batch), `connecting clients ${start}-${start + batch.length - 1}`)
    }
  }

  private async open (port: number, index: number): Promise<void> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/bench`)
    this.sockets.push(ws)
    ws.on('error', (error) => { this.failure ??= error })
    await once(ws, 'open')
    const replied = once(ws, 'message')
    ws.send(JSON.stringify({ type: '$join', data: { room: 'bench' }, id: 1 }))
    const [reply] = await replied as [Buffer]
    const parsed = JSON.parse(reply.toString()) as { type: string }
    if (parsed.type !== '$join:reply') throw new Error(`bench: expected a $join:reply, got ${reply.toString()}`)
    if (index % CHECK_EVERY === 0) {
      ws.on('message', (data: Buffer) => {
        const { data: { seq } } = JSON.parse(data.toString()) as { data: { seq: number } }
        const last = this.lastSeq.get(ws)
        if (last !== undefined && seq !== last + 1) this.failure ??= new Error(`bench: client ${index} got seq ${seq} after ${last}`)
        this.lastSeq.set(ws, seq)
        this.received()
      })
    } else {
      ws.on('message', () => { this.received() })
    }
  }

  private received (): void {
    if (--this.remaining === 0) this.done?.()
  }

  /** Resolves once every client has received `perClient` more messages. */
  expect (perClient: number): Promise<void> {
    this.remaining = perClient * this.sockets.length
    return new Promise((resolve) => { this.done = resolve })
  }

  async close (): Promise<void> {
    await Promise.all(this.sockets.map(async (ws) => {
      if (ws.readyState === WebSocket.CLOSED) return
      const closed = once(ws, 'close')
      ws.terminate()
      await closed
    }))
  }
}

// ---- variants ----

interface Variant {
  readonly name: string
  /** Starts the servers and says how many clients connect to each; the first one is published to. */
  start (): Promise<Array<{ server: Server, clients: number }>>
}

interface Samples {
  single: number[]
  burst: number[]
  cpuMicros: number
  delivered: number
}

async function measure (variant: Variant, samples: Samples): Promise<void> {
  const servers = await variant.start()
  const groups = servers.map(() => new Clients())
  try {
    for (const [i, { server, clients }] of servers.entries()) await (groups[i] as Clients).connect(server.port, clients)
    const publisher = (servers[0] as { server: Server }).server.port
    const all = async (perClient: number): Promise<void> => { await Promise.all(groups.map((group) => group.expect(perClient))) }
    const cpuNow = async (): Promise<number> => {
      let total = 0
      for (const { server } of servers) total += await serverCpu(server.port)
      return total
    }
    // Warm-up: one burst, not measured.
    let arrived = all(BURST_SIZE)
    await post(publisher, '/publish', { count: BURST_SIZE })
    await withTimeout(arrived, `${variant.name}: warm-up`)

    const cpuBefore = await cpuNow()
    for (let i = 0; i < SINGLES; i++) {
      arrived = all(1)
      const start = process.hrtime.bigint()
      await post(publisher, '/publish', { count: 1 })
      await withTimeout(arrived, `${variant.name}: one message`)
      samples.single.push(Number(process.hrtime.bigint() - start) / 1e6)
    }
    for (let i = 0; i < BURSTS; i++) {
      arrived = all(BURST_SIZE)
      const start = process.hrtime.bigint()
      await post(publisher, '/publish', { count: BURST_SIZE })
      await withTimeout(arrived, `${variant.name}: a burst`)
      samples.burst.push(Number(process.hrtime.bigint() - start) / 1e6)
    }
    samples.cpuMicros += await cpuNow() - cpuBefore
    samples.delivered += (SINGLES + BURSTS * BURST_SIZE) * CLIENTS
    for (const group of groups) if (group.failure !== null) throw group.failure
  } finally {
    await Promise.all(groups.map((group) => group.close()))
    await Promise.all(servers.map(({ server }) => stopServer(server)))
  }
}

// ---- the run ----

const variants: Variant[] = [
  { name: 'raw ws', start: async () => [{ server: await startServer(['raw']), clients: CLIENTS }] },
  { name: 'fastify-realtime (memory)', start: async () => [{ server: await startServer(['realtime']), clients: CLIENTS }] }
]

let redis: { url: string, child: ChildProcess } | null = null
const redisBroker = existsSync(new URL('../lib/hub/redis/index.ts', here))
if (redisBroker && which('redis-server')) {
  redis = await startRedis(harness)
  const url = redis.url
  let run = 0
  variants.push({
    name: 'fastify-realtime, 2 instances on Redis',
    start: async () => {
      // A key prefix per round, so no round sees another's streams or presence.
      const prefix = `bench${process.pid}r${++run}:`
      const [a, b] = await Promise.all([startServer(['redis', url, prefix]), startServer(['redis', url, prefix])])
      return [{ server: a, clients: CLIENTS / 2 }, { server: b, clients: CLIENTS / 2 }]
    }
  })
} else {
  console.log(`(no Redis variant: ${redisBroker ? 'redis-server is not installed' : 'lib/hub/redis/index.ts does not exist yet'})`)
}

const results = new Map<string, Samples>(variants.map((variant) => [variant.name, { single: [], burst: [], cpuMicros: 0, delivered: 0 }]))
const redisCpuStart = redis === null ? null : procCpu(redis.child.pid as number)
for (let round = 0; round < ROUNDS; round++) {
  // Alternate the order, so drift and order effects fall on every variant.
  const order = round % 2 === 0 ? variants : [...variants].reverse()
  for (const variant of order) {
    process.stderr.write(`round ${round + 1}/${ROUNDS}: ${variant.name}\n`)
    await measure(variant, results.get(variant.name) as Samples)
  }
}
const redisCpu = redis === null || redisCpuStart === null ? null : (procCpu(redis.child.pid as number) ?? 0) - redisCpuStart
if (redis !== null) {
  const exited = once(redis.child, 'exit')
  redis.child.kill('SIGTERM')
  await withTimeout(exited, 'stopping redis-server')
}

const ms = (value: number): string => value < 10 ? value.toFixed(2) : value.toFixed(1)
const range = (list: number[]): string => `${ms(Math.min(...list))}–${ms(Math.max(...list))}`

const baseline = results.get('raw ws') as Samples
const base = {
  single: median(baseline.single),
  burst: median(baseline.burst),
  cpu: baseline.cpuMicros * 1000 / baseline.delivered
}
console.log(`Node ${process.version}, ${platform()} ${arch()}, ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}`)
console.log(`${CLIENTS} clients in one room; ${ROUNDS} rounds, variants alternating, a fresh server process per variant and round.`)
console.log(`one message: ${ROUNDS * SINGLES} samples; burst of ${BURST_SIZE}: ${ROUNDS * BURSTS} samples. ms as median (min–max).`)
console.log('ratio = variant / raw ws (time and CPU: above 1 is slower; messages/s: below 1 is slower).\n')
console.log('| variant | one message to all, ms | ratio | burst of 200 to all, ms | delivered msg/s | ratio | server CPU ns per delivered msg | ratio |')
console.log('| --- | --- | --- | --- | --- | --- | --- | --- |')
for (const [name, samples] of results) {
  const single = median(samples.single)
  const burst = median(samples.burst)
  const rate = BURST_SIZE * CLIENTS / (burst / 1000)
  const cpu = samples.cpuMicros * 1000 / samples.delivered
  console.log(`| ${name} | ${ms(single)} (${range(samples.single)}) | ${(single / base.single).toFixed(2)} | ` +
    `${ms(burst)} (${range(samples.burst)}) | ${Math.round(rate).toLocaleString('en-US')} | ${(base.burst / burst).toFixed(2)} | ` +
    `${cpu.toFixed(0)} | ${(cpu / base.cpu).toFixed(2)} |`)
}
if (redisCpu !== null) {
  const samples = results.get('fastify-realtime, 2 instances on Redis') as Samples
  console.log(`\nredis-server CPU over the Redis rounds (connects included): ${(redisCpu / 1000).toFixed(0)} ms, ` +
    `${(redisCpu * 1000 / samples.delivered).toFixed(0)} ns per delivered message (10 ms resolution).`)
}
harness.done()
