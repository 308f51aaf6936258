import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { once } from 'node:events'
import net from 'node:net'
import type { Test } from 'tap'
import WebSocket, { type ClientOptions } from 'ws'
import realtime, { type RealtimePluginOptions } from '../lib/index.js'

export interface Built {
  app: FastifyInstance
  url: string
  port: number
}

/** An app with the plugin registered, `setup` applied, listening on 127.0.0.1:0, closed on teardown. */
export async function build (
  t: Test,
  setup: (app: FastifyInstance) => void | Promise<void>,
  options: RealtimePluginOptions = {},
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

/** A raw TCP client that sends `request` and resolves with the first response (status line + headers + body so far). */
export async function rawRequest (port: number, request: string): Promise<{ status: number, head: string, socket: net.Socket }> {
  const socket = net.connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write(request)
  let buffered = ''
  for await (const chunk of socket) {
    buffered += (chunk as Buffer).toString('latin1')
    if (buffered.includes('\r\n\r\n')) break
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
