import { CloseCode, isSendableCloseCode } from '../close-codes.js'
import { errors } from '../errors.js'

/** Which connections `disconnect()` closes: every one of a user, one by its id, or every member of a room. */
export type DisconnectTarget = { userId: string } | { connectionId: string } | { room: string }

/** What the hub sends every instance (itself included) on the control room. */
export interface DisconnectCommand {
  readonly target: DisconnectTarget
  readonly code: number
  readonly reason: string
}

/** The internal room every instance with members listens on for commands. */
export const CONTROL_ROOM = '$control'
const DISCONNECT = '$disconnect'
/** A close frame's reason is at most 123 bytes (RFC 6455). */
const MAX_REASON_BYTES = 123
const MAX_ID_LENGTH = 128

/** Checks a target's shape: FST_RT_INVALID_DISCONNECT unless it is one of the three (user ids and rooms are checked by the hub). */
export function checkTarget (target: unknown): DisconnectTarget {
  if (typeof target !== 'object' || target === null || Object.keys(target).length !== 1 || !['userId', 'connectionId', 'room'].includes(Object.keys(target)[0] as string)) {
    throw new errors.FST_RT_INVALID_DISCONNECT('expected one of { userId }, { connectionId } or { room }')
  }
  const connectionId = (target as { connectionId?: unknown }).connectionId
  if ('connectionId' in target && (typeof connectionId !== 'string' || connectionId.length === 0 || connectionId.length > MAX_ID_LENGTH)) {
    throw new errors.FST_RT_INVALID_DISCONNECT(`a connectionId is a non-empty string of at most ${MAX_ID_LENGTH} characters`)
  }
  return target as DisconnectTarget
}

/** Checks a disconnect's arguments: FST_RT_INVALID_DISCONNECT for a bad target, code or reason. */
export function disconnectCommand (target: unknown, code: unknown = CloseCode.DISCONNECTED, reason: unknown = 'Disconnected'): DisconnectCommand {
  const checked = checkTarget(target)
  if (typeof code !== 'number' || !isSendableCloseCode(code)) {
    throw new errors.FST_RT_INVALID_DISCONNECT('the code must be one a close frame may carry: 1000-1003, 1007-1014 or 3000-4999')
  }
  if (typeof reason !== 'string' || Buffer.byteLength(reason) > MAX_REASON_BYTES) {
    throw new errors.FST_RT_INVALID_DISCONNECT(`the reason must be a string of at most ${MAX_REASON_BYTES} bytes of UTF-8`)
  }
  return { target: checked, code, reason }
}

/** The body of a command on the control room. */
export function controlBody (command: DisconnectCommand): string {
  return JSON.stringify({ type: DISCONNECT, data: command })
}

/** The command in a control room message (only hubs publish there, in this format). */
export function readControl (text: string): DisconnectCommand {
  return (JSON.parse(text) as { data: DisconnectCommand }).data
}
