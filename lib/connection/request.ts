import type { IncomingMessage } from 'node:http'
import type {
  ContextConfigDefault, FastifyBaseLogger, FastifyRequest, FastifySchema, FastifyTypeProvider, FastifyTypeProviderDefault,
  RawRequestDefaultExpression, RawServerBase, RawServerDefault, RouteGenericInterface
} from 'fastify'

/**
 * The members of Fastify's request that a connection does not keep: each needs the raw
 * IncomingMessage, the reply or the route's validators, all let go once the socket is upgraded.
 */
export type DroppedRequestMember =
  | 'raw' | 'req' | 'server' | 'body' | 'validationError' | 'socket' | 'signal' | 'mediaType'
  | 'ips' | 'host' | 'port' | 'hostname' | 'originalUrl' | 'protocol' | 'method' | 'routeOptions' | 'is404'
  | 'getValidationFunction' | 'compileValidationSchema' | 'validateInput' | 'getDecorator' | 'setDecorator'

/**
 * What a WebSocket connection keeps of the request that opened it, for its whole life: `id`, `ip`,
 * `headers`, `query`, `params`, `log` and `url`, typed like Fastify's request of the route, and
 * whatever the app put on the request: values its hooks set and its `decorateRequest()`
 * decorations (functions and accessors too). The rest of Fastify's request (`raw`, `socket`,
 * `routeOptions`, `hostname`, `ips`...) is gone with the upgrade; a hook that needs one of them
 * copies what it needs onto the request.
 */
export interface RealtimeRequest<
  RouteGeneric extends RouteGenericInterface = RouteGenericInterface,
  RawServer extends RawServerBase = RawServerDefault,
  RawRequest extends RawRequestDefaultExpression<RawServer> = RawRequestDefaultExpression<RawServer>,
  SchemaCompiler extends FastifySchema = FastifySchema,
  TypeProvider extends FastifyTypeProvider = FastifyTypeProviderDefault,
  ContextConfig = ContextConfigDefault,
  Logger extends FastifyBaseLogger = FastifyBaseLogger
> extends Omit<FastifyRequest<RouteGeneric, RawServer, RawRequest, SchemaCompiler, TypeProvider, ContextConfig, Logger>, DroppedRequestMember> {}

/** The request of a route with Node's default server, as contract routes have it. */
export type DefaultRealtimeRequest = RealtimeRequest<RouteGenericInterface, RawServerDefault, IncomingMessage>

/** Own members of Fastify's request that stay behind: the raw request, and a GET request's empty body. */
const LEFT_BEHIND = new Set(['raw', 'body'])

/** Per request prototype (one per encapsulation context): the prototype of the records made from its requests. */
const recordPrototypes = new WeakMap<object, object>()

/**
 * The app's request decorations that live on the prototype (`decorateRequest()` with a function or
 * accessors), copied once per context onto a prototype of their own. Fastify's own members are
 * those of the last prototype before Object's (its Request), so every name found there, or reused
 * by a context for its own version (the trust-proxy `ip` and `ips`), is left out: they read `raw`.
 */
function recordPrototype (prototype: object): object {
  const known = recordPrototypes.get(prototype)
  if (known !== undefined) return known
  const chain: object[] = []
  for (let link: object | null = prototype; link !== null && link !== Object.prototype; link = Object.getPrototypeOf(link) as object | null) {
    chain.push(link)
  }
  const fastifyOwn = new Set<string | symbol>(Reflect.ownKeys(chain[chain.length - 1] as object))
  const made: object = {}
  // From Fastify's end to the route's own context, so a child context's decoration wins.
  for (const link of chain.slice(0, -1).reverse()) {
    for (const key of Reflect.ownKeys(link)) {
      if (fastifyOwn.has(key)) continue
      Object.defineProperty(made, key, Object.getOwnPropertyDescriptor(link, key) as PropertyDescriptor)
    }
  }
  recordPrototypes.set(prototype, made)
  return made
}

/**
 * The record a connection keeps of its request (see `RealtimeRequest`): the request's own values
 * except `raw` and `body`, then `ip`, `headers` and `url` read once. It holds no reference to the
 * IncomingMessage, the reply or the upgrade's ServerResponse, so those go with the upgrade.
 */
export function realtimeRequest (request: FastifyRequest): DefaultRealtimeRequest {
  const record = Object.create(recordPrototype(Object.getPrototypeOf(request) as object)) as Record<string, unknown>
  const own = request as unknown as Record<string, unknown>
  for (const key of Object.keys(request)) {
    if (!LEFT_BEHIND.has(key)) record[key] = own[key]
  }
  record.ip = request.ip
  record.headers = request.headers
  record.url = request.url
  return record as unknown as DefaultRealtimeRequest
}
