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

t.test('fastify and TypeBox are peers (one copy in the app), ioredis an optional one', async (t) => {
  for (const name of ['fastify', '@sinclair/typebox', 'ioredis']) {
    t.ok(pkg.peerDependencies[name], `${name} is a peer`)
    t.notOk(pkg.dependencies[name], `${name} is not a dependency`)
    t.ok(pkg.devDependencies[name], `${name} is installed for the tests`)
  }
  t.same(pkg.peerDependenciesMeta, { ioredis: { optional: true } })
})

t.test('runtime dependencies are ranges, and the types the declarations import come with them', async (t) => {
  for (const [name, range] of Object.entries(pkg.dependencies)) t.match(range, /^\^\d+\.\d+\.\d+$/, `${name} on a caret range`)
  t.ok(pkg.dependencies['@types/ws'], 'dist/*.d.ts import ws')
})
