import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { chromium, type Browser, type Page } from 'playwright-core'
import { freePort, within } from './support/helpers.js'

// The demo (example/) in a real browser: Debian's chromium driven by playwright-core, the demo
// server as a child process running the built package. test/support/coverage-map.js keeps this test out of
// coverage: it exercises dist/, and lib/'s coverage comes from the unit tests.

const CHROMIUM = '/usr/bin/chromium'
const root = fileURLToPath(new URL('..', import.meta.url))
/** Every wait is bounded by this: a broken page fails the test instead of hanging it. */
const waitMs = 20_000

if (!existsSync(CHROMIUM)) {
  const hint = process.getuid?.() === 0 ? '`apt-get update && apt-get install -y chromium`' : '`sudo apt-get install chromium` (Debian/Ubuntu)'
  t.comment(`!!! ${CHROMIUM} is missing: the browser test of the demo is skipped; install it with ${hint}, as .ci/run does`)
  t.plan(0, `${CHROMIUM} is missing (apt-get install chromium)`)
} else {
  t.setTimeout(120_000)
  void t.test('the demo chat in two browsers, across a server restart, and its AsyncAPI page', demo)
}

/** Builds dist/ when a lib/ source is newer than its output (npm test builds first; this covers `npx tap` alone). */
function buildIfStale (): void {
  const stale = (dir: string): boolean => readdirSync(path.join(root, 'lib', dir), { withFileTypes: true }).some((entry) => {
    const rel = path.join(dir, entry.name)
    if (entry.isDirectory()) return stale(rel)
    if (!entry.name.endsWith('.ts')) return false
    const built = path.join(root, 'dist', rel.replace(/\.ts$/, '.js'))
    return !existsSync(built) || statSync(built).mtimeMs < statSync(path.join(root, 'lib', rel)).mtimeMs
  })
  if (stale('')) execFileSync(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' })
}

interface Server {
  child: ChildProcess
  url: string
  output: () => string
}

/** Starts example/server.js on `port` and resolves once it printed its URL. */
async function startServer (port: number): Promise<Server> {
  const env: NodeJS.ProcessEnv = { ...process.env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn' }
  // The memory broker: a restart loses the rooms' history, which is what the page must handle.
  delete env.REDIS_URL
  const child = spawn(process.execPath, [path.join(root, 'example/server.js')], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  const printed = new Promise<string>((resolve, reject) => {
    const look = (): void => {
      const match = /fastify-realtime demo: (http:\S+)/.exec(output)
      if (match !== null) resolve(match[1] as string)
    }
    child.stdout.on('data', look)
    child.once('exit', (code, signal) => { reject(new Error(`the demo server exited (${code ?? signal}) before listening:\n${output}`)) })
  })
  const url = await within(waitMs, 'the demo server printing its URL', printed)
  return { child, url, output: () => output }
}

/** SIGTERM, as Ctrl-C or a process manager would, and waits for the graceful exit. */
async function stopServer (server: Server): Promise<number | null> {
  if (server.child.exitCode !== null) return server.child.exitCode
  const exited = once(server.child, 'exit')
  server.child.kill('SIGTERM')
  const [code] = await within(waitMs, 'the demo server exiting after SIGTERM', exited) as [number | null]
  return code
}

async function say (page: Page, text: string): Promise<void> {
  await page.locator('#send:not([disabled])').waitFor()
  await page.fill('#text', text)
  await page.click('#send')
}

/** Waits until the page shows a message with this text. */
async function sees (page: Page, text: string): Promise<void> {
  await page.locator('#messages li p', { hasText: text }).waitFor()
}

async function online (page: Page): Promise<string[]> {
  return await page.locator('#online li').evaluateAll((items) => items.map((item) => (item as HTMLElement).dataset.user ?? ''))
}

async function demo (t: Test): Promise<void> {
  buildIfStale()
  const port = await freePort()
  let server = await startServer(port)
  t.teardown(async () => { await stopServer(server) })
  t.match(server.url, `http://127.0.0.1:${port}`, 'the server prints its URL')

  const browser: Browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: waitMs
  })
  t.teardown(() => browser.close())

  const errors: string[] = []
  async function open (name: string): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1100, height: 720 } })
    const page = await context.newPage()
    page.setDefaultTimeout(waitMs)
    page.on('pageerror', (error) => { errors.push(`${name}: ${error.message}`) })
    await page.goto(server.url)
    return page
  }

  // ada signs in with a demo user's button, zoe as a guest (POST /login gives her a token).
  const ada = await open('ada')
  mkdirSync(path.join(root, '.screenshots'), { recursive: true })
  await ada.screenshot({ path: path.join(root, '.screenshots/demo-sign-in.png') })
  await ada.fill('#room', 'lobby')
  await ada.click('[data-user="ada"]')
  await ada.locator('#state[data-state="open"]').waitFor()
  await ada.locator('#online li[data-user="ada"]').waitFor()

  const zoe = await open('zoe')
  await zoe.fill('#room', 'lobby')
  await zoe.fill('#name', 'zoe')
  await zoe.click('#guest')
  await zoe.locator('#state[data-state="open"]').waitFor()

  // Each sees both in the online list: zoe from her `who`, ada from zoe's $presence join notice.
  for (const page of [ada, zoe]) await page.locator('#online li[data-user="zoe"]').waitFor()
  await zoe.locator('#online li[data-user="ada"]').waitFor()
  t.same(await online(ada), ['ada', 'zoe'], 'ada sees both online')
  t.same(await online(zoe), ['ada', 'zoe'], 'zoe sees both online')

  await say(ada, 'hello zoe')
  await sees(zoe, 'hello zoe')
  await say(zoe, 'hi ada!')
  for (const page of [ada, zoe]) await sees(page, 'hi ada!')
  t.pass('ada and zoe exchange messages')

  // Typing sends a volatile `typing`; the others show it.
  await zoe.fill('#text', 'typing…')
  await ada.locator('#typing', { hasText: 'zoe is typing' }).waitFor()
  await zoe.fill('#text', '')
  t.pass('ada sees zoe typing')

  // A late joiner loads the room's past from GET /snapshot, joins from its position, then leaves: the others see it go.
  const bob = await open('bob')
  await bob.fill('#room', 'lobby')
  await bob.click('[data-user="bob"]')
  await sees(bob, 'hello zoe')
  await sees(bob, 'hi ada!')
  t.same(await bob.locator('#messages li p').allTextContents(), ['hello zoe', 'hi ada!'], 'a late joiner gets the history, in order')
  await ada.locator('#online li[data-user="bob"]').waitFor()
  await bob.context().close()
  await ada.locator('#online li[data-user="bob"]').waitFor({ state: 'detached' })
  t.pass('the online list follows joins and leaves')

  // Restart: SIGTERM closes every socket with 1001, the pages reconnect to the new process.
  const code = await stopServer(server)
  t.equal(code, 0, 'the server exits cleanly on SIGTERM')
  for (const page of [ada, zoe]) await page.locator('#state[data-state="reconnecting"]').waitFor()
  t.pass('both pages show that they are reconnecting')
  await zoe.screenshot({ path: path.join(root, '.screenshots/demo-reconnecting.png') })
  server = await startServer(port)
  for (const page of [ada, zoe]) await page.locator('#state[data-state="open"]').waitFor()
  t.pass('both pages are connected again')

  // A new process has new epochs: nothing could be replayed, so each page says so and reloads.
  for (const page of [ada, zoe]) {
    await page.locator('#notice[data-kind="warn"]', { hasText: 'history reloaded' }).waitFor()
    await page.locator('#online li[data-user="ada"]').waitFor()
    await page.locator('#online li[data-user="zoe"]').waitFor()
  }
  t.pass('both pages show the reload notice and both users online')

  await say(zoe, 'are you back?')
  await sees(ada, 'are you back?')
  await say(ada, 'yes, after the restart')
  for (const page of [ada, zoe]) await sees(page, 'yes, after the restart')
  // The memory broker forgot the old messages; the page shows what the server has now.
  t.same(await ada.locator('#messages li p').allTextContents(), ['are you back?', 'yes, after the restart'], 'the history was reloaded from the new server')

  await ada.screenshot({ path: path.join(root, '.screenshots/demo-ada.png') })
  await zoe.screenshot({ path: path.join(root, '.screenshots/demo-zoe.png') })

  // The chat's AsyncAPI page: the document rendered by the bundle the server itself serves.
  const docs = await (await browser.newContext()).newPage()
  docs.setDefaultTimeout(waitMs)
  docs.on('pageerror', (error) => { errors.push(`asyncapi page: ${error.message}`) })
  const loaded: string[] = []
  docs.on('request', (request) => { loaded.push(request.url()) })
  await docs.goto(`${server.url}/asyncapi`)
  await docs.locator('#introduction', { hasText: 'fastify-realtime demo chat 0.1.0' }).waitFor()
  // The operations by id, and the messages by their wire type.
  for (const text of ['chat.say', 'chat.who', 'chat.message', 'chat.system.join', 'say', 'who', 'message', '$join', '$presence', '$lost']) {
    await docs.getByText(text, { exact: true }).filter({ visible: true }).first().waitFor()
  }
  t.pass('the AsyncAPI page shows the chat\'s message types: say, who, message, and the system messages')
  t.same(loaded.filter((url) => !url.startsWith(server.url)), [], 'the page loads nothing from elsewhere')
  await docs.screenshot({ path: path.join(root, '.screenshots/demo-asyncapi.png') })
  t.same(errors, [], 'no errors in the pages')
}
