/**
 * Seeded generators of contract schemas and of the values clients send against them, with an
 * oracle of its own: `conforms(spec, value)` says what a handler may rely on (the schema's static
 * type), written from the type's meaning, not from TypeBox. Used by test/validation.test.ts
 * (properties of the compiled client checks) and by the structured fuzzer (handlers check what
 * they receive).
 */
import { Type, type TSchema } from '@sinclair/typebox'
import type { Random } from './fuzz.js'

export type Spec =
  | { k: 'string', maxLength?: number }
  | { k: 'integer' }
  | { k: 'number' }
  | { k: 'boolean' }
  | { k: 'null' }
  | { k: 'literal', value: string | number }
  | { k: 'object', props: Array<{ name: string, spec: Spec, optional: boolean }>, strict: boolean }
  /** Keys: any string, or TypeBox's number pattern. A strict Record refuses keys its pattern does not match. */
  | { k: 'record', key: 'string' | 'number', value: Spec, strict: boolean }
  | { k: 'array', items: Spec, maxItems?: number }
  | { k: 'union', of: Spec[] }
  /** A Type.Recursive: `self` inside `body` is the type itself. */
  | { k: 'recursive', body: Spec }
  | { k: 'self' }

/** The TypeBox schema of a spec, as an app would write it. */
export function schemaOf (spec: Spec, self?: TSchema): TSchema {
  switch (spec.k) {
    case 'string': return spec.maxLength === undefined ? Type.String() : Type.String({ maxLength: spec.maxLength })
    case 'integer': return Type.Integer()
    case 'number': return Type.Number()
    case 'boolean': return Type.Boolean()
    case 'null': return Type.Null()
    case 'literal': return Type.Literal(spec.value)
    case 'object': return Type.Object(Object.fromEntries(spec.props.map((prop) => {
      const schema = schemaOf(prop.spec, self)
      return [prop.name, prop.optional ? Type.Optional(schema) : schema]
    })), spec.strict ? { additionalProperties: false } : {})
    case 'record': return Type.Record(spec.key === 'string' ? Type.String() : Type.Number(), schemaOf(spec.value, self), spec.strict ? { additionalProperties: false } : {})
    case 'array': return Type.Array(schemaOf(spec.items, self), spec.maxItems === undefined ? {} : { maxItems: spec.maxItems })
    case 'union': return Type.Union(spec.of.map((member) => schemaOf(member, self)))
    case 'recursive': return Type.Recursive((Self) => schemaOf(spec.body, Self))
    case 'self': return self as TSchema
  }
}

const NUMBER_KEY = /^(0|[1-9][0-9]*)$/
// TypeBox's pattern for a String key: `.` stops at line terminators.
const STRING_KEY = /^(.*)$/

function isPlainObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Whether `value` is what the spec's static type promises a handler. */
export function conforms (spec: Spec, value: unknown, root: Spec = spec): boolean {
  switch (spec.k) {
    case 'string': return typeof value === 'string' && (spec.maxLength === undefined || value.length <= spec.maxLength)
    case 'integer': return Number.isInteger(value)
    case 'number': return typeof value === 'number' && Number.isFinite(value)
    case 'boolean': return typeof value === 'boolean'
    case 'null': return value === null
    case 'literal': return value === spec.value
    case 'object': {
      if (!isPlainObject(value)) return false
      for (const prop of spec.props) {
        const own = Object.hasOwn(value, prop.name)
        if (!own && !prop.optional) return false
        if (own && !conforms(prop.spec, value[prop.name], root)) return false
      }
      return !spec.strict || Object.keys(value).every((key) => spec.props.some((prop) => prop.name === key))
    }
    case 'record': {
      if (!isPlainObject(value)) return false
      const pattern = spec.key === 'string' ? STRING_KEY : NUMBER_KEY
      return Object.keys(value).every((key) => (!spec.strict || pattern.test(key)) && conforms(spec.value, value[key], root))
    }
    case 'array': return Array.isArray(value) && (spec.maxItems === undefined || value.length <= spec.maxItems) && value.every((item) => conforms(spec.items, item, root))
    case 'union': return spec.of.some((member) => conforms(member, value, root))
    case 'recursive': return conforms(spec.body, value, spec)
    case 'self': return conforms(root, value, root)
  }
}

// ---- schemas ----

const NAMES = ['a', 'b', 'text', 'room', 'n', 'items', 'meta', 'next', 'kind']

function leaf (random: Random): Spec {
  const r = random.int(0, 6)
  if (r === 0) return { k: 'string', maxLength: random.bool() ? random.int(0, 20) : undefined } as Spec
  if (r === 1) return { k: 'integer' }
  if (r === 2) return { k: 'number' }
  if (r === 3) return { k: 'boolean' }
  if (r === 4) return { k: 'null' }
  if (r === 5) return { k: 'literal', value: random.bool() ? random.pick(['on', 'off', '']) : random.int(0, 3) }
  return { k: 'string' }
}

function props (random: Random, spec: () => Spec, taken: string[] = []): Array<{ name: string, spec: Spec, optional: boolean }> {
  const names = [...new Set(Array.from({ length: random.int(0, 4) }, () => random.pick(NAMES)))].filter((name) => !taken.includes(name))
  return names.map((name) => ({ name, spec: spec(), optional: random.bool(0.4) }))
}

/** A schema of records, unions, optional properties, arrays and recursion, `depth` levels at most. */
export function randomSpec (random: Random, depth = 3, self = false): Spec {
  if (depth === 0) return self && random.bool(0.3) ? { k: 'self' } : leaf(random)
  const next = (): Spec => randomSpec(random, depth - 1, self)
  const r = random.int(0, self ? 7 : 6)
  if (r === 0) return leaf(random)
  if (r === 1) return { k: 'object', props: props(random, next), strict: random.bool(0.3) }
  if (r === 2) return { k: 'record', key: random.bool(0.8) ? 'string' : 'number', value: next(), strict: random.bool(0.2) }
  if (r === 3) return { k: 'array', items: next(), maxItems: random.bool(0.3) ? random.int(0, 5) : undefined } as Spec
  // A member that is the type itself would check the same value against itself forever (in TypeBox and here).
  if (r === 4) return { k: 'union', of: Array.from({ length: random.int(2, 3) }, () => { const member = next(); return member.k === 'self' ? { k: 'array', items: member } : member }) }
  if (r === 5 && !self) return recursiveSpec(random)
  if (r === 7) return { k: 'self' }
  return { k: 'object', props: [{ name: 'kind', spec: { k: 'literal', value: random.int(0, 9) }, optional: false }, ...props(random, next, ['kind'])], strict: false }
}

/** A recursive type of one of the shapes apps write, two of them exponential to check without a memo. */
export function recursiveSpec (random: Random): Spec {
  const value = leaf(random)
  const shapes: Array<() => Spec> = [
    // A tree.
    () => ({ k: 'object', props: [{ name: 'value', spec: value, optional: false }, { name: 'children', spec: { k: 'array', items: { k: 'self' } }, optional: random.bool() }], strict: random.bool(0.3) }),
    // A list: a value, or a node with a next.
    () => ({ k: 'union', of: [value, { k: 'object', props: [{ name: 'next', spec: { k: 'self' }, optional: false }], strict: false }] }),
    // Twins: both members recurse before their tag tells them apart.
    () => ({ k: 'union', of: [1, 2].map((tag) => ({ k: 'object', props: [{ name: 'next', spec: { k: 'self' }, optional: true }, { name: 'tag', spec: { k: 'literal', value: tag }, optional: false }], strict: false }) as Spec) }),
    // A map of maps.
    () => ({ k: 'union', of: [value, { k: 'record', key: 'string', value: { k: 'self' }, strict: false }] }),
    // Anything else the generator comes up with, with `self` in it (but not `self` alone: no type at all).
    () => {
      const body = randomSpec(random, 2, true)
      return body.k === 'self' ? { k: 'array', items: body } : body
    }
  ]
  return { k: 'recursive', body: random.pick(shapes)() }
}

// ---- values ----

/** Keys a client may choose to make trouble: line terminators, prototype names, long, odd. */
export function hostileKey (random: Random): string {
  const r = random.int(0, 12)
  if (r === 0) return 'a\nb'
  if (r === 1) return '\u2028'
  if (r === 2) return 'x\r'
  if (r === 3) return '__proto__'
  if (r === 4) return 'constructor'
  if (r === 5) return 'toString'
  if (r === 6) return ''
  if (r === 7) return '\ud800'
  if (r === 8) return 'k'.repeat(random.int(100, 300))
  if (r === 9) return String(random.int(0, 99))
  if (r === 10) return '-1'
  if (r === 11) return '~/"\\'
  return random.pick(NAMES)
}

/** Defines a property, so that `__proto__` is an own property as JSON.parse makes it. */
function put (target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true })
}

function recordKey (random: Random, spec: Extract<Spec, { k: 'record' }>): string {
  if (!spec.strict) return hostileKey(random)
  if (spec.key === 'number') return String(random.int(0, 999))
  for (;;) {
    const key = hostileKey(random)
    if (STRING_KEY.test(key)) return key
  }
}

function validLeaf (random: Random, spec: Spec): unknown {
  switch (spec.k) {
    case 'string': return random.pick(['', 'ok', 'é', '🙂', '\ud800', 'a\nb']).slice(0, spec.maxLength)
    case 'integer': return random.pick([0, -1, 7, 2 ** 53, -(2 ** 60)])
    case 'number': return random.pick([0, -0.5, 1e300, 3.14])
    case 'boolean': return random.bool()
    case 'null': return null
    case 'literal': return spec.value
    default: return undefined
  }
}

/** Thrown by validValue for a type no finite value has (a recursion with no way out). */
export class NoValue extends Error {}

/** A value the spec's type allows, nested about `maxDepth` levels at most. */
export function validValue (random: Random, spec: Spec, depth = 0, root: Spec = spec, maxDepth = 12): unknown {
  if (depth > maxDepth * 2) throw new NoValue('this type has no finite value')
  switch (spec.k) {
    case 'object': {
      const value: Record<string, unknown> = {}
      for (const prop of spec.props) {
        if (prop.optional && (random.bool(0.4) || depth >= maxDepth)) continue
        put(value, prop.name, validValue(random, prop.spec, depth + 1, root, maxDepth))
      }
      if (!spec.strict && random.bool(0.3)) {
        const key = hostileKey(random)
        if (!spec.props.some((prop) => prop.name === key)) put(value, key, random.pick([1, 'extra', null]))
      }
      return value
    }
    case 'record': {
      const value: Record<string, unknown> = {}
      const count = depth >= maxDepth ? 0 : random.int(0, 4)
      for (let i = 0; i < count; i++) put(value, recordKey(random, spec), validValue(random, spec.value, depth + 1, root, maxDepth))
      return value
    }
    case 'array': {
      const length = depth >= maxDepth ? 0 : random.int(0, Math.min(3, spec.maxItems ?? 3))
      return Array.from({ length }, () => validValue(random, spec.items, depth + 1, root, maxDepth))
    }
    case 'union': {
      // Past the depth, the member that recurses least.
      const member = depth >= maxDepth ? spec.of.find((m) => m.k !== 'object' || m.props.every((p) => p.optional || p.spec.k !== 'self')) ?? random.pick(spec.of) : random.pick(spec.of)
      return validValue(random, member, depth, root, maxDepth)
    }
    case 'recursive': return validValue(random, spec.body, depth, spec, maxDepth)
    case 'self': return validValue(random, root, depth, root, maxDepth)
    default: return validLeaf(random, spec)
  }
}

/** A valid value with one thing broken: a leaf of the wrong type, an extra key, a bad value under a hostile key. */
export function invalidValue (random: Random, spec: Spec, maxDepth = 12): unknown {
  const value = validValue(random, spec, 0, spec, maxDepth)
  const containers: Array<Record<string, unknown> | unknown[]> = []
  const walk = (node: unknown): void => {
    if (typeof node !== 'object' || node === null) return
    containers.push(node as Record<string, unknown>)
    for (const child of Object.values(node)) walk(child)
  }
  walk(value)
  if (containers.length === 0 || random.bool(0.1)) return random.pick([{ x: 1 }, [], 'text', 1.5, Infinity, null, true])
  const target = random.pick(containers)
  const bad = random.pick([{}, [], 'text', 1.5, -3, null, false, { next: 'x' }])
  if (Array.isArray(target)) {
    if (target.length === 0) target.push(bad)
    else target[random.int(0, target.length - 1)] = bad
  } else {
    const keys = Object.keys(target)
    put(target, keys.length > 0 && random.bool(0.6) ? random.pick(keys) : hostileKey(random), bad)
  }
  return value
}

/** What the server sees: the value through JSON, as a client sends it. */
export function overTheWire (value: unknown): unknown {
  return JSON.parse(JSON.stringify(value) ?? 'null') as unknown
}
