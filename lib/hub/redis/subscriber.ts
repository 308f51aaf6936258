import type { RoomMessage } from '../broker.js'
import type { OrderedDelivery } from '../ordered-delivery.js'
import { isCluster, subscriberOf, subscribing, type AnyRedis } from './cluster-client.js'
import { roomKeys, roomOfChannel } from './keys.js'
import { TopologyWatch } from './topology.js'

const BAR = 0x7c

/**
 * The pub/sub side of a RedisBroker: a `duplicate()` of its client (cluster-client.ts) that
 * subscribes to the rooms' channels, reads each payload as a RoomMessage and hands it to the delivery. Messages on pub/sub
 * are only wake-ups: the delivery fills a gap from the stream, and after a reconnect it catches
 * every room up before anything newer goes out.
 */
export class RedisSubscriber {
  private readonly connection: AnyRedis
  /** On a Redis Cluster: resubscribes the rooms whose slot moved or whose master failed over. */
  private readonly topology: TopologyWatch | null

  /** `inspect` sees each message before the delivery does (the broker's rewind check). */
  constructor (client: AnyRedis, private readonly prefix: string, private readonly sharded: boolean, private readonly delivery: OrderedDelivery, onError: (error: Error) => void, topologyCheckMs: number, private readonly inspect: (message: RoomMessage) => void) {
    this.connection = subscriberOf(client, sharded)
    this.connection.on('error', onError)
    // Buffers: the header counts the bytes of `except`.
    this.connection.on(sharded ? 'smessageBuffer' : 'messageBuffer', (channel: Buffer, payload: Buffer) => { this.receive(channel.toString(), payload) })
    // Runs before anything arrives on the new connection ('ready' is emitted first).
    this.connection.on('ready', () => { this.delivery.resume((rooms) => this.listen(rooms)).catch(onError) })
    this.topology = isCluster(this.connection)
      ? new TopologyWatch(this.connection, sharded, {
        rooms: () => this.delivery.followed(),
        moved: (rooms) => this.delivery.resume((followed) => this.listen(followed), rooms),
        onError
      }, topologyCheckMs)
      : null
  }

  /** Subscribes to the rooms' channels. */
  async listen (rooms: string[]): Promise<void> {
    for (const room of rooms) this.topology?.note(room)
    const channels = rooms.map((room) => roomKeys(this.prefix, room).channel)
    if (this.sharded) {
      // Standalone Redis takes several at once, Cluster only channels of one slot: one command each.
      await Promise.all(channels.map((channel) => subscribing(this.connection, () => this.connection.ssubscribe(channel))))
    } else {
      await subscribing(this.connection, () => this.connection.subscribe(...channels))
    }
  }

  async unlisten (room: string): Promise<void> {
    this.topology?.forget(room)
    const channel = roomKeys(this.prefix, room).channel
    await subscribing(this.connection, () => this.sharded ? this.connection.sunsubscribe(channel) : this.connection.unsubscribe(channel))
  }

  /**
   * A payload is `offset|time|epoch|stored|n|` followed by the n bytes of `except` (n empty
   * without one) and the text (see publishScript).
   */
  private receive (channel: string, payload: Buffer): void {
    const first = payload.indexOf(BAR)
    const second = payload.indexOf(BAR, first + 1)
    const third = payload.indexOf(BAR, second + 1)
    const fourth = third + 2
    const fifth = payload.indexOf(BAR, fourth + 1)
    const exceptEnd = fifth + 1 + Number(payload.toString('latin1', fourth + 1, fifth))
    let message: RoomMessage = {
      room: roomOfChannel(this.prefix, channel),
      epoch: payload.toString('latin1', second + 1, third),
      offset: Number(payload.toString('latin1', 0, first)),
      time: Number(payload.toString('latin1', first + 1, second)),
      text: payload.toString('utf8', exceptEnd)
    }
    if (payload[third + 1] === 0x30) message = { ...message, history: false }
    if (fifth !== fourth + 1) message = { ...message, except: payload.toString('utf8', fifth + 1, exceptEnd) }
    this.inspect(message)
    // A message may still arrive between unsubscribing and Redis confirming it: the delivery drops it.
    this.delivery.receive(message)
  }

  /** Drops the connection: nothing is pending any more, and QUIT would reject when Redis is down. */
  disconnect (): void {
    this.topology?.close()
    this.connection.disconnect()
  }
}
