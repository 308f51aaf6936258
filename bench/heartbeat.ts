/**
 * Heartbeats of many idle connections: `npm run bench:heartbeat` (HEARTBEAT_CONNECTIONS, default
 * 10000). See bench/README.md. A fresh server process (bench/heartbeat-server.ts) holds the
 * connections on a route with `heartbeat: 1000`; this process opens them and answers every ping
 * (ws does that by itself), and measures:
 *
 * - the pings each client gets per second over a steady window, against what aiohttp's semantics
 *   give: a ping `heartbeat` ms after the last byte received, so one every heartbeat + the time the
 *   pong takes to be read;
 * - the server's side of it: the time between two pings of a connection, the time from a ping to
 *   the first byte read after it, the server's event-loop delay;
 * - how evenly the pings arrive: the most within one 10 ms slot, against the mean;
 * - when a peer that stops answering is dropped, against the 1.5 s the semantics give;
 * - kills through 800 ms stalls of the server's event loop, in each of its phases: a kill is false
 *   when the client had answered the ping within the pong window, and the client's own fault
 *   (this process fell behind) when it had not.
 *
 * Everything is on 127.0.0.1; the run gives up after 10 minutes.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks'
import WebSocket from 'ws'
import { createHarness, gitState, machine, num } from './harness.js'
import { openInBatches } from './variants.js'

const CONNECTIONS = Number(process.env.HEARTBEAT_CONNECTIONS ?? 10_000)
const HEARTBEAT_MS = 1000
/** Time after the last connection opened before measuring: every connection has had pings by then. */
const WARM_MS = 3000
const WINDOW_MS = 10_000
/** Peers that stop answering pings, opened one after another inside the window. */
const SILENT_PEERS = 20
const STALL_MS = 800
/** Two stalls in each phase of the event loop where a callback can block it. */
const STALL_PHASES = ['poll', 'timers', 'check', 'poll', 'timers', 'check']
/** Time between two stalls: every connection has been pinged and has answered in between. */
const STALL_GAP_MS = 2000
const SLOT_MS = 10
const GLOBAL_TIMEOUT_MS = 10 * 60_000

const harness = createHarness(30_000, GLOBAL_TIMEOUT_MS)
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
const sorted = (values: number[]): number[] => [...values].sort((a, b) => a - b)
const at = (values: number[], p: number): number => values[Math.min(values.length - 1, Math.floor(values.length * p))] ?? NaN
const mean = (values: number[]): number => values.reduce((a, b) => a + b, 0) / values.length
const ms = (value: number): string => `${value.toFixed(value < 10 ? 1 : 0)} ms`
const dist = (values: number[]): string => { const s = sorted(values); return `${ms(at(s, 0.5))} / ${ms(at(s, 0.99))} / ${ms(s.at(-1) ?? NaN)}` }

interface Stats { open: number, heartbeatKills: number, endings: Record<string, number>, cpu: number }
interface Kill { id: string, pingAt: number, killedAt: number }
interface Recorded { intervals: number[], answers: number[], delay: { p50: number, p99: number, max: number } }

async function http<T> (port: number, method: string, path: string): Promise<T> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`, { method })
  if (!response.ok) throw new Error(`bench: ${method} ${path} answered ${response.status}`)
  return await response.json() as T
}

const server = await harness.startServer(new URL('heartbeat-server.ts', import.meta.url).pathname, [String(HEARTBEAT_MS)])
const url = `ws://127.0.0.1:${server.port}/hb`

// ---- the clients ----

/** This process's event-loop delay, by phase of the run: a late pong is this process's fault. */
const lag = monitorEventLoopDelay({ resolution: 10 })
lag.enable()
let phase = 'connect'
const lagByPhase: Record<string, number> = {}
function endPhase (next: string): void {
  lagByPhase[phase] = Math.max(0, lag.max / 1e6 - 10)
  lag.reset()
  phase = next
}

/** Whether pings are being recorded (the steady window). */
let recording = false
let windowStart = 0
/** Pings received in the window, by client. */
const windowPings = new Map<WebSocket, number>()
let pings = 0
const slots = new Uint32Array(WINDOW_MS / SLOT_MS + 1)
/** When each client's last ping arrived (and so its pong left: ws answers before it emits 'ping'), by client id. */
const lastPingAt = new Map<string, number>()
let nextId = 0
/** Connections that ended while they were meant to stay open, by phase and close code. */
const unexpected: Record<string, number> = {}
let closing = false

async function openClient (): Promise<WebSocket> {
  const id = String(nextId++)
  const ws = new WebSocket(`${url}?id=${id}`, { perMessageDeflate: false })
  ws.on('ping', () => {
    const now = Date.now()
    lastPingAt.set(id, now)
    if (!recording) return
    pings++
    windowPings.set(ws, (windowPings.get(ws) ?? 0) + 1)
    const slot = Math.floor((now - windowStart) / SLOT_MS)
    if (slot < slots.length) slots[slot] = (slots[slot] as number) + 1
  })
  ws.on('close', (code: number) => {
    if (closing) return
    const key = `${phase}, ${code}`
    unexpected[key] = (unexpected[key] ?? 0) + 1
  })
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => { ws.off('error', reject); resolve() })
    ws.once('error', reject)
  })
  return ws
}

const sockets: WebSocket[] = []
await openInBatches(harness, sockets, CONNECTIONS, openClient, 'heartbeat clients')
endPhase('warm')
await sleep(WARM_MS)
// Connections this process let die while it was busy (its pongs came late: on a machine shared with
// other work its event loop can stall for seconds) are opened again, so that the window starts with
// every connection open and answering.
let reopened = 0
for (let attempt = 0; attempt < 3; attempt++) {
  const alive = sockets.filter((ws) => ws.readyState === WebSocket.OPEN)
  const missing = CONNECTIONS - alive.length
  if (missing === 0) break
  reopened += missing
  sockets.splice(0, sockets.length, ...alive)
  await openInBatches(harness, sockets, missing, openClient, 'heartbeat clients, again')
  await sleep(WARM_MS)
}
endPhase('window')

// ---- the steady window ----

interface Silent { opened: number, pinged: number, closed: number, code: number }
/** A client that never answers a ping: the server must drop it ~heartbeat + heartbeat / 2 after its last byte. */
async function silentPeer (): Promise<Silent> {
  const ws = new WebSocket(`${url}?id=silent`, { perMessageDeflate: false, autoPong: false })
  const result: Silent = { opened: 0, pinged: 0, closed: 0, code: 0 }
  ws.once('ping', () => { result.pinged = performance.now() })
  const closed = new Promise<void>((resolve) => ws.once('close', (code: number) => { result.closed = performance.now(); result.code = code; resolve() }))
  await new Promise((resolve) => ws.once('open', resolve))
  result.opened = performance.now()
  await harness.withTimeout(closed, 'waiting for a silent peer to be dropped')
  return result
}

const statsBefore = await http<Stats>(server.port, 'GET', '/stats')
const killsBeforeWindow = (await http<Kill[]>(server.port, 'GET', '/kills')).length
const clientCpuBefore = process.cpuUsage()
await http(server.port, 'POST', '/record')
recording = true
windowStart = Date.now()
// The silent peers come and go inside the window, one every 200 ms.
const silentRuns: Array<Promise<Silent>> = []
for (let i = 0; i < SILENT_PEERS; i++) {
  silentRuns.push(silentPeer())
  await sleep(200)
}
await sleep(Math.max(0, WINDOW_MS - (Date.now() - windowStart)))
recording = false
const windowMs = Date.now() - windowStart
// Over the clients open through the whole window (all of them unless this process fell behind).
const steady = sockets.filter((ws) => ws.readyState === WebSocket.OPEN)
const clientCpu = process.cpuUsage(clientCpuBefore)
const recorded = await http<Recorded>(server.port, 'GET', '/record')
const statsWindow = await http<Stats>(server.port, 'GET', '/stats')
const silent = await Promise.all(silentRuns)
const windowKills = (await http<Kill[]>(server.port, 'GET', '/kills')).slice(killsBeforeWindow).filter((kill) => kill.id !== 'silent')
endPhase('stalls')

// ---- stalls ----

await sleep(STALL_GAP_MS)
const killsBefore = (await http<Kill[]>(server.port, 'GET', '/kills')).length
for (const stallPhase of STALL_PHASES) {
  process.stderr.write(`stall of ${STALL_MS} ms in the ${stallPhase} phase\n`)
  await http(server.port, 'POST', `/stall?ms=${STALL_MS}&phase=${stallPhase}`)
  await sleep(STALL_GAP_MS)
}
const stallKills = (await http<Kill[]>(server.port, 'GET', '/kills')).slice(killsBefore)
const statsEnd = await http<Stats>(server.port, 'GET', '/stats')
endPhase('end')
/**
 * A kill is false when the client's pong left less than half a heartbeat after the server asked for
 * the ping (the earliest the ping can have been written): it was in the server's socket before the
 * verdict was due, whenever in that turn the ping left. Otherwise the pong left late, or the ping
 * never arrived: this process fell behind (its event-loop delay is in the report).
 */
const isFalse = (kill: Kill): boolean => {
  const pongAt = lastPingAt.get(kill.id) ?? 0
  return pongAt >= kill.pingAt && pongAt - kill.pingAt < HEARTBEAT_MS / 2
}
const falseInWindow = windowKills.filter(isFalse).length
const falseInStalls = stallKills.filter(isFalse).length

closing = true
for (const ws of sockets) ws.terminate()
await harness.stopServer(server)
harness.done()

// ---- report ----

const rate = steady.reduce((total, ws) => total + (windowPings.get(ws) ?? 0), 0) / steady.length / (windowMs / 1000)
const answer = mean(recorded.answers)
const expectedRate = 1000 / (HEARTBEAT_MS + answer)
const intervalMean = mean(recorded.intervals)
const meanPerSlot = pings / (windowMs / SLOT_MS)
const drops = silent.map((peer) => peer.closed - peer.opened)
const pongWaits = silent.map((peer) => peer.closed - peer.pinged)
const serverCpu = (statsWindow.cpu - statsBefore.cpu) / 1000 / windowMs
const within = (value: number): string => Math.abs(value - 1) <= 0.05 ? 'within 5% of 1' : 'not within 5% of 1'

console.log(`${machine()}; ${process.env.HEARTBEAT_LIB === undefined ? gitState() : `lib from HEARTBEAT_LIB=${process.env.HEARTBEAT_LIB}`}.`)
console.log(`${CONNECTIONS.toLocaleString('en-US')} idle connections to a raw route with \`heartbeat: ${HEARTBEAT_MS}\`, opened 100 at a time, ` +
  `the clients answering pings (ws does by default); ${harness.placement}. Steady window ${(windowMs / 1000).toFixed(1)} s from ${WARM_MS / 1000} s after the last connection opened` +
  `${reopened > 0 ? ` (${reopened} connections dropped before it, this process being too busy to answer, were opened again first)` : ''}; ` +
  `${steady.length.toLocaleString('en-US')} connections open through the window.`)
console.log('')
console.log('| measure | value | expected |')
console.log('| --- | --- | --- |')
console.log(`| pings per client per second | **${rate.toFixed(3)}** (${within(rate)}) | ${expectedRate.toFixed(3)} = 1000 / (heartbeat + ${ms(answer)}, the mean time from a ping to the next byte read) |`)
console.log(`| server: time between two pings of a connection, p50 / p99 / max (mean) | ${dist(recorded.intervals)} (${ms(intervalMean)}) | heartbeat + the time the pong takes |`)
console.log(`| server: time from a ping to the first byte read after it, p50 / p99 / max | ${dist(recorded.answers)} | the round trip |`)
console.log(`| server: ping sent after it was due, mean | ${ms(intervalMean - HEARTBEAT_MS - answer)} | a few ms |`)
console.log(`| pings in the busiest ${SLOT_MS} ms slot (mean per slot) | ${num(Math.max(...slots))} (${num(meanPerSlot)}) | |`)
console.log(`| server event-loop delay p50 / p99 / max | ${ms(recorded.delay.p50)} / ${ms(recorded.delay.p99)} / ${ms(recorded.delay.max)} | a few ms |`)
console.log(`| CPU: server / this process (share of one core) | ${(100 * serverCpu).toFixed(1)}% / ${(100 * (clientCpu.user + clientCpu.system) / 1000 / windowMs).toFixed(1)}% | |`)
console.log(`| stalled peer dropped after its last byte, p50 / p99 / max (${SILENT_PEERS} peers) | ${dist(drops)} | ${HEARTBEAT_MS * 1.5} ms |`)
console.log(`| … after the ping it did not answer | ${dist(pongWaits)} | ${HEARTBEAT_MS / 2} ms |`)
console.log(`| false kills (the pong left within the pong window) in the steady window | **${falseInWindow}** | 0 |`)
console.log(`| false kills through ${STALL_PHASES.length} stalls of ${STALL_MS} ms (${STALL_PHASES.join(', ')}) | **${falseInStalls}** | 0 |`)
console.log(`| other kills, window / stalls: the pong left late or the ping never arrived (this process lagging) | ${windowKills.length - falseInWindow} / ${stallKills.length - falseInStalls} | 0 / 0 |`)
console.log(`| this process's event-loop delay, max: ${Object.keys(lagByPhase).join(' / ')} | ${Object.values(lagByPhase).map(ms).join(' / ')} | |`)
console.log('')
console.log(`Server endings: ${JSON.stringify(statsEnd.endings)}; client closes while meant to be open (phase, code): ${JSON.stringify(unexpected)}; ` +
  `silent peers closed with ${[...new Set(silent.map((peer) => peer.code))].join(', ')} (1006: dropped without a close frame, as aiohttp does).`)
