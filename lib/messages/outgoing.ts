import { errors } from '../errors.js'
import { compileContract, type CompiledContract } from './compile.js'
import type { Contract } from './contract.js'

const cache = new WeakMap<Contract, CompiledContract>()

/** The compiled form of a contract, compiled on first use and then shared (routes, decorator). */
export function compiledFor (contract: Contract): CompiledContract {
  let compiled = cache.get(contract)
  if (compiled === undefined) {
    compiled = compileContract(contract)
    cache.set(contract, compiled)
  }
  return compiled
}

function describeErrors (list: Iterable<{ path: string, message: string }>): string {
  const parts: string[] = []
  for (const error of list) {
    parts.push(`${error.path === '' ? '/' : error.path} ${error.message}`)
    if (parts.length === 3) break
  }
  return parts.join('; ')
}

/** Checks (when asked) and serializes an outgoing `{ type, data }`; every failure is a coded error. */
export function serializeOutgoing (compiled: CompiledContract, type: string, data: unknown, validate: boolean): string {
  const entry = compiled.server.get(type)
  if (entry === undefined) throw new errors.FST_RT_UNKNOWN_OUTGOING_TYPE(JSON.stringify(type))
  if (validate && !entry.check.Check(data)) {
    throw new errors.FST_RT_INVALID_OUTGOING(`message ${JSON.stringify(type)}`, describeErrors(entry.check.Errors(data)))
  }
  try {
    return entry.serialize({ type, data })
  } catch (error) {
    // The serializer follows the schema, so unchecked data can still miss a required field.
    throw new errors.FST_RT_INVALID_OUTGOING(`message ${JSON.stringify(type)}`, (error as Error).message, { cause: error })
  }
}

export { describeErrors }
