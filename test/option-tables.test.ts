// The option tables of the client, tokenAuth(), roomHistoryRoute() and RedisBroker name every
// option the code accepts, and no other, with the default the code uses. (The plugin's and the
// routes' tables are checked in readme.test.ts, contractHandler()'s in options-checked.test.ts.)
import t, { type Test } from 'tap'
import './support/process-guard.js'
import { clientDefaults, clientOptionNames } from '../lib/client/options.js'
import { tokenAuthDefaults, tokenAuthOptionNames } from '../lib/handshake/token-auth.js'
import { historyRouteDefaults, historyRouteOptionNames } from '../lib/history-route.js'
import { optionNames as redisOptionNames, redisBrokerDefaults } from '../lib/hub/redis/options.js'
import { optionTable } from './support/doc-tables.js'

/** A value as the tables write it: `500`, `'reject'`, `Infinity`, `['a', 'b']`, `{ size: 100 }`. */
function code (value: unknown): string {
  if (typeof value === 'string') return `'${value}'`
  if (Array.isArray(value)) return `[${value.map(code).join(', ')}]`
  if (typeof value === 'object' && value !== null) return `{ ${Object.entries(value).map(([key, item]) => `${key}: ${code(item)}`).join(', ')} }`
  return String(value)
}

/** A default as its cell shows it; a function default by what it is. */
function written (value: unknown): string {
  if (value === Math.random) return '`Math.random`'
  if (typeof value === 'function') return value.name === 'ignore' ? 'ignore' : `a function the table cannot name (${value.name})`
  return `\`${code(value)}\``
}

interface Table {
  doc: string
  heading: string
  /** Every option the code accepts, nested ones as `parent.key`. */
  names: readonly string[]
  defaults: Readonly<Record<string, unknown>>
  /** The cells of the options without a default value in the code: `required`, `none`, ... */
  otherwise: Readonly<Record<string, string>>
}

async function checkTable (t: Test, { doc, heading, names, defaults, otherwise }: Table): Promise<void> {
  const rows = await optionTable(doc, heading)
  const where = `${doc}, section ${heading.replace(/^#+ /, '')}`
  t.same([...rows.keys()].filter((name) => !names.includes(name)), [], `${where}: rows that name no option the code accepts`)
  t.same(names.filter((name) => !rows.has(name)), [], `${where}: options the code accepts that have no row`)
  t.same(Object.keys(defaults).filter((name) => !names.includes(name)), [], `${where}: defaults of options the code does not accept`)
  for (const name of names) {
    const cell = rows.get(name)?.[1]
    if (cell === undefined) continue
    const expected = name in defaults ? written(defaults[name]) : otherwise[name]
    t.equal(cell, expected, `${where}: ${name}'s default is written ${cell}, the code's is ${expected ?? '(none listed in this test)'}`)
  }
}

t.test("the client's options table (docs/client.md) has one row per option, with the code's default", async (t) => {
  const nested: Record<string, readonly string[]> = { backoff: clientOptionNames.backoff, queue: clientOptionNames.queue }
  const names = clientOptionNames.options.flatMap((name) => nested[name]?.map((key) => `${name}.${key}`) ?? [name])
  await checkTable(t, {
    doc: 'docs/client.md',
    heading: '# The client',
    names,
    defaults: clientDefaults,
    // The WebSocket class is looked up at construction, so it has no fixed default.
    otherwise: { url: 'required', token: 'none', protocols: 'none', WebSocket: '`globalThis.WebSocket`' }
  })
})

t.test("tokenAuth()'s options table (docs/security.md) has one row per option, with the code's default", async (t) => {
  await checkTable(t, { doc: 'docs/security.md', heading: '## Handshake token auth', names: tokenAuthOptionNames, defaults: tokenAuthDefaults, otherwise: { verify: 'required' } })
})

t.test("roomHistoryRoute()'s options table (docs/rooms.md) has one row per option, with the code's default", async (t) => {
  await checkTable(t, { doc: 'docs/rooms.md', heading: '### History over HTTP', names: historyRouteOptionNames, defaults: historyRouteDefaults, otherwise: { authorize: 'required', contract: 'none' } })
})

t.test("RedisBroker's options table (docs/rooms.md) has one row per option, with the code's default", async (t) => {
  await checkTable(t, { doc: 'docs/rooms.md', heading: '## Scaling out with Redis', names: redisOptionNames, defaults: redisBrokerDefaults, otherwise: {} })
})

t.test('a table missing, or a row naming no option, fails loudly', async (t) => {
  await t.rejects(optionTable('docs/rooms.md', '## No such heading'), /docs\/rooms\.md has no heading "## No such heading"/)
  await t.rejects(optionTable('docs/rooms.md', '## Recovery'), /has no option table under "## Recovery"/)
})
