import { Kind, TypeRegistry, type TSchema } from '@sinclair/typebox'
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'
import { Errors } from '@sinclair/typebox/errors'
import { errors } from '../errors.js'

/** The check of a client message's `data`: whatever passes it may reach a handler. */
export interface ClientCheck {
  Check (value: unknown): boolean
  /** The failures of a value that failed Check, lazily: the caller takes as many as it lists. */
  Errors (value: unknown): Iterable<{ path: string, message: string }>
}

/*
 * TypeBox's compiled check leaves two gaps on client data, closed here on a copy of each schema
 * (the contract's own schemas are left as they are):
 *
 * - A Record checks a value only when its key matches the key pattern, and lets every other key
 *   through unchecked. The pattern of `Type.Record(Type.String(), V)` is /^(.*)$/, and `.` stops
 *   at a line break: `{ "a\nb": <anything> }` reached the handler. Here every value of a Record is
 *   checked against V, whatever its key (its static type says so). A Record that says
 *   `additionalProperties: false` is left as it is: it refuses every key its pattern does not
 *   match (so `{ "a\nb": 1 }` too), and nothing goes unchecked. An `additionalProperties` schema
 *   on a Record is refused: the compiled code checks it against the wrong value when the Record is
 *   not the top-level schema.
 * - A recursive type checks the same value again for every branch of a union (or intersection)
 *   that recurses: checks and error listings take time exponential in the nesting depth. Here each
 *   recursion goes through a memo (a value is checked against a recursive type once per message),
 *   so both are linear in the size of the message. The depth itself is bounded by maxDepth.
 */

const REF_KIND = 'FastifyRealtimeRecursiveRef'
const ANY_KEY = '^[\\s\\S]*$'
const kTarget = Symbol('fastify-realtime.recursive-target')

/** A schema with an `$id` that recursive references point to, and its compiled check. */
interface Target {
  schema: TSchema
  check: TypeCheck<TSchema> | null
}

type RefNode = TSchema & { [kTarget]: Target }

/**
 * Results of the check running now, per recursive type and value; emptied when it ends. A result
 * being computed reads false: a type that reaches itself again on the same value (`T = T | X`)
 * then means its least solution, where TypeBox alone would recurse until the stack overflows.
 */
const memo = new Map<Target, Map<unknown, boolean>>()

function checkTarget (target: Target, value: unknown): boolean {
  let results = memo.get(target)
  if (results === undefined) {
    results = new Map()
    memo.set(target, results)
  }
  const known = results.get(value)
  if (known !== undefined) return known
  results.set(value, false)
  const result = (target.check as TypeCheck<TSchema>).Check(value)
  results.set(value, result)
  return result
}

// Checks (compiled and not) reach a recursive reference through TypeBox's registry of kinds.
TypeRegistry.Set(REF_KIND, (schema, value) => checkTarget((schema as RefNode)[kTarget], value))

/** Schemas and their parts are plain objects; anything else (a RegExp, a Date in `default`) is kept as it is. */
function isPlainObject (value: unknown): value is Record<string | symbol, unknown> {
  return typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype
}

/** Copies a schema, closing the gaps above; `targets` maps each `$id` met to its copy. */
class Hardener {
  readonly targets = new Map<string, Target>()

  constructor (private readonly where: string) {}

  copy (value: unknown): unknown {
    if (Array.isArray(value)) return value.map((item) => this.copy(item))
    if (!isPlainObject(value)) return value
    const kind = value[Kind]
    if (kind === 'Import') return this.importNode(value)
    if ((kind === 'This' || kind === 'Ref') && typeof value.$ref === 'string') return this.refNode(value, value.$ref)
    const target = typeof value.$id === 'string' && kind !== undefined ? this.target(value.$id) : null
    const copy: Record<string | symbol, unknown> = {}
    for (const key of Reflect.ownKeys(value)) copy[key] = this.copy(value[key])
    if (kind === 'Record') this.record(copy)
    if (target !== null) target.schema = copy as unknown as TSchema
    return copy
  }

  private target (id: string): Target {
    let target = this.targets.get(id)
    if (target === undefined) {
      target = { schema: null as unknown as TSchema, check: null }
      this.targets.set(id, target)
    }
    return target
  }

  /** A recursive reference: a kind of our own, so that each recursion goes through the memo. */
  private refNode (node: Record<string | symbol, unknown>, id: string): RefNode {
    const ref: Record<string | symbol, unknown> = {}
    // Optional and Readonly markers stay; Kind and $ref are replaced.
    for (const key of Object.getOwnPropertySymbols(node)) ref[key] = node[key]
    ref[Kind] = REF_KIND
    ref[kTarget] = this.target(id)
    return ref as unknown as RefNode
  }

  /** `Module.Import('A')`: every definition becomes a target, and the node a reference to A. */
  private importNode (node: Record<string | symbol, unknown>): RefNode {
    const definitions = node.$defs as Record<string, unknown>
    // Each definition carries its name as its $id, so copying it makes it a target.
    for (const definition of Object.values(definitions)) this.copy(definition)
    return this.refNode(node, node.$ref as string)
  }

  private record (copy: Record<string | symbol, unknown>): void {
    const additional = copy.additionalProperties
    // A strict Record refuses every key its pattern does not match: nothing goes unchecked.
    if (additional === false) return
    if (typeof additional === 'object' && additional !== null) {
      throw new errors.FST_RT_INVALID_CONTRACT(`${this.where}: a Type.Record with an additionalProperties schema is not supported (TypeBox checks it against the wrong value); give the value schema a Union instead`)
    }
    const [value] = Object.values(copy.patternProperties as Record<string, unknown>)
    copy.patternProperties = { [ANY_KEY]: value }
    delete copy.additionalProperties
  }
}

function compile (where: string, schema: TSchema): TypeCheck<TSchema> {
  try {
    return TypeCompiler.Compile(schema)
  } catch (error) {
    throw new errors.FST_RT_INVALID_CONTRACT(`${where} cannot be compiled: ${(error as Error).message}`, { cause: error })
  }
}

/** The errors of `value` against `schema`, with each recursive reference followed into its type. */
function * errorsOf (schema: TSchema, value: unknown, prefix: string): Generator<{ path: string, message: string }> {
  for (const error of Errors(schema, [], value)) {
    const target = (error.schema as Partial<RefNode>)[kTarget]
    if (target === undefined) yield { path: prefix + error.path, message: error.message }
    else yield * errorsOf(target.schema, error.value, prefix + error.path)
  }
}

/** Compiles the schema of a client message's `data`, at registration: complete and bounded (see above). */
export function compileClientCheck (where: string, schema: TSchema): ClientCheck {
  const hardener = new Hardener(where)
  const root = hardener.copy(schema) as TSchema
  for (const [id, target] of hardener.targets) {
    if (target.schema === null) throw new errors.FST_RT_INVALID_CONTRACT(`${where} refers to "${id}", which it does not define: define every referenced type in the schema (Type.Recursive, Type.Module)`)
  }
  for (const target of hardener.targets.values()) target.check = compile(where, target.schema)
  if (hardener.targets.size === 0) return compile(where, root)
  // A Type.Recursive is its own target: its check is compiled already.
  const compiled = [...hardener.targets.values()].find((target) => target.schema === root)?.check ?? compile(where, root)
  return {
    Check (value) {
      try {
        return compiled.Check(value)
      } finally {
        memo.clear()
      }
    },
    * Errors (value) {
      try {
        yield * errorsOf(root, value, '')
      } finally {
        memo.clear()
      }
    }
  }
}
