import type { FastifyBaseLogger } from 'fastify'
import { Hub, isInternal } from './hub.js'
import type { Member } from './member.js'
import { checkTarget, CONTROL_ROOM, controlBody, disconnectCommand, readControl, type DisconnectTarget } from './control.js'

/** One local connection, as `connections()` lists it. */
export interface ConnectionInfo {
  readonly connectionId: string
  readonly userId: string | null
  /** The app rooms it is in. */
  readonly rooms: string[]
}

/**
 * The contract connections of this instance, over the hub's rooms: each one enters its route's,
 * its user's and the control room, and leaves every room when it ends. Lists them, closes them on
 * any instance through the control room, and tells shutdown when the last one is out.
 */
export class Registry {
  /** Members entered and not yet out of every room: shutdown waits for them (their leave notices) before the broker closes. */
  private readonly present = new Set<Member>()
  private readonly emptyWaiters = new Set<() => void>()

  constructor (private readonly hub: Hub, private readonly log: FastifyBaseLogger) {
    hub.readBy(CONTROL_ROOM, (text) => { this.onControl(text) })
  }

  /**
   * Registers a contract connection: its route's room, its user's room, and the control room every
   * instance with members listens on (for `disconnect()`). Resolves once all three are live.
   */
  async enter (member: Member, routeUrl: string): Promise<void> {
    this.present.add(member)
    await this.hub.enterInternal(member, CONTROL_ROOM)
    await this.hub.enterInternal(member, Hub.routeRoom(routeUrl))
    if (member.userId !== null) await this.hub.enterInternal(member, Hub.userRoom(member.userId))
  }

  /** Takes a closed connection out of every room (see `Hub.remove`), then out of the registry. */
  async exit (member: Member): Promise<void> {
    await this.hub.remove(member)
    this.present.delete(member)
    if (this.present.size === 0) for (const done of [...this.emptyWaiters]) done()
  }

  /**
   * Resolves once every entered member is out of every room (leave notices and presence removal
   * done), or after `limitMs`: shutdown calls it before closing the broker, so a slow close
   * handler or broker delays the shutdown by that much at most.
   */
  async whenEmpty (limitMs: number): Promise<void> {
    if (this.present.size === 0) return
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        this.emptyWaiters.delete(done)
        resolve()
      }
      const timer = setTimeout(done, limitMs)
      this.emptyWaiters.add(done)
    })
  }

  /**
   * Closes connections on every instance, through the control room: every one of a user, one by
   * its id, or every member of a room. Resolves once the command is published; an id or room with
   * no connection closes nothing.
   */
  async disconnect (target: DisconnectTarget, code?: number, reason?: string): Promise<void> {
    const command = disconnectCommand(target, code, reason)
    if ('userId' in command.target) this.hub.checkUser(command.target.userId)
    if ('room' in command.target) this.hub.checkRoom(command.target.room)
    await this.hub.broker.publish(CONTROL_ROOM, controlBody(command), { history: false })
  }

  /** This instance's connections (of contract routes): all, or those of a room, a user or an id. */
  connections (filter?: DisconnectTarget): ConnectionInfo[] {
    return this.localMembers(filter === undefined ? undefined : checkTarget(filter)).map((member) => ({
      connectionId: member.id,
      userId: member.userId,
      rooms: [...member.rooms].filter((room) => !isInternal(room))
    }))
  }

  /** The open local members a target names (a closing one is on its way out of every room). */
  private localMembers (target: DisconnectTarget | undefined): Member[] {
    let members = this.hub.members(CONTROL_ROOM)
    if (target !== undefined && !('connectionId' in target)) {
      members = this.hub.members('userId' in target ? Hub.userRoom(this.hub.checkUser(target.userId)) : this.hub.checkRoom(target.room))
    }
    return [...members].filter((member) => !member.connection.closed && (target === undefined || !('connectionId' in target) || member.id === target.connectionId))
  }

  /** A command from the control room (this instance's own too): closes the local connections it names. */
  private onControl (text: string): void {
    const command = readControl(text)
    for (const member of this.localMembers(command.target)) {
      this.log.info({ connectionId: member.id, code: command.code }, 'realtime: disconnecting a connection on request')
      void member.connection.close({ code: command.code, reason: command.reason })
    }
  }
}
