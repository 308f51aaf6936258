import { envelope, ERROR } from '../protocol.js'
import { RealtimeClientError } from './errors.js'
import type { WebSocketLike } from './socket.js'
import type { Transport } from './transport.js'

interface Pending {
  resolve (value: unknown): void
  reject (error: Error): void
  timer: ReturnType<typeof setTimeout>
  /**
   * Runs as the reply is read, before any frame that came after it in the same read: `ws` delivers
   * every frame of a read in one turn, before a resumed `await` would see the reply.
   */
  onReply?: (data: unknown) => void
}

/** Requests with ids: each waits for the reply carrying its id, or its timeout. */
export class Requests {
  private nextId = 0
  private readonly pending = new Map<string, Pending>()

  constructor (private readonly transport: Transport, private readonly timeoutMs: number) {}

  /**
   * Sends a request and resolves with its reply. On `socket` it goes out on that socket at once (the
   * `$auth` and joins before the client is open); otherwise it is sent or queued like any message.
   */
  call (type: string, data: unknown, timeoutMs: number | undefined, socket?: WebSocketLike, onReply?: (data: unknown) => void): Promise<unknown> {
    if (this.transport.closed) return Promise.reject(new RealtimeClientError('FST_RT_CLIENT_CLOSED', 'The client is closed'))
    const id = `c${++this.nextId}`
    return new Promise((resolve, reject) => {
      const timeout = timeoutMs ?? this.timeoutMs
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new RealtimeClientError('FST_RT_CLIENT_REQUEST_TIMEOUT', `No reply to ${type} within ${timeout} ms`))
      }, timeout)
      this.pending.set(id, onReply === undefined ? { resolve, reject, timer } : { resolve, reject, timer, onReply })
      const text = envelope(type, data, id)
      try {
        if (socket !== undefined) socket.send(text)
        else this.transport.transmit(text, id)
      } catch (error) {
        this.pending.delete(id)
        clearTimeout(timer)
        // eslint-disable-next-line prefer-promise-reject-errors -- whatever the socket threw, as it threw it
        reject(error as Error)
      }
    })
  }

  /** Resolves or rejects the request with this id; false if none waits for it. */
  settle (id: string, type: string, data: unknown): boolean {
    const pending = this.take(id)
    if (pending === undefined) return false
    if (type === ERROR) {
      pending.reject(serverError(data))
      return true
    }
    pending.onReply?.(data)
    pending.resolve(data)
    return true
  }

  /** Rejects the request with this id, if it is one; false if none waits for it (an event, or a request that timed out). */
  fail (id: string | undefined, error: Error): boolean {
    const pending = id === undefined ? undefined : this.take(id)
    if (pending === undefined) return false
    pending.reject(error)
    return true
  }

  /** Rejects every request still waiting. */
  failAll (error: Error): void {
    for (const pending of this.pending.values()) {
      clearTimeout(pending.timer)
      pending.reject(error)
    }
    this.pending.clear()
  }

  private take (id: string): Pending | undefined {
    const pending = this.pending.get(id)
    if (pending === undefined) return undefined
    this.pending.delete(id)
    clearTimeout(pending.timer)
    return pending
  }
}

/** An error envelope's `data` as the client's error. */
export function serverError (data: unknown): RealtimeClientError {
  const message = (data as { message?: unknown } | null)?.message
  return new RealtimeClientError('FST_RT_CLIENT_SERVER_ERROR', typeof message === 'string' ? message : 'The server answered with an error', data)
}
