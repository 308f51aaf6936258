// Private state lives under these symbols, never under string keys on sockets or raw requests.
export const kProtocol = Symbol('fastify-realtime.protocol')
export const kConnection = Symbol('fastify-realtime.connection')
export const kPeerClose = Symbol('fastify-realtime.peer-close')
export const kOfferedExtensions = Symbol('fastify-realtime.offered-extensions')
export const kHub = Symbol('fastify-realtime.hub')
