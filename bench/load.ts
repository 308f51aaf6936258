/**
 * Many idle connections with a heartbeat: `npm run load` (LOAD_CLIENTS, default 5000;
 * LOAD_PROCESSES client processes, default 2; LOAD_HOLD_S, default 15). See bench/README.md.
 *
 * A fresh server process (bench/load-server.ts, --expose-gc) serves a contract route with auth,
 * rooms and `heartbeat: 1000`. Client processes (bench/load-clients.ts) open the connections;
 * each authenticates, joins one of 10 rooms and stays connected for the hold, answering pings,
 * while the driver publishes one message to one room every 100 ms (each client gets about one a
 * second). Everything is on 127.0.0.1; the run gives up after 10 minutes.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { cpus } from 'node:os'
import { createInterface } from 'node:readline'
import { createHarness } from './harness.js'

const CLIENTS = Number(process.env.LOAD_CLIENTS ?? 5000)
const PROCESSES = Number(process.env.LOAD_PROCESSES ?? 2)
const HOLD_S = Number(process.env.LOAD_HOLD_S ?? 15)
const ROOMS = 10
const PUBLISH_EVERY_MS = 100
const GLOBAL_TIMEOUT_MS = 10 * 60_000

const here = new URL('.', import.meta.url)
// Kills the child processes with this one and bounds the whole run (load waits on its own, not on withTimeout).
const harness = createHarness(GLOBAL_TIMEOUT_MS, GLOBAL_TIMEOUT_MS)

const env = { ...process.env, TS_NODE_TRANSPILE_ONLY: 'true' }
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`

interface ServerStats { cpu: number, rss: number, heapUsed: number, open: number, endings: Record<string, number>, heartbeatKills: number, hub: { delivered: number, published: number }, gc: boolean }
interface ClientReport { connected: number, failed: number, failures: Record<string, number>, received: number, unexpectedCloses: Record<string, number>, open: number, maxLagMs: number, maxDelayMs: number }

async function http<T> (port: number, method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  if (!response.ok) throw new Error(`load: ${method} ${path} answered ${response.status}`)
  return await response.json() as T
}

// ---- server ----
const server = spawn(process.execPath, ['--expose-gc', ...process.execArgv, new URL('load-server.ts', here).pathname, String(CLIENTS + 100)], { env, stdio: ['ignore', 'pipe', 'inherit'] })
harness.track(server)
const lines = createInterface({ input: server.stdout as NodeJS.ReadableStream })
const [line] = await once(lines, 'line') as [string]
lines.close()
const { port } = JSON.parse(line) as { port: number }

// ---- clients ----
const clients = Array.from({ length: PROCESSES }, () => {
  const child = fork(new URL('load-clients.ts', here).pathname, [], { env, execArgv: process.execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  harness.track(child)
  return child
})
async function ask (child: ChildProcess, cmd: string, extra: Record<string, unknown> = {}): Promise<ClientReport> {
  const reply = new Promise<ClientReport>((resolve) => {
    const listener = (message: { cmd: string } & ClientReport): void => {
      if (message.cmd === 'report' && cmd === 'report') resolve(message)
      else if (message.cmd === 'connected' && cmd === 'connect') resolve(message)
      else if (message.cmd === 'closed' && cmd === 'close') resolve(message)
      else return
      child.removeListener('message', listener)
    }
    child.on('message', listener)
  })
  child.send({ cmd, ...extra })
  return await reply
}
const sum = (reports: ClientReport[], key: 'connected' | 'failed' | 'received' | 'open'): number => reports.reduce((total, r) => total + r[key], 0)
const merge = (maps: Array<Record<string, number>>): Record<string, number> => {
  const out: Record<string, number> = {}
  for (const map of maps) for (const [key, value] of Object.entries(map)) out[key] = (out[key] ?? 0) + value
  return out
}

// Give the client processes a moment to load before the clock starts.
await Promise.all(clients.map((child) => ask(child, 'report')))
const idle = await http<ServerStats>(port, 'POST', '/gc')
console.log(`load: ${CLIENTS} clients in ${PROCESSES} processes, hold ${HOLD_S} s, heartbeat 1000 ms; server idle rss ${mib(idle.rss)}, gc ${idle.gc ? 'exposed' : 'not exposed'}`)

const connectStart = Date.now()
const before = await http<ServerStats>(port, 'GET', '/stats')
const perProcess = Math.ceil(CLIENTS / PROCESSES)
const connectedReports = await Promise.all(clients.map((child, i) => ask(child, 'connect', { port, count: Math.min(perProcess, CLIENTS - i * perProcess), first: i * perProcess })))
const afterConnect = await http<ServerStats>(port, 'GET', '/stats')
const connectMs = Date.now() - connectStart
const connected = sum(connectedReports, 'connected')
const loaded = await http<ServerStats>(port, 'POST', '/gc')
console.log(`load: ${connected} connected, ${sum(connectedReports, 'failed')} failed ${JSON.stringify(merge(connectedReports.map((r) => r.failures)))} in ${connectMs} ms`)

// ---- hold, with a trickle of room messages ----
const holdStart = Date.now()
const cpuHoldStart = (await http<ServerStats>(port, 'GET', '/stats')).cpu
let published = 0
while (Date.now() - holdStart < HOLD_S * 1000) {
  await http(port, 'POST', '/publish', { room: `room-${published % ROOMS}` })
  published++
  await sleep(PUBLISH_EVERY_MS)
}
// Let the last messages arrive.
await sleep(500)
const held = await http<ServerStats>(port, 'GET', '/stats')
const holdMs = Date.now() - holdStart
const reports = await Promise.all(clients.map((child) => ask(child, 'report')))

// ---- results ----
const unexpected = merge(reports.map((r) => r.unexpectedCloses))
const unexpectedTotal = Object.values(unexpected).reduce((a, b) => a + b, 0)
const result = {
  date: new Date().toISOString().slice(0, 10),
  node: process.version,
  cores: cpus().length,
  clients: CLIENTS,
  clientProcesses: PROCESSES,
  connected,
  failed: sum(connectedReports, 'failed'),
  connectMs,
  handshakeCpuUsPerConnection: (afterConnect.cpu - before.cpu) / Math.max(1, connected),
  rssIdle: idle.rss,
  rssLoaded: loaded.rss,
  rssPerConnection: (loaded.rss - idle.rss) / Math.max(1, connected),
  heapPerConnection: (loaded.heapUsed - idle.heapUsed) / Math.max(1, connected),
  holdMs,
  holdCpuPercentOfCore: 100 * (held.cpu - cpuHoldStart) / 1000 / holdMs,
  openAfterHold: { server: held.open, clients: sum(reports, 'open') },
  serverHeartbeatKills: held.heartbeatKills,
  serverEndings: held.endings,
  clientUnexpectedCloses: unexpected,
  published,
  deliveredServer: held.hub.delivered - loaded.hub.delivered,
  receivedClients: sum(reports, 'received'),
  expectedDeliveries: published * connected / ROOMS,
  maxDeliveryDelayMs: Math.max(...reports.map((r) => r.maxDelayMs)),
  maxClientLagMs: Math.max(...reports.map((r) => r.maxLagMs))
}
console.log(JSON.stringify(result, null, 2))
console.log(`\n| ${result.date} | ${result.clients} | ${result.connected} | ${(result.connectMs / 1000).toFixed(1)} s | ${result.handshakeCpuUsPerConnection.toFixed(0)} µs | ${(result.rssPerConnection / 1024).toFixed(1)} KiB (heap ${(result.heapPerConnection / 1024).toFixed(1)} KiB) | ${result.holdCpuPercentOfCore.toFixed(0)}% | ${result.serverHeartbeatKills} / ${unexpectedTotal} | ${result.receivedClients} of ${result.expectedDeliveries} (server ${result.deliveredServer}) | ${result.maxDeliveryDelayMs} ms |`)

await Promise.all(clients.map((child) => ask(child, 'close')))
const final = await http<ServerStats>(port, 'GET', '/stats')
console.log(`load: after the clients closed: server open ${final.open}, endings ${JSON.stringify(final.endings)}`)
for (const child of clients) child.kill('SIGTERM')
server.kill('SIGTERM')
await once(server, 'exit')
harness.done()
process.exitCode = result.connected === CLIENTS && result.serverHeartbeatKills === 0 ? 0 : 1
