/** What `receive()` returns, one shape per message type, as aiohttp's `WSMessage(type, data, extra)`. */
export type WSMessage =
  | { readonly type: 'text', readonly data: string, readonly extra: null }
  | { readonly type: 'binary', readonly data: Buffer, readonly extra: null }
  | { readonly type: 'ping', readonly data: Buffer, readonly extra: null }
  | { readonly type: 'pong', readonly data: Buffer, readonly extra: null }
  /** The peer's close frame: `data` is its code (1005 when it sent none), `extra` its reason. */
  | { readonly type: 'close', readonly data: number, readonly extra: string }
  /** The server started closing: no more messages will be delivered. */
  | { readonly type: 'closing', readonly data: null, readonly extra: null }
  /** The connection is closed. */
  | { readonly type: 'closed', readonly data: null, readonly extra: null }
  /** The connection failed (protocol error, heartbeat timeout, ...): `data` is the exception. */
  | { readonly type: 'error', readonly data: Error, readonly extra: null }

export type WSMessageType = WSMessage['type']

export const CLOSING_MESSAGE: WSMessage = Object.freeze({ type: 'closing', data: null, extra: null })
export const CLOSED_MESSAGE: WSMessage = Object.freeze({ type: 'closed', data: null, extra: null })
