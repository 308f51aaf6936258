import { Type } from '@sinclair/typebox'
import { defineContract } from '../../lib/index.js'

// Contracts covering every TypeBox construct the AsyncAPI document describes, one per message, so a
// parser diagnostic names the construct by its path. `constructs` lists them (the report counts it).

const Node = Type.Recursive((This) => Type.Object({ name: Type.String(), children: Type.Array(This) }), { $id: 'TreeNode' })
const Module = Type.Module({
  Item: Type.Object({ id: Type.String(), tags: Type.Array(Type.Ref('Tag')) }),
  Tag: Type.Object({ label: Type.String(), parent: Type.Optional(Type.Ref('Tag')) })
})
const Point = Type.Object({ x: Type.Number(), y: Type.Number() }, { $id: 'Point' })

export const constructs = {
  object: Type.Object({ a: Type.String() }, { additionalProperties: false }),
  optional: Type.Object({ a: Type.Optional(Type.String()), b: Type.Readonly(Type.Number()) }),
  string: Type.String({ minLength: 1, maxLength: 10, pattern: '^[a-z]+$', format: 'email' }),
  number: Type.Number({ minimum: 0, exclusiveMaximum: 10, multipleOf: 0.5 }),
  integer: Type.Integer({ minimum: 1 }),
  boolean: Type.Boolean(),
  null: Type.Null(),
  literal: Type.Literal('on'),
  union: Type.Union([Type.String(), Type.Number()]),
  discriminated: Type.Union([
    Type.Object({ kind: Type.Literal('circle'), r: Type.Number() }),
    Type.Object({ kind: Type.Literal('square'), side: Type.Number() })
  ]),
  nullable: Type.Union([Type.String(), Type.Null()]),
  enum: Type.Enum({ Red: 'red', Green: 'green' }),
  intersect: Type.Intersect([Type.Object({ a: Type.String() }), Type.Object({ b: Type.Number() })]),
  array: Type.Array(Type.String(), { minItems: 1, maxItems: 5, uniqueItems: true }),
  tuple: Type.Tuple([Type.String(), Type.Number()]),
  record: Type.Record(Type.String(), Type.Number()),
  recordOfLiterals: Type.Record(Type.Union([Type.Literal('x'), Type.Literal('y')]), Type.Boolean()),
  templateLiteral: Type.TemplateLiteral([Type.Literal('room-'), Type.Number()]),
  keyof: Type.KeyOf(Type.Object({ a: Type.String(), b: Type.String() })),
  partial: Type.Partial(Type.Object({ a: Type.String(), b: Type.Number() })),
  pick: Type.Pick(Type.Object({ a: Type.String(), b: Type.Number() }), ['a']),
  unknown: Type.Unknown(),
  any: Type.Any(),
  not: Type.Not(Type.String()),
  never: Type.Object({ a: Type.Optional(Type.Never()) }),
  recursive: Node,
  moduleImport: Module.Import('Item'),
  // On both sides: one component, referenced from both.
  identified: Point
}

/** The constructs on both sides: as client messages, requests with a reply, and server messages. */
export const everyConstruct = defineContract({
  client: {
    ...constructs,
    ask: { data: Type.Object({ q: Type.String() }), reply: Type.Array(Node) }
  },
  server: constructs
})
