import { readFile } from 'node:fs/promises'
import t from 'tap'
import './support/process-guard.js'
import realtime from '../lib/index.js'

interface PackageJson {
  peerDependencies: Record<string, string>
  peerDependenciesMeta: Record<string, { optional?: boolean }>
  dependencies: Record<string, string>
  devDependencies: Record<string, string>
}

const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as PackageJson

t.test('fastify-plugin checks the same fastify range the package declares as its peer', async (t) => {
  const meta = (realtime as unknown as Record<symbol, { fastify?: string, name?: string }>)[Symbol.for('plugin-meta')]
  t.equal(meta?.fastify, pkg.peerDependencies.fastify)
  t.equal(meta?.name, 'fastify-realtime')
})

t.test('fastify and TypeBox are peers (one copy in the app), ioredis and the AsyncAPI page\'s component optional ones', async (t) => {
  for (const name of ['fastify', '@sinclair/typebox', 'ioredis', '@asyncapi/react-component']) {
    t.ok(pkg.peerDependencies[name], `${name} is a peer`)
    t.notOk(pkg.dependencies[name], `${name} is not a dependency`)
    t.ok(pkg.devDependencies[name], `${name} is installed for the tests`)
  }
  t.same(pkg.peerDependenciesMeta, { '@asyncapi/react-component': { optional: true }, ioredis: { optional: true } })
})

t.test('runtime dependencies are ranges, and the types the declarations import come with them', async (t) => {
  for (const [name, range] of Object.entries(pkg.dependencies)) t.match(range, /^\^\d+\.\d+\.\d+$/, `${name} on a caret range`)
  t.ok(pkg.dependencies['@types/ws'], 'dist/*.d.ts import ws')
})

t.test('the published declarations hold nothing internal (tsconfig.build.json strips @internal)', async (t) => {
  const { readdir } = await import('node:fs/promises')
  const dist = new URL('../dist/', import.meta.url)
  // npm test builds dist/ before tap runs; a lone tap run without a build has nothing to check.
  const files = await readdir(dist, { recursive: true }).catch(() => null)
  if (files === null) {
    t.comment('no dist/: run npm run build (npm test does)')
    return
  }
  const declarations = files.filter((file) => file.endsWith('.d.ts'))
  t.ok(declarations.length > 10, `${declarations.length} declaration files`)
  const leaks: string[] = []
  for (const file of declarations) {
    const text = await readFile(new URL(file, dist), 'utf8')
    if (text.includes('@internal')) leaks.push(file)
  }
  t.same(leaks, [])
  const connection = await readFile(new URL('connection/connection.d.ts', dist), 'utf8')
  for (const member of ['sendShared', 'onDeadline', 'attach(', 'readonly plugin']) t.notOk(connection.includes(member), `RealtimeConnection's ${member} is not published`)
})
