import { WebSocket } from 'ws'
import { peerCloseCall } from './ws-internals.js'
import { kConnection, kPeerClose } from '../symbols.js'

/**
 * Called once when the peer's close frame arrives; returns true to hold the reply back
 * (autoClose off) so the handler can still send and then choose its own close code.
 */
export type PeerCloseHook = (this: RealtimeSocket, code: number, reason: Buffer) => boolean

/**
 * The ws WebSocket class fastify-realtime's server creates (ws's public `WebSocket` option).
 *
 * ws answers a peer's close frame by calling `close(code, reason)` on the socket from its
 * receiver; there is no option to stop it. Overriding `close()` lets the connection see the
 * peer's close first and, with autoClose off, defer the reply.
 */
export class RealtimeSocket extends WebSocket {
  [kPeerClose]: PeerCloseHook | null = null;
  /** The connection that owns this socket. */
  [kConnection]: object | null = null

  override close (code?: number, data?: string | Buffer): void {
    const hook = this[kPeerClose]
    if (hook !== null && this.readyState === WebSocket.OPEN && peerCloseCall(this, code, data)) {
      this[kPeerClose] = null
      const reason = data === undefined ? Buffer.alloc(0) : Buffer.from(data)
      if (hook.call(this, code ?? 1005, reason)) return
    }
    super.close(code, data)
  }
}
