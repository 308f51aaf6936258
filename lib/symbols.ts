// Private state lives under these symbols, never under string keys on sockets or raw requests.
export const kProtocol = Symbol('fastify-realtime.protocol')
export const kConnection = Symbol('fastify-realtime.connection')
export const kPeerClose = Symbol('fastify-realtime.peer-close')
export const kOfferedExtensions = Symbol('fastify-realtime.offered-extensions')
/** What the plugin tracks of a socket from accept to upgrade (on the socket and the upgrade request). */
export const kHandshake = Symbol('fastify-realtime.handshake')
/** In a route's config: @fastify/websocket would upgrade it without a WebSocket handler. */
export const kPlainRoute = Symbol('fastify-realtime.plain-route')
