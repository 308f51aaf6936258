/** Every error the client raises: a code to branch on, and for server errors the server's code. */
export class RealtimeClientError extends Error {
  readonly code: ClientErrorCode
  /** For FST_RT_CLIENT_SERVER_ERROR: the error envelope's `data` ({ code, message, errors, details? }). */
  readonly data: unknown

  constructor (code: ClientErrorCode, message: string, data?: unknown) {
    super(message)
    this.name = 'RealtimeClientError'
    this.code = code
    this.data = data
  }
}

export const clientErrorCodes = {
  /** The client was closed with close(): nothing more is sent. */
  FST_RT_CLIENT_CLOSED: 'The client is closed',
  /** The connection dropped while a request waited for its reply. */
  FST_RT_CLIENT_CONNECTION_LOST: 'The connection was lost before the reply arrived',
  /** No reply within the request's timeout. */
  FST_RT_CLIENT_REQUEST_TIMEOUT: 'No reply within the request timeout',
  /** The offline queue is full and its policy is "reject". */
  FST_RT_CLIENT_QUEUE_FULL: 'The offline queue is full',
  /** A queued message grew older than the queue's maxAgeMs before it could be sent. */
  FST_RT_CLIENT_QUEUE_EXPIRED: 'A queued message expired before the connection came back',
  /** The server answered a request with an error envelope; `data` holds it. */
  FST_RT_CLIENT_SERVER_ERROR: 'The server answered with an error',
  /** The first-message `$auth` got an error answer (the client stops) or no answer in time (it reconnects). */
  FST_RT_CLIENT_AUTH_FAILED: 'The server did not accept the $auth message',
  /** An option has a wrong value (or a snapshot loader resolved with no position). */
  FST_RT_CLIENT_INVALID_OPTION: 'Invalid client option',
  /** A room joined with a snapshot loader could not be brought back after several reloads; it stays joined live. */
  FST_RT_CLIENT_RESYNC_FAILED: 'The room could not be re-synced'
} as const

export type ClientErrorCode = keyof typeof clientErrorCodes
