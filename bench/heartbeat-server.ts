/**
 * The server of bench/heartbeat.ts, in a child process of its own: fastify-realtime with a raw route
 * `/hb` (`heartbeat` from argv[2], default 1000 ms) whose handler only awaits the close. Listens on
 * 127.0.0.1 on a free port and prints `{"port":N}` as its first stdout line. HTTP endpoints:
 *
 *   GET  /stats                       open connections, heartbeat kills, how connections ended
 *                                     (close code and exception code), CPU time (µs)
 *   GET  /kills                       each heartbeat kill: the client's `id` (from the query
 *                                     string), when its last ping was asked for (the earliest it
 *                                     can have been written) and when it was dropped (ms since
 *                                     the epoch)
 *   POST /record                      starts recording: pings sent, event-loop delay
 *   GET  /record                      stops it; per connection, the time between two pings written
 *                                     and from a ping to the first byte read after it; the event-loop
 *                                     delay (monitorEventLoopDelay) p50, p99 and max in ms
 *   POST /stall?ms=800&phase=poll     blocks the event loop for `ms`: in this request's handler
 *                                     (the poll phase), in a timer (`timers`) or in an immediate
 *                                     (`check`); answered before the stall for the last two
 *
 * The ping times come from wrapping the server socket class's `ping()` (the time its frame is
 * written, at the end of the turn), the first byte after a ping from a `data` listener on the TCP
 * socket, as the heartbeat itself sees it. HEARTBEAT_LIB, when
 * set, is the path of another build of lib/index.ts to load (to compare two versions of the plugin).
 */
import type { Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import Fastify from 'fastify'

const heartbeat = Number(process.argv[2] ?? 1000)
const lib = new URL(process.env.HEARTBEAT_LIB ?? '../lib/index.js', import.meta.url)
const { default: realtime } = await import(lib.href) as typeof import('../lib/index.js')
const { RealtimeSocket } = await import(new URL('connection/socket.js', lib).href) as typeof import('../lib/connection/socket.js')

let open = 0
let heartbeatKills = 0
const endings: Record<string, number> = {}
const kills: Array<{ id: string, pingAt: number, killedAt: number }> = []

/**
 * Per TCP socket: when the last ping was asked for (the earliest it can have left), when it was
 * written (measured at the end of its turn, so up to a few ms late), and whether a byte has been
 * read since.
 */
interface PingState { askedAt: number, sentAt: number, answered: boolean }
const pings = new WeakMap<Socket, PingState>()
let recording = false
const intervals: number[] = []
const answers: number[] = []

const ping = RealtimeSocket.prototype.ping
RealtimeSocket.prototype.ping = function (this: InstanceType<typeof RealtimeSocket>, ...args: Parameters<typeof ping>) {
  const socket = (this as unknown as { _socket: Socket })._socket
  // From its first ping on, the socket's first byte after each ping is timed.
  if (!pings.has(socket)) socket.on('data', onData)
  const askedAt = Date.now()
  ping.apply(this, args)
  // The frame leaves when the turn's corked frames are flushed, on a tick queued before this one.
  process.nextTick(written, socket, askedAt)
}
function written (socket: Socket, askedAt: number): void {
  const now = Date.now()
  const last = pings.get(socket)
  if (last !== undefined && recording) intervals.push(now - last.sentAt)
  pings.set(socket, { askedAt, sentAt: now, answered: false })
}
function onData (this: Socket): void {
  const state = pings.get(this) as PingState
  if (state.answered) return
  state.answered = true
  if (recording) answers.push(Date.now() - state.sentAt)
}

const app = Fastify({ logger: false })
// Every client comes from 127.0.0.1: the caps (10000 in all, 100 per address) are raised past the run's size.
await app.register(realtime, { maxConnections: 20_000, maxConnectionsPerIp: 20_000 })
// The TCP socket, for the ping spy above: the connection keeps a record of its request, not the raw one.
app.decorateRequest('tcp', null)
app.addHook('onRequest', async (request) => { (request as unknown as { tcp: unknown }).tcp = request.raw.socket })
app.get('/hb', { realtime: { heartbeat } }, async (connection) => {
  const socket = (connection.request as unknown as { tcp: Socket }).tcp
  const { id = '' } = connection.request.query as { id?: string }
  open++
  await connection.whenClosed()
  open--
  const code = (connection.exception as (Error & { code?: string }) | null)?.code
  if (code === 'FST_RT_HEARTBEAT_TIMEOUT') {
    heartbeatKills++
    kills.push({ id, pingAt: pings.get(socket)?.askedAt ?? 0, killedAt: Date.now() })
  }
  const key = `${String(connection.closeCode)}${code === undefined ? '' : ` ${code}`}`
  endings[key] = (endings[key] ?? 0) + 1
})

app.get('/stats', async () => {
  const cpu = process.cpuUsage()
  return { open, heartbeatKills, endings, cpu: cpu.user + cpu.system }
})
app.get('/kills', async () => kills)

const RESOLUTION_MS = 10
const delay = monitorEventLoopDelay({ resolution: RESOLUTION_MS })
app.post('/record', async () => {
  intervals.length = 0
  answers.length = 0
  recording = true
  delay.reset()
  delay.enable()
  return {}
})
app.get('/record', async () => {
  recording = false
  delay.disable()
  // The histogram holds the time between its timer's ticks: the delay is what exceeds the interval.
  const ms = (ns: number): number => Math.max(0, ns / 1e6 - RESOLUTION_MS)
  return {
    intervals,
    answers,
    delay: { p50: ms(delay.percentile(50)), p99: ms(delay.percentile(99)), max: ms(delay.max) }
  }
})

function stall (ms: number): void {
  const end = Date.now() + ms
  while (Date.now() < end) { /* the point: nothing else runs */ }
}
app.post('/stall', async (request) => {
  const { ms = '800', phase = 'poll' } = request.query as { ms?: string, phase?: string }
  if (phase === 'timers') setTimeout(stall, 0, Number(ms))
  else if (phase === 'check') setImmediate(stall, Number(ms))
  else stall(Number(ms))
  return { phase }
})

await app.listen({ host: '127.0.0.1', port: 0, backlog: 4096 })
process.stdout.write(`${JSON.stringify({ port: (app.server.address() as AddressInfo).port })}\n`)
process.once('SIGTERM', () => { void app.close().then(() => process.exit(0)) })
