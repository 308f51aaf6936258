import type { Duplex } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import { WebSocket } from 'ws'
import { errors, closeCodeOf } from '../errors.js'
import { CloseCode, isSendableCloseCode } from '../close-codes.js'
import type { RouteSettings } from '../options/route.js'
import type { Hub } from '../hub/hub.js'
import type { Registry } from '../hub/registry.js'
import type { RealtimeMetrics } from '../metrics.js'
import { kConnection, kPeerClose } from '../symbols.js'
import { MessageQueue } from './message-queue.js'
import { CLOSED_MESSAGE, CLOSING_MESSAGE, type WSMessage } from './messages.js'
import type { RealtimeSocket } from './socket.js'
import type { DeadlineClock } from './timers.js'
import { senderIdle, textFrame } from './ws-internals.js'
import type { DefaultRealtimeRequest } from './request.js'
import { nestsDeeperThan } from './json-depth.js'
import type { SharedMessage } from '../hub/member.js'

export interface ReceiveOptions {
  /** Overrides the route's receiveTimeout for this call, in ms. */
  timeout?: number | null
}

export interface ReceiveJsonOptions extends ReceiveOptions {
  /** Deepest nesting of arrays and objects accepted; deeper text is refused before it is parsed. @default 64 */
  maxDepth?: number
}

export interface SendOptions {
  /** Compress this message (when permessage-deflate was negotiated); default: by the route's threshold. */
  compress?: boolean
}

export interface CloseOptions {
  /** @default 1000 */
  code?: number
  /** At most 123 bytes of UTF-8. @default '' */
  reason?: string
}

/** Binary payloads `sendBinary()` accepts. */
export type BinaryData = Buffer | ArrayBuffer | ArrayBufferView

/** What `for await` yields: every message but the ones that end the iteration. */
export type IteratedMessage = Exclude<WSMessage, { type: 'close' | 'closing' | 'closed' }>

type State = 'open' | 'closing' | 'closed'

/** @internal Takes messages as they arrive, instead of `receive()` (the contract router). */
export interface MessageSink {
  accept (message: WSMessage): void
  /** The connection has closed (after its last message): called once, from the socket's close event or at attach. */
  closed (): void
}

interface Waiter {
  resolve (message: WSMessage): void
  reject (error: Error): void
  timeout: number | null
  startedAt: number
}

// aiohttp answers four reads after close, then raises: a handler looping on receive() is a bug.
const CLOSED_READS_ALLOWED = 4
// Enough to merge many small frames into one system call; a big send goes out at once.
const TURN_FLUSH_BYTES = 64 * 1024
const EMPTY = Buffer.alloc(0)
const DEFAULT_JSON_DEPTH = 64

/**
 * What a connection needs of its plugin instance (lib/context.ts's PluginContext has it all): the
 * plugin's one clock, its counters, its set of open connections, and the hub and registry its session talks to.
 * Declared here so the connection layer imports nothing above it.
 */
export interface ConnectionContext {
  readonly clock: DeadlineClock
  readonly metrics: RealtimeMetrics
  readonly connections: Set<RealtimeConnection>
  readonly hub: Hub
  readonly registry: Registry
}

/**
 * One WebSocket connection, as aiohttp's `WebSocketResponse`: pull messages with `receive()` or
 * `for await`, send with `send*()`, end with `close()`. All timers run on the shared clock.
 *
 * It is the clock's deadline owner and the hub's member link through internal members, so the
 * published class does not name those interfaces; both are checked where a connection is handed over.
 */
export class RealtimeConnection {
  /** What the connection keeps of the request that opened it (connection/request.ts says what). */
  readonly request: DefaultRealtimeRequest
  /** The negotiated subprotocol, or null. */
  readonly protocol: string | null

  private readonly ws: RealtimeSocket
  private readonly settings: RouteSettings
  private readonly queue = new MessageQueue()
  private state: State = 'open'
  private failure: Error | null = null
  private waiter: Waiter | null = null
  private pausedByQueue = false
  private sink: MessageSink | null = null
  private sinkHeld = false
  private peerClosed = false
  private closedReads = 0
  private lastReceivedAt: number
  private lastFrameAt: number
  private pingSentAt = 0
  /** A heartbeat ping is held by this turn's cork: its pong window starts when the cork lets it go. */
  private pingCorked = false
  private closeDeadline = Infinity
  private knownCloseCode: number | null = null
  private whenClosedPromise: Promise<void> | null = null
  private resolveClosed: (() => void) | null = null

  /** @internal The plugin instance this connection belongs to: its hub, clock and metrics. */
  readonly plugin: ConnectionContext
  /** @internal The Fastify instance of the route (a handler's `this`). */
  readonly app: FastifyInstance

  /**
   * `socket`: the TCP socket under ws (or the stream of `app.injectWS()`). `route`: the route's
   * URL, known when the route was declared.
   */
  constructor (ws: RealtimeSocket, request: DefaultRealtimeRequest, socket: Duplex, settings: RouteSettings, plugin: ConnectionContext, app: FastifyInstance, route: string) {
    this.ws = ws
    this.app = app
    this.request = request
    this.settings = settings
    this.plugin = plugin
    this.protocol = ws.protocol === '' ? null : ws.protocol
    this.lastReceivedAt = this.lastFrameAt = Date.now()
    // Negotiated at the upgrade, by the route's own ws server (connection/ws-servers.ts).
    this.deflate = settings.compress !== null && ws.extensions.includes('permessage-deflate')
    ws[kConnection] = this
    ws[kPeerClose] = onPeerClose
    ws.on('message', onMessage)
    ws.on('ping', onPing)
    ws.on('pong', onPong)
    ws.on('error', onError)
    ws.on('close', onClose)
    this.socket = socket
    socket.on('data', onSocketData)
    // A plain property: defining one with attributes can turn the socket's properties into a dictionary.
    ;(socket as Duplex & { [kConnection]?: RealtimeConnection })[kConnection] = this
    plugin.connections.add(this)
    this.route = route
    // Its connection slot was taken at the handshake and is given back when the socket closes (handshake/slots.ts).
    plugin.metrics.connections[this.route] = (plugin.metrics.connections[this.route] ?? 0) + 1
    this.reschedule()
  }

  /** @internal The route this connection came in on. */
  readonly route: string
  /** The TCP socket under ws, corked while this turn's frames accumulate. */
  private readonly socket: Duplex
  /** permessage-deflate was negotiated and the route compresses. */
  private readonly deflate: boolean
  private corked = false
  /** Bytes sent in this turn, held by the cork until the next tick. */
  private turnBytes = 0

  /** The error that ended the connection (protocol error, heartbeat or close timeout, lost connection), or null. */
  get exception (): Error | null {
    return this.failure
  }

  /** The close code once known: the peer's code, 1005 for an empty close frame, 1006 when the connection dropped or timed out. */
  get closeCode (): number | null {
    return this.knownCloseCode
  }

  /** True once closing has started or the connection is gone. */
  get closed (): boolean {
    return this.state !== 'open'
  }

  /** Bytes queued for sending and not yet written to the socket. */
  get bufferedAmount (): number {
    return this.ws.bufferedAmount
  }

  /**
   * Bytes the peer has not taken yet: what is buffered beyond this turn's frames, which the cork
   * holds back on purpose. The slow-consumer rules look at this, so a burst sent in one turn to a
   * fast reader is not taken for a slow one.
   */
  get backlog (): number {
    return Math.max(0, this.ws.bufferedAmount - this.turnBytes)
  }

  /**
   * The next message. Pings/pongs reach the handler only with autoPing off, the peer's close frame
   * once as 'close'. After the connection ends: 'closing' or 'closed'. Rejects with
   * FST_RT_RECEIVE_TIMEOUT (the connection stays open) or FST_RT_CONCURRENT_RECEIVE.
   */
  receive (options?: ReceiveOptions): Promise<WSMessage> {
    if (this.waiter !== null || this.sink !== null) return Promise.reject(new errors.FST_RT_CONCURRENT_RECEIVE())
    const queued = this.queue.shift()
    if (queued !== undefined) {
      this.resumeIfDrained()
      return Promise.resolve(queued)
    }
    if (this.state === 'closed') {
      if (++this.closedReads > CLOSED_READS_ALLOWED) {
        return Promise.reject(new errors.FST_RT_RECEIVE_AFTER_CLOSE(this.closedReads))
      }
      return Promise.resolve(CLOSED_MESSAGE)
    }
    if (this.state === 'closing' || this.peerClosed) return Promise.resolve(CLOSING_MESSAGE)
    const timeout = options?.timeout === undefined ? this.settings.receiveTimeout : options.timeout
    return new Promise<WSMessage>((resolve, reject) => {
      this.waiter = { resolve, reject, timeout, startedAt: Date.now() }
      if (timeout !== null) this.reschedule()
    })
  }

  /**
   * @internal From now on every message goes to `sink` as it arrives (and what is queued, at once),
   * in order, instead of to `receive()`, and its end to `sink.closed()`: the sink holds no promise
   * while the connection is open.
   */
  attach (sink: MessageSink): void {
    this.sink = sink
    this.drainToSink()
    if (this.state === 'closed') sink.closed()
  }

  /** @internal Holds messages back from the sink (they queue, and reading pauses above readLimit), or lets them go again. */
  holdMessages (hold: boolean): void {
    this.sinkHeld = hold
    if (!hold) this.drainToSink()
  }

  private drainToSink (): void {
    const sink = this.sink as MessageSink
    while (!this.sinkHeld) {
      const message = this.queue.shift()
      if (message === undefined) return
      this.resumeIfDrained()
      sink.accept(message)
    }
  }

  /** The next text message; rejects with FST_RT_MESSAGE_TYPE for any other type. */
  async receiveText (options?: ReceiveOptions): Promise<string> {
    const message = await this.receive(options)
    if (message.type !== 'text') throw new errors.FST_RT_MESSAGE_TYPE('text', message.type)
    return message.data
  }

  /** The next binary message; rejects with FST_RT_MESSAGE_TYPE for any other type. */
  async receiveBinary (options?: ReceiveOptions): Promise<Buffer> {
    const message = await this.receive(options)
    if (message.type !== 'binary') throw new errors.FST_RT_MESSAGE_TYPE('binary', message.type)
    return message.data
  }

  /**
   * The next text message parsed as JSON; FST_RT_INVALID_JSON, which leaves the connection usable,
   * for text that is not JSON or nests deeper than `maxDepth`: a few MiB of brackets would keep
   * JSON.parse busy for seconds, so depth is checked first, in one pass over the text.
   */
  async receiveJson<T = unknown> (options?: ReceiveJsonOptions): Promise<T> {
    const text = await this.receiveText(options)
    const maxDepth = options?.maxDepth ?? DEFAULT_JSON_DEPTH
    if (nestsDeeperThan(text, maxDepth)) throw new errors.FST_RT_INVALID_JSON(`arrays and objects nested more than ${maxDepth} levels deep`)
    try {
      return JSON.parse(text) as T
    } catch (error) {
      throw new errors.FST_RT_INVALID_JSON((error as Error).message, { cause: error })
    }
  }

  /** Yields messages until close, closing or closed; yields 'error' messages. */
  async * [Symbol.asyncIterator] (): AsyncGenerator<IteratedMessage, void, undefined> {
    for (;;) {
      const message = await this.receive()
      if (message.type === 'close' || message.type === 'closing' || message.type === 'closed') return
      yield message
    }
  }

  /** Sends a text message; resolves at once below the write limit, else once written. */
  sendText (data: string, options?: SendOptions): Promise<void> {
    if (typeof data !== 'string') return Promise.reject(new errors.FST_RT_MESSAGE_TYPE('string for sendText()', typeof data))
    return this.write(data, false, options, 'sendText')
  }

  /**
   * @internal Sends a text message when nothing has to wait or fail: the connection is open and below
   * its write limit and backlog bound. Returns false, having sent nothing, otherwise; `sendText()` then
   * handles the case (waiting, closing a slow consumer, or refusing a closed connection).
   */
  sendTextNow (data: string): boolean {
    if (!this.writableNow()) return false
    this.frame(data, false, undefined, Buffer.byteLength(data))
    return true
  }

  /** Open, at or below the write limit and within the backlog bound: a frame can go out with nothing to wait for or fail. */
  private writableNow (): boolean {
    if (this.state !== 'open' || this.ws.readyState !== WebSocket.OPEN) return false
    const limit = this.settings.maxBufferedBytes
    return this.ws.bufferedAmount <= this.settings.writeLimit && !(limit > 0 && this.backlog > limit)
  }

  /** Sends a binary message; resolves at once below the write limit, else once written. */
  sendBinary (data: BinaryData, options?: SendOptions): Promise<void> {
    if (!(data instanceof ArrayBuffer) && !ArrayBuffer.isView(data)) {
      return Promise.reject(new errors.FST_RT_MESSAGE_TYPE('Buffer, ArrayBuffer or typed array for sendBinary()', typeof data))
    }
    return this.write(data, true, options, 'sendBinary')
  }

  /** Sends `JSON.stringify(value)` as a text message. */
  sendJson (value: unknown, options?: SendOptions): Promise<void> {
    let text: string | undefined
    try {
      text = JSON.stringify(value)
    } catch (error) {
      return Promise.reject(new errors.FST_RT_NOT_SERIALIZABLE((error as Error).message, { cause: error }))
    }
    if (text === undefined) return Promise.reject(new errors.FST_RT_NOT_SERIALIZABLE(`${typeof value} has no JSON form`))
    return this.write(text, false, options, 'sendJson')
  }

  /** Sends a ping frame (payload at most 125 bytes). */
  ping (data?: BinaryData | string): Promise<void> {
    return this.control('ping', data)
  }

  /** Sends an unsolicited pong frame (payload at most 125 bytes). */
  pong (data?: BinaryData | string): Promise<void> {
    return this.control('pong', data)
  }

  /**
   * Starts the close handshake and waits for it: the peer's close frame or closeTimeout (then TCP
   * is dropped, closeCode 1006, exception FST_RT_CLOSE_TIMEOUT). Resolves true, or false when the
   * connection was already closing or closed.
   */
  async close (options?: CloseOptions): Promise<boolean> {
    const code = options?.code ?? 1000
    const reason = options?.reason ?? ''
    if (!isSendableCloseCode(code)) throw new errors.FST_RT_INVALID_CLOSE_CODE(code)
    const reasonBytes = Buffer.byteLength(reason)
    if (reasonBytes > 123) throw new errors.FST_RT_CLOSE_REASON_TOO_LONG(reasonBytes)
    if (this.state !== 'open') return false
    this.state = 'closing'
    // Unread data is dropped and reading resumes so the peer's close frame can arrive.
    this.queue.dropData()
    if (this.pausedByQueue) {
      this.pausedByQueue = false
      this.ws.resume()
    }
    this.wake(CLOSING_MESSAGE)
    this.closeDeadline = Date.now() + this.settings.closeTimeout
    this.reschedule()
    this.ws.close(code, reason)
    await this.whenClosed()
    return true
  }

  /** Drops the TCP connection at once, without a close frame; what was sent before it still goes out first. */
  terminate (): void {
    if (this.state === 'closed') return
    this.state = 'closing'
    this.drop()
  }

  /**
   * Destroys the socket after letting this turn's frames go: without a cork ws would have written
   * them already, so a send (or close frame) made before the drop is written, and its promise
   * resolves, or is refused with FST_RT_CONNECTION_CLOSED where the kernel did not take it.
   */
  private drop (): void {
    this.uncork()
    this.ws.terminate()
  }

  /** Resolves once the TCP connection is closed. */
  whenClosed (): Promise<void> {
    if (this.state === 'closed') return Promise.resolve()
    this.whenClosedPromise ??= new Promise<void>((resolve) => { this.resolveClosed = resolve })
    return this.whenClosedPromise
  }

  // ---- sending ----

  private write (data: string | BinaryData, binary: boolean, options: SendOptions | undefined, operation: string): Promise<void> {
    if (this.state !== 'open' || this.ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new errors.FST_RT_CONNECTION_CLOSED(operation))
    }
    const limit = this.settings.maxBufferedBytes
    if (limit > 0 && this.backlog > limit) {
      // A peer that does not read would otherwise grow this process's memory without bound.
      this.plugin.metrics.slowConsumerCloses++
      void this.close({ code: CloseCode.SLOW_CONSUMER, reason: 'Slow consumer' })
      return Promise.reject(new errors.FST_RT_SLOW_CONSUMER(operation, limit))
    }
    const size = typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength
    if (this.ws.bufferedAmount <= this.settings.writeLimit) {
      this.frame(data, binary, options, size)
      return Promise.resolve()
    }
    // Above the limit the caller waits until this message, and so all before it, is written.
    return new Promise<void>((resolve, reject) => {
      this.frame(data, binary, options, size, (error) => {
        if (error === undefined || error === null) resolve()
        else reject(new errors.FST_RT_CONNECTION_CLOSED(operation, { cause: error }))
      })
    })
  }

  /**
   * @internal A room message built once for many connections (the hub's fan-out). Its frame is
   * built by the first connection that can use it and the same bytes go to every socket that needs
   * nothing of its own: no compression, nothing queued in ws. Every other case is `sendText()`,
   * except for a `droppable` (volatile) message, which is dropped, and false returned, unless it
   * can go out now: it is never queued.
   */
  sendShared (message: SharedMessage, droppable = false): boolean {
    let wire = message.wire as SharedFrame | null
    if (wire === null) {
      const payload = Buffer.from(message.text)
      wire = { frame: textFrame(payload), size: payload.length }
      message.wire = wire
    }
    if (wire.frame !== null && this.writableNow() && !this.shouldCompress(wire.size, undefined) && senderIdle(this.ws)) {
      this.account(wire.size)
      this.socket.write(wire.frame)
      return true
    }
    // The hub drops a volatile message for any unsent byte before it gets here; this keeps
    // sendShared right on its own (a turn's own frames over writeLimit), which the hub's check preempts.
    /* c8 ignore next */
    if (droppable && !this.writableNow()) return false
    this.sendText(message.text).catch(ignoreClosed)
    return true
  }

  /** Counts one message and hands it to ws inside this turn's cork. */
  private frame (data: string | BinaryData, binary: boolean, options: SendOptions | undefined, size: number, written?: (error?: Error | null) => void): void {
    const compress = this.shouldCompress(size, options)
    this.account(size)
    this.ws.send(data, { binary, compress }, written)
  }

  /** Counts a message of `size` bytes leaving in this turn's cork, flushing every TURN_FLUSH_BYTES. */
  private account (size: number): void {
    const metrics = this.plugin.metrics
    metrics.messagesOut++
    metrics.bytesOut += size
    this.coalesce()
    this.turnBytes += size
    // A turn that sends a lot flushes as it goes: one write per TURN_FLUSH_BYTES, and what the peer
    // does not take counts as its backlog, so a producer that never yields is still bounded.
    if (this.turnBytes >= TURN_FLUSH_BYTES) {
      this.socket.uncork()
      this.socket.cork()
      this.turnBytes = 0
    }
  }

  private shouldCompress (size: number, options: SendOptions | undefined): boolean {
    const compress = this.settings.compress
    if (compress === null || !this.deflate) return false
    if (options?.compress !== undefined) return options.compress
    return size >= compress.threshold
  }

  private control (kind: 'ping' | 'pong', data: BinaryData | string | undefined): Promise<void> {
    const payload = data ?? EMPTY
    const size = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.byteLength
    if (size > 125) return Promise.reject(new errors.FST_RT_CONTROL_PAYLOAD_TOO_LARGE(size))
    if (this.state !== 'open' || this.ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new errors.FST_RT_CONNECTION_CLOSED(kind))
    }
    this.coalesce()
    return new Promise<void>((resolve, reject) => {
      this.ws[kind](payload, false, (error) => {
        if (error === undefined || error === null) resolve()
        else reject(new errors.FST_RT_CONNECTION_CLOSED(kind, { cause: error }))
      })
    })
  }

  /**
   * Holds this turn's frames in the socket and lets them go in one write on the next tick: ws
   * writes each frame as it is sent, one system call apiece, which is most of a small message's cost.
   * Order is kept (one socket, one queue) and no frame waits longer than the current turn.
   */
  private coalesce (): void {
    if (this.corked) return
    this.corked = true
    this.socket.cork()
    // One tick for every connection corked in this turn, not one each: a broadcast corks thousands.
    if (corkedThisTurn.push(this) === 1) process.nextTick(uncorkAll)
  }

  /** @internal Lets this turn's frames go (at the end of the turn, or before the socket is dropped). */
  uncork (): void {
    if (!this.corked) return
    this.corked = false
    this.turnBytes = 0
    this.socket.uncork()
    if (this.pingCorked) {
      // A turn can run long (a stall, a busy pass): the peer has half a heartbeat from now.
      this.pingCorked = false
      this.pingSentAt = Date.now()
    }
  }

  // ---- receiving ----

  /** @internal */
  deliver (message: WSMessage, size: number): void {
    this.lastFrameAt = Date.now()
    if (this.waiter !== null) {
      const waiter = this.waiter
      this.waiter = null
      waiter.resolve(message)
      return
    }
    if (this.sink !== null && !this.sinkHeld && this.queue.length === 0) {
      this.sink.accept(message)
      return
    }
    this.queue.push(message, size)
    if (!this.pausedByQueue && this.queue.bytes > this.settings.readLimit) {
      this.pausedByQueue = true
      this.ws.pause()
    }
  }

  private resumeIfDrained (): void {
    if (this.pausedByQueue && this.queue.bytes <= this.settings.readLimit) {
      this.pausedByQueue = false
      // Paused time was not the peer's silence: the heartbeat counts from now.
      this.lastReceivedAt = Date.now()
      this.ws.resume()
    }
  }

  private wake (message: WSMessage): void {
    const waiter = this.waiter
    if (waiter === null) return
    this.waiter = null
    waiter.resolve(message)
  }

  /** @internal */
  onData (): void {
    this.lastReceivedAt = Date.now()
  }

  /** @internal */
  onMessage (data: Buffer, isBinary: boolean): void {
    if (this.state !== 'open') return
    this.plugin.metrics.messagesIn++
    this.plugin.metrics.bytesIn += data.length
    if (isBinary) this.deliver({ type: 'binary', data, extra: null }, data.length)
    else this.deliver({ type: 'text', data: data.toString('utf8'), extra: null }, data.length)
  }

  /** @internal */
  onControl (type: 'ping' | 'pong', data: Buffer): void {
    if (this.settings.autoPing) {
      // ws already answered the ping; the frame still restarts a pending receive's window.
      this.lastFrameAt = Date.now()
      return
    }
    if (this.state === 'open') this.deliver({ type, data, extra: null }, data.length)
  }

  /** @internal Returns true to defer the close reply (autoClose off). */
  onPeerClose (code: number, reason: Buffer): boolean {
    this.peerClosed = true
    this.knownCloseCode = code
    this.deliver({ type: 'close', data: code, extra: reason.toString('utf8') }, 0)
    if (this.settings.autoClose) {
      this.state = 'closing'
      return false
    }
    // The handler answers; closeTimeout still bounds one that never does.
    this.closeDeadline = Date.now() + this.settings.closeTimeout
    this.reschedule()
    return true
  }

  /** @internal */
  onError (error: Error & { code?: string }): void {
    const wsCode = error.code ?? ''
    // ws's own parse errors carry WS_ERR_* codes; zlib's (corrupt deflate data) carry Z_* codes.
    if (wsCode.startsWith('WS_ERR_') || wsCode.startsWith('Z_')) {
      const failure = new errors.FST_RT_PROTOCOL_ERROR(wsCode, error.message, { cause: error })
      Object.defineProperty(failure, 'closeCode', { value: protocolCloseCode(wsCode), enumerable: true })
      this.fail(failure)
    } else {
      this.fail(new errors.FST_RT_CONNECTION_LOST({ cause: error }))
    }
  }

  /** @internal */
  onClose (code: number): void {
    this.state = 'closed'
    this.plugin.clock.cancel(this)
    this.plugin.connections.delete(this)
    const metrics = this.plugin.metrics
    metrics.connections[this.route] = (metrics.connections[this.route] as number) - 1
    if (this.knownCloseCode === null) {
      this.knownCloseCode = code
      if (code === 1006 && this.failure === null) this.failure = new errors.FST_RT_CONNECTION_LOST()
    }
    if (this.failure !== null) this.knownCloseCode = 1006
    this.wake(CLOSED_MESSAGE)
    this.resolveClosed?.()
    this.sink?.closed()
  }

  private fail (error: Error & { code: string, closeCode?: number }): void {
    // The first failure is the one that ended the connection; later ones are its echoes.
    if (this.failure !== null) return
    // Every failure carries the close code it maps to; the connection itself ends abnormally.
    if (error.closeCode === undefined) {
      Object.defineProperty(error, 'closeCode', { value: closeCodeOf(error.code), enumerable: true })
    }
    this.failure = error
    this.knownCloseCode = 1006
    this.deliver({ type: 'error', data: error, extra: null }, 0)
  }

  // ---- deadlines (heartbeat, receive timeout, close timeout) ----

  /** @internal */
  onDeadline (now: number): number {
    // A closed connection has cancelled its deadlines, so the clock never calls it.
    if (now >= this.closeDeadline) {
      this.closeDeadline = Infinity
      this.fail(new errors.FST_RT_CLOSE_TIMEOUT(this.settings.closeTimeout))
      this.drop()
      return Infinity
    }
    const waiter = this.waiter
    if (waiter !== null && waiter.timeout !== null && now >= Math.max(waiter.startedAt, this.lastFrameAt) + waiter.timeout) {
      this.waiter = null
      waiter.reject(new errors.FST_RT_RECEIVE_TIMEOUT(waiter.timeout))
    }
    const heartbeat = this.settings.heartbeat
    if (heartbeat !== null && this.state === 'open' && !this.peerClosed) {
      if (this.pausedByQueue) this.lastReceivedAt = now
      if (this.pingSentAt > this.lastReceivedAt) {
        if (now >= this.pingSentAt + heartbeat / 2) {
          this.plugin.metrics.heartbeatKills++
          this.fail(new errors.FST_RT_HEARTBEAT_TIMEOUT(heartbeat / 2))
          this.state = 'closing'
          this.drop()
          return Infinity
        }
      } else if (now >= this.lastReceivedAt + heartbeat) {
        this.pingSentAt = now
        this.pingCorked = true
        this.coalesce()
        this.ws.ping(EMPTY)
      }
    }
    return this.nextDeadline()
  }

  private nextDeadline (): number {
    let next = this.closeDeadline
    const waiter = this.waiter
    if (waiter !== null && waiter.timeout !== null) {
      next = Math.min(next, Math.max(waiter.startedAt, this.lastFrameAt) + waiter.timeout)
    }
    const heartbeat = this.settings.heartbeat
    if (heartbeat !== null && this.state === 'open' && !this.peerClosed) {
      next = Math.min(next, this.pingSentAt > this.lastReceivedAt ? this.pingSentAt + heartbeat / 2 : this.lastReceivedAt + heartbeat)
    }
    return next
  }

  private reschedule (): void {
    this.plugin.clock.schedule(this, this.nextDeadline())
  }
}

/** A shared message's wire form: its frame (null when ws's frame builder is not there) and payload size. */
interface SharedFrame {
  readonly frame: Buffer | null
  readonly size: number
}

// A send to a connection that closed meanwhile has nobody left to tell.
function ignoreClosed (): void {}

/** The close code ws sent for one of its error codes (RFC 6455 §7.4.1). */
function protocolCloseCode (wsCode: string): number {
  if (wsCode === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') return 1009
  if (wsCode === 'WS_ERR_INVALID_UTF8' || wsCode.startsWith('Z_')) return 1007
  return 1002
}

// Module-level listeners: `this` is the ws socket, so no closure is allocated per connection.
function connectionOf (target: object): RealtimeConnection {
  return (target as { [kConnection]: RealtimeConnection })[kConnection]
}
function onMessage (this: WebSocket, data: Buffer, isBinary: boolean): void {
  connectionOf(this).onMessage(data, isBinary)
}
function onPing (this: WebSocket, data: Buffer): void {
  connectionOf(this).onControl('ping', data)
}
function onPong (this: WebSocket, data: Buffer): void {
  connectionOf(this).onControl('pong', data)
}
function onError (this: WebSocket, error: Error): void {
  connectionOf(this).onError(error)
}
function onClose (this: WebSocket, code: number): void {
  connectionOf(this).onClose(code)
}
function onSocketData (this: object): void {
  connectionOf(this).onData()
}
/** Connections corked in this turn, in the order of their first frame; flushed together on the next tick. */
const corkedThisTurn: RealtimeConnection[] = []
function uncorkAll (): void {
  // A connection corked while flushing joins the list and is flushed by this same loop.
  for (let i = 0; i < corkedThisTurn.length; i++) (corkedThisTurn[i] as RealtimeConnection).uncork()
  corkedThisTurn.length = 0
}
function onPeerClose (this: RealtimeSocket, code: number, reason: Buffer): boolean {
  return connectionOf(this).onPeerClose(code, reason)
}
