/**
 * The server of bench/load.ts, in a child process of its own (started with --expose-gc): a contract
 * route `/load` with first-message auth, client rooms and `heartbeat: 1000`. Listens on 127.0.0.1
 * on a free port and prints `{"port":N}` as its first stdout line. HTTP endpoints:
 *
 *   GET  /stats            cpu (µs), rss and heap after an optional GC, open connections, how
 *                          connections ended (close code and exception), heartbeat kills, hub stats
 *   POST /gc               runs a full GC (when exposed), then answers like /stats
 *   POST /publish { room } publishes one numbered message to a room
 */
import Fastify from 'fastify'
import type { AddressInfo } from 'node:net'
import { Type } from '@sinclair/typebox'
import realtime, { contractHandler, defineContract } from '../lib/index.js'

const contract = defineContract({
  client: {},
  server: { tick: Type.Object({ seq: Type.Integer(), at: Type.Number() }) }
})

const capacity = Number(process.argv[2] ?? 20_000)
const endings: Record<string, number> = {}
let heartbeatKills = 0
let open = 0
let seq = 0

const app = Fastify({ logger: false })
// Every client comes from 127.0.0.1, so the connection guards (defaults 10000 and 100 per address)
// are raised to the run's size.
const guards = { maxConnections: capacity, maxConnectionsPerIp: capacity }
try {
  await app.register(realtime, guards)
  await app.after()
} catch (error) {
  if ((error as { code?: string }).code !== 'FST_RT_INVALID_OPTION') throw error
  process.stderr.write(`load-server: the plugin refused ${JSON.stringify(guards)}; remove them from bench/load-server.ts for this version\n`)
  process.exit(2)
}

app.get('/load', { realtime: { heartbeat: 1000 } }, contractHandler(contract, {
  open () { open++ },
  close (ctx, code) {
    open--
    const exception = ctx.connection.exception as (Error & { code?: string }) | null
    const key = `${String(code)}${exception === null ? '' : ` ${exception.code ?? exception.name}`}`
    endings[key] = (endings[key] ?? 0) + 1
    if (exception?.code === 'FST_RT_HEARTBEAT_TIMEOUT') heartbeatKills++
  }
}, {
  auth: { verify: (token) => token.startsWith('user-') ? token : null, timeoutMs: 30_000 },
  rooms: { authorize: () => true }
}))

function stats (): Record<string, unknown> {
  const cpu = process.cpuUsage()
  const memory = process.memoryUsage()
  return {
    cpu: cpu.user + cpu.system,
    rss: memory.rss,
    heapUsed: memory.heapUsed,
    open,
    endings,
    heartbeatKills,
    hub: app.realtime.stats,
    gc: typeof globalThis.gc === 'function'
  }
}

app.get('/stats', async () => stats())
app.post('/gc', async () => {
  for (let i = 0; i < 3; i++) globalThis.gc?.()
  return stats()
})
app.post('/publish', async (request) => {
  const { room } = request.body as { room: string }
  await app.realtime.publish(contract, room, 'tick', { seq: ++seq, at: Date.now() })
  return { seq }
})

await app.listen({ host: '127.0.0.1', port: 0, backlog: 4096 })
process.stdout.write(`${JSON.stringify({ port: (app.server.address() as AddressInfo).port })}\n`)
process.once('SIGTERM', () => { void app.close().then(() => process.exit(0)) })
