import { Type, type TSchema } from '@sinclair/typebox'
import {
  AUTH, AUTH_REPLY, ERROR, JOIN, JOIN_REPLY, LEAVE, LEAVE_REPLY, LOST, PING, PONG, PRESENCE
} from './protocol.js'

// The TypeBox schema of each system message's `data` (protocol.ts names them and has their types;
// it cannot import TypeBox, as the browser client loads it as it is). The server checks `$join` and
// `$leave` with these; docs/protocol.md is checked against them.

export const AuthData = Type.String()
export const AuthReplyData = Type.Object({ userId: Type.String() })
export const PingData = Type.Null()
export const PongData = Type.Null()
export const JoinData = Type.Object({
  room: Type.String(),
  epoch: Type.Optional(Type.String({ maxLength: 64 })),
  offset: Type.Optional(Type.Integer({ minimum: 0 })),
  meta: Type.Optional(Type.Unknown())
})
export const JoinReplyData = Type.Object({
  room: Type.String(),
  epoch: Type.String(),
  offset: Type.Integer({ minimum: 0 }),
  recovered: Type.Optional(Type.Boolean())
})
export const LeaveData = Type.Object({ room: Type.String() })
export const LeaveReplyData = Type.Object({ room: Type.String(), left: Type.Boolean() })
export const PresenceData = Type.Object({
  room: Type.String(),
  event: Type.Union([Type.Literal('join'), Type.Literal('leave')]),
  connectionId: Type.String(),
  userId: Type.Union([Type.String(), Type.Null()]),
  meta: Type.Unknown()
})
export const LostData = Type.Object({ room: Type.String(), epoch: Type.String(), offset: Type.Integer({ minimum: 0 }) })
export const ErrorData = Type.Object({
  code: Type.String(),
  message: Type.String(),
  errors: Type.Array(Type.Object({ path: Type.String(), message: Type.String() })),
  details: Type.Optional(Type.Unknown())
})

export interface SystemMessage {
  /** Who sends it. */
  readonly from: 'client' | 'server'
  readonly data: TSchema
  /** The type that answers it, for a request. */
  readonly reply?: string
}

/** Every system message, by type. */
export const systemMessages: Readonly<Record<string, SystemMessage>> = Object.freeze({
  [AUTH]: { from: 'client', data: AuthData, reply: AUTH_REPLY },
  [AUTH_REPLY]: { from: 'server', data: AuthReplyData },
  [PING]: { from: 'client', data: PingData, reply: PONG },
  [PONG]: { from: 'server', data: PongData },
  [JOIN]: { from: 'client', data: JoinData, reply: JOIN_REPLY },
  [JOIN_REPLY]: { from: 'server', data: JoinReplyData },
  [LEAVE]: { from: 'client', data: LeaveData, reply: LEAVE_REPLY },
  [LEAVE_REPLY]: { from: 'server', data: LeaveReplyData },
  [PRESENCE]: { from: 'server', data: PresenceData },
  [LOST]: { from: 'server', data: LostData },
  [ERROR]: { from: 'server', data: ErrorData }
})
