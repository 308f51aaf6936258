import type { FastifySchema, FastifyTypeProvider, FastifyTypeProviderDefault } from 'fastify'
import type { RealtimeConnection } from '../connection/connection.js'
import { errors } from '../errors.js'
import { Member } from '../hub/member.js'
import { authenticate } from './auth.js'
import { LIFECYCLE, type CompiledContract } from './compile.js'
import type { Contract } from './contract.js'
import { contractSettings } from '../options/contract.js'
import { compiledFor } from './outgoing.js'
import { Session } from './session.js'
import { kContractRoute } from '../symbols.js'
import type { AnyHandler, ContractOptions, MessageHandlers, RouteRequest, UserIdOf } from './types.js'

/** What a contract route's handler carries under kContractRoute. */
export interface ContractRouteTag {
  readonly contract: Contract
  readonly firstMessageAuth: boolean
  readonly clientRooms: boolean
}

/**
 * The handler `contractHandler()` returns, for a route whose schema is `S` under type provider `TP`.
 * Both are inferred from the route it is passed to, so handlers see `ctx.request` typed.
 */
export type ContractRouteHandler<S extends FastifySchema = FastifySchema, TP extends FastifyTypeProvider = FastifyTypeProviderDefault> =
  (connection: RealtimeConnection, request: RouteRequest<S, TP>) => Promise<void>

function checkHandlers (compiled: CompiledContract, handlers: Record<string, unknown>): void {
  if (typeof handlers !== 'object' || handlers === null) throw new errors.FST_RT_INVALID_HANDLERS('expected an object of handlers')
  for (const [name, handler] of Object.entries(handlers)) {
    if (typeof handler !== 'function') throw new errors.FST_RT_INVALID_HANDLERS(`"${name}" must be a function`)
    if (!LIFECYCLE.has(name) && !compiled.client.has(name)) {
      throw new errors.FST_RT_INVALID_HANDLERS(`"${name}" has no schema in the contract's client messages`)
    }
  }
  for (const type of compiled.client.keys()) {
    if (handlers[type] === undefined) throw new errors.FST_RT_INVALID_HANDLERS(`client message type "${type}" has no handler`)
  }
}

/**
 * Builds the handler of a contract route: every schema is compiled now, once; each connection then
 * parses, validates and dispatches every message to its handler, and answers requests.
 *
 * Typing: the route's schema and type provider (`S`, `TP`) come from the route the handler is
 * passed to. `O` (the options given) and `UF` (its `userId`, inferred on its own, so other inline
 * functions do not hide it) tell whether every connection has a user (see `UserIdOf`): then
 * `ctx.userId` is a string. A key of `O` that is not an option is refused.
 */
export function contractHandler<
  C extends Contract,
  S extends FastifySchema = FastifySchema,
  TP extends FastifyTypeProvider = FastifyTypeProviderDefault,
  O = object,
  UF = unknown
> (
  contract: C,
  handlers: NoInfer<MessageHandlers<C, RouteRequest<S, TP>, UserIdOf<UF, O>>>,
  options?: O & NoInfer<ContractOptions<C, RouteRequest<S, TP>, UserIdOf<UF, O>>> & Record<Exclude<keyof O, keyof ContractOptions>, never> &
    { userId?: UF }
): ContractRouteHandler<S, TP> {
  const compiled = compiledFor(contract)
  checkHandlers(compiled, handlers as Record<string, unknown>)
  const settings = contractSettings((options ?? {}) as ContractOptions)
  const handler: ContractRouteHandler<S, TP> = async function realtimeContract (connection: RealtimeConnection, request: RouteRequest<S, TP>): Promise<void> {
    // The plugin instance the connection came through: its hub and its clock.
    const { hub, clock } = connection.plugin
    let userId = settings.userId === null ? null : await settings.userId(request)
    if (settings.auth !== null) {
      const verified = await authenticate(connection, request, settings.auth, hub.metrics, settings.maxDepth)
      if (verified === null) return
      userId = verified
    }
    // The route's own instance (a handler's `this`), also when the route was registered in a plugin.
    const session = new Session(request.server, compiled, handlers as unknown as Record<string, AnyHandler>, settings, connection, request, hub, clock, new Member(connection, userId))
    // Returned, not awaited, so this frame is not kept for the life of the connection.
    return session.serve()
  }
  // What the AsyncAPI document reads of the route (route.ts collects it at registration).
  const described: ContractRouteTag = { contract, firstMessageAuth: settings.auth !== null, clientRooms: settings.rooms !== null }
  Object.defineProperty(handler, kContractRoute, { value: described })
  return handler
}
