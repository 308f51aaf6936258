// Private state lives under these symbols, never under string keys on sockets or raw requests.
export const kRouteSettings = Symbol('fastify-realtime.route-settings')
export const kProtocol = Symbol('fastify-realtime.protocol')
export const kConnection = Symbol('fastify-realtime.connection')
export const kPeerClose = Symbol('fastify-realtime.peer-close')
export const kDeferPeerClose = Symbol('fastify-realtime.defer-peer-close')
export const kState = Symbol('fastify-realtime.state')
export const kOfferedExtensions = Symbol('fastify-realtime.offered-extensions')
