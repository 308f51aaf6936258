/**
 * Runs at scale, opt-in (not part of `npm run bench` or `npm test`): `npm run bench:scale -- idle`
 * or `npm run bench:scale -- storm`. See bench/README.md.
 *
 * idle:  SCALE_CONNECTIONS (50,000) idle connections with `heartbeat` (SCALE_HEARTBEAT_MS, 30 s) on
 *        one server process: RSS and heap per connection, CPU per second over SCALE_WINDOW_MS (three
 *        heartbeats) when all the server does is heartbeats, and whether any connection ended.
 *        The clients come from several loopback addresses (127.0.0.2, .3, ...; one address has
 *        about 28k ports) in processes of at most 15,000 sockets each. Every process's open-file
 *        limit is raised with prlimit (the plugin does not touch it); where the hard limit does not
 *        allow it, prlimit fails and the run says so.
 * storm: SCALE_CLIENTS (10,000) RealtimeClients (lib/client, default backoff) joined to one room on
 *        instance A of two on a RedisBroker; B publishes every 500 ms; A is restarted (SIGTERM:
 *        close 1012, a new process on the same port). Reported: when every client is back, joined
 *        and recovered, the new A's CPU during the storm, and how the backoff's jitter spread the
 *        reconnects.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createHarness, gitState, machine, median, type Server } from './harness.js'
import { procCpu, startRedis, which } from './processes.js'
import { plainEchoServer } from './variants.js'

const mode = process.argv[2] ?? 'idle'
const CONNECTIONS = Number(process.env.SCALE_CONNECTIONS ?? 50_000)
const HEARTBEAT_MS = Number(process.env.SCALE_HEARTBEAT_MS ?? 30_000)
const WINDOW_MS = Number(process.env.SCALE_WINDOW_MS ?? 3 * HEARTBEAT_MS)
const CLIENTS = Number(process.env.SCALE_CLIENTS ?? 10_000)
const PER_PROCESS = 15_000
const PUBLISH_EVERY_MS = 500
const STORM_LIMIT_MS = 120_000

const harness = createHarness(120_000, 30 * 60_000)
const { withTimeout } = harness
delete process.env.ECHO_LIB
const serverScript = await plainEchoServer('bench/scale-server.ts')
const clientScript = new URL('scale-clients.ts', import.meta.url).pathname

/** prlimit's option for a process that holds `sockets` sockets. */
const fileLimit = (sockets: number): string => `--nofile=${sockets + 1000}`

async function startServer (args: string[], sockets: number): Promise<Server> {
  return await harness.startCommand(['prlimit', fileLimit(sockets), process.execPath, '--expose-gc', serverScript, ...args], `scale-server ${args[0] ?? ''}`)
}

async function json<T> (port: number, path: string, method = 'GET'): Promise<T> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`, { method })
  return await response.json() as T
}

interface Stats { open: number, endings: Record<string, number>, cpu: number }
interface Memory { rss: number, heapUsed: number }

/** One process of clients; resolves once all of them are open (joined). */
class Clients {
  readonly child: ChildProcess
  private readonly replies: Array<(message: Record<string, unknown>) => void> = []
  readonly opened: Promise<void>

  constructor (args: string[], sockets: number) {
    this.child = spawn('prlimit', [fileLimit(sockets), process.execPath, ...process.execArgv, clientScript, ...args], {
      env: { ...process.env, TS_NODE_TRANSPILE_ONLY: 'true' },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc']
    })
    harness.track(this.child)
    this.opened = new Promise((resolve, reject) => {
      this.child.on('message', (message: Record<string, unknown>) => {
        if (message.type === 'opened') resolve()
        else if (message.type === 'error') reject(new Error(`bench: clients: ${String(message.error)}`))
        else this.replies.shift()?.(message)
      })
      this.child.once('exit', (code) => { reject(new Error(`bench: a client process exited with ${String(code)}`)) })
    })
  }

  tell (message: object): void {
    this.child.send(message)
  }

  async ask<T> (): Promise<T> {
    const reply = new Promise<Record<string, unknown>>((resolve) => { this.replies.push(resolve) })
    this.child.send({ type: 'report' })
    return await withTimeout(reply, 'a client report') as T
  }

  async stop (): Promise<void> {
    if (this.child.exitCode !== null) return
    const exited = once(this.child, 'exit')
    this.child.send({ type: 'stop' })
    await withTimeout(exited, 'stopping the clients').catch(() => { this.child.kill('SIGKILL') })
  }
}

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }
const kib = (bytes: number): string => (bytes / 1024).toFixed(2)
/** Quantiles of a list, as `p0 / p50 / p90 / p100`. */
function quantiles (values: number[]): string {
  const sorted = [...values].sort((a, b) => a - b)
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number
  return `${at(0)} / ${median(sorted)} / ${at(0.9)} / ${at(1)}`
}

// ---- many idle connections ----

async function idle (): Promise<void> {
  const server = await startServer(['idle', String(HEARTBEAT_MS)], CONNECTIONS)
  const processes: Clients[] = []
  try {
    const before = await json<Memory>(server.port, '/mem')
    const start = Date.now()
    for (let left = CONNECTIONS, k = 0; left > 0; k++) {
      const count = Math.min(PER_PROCESS, left)
      left -= count
      // Two addresses per process, 7,500 connections each: well under one address's ports.
      const addresses = `127.0.0.${2 + 2 * k},127.0.0.${3 + 2 * k}`
      processes.push(new Clients(['idle', String(server.port), String(count), addresses], count))
    }
    await withTimeout(Promise.all(processes.map(async (clients) => { await clients.opened })), `opening ${CONNECTIONS} connections`, 10 * 60_000)
    const connectMs = Date.now() - start
    const after = await json<Memory>(server.port, '/mem')
    const cpuStart = (await json<Stats>(server.port, '/stats')).cpu
    process.stderr.write(`${CONNECTIONS} open in ${connectMs} ms; watching for ${WINDOW_MS} ms\n`)
    await sleep(WINDOW_MS)
    const stats = await json<Stats>(server.port, '/stats')
    const reports = await Promise.all(processes.map(async (clients) => await clients.ask<{ open: number, closed: number, closeCodes: Record<string, number> }>()))
    const closed = reports.reduce((sum, report) => sum + report.closed, 0)
    const clientOpen = reports.reduce((sum, report) => sum + report.open, 0)
    console.log(`${machine()}; ${gitState()}; ${harness.placement}.`)
    console.log(`${CONNECTIONS.toLocaleString('en-US')} idle connections to one server process, heartbeat ${HEARTBEAT_MS} ms, ` +
      `from ${processes.length} client processes and ${2 * processes.length} loopback addresses.\n`)
    console.log('| measure | value |')
    console.log('| --- | --- |')
    console.log(`| time to open all (100 at a time per client process) | ${connectMs} ms |`)
    console.log(`| RSS per connection | ${kib((after.rss - before.rss) / CONNECTIONS)} KiB (server RSS ${(after.rss / 2 ** 20).toFixed(0)} MiB) |`)
    console.log(`| heap per connection | ${kib((after.heapUsed - before.heapUsed) / CONNECTIONS)} KiB |`)
    console.log(`| server CPU over ${WINDOW_MS / 1000} s of heartbeats only | ${((stats.cpu - cpuStart) / WINDOW_MS).toFixed(1)} ms per second ` +
      `(${(((stats.cpu - cpuStart) / WINDOW_MS) / 10).toFixed(2)}% of one core), ${((stats.cpu - cpuStart) / (WINDOW_MS / HEARTBEAT_MS) / CONNECTIONS).toFixed(1)} µs per ping |`)
    console.log(`| open at the end (server / clients) | ${stats.open} / ${clientOpen} of ${CONNECTIONS} |`)
    console.log(`| connections that ended (server's count by close code; clients' closes) | ${JSON.stringify(stats.endings)}; ${closed} |`)
  } finally {
    await Promise.all(processes.map(async (clients) => { await clients.stop() }))
    await harness.stopServer(server)
  }
}

// ---- the reconnect storm ----

interface Trace { droppedAt: number, firstAttemptAt: number, reopenedAt: number, rejoinedAt: number, recovered: boolean | undefined, attempts: number, lastSeq: number }

async function storm (): Promise<void> {
  if (!which('redis-server')) throw new Error('bench: the storm needs redis-server')
  const redis = await startRedis(harness)
  const prefix = `storm${process.pid}:`
  const b = await startServer(['storm', redis.url, prefix, '0'], CLIENTS)
  let a = await startServer(['storm', redis.url, prefix, '0'], CLIENTS)
  const port = a.port
  const clients = new Clients(['storm', String(port), String(CLIENTS)], CLIENTS)
  let publishing: NodeJS.Timeout | undefined
  try {
    const start = Date.now()
    await withTimeout(clients.opened, `${CLIENTS} clients joining`, 10 * 60_000)
    process.stderr.write(`${CLIENTS} clients joined in ${Date.now() - start} ms\n`)
    let seq = 0
    const publish = async (): Promise<void> => { seq = (await json<{ seq: number }>(b.port, '/publish', 'POST')).seq }
    for (let i = 0; i < 5; i++) await publish()
    const redisCpu0 = procCpu(redis.child.pid as number) ?? 0
    const bCpu0 = (await json<Stats>(b.port, '/stats')).cpu
    const stormAt = Date.now()
    clients.tell({ type: 'storm', at: stormAt })
    publishing = setInterval(() => { void publish() }, PUBLISH_EVERY_MS)
    // The restart: A closes every connection with 1012 and exits; a new A listens on the same port.
    await harness.stopServer(a)
    const downMs = Date.now() - stormAt
    a = await startServer(['storm', redis.url, prefix, String(port)], CLIENTS)
    const upMs = Date.now() - stormAt
    const aCpu0 = (await json<Stats>(a.port, '/stats')).cpu
    let traces: Trace[] = []
    while (Date.now() - stormAt < STORM_LIMIT_MS) {
      await sleep(500)
      traces = (await clients.ask<{ traces: Trace[] }>()).traces
      if (traces.every((trace) => trace.rejoinedAt >= 0)) break
    }
    clearInterval(publishing)
    await sleep(500)
    const last = seq
    await sleep(500)
    traces = (await clients.ask<{ traces: Trace[] }>()).traces
    const aCpu = (await json<Stats>(a.port, '/stats')).cpu - aCpu0
    const bCpu = (await json<Stats>(b.port, '/stats')).cpu - bCpu0
    const redisCpu = (procCpu(redis.child.pid as number) ?? 0) - redisCpu0
    const back = traces.filter((trace) => trace.reopenedAt >= 0)
    const joined = traces.filter((trace) => trace.rejoinedAt >= 0)
    const recovered = traces.filter((trace) => trace.recovered === true)
    const complete = traces.filter((trace) => trace.lastSeq === last)
    const allAt = (pick: (trace: Trace) => number): number => Math.max(...traces.map(pick))
    const firstAttempts = traces.filter((trace) => trace.firstAttemptAt >= 0).map((trace) => trace.firstAttemptAt - trace.droppedAt)
    // Sockets opened per 100 ms after the drop: how the jitter spreads the load.
    const slots = new Map<number, number>()
    for (const trace of traces) if (trace.reopenedAt >= 0) slots.set(Math.floor(trace.reopenedAt / 100), (slots.get(Math.floor(trace.reopenedAt / 100)) ?? 0) + 1)
    const busiest = Math.max(...slots.values())
    const stormMs = allAt((trace) => trace.rejoinedAt)
    console.log(`${machine()}; ${gitState()}; ${harness.placement}.`)
    console.log(`${CLIENTS.toLocaleString('en-US')} RealtimeClients (lib/client over ws, default backoff: full jitter, base 500 ms) joined to one room on instance A of two ` +
      `on a RedisBroker; B publishes every ${PUBLISH_EVERY_MS} ms throughout; A restarted (SIGTERM: 1012 to every client, a new process on the same port). ` +
      'Times in ms from the SIGTERM.\n')
    console.log('| measure | value |')
    console.log('| --- | --- |')
    console.log(`| old A gone / new A listening | ${downMs} / ${upMs} ms |`)
    console.log(`| clients back (open again) | ${back.length} of ${CLIENTS}, the last at ${allAt((trace) => trace.reopenedAt)} ms |`)
    console.log(`| clients joined again | ${joined.length} of ${CLIENTS}, the last at ${stormMs} ms |`)
    console.log(`| rejoins that recovered (every missed message replayed) | ${recovered.length} of ${CLIENTS} |`)
    console.log(`| clients that received the last message published (seq ${last}) | ${complete.length} of ${CLIENTS} |`)
    console.log(`| first attempt after the drop, ms: min / median / p90 / max | ${quantiles(firstAttempts)} |`)
    console.log(`| attempts per client (refused ones while A was down included): median / max | ${median(traces.map((trace) => trace.attempts))} / ${Math.max(...traces.map((trace) => trace.attempts))} |`)
    console.log(`| reconnects in the busiest 100 ms | ${busiest} (${(100 * busiest / CLIENTS).toFixed(1)}% of the clients), over ${slots.size} slots of 100 ms |`)
    console.log(`| new A's CPU from listening to the end (${((Date.now() - stormAt - upMs) / 1000).toFixed(1)} s) | ${(aCpu / 1000).toFixed(0)} ms, ${(aCpu / CLIENTS).toFixed(0)} µs per client |`)
    console.log(`| B's CPU / redis-server's CPU over the storm | ${(bCpu / 1000).toFixed(0)} / ${(redisCpu / 1000).toFixed(0)} ms |`)
  } finally {
    clearInterval(publishing)
    await clients.stop()
    await harness.stopServer(a)
    await harness.stopServer(b)
    redis.child.kill('SIGTERM')
  }
}

if (mode === 'idle') await idle()
else if (mode === 'storm') await storm()
else throw new Error('usage: scale.ts idle | storm')
harness.done()
