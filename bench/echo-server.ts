/**
 * One server of bench/echo.ts or bench/idle.ts, started by it in a child process of its own:
 *
 *   echo-server.ts raw            a plain ws WebSocketServer, the baseline (`raw keep-request`: each connection keeps its request)
 *   echo-server.ts fastify        a bare @fastify/websocket route
 *   echo-server.ts typed          @fastify/websocket + a TypeBox TypeCompiler check of data
 *   echo-server.ts realtime       fastify-realtime: contractHandler with an `echo` request
 *   echo-server.ts socketio       socket.io, websocket transport only: an `echo` envelope in a `message` event
 *   echo-server.ts realtime-raw   fastify-realtime: a `{ realtime: true }` route that only awaits the close (idle bench)
 *
 * Every echo variant answers `{ "type": "echo", "data": ..., "id": ... }` with
 * `{ "type": "echo:reply", "data": <the same data>, "id": <the same id> }`, on the WebSocket path `/`
 * (socket.io: its own path `/socket.io/`, both envelopes as the argument of a `message` event).
 * bench/aiohttp-server.py is the same server in Python. Each listens on 127.0.0.1 on a free port and
 * prints `{"port":N}` as its first stdout line. HTTP endpoints:
 *   GET /cpu   process.cpuUsage() of this process, in µs
 *   GET /mem   process.memoryUsage() after two full GCs (start with --expose-gc; `gc` says whether it ran)
 *
 * A second argument `defaults` gives the contract route the plugin's default rate limit, as the
 * idle bench wants; the echo bench turns it off (it would throttle the load). `room` is `defaults`
 * plus `rooms` that let every client `$join` (the idle bench's clients join `lobby`). Either way the
 * plugin's connection caps are raised so that they never refuse the bench's clients.
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
import { Server as SocketIoServer, type Socket as SocketIoSocket } from 'socket.io'
import { WebSocketServer, type RawData, type WebSocket } from 'ws'
import type { ContractOptions } from '../lib/index.js'

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

/** The memory figures of the idle bench; two GCs, as the first may leave what finalizers free to the second. */
function memory (): NodeJS.MemoryUsage & { gc: boolean } {
  globalThis.gc?.()
  globalThis.gc?.()
  return { ...process.memoryUsage(), gc: typeof globalThis.gc === 'function' }
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

/** GET /cpu and GET /mem on a plain node:http server. */
function statsEndpoints (request: IncomingMessage, response: ServerResponse): void {
  response.setHeader('content-type', 'application/json')
  if (request.method === 'GET' && request.url === '/cpu') {
    response.end(JSON.stringify(process.cpuUsage()))
  } else if (request.method === 'GET' && request.url === '/mem') {
    response.end(JSON.stringify(memory()))
  } else {
    response.statusCode = 404
    response.end('{}')
  }
}

// ---- (1) raw ws ----

/** `keepRequest`: each connection holds its upgrade request, as an app that reads it later would. */
function startRaw (keepRequest: boolean): void {
  const server = createServer(statsEndpoints)
  const wss = new WebSocketServer({ server, path: '/' })
  const requests = new WeakMap<WebSocket, IncomingMessage>()
  wss.on('connection', (ws: WebSocket, request: IncomingMessage) => {
    if (keepRequest) requests.set(ws, request)
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
  app.get('/mem', async () => memory())
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

async function startRealtime (route: 'contract' | 'raw', mode: string | undefined): Promise<void> {
  const path = process.env.ECHO_LIB ?? '../lib/index.js'
  const { default: realtime, contractHandler, defineContract } = await import(path) as typeof import('../lib/index.js')
  const contract = defineContract({
    client: { echo: { data: EchoData, reply: EchoData } },
    server: {}
  })
  const app = Fastify({ logger: false })
  // Every client comes from 127.0.0.1: the caps (10000 connections, 100 per address by default) are
  // raised to this machine's open-file limit. Older versions of lib/ without them refuse the option.
  const caps = { maxConnections: 20_000, maxConnectionsPerIp: 20_000 }
  try {
    await app.register(realtime, caps)
    await app.after()
  } catch (error) {
    if ((error as { code?: string }).code !== 'FST_RT_INVALID_OPTION') throw error
    process.stderr.write(`echo-server: this lib/ refused ${JSON.stringify(caps)}; it runs with its own caps\n`)
    await app.register(realtime)
  }
  if (route === 'raw') {
    app.get('/', { realtime: true }, async (connection) => { await connection.whenClosed() })
  } else {
    // rateLimit: false for the echo bench, because the default (100 messages a second per
    // connection, bursts of 200) would throttle the benchmark long before the server is busy.
    const options: ContractOptions<typeof contract> = mode === 'room' ? { rooms: { authorize: () => true } } : mode === 'defaults' ? {} : { rateLimit: false }
    app.get('/', { realtime: true }, contractHandler(contract, { echo: (data) => data }, options))
  }
  await listen(app)
}

// ---- (5) socket.io ----

function startSocketIo (): void {
  const server = createServer(statsEndpoints)
  // The websocket transport only (a client that starts with long-polling is refused), no
  // compression, and the default ping every 25 s, which the bench clients answer.
  const io = new SocketIoServer(server, { transports: ['websocket'], allowUpgrades: false, perMessageDeflate: false, httpCompression: false, serveClient: false })
  io.on('connection', (socket: SocketIoSocket) => {
    socket.on('message', (message: Envelope) => {
      // socket.io parses the packet and stringifies the reply itself: the same JSON work as the others.
      socket.emit('message', message.type === 'echo'
        ? { type: 'echo:reply', data: message.data, id: message.id }
        : { type: 'error', data: { code: 'UNKNOWN_TYPE', message: `unknown type ${String(message.type)}` }, id: message.id })
    })
  })
  server.listen(0, '127.0.0.1', () => { ready((server.address() as AddressInfo).port) })
  onTerm(async () => {
    io.disconnectSockets(true)
    await new Promise((resolve) => { void io.close(resolve) })
  })
}

const [variant, mode] = process.argv.slice(2)
if (variant === 'raw') {
  startRaw(mode === 'keep-request')
} else if (variant === 'fastify' || variant === 'typed') {
  await startFastify(variant === 'typed')
} else if (variant === 'realtime' || variant === 'realtime-raw') {
  await startRealtime(variant === 'realtime' ? 'contract' : 'raw', mode)
} else if (variant === 'socketio') {
  startSocketIo()
} else {
  console.error('usage: echo-server.ts raw | fastify | typed | realtime | socketio | realtime-raw [defaults | room]')
  process.exit(2)
}
