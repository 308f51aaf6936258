import type { FastifyInstance } from 'fastify'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { errors } from '../errors.js'
import { envelope, JOIN, JOIN_REPLY, LEAVE_REPLY, type JoinData as JoinRequest, type LEAVE } from '../protocol.js'
import { JoinData, LeaveData } from '../protocol-schemas.js'
import type { Hub, JoinOptions } from '../hub/hub.js'
import type { Member } from '../hub/member.js'
import type { ClientCheck } from './client-check.js'
import type { Contract } from './contract.js'
import type { ContractSettings } from '../options/contract.js'
import { cutEcho, type ValidationErrors } from './error-envelope.js'
import type { Id } from './request-id.js'
import type { ClientRoomsOptions, MessageContext } from './types.js'

/** What a connection's `$join` and `$leave` requests need of its session. */
export interface RoomRequestOwner {
  readonly app: FastifyInstance
  readonly hub: Hub
  readonly member: Member
  readonly settings: ContractSettings
  readonly context: MessageContext<Contract>
  /** Answers bad input by the route's policy; false when the connection is being closed. */
  refuse (error: Error & { code: string }, id: Id | undefined, list?: ValidationErrors): Promise<boolean>
  validationErrors (check: ClientCheck, data: unknown, messageLength: number): ValidationErrors
  sendError (error: Error & { code: string }, id: Id | undefined): Promise<void>
  /** A failure: logged, answered and reported to the error handler. */
  failed (type: string, error: Error, id: Id | undefined): Promise<void>
  write (text: string): Promise<void>
  /** Counts a task as running (reading waits above maxInFlight) until it settles. */
  occupy (task: Promise<unknown>): void
}

const checkJoin = TypeCompiler.Compile(JoinData)
const checkLeave = TypeCompiler.Compile(LeaveData)
const MAX_META_BYTES = 1024

function noticesFor (rooms: ClientRoomsOptions, room: string): boolean {
  return typeof rooms.notices === 'function' ? rooms.notices(room) : rooms.notices === true
}

/** A client's own `$join` and `$leave` on a route with `rooms`: checked, authorized, answered with `<type>:reply`. */
export class RoomRequests {
  /** The last of this connection's $join and $leave requests, which run in order. */
  private last: Promise<void> | null = null

  constructor (private readonly session: RoomRequestOwner, private readonly rooms: ClientRoomsOptions, private readonly presence: ClientCheck | null) {}

  /** Takes one request; returns true, or for bad input a promise of false when the connection is being closed. */
  take (type: typeof JOIN | typeof LEAVE, data: unknown, id: Id | undefined, messageLength: number): true | Promise<boolean> {
    const session = this.session
    const check = type === JOIN ? checkJoin : checkLeave
    if (!check.Check(data)) {
      return session.refuse(new errors.FST_RT_INVALID_MESSAGE_DATA(JSON.stringify(type)), id, session.validationErrors(check, data, messageLength))
    }
    const request = data as JoinRequest
    try {
      session.hub.checkRoom(request.room)
    } catch (error) {
      return session.refuse(error as Error & { code: string }, id)
    }
    if (type === JOIN && (request.epoch === undefined) !== (request.offset === undefined)) {
      return session.refuse(new errors.FST_RT_INVALID_MESSAGE_DATA(JSON.stringify(type)), id, [{ path: '/offset', message: 'epoch and offset go together' }])
    }
    if (request.meta !== undefined && Buffer.byteLength(JSON.stringify(request.meta)) > MAX_META_BYTES) {
      return session.refuse(new errors.FST_RT_INVALID_MESSAGE_DATA(JSON.stringify(type)), id, [{ path: '/meta', message: `Expected at most ${MAX_META_BYTES} bytes of JSON` }])
    }
    if (type === JOIN && this.presence !== null && !this.presence.Check(request.meta ?? null)) {
      const list = session.validationErrors(this.presence, request.meta ?? null, messageLength).map((error) => ({ ...error, path: `/meta${error.path}` }))
      return session.refuse(new errors.FST_RT_INVALID_MESSAGE_DATA(JSON.stringify(type)), id, list)
    }
    // A connection's room requests run one after another, in the order they came: a $leave sent
    // right after a $join applies to the room joined. Neither ever rejects.
    const previous = this.last ?? Promise.resolve()
    this.last = previous.then(async () => { await (type === JOIN ? this.join(request, id) : this.leave(request.room, id)) })
    session.occupy(this.last)
    return true
  }

  private async join (request: JoinRequest, id: Id | undefined): Promise<void> {
    const { session, rooms } = this
    try {
      // Before authorize, which may be costly: a join over the bounds is refused either way.
      session.hub.checkCapacity(session.member, request.room)
      if (await rooms.authorize.call(session.app, request.room, session.context) !== true) {
        await session.sendError(new errors.FST_RT_JOIN_FORBIDDEN(JSON.stringify(cutEcho(request.room, session.settings.maxEchoLength))), id)
        return
      }
      const options: JoinOptions = {
        meta: request.meta,
        notice: noticesFor(rooms, request.room),
        // The reply goes out before the replay and the live messages, so the client knows where it stands.
        beforeDelivery: (result) => session.write(envelope(JOIN_REPLY, result, id))
      }
      if (request.epoch !== undefined) options.recover = { epoch: request.epoch, offset: request.offset as number }
      await session.hub.join(session.member, request.room, options)
    } catch (error) {
      const code = (error as { code?: unknown }).code
      // The client left meanwhile: nobody to tell, and its join left nothing behind (see Hub.join).
      if (code === 'FST_RT_CONNECTION_CLOSED') return
      if (code === 'FST_RT_TOO_MANY_ROOMS') await session.sendError(error as Error & { code: string }, id)
      else await session.failed('$join', error as Error, id)
    }
  }

  private async leave (room: string, id: Id | undefined): Promise<void> {
    const session = this.session
    try {
      const left = await session.hub.leave(session.member, room)
      await session.write(envelope(LEAVE_REPLY, { room, left }, id))
    } catch (error) {
      await session.failed('$leave', error as Error, id)
    }
  }
}
