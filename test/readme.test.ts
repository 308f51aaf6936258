import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { dirname, join, normalize } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { closeCodeOf, errors } from '../lib/errors.js'
import { clientErrorCodes } from '../lib/client/errors.js'
import { defaultSettings, normalizeOptions } from '../lib/options/route.js'
import { defaultGuardSettings } from '../lib/options/guard.js'
import { defaultHubSettings } from '../lib/hub/hub.js'
import { defaultHistoryLimits } from '../lib/hub/broker.js'
import { docFiles } from './consumer/snippets.js'

// The README and docs/ as a user reads them: the errors table is in docs/api.md, the option
// tables in docs/options.md (and the limits table in docs/operations.md).
const root = fileURLToPath(new URL('..', import.meta.url))
const pages = new Map<string, string>()
for (const doc of await docFiles(root)) pages.set(doc, await readFile(join(root, doc), 'utf8'))
const page = (doc: string): string => pages.get(doc) as string
const everything = [...pages.values()].join('\n')
import './support/process-guard.js'

// The server's codes (lib/errors.ts) and the client's (lib/client/errors.ts, no Node built-ins there).
const codes = [...Object.keys(errors), ...Object.keys(clientErrorCodes)]

// One row per code: | `FST_RT_...` | <HTTP status, close code or —> | <when> |
const ROW = /^\| `(FST_RT_[A-Z0-9_]+)` \| ([^|]+?) \| (.+) \|$/
const rows = new Map<string, { status: string, when: string }>()
const duplicates: string[] = []
for (const line of page('docs/api.md').split('\n')) {
  const match = ROW.exec(line)
  if (match === null) continue
  const [, code, status, when] = match as unknown as [string, string, string, string]
  if (rows.has(code)) duplicates.push(code)
  rows.set(code, { status, when })
}

t.test('every error code of the server and the client has a row in the errors table (docs/api.md)', async (t) => {
  t.same(codes.filter((code) => !rows.has(code)), [], 'codes missing from the table')
  t.same(duplicates, [], 'codes listed twice')
})

t.test('every FST_RT_ code the README and docs/ mention exists', async (t) => {
  const mentioned = new Set(everything.match(/FST_RT_[A-Z0-9_]+/g) ?? [])
  t.ok(mentioned.size > 0)
  t.same([...mentioned].filter((code) => !codes.includes(code)), [], 'unknown codes in the docs')
})

t.test('each row gives the HTTP status or the close code its error carries', async (t) => {
  for (const [code, { status, when }] of rows) {
    t.ok(when.trim().length > 0, `${code} says when it is raised`)
    const Ctor = errors[code as keyof typeof errors]
    if (Ctor === undefined) continue
    const closeCode = closeCodeOf(code)
    if (/^\d{3}$/.test(status)) {
      t.equal(status, String(new Ctor().statusCode), `${code} answers ${status}`)
    } else if (/^\d{4}$/.test(status)) {
      t.ok(Number(status) >= 1000 && Number(status) <= 4999, `${code} gives a close code`)
      if (closeCode !== undefined) t.equal(status, String(closeCode), `${code} closes with ${closeCode}`)
    } else {
      t.equal(status, '—', `${code} has neither an HTTP status nor a close code`)
      t.equal(closeCode, undefined, `${code} is paired with no close code`)
    }
  }
})

/** The rows of the tables under `heading`, up to the next heading: first cell's name -> cells. */
function optionRows (doc: string, heading: string): Map<string, string[]> {
  const lines = page(doc).split('\n')
  const start = lines.indexOf(heading)
  if (start === -1) throw new Error(`${doc} has no heading ${heading}`)
  const found = new Map<string, string[]>()
  for (const line of lines.slice(start + 1)) {
    if (line.startsWith('#')) break
    const cells = line.split(/(?<!\\)\|/).slice(1, -1).map((cell) => cell.trim())
    const name = /^`([A-Za-z./-]+)`$/.exec(cells[0] ?? '')?.[1]
    if (name !== undefined) found.set(name, cells)
  }
  return found
}

/** How a default is written in the tables: `10000`, `null`, `true`, `[]`. */
function written (value: unknown): string {
  return `\`${Array.isArray(value) ? JSON.stringify(value) : String(value)}\``
}

t.test('the route options table has every route option with the default the code uses', async (t) => {
  const table = optionRows('docs/options.md', '## Route options')
  t.same([...table.keys()].sort(), Object.keys(defaultSettings).sort(), 'one row per option, no other')
  for (const [name, value] of Object.entries(defaultSettings)) {
    const cell = table.get(name)?.[2] ?? ''
    if (name === 'compress') t.match(cell, /^`false`/, 'compress: off')
    else if (name === 'allowedOrigins') t.match(cell, /^unset/, 'allowedOrigins: unset')
    else t.ok(cell.startsWith(written(value)), `${name}: ${cell} is ${written(value)}`)
  }
})

t.test('the compress parameters table has every parameter with its default', async (t) => {
  const compress = normalizeOptions({ compress: true }).compress as unknown as Record<string, unknown>
  const table = optionRows('docs/options.md', '### `compress` parameters')
  for (const [name, value] of Object.entries(compress)) {
    t.equal(table.get(name)?.[1], written(value), `${name} defaults to ${written(value)}`)
  }
})

t.test('the register()-only options are in their tables with their defaults', async (t) => {
  const rooms = optionRows('docs/options.md', '## Rooms options')
  t.same([...rooms.keys()].sort(), ['broker', 'history', 'maxRoomNameLength', 'maxRooms', 'maxRoomsPerConnection', 'presence', 'slowConsumerBytes'])
  for (const [name, value] of Object.entries(defaultHubSettings)) t.ok(rooms.get(name)?.[1]?.startsWith(written(value)), name)
  t.equal(rooms.get('history')?.[1], `\`{ size: ${defaultHistoryLimits.size}, ttlMs: ${defaultHistoryLimits.ttlMs} }\``)
  const limits = optionRows('docs/options.md', '## Connection limits, logging and metrics')
  t.same([...limits.keys()].sort(), ['asyncapi', 'handshakeTimeout', 'maxConnections', 'maxConnectionsPerIp', 'metricsRoute', 'redactQuery'])
  for (const name of ['maxConnections', 'maxConnectionsPerIp', 'handshakeTimeout'] as const) {
    t.equal(limits.get(name)?.[1], written(defaultGuardSettings[name]), name)
  }
  t.equal(limits.get('redactQuery')?.[1], defaultGuardSettings.redactQuery.map((name) => `\`${name}\``).join(', '))
  // The operations page's limits table repeats some of these: it must agree.
  const operations = optionRows('docs/operations.md', '## Limits and their defaults')
  const numbers: Record<string, number> = { ...defaultSettings as unknown as Record<string, number>, ...defaultHubSettings, ...defaultGuardSettings as unknown as Record<string, number> }
  for (const [name, cells] of operations) {
    if (typeof numbers[name] === 'number') t.ok(cells[2]?.startsWith(written(numbers[name])), `operations: ${name}`)
  }
})

t.test("the API reference's entry points table lists what each entry point exports", async (t) => {
  const rows = optionRows('docs/api.md', '## Entry points')
  const modules: Record<string, { module: Record<string, unknown>, complete: boolean }> = {
    'fastify-realtime': { module: await import('../lib/index.js'), complete: true },
    // It also exports two helpers of the router (clientSpec, isTypeBoxSchema) that the docs leave out.
    'fastify-realtime/contract': { module: await import('../lib/messages/contract.js'), complete: false },
    'fastify-realtime/client': { module: await import('../lib/client/index.js'), complete: true },
    'fastify-realtime/redis': { module: await import('../lib/hub/redis/index.js'), complete: true },
    'fastify-realtime/testing': { module: await import('../lib/testing/index.js'), complete: true }
  }
  t.same([...rows.keys()].sort(), Object.keys(modules).sort())
  for (const [entry, { module, complete }] of Object.entries(modules)) {
    const listed = [...(rows.get(entry)?.[1] ?? '').matchAll(/`([A-Za-z_]+)`/g)].map((match) => match[1] as string)
    t.same(listed.filter((name) => !(name in module)), [], `${entry}: every name listed is exported`)
    if (complete) t.same(Object.keys(module).filter((name) => name !== 'default' && !listed.includes(name)), [], `${entry}: every export is listed`)
  }
})

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens. */
function anchor (heading: string): string {
  return heading.toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-')
}

function anchorsOf (text: string): Set<string> {
  const found = new Set<string>()
  let fence = false
  for (const line of text.split('\n')) {
    if (line.startsWith('```')) fence = !fence
    const heading = fence ? null : /^#+ (.+)$/.exec(line)
    if (heading !== null) found.add(anchor(heading[1] as string))
  }
  return found
}

t.test('every relative link of the README and docs/ reaches a file, and a heading of it', async (t) => {
  const broken: string[] = []
  for (const [doc, text] of pages) {
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/.test(target as string)) continue
      const [path, hash] = (target as string).split('#') as [string, string | undefined]
      const file = path === '' ? doc : normalize(join(dirname(doc), path))
      if (!existsSync(join(root, file))) {
        broken.push(`${doc}: ${target as string} (no such file)`)
      } else if (hash !== undefined && !anchorsOf(await readFile(join(root, file), 'utf8')).has(hash)) {
        broken.push(`${doc}: ${target as string} (no such heading)`)
      }
    }
  }
  t.same(broken, [])
})

t.test('every test the security page names as a proof exists', async (t) => {
  const cited = [...page('docs/security.md').matchAll(/`(test\/[\w/.-]+\.test\.ts)`: “([^”]+)”/g)]
  t.ok(cited.length >= 15, `the threats table cites its tests (${cited.length})`)
  for (const [, file = '', title = ''] of cited) {
    const source = await readFile(join(root, file), 'utf8')
    t.ok(source.includes(title), `${file} has a test "${title}"`)
  }
})
