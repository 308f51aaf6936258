/**
 * The contract of the structured fuzzer's routes (test/support/envelope-fuzz.ts), as specs: the server
 * builds its schemas from them and its handlers check what they get against them (the oracle of
 * test/support/schema-gen.ts); the client builds valid, nearly valid and hostile data from them.
 */
import { Type, type TSchema } from '@sinclair/typebox'
import { defineContract } from '../../lib/index.js'
import { schemaOf, type Spec } from './schema-gen.js'

const string: Spec = { k: 'string' }
const integer: Spec = { k: 'integer' }
const self: Spec = { k: 'self' }

/** One spec per client message type: every construct a contract may use, recursion included. */
export const specs: Record<string, Spec> = {
  say: { k: 'object', props: [{ name: 'text', spec: { k: 'string', maxLength: 200 }, optional: false }], strict: true },
  add: { k: 'object', props: [{ name: 'a', spec: { k: 'number' }, optional: false }, { name: 'b', spec: { k: 'number' }, optional: false }], strict: false },
  tags: {
    k: 'object',
    props: [
      { name: 'tags', spec: { k: 'array', items: { k: 'string', maxLength: 20 }, maxItems: 10 }, optional: false },
      { name: 'meta', spec: { k: 'record', key: 'string', value: integer, strict: false }, optional: true }
    ],
    strict: false
  },
  counts: { k: 'record', key: 'string', value: integer, strict: false },
  numbers: { k: 'record', key: 'number', value: { k: 'union', of: [integer, { k: 'null' }] }, strict: false },
  strictKeys: { k: 'record', key: 'string', value: { k: 'boolean' }, strict: true },
  choice: {
    k: 'union',
    of: [
      { k: 'object', props: [{ name: 'kind', spec: { k: 'literal', value: 'a' }, optional: false }, { name: 'a', spec: string, optional: false }], strict: false },
      { k: 'object', props: [{ name: 'kind', spec: { k: 'literal', value: 'b' }, optional: false }, { name: 'b', spec: integer, optional: false }], strict: true },
      { k: 'null' }
    ]
  },
  profile: {
    k: 'object',
    props: [
      { name: 'name', spec: string, optional: false },
      { name: 'age', spec: integer, optional: true },
      { name: 'tags', spec: { k: 'array', items: string }, optional: true },
      { name: 'extra', spec: { k: 'object', props: [{ name: 'note', spec: string, optional: true }], strict: false }, optional: true }
    ],
    strict: false
  },
  tree: { k: 'recursive', body: { k: 'object', props: [{ name: 'value', spec: string, optional: false }, { name: 'children', spec: { k: 'array', items: self }, optional: true }], strict: false } },
  twins: {
    k: 'recursive',
    body: { k: 'union', of: [1, 2].map((tag) => ({ k: 'object', props: [{ name: 'next', spec: self, optional: true }, { name: 'tag', spec: { k: 'literal', value: tag }, optional: false }], strict: false }) as Spec) }
  },
  chain: { k: 'recursive', body: { k: 'union', of: [integer, { k: 'object', props: [{ name: 'next', spec: self, optional: false }], strict: false }] } },
  maps: { k: 'recursive', body: { k: 'union', of: [string, { k: 'record', key: 'string', value: self, strict: false }] } },
  nothing: { k: 'null' }
}

/** On the rooms routes: a client-chosen room to publish to (room names are checked by the hub). */
export const publishSpec: Spec = { k: 'object', props: [{ name: 'room', spec: string, optional: false }, { name: 'text', spec: { k: 'string', maxLength: 100 }, optional: false }], strict: false }

const client: Record<string, { data: TSchema, reply: TSchema }> = {}
for (const [type, spec] of Object.entries(specs)) client[type] = { data: schemaOf(spec), reply: Type.Null() }
client.publish = { data: schemaOf(publishSpec), reply: Type.Null() }

export const fuzzContract = defineContract({
  client,
  server: { message: Type.Object({ text: Type.String() }) }
})

/** Every client message type of the contract; the plugin's own are added by the generator. */
export const contractTypes = Object.keys(client)
