import type { FastifyInstance } from 'fastify'
import { RealtimeClient } from '../client/client.js'
import type { ClientOptions } from '../client/options.js'
import type { JoinOutcome, MessageMeta } from '../client/rooms.js'
import type { ClientState, CloseInfo } from '../client/transport.js'
import type { Contract, ServerData, ServerType } from '../messages/contract.js'
import type { LostData, PresenceData } from '../protocol.js'
import { errors } from '../errors.js'
import { SocketFactory } from './injected-socket.js'

// The typed client of fastify-realtime/client, connected to an app in-process, with what tests
// need beside it: wait for the next message of a type, take several, and simulate an outage.

export interface ConnectTestOptions {
  /** Added to the path as its query string. */
  query?: Record<string, string | number | boolean | ReadonlyArray<string | number | boolean>>
  /** Headers of the upgrade request, e.g. `{ authorization: 'Bearer …' }` for tokenAuth(). */
  headers?: Record<string, string>
  /** Sent first as `$auth`, for a route with first-message `auth`; a function is called on every reconnect. */
  token?: ClientOptions['token']
  /** How long `next()`, `collect()` and the connect wait, in ms. @default 2000 */
  timeoutMs?: number
  /** Messages and events kept per type, taken or not (`seen()`); older ones are dropped. @default 10000 */
  keep?: number
  /** More client options. @default backoff { baseMs: 10, capMs: 100 }: reconnects in tests are quick */
  client?: Omit<ClientOptions, 'url' | 'token' | 'WebSocket' | 'autoConnect'>
}

/** What `nextEvent()` waits for, by name: the client's own events. */
export interface TestClientEvents {
  state: ClientState
  join: JoinOutcome
  presence: PresenceData
  lost: LostData
  /** Error envelopes that answer no request, and the client's own errors. */
  error: Error
  close: CloseInfo
}

/** A message as the test client got it. */
export interface Received<D> {
  readonly data: D
  readonly meta: MessageMeta
}

type Waiter = { resolve (item: unknown): void, reject (error: Error): void, timer: ReturnType<typeof setTimeout> }

/** One queue per message type or event: what arrived and was not taken yet, and who waits. */
class Inbox {
  readonly items: unknown[] = []
  readonly waiters: Waiter[] = []
  /** Everything that arrived, taken or not. */
  readonly log: unknown[] = []
  /** Bounded: a test that never takes a chatty type must not grow without end. */
  readonly #keep: number

  constructor (keep: number) {
    this.#keep = keep
  }

  put (item: unknown): void {
    this.log.push(item)
    if (this.log.length > this.#keep) this.log.shift()
    const waiter = this.waiters.shift()
    if (waiter === undefined) {
      this.items.push(item)
      if (this.items.length > this.#keep) this.items.shift()
      return
    }
    clearTimeout(waiter.timer)
    waiter.resolve(item)
  }
}

/** The typed client of `contract`, over `app.injectWS()`: see docs/testing.md. */
export class TestClient<C extends Contract> extends RealtimeClient<C> {
  readonly #factory: SocketFactory
  readonly #timeoutMs: number
  readonly #keep: number
  readonly #inboxes = new Map<string, Inbox>()

  /** Use connectTest(), which resolves once the client is open. */
  constructor (contract: C, factory: SocketFactory, url: string, options: ConnectTestOptions) {
    super({
      ...options.client,
      backoff: { baseMs: 10, capMs: 100, ...options.client?.backoff },
      url,
      token: options.token,
      WebSocket: factory.WebSocket,
      autoConnect: false
    })
    this.#factory = factory
    // A refused upgrade ends a test client (a real one would retry): the app is closing (503), or
    // the test wants the refusal, which connectTest() and resume() report.
    factory.onRefused = () => { this.close() }
    this.#timeoutMs = options.timeoutMs ?? 2000
    this.#keep = options.keep ?? 10_000
    for (const type of Object.keys(contract.server)) {
      this.on(type as ServerType<C>, (data, meta) => { this.#inbox(`message:${type}`).put({ data, meta }) })
    }
    this.onState((state) => { this.#inbox('event:state').put(state) })
    this.onJoin((outcome) => { this.#inbox('event:join').put(outcome) })
    this.onPresence((notice) => { this.#inbox('event:presence').put(notice) })
    this.onLost((lost) => { this.#inbox('event:lost').put(lost) })
    this.onError((error) => { this.#inbox('event:error').put(error) })
    this.onClose((info) => { this.#inbox('event:close').put(info) })
  }

  /** The next message of `type` (one that arrived and was not taken yet, or the next to arrive). */
  async next<K extends ServerType<C>>(type: K, options?: { timeoutMs?: number }): Promise<ServerData<C, K>> {
    const item = await this.#take(`message:${type}`, `a "${type}" message`, options?.timeoutMs) as Received<ServerData<C, K>>
    return item.data
  }

  /** The next message of `type` with where it sits in its room (`room`, `epoch`, `offset`). */
  async nextWithMeta<K extends ServerType<C>>(type: K, options?: { timeoutMs?: number }): Promise<Received<ServerData<C, K>>> {
    return await this.#take(`message:${type}`, `a "${type}" message`, options?.timeoutMs) as Received<ServerData<C, K>>
  }

  /** The next `count` messages of `type`, in order. */
  async collect<K extends ServerType<C>>(type: K, count: number, options?: { timeoutMs?: number }): Promise<Array<ServerData<C, K>>> {
    const deadline = Date.now() + (options?.timeoutMs ?? this.#timeoutMs)
    const taken: Array<ServerData<C, K>> = []
    while (taken.length < count) {
      const left = Math.max(0, deadline - Date.now())
      try {
        taken.push(await this.next(type, { timeoutMs: left }))
      } catch {
        throw new errors.FST_RT_TEST_TIMEOUT(`${count} "${type}" messages (got ${taken.length})`, options?.timeoutMs ?? this.#timeoutMs, this.#pending())
      }
    }
    return taken
  }

  /** Every message of `type` received so far (the last `keep`), taken or not. */
  seen<K extends ServerType<C>>(type: K): ReadonlyArray<ServerData<C, K>> {
    return (this.#inboxes.get(`message:${type}`)?.log ?? []).map((item) => (item as Received<ServerData<C, K>>).data)
  }

  /** The next event of the client: a state, a join (rejoins too), a presence notice, a lost notice, an error or a close. */
  async nextEvent<E extends keyof TestClientEvents>(event: E, options?: { timeoutMs?: number }): Promise<TestClientEvents[E]> {
    return await this.#take(`event:${event}`, `a ${event} event`, options?.timeoutMs) as TestClientEvents[E]
  }

  /**
   * Drops the connection without a close frame, as a network failure would (the server sees 1006),
   * and holds the client's reconnects until `resume()`. Resolves with the client's close info once
   * the client tries to reconnect (its attempt waits for `resume()`).
   */
  async drop (options?: { timeoutMs?: number }): Promise<CloseInfo> {
    const held = this.#factory.hold()
    this.#inboxes.delete('event:close')
    this.#factory.current?.terminate()
    const info = await this.nextEvent('close', options)
    const timeoutMs = options?.timeoutMs ?? this.#timeoutMs
    let timer: ReturnType<typeof setTimeout> | undefined
    const late = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => { reject(new errors.FST_RT_TEST_TIMEOUT('the client\'s reconnect attempt after drop()', timeoutMs, this.#pending())) }, timeoutMs)
    })
    try {
      await Promise.race([held, late])
    } finally {
      clearTimeout(timer)
    }
    return info
  }

  /** Lets the client reconnect after `drop()`; resolves once it is open again (rooms rejoined). */
  async resume (options?: { timeoutMs?: number }): Promise<void> {
    this.#factory.release()
    await this.#opened(options?.timeoutMs)
  }

  /** Resolves once the client is open; rejects with FST_RT_TEST_CONNECT_FAILED if the socket closes first. */
  async #opened (timeoutMs = this.#timeoutMs): Promise<void> {
    if (this.state === 'open') return
    if (this.state === 'closed') throw new errors.FST_RT_TEST_CONNECT_FAILED('the client is closed')
    await new Promise<void>((resolve, reject) => {
      const done = (error?: Error): void => {
        offState()
        offClose()
        clearTimeout(timer)
        if (error === undefined) resolve()
        else reject(error)
      }
      const offState = this.onState((state) => { if (state === 'open') done() })
      const offClose = this.onClose((info) => {
        done(new errors.FST_RT_TEST_CONNECT_FAILED(this.#factory.lastFailure?.message ?? `the connection closed with ${info.code} before it opened`))
      })
      const timer = setTimeout(() => { done(new errors.FST_RT_TEST_TIMEOUT('the connection to open', timeoutMs, this.#pending())) }, timeoutMs)
    })
  }

  /** Connects and resolves once open (after `$auth` and rejoins); used by connectTest(). */
  async connected (): Promise<this> {
    this.connect()
    try {
      await this.#opened()
    } catch (error) {
      this.close()
      throw error
    }
    return this
  }

  #inbox (key: string): Inbox {
    let inbox = this.#inboxes.get(key)
    if (inbox === undefined) {
      inbox = new Inbox(this.#keep)
      this.#inboxes.set(key, inbox)
    }
    return inbox
  }

  async #take (key: string, what: string, timeoutMs = this.#timeoutMs): Promise<unknown> {
    const inbox = this.#inbox(key)
    if (inbox.items.length > 0) return inbox.items.shift()
    return await new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          inbox.waiters.splice(inbox.waiters.indexOf(waiter), 1)
          reject(new errors.FST_RT_TEST_TIMEOUT(what, timeoutMs, this.#pending()))
        }, timeoutMs)
      }
      inbox.waiters.push(waiter)
    })
  }

  /** What arrived and was not taken, by type: the failure message says what came instead. */
  #pending (): string {
    const waiting = [...this.#inboxes].filter(([key, inbox]) => inbox.items.length > 0 && key !== 'event:state').map(([key, inbox]) => `${key.replace(/^\w+:/, '')} ×${inbox.items.length}`)
    return waiting.length === 0 ? 'nothing' : waiting.join(', ')
  }
}

/** `path` with `query` as its query string. */
function withQuery (path: string, query: ConnectTestOptions['query']): string {
  if (query === undefined) return path
  const search = new URLSearchParams()
  for (const [name, value] of Object.entries(query)) {
    for (const item of [value].flat()) search.append(name, String(item))
  }
  return `${path}${path.includes('?') ? '&' : '?'}${search.toString()}`
}

/**
 * Connects the typed client of `contract` to `path` of `app` without a port (`app.injectWS()`):
 * every hook, schema and handler runs as for a real upgrade. Resolves once the client is open;
 * rejects with FST_RT_TEST_CONNECT_FAILED when the upgrade is refused (the status is in the message).
 * Close the client (`client.close()`) or the app when the test ends.
 */
export async function connectTest<C extends Contract> (app: FastifyInstance, path: string, contract: C, options: ConnectTestOptions = {}): Promise<TestClient<C>> {
  await app.ready()
  const factory = new SocketFactory(app, options.headers ?? {})
  // The host is never dialled: the factory takes the path and query of the URL.
  const client = new TestClient(contract, factory, `ws://injected.test${withQuery(path, options.query)}`, options)
  return await client.connected()
}
