import createError from '@fastify/error'
import type { FastifyErrorConstructor } from '@fastify/error'

const closeCodes = new Map<string, number>()

/** Creates an error code and records the close code a connection ends with when it is raised. */
function withCloseCode<C extends FastifyErrorConstructor> (Ctor: C, closeCode: number): C {
  // @fastify/error sets `code` on instances, not on the prototype.
  closeCodes.set(new Ctor().code, closeCode)
  return Ctor
}

export const errors = {
  // ---- configuration: thrown at registration ----
  FST_RT_INVALID_OPTION: createError('FST_RT_INVALID_OPTION', 'Invalid fastify-realtime option %s: %s', 500, TypeError),
  FST_RT_INVALID_ROUTE: createError('FST_RT_INVALID_ROUTE', 'Invalid realtime route %s: %s', 500, TypeError),

  // ---- handshake: answered with an HTTP status before the upgrade ----
  FST_RT_BAD_HANDSHAKE: createError('FST_RT_BAD_HANDSHAKE', 'Bad WebSocket handshake: %s', 400),
  FST_RT_UPGRADE_REQUIRED: createError('FST_RT_UPGRADE_REQUIRED', 'This route only accepts WebSocket connections: send a WebSocket upgrade request', 426),
  FST_RT_ORIGIN_FORBIDDEN: createError('FST_RT_ORIGIN_FORBIDDEN', 'Origin %s is not allowed', 403),
  FST_RT_UNAUTHORIZED: createError('FST_RT_UNAUTHORIZED', 'A token is required: an Authorization: Bearer header, the access_token subprotocol, a cookie or the query', 401),
  FST_RT_TOKEN_REFUSED: createError('FST_RT_TOKEN_REFUSED', 'The token was refused', 403),
  FST_RT_TOO_MANY_CONNECTIONS: createError('FST_RT_TOO_MANY_CONNECTIONS', 'The server holds its maximum of %s connections; try again later', 503),
  FST_RT_TOO_MANY_CONNECTIONS_FROM_IP: createError('FST_RT_TOO_MANY_CONNECTIONS_FROM_IP', 'This address holds its maximum of %s connections', 429),
  FST_RT_NOT_WEBSOCKET_ROUTE: createError('FST_RT_NOT_WEBSOCKET_ROUTE', 'This route does not accept WebSocket connections', 404),
  FST_RT_NO_SUBPROTOCOL: createError('FST_RT_NO_SUBPROTOCOL', 'None of the %s offered subprotocols is supported; this route supports: %s', 400),

  // ---- connection API misuse: thrown to the handler, the connection is unaffected ----
  FST_RT_CONCURRENT_RECEIVE: createError('FST_RT_CONCURRENT_RECEIVE', 'Concurrent call to receive() is not allowed'),
  FST_RT_RECEIVE_AFTER_CLOSE: createError('FST_RT_RECEIVE_AFTER_CLOSE', 'receive() was called %s times after the connection closed'),
  FST_RT_RECEIVE_TIMEOUT: createError('FST_RT_RECEIVE_TIMEOUT', 'No message received within %s ms'),
  FST_RT_MESSAGE_TYPE: createError('FST_RT_MESSAGE_TYPE', 'Expected a %s message, received %s', 500, TypeError),
  FST_RT_INVALID_JSON: createError('FST_RT_INVALID_JSON', 'Received text is not valid JSON: %s', 500, SyntaxError),
  FST_RT_NOT_SERIALIZABLE: createError('FST_RT_NOT_SERIALIZABLE', 'Value cannot be sent as JSON: %s', 500, TypeError),
  FST_RT_CONNECTION_CLOSED: createError('FST_RT_CONNECTION_CLOSED', 'Cannot %s: the connection is closing or closed'),
  FST_RT_CONTROL_PAYLOAD_TOO_LARGE: createError('FST_RT_CONTROL_PAYLOAD_TOO_LARGE', 'A control frame payload is %s bytes; the limit is 125', 500, RangeError),
  FST_RT_INVALID_CLOSE_CODE: createError('FST_RT_INVALID_CLOSE_CODE', 'Close code %s cannot be sent: use 1000-1003, 1007-1014 or 3000-4999', 500, RangeError),
  FST_RT_SLOW_CONSUMER: withCloseCode(createError('FST_RT_SLOW_CONSUMER', 'Cannot %s: more than %s bytes are waiting to be sent; the connection is closed with 4008'), 4008),
  FST_RT_CLOSE_REASON_TOO_LONG: createError('FST_RT_CLOSE_REASON_TOO_LONG', 'A close reason is %s bytes; the limit is 123', 500, RangeError),

  // ---- message contracts: thrown at registration ----
  FST_RT_INVALID_CONTRACT: createError('FST_RT_INVALID_CONTRACT', 'Invalid message contract: %s', 500, TypeError),
  FST_RT_INVALID_HANDLERS: createError('FST_RT_INVALID_HANDLERS', 'Invalid message handlers: %s', 500, TypeError),

  // ---- AsyncAPI documents: thrown by app.realtime.asyncapi() and at registration ----
  FST_RT_ASYNCAPI_UNSUPPORTED: createError('FST_RT_ASYNCAPI_UNSUPPORTED', 'The AsyncAPI document cannot describe %s: %s', 500, TypeError),
  FST_RT_ASYNCAPI_PAGE_PEER: createError('FST_RT_ASYNCAPI_PAGE_PEER', 'The AsyncAPI page needs the optional peer dependency @asyncapi/react-component: install it, or set asyncapi.page to false (%s)', 500),

  // ---- message contracts: sent to the client as { type: 'error', data: { code, message, errors } } ----
  FST_RT_MESSAGE_NOT_JSON: createError('FST_RT_MESSAGE_NOT_JSON', 'The message is not valid JSON'),
  FST_RT_MESSAGE_TOO_DEEP: createError('FST_RT_MESSAGE_TOO_DEEP', 'The message nests objects and arrays more than %s levels deep in its data'),
  FST_RT_MESSAGE_NOT_ENVELOPE: createError('FST_RT_MESSAGE_NOT_ENVELOPE', 'A message must be a JSON object { "type": string, "data": ..., "id"?: string | number }: %s'),
  FST_RT_UNKNOWN_MESSAGE_TYPE: createError('FST_RT_UNKNOWN_MESSAGE_TYPE', 'Unknown message type %s'),
  FST_RT_INVALID_MESSAGE_DATA: createError('FST_RT_INVALID_MESSAGE_DATA', 'Invalid data for message type %s'),
  FST_RT_BINARY_NOT_ACCEPTED: createError('FST_RT_BINARY_NOT_ACCEPTED', 'This route does not accept binary messages'),
  FST_RT_RATE_LIMITED: createError('FST_RT_RATE_LIMITED', 'Over the rate limit of %s per second (bursts of %s): this message was dropped'),
  FST_RT_HANDLER_FAILED: createError('FST_RT_HANDLER_FAILED', 'Internal error while handling message type %s'),
  FST_RT_REQUEST_TIMEOUT: createError('FST_RT_REQUEST_TIMEOUT', 'The request of type %s was not answered within %s ms'),

  // ---- rooms: sent as error envelopes (client joins) or thrown to server code ----
  FST_RT_INVALID_ROOM: createError('FST_RT_INVALID_ROOM', 'Invalid room name: %s', 400, TypeError),
  FST_RT_INVALID_HISTORY_QUERY: createError('FST_RT_INVALID_HISTORY_QUERY', 'Invalid history query: %s', 400, TypeError),
  FST_RT_INVALID_DISCONNECT: createError('FST_RT_INVALID_DISCONNECT', 'Invalid disconnect: %s', 500, TypeError),
  FST_RT_INVALID_USER_ID: createError('FST_RT_INVALID_USER_ID', 'Invalid user id: %s', 400, TypeError),
  FST_RT_JOIN_FORBIDDEN: createError('FST_RT_JOIN_FORBIDDEN', 'Joining room %s is not allowed', 403),
  FST_RT_TOO_MANY_ROOMS: createError('FST_RT_TOO_MANY_ROOMS', 'Cannot join one more room: %s'),

  // ---- broker kit: thrown by the conformance suite (fastify-realtime/testing) ----
  FST_RT_BROKER_RULE: createError('FST_RT_BROKER_RULE', 'The broker breaks rule %s: %s'),

  // ---- the test client: thrown by connectTest() and its helpers (fastify-realtime/testing) ----
  FST_RT_TEST_TIMEOUT: createError('FST_RT_TEST_TIMEOUT', 'The test client waited for %s for %s ms; received and not taken meanwhile: %s'),
  FST_RT_TEST_CONNECT_FAILED: createError('FST_RT_TEST_CONNECT_FAILED', 'The test client could not connect: %s'),

  // ---- message contracts: thrown to the server code that sends ----
  FST_RT_UNKNOWN_OUTGOING_TYPE: createError('FST_RT_UNKNOWN_OUTGOING_TYPE', 'The contract has no server message type %s', 500, TypeError),
  FST_RT_INVALID_OUTGOING: createError('FST_RT_INVALID_OUTGOING', 'Outgoing %s does not match its schema: %s', 500, TypeError),

  // ---- connection failures: the connection's exception, paired with its close code ----
  FST_RT_HEARTBEAT_TIMEOUT: withCloseCode(createError('FST_RT_HEARTBEAT_TIMEOUT', 'No data received within %s ms after a ping'), 1006),
  FST_RT_CLOSE_TIMEOUT: withCloseCode(createError('FST_RT_CLOSE_TIMEOUT', 'The peer did not complete the close handshake within %s ms'), 1006),
  FST_RT_CONNECTION_LOST: withCloseCode(createError('FST_RT_CONNECTION_LOST', 'The connection was lost without a close frame'), 1006),
  FST_RT_PROTOCOL_ERROR: withCloseCode(createError('FST_RT_PROTOCOL_ERROR', 'WebSocket protocol error (%s): %s'), 1002)
} as const

export type RealtimeErrorCode = keyof typeof errors

/** The close code paired with an error code, if it has one. */
export function closeCodeOf (code: string): number | undefined {
  return closeCodes.get(code)
}
