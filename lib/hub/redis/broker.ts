import { randomUUID } from 'node:crypto'
import {
  wholeQueryNumber, type Broker, type BrokerEvents, type HistoryLimits, type HistoryPage, type HistoryQuery,
  type Position, type PublishOptions, type RoomMessage
} from '../broker.js'
import { OrderedDelivery } from '../ordered-delivery.js'
import { commandClient } from './cluster-client.js'
import { roomKeys } from './keys.js'
import { settings, type RedisBrokerOptions } from './options.js'
import { RedisPresence } from './presence.js'
import { RewindWatch } from './rewind.js'
import { withScripts, type Client } from './scripts.js'
import { RedisSubscriber } from './subscriber.js'

/** A stream entry as XREVRANGE returns it (the id is `<time ms>-<n>`); we write the fields in this order, `except` only when given. */
type StreamEntry = [id: string, fields: ['offset', string, 'text', string, ...([] | ['except', string])]]

/**
 * Rooms across instances on Redis: history in a stream per room, offsets and epoch in a hash, both
 * written by one script per publish (offsets dense, publish and history atomic); messages fanned
 * out by pub/sub only as wake-ups (OrderedDelivery fills a missed one from the stream); presence
 * in `presence`, a RedisPresence on the same client. On one Redis or a Redis Cluster: every key
 * and the channel of a room share its slot (key-tags.ts).
 */
export class RedisBroker implements Broker {
  readonly presence: RedisPresence
  private readonly client: Client
  private readonly subscriber: RedisSubscriber
  private readonly delivery: OrderedDelivery
  private readonly ownsClient: boolean
  private readonly prefix: string
  private readonly limits: HistoryLimits
  private readonly sharded: boolean
  private readonly onError: (error: Error) => void
  /** Finds a room's history gone backwards after a failover (rewind.ts). */
  private readonly rewind = new RewindWatch()
  private events: BrokerEvents | undefined
  private closed = false

  constructor (options?: RedisBrokerOptions) {
    const s = settings(options)
    this.prefix = s.keyPrefix
    this.limits = s.limits
    this.sharded = s.sharded
    const own = s.onError
    // Background failures (refresh, resubscribe, catch-up, lost connections) go to the option and the hub.
    this.onError = (error: Error) => {
      own(error)
      // Before attach() there is no hub to tell yet.
      this.events?.error?.(error)
    }
    this.ownsClient = typeof s.client === 'string' || Array.isArray(s.client)
    const client = commandClient(s.client, s.sharded)
    if (this.ownsClient) client.on('error', this.onError)
    this.client = withScripts(client)
    this.presence = new RedisPresence(this.client, this.prefix, s.presenceTtlMs, this.onError)
    this.delivery = new OrderedDelivery((room, query) => this.read(room, query, true))
    this.subscriber = new RedisSubscriber(client, this.prefix, s.sharded, this.delivery, this.onError, s.topologyCheckMs, (message) => {
      if (this.rewind.message(message)) this.restart(message.room, message.epoch, 0).catch(this.onError)
    })
  }

  attach (events: BrokerEvents): void {
    this.events = events
    this.delivery.attach({ message: (message) => { events.message(message) }, lost: (room, position) => { events.lost(room, position) }, error: this.onError })
  }

  async publish (room: string, body: string, options?: PublishOptions): Promise<RoomMessage> {
    const keys = roomKeys(this.prefix, room)
    const stored = options?.history !== false
    const except = options?.except
    const [epoch, offset, time, text] = await this.client.fastifyRealtimePublish(
      keys.meta, keys.stream, randomUUID(), body, JSON.stringify(room), stored ? 1 : 0,
      this.limits.size, this.limits.ttlMs, keys.channel, this.sharded ? 1 : 0, except === undefined ? 0 : 1, except ?? ''
    ) as [string, string, string, string]
    const message: RoomMessage = { room, epoch, offset: Number(offset), time: Number(time), text }
    return stored ? message : { ...message, history: false }
  }

  subscribe (room: string): Promise<void> {
    this.rewind.follow(room)
    return this.delivery.follow(room, () => this.subscriber.listen([room]), () => this.unsubscribe(room))
  }

  async unsubscribe (room: string): Promise<void> {
    if (!this.delivery.unfollow(room)) return
    this.rewind.forget(room)
    await this.subscriber.unlisten(room)
  }

  /** The room's position and its newest kept entries after `since`, at most `max`, oldest first. */
  private async entries (room: string, since: number, max: number): Promise<{ position: Position, entries: StreamEntry[] }> {
    const keys = roomKeys(this.prefix, room)
    const [epoch, offset, entries] = await this.client.fastifyRealtimeRead(
      keys.meta, keys.stream, randomUUID(), this.limits.ttlMs, since, max
    ) as [string, string, StreamEntry[]]
    return { position: { epoch, offset: Number(offset) }, entries: entries.reverse() }
  }

  async position (room: string): Promise<Position> {
    return (await this.entries(room, 0, 0)).position
  }

  async history (room: string, query: HistoryQuery = {}): Promise<HistoryPage> {
    return await this.read(room, query, false)
  }

  /**
   * Starts a new epoch for a room still at `epoch` whose history went backwards (restartScript):
   * every instance's members get `$lost`. `minAgeMs` > 0 leaves an epoch this started less than
   * that long ago as it is. Resolves to the room's position after.
   */
  private async restart (room: string, epoch: string, minAgeMs: number): Promise<Position> {
    const keys = roomKeys(this.prefix, room)
    const [now, offset] = await this.client.fastifyRealtimeRestart(
      keys.meta, keys.stream, epoch, randomUUID(), this.limits.ttlMs, minAgeMs, keys.channel, this.sharded ? 1 : 0
    ) as [string, string]
    return { epoch: now, offset: Number(offset) }
  }

  /**
   * A client's claim (recovery.ts), which nothing here can check: so at most one restart per room
   * per minute comes from claims, or a forged offset could make every member reload at will.
   */
  async rewound (room: string, position: Position): Promise<Position> {
    return await this.restart(room, position.epoch, CLAIMED_RESTART_GAP_MS)
  }

  /**
   * A history page; `withExcept` (for catch-ups, whose messages still skip their sender) keeps
   * each message's `except`, which history() leaves out.
   */
  private async read (room: string, query: HistoryQuery, withExcept: boolean): Promise<HistoryPage> {
    const since = wholeQueryNumber(query.since ?? 0)
    const max = query.limit === 0 ? 0 : this.limits.size
    const wentBack = this.rewind.reading(room)
    let { position, entries } = await this.entries(room, since, max)
    if (wentBack({ position, messages: entries.slice(-1).map((entry) => toMessage(room, position.epoch, entry)) })) {
      // Below what this instance saw of the epoch: a new epoch, and the page of that.
      await this.restart(room, position.epoch, 0)
      ;({ position, entries } = await this.entries(room, since, max))
    }
    let messages = entries.map((entry) => {
      const message = toMessage(room, position.epoch, entry)
      const except = entry[1][5]
      return withExcept && except !== undefined ? { ...message, except } : message
    }).filter((message) => message.offset > since)
    if (query.limit !== undefined) messages = messages.slice(0, wholeQueryNumber(query.limit))
    return { position, messages }
  }

  /**
   * Stops delivering, removes this instance's presence entries, and quits the connections it
   * created. A client passed in stays open.
   */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.delivery.clear()
    this.rewind.clear()
    await this.presence.close()
    this.subscriber.disconnect()
    if (this.ownsClient) this.client.disconnect()
  }
}

/** The least time between two restarts of a room's epoch on a client's claim (see rewound()). */
const CLAIMED_RESTART_GAP_MS = 60_000

function toMessage (room: string, epoch: string, [id, fields]: StreamEntry): RoomMessage {
  return { room, epoch, offset: Number(fields[1]), time: Number(id.slice(0, id.indexOf('-'))), text: fields[3] }
}
