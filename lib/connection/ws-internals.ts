import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import * as wsModule from 'ws'
import type { WebSocket, WebSocketServer } from 'ws'
import { kUpgradeSocket } from '../symbols.js'

/*
 * The only place fastify-realtime reaches past the public API of ws, @fastify/websocket or Node.
 * Every reach is feature-checked once, when this module loads (the plugin's startup), and has a
 * fallback through public API: a changed dependency may cost speed or memory, never correctness.
 * docs/operations.md lists them with what each fallback costs; test/ws-internals.test.ts checks
 * the probes and runs the fallbacks.
 */

interface FrameOptions { fin: boolean, opcode: number, mask: boolean, readOnly: boolean, rsv1: boolean }
interface SenderPrivate { _state: unknown, _queue: unknown }
interface SenderClass {
  frame?: (data: Buffer, options: FrameOptions) => Buffer[]
  new (socket: object): SenderPrivate
}
interface SocketPrivate {
  _sender: SenderPrivate | null
  _closeFrameReceived: unknown
}

const TEXT_FRAME: FrameOptions = { fin: true, opcode: 0x01, mask: false, readOnly: false, rsv1: false }
// ws's frame builder and sender (a named export of ws that @types/ws does not declare).
const Sender = (wsModule as unknown as WsModule).Sender

/** What of ws's private side is there and behaves as this version expects. */
export interface WsFeatures {
  /**
   * `Sender.frame()` builds a text frame, and a socket's sender shows when it has nothing in
   * progress (`_sender._state`, `_sender._queue`): the broadcast fast path, which writes one frame
   * built once to many sockets. Without it every member gets the text through `ws.send()`.
   */
  sharedFrames: boolean
  /**
   * ws sets `_closeFrameReceived` before it answers the peer's close frame. Without it the answer
   * is told from a protocol error's close by the arguments ws passes (see `peerCloseCall`).
   */
  closeFrameFlag: boolean
}

/** The parts of ws's module the probe looks at. */
export interface WsModule {
  Sender?: SenderClass
  WebSocket: new (address: null, protocols: undefined, options: object) => object
}

/** Probes ws once: fields of the expected types on a fresh socket and sender, a frame of the expected bytes. */
export function probeWs (ws: WsModule): WsFeatures {
  const socket = new ws.WebSocket(null, undefined, { autoPong: true }) as Partial<SocketPrivate>
  return {
    sharedFrames: framesBehave(ws.Sender) && Object.hasOwn(socket, '_sender'),
    closeFrameFlag: socket._closeFrameReceived === false
  }
}

function framesBehave (Sender: SenderClass | undefined): boolean {
  if (Sender === undefined || typeof Sender.frame !== 'function') return false
  try {
    const frame = Buffer.concat(Sender.frame(Buffer.from('hi'), TEXT_FRAME))
    const fresh = new Sender({})
    return frame.equals(Buffer.from([0x81, 2, 0x68, 0x69])) && fresh._state === 0 && Array.isArray(fresh._queue) && fresh._queue.length === 0
  } catch {
    return false
  }
}

/** What the probe found; tests switch features off to run the fallbacks. */
export const wsFeatures: WsFeatures = probeWs(wsModule as unknown as WsModule)

/** One unmasked, uncompressed text frame (header and payload in one buffer), to write to many sockets; null without `sharedFrames`. */
export function textFrame (payload: Buffer): Buffer | null {
  if (!wsFeatures.sharedFrames) return null
  return Buffer.concat((Sender as Required<SenderClass>).frame(payload, TEXT_FRAME))
}

/**
 * Whether ws's sender has nothing in progress or queued (its state is DEFAULT while no message is
 * being compressed or read from a Blob): only then may a frame go straight to the socket and keep
 * its place in the order of messages. False whenever it cannot tell.
 */
export function senderIdle (ws: WebSocket): boolean {
  const sender = (ws as unknown as SocketPrivate)._sender
  return sender !== null && sender._state === 0 && (sender._queue as unknown[]).length === 0
}

/**
 * Whether a `close()` call that fastify-realtime did not make is ws answering the peer's close
 * frame (rather than closing after a protocol error): ws has no public way to tell. With the flag,
 * it is read; without it, by the call: ws answers a close frame with `close()` (no code received)
 * or `close(code, reasonBuffer)`, and fails a protocol error with `close(code)`.
 */
export function peerCloseCall (ws: WebSocket, code: number | undefined, data: string | Buffer | undefined): boolean {
  if (wsFeatures.closeFrameFlag) return (ws as unknown as SocketPrivate)._closeFrameReceived === true
  return code === undefined || Buffer.isBuffer(data)
}

/** ws's own close timer: twice ours, capped where Node timers would overflow and fire at once. */
export function backstopCloseTimeout (closeTimeout: number): number {
  return Math.min(closeTimeout * 2, 2 ** 31 - 1)
}

// ---- @fastify/websocket ----

type HandleUpgrade = WebSocketServer['handleUpgrade']

/**
 * Upgrade requests on their way to their route's ws server (marked by the plugin's onRequest hook,
 * taken by the bridge). A WeakMap rather than a property: the request outlives the upgrade as
 * `connection.request`, and an entry taken leaves nothing on it.
 */
const routeServers = new WeakMap<IncomingMessage, WebSocketServer>()
type UpgradeRequest = IncomingMessage & { [kUpgradeSocket]?: Duplex }

/** Sends this upgrade request to `server` once @fastify/websocket upgrades it. */
export function markUpgrade (raw: IncomingMessage, server: WebSocketServer): void {
  routeServers.set(raw, server)
}

/**
 * Hands each realtime upgrade to its route's own ws server. @fastify/websocket routes the upgrade
 * through Fastify and then upgrades every request with the one server it decorates
 * (`fastify.websocketServer.handleUpgrade(request, socket, head, callback)`) and has no option for
 * a route's own: that call is passed on to the server the route marked the request for. If a newer
 * @fastify/websocket no longer calls it, the mark stays and `bridged()` says so.
 */
export function bridgeUpgrades (server: WebSocketServer): void {
  const fallback = server.handleUpgrade
  server.handleUpgrade = function routeUpgrade (this: WebSocketServer, request, socket, head, callback) {
    const own = routeServers.get(request)
    if (own === undefined) {
      fallback.call(this, request, socket, head, callback)
      return
    }
    routeServers.delete(request)
    if (request.socket !== socket) {
      (request as UpgradeRequest)[kUpgradeSocket] = socket
      closeWhenEnded(socket)
    }
    own.handleUpgrade(request, socket, head, callback)
  } satisfies HandleUpgrade
}

/**
 * The stream of `app.injectWS()` is no TCP socket: it does not close once both of its sides have
 * ended, so after a close handshake the connection would wait out `closeTimeout` (and a shutdown
 * with it). It is destroyed then, as Node closes a socket whose both sides are done.
 */
function closeWhenEnded (socket: Duplex): void {
  // duplexify's streams (readable-stream 3) have no readableEnded or writableFinished: counted here.
  let sides = 0
  const ended = (): void => { if (++sides === 2) socket.destroy() }
  socket.once('end', ended)
  socket.once('finish', ended)
}

/** Whether the upgrade of this request went through `bridgeUpgrades` (its route's server). */
export function bridged (raw: IncomingMessage): boolean {
  return !routeServers.has(raw)
}

/** The TCP socket under an upgraded request: Node's, or the stream of `app.injectWS()`. */
export function upgradeSocket (raw: IncomingMessage): Duplex {
  return (raw as UpgradeRequest)[kUpgradeSocket] ?? raw.socket
}

/**
 * Lets go of what the upgrade leaves behind on the TCP socket, which lives on under the WebSocket:
 * @fastify/websocket routes the upgrade request through Fastify with a ServerResponse assigned to
 * the socket, so the socket points at the response and through it at the IncomingMessage. It is
 * detached only where it is found as expected; otherwise it stays (memory, not behaviour).
 */
export function releaseUpgrade (raw: IncomingMessage): void {
  const socket = raw.socket as (Duplex & { _httpMessage?: { detachSocket?: (socket: Duplex) => void } | null }) | undefined
  const response = socket?._httpMessage
  if (typeof response?.detachSocket === 'function') response.detachSocket(socket as Duplex)
}
