/**
 * The server of bench/scale.ts, in a child process of its own (started with a raised open-file
 * limit by the driver). Listens on 127.0.0.1 (on the port given, or a free one) and prints
 * `{"port":N}` as its first stdout line.
 *
 *   scale-server.ts idle <heartbeatMs>                      a raw route /idle with `heartbeat`, whose handler awaits the close
 *   scale-server.ts storm <redisUrl> <keyPrefix> <port>     a contract route /room with `rooms` on a RedisBroker
 *
 * HTTP endpoints:
 *   GET  /stats     open connections, how connections ended (close code and exception code), CPU time (µs)
 *   GET  /mem       process.memoryUsage() after two full GCs (start with --expose-gc)
 *   POST /publish   (storm) publishes `{ seq }` to the room `storm`, on every instance
 */
import type { AddressInfo } from 'node:net'
import { Type } from '@sinclair/typebox'
import Fastify from 'fastify'
import realtime, { contractHandler, defineContract, type Broker } from '../lib/index.js'

export const STORM_ROOM = 'storm'
const contract = defineContract({ client: {}, server: { tick: Type.Object({ seq: Type.Integer() }) } })

let open = 0
const endings: Record<string, number> = {}

/** RedisBroker's module, loaded by path (as bench/broadcast-server.ts does). */
interface RedisModule {
  RedisBroker: new (options: { client: string, keyPrefix: string }) => Broker
}

const [mode, arg1, arg2, arg3] = process.argv.slice(2)
const app = Fastify({ logger: false })
// Every client comes from loopback: the caps are lifted past the run's size.
const caps = { maxConnections: 1_000_000, maxConnectionsPerIp: 1_000_000 }

function track (connection: { closeCode: number | null, exception: Error | null }): void {
  open--
  const code = (connection.exception as (Error & { code?: string }) | null)?.code
  const key = `${String(connection.closeCode)}${code === undefined ? '' : ` ${code}`}`
  endings[key] = (endings[key] ?? 0) + 1
}

let port = 0
if (mode === 'idle') {
  await app.register(realtime, caps)
  app.get('/idle', { realtime: { heartbeat: Number(arg1 ?? 30_000) } }, async (connection) => {
    open++
    await connection.whenClosed()
    track(connection)
  })
} else if (mode === 'storm' && arg1 !== undefined && arg2 !== undefined) {
  const path = '../lib/hub/redis/index.js'
  const { RedisBroker } = await import(path) as RedisModule
  await app.register(realtime, { ...caps, broker: new RedisBroker({ client: arg1, keyPrefix: arg2 }) })
  port = Number(arg3 ?? 0)
  app.get('/room', { realtime: true }, contractHandler(contract, {
    open: () => { open++ },
    close: (ctx) => { track(ctx.connection) }
  }, { rooms: { authorize: () => true } }))
  let seq = 0
  app.post('/publish', async () => {
    await app.realtime.publish(contract, STORM_ROOM, 'tick', { seq: ++seq })
    return { seq }
  })
} else {
  console.error('usage: scale-server.ts idle <heartbeatMs> | storm <redisUrl> <keyPrefix> <port>')
  process.exit(2)
}
app.get('/stats', async () => {
  const cpu = process.cpuUsage()
  return { open, endings, cpu: cpu.user + cpu.system }
})
app.get('/mem', async () => {
  globalThis.gc?.()
  globalThis.gc?.()
  return { ...process.memoryUsage(), gc: typeof globalThis.gc === 'function' }
})
await app.listen({ host: '127.0.0.1', port, backlog: 8192 })
process.stdout.write(`${JSON.stringify({ port: (app.server.address() as AddressInfo).port })}\n`)
// A restart (the storm's): clients are told 1012, and reconnect.
process.once('SIGTERM', () => {
  if (mode === 'storm') app.realtime.restarting()
  void app.close().then(() => process.exit(0))
})
