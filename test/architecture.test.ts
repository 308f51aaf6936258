import { readdir, readFile } from 'node:fs/promises'
import { dirname, join, posix, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import './support/process-guard.js'

// The layers of docs/ARCHITECTURE.md, top first. A module may import its own layer and the layers
// below it, never one above: data flows from the wiring through the handshake and the connection
// to the session, then the hub and the broker, and nothing below reaches back up.
// Each entry is a path under lib/: a folder ends in '/', the longest match wins.
const LAYERS: ReadonlyArray<readonly string[]> = [
  ['index.ts', 'route.ts', 'context.ts', 'decorator.ts', 'history-route.ts', 'snapshot-route.ts', 'room-route.ts', 'options/plugin.ts', 'testing/'],
  ['asyncapi/'],
  ['handshake/'],
  ['messages/', 'options/contract.ts'],
  ['connection/'],
  ['hub/', 'options/history.ts'],
  ['client/'],
  [
    'protocol.ts', 'protocol-schemas.ts', 'options/checks.ts', 'options/server-checks.ts', 'options/route.ts', 'options/guard.ts',
    'messages/contract.ts', 'errors.ts', 'close-codes.ts', 'metrics.ts', 'symbols.ts'
  ]
]

// The client runs in browsers from dist/client/ as it is: it and all it imports stay free of Node and packages.
const NODE_FREE = ['client/', 'protocol.ts', 'messages/contract.ts', 'options/checks.ts', 'close-codes.ts']
const NO_WS = ['hub/', 'messages/', 'client/', 'protocol.ts', 'options/']

const lib = fileURLToPath(new URL('../lib/', import.meta.url))

async function sources (folder: string): Promise<string[]> {
  const found: string[] = []
  for (const entry of await readdir(folder, { withFileTypes: true })) {
    const path = join(folder, entry.name)
    if (entry.isDirectory()) found.push(...await sources(path))
    else if (entry.name.endsWith('.ts')) found.push(relative(lib, path).split('\\').join('/'))
  }
  return found.sort()
}

/** Every `import`/`export ... from` specifier of a module; `typeOnly` when erased at run time. */
function specifiers (text: string): Array<{ spec: string, typeOnly: boolean }> {
  const found: Array<{ spec: string, typeOnly: boolean }> = []
  for (const match of text.matchAll(/^\s*(import|export)\b(\s+type\b)?[^'";]*?from\s+'([^']+)'/gm)) {
    found.push({ spec: match[3] as string, typeOnly: match[2] !== undefined })
  }
  for (const match of text.matchAll(/^\s*import\s+'([^']+)'/gm)) found.push({ spec: match[1] as string, typeOnly: false })
  for (const match of text.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g)) found.push({ spec: match[1] as string, typeOnly: false })
  return found
}

function layerOf (path: string): number {
  let best = -1
  let length = -1
  LAYERS.forEach((entries, index) => {
    for (const entry of entries) {
      const hit = entry.endsWith('/') ? path.startsWith(entry) : path === entry
      if (hit && entry.length > length) {
        best = index
        length = entry.length
      }
    }
  })
  return best
}

const matches = (path: string, entries: readonly string[]): boolean =>
  entries.some((entry) => entry.endsWith('/') ? path.startsWith(entry) : path === entry)

const files = await sources(lib)
/** Per module: what it imports from lib/ and from outside, and the part of both that loads at run time. */
interface Imports { local: string[], external: string[], runtimeLocal: string[], runtimeExternal: string[] }
const graph = new Map<string, Imports>()
for (const file of files) {
  const text = await readFile(join(lib, file), 'utf8')
  const imports: Imports = { local: [], external: [], runtimeLocal: [], runtimeExternal: [] }
  for (const { spec, typeOnly } of specifiers(text)) {
    const local = spec.startsWith('.')
    const target = local ? posix.normalize(posix.join(posix.dirname(file), spec)).replace(/\.js$/, '.ts') : spec
    ;(local ? imports.local : imports.external).push(target)
    if (!typeOnly) (local ? imports.runtimeLocal : imports.runtimeExternal).push(target)
  }
  graph.set(file, imports)
}

t.test('every module of lib/ has a layer', async (t) => {
  t.same(files.filter((file) => layerOf(file) === -1), [], 'modules missing from LAYERS')
})

t.test('imports go down the layers, never up', async (t) => {
  const upward: string[] = []
  for (const [file, { local }] of graph) {
    for (const target of local) {
      if (layerOf(target) < layerOf(file)) upward.push(`${file} -> ${target}`)
    }
  }
  t.same(upward, [], 'imports of a higher layer')
})

t.test('the hub, the session, the protocol and the client never touch ws', async (t) => {
  const offenders: string[] = []
  for (const [file, { local, external }] of graph) {
    if (!matches(file, NO_WS)) continue
    if (external.some((spec) => spec === 'ws' || spec.startsWith('@fastify/websocket'))) offenders.push(file)
    if (file.startsWith('hub/') && local.some((target) => target.startsWith('connection/'))) offenders.push(`${file} (connection/)`)
  }
  t.same(offenders, [])
})

t.test('the client and what it loads at run time need neither Node nor a package', async (t) => {
  const offenders: string[] = []
  const seen = new Set<string>()
  const visit = (file: string, from: string): void => {
    if (seen.has(file)) return
    seen.add(file)
    if (!matches(file, NODE_FREE)) offenders.push(`${from} -> ${file}`)
    const node = graph.get(file)
    if (node === undefined) return
    for (const spec of node.runtimeExternal) offenders.push(`${file} imports ${spec}`)
    for (const target of node.runtimeLocal) visit(target, file)
  }
  for (const file of files.filter((file) => file.startsWith('client/'))) visit(file, file)
  t.same(offenders, [])
})

t.test('no import cycle between modules', async (t) => {
  const cycles: string[] = []
  const state = new Map<string, 'open' | 'done'>()
  const walk = (file: string, path: string[]): void => {
    if (state.get(file) === 'done') return
    if (state.get(file) === 'open') {
      cycles.push([...path.slice(path.indexOf(file)), file].join(' -> '))
      return
    }
    state.set(file, 'open')
    for (const target of graph.get(file)?.local ?? []) walk(target, [...path, file])
    state.set(file, 'done')
  }
  for (const file of files) walk(file, [])
  t.same(cycles, [])
})

t.test('docs/ARCHITECTURE.md names every layer of this test', async (t) => {
  const doc = await readFile(join(dirname(lib.slice(0, -1)), 'docs', 'ARCHITECTURE.md'), 'utf8')
  for (const entries of LAYERS) {
    for (const entry of entries) t.ok(doc.includes(`lib/${entry}`), `lib/${entry} is in docs/ARCHITECTURE.md`)
  }
})

t.test('every test file loads the process guard, directly or through the helpers', async (t) => {
  const tests = fileURLToPath(new URL('.', import.meta.url))
  const missing: string[] = []
  const visit = async (folder: string): Promise<void> => {
    for (const entry of await readdir(folder, { withFileTypes: true })) {
      const path = join(folder, entry.name)
      if (entry.isDirectory()) {
        if (entry.name !== 'consumer' && entry.name !== 'support') await visit(path)
      } else if (entry.name.endsWith('.test.ts')) {
        const text = await readFile(path, 'utf8')
        if (!/from '(\.\.?\/)+support\/helpers\.js'|import '(\.\.?\/)+support\/process-guard\.js'/.test(text)) missing.push(relative(tests, path))
      }
    }
  }
  await visit(tests)
  t.same(missing, [])
})
