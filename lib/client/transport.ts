import { CloseCode, shouldReconnect } from '../close-codes.js'
import { envelope, PING } from '../protocol.js'
import { backoffDelay } from './backoff.js'
import { RealtimeClientError } from './errors.js'
import type { TransportSettings } from './options.js'
import { abandon, detach, DROPPED, ignoreError, OPEN, type WebSocketLike } from './socket.js'

export type ClientState = 'connecting' | 'open' | 'reconnecting' | 'closed'

export interface CloseInfo {
  readonly code: number
  readonly reason: string
  /** False once the client stops: closed by the app, a terminal code, or maxRetries reached. */
  readonly willReconnect: boolean
}

/** What rides on the transport, called back as the connection comes and goes. */
export interface TransportOwner {
  /** A message arrived (the liveness check has noted it). */
  received (raw: unknown): void
  /** Sends `$auth` on a new socket: resolves with the reply, rejects with a RealtimeClientError. */
  authenticate (token: string, socket: WebSocketLike): Promise<unknown>
  /** Before the client is open on a new socket, e.g. rooms joined again; false if the socket was replaced meanwhile. */
  ready (socket: WebSocketLike): Promise<boolean>
  /** The socket is gone: whatever waits for a reply on it fails with this. */
  lost (error: RealtimeClientError): void
  /** The client stopped for good: nothing waiting for a connection gets one. */
  stopped (): void
  /** A message dropped from the queue: the request waiting on `id` fails at once; false if none does. */
  failRequest (id: string | undefined, error: RealtimeClientError): boolean
  state (state: ClientState): void
  close (info: CloseInfo): void
  error (error: Error): void
}

interface Queued {
  text: string
  at: number
  /** The request waiting for this message's reply, if it is one. */
  id?: string
}

/**
 * The connection under the client: opens the socket, reconnects with full-jitter backoff after
 * reconnectable close codes, pings when the line is quiet, and queues what is sent while away.
 */
export class Transport {
  private current: WebSocketLike | null = null
  private currentState: ClientState = 'closed'
  private halted = false
  private attempt = 0
  private lastMessageAt = 0
  private pingSentAt = 0
  private livenessTimer: ReturnType<typeof setTimeout> | null = null
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null
  private stableTimer: ReturnType<typeof setTimeout> | null = null
  private readonly queue: Queued[] = []
  private readonly onOnline = (): void => { this.online() }
  private readonly onOffline = (): void => { this.offline() }

  constructor (private readonly settings: TransportSettings, private readonly owner: TransportOwner) {
    const events = globalThis as { addEventListener?: (type: string, listener: () => void) => void }
    if (typeof events.addEventListener === 'function') {
      events.addEventListener('online', this.onOnline)
      events.addEventListener('offline', this.onOffline)
    }
  }

  get state (): ClientState {
    return this.currentState
  }

  /** The socket of the connection now, open or still opening; null between connections. */
  get socket (): WebSocketLike | null {
    return this.current
  }

  /** Closed for good: nothing more is sent. */
  get closed (): boolean {
    return this.halted && this.currentState === 'closed'
  }

  connect (): void {
    if (this.current !== null || this.reconnectTimer !== null) return
    this.halted = false
    void this.open()
  }

  close (code: number, reason: string): void {
    this.halted = true
    this.clearTimers()
    const events = globalThis as { removeEventListener?: (type: string, listener: () => void) => void }
    if (typeof events.removeEventListener === 'function') {
      events.removeEventListener('online', this.onOnline)
      events.removeEventListener('offline', this.onOffline)
    }
    const socket = this.current
    this.current = null
    if (socket !== null) {
      detach(socket)
      socket.close(code, reason)
    }
    this.owner.lost(new RealtimeClientError('FST_RT_CLIENT_CLOSED', 'The client is closed'))
    this.queue.length = 0
    this.stop(code, reason)
  }

  // ---- sending ----

  /** Sends now (true) or queues (false); `id` names the request waiting for its reply. */
  transmit (text: string, id?: string): boolean {
    const socket = this.openSocket()
    if (socket !== null) {
      socket.send(text)
      return true
    }
    this.expire(Date.now())
    if (this.queue.length >= this.settings.queueMax) {
      if (this.settings.overflow === 'reject') throw new RealtimeClientError('FST_RT_CLIENT_QUEUE_FULL', `The offline queue holds ${this.settings.queueMax} messages already`)
      this.dropQueued(this.queue.shift() as Queued, new RealtimeClientError('FST_RT_CLIENT_QUEUE_FULL', 'Dropped from the full offline queue for a newer message'))
    }
    this.queue.push(id === undefined ? { text, at: Date.now() } : { text, at: Date.now(), id })
    return false
  }

  /** Sends now if the client is open and its socket has nothing unsent (true); never queues. */
  transmitVolatile (text: string): boolean {
    const socket = this.openSocket()
    if (socket === null || (socket.bufferedAmount ?? 0) > 0) return false
    socket.send(text)
    return true
  }

  /** The socket to send on now, or null while the client is not open; throws FST_RT_CLIENT_CLOSED once it is closed for good. */
  private openSocket (): WebSocketLike | null {
    if (this.closed) throw new RealtimeClientError('FST_RT_CLIENT_CLOSED', 'The client is closed')
    const socket = this.current
    return this.currentState === 'open' && socket !== null && socket.readyState === OPEN ? socket : null
  }

  private expire (now: number): void {
    while (this.queue.length > 0 && now - (this.queue[0] as Queued).at > this.settings.queueMaxAge) {
      this.dropQueued(this.queue.shift() as Queued, new RealtimeClientError('FST_RT_CLIENT_QUEUE_EXPIRED', `A queued message waited more than ${this.settings.queueMaxAge} ms`))
    }
  }

  /** A dropped request fails at once; a dropped event is reported. */
  private dropQueued (queued: Queued, error: RealtimeClientError): void {
    if (!this.owner.failRequest(queued.id, error)) this.owner.error(error)
  }

  private flush (): void {
    this.expire(Date.now())
    const socket = this.current as WebSocketLike
    for (const queued of this.queue.splice(0)) socket.send(queued.text)
  }

  // ---- connection ----

  private async open (): Promise<void> {
    this.setState(this.attempt === 0 ? 'connecting' : 'reconnecting')
    const { url: urlOption, token: tokenOption } = this.settings
    let url: string
    let token: string | null
    try {
      url = typeof urlOption === 'string' ? urlOption : await urlOption()
      token = typeof tokenOption === 'function' ? await tokenOption() : tokenOption ?? null
    } catch (error) {
      this.owner.error(error as Error)
      this.scheduleReconnect(DROPPED, 'url or token provider failed')
      return
    }
    if (this.halted) return
    const socket = new this.settings.WebSocket(url, this.settings.protocols)
    this.current = socket
    socket.onopen = () => { void this.opened(socket, token) }
    socket.onmessage = (event) => {
      this.lastMessageAt = Date.now()
      this.owner.received(event.data)
    }
    socket.onclose = (event) => { this.dropped(socket, event.code, event.reason) }
    socket.onerror = ignoreError
  }

  private async opened (socket: WebSocketLike, token: string | null): Promise<void> {
    this.lastMessageAt = Date.now()
    this.armLiveness()
    if (token !== null) {
      try {
        await this.owner.authenticate(token, socket)
      } catch (error) {
        this.authFailed(socket, error as RealtimeClientError)
        return
      }
    }
    // What rides on the connection first (rooms), then what was queued: a queued message may need its room.
    if (!await this.owner.ready(socket)) return
    this.setState('open')
    this.stableTimer = setTimeout(() => { this.attempt = 0 }, this.settings.resetAfterMs)
    this.flush()
  }

  /**
   * The `$auth` request failed. A refused token is closed by the server with 4501 (dropped() takes it
   * from there) and a dropped socket is already handled; what is left must not hang in 'connecting':
   * an error answer means this route will never take the token (stop for good), no answer means the
   * server is unwell (drop the socket and reconnect with backoff). Both are reported.
   */
  private authFailed (socket: WebSocketLike, error: RealtimeClientError): void {
    if (socket !== this.current) return
    if (error.code === 'FST_RT_CLIENT_SERVER_ERROR') {
      this.owner.error(new RealtimeClientError('FST_RT_CLIENT_AUTH_FAILED', `The server refused $auth: ${error.message}`, error.data))
      this.close(CloseCode.POLICY_VIOLATION, 'The server refused $auth')
      return
    }
    this.owner.error(new RealtimeClientError('FST_RT_CLIENT_AUTH_FAILED', `$auth was not answered: ${error.message}`))
    abandon(socket)
    this.dropped(socket, DROPPED, '$auth was not answered')
  }

  /** The current socket is gone (its handlers are only ever attached to the current one). */
  private dropped (socket: WebSocketLike, code: number, reason: string): void {
    detach(socket)
    this.current = null
    this.clearTimers()
    this.owner.lost(new RealtimeClientError('FST_RT_CLIENT_CONNECTION_LOST', `The connection closed (${code}) before the reply arrived`))
    if (!shouldReconnect(code)) {
      this.stop(code, reason)
      return
    }
    this.scheduleReconnect(code, reason)
  }

  private scheduleReconnect (code: number, reason: string): void {
    if (this.attempt >= this.settings.maxRetries) {
      this.stop(code, reason)
      return
    }
    const delay = backoffDelay(this.attempt, this.settings.baseMs, this.settings.capMs, this.settings.random)
    this.attempt++
    this.setState('reconnecting')
    this.owner.close({ code, reason, willReconnect: true })
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null
      void this.open()
    }, delay)
  }

  /** No more reconnects: closed by the app, a terminal code, or maxRetries reached. */
  private stop (code: number, reason: string): void {
    this.halted = true
    this.owner.stopped()
    this.setState('closed')
    this.owner.close({ code, reason, willReconnect: false })
  }

  /** No message for a while: ask; no answer either: the server is gone, reconnect. */
  private armLiveness (): void {
    const now = Date.now()
    const waitingForPong = this.pingSentAt > this.lastMessageAt
    const due = waitingForPong ? this.pingSentAt + this.settings.pongTimeoutMs : this.lastMessageAt + this.settings.pingIntervalMs
    this.livenessTimer = setTimeout(() => { this.checkLiveness() }, Math.max(0, due - now))
  }

  private checkLiveness (): void {
    this.livenessTimer = null
    // Every path that drops the socket clears this timer, so the socket is still there.
    const socket = this.current as WebSocketLike
    const now = Date.now()
    if (this.pingSentAt > this.lastMessageAt) {
      if (now >= this.pingSentAt + this.settings.pongTimeoutMs) {
        // A dead server never completes a close handshake: drop the socket and go on at once.
        abandon(socket)
        this.dropped(socket, DROPPED, 'no answer to $ping')
        return
      }
    } else if (now >= this.lastMessageAt + this.settings.pingIntervalMs && socket.readyState === OPEN) {
      this.pingSentAt = now
      socket.send(envelope(PING, null))
    }
    this.armLiveness()
  }

  private online (): void {
    if (this.halted || this.current !== null) return
    // The network is back: try now instead of waiting out the backoff.
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer)
    this.reconnectTimer = null
    this.attempt = 0
    void this.open()
  }

  private offline (): void {
    const socket = this.current
    if (socket === null) return
    abandon(socket)
    this.dropped(socket, DROPPED, 'the browser went offline')
  }

  private clearTimers (): void {
    for (const timer of [this.livenessTimer, this.reconnectTimer, this.stableTimer]) if (timer !== null) clearTimeout(timer)
    this.livenessTimer = this.reconnectTimer = this.stableTimer = null
  }

  private setState (state: ClientState): void {
    if (state === this.currentState) return
    this.currentState = state
    this.owner.state(state)
  }
}
