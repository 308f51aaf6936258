/**
 * Echo and request/response latency: fastify-realtime against a plain ws server, a bare
 * @fastify/websocket route, a hand-typed one, socket.io and aiohttp. Run with `npm run bench:echo`;
 * see bench/README.md. Every server runs in a child process (bench/echo-server.ts, or
 * bench/aiohttp-server.py), a fresh one per variant and round; everything is on 127.0.0.1.
 */
import { once } from 'node:events'
import type { Socket } from 'node:net'
import WebSocket from 'ws'
import { createHarness, gitState, machine, num, ratio, spread } from './harness.js'
import { aiohttpInfo, aiohttpVariant, connect, framings, nodeVariant, openInBatches, pickVariants, type Framing, type Protocol, type Variant } from './variants.js'

const ROUNDS = Number(process.env.ECHO_ROUNDS ?? 5)
const WAIT_MS = 60_000
const GLOBAL_TIMEOUT_MS = 10 * 60_000

const SMALL = { user: 'ada', text: 'hello, world' } // 36 bytes of JSON
/** 4000 characters, letters and digits (nothing to escape), the same every run. */
const LONG_TEXT = Array.from({ length: 4000 }, (_, i) => 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ'[(i * 7919) % 62]).join('')
const LARGE = { user: 'ada', text: LONG_TEXT }

interface EchoScenario {
  readonly kind: 'echo'
  /** Its number in ECHO_SCENARIOS (kept when scenarios are added, so that old commands still pick the same ones). */
  readonly id: number
  readonly name: string
  readonly data: { user: string, text: string }
  readonly connections: number
  /** Requests each connection keeps outstanding. */
  readonly inFlight: number
  /** Replies in the measured part of a round, over all connections. */
  readonly count: number
  readonly warmup: number
}
interface LatencyScenario {
  readonly kind: 'latency'
  readonly id: number
  readonly name: string
  readonly data: { user: string, text: string }
  readonly count: number
  readonly warmup: number
}
type Scenario = EchoScenario | LatencyScenario

const smallCount = Number(process.env.ECHO_SMALL_COUNT ?? 40_000)
const echo = (id: number, size: string, data: EchoScenario['data'], connections: number, inFlight: number, count: number, warmup: number): EchoScenario =>
  ({ kind: 'echo', id, name: `echo ${size}, ${connections} connections × ${inFlight} in flight`, data, connections, inFlight, count, warmup })
/** In report order; `id` is what ECHO_SCENARIOS picks by. */
const allScenarios: Scenario[] = [
  echo(0, '36 B', SMALL, 50, 8, smallCount, 10_000),
  // Many connections with little in flight each: per-connection costs weigh more than in 50 × 8.
  echo(3, '36 B', SMALL, 500, 2, smallCount, 10_000),
  echo(1, '4 KiB', LARGE, 50, 8, 10_000, 3_000),
  { kind: 'latency', id: 2, name: 'request/response 36 B, 1 connection, 1 at a time', data: SMALL, count: 5_000, warmup: 1_000 }
]

/** ECHO_SCENARIOS=0,2 runs only those (by id above), e.g. to profile one. */
const pickedScenarios = process.env.ECHO_SCENARIOS?.split(',').map(Number)
const scenarios = allScenarios.filter((scenario) => pickedScenarios === undefined || pickedScenarios.includes(scenario.id))

/** ECHO_VARIANTS=raw,realtime runs only those. */
const { variants, notes } = pickVariants([
  nodeVariant('raw', 'raw ws + JSON.stringify', ['raw']),
  nodeVariant('fastify', '@fastify/websocket + JSON.stringify', ['fastify']),
  nodeVariant('typed', '@fastify/websocket + TypeCompiler + JSON.stringify', ['typed']),
  nodeVariant('realtime', 'fastify-realtime contractHandler', ['realtime']),
  nodeVariant('socketio', 'socket.io (websocket transport)', ['socketio'], 'socketio')
], 'ECHO_VARIANTS')

const harness = createHarness(WAIT_MS, GLOBAL_TIMEOUT_MS)
const { withTimeout } = harness
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
  private suffix = ''
  private expectedText = ''
  /** Called with each checked reply. */
  onReply: () => void = () => {}
  failure: Error | null = null
  private closing = false

  private corked = false
  private readonly socket: Socket

  constructor (readonly ws: WebSocket, private readonly framing: Framing) {
    this.socket = (ws as unknown as { _socket: Socket })._socket
    ws.on('error', (error) => { this.fail(error) })
    ws.on('close', (code) => { if (!this.closing) this.fail(new Error(`bench: connection closed with ${code}`)) })
    ws.on('message', (raw: Buffer, isBinary: boolean) => {
      if (isBinary) return this.fail(new Error('bench: binary reply'))
      let text: string | null
      try {
        text = this.framing.unwrap(raw.toString())
      } catch (error) {
        return this.fail(error as Error)
      }
      if (text === null) return
      const message = JSON.parse(text) as { type: string, data: { user: string, text: string }, id: number }
      if (message.type !== 'echo:reply' || !this.outstanding.delete(message.id) ||
        message.data.user !== 'ada' || message.data.text !== this.expectedText) {
        return this.fail(new Error(`bench: unexpected reply ${raw.toString().slice(0, 200)}`))
      }
      this.onReply()
    })
  }

  static async open (port: number, protocol: Protocol): Promise<Client> {
    return new Client(await connect(port, protocol), framings[protocol])
  }

  /** Opens `count` clients, in batches; closes them all if one fails. */
  static async openMany (port: number, protocol: Protocol, count: number, what: string): Promise<Client[]> {
    const clients: Client[] = []
    try {
      await openInBatches(harness, clients, count, async () => await Client.open(port, protocol), what)
    } catch (error) {
      await Promise.all(clients.map(async (client) => { await client.close() }))
      throw error
    }
    return clients
  }

  /** Sets the data of the next requests; the envelope (and its frame) around it is built once. */
  use (data: { user: string, text: string }): void {
    this.prefix = `${this.framing.prefix}{"type":"echo","data":${JSON.stringify(data)},"id":`
    this.suffix = `}${this.framing.suffix}`
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
    this.ws.send(this.prefix + String(id) + this.suffix)
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
 * `count` replies over all clients, each client keeping `inFlight` requests outstanding and sending
 * the next one on each reply. Resolves with the elapsed time in ms.
 */
function pipelined (clients: Client[], inFlight: number, count: number): Promise<number> {
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
      for (let i = 0; i < inFlight && sent < perClient; i++) { sent++; client.request() }
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

/** What each variant's server said it runs on (aiohttp's versions and event loop), for the report. */
const serverInfo = new Map<string, string>()

async function measure (variant: Variant): Promise<Round[]> {
  const server = await variant.start(harness)
  const rounds: Round[] = []
  let clients: Client[] = []
  try {
    if (variant === aiohttpVariant && !serverInfo.has(variant.key)) serverInfo.set(variant.key, await aiohttpInfo(server.port))
    for (const scenario of scenarios) {
      const what = `${variant.name}, ${scenario.name}`
      clients = await Client.openMany(server.port, variant.protocol, scenario.kind === 'echo' ? scenario.connections : 1, what)
      for (const client of clients) client.use(scenario.data)
      if (scenario.kind === 'echo') {
        await withTimeout(pipelined(clients, scenario.inFlight, scenario.warmup), `${what}: warm-up`)
        const cpuBefore = await serverCpu(server.port)
        const ms = await withTimeout(pipelined(clients, scenario.inFlight, scenario.count), what)
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

const base = results.get('raw') as Round[][]
/** A measure of one variant and scenario in every round, and its ratio to raw ws in the same round. */
function series (key: string, scenario: number, pick: (round: Round) => number): { values: number[], ratios: number[] } {
  const rounds = results.get(key) as Round[][]
  const values = rounds.map((round) => pick(round[scenario] as Round))
  const ratios = values.map((value, i) => value / pick((base[i] as Round[])[scenario] as Round))
  return { values, ratios }
}

console.log(`${machine()}; ${libState}.`)
console.log(`${ROUNDS} rounds, variants alternating, a fresh server process per variant and round; client and server on the same machine, loopback; ${harness.placement}.`)
console.log('Each cell: median over the rounds (min–max). Ratios are to raw ws in the same round, median (min–max) of the per-round ratios.')
console.log('CPU and latency: above 1 is worse than raw ws; replies/s: below 1 is worse.')
for (const [key, info] of serverInfo) console.log(`${key}: ${info}.`)
for (const note of notes) console.log(`${note}.`)
console.log('')
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
