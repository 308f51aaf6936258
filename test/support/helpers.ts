import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { once } from 'node:events'
import net from 'node:net'
import type { Test } from 'tap'
import WebSocket, { type ClientOptions } from 'ws'
import realtime, { type RealtimeHubOptions, type RealtimePluginOptions } from '../../lib/index.js'
// Every test file that uses these helpers fails a test during which the process sees an uncaught error.
import './process-guard.js'

export interface Built {
  app: FastifyInstance
  url: string
  port: number
}

/** An app with the plugin registered, `setup` applied, listening on 127.0.0.1:0, closed on teardown. */
export async function build (
  t: Test,
  setup: (app: FastifyInstance) => void | Promise<void>,
  options: RealtimePluginOptions & RealtimeHubOptions = {},
  serverOptions: FastifyServerOptions = {}
): Promise<Built> {
  const app = Fastify({ logger: false, ...serverOptions })
  await app.register(realtime, options)
  await setup(app)
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const address = app.server.address() as net.AddressInfo
  return { app, port: address.port, url: `ws://127.0.0.1:${address.port}` }
}

/** A connected ws client, terminated on teardown. */
export async function connect (t: Test, url: string, protocols?: string | string[], options?: ClientOptions): Promise<WebSocket> {
  const ws = new WebSocket(url, protocols, options)
  t.teardown(() => { ws.terminate() })
  await once(ws, 'open')
  return ws
}

/** A client queue: every message and the close, awaited in order. */
export class Client {
  readonly ws: WebSocket
  private readonly messages: Array<{ data: Buffer, isBinary: boolean }> = []
  private waiting: ((value: { data: Buffer, isBinary: boolean }) => void) | null = null
  readonly closed: Promise<{ code: number, reason: string }>

  constructor (ws: WebSocket) {
    this.ws = ws
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const waiting = this.waiting
      if (waiting !== null) {
        this.waiting = null
        waiting({ data, isBinary })
      } else {
        this.messages.push({ data, isBinary })
      }
    })
    this.closed = once(ws, 'close').then(([code, reason]) => ({ code: code as number, reason: String(reason) }))
  }

  next (): Promise<{ data: Buffer, isBinary: boolean }> {
    const queued = this.messages.shift()
    if (queued !== undefined) return Promise.resolve(queued)
    return new Promise((resolve) => { this.waiting = resolve })
  }

  async text (): Promise<string> {
    return (await this.next()).data.toString()
  }
}

export async function client (t: Test, url: string, protocols?: string | string[], options?: ClientOptions): Promise<Client> {
  const ws = new WebSocket(url, protocols, options)
  t.teardown(() => { ws.terminate() })
  const c = new Client(ws)
  await once(ws, 'open')
  return c
}

/** A ws client's handshake: status 101 once open, or the status it was refused with. Terminated on teardown. */
export function attempt (t: Test, url: string, protocols?: string[], options?: ClientOptions): Promise<{ status: number, ws: WebSocket }> {
  const ws = new WebSocket(url, protocols, options)
  ws.on('error', () => {})
  t.teardown(() => { ws.terminate() })
  return new Promise((resolve) => {
    ws.once('open', () => { resolve({ status: 101, ws }) })
    ws.once('unexpected-response', (_request, response) => {
      response.resume()
      resolve({ status: response.statusCode as number, ws })
    })
  })
}

/** A raw TCP client that sends `request` and resolves with the first response (status line + headers + body so far). */
export async function rawRequest (port: number, request: string): Promise<{ status: number, head: string, socket: net.Socket }> {
  const socket = net.connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write(request)
  let buffered = ''
  // once() rather than for-await: breaking out of an async iterator would destroy the socket.
  while (!buffered.includes('\r\n\r\n')) {
    const [chunk] = await once(socket, 'data') as [Buffer]
    buffered += chunk.toString('latin1')
  }
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(buffered)?.[1])
  return { status, head: buffered, socket }
}

/** A handshake request with every header right, and `headers` overriding them (null removes one). */
export function handshake (path: string, headers: Record<string, string | null> = {}): string {
  const all: Record<string, string | null> = {
    Host: '127.0.0.1',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
    'Sec-WebSocket-Version': '13',
    ...headers
  }
  const lines = Object.entries(all).filter(([, value]) => value !== null).map(([name, value]) => `${name}: ${value as string}`)
  return `GET ${path} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`
}

/** Resolves on the next event from `emitter`; a deadline makes a broken test fail instead of hang. */
export { once }

export interface RawResponse {
  status: number
  /** Header names lowercased; repeated headers joined with ', '. */
  headers: Record<string, string>
  body: string
}

/**
 * Sends `request` over raw TCP and resolves with the whole first response: head parsed, body read
 * to its Content-Length (or to the end of the connection). The socket is destroyed afterwards.
 */
export async function rawResponse (port: number, request: string): Promise<RawResponse> {
  const socket = net.connect(port, '127.0.0.1')
  try {
    await once(socket, 'connect')
    socket.write(request)
    let buffered = Buffer.alloc(0)
    let parsed: { status: number, headers: Record<string, string>, bodyStart: number } | null = null
    const complete = (): boolean => {
      if (parsed === null) {
        const end = buffered.indexOf('\r\n\r\n')
        if (end === -1) return false
        const [statusLine = '', ...lines] = buffered.subarray(0, end).toString('latin1').split('\r\n')
        const headers: Record<string, string> = {}
        for (const line of lines) {
          const colon = line.indexOf(':')
          const name = line.slice(0, colon).trim().toLowerCase()
          const value = line.slice(colon + 1).trim()
          headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`
        }
        parsed = { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine)?.[1]), headers, bodyStart: end + 4 }
      }
      if (parsed.status < 200) return true
      const length = parsed.headers['content-length']
      return length !== undefined && buffered.length - parsed.bodyStart >= Number(length)
    }
    for await (const chunk of socket) {
      buffered = Buffer.concat([buffered, chunk as Buffer])
      if (complete()) break
    }
    if (parsed === null) complete()
    if (parsed === null) throw new Error(`no complete response head, got ${JSON.stringify(buffered.toString('latin1'))}`)
    const { status, headers, bodyStart } = parsed as { status: number, headers: Record<string, string>, bodyStart: number }
    const length = headers['content-length']
    const body = buffered.subarray(bodyStart, length === undefined ? undefined : bodyStart + Number(length)).toString('utf8')
    return { status, headers, body: status < 200 ? '' : body }
  } finally {
    socket.destroy()
  }
}

/** A realtime handler that echoes text and binary messages until the peer closes. */
export async function echoHandler (conn: import('../../lib/index.js').RealtimeConnection): Promise<void> {
  for await (const message of conn) {
    if (message.type === 'text') await conn.sendText(message.data)
    else if (message.type === 'binary') await conn.sendBinary(message.data)
  }
}

/** Asserts that a fresh client can connect to `url` and get one message echoed back. */
export async function assertEchoes (t: Test, url: string, protocols?: string | string[], options?: ClientOptions): Promise<void> {
  const c = await client(t, url, protocols, options)
  const text = `still serving ${Math.random()}`
  c.ws.send(text)
  t.equal(await c.text(), text, `the server still echoes on ${url}`)
  c.ws.close(1000)
  await c.closed
}

/** A promise with its resolve exposed, for handing values out of handlers. */
export function deferred<T = void> (): { promise: Promise<T>, resolve: (value: T) => void } {
  let resolve!: (value: T) => void
  const promise = new Promise<T>((_resolve) => { resolve = _resolve })
  return { promise, resolve }
}

/** A loopback port nobody listens on right now (for servers that need a concrete port). */
export async function freePort (): Promise<number> {
  const server = net.createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as net.AddressInfo
  server.close()
  await once(server, 'close')
  return port
}

/** Rejects after `ms`, naming what did not happen: every wait on a child process is bounded. */
export async function within<T> (ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`${what}: not within ${ms} ms`)) }, ms) })
  try {
    return await Promise.race([promise, deadline])
  } finally {
    clearTimeout(timer)
  }
}
