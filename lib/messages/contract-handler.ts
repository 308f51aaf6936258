import type { FastifySchema, FastifyTypeProvider, FastifyTypeProviderDefault } from 'fastify'
import type { RealtimeConnection } from '../connection/connection.js'
import { errors } from '../errors.js'
import { Member } from '../hub/member.js'
import { authenticate } from './auth.js'
import { LIFECYCLE, type CompiledContract } from './compile.js'
import type { Contract } from './contract.js'
import { contractSettings } from '../options/contract.js'
import { compiledFor } from './outgoing.js'
import { Session, type SessionEnd } from './session.js'
import type { DefaultRealtimeRequest } from '../connection/request.js'
import { kContractRoute } from '../symbols.js'
import { isThenable } from './thenable.js'
import type { AnyHandler, ContractOptions, MessageHandlers, RouteRequest, UserIdOf } from './types.js'

/** What a contract route's handler carries under kContractRoute: what the AsyncAPI document reads, and how the route starts a session. */
export interface ContractRouteTag {
  readonly contract: Contract
  readonly firstMessageAuth: boolean
  readonly clientRooms: boolean
  /** Runs a connection as the handler does, ending through `end` instead of a promise the route would hold. */
  readonly start: (connection: RealtimeConnection, request: DefaultRealtimeRequest, end: SessionEnd) => void
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
  const serve = (connection: RealtimeConnection, request: DefaultRealtimeRequest, userId: string | null, end: SessionEnd): void => {
    // The plugin instance the connection came through: its hub and its clock.
    const { hub, clock } = connection.plugin
    new Session(compiled, handlers as unknown as Record<string, AnyHandler>, settings, connection, request, hub, clock, new Member(connection, userId)).serve(end)
  }
  // The user first, when the options name one: at once, or after a promise or the first message.
  const start = (connection: RealtimeConnection, request: DefaultRealtimeRequest, end: SessionEnd): void => {
    const userId = settings.userId === null ? null : settings.userId(request)
    if (settings.auth === null && !isThenable(userId)) {
      serve(connection, request, userId, end)
      return
    }
    const identify = async (): Promise<string | null | undefined> => {
      const named = await userId
      // undefined: the first message's token was refused, and the connection is closing.
      return settings.auth === null ? named : await authenticate(connection, request, settings.auth, connection.plugin.metrics, settings.maxDepth) ?? undefined
    }
    identify().then((user) => { user === undefined ? end.done(connection) : serve(connection, request, user, end) }, (error: unknown) => { end.failed(connection, error) })
  }
  const handler: ContractRouteHandler<S, TP> = async function realtimeContract (connection: RealtimeConnection, request: RouteRequest<S, TP>): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      start(connection, request, { done: () => { resolve() }, failed: (_connection, error) => { reject(error) } })
    })
  }
  // Read by route.ts at registration: the AsyncAPI document's facts, and the start without a promise.
  const described: ContractRouteTag = { contract, firstMessageAuth: settings.auth !== null, clientRooms: settings.rooms !== null, start }
  Object.defineProperty(handler, kContractRoute, { value: described })
  return handler
}
