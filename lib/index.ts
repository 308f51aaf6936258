import type {
  ContextConfigDefault, FastifyBaseLogger, FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest, FastifySchema,
  FastifyTypeProvider, FastifyTypeProviderDefault, RawReplyDefaultExpression, RawRequestDefaultExpression,
  RawServerBase, RawServerDefault, RouteGenericInterface, RouteOptions as FastifyRouteOptions
} from 'fastify'
import fp from 'fastify-plugin'
import websocket, { type WebsocketPluginOptions } from '@fastify/websocket'
import { ServerResponse, type IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { WebSocketServer } from 'ws'
import type { RealtimeConnection } from './connection/connection.js'
import type { RealtimeRequest } from './connection/request.js'
import { bridgeUpgrades, markUpgrade } from './connection/ws-internals.js'
import { WsServers, wsServerOptions } from './connection/ws-servers.js'
import { DeadlineClock } from './connection/timers.js'
import { errors } from './errors.js'
import type { RealtimePluginOptions, RealtimeRouteOptions } from './options/route.js'
import { pluginSettings } from './options/plugin.js'
import { convertRealtimeRoute, markPlainRoute } from './route.js'
import type { PluginContext } from './context.js'
import { kOfferedExtensions, kPlainRoute, kRouteServer } from './symbols.js'
import { destroyOnError, Handshakes, watchServer } from './handshake/handshakes.js'
import { ConnectionSlots } from './handshake/slots.js'
import { redactUpgradeRequests, redactUrl, requestSerializerOf } from './handshake/redaction.js'
import { CloseCode } from './close-codes.js'
import { createMetrics, prometheusText } from './metrics.js'
import type {} from './handshake/token-auth.js'
import type { Broker, HistoryLimits } from './hub/broker.js'
import { MemoryPresence, type PresenceStore } from './hub/presence.js'
import { MemoryBroker } from './hub/memory.js'
import { Hub } from './hub/hub.js'
import { Registry } from './hub/registry.js'
import { createDecorator, type RealtimeDecorator } from './decorator.js'
import { asyncApiDocument } from './asyncapi/document.js'
import { serveAsyncApi, type AsyncApiServeOptions } from './asyncapi/serve.js'

export { RealtimeConnection } from './connection/connection.js'
export type { BinaryData, CloseOptions, IteratedMessage, ReceiveJsonOptions, ReceiveOptions, SendOptions } from './connection/connection.js'
export type { WSMessage, WSMessageType } from './connection/messages.js'
export type { DroppedRequestMember, RealtimeRequest } from './connection/request.js'
export { CloseCode, RECONNECT_RANGE, TERMINAL_RANGE, shouldReconnect } from './close-codes.js'
export { errors } from './errors.js'
export { defineContract } from './messages/contract.js'
export type {
  ClientData, ClientMessageSpec, ClientType, Contract, ContractDefinition, Envelope, ErrorEnvelope, PresenceMeta, ReplyData, ServerData,
  ServerMessage, ServerType
} from './messages/contract.js'
export { contractHandler } from './messages/contract-handler.js'
export type { ContractRouteHandler } from './messages/contract-handler.js'
export type { ContractOptions, MessageContext, MessageHandler, MessageHandlers, RequestContext, RouteRequest, UserIdOf } from './messages/types.js'
export type { HistoryStamp, RoomHistory } from './messages/history.js'
export { MessageError } from './messages/message-error.js'
export type { AuthOptions, ClientRoomsOptions, RateLimitOptions, RoomsApi } from './messages/types.js'
export { MemoryBroker } from './hub/memory.js'
export type { MemoryBrokerOptions } from './hub/memory.js'
export { roomEnvelope, defaultHistoryLimits } from './hub/broker.js'
export type { Broker, BrokerEvents, HistoryLimits, HistoryPage, HistoryQuery, Position, PublishOptions, RoomMessage } from './hub/broker.js'
export { MemoryPresence } from './hub/presence.js'
export type { PresenceEntry, PresenceStore } from './hub/presence.js'
export { OrderedDelivery } from './hub/ordered-delivery.js'
export type { ReadRoom } from './hub/ordered-delivery.js'
export type { Recovery } from './hub/recovery.js'
export { SLOW_CONSUMER_CLOSE } from './hub/hub.js'
export type { HistoryRange } from './hub/history-query.js'
export type { DisconnectTarget } from './hub/control.js'
export type { HubSettings, HubStats, JoinOptions, JoinResult, RoomSendOptions } from './hub/hub.js'
export type { ConnectionInfo } from './hub/registry.js'
export type { RealtimeDecorator, RoomSnapshot } from './decorator.js'
export type { AsyncApiDocument, AsyncApiOptions, AsyncApiServer } from './asyncapi/document.js'
export type { AsyncApiServeOptions } from './asyncapi/serve.js'
export type { RealtimeMetrics } from './metrics.js'
export { redactUrl } from './handshake/redaction.js'
export { requireUser, tokenAuth } from './handshake/token-auth.js'
export type { TokenAuthOptions, TokenSource } from './handshake/token-auth.js'
export { roomHistoryRoute } from './history-route.js'
export { roomSnapshotRoute } from './snapshot-route.js'
export type { SnapshotQuerystring, SnapshotRouteOptions } from './snapshot-route.js'
export type { HistoryQuerystring, HistoryResponse, HistoryRouteOptions } from './history-route.js'
export type { RealtimeErrorCode } from './errors.js'
export type { CompressOptions, OriginCheck, OriginRule, RealtimePluginOptions, RealtimeRouteOptions } from './options/route.js'

/**
 * A realtime route handler: gets the connection and what it keeps of the request (`RealtimeRequest`,
 * the same object as `connection.request`); the connection closes with 1000 when it returns.
 */
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
  request: RealtimeRequest<RouteGeneric, RawServer, RawRequest, SchemaCompiler, TypeProvider, ContextConfig, Logger>
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
    /** Rooms, presence and history from outside a handler (an HTTP route, a job). */
    realtime: RealtimeDecorator

    route<
      RouteGeneric extends RouteGenericInterface = RouteGenericInterface,
      ContextConfig = ContextConfigDefault,
      const SchemaCompiler extends FastifySchema = FastifySchema
    >(
      opts: Omit<FastifyRouteOptions<RawServer, RawRequest, RawReply, RouteGeneric, ContextConfig, SchemaCompiler, TypeProvider, Logger>, 'handler' | 'realtime'> & {
        realtime: true | RealtimeRouteOptions
        handler: RealtimeHandler<RawServer, RawRequest, RouteGeneric, ContextConfig, SchemaCompiler, TypeProvider, Logger>
      }
    ): FastifyInstance<RawServer, RawRequest, RawReply, Logger, TypeProvider>
  }
}

/** Options of the plugin beyond the route defaults: where rooms live and their bounds. */
export interface RealtimeHubOptions {
  /** Carries rooms' messages and history; a MemoryBroker (one process) when not given. Closed with the app. */
  broker?: Broker
  /**
   * Who is in which room. Closed with the app.
   * @default the broker's own store (`RedisBroker`'s is on Redis), else a MemoryPresence (one process)
   */
  presence?: PresenceStore
  /** History bounds of the default MemoryBroker (a broker given in `broker` has its own). @default { size: 100, ttlMs: 300000 } */
  history?: Partial<HistoryLimits>
  /** Longest room name, in characters. @default 128 */
  maxRoomNameLength?: number
  /** Unsent bytes above which a room member is closed with 4008 (slow consumer). @default 1048576 */
  slowConsumerBytes?: number
  /** Rooms one connection may be in at once (its route's and user's internal rooms do not count); one more join is refused with FST_RT_TOO_MANY_ROOMS. @default 100 */
  maxRoomsPerConnection?: number
  /** Rooms with members on this instance at once; a join that would open one more is refused with FST_RT_TOO_MANY_ROOMS. @default 100000 */
  maxRooms?: number
  /**
   * Connections in all: open ones, and handshakes from the plugin's limit check (before the route's
   * own hooks) until their socket closes; more handshakes get 503. @default 10000
   */
  maxConnections?: number
  /** The same per client address (`request.ip`, so trustProxy-aware); more get 429. @default 100 */
  maxConnectionsPerIp?: number
  /**
   * In ms, from an HTTP/1 connection's accept (https: once TLS is up) to its first request head and,
   * if that request is an upgrade, to the upgrade, the app's hooks included; the socket is then
   * dropped without an answer. This bounds a plain HTTP client's first request head too. Later
   * requests on a keep-alive connection are bounded by Node's `headersTimeout` until their head is
   * complete, and an upgrade among them by this from its head. HTTP/2 servers are not watched.
   * @default 10000
   */
  handshakeTimeout?: number
  /**
   * Query parameters whose values are replaced by `[redacted]` in the request log line of realtime
   * routes and of every upgrade request, and in the URL of a 404 upgrade.
   * @default token, access_token, auth, authorization, key, api_key, apikey, jwt, password, secret, signature, sig
   */
  redactQuery?: readonly string[]
  /** Serve the metrics in Prometheus' text format at this path (a GET route). @default undefined */
  metricsRoute?: string
  /**
   * Serve the AsyncAPI 3.0 document of the contract routes as JSON and YAML (`<route>.json`,
   * `<route>.yaml`) and an HTML page of it (`<route>`, needs the optional peer `@asyncapi/react-component`).
   * @default undefined
   */
  asyncapi?: boolean | AsyncApiServeOptions
}

type RawWithHandshake = IncomingMessage & { [kOfferedExtensions]?: string }

/**
 * ws negotiates any extension header it sees; each realtime route puts back only the offer it
 * accepts (see handshake/hook.ts), so every other upgrade goes uncompressed.
 */
function holdExtensionOffer (request: FastifyRequest): void {
  const raw = request.raw as RawWithHandshake
  const offered = raw.headers['sec-websocket-extensions']
  if (offered !== undefined) {
    raw[kOfferedExtensions] = offered
    delete raw.headers['sec-websocket-extensions']
  }
}

const fastifyRealtime: FastifyPluginAsync<RealtimePluginOptions & RealtimeHubOptions> = async (fastify, options) => {
  const checked = pluginSettings(options as Record<string, unknown>)
  const { route: settings, guard, metricsRoute } = checked
  const metrics = createMetrics()
  const broker: Broker = checked.broker ?? new MemoryBroker({ history: checked.history })
  const hub = new Hub(broker, checked.hub, fastify.log, metrics, checked.presence ?? broker.presence ?? new MemoryPresence())
  const registry = new Registry(hub, fastify.log)
  const clock = new DeadlineClock()
  const handshakes = new Handshakes(clock, guard.handshakeTimeout, new ConnectionSlots(guard, metrics), metrics, fastify.log)
  const plugin: PluginContext = {
    settings,
    guard,
    hub,
    registry,
    clock,
    handshakes,
    requestSerializer: requestSerializerOf(fastify.log),
    connections: new Set<RealtimeConnection>(),
    metrics,
    wsServers: new WsServers(),
    contractRoutes: [],
    shutdown: { code: CloseCode.GOING_AWAY, reason: 'Server shutting down' }
  }
  fastify.decorateRequest('realtimeUser', null)
  fastify.decorate('realtime', createDecorator(hub, registry, metrics, () => {
    plugin.shutdown = { code: CloseCode.SERVICE_RESTART, reason: 'Server restarting' }
  }, (asyncapiOptions) => asyncApiDocument(plugin.contractRoutes, asyncapiOptions)))

  // Added before @fastify/websocket registers its own onRoute hook, so it sees the converted route.
  fastify.addHook('onRoute', (routeOptions) => {
    markPlainRoute(routeOptions)
    convertRealtimeRoute(routeOptions, plugin)
  })
  redactUpgradeRequests(fastify.log, guard.redactQuery)

  // @fastify/websocket's own server runs with the plugin's settings; each realtime route is upgraded
  // by the ws server of its own settings (connection/ws-servers.ts), through the bridge below.
  const bridgeOptions: Partial<ReturnType<typeof wsServerOptions>> = wsServerOptions(settings)
  // @fastify/websocket sets noServer itself and refuses it as an option.
  delete bridgeOptions.noServer
  await fastify.register(websocket, {
    // @fastify/websocket types `WebSocket` as the CommonJS module with its statics; ws documents a subclass.
    options: bridgeOptions as unknown as WebsocketPluginOptions['options'],
    preClose: async function closeConnections (this: FastifyInstance) {
      // Fastify already answers new requests, upgrades included, with 503 (see Handshakes.answered).
      await Promise.all([...plugin.connections].map(async (connection) => {
        await connection.close(plugin.shutdown)
        await connection.whenClosed()
      }))
      await new Promise<void>((resolve) => { this.websocketServer.close(() => { resolve() }) })
      await plugin.wsServers.close()
    }
  })
  bridgeUpgrades(fastify.websocketServer)
  // After @fastify/websocket's registration: its 'upgrade' listener goes between the plugin's two.
  const unwatch = watchServer(fastify.server, handshakes, (raw, socket) => {
    // As @fastify/websocket routes an upgrade: the socket guarded, a response on it, Fastify's router.
    socket.on('error', destroyOnError)
    const response = new ServerResponse(raw)
    response.assignSocket(socket as Socket)
    fastify.routing(raw, response)
  })
  fastify.websocketServer.on('connection', (_socket: unknown, raw: IncomingMessage) => { handshakes.upgraded(raw) })
  // One hook for every upgrade request, before the app's later ones: ws is kept from negotiating
  // compression the route has not accepted, and an upgrade that no WebSocket handler would take is
  // answered before @fastify/websocket upgrades it only to close it.
  fastify.addHook('onRequest', (request, _reply, done) => {
    if (request.ws) {
      // app.injectWS() sends the version as a number, which ws refuses with 400 from 8.23.1 on.
      const headers = request.raw.headers as Record<string, unknown>
      if (typeof headers['sec-websocket-version'] === 'number') headers['sec-websocket-version'] = String(headers['sec-websocket-version'])
      holdExtensionOffer(request)
      handshakes.routed(request)
      // Read once: Fastify builds a new frozen routeOptions object on every read.
      const config = request.routeOptions.config as { [kRouteServer]?: WebSocketServer, [kPlainRoute]?: true }
      const server = config[kRouteServer]
      if (server !== undefined) markUpgrade(request.raw, server)
      if (config[kPlainRoute] === true) {
        done(new errors.FST_RT_NOT_WEBSOCKET_ROUTE())
        return
      }
      // Fastify's 404 handler logs and answers the URL, which nothing else of a 404 upgrade needs:
      // its query secrets go first.
      if (request.is404) request.raw.url = redactUrl(request.url, guard.redactQuery)
    }
    done()
  })
  if (checked.asyncapi !== null) serveAsyncApi(fastify, plugin.contractRoutes, checked.asyncapi)
  if (metricsRoute !== null) {
    fastify.route({
      method: 'GET',
      url: metricsRoute,
      handler: async (_request: FastifyRequest, reply: FastifyReply) => {
        await reply.type('text/plain; version=0.0.4').send(prometheusText(metrics, hub.stats))
      }
    })
  }
  fastify.addHook('onClose', async (instance) => {
    unwatch()
    // Every connection has closed by now (preClose); their sessions may still be leaving rooms,
    // whose leave notices and presence removal need the broker: waited for, within closeTimeout.
    await registry.whenEmpty(settings.closeTimeout)
    // Last: nothing publishes any more. A broker closes its own presence store.
    if (hub.presenceStore !== broker.presence) await hub.presenceStore.close()
    await broker.close()
  })
}

/** The fastify-realtime plugin. Its fastify range is package.json's `peerDependencies.fastify` (test/package.test.ts). */
export const realtime = fp(fastifyRealtime, { fastify: '^5.0.0', name: 'fastify-realtime' })
export default realtime
export { errors as realtimeErrors }
