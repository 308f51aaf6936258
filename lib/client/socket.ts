// The WebSocket the client runs on, whichever implementation it is, and how the client lets go of one.

/**
 * An event handler slot of a socket. The client only ever assigns to these, never calls them, so a
 * socket whose events carry more (`ws`'s, a browser's) must fit: declared through a method, whose
 * parameter TypeScript compares both ways, where a plain function type would reject the richer event.
 */
export type SocketEventHandler<E> = { handle (event: E): void }['handle']

/** The part of the WHATWG WebSocket the client uses; browsers' and `ws`'s both fit. */
export interface WebSocketLike {
  readonly readyState: number
  /** Bytes sent but not yet written to the network, where the socket reports it: a volatile send is dropped above 0. */
  readonly bufferedAmount?: number
  send (data: string): void
  close (code?: number, reason?: string): void
  onopen: SocketEventHandler<unknown> | null
  onmessage: SocketEventHandler<{ data: unknown }> | null
  onclose: SocketEventHandler<{ code: number, reason: string }> | null
  onerror: SocketEventHandler<unknown> | null
}

/** A WebSocket constructor: `ws`'s `WebSocket` in Node, `globalThis.WebSocket` in a browser. */
export type WebSocketClass = new (url: string, protocols?: string | string[]) => WebSocketLike

export const OPEN = 1
// The close code of a connection that ended without a close frame.
export const DROPPED = 1006

/** Drops a socket without waiting for a close handshake: `ws` can terminate; a browser closes in the background. */
export function abandon (socket: WebSocketLike): void {
  const terminate = (socket as { terminate?: () => void }).terminate
  if (typeof terminate === 'function') terminate.call(socket)
  else socket.close()
}

export function detach (socket: WebSocketLike): void {
  socket.onopen = socket.onmessage = socket.onclose = null
  // Not null: `ws` emits 'error' when a socket still connecting is closed, and an 'error' event
  // nobody listens to would be thrown out of the process.
  socket.onerror = ignoreError
}

export function ignoreError (): void {}
