/**
 * Idle connections: what a connection that sends nothing costs the server in memory, and what its
 * handshake costs in CPU, for fastify-realtime against raw ws, a bare @fastify/websocket route,
 * socket.io and aiohttp. Run with `npm run bench:idle`; see bench/README.md. Every server runs in a
 * child process (bench/echo-server.ts transpiled to JavaScript, or bench/aiohttp-server.py), a fresh
 * one per variant and round; everything is on 127.0.0.1.
 */
import WebSocket from 'ws'
import { createHarness, gitState, machine, median, num, ratio, spread, type Server } from './harness.js'
import { aiohttpInfo, aiohttpVariant, connect, nodeVariant, openInBatches, pickVariants, plainEchoServer, type Variant } from './variants.js'

const ROUNDS = Number(process.env.IDLE_ROUNDS ?? 3)
/** Idle connections held in each round. `ulimit -n` is 20000 per process here: the driver holds one socket per connection. */
const CONNECTIONS = Number(process.env.IDLE_CONNECTIONS ?? 5000)
/** Handshakes done and closed again before the first figures, so that code compiled on first use is not counted per connection. */
const WARMUP = Math.min(100, CONNECTIONS)
/** Connect + close cycles per round of the churn phase, spread over CHURN_WORKERS concurrent loops. */
const CHURN_CYCLES = Number(process.env.IDLE_CHURN_CYCLES ?? 5000)
const CHURN_WORKERS = Number(process.env.IDLE_CHURN_WORKERS ?? 50)
const WAIT_MS = 30_000
const GLOBAL_TIMEOUT_MS = 10 * 60_000
/** What fastify-realtime is held to, as ratios to raw ws. */
const TARGET = { memory: 1.0, handshakeCpu: 1.25, churn: 0.9 }

/**
 * IDLE_BEFORE: a folder holding another lib/ (e.g. `git archive <commit> lib | tar -x -C dir`):
 * each fastify-realtime variant runs a second time on it, in the same rounds, as `… (before)`.
 */
const BEFORE = process.env.IDLE_BEFORE
const realtimeVariants = [
  nodeVariant('realtime-raw', 'fastify-realtime raw route', ['realtime-raw']),
  // `defaults`: the contract route with the plugin's default rate limit, as an app would have it.
  nodeVariant('realtime', 'fastify-realtime contractHandler', ['realtime', 'defaults']),
  // The same with `rooms`: each client joins the room `lobby` (`$join`) once open.
  nodeVariant('realtime-room', 'fastify-realtime contractHandler, joined a room', ['realtime', 'room'])
]
const beforeVariants = BEFORE === undefined
  ? []
  : realtimeVariants.map((variant) => ({ ...variant, key: `${variant.key}@before`, name: `${variant.name} (before)` }))

/** IDLE_VARIANTS=realtime-raw,socketio runs only those. */
const { variants, notes } = pickVariants([
  nodeVariant('raw', 'raw ws', ['raw']),
  // What a raw ws app that knows who it talks to holds: each connection keeps its upgrade request.
  nodeVariant('raw-req', 'raw ws, keeping its request', ['raw', 'keep-request']),
  nodeVariant('fastify', '@fastify/websocket, bare route', ['fastify']),
  ...realtimeVariants,
  ...beforeVariants,
  nodeVariant('socketio', 'socket.io (websocket transport)', ['socketio'], 'socketio')
], 'IDLE_VARIANTS')

const harness = createHarness(WAIT_MS, GLOBAL_TIMEOUT_MS)
const { withTimeout } = harness
// ECHO_LIB (another lib/ for the echo bench) would point the transpiled server at TypeScript: this
// bench measures this repository's lib/.
delete process.env.ECHO_LIB
/** The Node servers as plain JavaScript: no TypeScript loader thread whose heap shrinks between the two readings. */
const serverScript = await plainEchoServer()
const beforeScript = BEFORE === undefined ? serverScript : await plainEchoServer('bench/echo-server.ts', BEFORE)
const scriptOf = (variant: Variant): string => variant.key.endsWith('@before') ? beforeScript : serverScript
/**
 * --expose-gc for GET /mem. V8 also resizes its young generation by itself: it grows it under
 * allocation and gives back up to 32 MiB once allocation has been low for a few seconds, and its
 * memory reducer compacts a few seconds after start. Either, falling between the two readings,
 * moves RSS per connection by kilobytes. So the young generation is held at its smallest
 * (1 MiB semi-spaces) and the memory reducer is off, for every Node variant alike.
 */
const NODE_ARGS = ['--expose-gc', '--max-semi-space-size=1', '--no-memory-reducer']

interface Memory {
  rss: number
  /** null from the Python server, which has no such figure. */
  heapUsed: number | null
  gc: boolean
}

/** The server's memory after its full GCs (GET /mem). */
async function serverMemory (server: Server): Promise<Memory> {
  const response = await fetch(`http://127.0.0.1:${server.port}/mem`)
  const memory = await response.json() as Memory
  if (!memory.gc) throw new Error('bench: the server has no gc(); it must run with --expose-gc')
  return memory
}

/** Sends `$join` for the room `lobby` and waits for its reply. */
async function joinLobby (ws: WebSocket): Promise<void> {
  const reply = new Promise<void>((resolve, reject) => {
    ws.once('message', (data: Buffer) => {
      const message = JSON.parse(String(data)) as { type: string }
      message.type === '$join:reply' ? resolve() : reject(new Error(`bench: $join answered with ${String(data).slice(0, 200)}`))
    })
  })
  ws.send('{"type":"$join","data":{"room":"lobby"},"id":1}')
  await reply
}

/** Connections of one round, and whether any ended while it was meant to be open. */
class Idle {
  readonly sockets: WebSocket[] = []
  dropped = 0
  errors = 0
  private closing = false

  async open (server: Server, variant: Variant, count: number, what: string): Promise<void> {
    await openInBatches(harness, this.sockets, count, async () => {
      const ws = await connect(server.port, variant.protocol)
      if (variant.key.startsWith('realtime-room')) await joinLobby(ws)
      ws.on('error', () => { this.errors++ })
      ws.on('close', () => { if (!this.closing) this.dropped++ })
      return ws
    }, what)
  }

  /** Closes with 1000 and waits for the server's close frame, within the harness's wait. */
  async close (): Promise<void> {
    this.closing = true
    const closed = this.sockets.map(async (ws) => {
      if (ws.readyState === WebSocket.CLOSED) return
      await new Promise((resolve) => { ws.once('close', resolve) })
    })
    for (const ws of this.sockets) ws.close(1000)
    await withTimeout(Promise.all(closed), 'closing the warm-up connections')
  }

  terminate (): void {
    this.closing = true
    for (const ws of this.sockets) ws.terminate()
  }

  get stillOpen (): number {
    return this.sockets.filter((ws) => ws.readyState === WebSocket.OPEN).length
  }
}

// ---- churn ----

/** One cycle: connect, upgrade, close frame (1000), and the server's close frame back. */
async function cycle (server: Server, variant: Variant): Promise<void> {
  const ws = await connect(server.port, variant.protocol)
  const closed = new Promise<void>((resolve, reject) => {
    ws.once('close', (code: number) => { code === 1000 ? resolve() : reject(new Error(`bench: churn: closed with ${code}`)) })
    ws.once('error', reject)
  })
  ws.close(1000)
  await closed
}

/**
 * CHURN_WORKERS loops, each connecting, upgrading and closing one connection at a time until
 * CHURN_CYCLES cycles are done in all: cycles per second and the server's CPU per cycle.
 */
async function churn (server: Server, variant: Variant): Promise<{ rate: number, cpu: number }> {
  let left = CHURN_CYCLES
  const worker = async (): Promise<void> => {
    while (left > 0) {
      left--
      await cycle(server, variant)
    }
  }
  const cpuBefore = await harness.serverCpu(server.port)
  const start = process.hrtime.bigint()
  await withTimeout(Promise.all(Array.from({ length: CHURN_WORKERS }, worker)), `${variant.name}: ${CHURN_CYCLES} connect + close cycles`, GLOBAL_TIMEOUT_MS / 4)
  const seconds = Number(process.hrtime.bigint() - start) / 1e9
  const cpu = await harness.serverCpu(server.port) - cpuBefore
  return { rate: CHURN_CYCLES / seconds, cpu: cpu / CHURN_CYCLES }
}

// ---- measuring ----

interface Round {
  /** Bytes of RSS per connection. */
  rss: number
  /** Bytes of V8 heap per connection; NaN where the server has no such figure. */
  heap: number
  /** Server CPU per handshake, in µs. */
  cpu: number
  /** Time to open all the connections, in ms. */
  connectMs: number
  /** The server's RSS before the connections, in bytes. */
  baseRss: number
  /** Connect + close cycles per second (churn phase, on a fresh server of its own). */
  churnRate: number
  /** Server CPU per connect + close cycle, in µs. */
  churnCpu: number
}

/** What each variant's server said it runs on (aiohttp's versions and event loop), for the report. */
const serverInfo = new Map<string, string>()

async function measure (variant: Variant): Promise<Round> {
  const server = await variant.start(harness, NODE_ARGS, scriptOf(variant))
  const warm = new Idle()
  const idle = new Idle()
  try {
    if (variant === aiohttpVariant && !serverInfo.has(variant.key)) serverInfo.set(variant.key, await aiohttpInfo(server.port))
    await warm.open(server, variant, WARMUP, `${variant.name}, warm-up`)
    await warm.close()
    const before = await serverMemory(server)
    const cpuBefore = await harness.serverCpu(server.port)
    const start = process.hrtime.bigint()
    await idle.open(server, variant, CONNECTIONS, variant.name)
    const connectMs = Number(process.hrtime.bigint() - start) / 1e6
    const cpu = await harness.serverCpu(server.port) - cpuBefore
    const after = await serverMemory(server)
    if (idle.stillOpen !== CONNECTIONS || idle.dropped > 0 || idle.errors > 0) {
      throw new Error(`bench: ${variant.name}: ${idle.stillOpen} of ${CONNECTIONS} connections open at the end (${idle.dropped} closed, ${idle.errors} errors)`)
    }
    return {
      rss: (after.rss - before.rss) / CONNECTIONS,
      heap: after.heapUsed === null || before.heapUsed === null ? NaN : (after.heapUsed - before.heapUsed) / CONNECTIONS,
      cpu: cpu / CONNECTIONS,
      connectMs,
      baseRss: before.rss,
      ...await measureChurn(variant)
    }
  } finally {
    warm.terminate()
    idle.terminate()
    await harness.stopServer(server)
  }
}

/** The churn phase on a fresh server, after the same warm-up: no idle connections around it. */
async function measureChurn (variant: Variant): Promise<{ churnRate: number, churnCpu: number }> {
  if (CHURN_CYCLES === 0) return { churnRate: NaN, churnCpu: NaN }
  const server = await variant.start(harness, NODE_ARGS, scriptOf(variant))
  try {
    const warm = new Idle()
    await warm.open(server, variant, WARMUP, `${variant.name}, churn warm-up`)
    await warm.close()
    const { rate, cpu } = await churn(server, variant)
    return { churnRate: rate, churnCpu: cpu }
  } finally {
    await harness.stopServer(server)
  }
}

// ---- the run ----

const results = new Map<string, Round[]>(variants.map((variant) => [variant.key, []]))
for (let round = 0; round < ROUNDS; round++) {
  // Alternate the order, so drift and order effects fall on every variant.
  const order = round % 2 === 0 ? variants : [...variants].reverse()
  for (const variant of order) {
    process.stderr.write(`round ${round + 1}/${ROUNDS}: ${variant.name}\n`)
    const result = await measure(variant)
    ;(results.get(variant.key) as Round[]).push(result)
    process.stderr.write(`  ${CONNECTIONS} connections in ${Math.round(result.connectMs)} ms; RSS ${num(result.rss)} B, heap ${Number.isNaN(result.heap) ? 'n/a' : `${num(result.heap)} B`} ` +
      `per connection; ${num(result.cpu)} µs CPU per handshake; churn ${num(result.churnRate)} cycles/s, ${num(result.churnCpu)} µs CPU per cycle\n`)
  }
}

/** A measure of one variant in every round, and its ratio to raw ws (or another base) in the same round. */
function series (key: string, pick: (round: Round) => number, baseKey = 'raw'): { values: number[], ratios: number[] } {
  const values = (results.get(key) as Round[]).map(pick)
  const base = results.get(baseKey) as Round[]
  return { values, ratios: values.map((value, i) => value / pick(base[i] as Round)) }
}
const kib = (bytes: number): string => (bytes / 1024).toFixed(2)
const mib = (bytes: number): string => (bytes / 1024 / 1024).toFixed(1)
/** spread(), or n/a for a figure a server does not have. */
const maybe = (values: number[], format: (value: number) => string): string => values.some(Number.isNaN) ? 'n/a' : spread(values, format)

console.log(`${machine()}; ${gitState()}.`)
console.log(`${ROUNDS} rounds, variants alternating, a fresh server process per variant and round; ${CONNECTIONS.toLocaleString('en-US')} idle connections ` +
  `(after ${WARMUP} warm-up handshakes, closed again), ${harness.placement}.`)
console.log('Each cell: median over the rounds (min–max). Memory per connection: (after − before) / connections, each after two full GCs. ' +
  'Ratios are to raw ws in the same round, median (min–max) of the per-round ratios; above 1 is worse than raw ws.')
for (const [key, info] of serverInfo) console.log(`${key}: ${info}.`)
for (const note of notes) console.log(`${note}.`)
console.log('')
console.log(`### ${CONNECTIONS.toLocaleString('en-US')} idle connections\n`)
console.log('| variant | RSS KiB per connection | ratio | heap KiB per connection | ratio | server CPU µs per handshake | ratio | connect time ms | server RSS before, MiB |')
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |')
const churnRows: string[] = []
for (const variant of variants) {
  const rss = series(variant.key, (round) => round.rss)
  const heap = series(variant.key, (round) => round.heap)
  const cpu = series(variant.key, (round) => round.cpu)
  const connect = series(variant.key, (round) => round.connectMs)
  const baseRss = series(variant.key, (round) => round.baseRss)
  console.log(`| ${variant.name} | ${spread(rss.values, kib)} | ${spread(rss.ratios, ratio)} | ${maybe(heap.values, kib)} | ${maybe(heap.ratios, ratio)} | ` +
    `${spread(cpu.values, num)} | ${spread(cpu.ratios, ratio)} | ${spread(connect.values, num)} | ${spread(baseRss.values, mib)} |`)
  const churnRate = series(variant.key, (round) => round.churnRate)
  const churnCpu = series(variant.key, (round) => round.churnCpu)
  churnRows.push(`| ${variant.name} | ${maybe(churnRate.values, num)} | ${maybe(churnRate.ratios, ratio)} | ${maybe(churnCpu.values, num)} | ${maybe(churnCpu.ratios, ratio)} |`)
}
if (CHURN_CYCLES > 0) {
  console.log('')
  console.log(`### churn: ${CHURN_WORKERS} workers looping connect → upgrade → close frame, ${CHURN_CYCLES.toLocaleString('en-US')} cycles per round\n`)
  console.log('| variant | cycles per second | ratio | server CPU µs per cycle | ratio |')
  console.log('| --- | --- | --- | --- | --- |')
  for (const row of churnRows) console.log(row)
}
console.log('')
console.log(`Targets for fastify-realtime: idle memory ≤ ${TARGET.memory.toFixed(2)}× raw ws, handshake CPU ≤ ${TARGET.handshakeCpu.toFixed(2)}× raw ws, ` +
  `connect + close cycles per second ≥ ${TARGET.churn.toFixed(2)}× raw ws (median ratios).`)
for (const variant of variants.filter((variant) => variant.key.startsWith('realtime'))) {
  // With few connections the RSS can fall between the two readings (pages given back): no verdict then.
  const verdict = (value: number, target: number): string =>
    value <= 0 ? `${ratio(value)} (no verdict: the figure fell, too few connections to measure)` : `${ratio(value)} (${value <= target ? 'met' : 'not met'})`
  const rss = median(series(variant.key, (round) => round.rss).ratios)
  const heap = median(series(variant.key, (round) => round.heap).ratios)
  const cpu = median(series(variant.key, (round) => round.cpu).ratios)
  const churnRate = median(series(variant.key, (round) => round.churnRate).ratios)
  const churnVerdict = Number.isNaN(churnRate) ? 'not measured' : `${ratio(churnRate)} (${churnRate >= TARGET.churn ? 'met' : 'not met'})`
  // The issue's memory target is raw ws as an app that keeps its request: measured when that variant ran.
  const kept = results.has('raw-req')
    ? `; against raw ws keeping its request: RSS ${verdict(median(series(variant.key, (round) => round.rss, 'raw-req').ratios), TARGET.memory)}, ` +
      `heap ${verdict(median(series(variant.key, (round) => round.heap, 'raw-req').ratios), TARGET.memory)}`
    : ''
  console.log(`- ${variant.name}: RSS ${verdict(rss, TARGET.memory)}, heap ${verdict(heap, TARGET.memory)}, handshake CPU ${verdict(cpu, TARGET.handshakeCpu)}, ` +
    `connect + close cycles per second ${churnVerdict}${kept}`)
}
harness.done()
