import type { DefaultRealtimeRequest } from '../connection/request.js'
import type { RealtimeConnection } from '../connection/connection.js'
import { CloseCode } from '../close-codes.js'
import type { RealtimeMetrics } from '../metrics.js'
import { nestsDeeperThan } from '../connection/json-depth.js'
import { isId } from './request-id.js'
import { AUTH, AUTH_REPLY, envelope } from '../protocol.js'

/** First-message authentication: the client's first message must be `{ "type": "$auth", "data": token }`. */
export interface AuthOptions<R = DefaultRealtimeRequest> {
  /** Returns the user id for a valid token, or null to refuse it (close 4501, terminal). The token is never logged. */
  verify: (token: string, request: R) => string | null | Promise<string | null>
  /** How long a new connection may stay silent before it is closed with 4401. @default 10000 */
  timeoutMs?: number
}

type AuthEnvelope = { type?: unknown, data?: unknown, id?: unknown }

const NOT_AUTH = 'The first message must be $auth'

/** The `$auth` envelope in `text`, or null for anything else (not JSON, too deep, a bad id). */
function authEnvelope (text: string, maxDepth: number): { token: string, id: string | number | undefined } | null {
  // `{ "type", "data": token, "id" }` has no nesting at all: deeper text is not worth parsing.
  if (nestsDeeperThan(text, maxDepth)) return null
  let parsed: AuthEnvelope | null = null
  try {
    parsed = JSON.parse(text) as AuthEnvelope | null
  } catch {}
  if (parsed?.type !== AUTH || typeof parsed.data !== 'string') return null
  if (parsed.id !== undefined && !isId(parsed.id)) return null
  return { token: parsed.data, id: parsed.id }
}

/**
 * Reads the first message as `{ "type": "$auth", "data": token, "id"? }` and verifies it. Returns the
 * user id, or null after closing the connection (4401 silent too long, 4501 refused) or when the
 * connection ended meanwhile.
 */
export async function authenticate (connection: RealtimeConnection, request: DefaultRealtimeRequest, auth: Required<AuthOptions>, metrics: RealtimeMetrics, maxDepth: number): Promise<string | null> {
  let message
  try {
    message = await connection.receive({ timeout: auth.timeoutMs })
  } catch {
    metrics.authFailures++
    await connection.close({ code: CloseCode.AUTH_TIMEOUT, reason: 'Authentication timed out' })
    return null
  }
  if (message.type !== 'text') {
    if (message.type === 'binary') {
      metrics.authFailures++
      await connection.close({ code: CloseCode.AUTH_FAILED, reason: NOT_AUTH })
    }
    return null
  }
  const first = authEnvelope(message.data, maxDepth)
  if (first === null) {
    metrics.authFailures++
    await connection.close({ code: CloseCode.AUTH_FAILED, reason: NOT_AUTH })
    return null
  }
  let userId: string | null
  try {
    userId = await auth.verify(first.token, request)
  } catch (error) {
    request.log.error({ err: error }, 'realtime: auth.verify failed')
    userId = null
  }
  // The client left while its token was checked: nobody to answer, nothing to set up.
  if (connection.closed) return null
  if (typeof userId !== 'string') {
    metrics.authFailures++
    request.log.info('realtime: authentication refused')
    await connection.close({ code: CloseCode.AUTH_FAILED, reason: 'Authentication failed' })
    return null
  }
  await connection.sendText(envelope(AUTH_REPLY, { userId }, first.id))
  return userId
}
