/** Close codes used by fastify-realtime: RFC 6455 ones, and two application ranges. */
export const CloseCode = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  UNSUPPORTED_DATA: 1003,
  NO_STATUS: 1005,
  ABNORMAL: 1006,
  INVALID_PAYLOAD: 1007,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  SERVICE_RESTART: 1012,
  TRY_AGAIN_LATER: 1013,
  /** The member could not keep up with its rooms (reconnect and recover). */
  SLOW_CONSUMER: 4008,
  /** No `$auth` message within the route's auth timeout (reconnect). */
  AUTH_TIMEOUT: 4401,
  /** Disconnected by the app (`app.realtime.disconnect()`'s default): do not reconnect. */
  DISCONNECTED: 4500,
  /** The `$auth` token was refused or missing (do not reconnect with the same token). */
  AUTH_FAILED: 4501
} as const

/** Application codes a client should reconnect after (e.g. slow consumer, overload). */
export const RECONNECT_RANGE = { min: 4000, max: 4499 } as const
/** Application codes a client must not reconnect after (e.g. auth failure). */
export const TERMINAL_RANGE = { min: 4500, max: 4999 } as const

/** Whether `code` may be sent in a close frame (RFC 6455 §7.4). */
export function isSendableCloseCode (code: number): boolean {
  if (!Number.isInteger(code)) return false
  if (code >= 3000 && code <= 4999) return true
  return code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006
}

/**
 * Whether a client should reconnect after the server closed with `code`: after going away, restart,
 * try-again-later, internal errors, abnormal closure and the reconnect range; never after a normal
 * close, the client's own protocol or policy errors, or the terminal range.
 */
export function shouldReconnect (code: number): boolean {
  if (code >= RECONNECT_RANGE.min && code <= RECONNECT_RANGE.max) return true
  return code === 1001 || code === 1005 || code === 1006 || code === 1011 || code === 1012 || code === 1013
}
