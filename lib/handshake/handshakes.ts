import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import type { EventEmitter } from 'node:events'
import { Server as HttpServer, type IncomingMessage } from 'node:http'
import { Server as HttpsServer } from 'node:https'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { Server as TlsServer } from 'node:tls'
import type { DeadlineClock, DeadlineOwner } from '../connection/timers.js'
import type { RealtimeMetrics } from '../metrics.js'
import { kHandshake } from '../symbols.js'
import type { ConnectionSlots } from './slots.js'

/** `head`: no request head yet; `upgrade`: an upgrade request in its hooks; then upgraded, or closed. */
type Phase = 'head' | 'upgrade' | 'open' | 'closed'

/** One socket, from its accept (or its upgrade request) to its upgrade or its close. */
class Handshake {
  phase: Phase = 'head'
  /** The routed request of an upgrade, for the log line of its drop. */
  request: FastifyRequest | null = null
  /** Whether it holds a connection slot, and for which address. */
  slot = false
  ip: string | undefined = undefined
  /** The socket's bytesWritten when its upgrade request arrived (a keep-alive socket has answered others). */
  written = 0

  constructor (readonly owner: Handshakes, readonly socket: Duplex, readonly at: number) {}
}

type Tracked = { [kHandshake]?: Handshake }

// Module-level, so a tracked socket costs no closure.
function onSocketClose (this: Duplex & Tracked): void {
  const handshake = this[kHandshake] as Handshake
  handshake.owner.closed(handshake)
}

function handshakeOf (request: FastifyRequest): Handshake {
  return (request.raw as IncomingMessage & Tracked)[kHandshake] as Handshake
}

/**
 * Every socket between its accept and its upgrade: one deadline (`handshakeTimeout`) and, from the
 * route's limit check on, one connection slot.
 *
 * The deadline starts when an HTTP/1 server accepts the socket, so it bounds the first request's
 * head from before its first byte, a socket that never sends one included, and, when that request
 * is an upgrade, the app's hooks up to the upgrade. It stops at the first plain request head: the
 * rest of that connection is the app's (Node's `headersTimeout` bounds the heads of its later
 * requests, which Node parses natively and reports only once complete). An upgrade that is not the
 * first request on its connection gets a deadline from its complete head.
 *
 * A slot is given back when the socket closes, whatever ended it (a refusal, an abort, the deadline,
 * a 503 while closing, ws refusing the upgrade, the connection's close), so none can leak.
 */
export class Handshakes implements DeadlineOwner {
  /** Sockets waiting for a head or an upgrade. Deadlines all have the same length: insertion order is deadline order. */
  private readonly waiting = new Set<Handshake>()

  constructor (
    private readonly clock: DeadlineClock,
    private readonly timeout: number,
    private readonly slots: ConnectionSlots,
    private readonly metrics: RealtimeMetrics,
    private readonly log: FastifyBaseLogger
  ) {}

  /** An HTTP/1 server accepted `socket` (after TLS, for https). */
  accepted (socket: Duplex): void {
    this.track(socket)
  }

  /** A plain request head is complete: the first one ends the socket's deadline. */
  requested (request: IncomingMessage): void {
    const socket = request.socket as Socket & Tracked
    const handshake = socket[kHandshake]
    if (handshake?.phase !== 'head') return
    this.waiting.delete(handshake)
    socket.removeListener('close', onSocketClose)
    socket[kHandshake] = undefined
  }

  /** An upgrade request head is complete (the server's 'upgrade' event, or injectWS). */
  upgrading (request: IncomingMessage, socket: Duplex): void {
    const handshake = (socket as Duplex & Tracked)[kHandshake] ?? this.track(socket)
    handshake.phase = 'upgrade'
    handshake.written = (socket as Socket).bytesWritten
    ;(request as IncomingMessage & Tracked)[kHandshake] = handshake
  }

  /**
   * Runs right after @fastify/websocket routed the upgrade request. While closing, Fastify answers
   * it with 503 at once, on a socket the HTTP server handed over and no longer manages: nobody would
   * end it, and `app.close()` would wait for it forever.
   */
  answered (socket: Duplex): void {
    const net = socket as Socket & Tracked
    // Upgraded already (every hook synchronous): ws reads the socket.
    if (net.listenerCount('data') > 0) return
    if (net.bytesWritten > (net[kHandshake] as Handshake).written) net.end(() => { net.destroy() })
  }

  /** Fastify has routed the upgrade request (so a drop can be logged with its request id). */
  routed (request: FastifyRequest): void {
    handshakeOf(request).request = request
  }

  /** Whether this request came in as an upgrade (an 'upgrade' event), whatever its route. */
  static isUpgrade (raw: object | undefined): boolean {
    return (raw as Tracked | undefined)?.[kHandshake] !== undefined
  }

  /** The route's limit check: takes a connection slot, or throws 503 / 429 (see ConnectionSlots). */
  reserve (request: FastifyRequest): void {
    const handshake = handshakeOf(request)
    // Its socket closed during the app's hooks: there is nothing to hold, and nobody to answer.
    if (handshake.phase !== 'upgrade') return
    this.slots.take(request.ip)
    handshake.slot = true
    handshake.ip = request.ip
    this.metrics.handshakes++
  }

  /** ws upgraded the request: the deadline stops, and its slot stays with the connection until the socket closes. */
  upgraded (raw: IncomingMessage): void {
    const handshake = (raw as IncomingMessage & Tracked)[kHandshake] as Handshake
    this.waiting.delete(handshake)
    handshake.phase = 'open'
    handshake.request = null
    // A route of @fastify/websocket's own (`websocket: true`) never passed the limit check.
    if (handshake.slot) this.metrics.handshakes--
  }

  /** @internal Its socket closed: whatever it held is given back. */
  closed (handshake: Handshake): void {
    this.waiting.delete(handshake)
    if (handshake.slot) {
      this.slots.give(handshake.ip)
      if (handshake.phase !== 'open') this.metrics.handshakes--
    }
    handshake.phase = 'closed'
  }

  /** @internal */
  onDeadline (now: number): number {
    for (const handshake of this.waiting) {
      if (handshake.at > now) return handshake.at
      this.waiting.delete(handshake)
      this.expire(handshake)
    }
    return Infinity
  }

  private track (socket: Duplex): Handshake {
    const handshake = new Handshake(this, socket, Date.now() + this.timeout)
    ;(socket as Duplex & Tracked)[kHandshake] = handshake
    socket.on('close', onSocketClose)
    this.waiting.add(handshake)
    this.clock.schedule(this, handshake.at)
    return handshake
  }

  private expire (handshake: Handshake): void {
    this.metrics.refused.handshakeTimeout++
    if (handshake.phase === 'head') {
      this.log.debug({ remoteAddress: (handshake.socket as Socket).remoteAddress }, 'realtime: no request head within handshakeTimeout, connection dropped')
    } else {
      (handshake.request?.log ?? this.log).info('realtime: handshake took too long, dropped')
    }
    // Its 'close' gives the slot back.
    handshake.socket.destroy()
  }
}

/**
 * Follows the server's sockets and upgrade requests into `handshakes`; returns what stops it. Call
 * it once @fastify/websocket is registered. An upgrade that reaches the server after
 * @fastify/websocket took its own 'upgrade' listener away (11.3.7 and later do so in `preClose`)
 * goes to `route`, so that Fastify still answers it (503 while closing) instead of nobody.
 * Only HTTP/1 servers (http, https) get the deadline from accept: an HTTP/2 server has no upgrade.
 */
/**
 * Node takes its own 'error' listener off a socket before it emits 'upgrade': whoever routes the
 * request guards the socket until ws takes it over (an unguarded error would be an uncaught one).
 */
export function destroyOnError (this: Duplex): void {
  this.destroy()
}

/** Routes an upgrade request through Fastify when no listener of the server does. */
export type UnroutedUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer) => void

export function watchServer (server: EventEmitter, handshakes: Handshakes, route: UnroutedUpgrade): () => void {
  // The listeners that route upgrades (@fastify/websocket's), as they are before ours join them;
  // counted down as they are taken away, so an upgrade costs no look at the listener list.
  const routers = server.listeners('upgrade')
  let routing = routers.length
  const onRemoved = (event: string | symbol, listener: unknown): void => {
    if (event === 'upgrade' && routers.includes(listener as (...args: unknown[]) => void)) routing--
  }
  const onSocket = (socket: Duplex): void => { handshakes.accepted(socket) }
  const onRequest = (request: IncomingMessage): void => { handshakes.requested(request) }
  const onUpgrade = (request: IncomingMessage, socket: Duplex): void => { handshakes.upgrading(request, socket) }
  const onRouted = (request: IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (routing === 0) route(request, socket, head)
    handshakes.answered(socket)
  }
  const http1 = server instanceof HttpServer || server instanceof HttpsServer
  // https hands a socket to HTTP once TLS is up; tls's own handshakeTimeout bounds TLS itself.
  const accept = server instanceof TlsServer ? 'secureConnection' : 'connection'
  if (http1) {
    server.on(accept, onSocket)
    server.on('request', onRequest)
  }
  // Around @fastify/websocket's listener, which routes the request at once.
  server.prependListener('upgrade', onUpgrade)
  server.on('upgrade', onRouted)
  server.on('removeListener', onRemoved)
  return () => {
    server.removeListener('removeListener', onRemoved)
    server.removeListener(accept, onSocket)
    server.removeListener('request', onRequest)
    server.removeListener('upgrade', onUpgrade)
    server.removeListener('upgrade', onRouted)
  }
}
