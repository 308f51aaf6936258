import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import { errors } from './errors.js'
import { normalizeOptions } from './options/route.js'
import type { PluginContext } from './context.js'
import { RealtimeConnection } from './connection/connection.js'
import type { RealtimeSocket } from './connection/socket.js'
import { bridged, releaseUpgrade, upgradeSocket } from './connection/ws-internals.js'
import { realtimeRequest, type DefaultRealtimeRequest } from './connection/request.js'
import { WsServers } from './connection/ws-servers.js'
import { handshakeHook } from './handshake/hook.js'
import { redactingSerializer } from './handshake/redaction.js'
import { checkHandshake, looksLikeHandshake } from './handshake/validate.js'
import { kContractRoute, kPlainRoute, kRouteServer, kTokenAuth } from './symbols.js'
import type { ContractRouteTag } from './messages/contract-handler.js'
import type { SessionEnd } from './messages/session.js'
import type { TokenAuthSource } from './asyncapi/document.js'

export type RealtimeHandlerFunction = (this: FastifyInstance, connection: RealtimeConnection, request: DefaultRealtimeRequest) => unknown

type LogSerializers = NonNullable<RouteOptions['logSerializers']>

/**
 * Marks a route @fastify/websocket would upgrade without a WebSocket handler (a plain route, or a
 * GET route's HEAD), so the plugin refuses upgrades to it with 404 before they happen.
 */
export function markPlainRoute (routeOptions: RouteOptions & { realtime?: unknown }): void {
  const realtime = routeOptions.realtime !== undefined && routeOptions.realtime !== false
  const methods = Array.isArray(routeOptions.method) ? routeOptions.method : [routeOptions.method]
  // @fastify/websocket's own test: a truthy `websocket` or `wsHandler`.
  const upgradable = (realtime || Boolean(routeOptions.websocket) || Boolean(routeOptions.wsHandler)) && methods.includes('GET')
  if (!upgradable) routeOptions.config = { ...routeOptions.config, [kPlainRoute]: true }
}

/** The route's serializers with `req` (the route's own, or the app's) shown a redacted URL. */
function redactedSerializers (routeOptions: RouteOptions, plugin: PluginContext): LogSerializers {
  const own = routeOptions.logSerializers
  const serialize = (own?.req as ((request: object) => unknown) | undefined) ?? plugin.requestSerializer
  // Fastify has already chained the plugin contexts' serializers through this object's prototype.
  return Object.assign(Object.create(own ?? null) as LogSerializers, { req: redactingSerializer(serialize, plugin.guard.redactQuery) })
}

type Hooks = NonNullable<RouteOptions['onRequest']>
type Hook = Extract<Hooks, (...args: never[]) => unknown>

function hookList (hooks: Hooks | undefined): Hook[] {
  if (hooks === undefined) return []
  return Array.isArray(hooks) ? hooks as Hook[] : [hooks as Hook]
}

/** A plain HTTP request to a WebSocket route: 400 for a botched handshake, else 426. */
function httpFallback (request: FastifyRequest, reply: FastifyReply): void {
  if (looksLikeHandshake(request.headers)) {
    const problem = checkHandshake(request.headers)
    // Node only upgrades with `Connection: upgrade`, so a well-formed handshake cannot land here.
    throw new errors.FST_RT_BAD_HANDSHAKE(problem?.message ?? 'the request was not upgraded')
  }
  reply.header('upgrade', 'websocket')
  throw new errors.FST_RT_UPGRADE_REQUIRED()
}

/** Keeps what the AsyncAPI document needs of a contract route (asyncapi/document.ts). */
function describeRoute (routeOptions: RouteOptions, tag: ContractRouteTag, plugin: PluginContext): void {
  const schema = (routeOptions.schema ?? {}) as { querystring?: unknown, headers?: unknown }
  const tokenAuth = hookList(routeOptions.onRequest).map((hook) => (hook as { [kTokenAuth]?: TokenAuthSource })[kTokenAuth]).find((found) => found !== undefined)
  const { contract, firstMessageAuth, clientRooms } = tag
  plugin.contractRoutes.push({ contract, firstMessageAuth, clientRooms, url: routeOptions.url, querystring: schema.querystring, headers: schema.headers, tokenAuth: tokenAuth ?? null })
}

/** The handler returned (or its promise resolved): the connection closes with 1000. */
function handlerDone (this: RealtimeConnection): void {
  void this.close()
}

/** The handler threw (or its promise rejected): logged, and the connection closes with 1011. */
function handlerFailed (this: RealtimeConnection, error: unknown): void {
  this.request.log.error({ err: error }, 'realtime: handler failed')
  void this.close({ code: 1011, reason: 'Internal error' })
}

/** How a contract session ends its connection: as a handler's return or throw. */
const sessionEnd: SessionEnd = {
  done (connection) { handlerDone.call(connection) },
  failed (connection, error) { handlerFailed.call(connection, error) }
}

/**
 * Runs the handler, then ends the connection aiohttp's way: 1000 on return, 1011 on a throw. No
 * async function: an open connection keeps no suspended frame of its own here, only the two
 * reactions on the handler's promise; a contract route's session (`start`) not even those.
 * close() with these codes cannot fail.
 */
function runHandler (this: FastifyInstance, handler: RealtimeHandlerFunction, start: ContractRouteTag['start'] | undefined, connection: RealtimeConnection): void {
  let result: unknown
  try {
    if (start !== undefined) {
      start(connection, connection.request, sessionEnd)
      return
    }
    result = handler.call(this, connection, connection.request)
  } catch (error) {
    handlerFailed.call(connection, error)
    return
  }
  Promise.resolve(result).then(handlerDone.bind(connection), handlerFailed.bind(connection))
}

/**
 * Turns a route declared with `realtime` into a @fastify/websocket route: the handshake hook
 * goes first among the route's onRequest hooks, plain HTTP gets 426, the handler gets a connection.
 */
export function convertRealtimeRoute (routeOptions: RouteOptions & { realtime?: unknown }, plugin: PluginContext): void {
  const realtime = routeOptions.realtime
  if (realtime === undefined || realtime === false) return
  const methods = Array.isArray(routeOptions.method) ? routeOptions.method : [routeOptions.method]
  if (methods.some((method) => method !== 'GET' && method !== 'HEAD')) {
    throw new errors.FST_RT_INVALID_ROUTE(routeOptions.url, `a WebSocket route must use GET, got ${methods.join(', ')}`)
  }
  // Fastify has already refused a route without a handler function.
  const handler = routeOptions.handler as unknown as RealtimeHandlerFunction
  const settings = normalizeOptions(realtime, plugin.settings)
  routeOptions.handler = httpFallback
  // Query tokens (browsers cannot set headers on a WebSocket) must not reach the request log line,
  // on the automatic HEAD route too (Fastify copied the GET route's options before this hook).
  routeOptions.logSerializers = redactedSerializers(routeOptions, plugin)
  // Fastify's automatic HEAD route can never be upgraded.
  if (methods.every((method) => method === 'HEAD')) return
  const tag = (handler as { [kContractRoute]?: ContractRouteTag })[kContractRoute]
  if (tag !== undefined) describeRoute(routeOptions, tag, plugin)
  const url = routeOptions.url
  routeOptions.onRequest = [handshakeHook(settings, plugin.handshakes, plugin.metrics) as Hook, ...hookList(routeOptions.onRequest)]
  // The plugin's onRequest hook marks each upgrade request for it (ws-internals.ts's bridge).
  routeOptions.config = { ...routeOptions.config, [kRouteServer]: plugin.wsServers.serverFor(settings) }
  routeOptions.wsHandler = function realtimeUpgrade (this: FastifyInstance, socket, request) {
    if (!bridged(request.raw) && !WsServers.sameServer(settings, plugin.settings)) {
      // A @fastify/websocket that upgrades past the bridge used the plugin's limits, not this
      // route's: refused rather than served with the wrong ones (its error listener stays).
      request.log.error('realtime: the upgrade did not reach this route\'s ws server (a @fastify/websocket the bridge does not know); closing with 1011')
      socket.close(1011, 'Internal error')
      return
    }
    // An open connection keeps a record of its request (connection/request.ts), not the request:
    // the IncomingMessage, Fastify's request and reply and the upgrade's ServerResponse can go.
    // The TCP socket still points at the ServerResponse, and @fastify/websocket's 'error'
    // listener closes over the reply (the connection listens for errors itself): both let go.
    releaseUpgrade(request.raw)
    socket.removeAllListeners('error')
    const connection = new RealtimeConnection(socket as RealtimeSocket, realtimeRequest(request), upgradeSocket(request.raw), settings, plugin, this, url)
    // Nothing returned: @fastify/websocket would hang a closure holding the reply on a promise.
    runHandler.call(this, handler, tag?.start, connection)
  }
}
