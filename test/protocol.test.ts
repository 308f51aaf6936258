import { readFile } from 'node:fs/promises'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { Kind, OptionalKind, type TSchema } from '@sinclair/typebox'
import './support/process-guard.js'
import { envelope, lostNotice, presenceNotice, replyType } from '../lib/protocol.js'
import { systemMessages } from '../lib/protocol-schemas.js'

const root = fileURLToPath(new URL('..', import.meta.url))

/** How the protocol page writes a schema: `string`, `null`, or `{ a, b? }` for an object. */
function shape (schema: TSchema): string {
  if (schema[Kind] === 'Object') {
    const properties = Object.entries(schema.properties as Record<string, TSchema>)
    return `{ ${properties.map(([name, property]) => property[OptionalKind] === 'Optional' ? `${name}?` : name).join(', ')} }`
  }
  return String(schema[Kind]).toLowerCase()
}

t.test('the protocol page lists every system message with its sender, the shape of its data and its answer', async (t) => {
  const page = await readFile(join(root, 'docs/protocol.md'), 'utf8')
  const rows = new Map<string, string[]>()
  for (const line of page.split('\n')) {
    const cells = line.split('|').slice(1, -1).map((cell) => cell.trim())
    const type = /^`([$a-z:]+)`$/.exec(cells[0] ?? '')?.[1]
    if (type !== undefined && cells.length === 4) rows.set(type, cells)
  }
  t.same([...rows.keys()].sort(), Object.keys(systemMessages).sort(), 'one row per system message')
  for (const [type, message] of Object.entries(systemMessages)) {
    const [, from, data, answer] = rows.get(type) ?? []
    t.equal(from, message.from, `${type} is sent by the ${message.from}`)
    t.equal(data, `\`${shape(message.data)}\``, `${type} carries ${shape(message.data)}`)
    t.equal(answer, message.reply === undefined ? '—' : `\`${message.reply}\``, `${type} is answered by ${message.reply ?? 'nothing'}`)
  }
})

t.test('envelopes: an undefined id is left out, replies and notices have their fixed types', async (t) => {
  t.equal(envelope('$pong', null), '{"type":"$pong","data":null}')
  t.equal(envelope('say', { text: 'hi' }, 7), '{"type":"say","data":{"text":"hi"},"id":7}')
  t.equal(replyType('join'), 'join:reply')
  t.same(JSON.parse(presenceNotice({ room: 'r', event: 'join', connectionId: 'c', userId: null, meta: null })), { type: '$presence', data: { room: 'r', event: 'join', connectionId: 'c', userId: null, meta: null } })
  t.same(JSON.parse(lostNotice({ room: 'r', epoch: 'e', offset: 3 })), { type: '$lost', data: { room: 'r', epoch: 'e', offset: 3 } })
})

/** The files a module loads at run time (`import type` left out), and the bare specifiers among them. */
async function runtimeGraph (entry: string): Promise<{ files: string[], packages: string[] }> {
  const files = new Set<string>()
  const packages = new Set<string>()
  const visit = async (file: string): Promise<void> => {
    if (files.has(file)) return
    files.add(file)
    const source = await readFile(file, 'utf8')
    for (const [, kind, specifier] of source.matchAll(/^(?:import|export)\s+(type\s+)?[^'"]*?from\s+'([^']+)'/gm)) {
      if (kind !== undefined) continue
      const target = specifier as string
      if (!target.startsWith('.')) packages.add(target)
      else await visit(join(dirname(file), target.replace(/\.js$/, '.ts')))
    }
  }
  await visit(join(root, entry))
  return { files: [...files].map((file) => relative(root, file)).sort(), packages: [...packages] }
}

t.test('the client loads only itself, the close codes, the protocol and the option checkers: no Node built-in, no package, no server code', async (t) => {
  const { files, packages } = await runtimeGraph('lib/client/index.ts')
  t.same(packages, [], 'no bare specifier (a browser loads dist/client/ as it is)')
  const shared = ['lib/close-codes.ts', 'lib/protocol.ts', 'lib/options/checks.ts']
  t.same(files.filter((file) => !file.startsWith('lib/client/') && !shared.includes(file)), [])
  t.ok(files.includes('lib/protocol.ts'), 'the client speaks the protocol module')
})
