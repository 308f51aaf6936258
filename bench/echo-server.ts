/**
 * One server of bench/echo.ts, started by it in a child process of its own:
 *
 *   echo-server.ts raw        a plain ws WebSocketServer, the baseline
 *   echo-server.ts fastify    a bare @fastify/websocket route
 *   echo-server.ts typed      @fastify/websocket + a TypeBox TypeCompiler check of data
 *   echo-server.ts realtime   fastify-realtime: contractHandler with an `echo` request
 *
 * Every variant answers `{ "type": "echo", "data": ..., "id": ... }` with
 * `{ "type": "echo:reply", "data": <the same data>, "id": <the same id> }` on the WebSocket path `/`.
 * Each listens on 127.0.0.1 on a free port and prints `{"port":N}` as its first stdout line.
 * HTTP endpoint:
 *   GET /cpu   process.cpuUsage() of this process, in µs
 *
 * ECHO_LIB, when set, is the path of another build of lib/index.ts to load (to compare two
 * versions of the plugin); by default it is this repository's lib/.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Type } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import websocket from '@fastify/websocket'
import Fastify, { type FastifyInstance } from 'fastify'
import { WebSocketServer, type RawData, type WebSocket } from 'ws'

/** The data of an echo: `{"user":"ada","text":"hello, world"}` is 36 bytes; the 4 KiB case has a 4000-char text. */
const EchoData = Type.Object({ user: Type.String(), text: Type.String() })

interface Envelope {
  type: string
  data: unknown
  id?: string | number
}

function ready (port: number): void {
  process.stdout.write(`${JSON.stringify({ port })}\n`)
}

function onTerm (close: () => Promise<unknown>): void {
  process.once('SIGTERM', () => { void close().then(() => process.exit(0), () => process.exit(1)) })
}

/** The reply a hand-written server builds: the envelope with `:reply`, through JSON.stringify. */
function reply (message: Envelope): string {
  return JSON.stringify({ type: 'echo:reply', data: message.data, id: message.id })
}

function unknownType (message: Envelope): string {
  return JSON.stringify({ type: 'error', data: { code: 'UNKNOWN_TYPE', message: `unknown type ${String(message.type)}` }, id: message.id })
}

// ---- (1) raw ws ----

function startRaw (): void {
  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    response.setHeader('content-type', 'application/json')
    if (request.method === 'GET' && request.url === '/cpu') {
      response.end(JSON.stringify(process.cpuUsage()))
    } else {
      response.statusCode = 404
      response.end('{}')
    }
  })
  const wss = new WebSocketServer({ server, path: '/' })
  wss.on('connection', (ws: WebSocket) => {
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (isBinary) return
      const message = JSON.parse(String(data)) as Envelope
      ws.send(message.type === 'echo' ? reply(message) : unknownType(message))
    })
  })
  server.listen(0, '127.0.0.1', () => { ready((server.address() as AddressInfo).port) })
  onTerm(async () => {
    for (const client of wss.clients) client.terminate()
    await new Promise((resolve) => { server.close(resolve) })
  })
}

// ---- (2) and (3) @fastify/websocket, bare and hand-typed ----

async function listen (app: FastifyInstance): Promise<void> {
  app.get('/cpu', async () => process.cpuUsage())
  await app.listen({ host: '127.0.0.1', port: 0 })
  ready((app.server.address() as AddressInfo).port)
  onTerm(async () => { await app.close() })
}

async function startFastify (typed: boolean): Promise<void> {
  const app = Fastify({ logger: false })
  await app.register(websocket)
  const check = TypeCompiler.Compile(EchoData)
  app.get('/', { websocket: true }, (socket) => {
    socket.on('message', (data: RawData, isBinary: boolean) => {
      if (isBinary) return
      const message = JSON.parse(String(data)) as Envelope
      if (message.type !== 'echo') {
        socket.send(unknownType(message))
      } else if (typed && !check.Check(message.data)) {
        const errors = [...check.Errors(message.data)].slice(0, 10).map((error) => ({ path: error.path, message: error.message }))
        socket.send(JSON.stringify({ type: 'error', data: { code: 'INVALID_DATA', message: 'Invalid data for echo', errors }, id: message.id }))
      } else {
        socket.send(reply(message))
      }
    })
  })
  await listen(app)
}

// ---- (4) fastify-realtime ----

async function startRealtime (): Promise<void> {
  const path = process.env.ECHO_LIB ?? '../lib/index.js'
  const { default: realtime, contractHandler, defineContract } = await import(path) as typeof import('../lib/index.js')
  const contract = defineContract({
    client: { echo: { data: EchoData, reply: EchoData } },
    server: {}
  })
  const app = Fastify({ logger: false })
  await app.register(realtime)
  // rateLimit: false, because the default (100 messages a second per connection, bursts of 200)
  // would throttle the benchmark long before the server is busy.
  app.get('/', { realtime: true }, contractHandler(contract, { echo: (data) => data }, { rateLimit: false }))
  await listen(app)
}

const [variant] = process.argv.slice(2)
if (variant === 'raw') {
  startRaw()
} else if (variant === 'fastify' || variant === 'typed') {
  await startFastify(variant === 'typed')
} else if (variant === 'realtime') {
  await startRealtime()
} else {
  console.error('usage: echo-server.ts raw | fastify | typed | realtime')
  process.exit(2)
}
