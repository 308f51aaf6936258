/**
 * Throw this from a message handler to answer with your own error code and message: unlike any
 * other error, its code and message reach the client (`{ type: 'error', data: { code, message } }`).
 */
export class MessageError extends Error {
  readonly code: string
  /** Extra details sent to the client as `data.details`; never put secrets here. */
  readonly details: unknown

  constructor (code: string, message: string, details?: unknown) {
    super(message)
    this.name = 'MessageError'
    this.code = code
    this.details = details
  }
}
