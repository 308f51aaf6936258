import type { FastifyInstance } from 'fastify'
import type { WebSocket } from 'ws'
import type { SocketEventHandler, WebSocketClass, WebSocketLike } from '../client/socket.js'

// The client's socket over `app.injectWS()`: an in-memory stream into the app's router, with every
// hook, schema and handler of a real upgrade, and no port. The client builds one per (re)connect
// through its `WebSocket` option, so reconnects, rejoins and recovery work as over the network.

const CONNECTING = 0
const OPEN = 1
const CLOSING = 2
const CLOSED = 3

/** Opens sockets into `app`; while `held`, new ones wait (a simulated outage) until `release()`. */
export class SocketFactory {
  readonly #app: FastifyInstance
  readonly #headers: Record<string, string>
  #held = false
  readonly #parked: InjectedSocket[] = []
  /** The socket opened last. */
  current: InjectedSocket | null = null
  /** Why the last upgrade failed (e.g. `Unexpected server response: 401`). */
  lastFailure: Error | null = null
  /** Called after an upgrade was refused, once the client has seen the socket close. */
  onRefused: (() => void) | null = null

  constructor (app: FastifyInstance, headers: Record<string, string>) {
    this.#app = app
    this.#headers = headers
  }

  /** The class to give the client as its `WebSocket` option. */
  get WebSocket (): WebSocketClass {
    const factory = this
    return function InjectedWebSocket (url: string, protocols?: string | string[]): WebSocketLike {
      const target = new URL(url)
      const offered = protocols === undefined ? [] : [protocols].flat()
      const headers = offered.length === 0 ? factory.#headers : { ...factory.#headers, 'sec-websocket-protocol': offered.join(', ') }
      const socket = new InjectedSocket(factory.#app, target.pathname + target.search, headers, factory)
      factory.current = socket
      if (factory.#held) {
        factory.#parked.push(socket)
        factory.#onParked?.()
      } else {
        socket.start()
      }
      return socket
    } as unknown as WebSocketClass
  }

  #onParked: (() => void) | null = null

  /** Holds new sockets until `release()`; resolves when the next one is held. */
  hold (): Promise<void> {
    this.#held = true
    return new Promise((resolve) => { this.#onParked = resolve })
  }

  release (): void {
    this.#held = false
    for (const socket of this.#parked.splice(0)) socket.start()
  }
}

export class InjectedSocket implements WebSocketLike {
  readyState = CONNECTING
  onopen: SocketEventHandler<unknown> | null = null
  onmessage: SocketEventHandler<{ data: unknown }> | null = null
  onclose: SocketEventHandler<{ code: number, reason: string }> | null = null
  onerror: SocketEventHandler<unknown> | null = null
  readonly #app: FastifyInstance
  readonly #path: string
  readonly #headers: Record<string, string>
  readonly #factory: SocketFactory
  #ws: WebSocket | null = null
  /** A close asked for before the socket opened, done as it opens. */
  #closeOnOpen: { code?: number, reason?: string } | null = null

  constructor (app: FastifyInstance, path: string, headers: Record<string, string>, factory: SocketFactory) {
    this.#app = app
    this.#path = path
    this.#headers = headers
    this.#factory = factory
  }

  start (): void {
    if (this.readyState !== CONNECTING) return
    this.#app.injectWS(this.#path, { headers: this.#headers }, {
      onInit: (ws) => {
        this.#ws = ws
        ws.on('message', (data, isBinary) => { this.onmessage?.({ data: isBinary ? data : String(data) }) })
        ws.on('close', (code, reason) => { this.#closed(code, String(reason)) })
        // A socket error is followed by 'close', which the client acts on.
        ws.on('error', () => {})
      },
      // In 'open' itself: a message right behind the handshake must find the socket open.
      onOpen: (ws) => {
        if (this.#closeOnOpen !== null) {
          ws.close(this.#closeOnOpen.code, this.#closeOnOpen.reason)
          return
        }
        this.readyState = OPEN
        this.onopen?.({})
      }
    }).catch((error: unknown) => {
      this.#factory.lastFailure = error as Error
      this.onerror?.(error)
      this.#closed(1006, '')
      this.#factory.onRefused?.()
    })
  }

  send (data: string): void {
    // The client sends only on an open socket; a late call after a close is dropped, as a browser does.
    if (this.readyState === OPEN) this.#ws?.send(data)
  }

  close (code?: number, reason?: string): void {
    if (this.readyState === CLOSING || this.readyState === CLOSED) return
    if (this.readyState === CONNECTING) {
      this.#closeOnOpen = { code, reason }
      this.readyState = CLOSING
      return
    }
    this.readyState = CLOSING
    this.#ws?.close(code, reason)
  }

  /** Ends the stream without a close frame: both ends see 1006, as after a network failure. */
  terminate (): void {
    this.readyState = CLOSING
    this.#ws?.terminate()
  }

  #closed (code: number, reason: string): void {
    this.readyState = CLOSED
    this.onclose?.({ code, reason })
  }
}
