import type { IncomingMessage, ServerResponse } from 'node:http'
import * as wsModule from 'ws'
import type { WebSocket } from 'ws'
import type { RouteSettings } from '../options/route.js'

/*
 * ws keeps maxPayload, autoPong, the close timer and zlib settings per server, but routes need
 * their own. These are the only private ws fields fastify-realtime touches; each is set right after
 * the upgrade, before ws has parsed a byte. test/ws-internals.test.ts checks each at the ws version
 * installed for development, and the consumer test runs the documented examples, which use all of
 * them, on the newest ws that package.json's range allows.
 */
interface WsPrivate {
  _receiver: { _maxPayload: number } | null
  _sender: { _state: number, _queue: unknown[] }
  _extensions: Record<string, { _maxPayload: number, _options: Record<string, unknown> } | undefined>
  _autoPong: boolean
  _closeTimeout: number
  _closeFrameReceived: boolean
}

function internals (ws: WebSocket): WsPrivate {
  return ws as unknown as WsPrivate
}

/** Applies one route's limits to a freshly upgraded socket. */
export function applyRouteSettings (ws: WebSocket, settings: RouteSettings): void {
  const raw = internals(ws)
  if (raw._receiver !== null) raw._receiver._maxPayload = settings.maxMsgSize
  const deflate = raw._extensions['permessage-deflate']
  if (deflate !== undefined && settings.compress !== null) {
    // The inflated size counts against the limit too, so a small frame cannot inflate past it.
    deflate._maxPayload = settings.maxMsgSize
    deflate._options = {
      ...deflate._options,
      zlibDeflateOptions: { level: settings.compress.level, memLevel: settings.compress.memLevel }
    }
  }
  // ws pongs as soon as a ping is parsed; with autoPing off the handler answers instead.
  raw._autoPong = settings.autoPing
  // Our own deadline enforces closeTimeout with aiohttp semantics; ws's timer is only a backstop.
  raw._closeTimeout = backstopCloseTimeout(settings.closeTimeout)
}

/** Whether the peer's close frame has been read (ws has no public way to tell). */
export function closeFrameReceived (ws: WebSocket): boolean {
  return internals(ws)._closeFrameReceived
}

/** Whether permessage-deflate was negotiated for this socket. */
export function deflateNegotiated (ws: WebSocket): boolean {
  return internals(ws)._extensions['permessage-deflate'] !== undefined
}

/** ws's own close timer: twice ours, capped where Node timers would overflow and fire at once. */
export function backstopCloseTimeout (closeTimeout: number): number {
  return Math.min(closeTimeout * 2, 2 ** 31 - 1)
}

/*
 * What the upgrade leaves behind. @fastify/websocket routes the upgrade request through Fastify with
 * a ServerResponse assigned to the TCP socket (so the socket points at it) and keeps the socket and
 * the bytes after the head on the request under its own symbols. None of it is used once the socket
 * is a WebSocket, but the connection keeps the request (`connection.request`) for its whole life.
 * test/ws-internals.test.ts checks them at the installed @fastify/websocket version; the consumer
 * test runs every upgrade path of the examples on the newest one of package.json's range.
 */
const UPGRADE_KEYS = new Set(['ws-socket', 'ws-head'])

/** Lets go of the upgrade's ServerResponse and of @fastify/websocket's references on the request. */
export function releaseUpgrade (raw: IncomingMessage): void {
  const socket = raw.socket as typeof raw.socket & { _httpMessage: ServerResponse }
  socket._httpMessage.detachSocket(socket)
  for (const key of Object.getOwnPropertySymbols(raw)) {
    if (UPGRADE_KEYS.has(String(key.description))) (raw as unknown as Record<symbol, unknown>)[key] = undefined
  }
}

interface FrameOptions { fin: boolean, opcode: number, mask: boolean, readOnly: boolean, rsv1: boolean }
/** ws's frame builder (a named export of ws that @types/ws does not declare). */
const Sender = (wsModule as unknown as { Sender: { frame: (data: Buffer, options: FrameOptions) => Buffer[] } }).Sender
const TEXT_FRAME: FrameOptions = { fin: true, opcode: 0x01, mask: false, readOnly: false, rsv1: false }

/** One unmasked, uncompressed text frame (header and payload in one buffer), to write to many sockets. */
export function textFrame (payload: Buffer): Buffer {
  return Buffer.concat(Sender.frame(payload, TEXT_FRAME))
}

/**
 * Whether ws's sender has nothing in progress or queued (its state is DEFAULT while no message is
 * being compressed or read from a Blob): only then may a frame go straight to the socket and keep
 * its place in the order of messages.
 */
export function senderIdle (ws: WebSocket): boolean {
  const sender = internals(ws)._sender
  return sender._state === 0 && sender._queue.length === 0
}
