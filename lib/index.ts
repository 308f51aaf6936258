import type {
  ContextConfigDefault, FastifyBaseLogger, FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest, FastifySchema,
  FastifyTypeProvider, FastifyTypeProviderDefault, HookHandlerDoneFunction, RawReplyDefaultExpression, RawRequestDefaultExpression,
  RawServerBase, RawServerDefault, RouteGenericInterface
} from 'fastify'
import fp from 'fastify-plugin'
import websocket, { type WebsocketPluginOptions } from '@fastify/websocket'
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { ServerOptions } from 'ws'
import { RealtimeConnection } from './connection/connection.js'
import { RealtimeSocket } from './connection/socket.js'
import { backstopCloseTimeout } from './connection/ws-internals.js'
import { DeadlineClock } from './connection/timers.js'
import { errors } from './errors.js'
import { defaultSettings, normalizeOptions, type RealtimePluginOptions, type RealtimeRouteOptions } from './options.js'
import { convertRealtimeRoute, type RouteHost } from './route.js'
import { kOfferedExtensions, kProtocol } from './symbols.js'

export { RealtimeConnection } from './connection/connection.js'
export type { BinaryData, CloseOptions, IteratedMessage, ReceiveOptions, SendOptions } from './connection/connection.js'
export type { WSMessage, WSMessageType } from './connection/messages.js'
export { CloseCode, RECONNECT_RANGE, TERMINAL_RANGE } from './close-codes.js'
export { errors } from './errors.js'
export { defineContract } from './messages/contract.js'
export type {
  ClientData, ClientMessageSpec, ClientType, Contract, ContractDefinition, Envelope, ErrorEnvelope, ReplyData, ServerData, ServerType
} from './messages/contract.js'
export { contractHandler } from './messages/router.js'
export type { ContractOptions, MessageContext, MessageHandler, MessageHandlers, RequestContext } from './messages/router.js'
export { MessageError } from './messages/message-error.js'
export type { RealtimeErrorCode } from './errors.js'
export type { CompressOptions, OriginCheck, OriginRule, RealtimePluginOptions, RealtimeRouteOptions } from './options.js'

/** A realtime route handler: gets the connection and the Fastify request; the connection closes with 1000 when it returns. */
export type RealtimeHandler<
  RawServer extends RawServerBase = RawServerDefault,
  RawRequest extends RawRequestDefaultExpression<RawServer> = RawRequestDefaultExpression<RawServer>,
  RouteGeneric extends RouteGenericInterface = RouteGenericInterface,
  ContextConfig = ContextConfigDefault,
  SchemaCompiler extends FastifySchema = FastifySchema,
  TypeProvider extends FastifyTypeProvider = FastifyTypeProviderDefault,
  Logger extends FastifyBaseLogger = FastifyBaseLogger
> = (
  this: FastifyInstance<RawServer, RawRequest, RawReplyDefaultExpression<RawServer>, Logger, TypeProvider>,
  connection: RealtimeConnection,
  request: FastifyRequest<RouteGeneric, RawServer, RawRequest, SchemaCompiler, TypeProvider, ContextConfig, Logger>
) => unknown

declare module 'fastify' {
  interface RouteShorthandOptions<
    // eslint-disable-next-line @typescript-eslint/no-unused-vars
    RawServer extends RawServerBase = RawServerDefault
  > {
    /** Makes this GET route a WebSocket route: `true`, or options overriding the plugin's. */
    realtime?: boolean | RealtimeRouteOptions
  }

  interface RouteShorthandMethod<
    RawServer extends RawServerBase = RawServerDefault,
    RawRequest extends RawRequestDefaultExpression<RawServer> = RawRequestDefaultExpression<RawServer>,
    RawReply extends RawReplyDefaultExpression<RawServer> = RawReplyDefaultExpression<RawServer>,
    TypeProvider extends FastifyTypeProvider = FastifyTypeProviderDefault,
    Logger extends FastifyBaseLogger = FastifyBaseLogger
  > {
    <RouteGeneric extends RouteGenericInterface = RouteGenericInterface, ContextConfig = ContextConfigDefault,
      const SchemaCompiler extends FastifySchema = FastifySchema>(
      path: string,
      opts: RouteShorthandOptions<RawServer, RawRequest, RawReply, RouteGeneric, ContextConfig, SchemaCompiler, TypeProvider, Logger> & {
        realtime: true | RealtimeRouteOptions
      },
      handler: RealtimeHandler<RawServer, RawRequest, RouteGeneric, ContextConfig, SchemaCompiler, TypeProvider, Logger>
    ): FastifyInstance<RawServer, RawRequest, RawReply, Logger, TypeProvider>
  }

  interface FastifyInstance<RawServer, RawRequest, RawReply, Logger, TypeProvider> {
    route<
      RouteGeneric extends RouteGenericInterface = RouteGenericInterface,
      ContextConfig = ContextConfigDefault,
      const SchemaCompiler extends FastifySchema = FastifySchema
    >(
      opts: Omit<RouteOptions<RawServer, RawRequest, RawReply, RouteGeneric, ContextConfig, SchemaCompiler, TypeProvider, Logger>, 'handler' | 'realtime'> & {
        realtime: true | RealtimeRouteOptions
        handler: RealtimeHandler<RawServer, RawRequest, RouteGeneric, ContextConfig, SchemaCompiler, TypeProvider, Logger>
      }
    ): FastifyInstance<RawServer, RawRequest, RawReply, Logger, TypeProvider>
  }
}

// Keys Fastify itself reads from register() options; they are not ours to check.
const REGISTER_KEYS = new Set(['prefix', 'logLevel', 'logSerializers'])

type RawWithHandshake = IncomingMessage & { [kProtocol]?: string, [kOfferedExtensions]?: string }

/**
 * ws negotiates any extension header it sees; each realtime route puts back only the offer it
 * accepts (see handshake/hook.ts), so every other upgrade goes uncompressed.
 */
function holdExtensionOffer (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction): void {
  const raw = request.raw as RawWithHandshake
  const offered = raw.headers['sec-websocket-extensions']
  if (offered !== undefined) {
    raw[kOfferedExtensions] = offered
    delete raw.headers['sec-websocket-extensions']
  }
  done()
}

// ws calls this only when the client offered subprotocols; the route's hook already chose one.
function selectProtocol (_offered: Set<string>, request: IncomingMessage): string | false {
  return (request as RawWithHandshake)[kProtocol] ?? false
}

/**
 * While closing, Fastify answers an upgrade request with 503 synchronously, on a socket that the
 * HTTP server handed over with the 'upgrade' event and no longer manages: nobody would end it, and
 * `app.close()` would wait for it forever. This listener runs right after @fastify/websocket's.
 */
function endAnsweredUpgrade (_request: IncomingMessage, socket: Duplex): void {
  const net = socket as Socket
  if (net.bytesWritten > 0 || net.writableLength > 0) net.end(() => { net.destroy() })
}

function logSocketError (error: Error, _socket: unknown, request: FastifyRequest): void {
  // The connection reports socket errors as its exception; this only keeps a trace.
  request.log.debug({ err: error }, 'realtime: socket error')
}

const fastifyRealtime: FastifyPluginAsync<RealtimePluginOptions> = async (fastify, options) => {
  const own = Object.fromEntries(Object.entries(options).filter(([key]) => !REGISTER_KEYS.has(key)))
  const settings = normalizeOptions(own, defaultSettings)
  const host: RouteHost = {
    settings,
    clock: new DeadlineClock(),
    connections: new Set<RealtimeConnection>()
  }

  // Added before @fastify/websocket registers its own onRoute hook, so it sees the converted route.
  fastify.addHook('onRoute', (routeOptions) => { convertRealtimeRoute(routeOptions, host) })

  await fastify.register(websocket, {
    options: {
      WebSocket: RealtimeSocket,
      maxPayload: settings.maxMsgSize,
      clientTracking: false,
      autoPong: true,
      closeTimeout: backstopCloseTimeout(settings.closeTimeout),
      handleProtocols: selectProtocol,
      perMessageDeflate: {
        threshold: 0,
        zlibDeflateOptions: { level: settings.compress?.level ?? 1, memLevel: settings.compress?.memLevel ?? 8 }
      }
      // closeTimeout is newer than @types/ws. @fastify/websocket types `WebSocket` as the CommonJS module with its statics; ws documents a subclass.
    } satisfies Omit<ServerOptions, 'WebSocket'> & { WebSocket: typeof RealtimeSocket, closeTimeout: number } as unknown as WebsocketPluginOptions['options'],
    errorHandler: logSocketError,
    preClose: async function closeConnections (this: FastifyInstance) {
      // Fastify already answers new requests, upgrades included, with 503 (see endAnsweredUpgrade).
      await Promise.all([...host.connections].map(async (connection) => {
        await connection.close({ code: 1001, reason: 'Server shutting down' })
        await connection.whenClosed()
      }))
      await new Promise<void>((resolve) => { this.websocketServer.close(() => { resolve() }) })
    }
  })
  fastify.addHook('onRequest', holdExtensionOffer)
  fastify.server.on('upgrade', endAnsweredUpgrade)
  fastify.addHook('onClose', (instance, done) => {
    instance.server.removeListener('upgrade', endAnsweredUpgrade)
    done()
  })
}

/** The fastify-realtime plugin. */
export const realtime = fp(fastifyRealtime, { fastify: '5.x', name: 'fastify-realtime' })
export default realtime
export { errors as realtimeErrors }
