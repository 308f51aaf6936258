import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import type { IncomingMessage } from 'node:http'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { Type } from '@sinclair/typebox'
import type { FastifyInstance, FastifyServerOptions } from 'fastify'
import t, { type Test } from 'tap'
import WebSocket, { type ClientOptions } from 'ws'
import { contractHandler, defineContract, type RealtimeConnection, type RealtimeHubOptions, type RealtimePluginOptions } from '../lib/index.js'
import { build, Client, deferred, echoHandler, freePort, within } from './support/helpers.js'

// The plugin behind a real nginx on loopback, configured as the README's "Running behind nginx"
// says: the upgrade, messages both ways, close codes, the client's address and heartbeats all go
// through the proxy. test/support/coverage-map.js keeps this test out of coverage: whether nginx is
// installed must not decide whether lib/ is covered.

const NGINX = '/usr/sbin/nginx'
/** Every wait is bounded by this: a broken proxy fails the test instead of hanging it. */
const waitMs = 10_000
/** nginx's proxy_read_timeout under /hb/, in seconds: longer than the heartbeat, short enough to see it fire. */
const shortReadTimeoutS = 1

if (!existsSync(NGINX)) {
  const hint = process.getuid?.() === 0 ? '`apt-get update && apt-get install -y nginx`' : '`sudo apt-get install nginx` (Debian/Ubuntu)'
  t.comment(`!!! ${NGINX} is missing: the tests through an nginx reverse proxy are skipped; install it with ${hint}, as .ci/run does`)
  t.plan(0, `${NGINX} is missing (apt-get install nginx)`)
} else {
  t.setTimeout(60_000)
}

/**
 * The proxy configuration the README shows, with every path nginx writes inside `dir`. The Host
 * header goes on as the client sent it ($http_host, port included): the plugin compares a browser's
 * Origin with it, and $host would drop the port nginx listens on.
 */
function nginxConfig (dir: string, port: number, appPort: number): string {
  const proxy = (readTimeoutS: number): string => `
      proxy_pass http://127.0.0.1:${appPort};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_read_timeout ${readTimeoutS}s;`
  return `daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log stderr warn;

events {
  worker_connections 64;
}

http {
  access_log ${dir}/access.log;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;

  server {
    listen 127.0.0.1:${port};

    # Longer than any heartbeat of the app: an idle socket with heartbeats is never cut.
    location / {${proxy(60)}
    }

    # Short, to show that heartbeats keep a connection open past it and that without them nginx cuts it.
    location /hb/ {${proxy(shortReadTimeoutS)}
    }
  }
}
`
}

interface Nginx {
  /** ws://127.0.0.1:<proxy port> */
  url: string
  port: number
  output: () => string
}

/** Connects to `port` until it accepts, retrying on ECONNREFUSED a bounded number of times. */
async function waitForListener (port: number, child: ChildProcess, output: () => string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`nginx exited (${child.exitCode ?? child.signalCode}) before listening:\n${output()}`)
    }
    const socket = net.connect(port, '127.0.0.1')
    try {
      await within(waitMs, `connecting to nginx on ${port}`, Promise.race([
        once(socket, 'connect'),
        once(child, 'exit').then(() => { throw new Error(`nginx exited before listening:\n${output()}`) })
      ]))
      return
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ECONNREFUSED' || attempt === 100) throw error
      await new Promise((resolve) => setTimeout(resolve, 20))
    } finally {
      socket.destroy()
    }
  }
}

/** Starts nginx in front of 127.0.0.1:`appPort` and stops it on teardown. */
async function startNginx (t: Test, appPort: number): Promise<Nginx> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'frt-nginx-'))
  // As root, nginx's workers run as nobody: they must be able to enter the directory.
  chmodSync(dir, 0o755)
  const port = await freePort()
  const conf = path.join(dir, 'nginx.conf')
  writeFileSync(conf, nginxConfig(dir, port, appPort))
  // -e stderr: the log nginx writes before it has read the configuration (Debian's default is under /var/log).
  const child = spawn(NGINX, ['-e', 'stderr', '-c', conf, '-p', dir], { stdio: ['ignore', 'pipe', 'pipe'] })
  let text = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { text += chunk })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { text += chunk })
  const output = (): string => text
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit')
      // SIGTERM is nginx's fast shutdown: it does not wait for open WebSocket connections.
      child.kill('SIGTERM')
      await within(waitMs, 'nginx exiting after SIGTERM', exited).catch(() => { child.kill('SIGKILL') })
    }
    rmSync(dir, { recursive: true, force: true })
  })
  await waitForListener(port, child, output)
  return { url: `ws://127.0.0.1:${port}`, port, output }
}

interface Proxied {
  app: FastifyInstance
  /** The app's own port, not the proxy's. */
  appPort: number
  nginx: Nginx
}

/** An app built with test/support/helpers.ts build() and an nginx of its own in front of it. */
async function proxied (
  t: Test,
  setup: (app: FastifyInstance) => void | Promise<void>,
  options: RealtimePluginOptions & RealtimeHubOptions = {},
  serverOptions: FastifyServerOptions = {}
): Promise<Proxied> {
  const { app, port } = await build(t, setup, options, serverOptions)
  const nginx = await startNginx(t, port)
  return { app, appPort: port, nginx }
}

/** A client connected through the proxy, with the handshake response; terminated on teardown. */
async function connect (t: Test, url: string, options?: ClientOptions): Promise<{ client: Client, response: IncomingMessage }> {
  const ws = new WebSocket(url, options)
  t.teardown(() => { ws.terminate() })
  const client = new Client(ws)
  const upgraded = once(ws, 'upgrade') as Promise<[IncomingMessage]>
  const [[response]] = await within(waitMs, `connecting to ${url}`, Promise.all([upgraded, once(ws, 'open')]))
  return { client, response }
}

/** The HTTP status of a handshake the server refused. */
async function refused (url: string, options?: ClientOptions): Promise<number> {
  const ws = new WebSocket(url, options)
  const [request, response] = await within(waitMs, `the refusal of ${url}`, once(ws, 'unexpected-response')) as [{ destroy: () => void }, IncomingMessage]
  request.destroy()
  return response.statusCode as number
}

async function json (client: Client): Promise<Record<string, unknown>> {
  return JSON.parse(await within(waitMs, 'the next message', client.text())) as Record<string, unknown>
}

const chat = defineContract({
  client: {
    echo: { data: Type.Object({ text: Type.String() }), reply: Type.Object({ text: Type.String() }) },
    say: Type.Object({ room: Type.String(), text: Type.String() })
  },
  server: {
    message: Type.Object({ text: Type.String() })
  }
})

const chatRoute = contractHandler(chat, {
  echo: ({ text }) => ({ text }),
  async say ({ room, text }, ctx) { await ctx.rooms.publish(room, 'message', { text }) }
}, { rooms: { authorize: (room) => room === 'lobby' } })

/** Reports the address and headers the app saw for this connection, then closes. */
async function whoAmI (conn: RealtimeConnection): Promise<void> {
  const { request } = conn
  await conn.sendJson({ ip: request.ip, forwardedFor: request.headers['x-forwarded-for'] ?? null, host: request.headers.host })
}

if (existsSync(NGINX)) {
  t.test('the upgrade goes through nginx and messages flow both ways', async (t) => {
    const { nginx } = await proxied(t, (app) => { app.get('/echo', { realtime: true }, echoHandler) })
    const { client, response } = await connect(t, `${nginx.url}/echo`)
    t.equal(response.statusCode, 101, 'the client gets 101 Switching Protocols')
    t.match(response.headers.server, /^nginx/, 'from nginx, not from the app directly')
    t.equal(response.headers.upgrade?.toLowerCase(), 'websocket', 'with Upgrade: websocket passed back')

    client.ws.send('hello through nginx')
    t.equal(await within(waitMs, 'the text echo', client.text()), 'hello through nginx', 'text goes there and back')
    const big = Buffer.alloc(1024 * 1024, 7)
    client.ws.send(big)
    const echoed = await within(waitMs, 'the binary echo', client.next())
    t.ok(echoed.isBinary && echoed.data.equals(big), 'a 1 MiB binary message goes there and back whole')

    client.ws.close(1000)
    t.equal((await within(waitMs, 'the close', client.closed)).code, 1000, 'a normal close ends it')
  })

  t.test('a contract route answers requests and delivers room messages through nginx', async (t) => {
    const { nginx } = await proxied(t, (app) => { app.get('/chat', { realtime: true }, chatRoute) })
    const { client: ada } = await connect(t, `${nginx.url}/chat`)
    const { client: bob } = await connect(t, `${nginx.url}/chat`)

    ada.ws.send(JSON.stringify({ type: 'echo', data: { text: 'ping?' }, id: 1 }))
    t.same(await json(ada), { type: 'echo:reply', data: { text: 'ping?' }, id: 1 }, 'the request gets its reply')

    for (const [client, id] of [[ada, 2], [bob, 3]] as const) {
      client.ws.send(JSON.stringify({ type: '$join', data: { room: 'lobby' }, id }))
      t.match(await json(client), { type: '$join:reply', data: { room: 'lobby' }, id }, 'joined the room')
    }
    ada.ws.send(JSON.stringify({ type: 'say', data: { room: 'lobby', text: 'hi all' } }))
    for (const client of [ada, bob]) {
      t.match(await json(client), { type: 'message', data: { text: 'hi all' }, room: 'lobby', offset: 1 }, 'every member gets the room message')
    }
  })

  t.test('close codes and reasons pass through nginx in both directions', async (t) => {
    const seen = deferred<{ code: unknown, reason: unknown, closeCode: number | null }>()
    const { nginx } = await proxied(t, (app) => {
      app.get('/close', { realtime: true }, async (conn) => {
        const message = await conn.receive()
        if (message.type === 'text' && message.data === 'close me') {
          await conn.close({ code: 4000, reason: 'server says bye' })
        } else if (message.type === 'close') {
          seen.resolve({ code: message.data, reason: message.extra, closeCode: conn.closeCode })
        }
      })
    })

    const { client: first } = await connect(t, `${nginx.url}/close`)
    first.ws.send('close me')
    t.same(await within(waitMs, 'the server close', first.closed), { code: 4000, reason: 'server says bye' }, 'the client sees the server\'s 4000 and its reason')

    const { client: second } = await connect(t, `${nginx.url}/close`)
    second.ws.close(4001, 'client says bye')
    t.same(await within(waitMs, 'the server seeing the close', seen.promise), { code: 4001, reason: 'client says bye', closeCode: 4001 },
      'the server sees the client\'s 4001 and its reason')
    t.equal((await within(waitMs, 'the close reply', second.closed)).code, 4001, 'and the client gets its close echoed')
  })

  t.test('a page on the proxy\'s own origin connects through nginx, another origin is refused', async (t) => {
    const { nginx } = await proxied(t, (app) => { app.get('/echo', { realtime: true }, echoHandler) })
    const origin = `http://127.0.0.1:${nginx.port}`
    const { client } = await connect(t, `${nginx.url}/echo`, { origin })
    client.ws.send('same origin')
    t.equal(await within(waitMs, 'the echo', client.text()), 'same origin', `Origin ${origin} matches the Host nginx passed on`)
    t.equal(await refused(`${nginx.url}/echo`, { origin: 'https://elsewhere.example' }), 403, 'a page of another site gets 403 through nginx')
  })

  t.test('the app sees the original client address only when it trusts the proxy', async (t) => {
    const spoofed = { headers: { 'X-Forwarded-For': '203.0.113.7' } }
    const setup = (app: FastifyInstance): void => { app.get('/whoami', { realtime: true }, whoAmI) }

    const trusting = await proxied(t, setup, {}, { trustProxy: ['127.0.0.1'] })
    const { client } = await connect(t, `${trusting.nginx.url}/whoami`, spoofed)
    t.match(await json(client), { ip: '203.0.113.7', forwardedFor: '203.0.113.7, 127.0.0.1', host: `127.0.0.1:${trusting.nginx.port}` },
      'trustProxy: [\'127.0.0.1\']: request.ip is the first untrusted address of the chain nginx extended')
    const { client: direct } = await connect(t, `${trusting.nginx.url}/whoami`)
    t.match(await json(direct), { ip: '127.0.0.1', forwardedFor: '127.0.0.1' }, 'without a header of its own, the client is the address nginx saw')

    // Fastify's hop count (a number) trusts nothing; a function that trusts only nginx as the peer does what it meant.
    const peerOnly = await proxied(t, setup, {}, { trustProxy: (address: string, hop: number) => address === '127.0.0.1' && hop === 0 })
    const { client: hop } = await connect(t, `${peerOnly.nginx.url}/whoami`, spoofed)
    t.match(await json(hop), { ip: '127.0.0.1', forwardedFor: '203.0.113.7, 127.0.0.1' },
      'trusting nginx as the peer only: request.ip is what nginx added, not what the client wrote')

    const all = await proxied(t, setup, {}, { trustProxy: true })
    const { client: credulous } = await connect(t, `${all.nginx.url}/whoami`, spoofed)
    t.match(await json(credulous), { ip: '203.0.113.7' }, 'trustProxy: true believes every hop, the client\'s own header included')

    const untrusting = await proxied(t, setup)
    const { client: plain } = await connect(t, `${untrusting.nginx.url}/whoami`, spoofed)
    t.match(await json(plain), { ip: '127.0.0.1', forwardedFor: '203.0.113.7, 127.0.0.1' },
      'trustProxy off: request.ip is the proxy\'s address, whatever the header says')
  })

  t.test('heartbeat pings keep a connection open through nginx past its read timeout', async (t) => {
    const failed = deferred<Error | null>()
    const { nginx } = await proxied(t, (app) => {
      app.get('/hb/beat', { realtime: { heartbeat: 100 } }, async (conn) => {
        await echoHandler(conn)
        failed.resolve(conn.exception)
      })
      app.get('/hb/quiet', { realtime: true }, echoHandler)
    })

    const { client } = await connect(t, `${nginx.url}/hb/beat`)
    const pings = 15 // 1.5 s of 100 ms heartbeats, past nginx's 1 s proxy_read_timeout
    const started = Date.now()
    let count = 0
    await within(waitMs, `${pings} pings`, new Promise<void>((resolve) => {
      client.ws.on('ping', () => { if (++count === pings) resolve() })
    }))
    t.ok(Date.now() - started > shortReadTimeoutS * 1000, `${pings} pings arrived over more than nginx's read timeout`)
    t.equal(client.ws.readyState, WebSocket.OPEN, 'the connection is still open: every pong came back in time')
    client.ws.send('still there?')
    t.equal(await within(waitMs, 'the echo', client.text()), 'still there?', 'and it still carries messages')
    client.ws.close(1000)
    t.equal((await within(waitMs, 'the close', client.closed)).code, 1000, 'it closes normally')
    t.equal(await within(waitMs, 'the handler', failed.promise), null, 'the server saw no heartbeat timeout')

    // The control: the same idle connection without a heartbeat is cut by nginx.
    const { client: quiet } = await connect(t, `${nginx.url}/hb/quiet`)
    const quietStarted = Date.now()
    const { code } = await within(waitMs, 'nginx cutting the idle connection', quiet.closed)
    t.equal(code, 1006, 'without heartbeats nginx drops the idle connection (no close frame)')
    t.ok(Date.now() - quietStarted >= shortReadTimeoutS * 1000 - 100, 'after its read timeout')
  })
}
