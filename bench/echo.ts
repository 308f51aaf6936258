/**
 * Echo and request/response latency: fastify-realtime against a plain ws server, a bare
 * @fastify/websocket route and a hand-typed one. Run with `npm run bench:echo`; see bench/README.md.
 * Every server runs in a child process (bench/echo-server.ts), a fresh one per variant and round;
 * everything is on 127.0.0.1.
 */
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import type { Socket } from 'node:net'
import { arch, cpus, platform } from 'node:os'
import WebSocket from 'ws'
import { createHarness, median, type Server } from './harness.js'

const ROUNDS = Number(process.env.ECHO_ROUNDS ?? 5)
const CONNECTIONS = 50
/** Requests each connection keeps outstanding in the echo scenarios. */
const IN_FLIGHT = 8
const WAIT_MS = 60_000
const GLOBAL_TIMEOUT_MS = 10 * 60_000

const SMALL = { user: 'ada', text: 'hello, world' } // 36 bytes of JSON
/** 4000 characters, letters and digits (nothing to escape), the same every run. */
const LONG_TEXT = Array.from({ length: 4000 }, (_, i) => 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ'[(i * 7919) % 62]).join('')
const LARGE = { user: 'ada', text: LONG_TEXT }

interface EchoScenario {
  readonly kind: 'echo'
  readonly name: string
  readonly data: { user: string, text: string }
  /** Replies in the measured part of a round, over all connections. */
  readonly count: number
  readonly warmup: number
}
interface LatencyScenario {
  readonly kind: 'latency'
  readonly name: string
  readonly data: { user: string, text: string }
  readonly count: number
  readonly warmup: number
}
type Scenario = EchoScenario | LatencyScenario

const allScenarios: Scenario[] = [
  { kind: 'echo', name: `echo 36 B, ${CONNECTIONS} connections × ${IN_FLIGHT} in flight`, data: SMALL, count: Number(process.env.ECHO_SMALL_COUNT ?? 40_000), warmup: 10_000 },
  { kind: 'echo', name: `echo 4 KiB, ${CONNECTIONS} connections × ${IN_FLIGHT} in flight`, data: LARGE, count: 10_000, warmup: 3_000 },
  { kind: 'latency', name: 'request/response 36 B, 1 connection, 1 at a time', data: SMALL, count: 5_000, warmup: 1_000 }
]

/** ECHO_SCENARIOS=0,2 runs only those (by position above), e.g. to profile one. */
const pickedScenarios = process.env.ECHO_SCENARIOS?.split(',').map(Number)
const scenarios = allScenarios.filter((_scenario, i) => pickedScenarios === undefined || pickedScenarios.includes(i))

interface Variant {
  readonly key: string
  readonly name: string
}
const allVariants: Variant[] = [
  { key: 'raw', name: 'raw ws + JSON.stringify' },
  { key: 'fastify', name: '@fastify/websocket + JSON.stringify' },
  { key: 'typed', name: '@fastify/websocket + TypeCompiler + JSON.stringify' },
  { key: 'realtime', name: 'fastify-realtime contractHandler' }
]
/** ECHO_VARIANTS=raw,realtime runs only those (raw ws always runs: every ratio is to it). */
const picked = process.env.ECHO_VARIANTS?.split(',')
const variants = allVariants.filter((variant) => picked === undefined || variant.key === 'raw' || picked.includes(variant.key))

const here = new URL('.', import.meta.url)
const serverScript = new URL('echo-server.ts', here).pathname
const harness = createHarness(WAIT_MS, GLOBAL_TIMEOUT_MS)
const { withTimeout } = harness

// ---- servers ----

const startServer = async (variant: string): Promise<Server> => await harness.startServer(serverScript, [variant])
const stopServer = harness.stopServer
const serverCpu = harness.serverCpu

// ---- clients ----

/**
 * One client connection. Requests carry increasing ids; every reply is parsed and checked: its type,
 * that its id is one this connection has outstanding, and that the data came back whole.
 */
class Client {
  private nextId = 0
  private readonly outstanding = new Set<number>()
  private prefix = ''
  private expectedText = ''
  /** Called with each checked reply. */
  onReply: () => void = () => {}
  failure: Error | null = null
  private closing = false

  private corked = false
  private readonly socket: Socket

  constructor (readonly ws: WebSocket) {
    this.socket = (ws as unknown as { _socket: Socket })._socket
    ws.on('error', (error) => { this.fail(error) })
    ws.on('close', (code) => { if (!this.closing) this.fail(new Error(`bench: connection closed with ${code}`)) })
    ws.on('message', (raw: Buffer, isBinary: boolean) => {
      if (isBinary) return this.fail(new Error('bench: binary reply'))
      const message = JSON.parse(raw.toString()) as { type: string, data: { user: string, text: string }, id: number }
      if (message.type !== 'echo:reply' || !this.outstanding.delete(message.id) ||
        message.data.user !== 'ada' || message.data.text !== this.expectedText) {
        return this.fail(new Error(`bench: unexpected reply ${raw.toString().slice(0, 200)}`))
      }
      this.onReply()
    })
  }

  static async open (port: number): Promise<Client> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false })
    await once(ws, 'open')
    return new Client(ws)
  }

  /** Sets the data of the next requests; the envelope around it is built once. */
  use (data: { user: string, text: string }): void {
    this.prefix = `{"type":"echo","data":${JSON.stringify(data)},"id":`
    this.expectedText = data.text
  }

  request (): void {
    const id = ++this.nextId
    this.outstanding.add(id)
    // Pipelined input, as in the issue's measurements: the requests a connection sends in one turn
    // leave in one write, so they reach the server together, for every variant alike.
    if (!this.corked) {
      this.corked = true
      this.socket.cork()
      process.nextTick(uncorkClient, this)
    }
    this.ws.send(this.prefix + String(id) + '}')
  }

  uncork (): void {
    this.corked = false
    this.socket.uncork()
  }

  private fail (error: Error): void {
    this.failure ??= error
    failed(error)
  }

  async close (): Promise<void> {
    this.closing = true
    if (this.ws.readyState === WebSocket.CLOSED) return
    const closed = once(this.ws, 'close')
    this.ws.close(1000)
    await withTimeout(closed, 'closing a client', 5_000).catch(() => { this.ws.terminate() })
  }
}

function uncorkClient (client: Client): void {
  client.uncork()
}

/** Rejects the measurement in progress when any client fails. */
let failed: (error: Error) => void = () => {}

/**
 * `count` replies over all clients, each client keeping IN_FLIGHT requests outstanding and sending
 * the next one on each reply. Resolves with the elapsed time in ms.
 */
function pipelined (clients: Client[], count: number): Promise<number> {
  return new Promise((resolve, reject) => {
    failed = reject
    const perClient = count / clients.length
    let remaining = count
    const start = process.hrtime.bigint()
    for (const client of clients) {
      let sent = 0
      client.onReply = () => {
        if (--remaining === 0) resolve(Number(process.hrtime.bigint() - start) / 1e6)
        else if (sent < perClient) { sent++; client.request() }
      }
      for (let i = 0; i < IN_FLIGHT && sent < perClient; i++) { sent++; client.request() }
    }
  })
}

/** `count` round trips on one client, one at a time. Resolves with each round trip's time, in µs. */
function roundTrips (client: Client, count: number): Promise<number[]> {
  return new Promise((resolve, reject) => {
    failed = reject
    const times: number[] = []
    let start = process.hrtime.bigint()
    client.onReply = () => {
      const now = process.hrtime.bigint()
      times.push(Number(now - start) / 1000)
      if (times.length === count) return resolve(times)
      start = process.hrtime.bigint()
      client.request()
    }
    client.request()
  })
}

// ---- measuring ----

interface Round {
  /** Replies per second at the client (echo) or round trips per second (latency). */
  rate: number
  /** Server CPU per reply, in ns. */
  cpu: number
  p50: number
  p99: number
}

/** Nearest-rank percentile. */
function percentile (sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number
}

async function measure (variant: Variant): Promise<Round[]> {
  const server = await startServer(variant.key)
  const rounds: Round[] = []
  let clients: Client[] = []
  try {
    for (const scenario of scenarios) {
      const wanted = scenario.kind === 'echo' ? CONNECTIONS : 1
      clients = await withTimeout(Promise.all(Array.from({ length: wanted }, async () => await Client.open(server.port))), `${variant.name}: connecting`)
      for (const client of clients) client.use(scenario.data)
      const what = `${variant.name}, ${scenario.name}`
      if (scenario.kind === 'echo') {
        await withTimeout(pipelined(clients, scenario.warmup), `${what}: warm-up`)
        const cpuBefore = await serverCpu(server.port)
        const ms = await withTimeout(pipelined(clients, scenario.count), what)
        const cpu = await serverCpu(server.port) - cpuBefore
        rounds.push({ rate: scenario.count / (ms / 1000), cpu: cpu * 1000 / scenario.count, p50: NaN, p99: NaN })
      } else {
        const client = clients[0] as Client
        await withTimeout(roundTrips(client, scenario.warmup), `${what}: warm-up`)
        const cpuBefore = await serverCpu(server.port)
        const start = process.hrtime.bigint()
        const times = await withTimeout(roundTrips(client, scenario.count), what)
        const ms = Number(process.hrtime.bigint() - start) / 1e6
        const cpu = await serverCpu(server.port) - cpuBefore
        times.sort((a, b) => a - b)
        rounds.push({ rate: scenario.count / (ms / 1000), cpu: cpu * 1000 / scenario.count, p50: percentile(times, 0.5), p99: percentile(times, 0.99) })
      }
      for (const client of clients) if (client.failure !== null) throw client.failure
      await Promise.all(clients.map(async (client) => { await client.close() }))
      clients = []
    }
  } finally {
    await Promise.all(clients.map(async (client) => { await client.close() }))
    await stopServer(server)
  }
  return rounds
}

function gitState (): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim()
    const diff = execFileSync('git', ['diff', 'HEAD', '--', 'lib'], { encoding: 'utf8' })
    if (diff === '') return `lib/ at ${head}, no uncommitted changes`
    const files = execFileSync('git', ['diff', 'HEAD', '--name-only', '--', 'lib'], { encoding: 'utf8' }).trim().split('\n').join(', ')
    return `lib/ at ${head} plus uncommitted changes to ${files} (diff sha1 ${createHash('sha1').update(diff).digest('hex').slice(0, 10)})`
  } catch {
    return 'lib/ version unknown (no git)'
  }
}

// ---- the run ----

const libState = process.env.ECHO_LIB === undefined ? gitState() : `lib from ECHO_LIB=${process.env.ECHO_LIB}`
/** results[variant][round][scenario] */
const results = new Map<string, Round[][]>(variants.map((variant) => [variant.key, []]))
// Warms up this process (the clients' code), not counted: otherwise round 1's first variant meets a cold client.
process.stderr.write('warm-up of the clients: raw ws, not counted\n')
await measure(variants[0] as Variant)
for (let round = 0; round < ROUNDS; round++) {
  // Alternate the order, so drift and order effects fall on every variant.
  const order = round % 2 === 0 ? variants : [...variants].reverse()
  for (const variant of order) {
    process.stderr.write(`round ${round + 1}/${ROUNDS}: ${variant.name}\n`)
    const rounds = await measure(variant)
    ;(results.get(variant.key) as Round[][]).push(rounds)
    process.stderr.write(`  ${rounds.map((r, i) => `${(scenarios[i] as Scenario).name}: ${Math.round(r.rate)}/s, ` +
      `${Math.round(r.cpu)} ns${Number.isNaN(r.p50) ? '' : `, p50 ${r.p50.toFixed(1)} µs, p99 ${r.p99.toFixed(1)} µs`}`).join('; ')}\n`)
  }
}

const num = (value: number): string => value >= 1000 ? Math.round(value).toLocaleString('en-US') : value >= 100 ? value.toFixed(0) : value.toFixed(1)
const ratio = (value: number): string => value.toFixed(2)
/** Median (min–max) of a list, each formatted by `format`. */
const spread = (values: number[], format: (value: number) => string): string =>
  `${format(median(values))} (${format(Math.min(...values))}–${format(Math.max(...values))})`

const base = results.get('raw') as Round[][]
/** A measure of one variant and scenario in every round, and its ratio to raw ws in the same round. */
function series (key: string, scenario: number, pick: (round: Round) => number): { values: number[], ratios: number[] } {
  const rounds = results.get(key) as Round[][]
  const values = rounds.map((round) => pick(round[scenario] as Round))
  const ratios = values.map((value, i) => value / pick((base[i] as Round[])[scenario] as Round))
  return { values, ratios }
}

console.log(`Node ${process.version}, ${platform()} ${arch()}, ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}; ${libState}.`)
console.log(`${ROUNDS} rounds, variants alternating, a fresh server process per variant and round; client and server on the same machine, loopback; ${harness.placement}.`)
console.log('Each cell: median over the rounds (min–max). Ratios are to raw ws in the same round, median (min–max) of the per-round ratios.')
console.log('CPU and latency: above 1 is worse than raw ws; replies/s: below 1 is worse.\n')
for (const [s, scenario] of scenarios.entries()) {
  console.log(`### ${scenario.name}: ${scenario.count.toLocaleString('en-US')} ${scenario.kind === 'echo' ? 'replies' : 'round trips'} per round\n`)
  if (scenario.kind === 'echo') {
    console.log('| variant | replies/s | ratio | server CPU ns per reply | ratio |')
    console.log('| --- | --- | --- | --- | --- |')
    for (const variant of variants) {
      const rate = series(variant.key, s, (round) => round.rate)
      const cpu = series(variant.key, s, (round) => round.cpu)
      console.log(`| ${variant.name} | ${spread(rate.values, num)} | ${spread(rate.ratios, ratio)} | ${spread(cpu.values, num)} | ${spread(cpu.ratios, ratio)} |`)
    }
  } else {
    console.log('| variant | p50 µs | ratio | p99 µs | ratio | round trips/s | server CPU ns per round trip | ratio |')
    console.log('| --- | --- | --- | --- | --- | --- | --- | --- |')
    for (const variant of variants) {
      const p50 = series(variant.key, s, (round) => round.p50)
      const p99 = series(variant.key, s, (round) => round.p99)
      const rate = series(variant.key, s, (round) => round.rate)
      const cpu = series(variant.key, s, (round) => round.cpu)
      console.log(`| ${variant.name} | ${spread(p50.values, num)} | ${spread(p50.ratios, ratio)} | ${spread(p99.values, num)} | ${spread(p99.ratios, ratio)} | ` +
        `${spread(rate.values, num)} | ${spread(cpu.values, num)} | ${spread(cpu.ratios, ratio)} |`)
    }
  }
  console.log('')
}
harness.done()
