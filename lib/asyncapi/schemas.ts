import { Kind } from '@sinclair/typebox'
import { errors } from '../errors.js'

// TypeBox schemas as AsyncAPI Schema Objects (a superset of JSON Schema draft 7). A TypeBox schema
// is JSON Schema already, less its symbol keys; what needs work is identity: a recursive type
// (`Type.Recursive`) or a module (`Type.Module(...).Import()`) names schemas by `$id` and refers
// to them with a bare `$ref`, which a document cannot hold as it is (the parser would read the
// name as a file). Each such schema moves to `components.schemas` and every `$ref` follows it.

export type JsonSchema = Record<string, unknown>

/** Kinds with no JSON form: a message's data is JSON, so a contract using one cannot be described. */
const NOT_JSON = new Set([
  'AsyncIterator', 'BigInt', 'Constructor', 'Date', 'Function', 'Iterator', 'Promise', 'RegExp', 'Symbol',
  'Uint8Array', 'Undefined', 'Void', 'Argument', 'Computed'
])

const KEY = /^[a-zA-Z0-9.\-_]+$/

/** A component key for `name`: AsyncAPI keys allow letters, digits, `.`, `-` and `_` only. */
export function componentKey (name: string): string {
  return KEY.test(name) ? name : name.replace(/[^a-zA-Z0-9.\-_]/g, '_')
}

/** The `components.schemas` of one document, filled as the contracts' schemas are converted. */
export class SchemaComponents {
  readonly schemas: Record<string, JsonSchema> = {}
  /** `$id` → its component key. */
  readonly #keys = new Map<string, string>()
  /** The text each `$id` was first converted to, to tell a reused id from a clash. */
  readonly #texts = new Map<string, string>()
  /** Each bare `$ref` met, with where, checked once every schema is in. */
  readonly #refs: Array<{ id: string, where: string }> = []

  /** Adds a named schema of the protocol's own (no `$id` of a contract may take its key). */
  add (key: string, schema: JsonSchema): { $ref: string } {
    this.schemas[key] = schema
    this.#keys.set(`#protocol/${key}`, key)
    return { $ref: `#/components/schemas/${key}` }
  }

  /** `schema` (a TypeBox or plain JSON schema) as a document holds it; `where` names it in errors. */
  convert (schema: unknown, where: string): JsonSchema {
    return this.#node(schema, where) as JsonSchema
  }

  /** Throws FST_RT_ASYNCAPI_UNSUPPORTED for a `$ref` to a schema no contract holds. */
  checkRefs (): void {
    for (const { id, where } of this.#refs) {
      if (!this.#texts.has(id)) throw new errors.FST_RT_ASYNCAPI_UNSUPPORTED(where, `it refers to "${id}", a schema with that $id is nowhere in the contract`)
    }
  }

  #keyFor (id: string): string {
    const known = this.#keys.get(id)
    if (known !== undefined) return known
    const base = componentKey(id)
    const taken = new Set(this.#keys.values())
    let key = base
    for (let n = 2; taken.has(key); n++) key = `${base}_${n}`
    this.#keys.set(id, key)
    return key
  }

  #node (value: unknown, where: string): unknown {
    if (Array.isArray(value)) return value.map((item) => this.#node(item, where))
    if (typeof value !== 'object' || value === null) return value
    const kind = (value as Record<symbol, unknown>)[Kind]
    if (typeof kind === 'string' && NOT_JSON.has(kind)) {
      throw new errors.FST_RT_ASYNCAPI_UNSUPPORTED(where, `Type.${kind}() has no JSON form, and messages are JSON`)
    }
    const source = value as JsonSchema
    const out: JsonSchema = {}
    for (const [name, item] of Object.entries(source)) {
      if (name === '$id' || name === '$defs') continue
      out[name] = this.#node(item, where)
    }
    if (typeof source.$defs === 'object' && source.$defs !== null) {
      for (const [name, def] of Object.entries(source.$defs as JsonSchema)) {
        // Type.Module() gives each definition its key as $id.
        this.#hoist(name, this.#node({ ...(def as JsonSchema), $id: undefined }, where) as JsonSchema, where)
      }
    }
    if (typeof source.$ref === 'string' && !source.$ref.startsWith('#')) {
      this.#refs.push({ id: source.$ref, where })
      out.$ref = `#/components/schemas/${this.#keyFor(source.$ref)}`
    }
    if (typeof source.$id === 'string') return this.#hoist(source.$id, out, where)
    return out
  }

  /** Puts a converted schema under its `$id`'s key; the same id twice must be the same schema. */
  #hoist (id: string, schema: JsonSchema, where: string): { $ref: string } {
    const text = JSON.stringify(schema)
    const seen = this.#texts.get(id)
    if (seen !== undefined && seen !== text) {
      throw new errors.FST_RT_ASYNCAPI_UNSUPPORTED(where, `two different schemas have the $id "${id}"`)
    }
    const key = this.#keyFor(id)
    this.#texts.set(id, text)
    this.schemas[key] = schema
    return { $ref: `#/components/schemas/${key}` }
  }
}
