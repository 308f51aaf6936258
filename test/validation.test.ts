/**
 * Validation is complete and bounded: whatever reaches a handler is what its schema's type says, for
 * every construct a contract may use. Properties over seeded, generated schemas and values (records,
 * unions, recursive and optional types, hostile keys); replay with
 * `VALIDATION_SEED=<seed> npx tap test/validation.test.ts`.
 */
import t from 'tap'
import { Type, type TSchema } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { Value } from '@sinclair/typebox/value'
import { compileClientCheck } from '../lib/messages/client-check.js'
import { listErrors } from '../lib/messages/error-envelope.js'
import { contractHandler, defineContract } from '../lib/index.js'
import { Random } from './support/fuzz.js'
import { build, client } from './support/helpers.js'
import { conforms, invalidValue, NoValue, overTheWire, randomSpec, recursiveSpec, schemaOf, validValue, type Spec } from './support/schema-gen.js'

const seed = process.env.VALIDATION_SEED === undefined || process.env.VALIDATION_SEED === '' ? Math.floor(Math.random() * 2 ** 32) : Number(process.env.VALIDATION_SEED) >>> 0
t.comment(`validation seed ${seed} (replay with VALIDATION_SEED=${seed})`)

const LINE_BREAKS = ['a\nb', '\r', '\u2028', '\u2029', 'x\ny\nz']

/** A key for a test title: TAP lines must not carry line breaks of any kind. */
function shown (key: string): string {
  return key.replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

t.test("TypeBox's compiled check lets a Record value under a key with a line break through; the contract's check does not", async (t) => {
  const schema = Type.Record(Type.String(), Type.Integer())
  const typebox = TypeCompiler.Compile(schema)
  const ours = compileClientCheck('test', schema)
  for (const key of LINE_BREAKS) {
    const value = { [key]: 'not an integer' }
    t.equal(typebox.Check(value), true, `TypeBox: "${shown(key)}" is never checked (its key pattern is /^(.*)$/)`)
    t.equal(ours.Check(value), false, `ours: "${shown(key)}" is checked`)
    t.same([...ours.Errors(value)].map((error) => error.path), [`/${key}`])
    t.equal(ours.Check({ [key]: 1 }), true, 'a valid value under the same key passes')
  }
  const nested = compileClientCheck('test', Type.Object({ counts: Type.Record(Type.Number(), Type.Integer()) }))
  t.equal(nested.Check({ counts: { 1: 1, abc: 'x' } }), false, 'a number-keyed Record checks every value too')
  const strict = compileClientCheck('test', Type.Record(Type.String(), Type.Integer(), { additionalProperties: false }))
  t.equal(strict.Check({ 'a\nb': 1 }), false, 'a strict Record refuses keys its pattern does not match, as TypeBox does')
  t.equal(strict.Check({ ab: 1 }), true)
})

t.test('a handler never receives a Record value its schema forbids, under any key', async (t) => {
  const received: unknown[] = []
  const contract = defineContract({
    client: { count: { data: Type.Object({ counts: Type.Record(Type.String(), Type.Integer()) }), reply: Type.Null() } },
    server: {}
  })
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, contractHandler(contract, { count (data) { received.push(data); return null } }))
  })
  const c = await client(t, url)
  for (const [i, key] of LINE_BREAKS.entries()) {
    c.ws.send(JSON.stringify({ type: 'count', data: { counts: { [key]: 'not an integer' } }, id: i }))
    t.match(JSON.parse(await c.text()), { type: 'error', id: i, data: { code: 'FST_RT_INVALID_MESSAGE_DATA', errors: [{ path: `/counts/${key}`, message: 'Expected integer' }] } })
  }
  c.ws.send(JSON.stringify({ type: 'count', data: { counts: { 'a\nb': 1 } }, id: 'ok' }))
  t.same(JSON.parse(await c.text()), { type: 'count:reply', data: null, id: 'ok' })
  t.same(received, [{ counts: { 'a\nb': 1 } }], 'the handler saw only the valid message')
})

t.test(`property: what the contract's check accepts has the schema's type and passes TypeBox's own check; valid values pass (seed ${seed})`, async (t) => {
  const random = new Random(seed)
  let accepted = 0
  let refused = 0
  let schemas = 0
  const failures: string[] = []
  for (let i = 0; i < 300; i++) {
    const spec = random.bool(0.3) ? recursiveSpec(random) : randomSpec(random)
    const schema = schemaOf(spec)
    const ours = compileClientCheck(`schema ${i}`, schema)
    schemas++
    for (let j = 0; j < 30; j++) {
      let value: unknown
      let valid = false
      try {
        valid = random.bool(0.4)
        value = overTheWire(valid ? validValue(random, spec) : invalidValue(random, spec))
      } catch (error) {
        if (!(error instanceof NoValue)) throw error
        continue
      }
      const passed = ours.Check(value)
      if (passed) {
        accepted++
        if (!conforms(spec, value)) failures.push(`accepted but not of its type: ${JSON.stringify(spec)} ${JSON.stringify(value)}`)
        if (!Value.Check(schema, value)) failures.push(`accepted but refused by TypeBox: ${JSON.stringify(spec)} ${JSON.stringify(value)}`)
      } else {
        refused++
        if (valid) failures.push(`a valid value refused: ${JSON.stringify(spec)} ${JSON.stringify(value)}`)
        const errors = listErrors(ours.Errors(value), 10, 64, JSON.stringify(value).length)
        if (errors.length === 0) failures.push(`refused without an error listed: ${JSON.stringify(spec)} ${JSON.stringify(value)}`)
        if (errors.some((error) => !error.path.startsWith('/') || error.path.length > 67)) failures.push(`a path out of bounds: ${JSON.stringify(errors)}`)
      }
      // The check agrees with the type both ways for what the type decides alone.
      if (!passed && conforms(spec, value) && Value.Check(schema, value)) failures.push(`refused though of its type: ${JSON.stringify(spec)} ${JSON.stringify(value)}`)
    }
  }
  t.comment(`${schemas} schemas, ${accepted} values accepted, ${refused} refused`)
  t.same(failures.slice(0, 5), [], `no counterexample (${failures.length} in all)`)
  t.ok(accepted > 500 && refused > 500, 'both outcomes were exercised')
})

/** Twins: both members recurse before their tag tells them apart; TypeBox alone takes 2^depth steps. */
const twins: Spec = {
  k: 'recursive',
  body: { k: 'union', of: [1, 2].map((tag) => ({ k: 'object', props: [{ name: 'next', spec: { k: 'self' }, optional: true }, { name: 'tag', spec: { k: 'literal', value: tag }, optional: false }], strict: false }) as Spec) }
}

function chain (depth: number, lastTag: number): unknown {
  let value: Record<string, unknown> = { tag: lastTag }
  for (let i = 0; i < depth; i++) value = { next: value, tag: 2 }
  return value
}

t.test('a recursive type is checked in time linear in the data, valid or not, and 256 levels do not overflow the stack', async (t) => {
  const schema = schemaOf(twins)
  const ours = compileClientCheck('twins', schema)
  const typebox = TypeCompiler.Compile(schema)
  const small = chain(18, 2)
  const started = process.hrtime.bigint()
  t.equal(typebox.Check(small), true)
  const typeboxMs = Number(process.hrtime.bigint() - started) / 1e6
  for (const [depth, tag] of [[256, 2], [256, 3], [30, 3]] as const) {
    const value = chain(depth, tag)
    const begun = process.hrtime.bigint()
    const passed = ours.Check(value)
    const errors = passed ? [] : listErrors(ours.Errors(value), 10, 64, 10_000)
    const ms = Number(process.hrtime.bigint() - begun) / 1e6
    t.equal(passed, tag === 2, `depth ${depth} ${tag === 2 ? 'valid' : 'invalid'}`)
    if (!passed) t.same(errors, [{ path: '/', message: 'Expected union value' }])
    t.ok(ms < 200, `checked and listed in ${ms.toFixed(1)} ms (TypeBox alone: ${typeboxMs.toFixed(1)} ms at depth 18, doubling per level)`)
  }
  // An error deep inside recursion is found and named by its full path.
  const tree = compileClientCheck('tree', Type.Recursive((Self) => Type.Object({ name: Type.String(), children: Type.Array(Self) })))
  let deep: Record<string, unknown> = { name: 1, children: [] }
  for (let i = 0; i < 255; i++) deep = { name: 'n', children: [{ name: 'a', children: [] }, deep] }
  t.equal(tree.Check(deep), false)
  const [first] = listErrors(tree.Errors(deep), 10, 10_000, 100_000)
  t.equal(first?.path, `${'/children/1'.repeat(255)}/name`)
  t.equal(first?.message, 'Expected string')
})

t.test('recursive references across the definitions of a Type.Module are followed, checked and listed', async (t) => {
  const module = Type.Module({
    Folder: Type.Object({ name: Type.String(), items: Type.Array(Type.Ref('Item')) }),
    Item: Type.Union([Type.Object({ file: Type.String() }), Type.Ref('Folder')])
  })
  // TypeScript gives up on the static type of this mutual recursion; the check does not need it.
  const folder = compileClientCheck('folder', (module as unknown as { Import (name: string): TSchema }).Import('Folder'))
  t.equal(folder.Check({ name: 'root', items: [{ file: 'a' }, { name: 'sub', items: [{ file: 'b' }] }] }), true)
  const bad = { name: 'root', items: [{ name: 'sub', items: 3 }] }
  t.equal(folder.Check(bad), false)
  t.same(listErrors(folder.Errors(bad), 10, 64, 1000), [{ path: '/items/0', message: 'Expected union value' }])
  const inside = { name: 'root', items: 'none' }
  t.same(listErrors(folder.Errors(inside), 10, 64, 1000), [{ path: '/items', message: 'Expected array' }])
})

t.test('schemas the contract could not check completely are refused at registration with FST_RT_INVALID_CONTRACT', async (t) => {
  const refused: Array<[string, TSchema, RegExp]> = [
    ['a Record with an additionalProperties schema', Type.Object({ m: Type.Record(Type.String(), Type.Integer(), { additionalProperties: Type.String() }) }), /additionalProperties schema is not supported/],
    ['a reference to a type it does not define', Type.Object({ a: Type.Ref('Elsewhere') }), /refers to "Elsewhere", which it does not define/],
    ['a kind TypeBox cannot compile', Type.Object({ a: Type.Unsafe({ [Symbol.for('TypeBox.Kind')]: 'NoSuchKind' }) }), /cannot be compiled/]
  ]
  for (const [title, schema, message] of refused) {
    const contract = defineContract({ client: { go: schema }, server: {} })
    t.throws(() => contractHandler(contract, { go () {} }), { code: 'FST_RT_INVALID_CONTRACT', message }, title)
  }
  // The contract's own schemas are left as they were.
  const record = Type.Record(Type.String(), Type.Integer())
  const before = JSON.stringify(record)
  contractHandler(defineContract({ client: { go: record }, server: {} }), { go () {} })
  t.equal(JSON.stringify(record), before)
})

t.test('a recursive contract type: data thousands of levels deep, valid or not, is refused as too deep; within maxDepth it is checked and listed; the server goes on', async (t) => {
  const contract = defineContract({
    client: { tree: { data: Type.Recursive((Self) => Type.Object({ name: Type.String(), children: Type.Array(Self) })), reply: Type.Null() } },
    server: {}
  })
  const { url } = await build(t, (app) => {
    // Long enough to see a whole path 30 levels deep.
    app.get('/', { realtime: true }, contractHandler(contract, { tree: () => null }, { maxEchoLength: 400 }))
  })
  const c = await client(t, url)
  const tree = (depth: number, leafName: string): string => `${'{"name":"n","children":['.repeat(depth)}{"name":${leafName},"children":[]}${']}'.repeat(depth)}`
  // Valid at 3000 levels (the compiled check recursed past the stack), invalid at 600 (so did the error listing).
  for (const [depth, leaf, id] of [[3000, '"leaf"', 1], [600, '1', 2]] as const) {
    c.ws.send(`{"type":"tree","data":${tree(depth, leaf)},"id":${id}}`)
    t.match(JSON.parse(await c.text()), { type: 'error', data: { code: 'FST_RT_MESSAGE_TOO_DEEP' } }, `${depth} levels`)
  }
  c.ws.send(`{"type":"tree","data":${tree(30, '1')},"id":3}`)
  t.match(JSON.parse(await c.text()), { type: 'error', id: 3, data: { code: 'FST_RT_INVALID_MESSAGE_DATA', errors: [{ path: `${'/children/0'.repeat(30)}/name`, message: 'Expected string' }] } })
  c.ws.send(`{"type":"tree","data":${tree(30, '"leaf"')},"id":4}`)
  t.same(JSON.parse(await c.text()), { type: 'tree:reply', data: null, id: 4 })
})
