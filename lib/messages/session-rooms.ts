import type { Position, PresenceEntry } from '../hub/broker.js'
import type { HistoryRange } from '../hub/history-query.js'
import type { Hub, JoinOptions, JoinResult, RoomSendOptions } from '../hub/hub.js'
import type { Member } from '../hub/member.js'
import type { Contract } from './contract.js'
import { decodeHistory, type RoomHistory } from './history.js'
import type { RoomsApi } from './types.js'

/** What the rooms facade needs of its session. */
export interface RoomsOwner {
  readonly hub: Hub
  readonly member: Member
  /** The route this connection came in on. */
  readonly routeUrl: string
  /** Serializes a server message of the contract (checked when validateOutgoing is on). */
  serialize (type: string, data: unknown): string
  /** One serialization for every room, each published on every instance. */
  publish (rooms: string | readonly string[], type: string, data: unknown, except: string | undefined, options: RoomSendOptions | undefined): Promise<void>
}

/** `context.rooms`: the rooms API of one connection, a thin facade over the hub. */
export class SessionRooms implements RoomsApi<Contract> {
  constructor (private readonly session: RoomsOwner) {}

  get connectionId (): string {
    return this.session.member.id
  }

  get joined (): ReadonlySet<string> {
    return this.session.member.rooms
  }

  join (room: string, options?: Pick<JoinOptions, 'meta' | 'recover' | 'notice'>): Promise<JoinResult> {
    return this.session.hub.join(this.session.member, room, options)
  }

  async leave (room: string, options?: { notice?: boolean }): Promise<boolean> {
    this.session.hub.checkRoom(room)
    return await this.session.hub.leave(this.session.member, room, options)
  }

  publish (rooms: string | readonly string[], type: string, data: unknown, options?: RoomSendOptions): Promise<void> {
    return this.session.publish(rooms, type, data, undefined, options)
  }

  broadcast (rooms: string | readonly string[], type: string, data: unknown, options?: RoomSendOptions): Promise<void> {
    return this.session.publish(rooms, type, data, this.session.member.id, options)
  }

  async toUser (userId: string, type: string, data: unknown, options?: RoomSendOptions): Promise<void> {
    await this.session.hub.toUser(userId, this.session.serialize(type, data), options)
  }

  async toRoute (type: string, data: unknown, options?: RoomSendOptions): Promise<void> {
    await this.session.hub.toRoute(this.session.routeUrl, this.session.serialize(type, data), options)
  }

  presence (room: string): Promise<PresenceEntry[]> {
    return this.session.hub.presence(room)
  }

  presenceCount (room: string): Promise<number> {
    return this.session.hub.presenceCount(room)
  }

  async history (room: string, query?: HistoryRange): Promise<RoomHistory> {
    return decodeHistory(await this.session.hub.history(room, query))
  }

  position (room: string): Promise<Position> {
    return this.session.hub.position(room)
  }
}
