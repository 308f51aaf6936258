// The wire protocol of contract routes: every system message the server and the client exchange
// beside the contract's own, with the shape of its `data` and the builder of its text. Both sides
// import this file, so it imports nothing at all: the browser client loads it as it is (no Node, no
// bundler, no TypeBox). The TypeBox schemas of these messages are in protocol-schemas.ts (the types
// here are checked equal to them in types/protocol.tst.ts), and docs/protocol.md describes both
// (test/protocol.test.ts keeps it true).

/** First message of a client on a route with `auth`: `data` is the token. A request: answered by `$auth:reply`. */
export const AUTH = '$auth'
export const AUTH_REPLY = '$auth:reply'
/** Liveness for clients that cannot see WebSocket pings (browsers): answered by `$pong`, with the same `id`. */
export const PING = '$ping'
export const PONG = '$pong'
/** A client joins a room itself (routes with `rooms`): answered by `$join:reply` before any replay. */
export const JOIN = '$join'
export const JOIN_REPLY = '$join:reply'
export const LEAVE = '$leave'
export const LEAVE_REPLY = '$leave:reply'
/** A join or leave notice in a room whose joins are announced. */
export const PRESENCE = '$presence'
/** The server lost messages of a room (a broker restarted): the client reloads it. */
export const LOST = '$lost'
/** The answer to bad input or a failed request, and unanswerable failures. */
export const ERROR = 'error'
/** A request of type `t` is answered by `t:reply` (or by `error`). */
export const REPLY_SUFFIX = ':reply'
/** Message types starting with this belong to the plugin: no contract may declare one. */
export const SYSTEM_PREFIX = '$'

export type RequestId = string | number

/** Every message: a JSON object in one text frame. `id` only on requests and their answers. */
export interface WireEnvelope<T extends string = string, D = unknown> {
  type: T
  data: D
  id?: RequestId
}

export type AuthData = string
export interface AuthReplyData { userId: string }
export type PingData = null
export type PongData = null
export interface JoinData {
  room: string
  /** With `offset`: the position the client last saw, to recover from. */
  epoch?: string
  offset?: number
  /** Shown in presence; at most 1 KiB of JSON. */
  meta?: unknown
}
export interface JoinReplyData {
  room: string
  epoch: string
  offset: number
  /** Present when the join asked for recovery: true if every missed message follows. */
  recovered?: boolean
}
export interface LeaveData { room: string }
export interface LeaveReplyData { room: string, left: boolean }
/** A `$presence` notice; `M` is the contract's presence meta (a leave notice's meta is null). */
export interface PresenceData<M = unknown> {
  room: string
  event: 'join' | 'leave'
  connectionId: string
  userId: string | null
  meta: M | null
}
export interface LostData { room: string, epoch: string, offset: number }
export interface ErrorData {
  code: string
  message: string
  /** Validation failures: paths and messages, never values. */
  errors: Array<{ path: string, message: string }>
  /** A MessageError's details. */
  details?: unknown
}

/** The type that answers a request of `type`. */
export function replyType (type: string): string {
  return type + REPLY_SUFFIX
}

/** The text of an envelope; an undefined `id` is left out. */
export function envelope (type: string, data: unknown, id?: RequestId): string {
  return JSON.stringify({ type, data, id })
}

export function presenceNotice (data: PresenceData): string {
  return envelope(PRESENCE, data)
}

export function lostNotice (data: LostData): string {
  return envelope(LOST, data)
}
