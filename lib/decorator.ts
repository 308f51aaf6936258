import type { Contract, ServerData, ServerMessage, ServerType } from './messages/contract.js'
import { decodeHistory, type RoomHistory } from './messages/history.js'
import { compiledFor, serializeOutgoing } from './messages/outgoing.js'
import type { Broker, HistoryPage, Position, PresenceEntry } from './hub/broker.js'
import type { HistoryRange } from './hub/history-query.js'
import { Hub, type HubStats, type RoomSendOptions } from './hub/hub.js'
import type { ConnectionInfo, Registry } from './hub/registry.js'
import type { DisconnectTarget } from './hub/control.js'
import type { AsyncApiDocument, AsyncApiOptions } from './asyncapi/document.js'
import { prometheusText, type RealtimeMetrics } from './metrics.js'
import { errors } from './errors.js'

/** `app.realtime`: what handlers can do with rooms, from anywhere in the app. Sends are typed by the contract given. */
export interface RealtimeDecorator {
  /** Sends to every member of the rooms, on every instance; `{ volatile: true }`: not kept, and dropped for a member that cannot take it at once. */
  publish<C extends Contract, K extends ServerType<C>>(contract: C, rooms: string | readonly string[], type: K, data: ServerData<C, K>, options?: RoomSendOptions): Promise<void>
  /** Sends to every connection of a user, on every instance (`volatile` as for publish). */
  toUser<C extends Contract, K extends ServerType<C>>(contract: C, userId: string, type: K, data: ServerData<C, K>, options?: RoomSendOptions): Promise<void>
  /** Sends to every connection of a route (its URL as declared, e.g. '/chat'), on every instance (`volatile` as for publish). */
  toRoute<C extends Contract, K extends ServerType<C>>(contract: C, url: string, type: K, data: ServerData<C, K>, options?: RoomSendOptions): Promise<void>
  /** Returns `room` if apps and clients may use it; throws FST_RT_INVALID_ROOM (400) otherwise. */
  checkRoom (room: unknown): string
  presence (room: string): Promise<PresenceEntry[]>
  presenceCount (room: string): Promise<number>
  /** The room's position and kept messages as stored: each message's wire `text`. */
  history (room: string, query?: HistoryRange): Promise<HistoryPage>
  /** The room's position and kept messages, decoded and typed by the contract (see `ctx.rooms.history`). */
  history<C extends Contract> (contract: C, room: string, query?: HistoryRange): Promise<RoomHistory<ServerMessage<C>>>
  /** The room's position, read alone. */
  position (room: string): Promise<Position>
  /**
   * Snapshot, then stream: reads the room's position first, then the app's own state of the room
   * (`load`, given that position), and returns both. A client that joins from `{ epoch, offset }`
   * gets every message after the position and none before it (see docs/rooms.md#snapshot-then-stream).
   */
  snapshot<S> (room: string, load: (position: Position) => S | Promise<S>): Promise<RoomSnapshot<S>>
  /**
   * Closes connections of contract routes on every instance (through the broker): every one of a
   * user, one by its id, or every member of a room, with this close code (default 4500, terminal:
   * the client does not reconnect) and reason. Resolves once sent; an unknown id or an empty room
   * closes nothing.
   */
  disconnect (target: DisconnectTarget, code?: number, reason?: string): Promise<void>
  /** This instance's connections of contract routes: all, or those of a room, a user or a connection id. */
  connections (filter?: DisconnectTarget): ConnectionInfo[]
  /** Counters: published, delivered, slow-consumer closes, lost notices. */
  readonly stats: Readonly<HubStats>
  /** Connections by route, messages and bytes in and out, refusals, kills: see docs/operations.md. */
  readonly metrics: Readonly<RealtimeMetrics>
  /** The metrics in Prometheus' text format. */
  prometheus (): string
  /** Makes the next `app.close()` close connections with 1012 (service restart) instead of 1001. */
  restarting (): void
  readonly broker: Broker
  /** The AsyncAPI 3.0 document of every contract route registered so far (call it once the app is ready). */
  asyncapi (options?: AsyncApiOptions): AsyncApiDocument
}

/** What `snapshot()` returns: the room's position and the app's state read after it. */
export interface RoomSnapshot<S> {
  readonly room: string
  readonly epoch: string
  readonly offset: number
  readonly state: S
}

/** `app.realtime.history`: as stored, or decoded when a contract comes first. */
function historyReader (hub: Hub): RealtimeDecorator['history'] {
  function history (room: string, query?: HistoryRange): Promise<HistoryPage>
  function history<C extends Contract> (contract: C, room: string, query?: HistoryRange): Promise<RoomHistory<ServerMessage<C>>>
  async function history (first: string | Contract, second?: string | HistoryRange, third?: HistoryRange): Promise<HistoryPage | RoomHistory> {
    if (typeof first === 'string') return await hub.history(first, second as HistoryRange | undefined)
    // Checks the contract (FST_RT_INVALID_CONTRACT), as publish does.
    compiledFor(first)
    return decodeHistory(await hub.history(second as string, third))
  }
  return history
}

export function createDecorator (hub: Hub, registry: Registry, metrics: RealtimeMetrics, restarting: () => void, asyncapi: RealtimeDecorator['asyncapi']): RealtimeDecorator {
  const body = (contract: Contract, type: string, data: unknown): string => serializeOutgoing(compiledFor(contract), type, data, false)
  return {
    async publish (contract, rooms, type, data, options) {
      const list = hub.checkRooms(rooms)
      const send = Hub.sendOptions(options)
      await hub.publishAll(list, body(contract, type, data), send)
    },
    toUser: async (contract, userId, type, data, options) => { await hub.toUser(userId, body(contract, type, data), options) },
    toRoute: async (contract, url, type, data, options) => { await hub.toRoute(url, body(contract, type, data), options) },
    checkRoom: (room) => hub.checkRoom(room),
    presence: (room) => hub.presence(room),
    presenceCount: (room) => hub.presenceCount(room),
    history: historyReader(hub),
    position: (room) => hub.position(room),
    disconnect: (target, code, reason) => registry.disconnect(target, code, reason),
    connections: (filter) => registry.connections(filter),
    async snapshot (room, load) {
      if (typeof load !== 'function') throw new errors.FST_RT_INVALID_OPTION('"load"', 'expected a function (position) => state')
      const position = await hub.position(room)
      return { room, epoch: position.epoch, offset: position.offset, state: await load(position) }
    },
    get stats () { return hub.stats },
    metrics,
    prometheus: () => prometheusText(metrics, hub.stats),
    restarting,
    broker: hub.broker,
    asyncapi
  }
}
