import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { RealtimeConnection } from '../connection/connection.js'
import { errors } from '../errors.js'
import { Member } from '../hub/hub.js'
import { authenticate } from './auth.js'
import { LIFECYCLE, type CompiledContract } from './compile.js'
import type { Contract } from './contract.js'
import { contractSettings } from '../options/contract.js'
import { compiledFor } from './outgoing.js'
import { Session } from './session.js'
import { kContractRoute } from '../symbols.js'

/** What a contract route's handler carries under kContractRoute. */
export interface ContractRouteTag {
  readonly contract: Contract
  readonly firstMessageAuth: boolean
  readonly clientRooms: boolean
}
import type { AnyHandler, ContractOptions, MessageHandlers } from './types.js'

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
 */
export function contractHandler<C extends Contract> (contract: C, handlers: NoInfer<MessageHandlers<C>>, options: NoInfer<ContractOptions<C>> = {}) {
  const compiled = compiledFor(contract)
  checkHandlers(compiled, handlers as Record<string, unknown>)
  const settings = contractSettings(options as ContractOptions)
  const handler = async function realtimeContract (this: FastifyInstance, connection: RealtimeConnection, request: FastifyRequest): Promise<void> {
    // The plugin instance the connection came through: its hub and its clock.
    const { hub, clock } = connection.plugin
    let userId = settings.userId === null ? null : await settings.userId(request)
    if (settings.auth !== null) {
      const verified = await authenticate(connection, request, settings.auth, hub.metrics, settings.maxDepth)
      if (verified === null) return
      userId = verified
    }
    const session = new Session(this, compiled, handlers as unknown as Record<string, AnyHandler>, settings, connection, request, hub, clock, new Member(connection, userId))
    // Returned, not awaited, so this frame is not kept for the life of the connection.
    return session.serve()
  }
  // What the AsyncAPI document reads of the route (route.ts collects it at registration).
  const described: ContractRouteTag = { contract, firstMessageAuth: settings.auth !== null, clientRooms: settings.rooms !== null }
  Object.defineProperty(handler, kContractRoute, { value: described })
  return handler
}
