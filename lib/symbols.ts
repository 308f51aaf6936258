// Private state lives under these symbols, never under string keys on sockets or raw requests.
export const kProtocol = Symbol('fastify-realtime.protocol')
export const kConnection = Symbol('fastify-realtime.connection')
export const kPeerClose = Symbol('fastify-realtime.peer-close')
export const kOfferedExtensions = Symbol('fastify-realtime.offered-extensions')
/** What the plugin tracks of a socket from accept to upgrade (on the socket and the upgrade request). */
export const kHandshake = Symbol('fastify-realtime.handshake')
/** In a route's config: @fastify/websocket would upgrade it without a WebSocket handler. */
export const kPlainRoute = Symbol('fastify-realtime.plain-route')
/** In a realtime route's config: the ws server of the route's settings, which upgrades its requests. */
export const kRouteServer = Symbol('fastify-realtime.route-server')
/** On a contractHandler() handler: its contract and settings, for the AsyncAPI document. */
export const kContractRoute = Symbol('fastify-realtime.contract-route')
/** On a tokenAuth() hook: where it looks for the token, for the AsyncAPI document. */
export const kTokenAuth = Symbol('fastify-realtime.token-auth')
/** On an `app.injectWS()` upgrade request, which has no socket: the stream it was upgraded on. */
export const kUpgradeSocket = Symbol('fastify-realtime.upgrade-socket')
