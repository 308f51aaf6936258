/**
 * One server of bench/broadcast.ts, started by it in a child process of its own:
 *
 *   broadcast-server.ts realtime             fastify-realtime, MemoryBroker
 *   broadcast-server.ts redis <url> <prefix> fastify-realtime, RedisBroker (lib/hub/redis/index.ts)
 *   broadcast-server.ts raw                  a plain ws WebSocketServer, the baseline
 *
 * Each listens on 127.0.0.1 on a free port and prints `{"port":N}` as its first stdout line.
 * WebSocket clients connect to /bench and join the room with `$join`. HTTP endpoints:
 *   POST /publish { count }  publishes `count` messages to the room, all at once (without waiting for one before the next)
 *   GET  /cpu                process.cpuUsage() of this process, in µs
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Type } from '@sinclair/typebox'
import Fastify from 'fastify'
import { WebSocketServer } from 'ws'
import realtime, { contractHandler, defineContract, type Broker } from '../lib/index.js'

const ROOM = 'bench'
/** The data of every message: `seq` numbers the messages of one server, `text` pads it to ~120 bytes on the wire. */
const TEXT = 'x'.repeat(48)

const contract = defineContract({
  client: {},
  server: {
    message: Type.Object({ seq: Type.Integer(), text: Type.String() })
  }
})

function cpu (): { user: number, system: number } {
  return process.cpuUsage()
}

function ready (port: number): void {
  process.stdout.write(`${JSON.stringify({ port })}\n`)
}

async function startRealtime (broker: Broker | undefined): Promise<void> {
  const app = Fastify({ logger: false })
  // Every client comes from 127.0.0.1: lift the per-address limit (100 by default) for the 1000 of them.
  const limits = { maxConnections: 100_000, maxConnectionsPerIp: 100_000 }
  await app.register(realtime, broker === undefined ? limits : { ...limits, broker })
  app.get('/bench', { realtime: true }, contractHandler(contract, {}, { rooms: { authorize: () => true } }))
  let seq = 0
  app.post('/publish', async (request) => {
    const { count } = request.body as { count: number }
    // All at once, as a burst from many requests would be: with Redis they share round trips.
    await Promise.all(Array.from({ length: count }, async () => { await app.realtime.publish(contract, ROOM, 'message', { seq: ++seq, text: TEXT }) }))
    return { published: count }
  })
  app.get('/cpu', async () => cpu())
  await app.listen({ host: '127.0.0.1', port: 0 })
  ready((app.server.address() as AddressInfo).port)
  process.once('SIGTERM', () => { void app.close().then(() => process.exit(0)) })
}

/** The baseline: one pre-serialized string per message, sent to every client of the server. */
function startRaw (): void {
  let seq = 0
  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const chunks: Buffer[] = []
    request.on('data', (chunk: Buffer) => chunks.push(chunk))
    request.on('end', () => {
      response.setHeader('content-type', 'application/json')
      if (request.method === 'POST' && request.url === '/publish') {
        const { count } = JSON.parse(Buffer.concat(chunks).toString()) as { count: number }
        for (let i = 0; i < count; i++) {
          seq++
          // The same bytes a realtime room member gets.
          const text = JSON.stringify({ type: 'message', data: { seq, text: TEXT }, room: ROOM, epoch: 'raw', offset: seq })
          for (const client of wss.clients) client.send(text)
        }
        response.end(JSON.stringify({ published: count }))
      } else if (request.method === 'GET' && request.url === '/cpu') {
        response.end(JSON.stringify(cpu()))
      } else {
        response.statusCode = 404
        response.end('{}')
      }
    })
  })
  const wss = new WebSocketServer({ server, path: '/bench' })
  wss.on('connection', (ws) => {
    // Answers a $join like the realtime route does, so clients run the same code against both.
    ws.on('message', (data) => {
      const message = JSON.parse(String(data)) as { type: string, id?: number }
      if (message.type === '$join') ws.send(JSON.stringify({ type: '$join:reply', data: { room: ROOM, epoch: 'raw', offset: seq }, id: message.id }))
    })
  })
  server.listen(0, '127.0.0.1', () => { ready((server.address() as AddressInfo).port) })
  process.once('SIGTERM', () => {
    for (const client of wss.clients) client.terminate()
    server.close(() => process.exit(0))
  })
}

/** RedisBroker's module, loaded by path so that this file type-checks before lib/hub/redis/index.ts exists. */
interface RedisModule {
  RedisBroker: new (options: { client: string, keyPrefix: string }) => Broker
}

const [variant, redisUrl, keyPrefix] = process.argv.slice(2)
if (variant === 'realtime') {
  await startRealtime(undefined)
} else if (variant === 'redis' && redisUrl !== undefined && keyPrefix !== undefined) {
  const path = '../lib/hub/redis/index.js'
  const { RedisBroker } = await import(path) as RedisModule
  await startRealtime(new RedisBroker({ client: redisUrl, keyPrefix }))
} else if (variant === 'raw') {
  startRaw()
} else {
  console.error('usage: broadcast-server.ts realtime | raw | redis <redis url> <key prefix>')
  process.exit(2)
}
