/**
 * The servers bench/echo.ts and bench/idle.ts compare, and how a client reaches each: where to
 * connect, the socket.io handshake, and the frame an envelope travels in. The Node servers are in
 * bench/echo-server.ts, the Python one in bench/aiohttp-server.py.
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import WebSocket from 'ws'
import type { Harness, Server } from './harness.js'

/** `plain`: the envelope is the whole text frame. `socketio`: engine.io v4 and socket.io v5 packets around it. */
export type Protocol = 'plain' | 'socketio'

export interface Variant {
  readonly key: string
  readonly name: string
  readonly protocol: Protocol
  /** Starts a fresh server of this variant; `nodeArgs` go to Node, `script` replaces bench/echo-server.ts (a Python server takes neither). */
  start (harness: Harness, nodeArgs?: string[], script?: string): Promise<Server>
}

const echoServer = new URL('echo-server.ts', import.meta.url).pathname
const aiohttpServer = new URL('aiohttp-server.py', import.meta.url).pathname
/** Handshakes at once when a bench opens many connections (well under the listen backlog). */
const CONNECT_BATCH = 100
/** Debian's Python, where python3-aiohttp (and python3-uvloop) install; not whatever python3 is first on PATH. */
const PYTHON = '/usr/bin/python3'

/** A variant served by bench/echo-server.ts, `args` its command line. */
export function nodeVariant (key: string, name: string, args: string[], protocol: Protocol = 'plain'): Variant {
  return { key, name, protocol, start: async (harness, nodeArgs = [], script = echoServer) => await harness.startServer(script, args, nodeArgs) }
}

export const aiohttpVariant: Variant = {
  key: 'aiohttp',
  name: 'aiohttp WebSocketResponse + json',
  protocol: 'plain',
  start: async (harness) => await harness.startCommand([PYTHON, aiohttpServer], 'aiohttp')
}

/** Why the aiohttp variant cannot run on this machine, or null when it can. */
function aiohttpMissing (): string | null {
  try {
    execFileSync(PYTHON, ['-c', 'import aiohttp'], { stdio: 'ignore' })
    return null
  } catch {
    return `aiohttp variant skipped: ${PYTHON} cannot import aiohttp (apt-get install -y python3-aiohttp)`
  }
}

/**
 * The variants a run measures: `nodeVariants` and aiohttp where Python has it, filtered by the
 * comma-separated keys in the environment variable `filter` (raw ws always runs: every ratio is to
 * it). `notes` says why a variant asked for was left out; it is written to stderr as well.
 */
export function pickVariants (nodeVariants: Variant[], filter: string): { variants: Variant[], notes: string[] } {
  const picked = process.env[filter]?.split(',')
  const wanted = (key: string): boolean => picked === undefined || key === 'raw' || picked.includes(key)
  const missing = wanted('aiohttp') ? aiohttpMissing() : null
  const notes = missing === null ? [] : [missing]
  for (const note of notes) process.stderr.write(`${note}\n`)
  const all = [...nodeVariants, ...(missing === null ? [aiohttpVariant] : [])]
  return { variants: all.filter((variant) => wanted(variant.key)), notes }
}

/** What the aiohttp server runs on: versions and event loop, from its GET /info. */
export async function aiohttpInfo (port: number): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${port}/info`)
  const info = await response.json() as { python: string, aiohttp: string, loop: string }
  return `aiohttp ${info.aiohttp} on Python ${info.python}, event loop ${info.loop}`
}

/**
 * The text around an envelope. socket.io carries it as the argument of a `message` event
 * (`42["message",{...}]`), so the load generator adds a fixed prefix and suffix on the way out and
 * takes them off on the way in: the same JSON work per message as for the plain variants.
 */
export interface Framing {
  readonly prefix: string
  readonly suffix: string
  /** The envelope inside a received text frame; null for a control packet handled elsewhere (a ping). */
  unwrap (text: string): string | null
}

const SOCKETIO_PREFIX = '42["message",'
export const framings: Record<Protocol, Framing> = {
  plain: { prefix: '', suffix: '', unwrap: (text) => text },
  socketio: {
    prefix: SOCKETIO_PREFIX,
    suffix: ']',
    unwrap (text) {
      if (text === '2') return null
      if (!text.startsWith(SOCKETIO_PREFIX) || !text.endsWith(']')) throw new Error(`bench: unexpected socket.io packet ${text.slice(0, 200)}`)
      return text.slice(SOCKETIO_PREFIX.length, -1)
    }
  }
}

function socketUrl (port: number, protocol: Protocol): string {
  // socket.io: straight to the websocket transport, no HTTP long-polling first.
  return protocol === 'socketio' ? `ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket` : `ws://127.0.0.1:${port}/`
}

/** engine.io's heartbeat: the server pings (`2`) every 25 s and closes a client that does not answer `3`. */
function answerPing (this: WebSocket, data: Buffer): void {
  if (data.length === 1 && data[0] === 0x32) this.send('3')
}

/**
 * engine.io's open packet (`0{"sid":...}`), then the connect to the main namespace (`40`, answered
 * by `40{"sid":...}`). From then on the socket answers pings by itself.
 */
function socketIoHandshake (ws: WebSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    let opened = false
    const stop = (): void => {
      ws.off('message', onPacket)
      ws.off('error', onError)
      ws.off('close', onClose)
    }
    const onError = (error: Error): void => { stop(); reject(error) }
    const onClose = (code: number): void => { stop(); reject(new Error(`bench: socket.io handshake closed with ${code}`)) }
    const onPacket = (data: Buffer): void => {
      const text = data.toString()
      if (!opened && text.startsWith('0{')) {
        opened = true
        ws.send('40')
      } else if (opened && text.startsWith('40')) {
        stop()
        ws.on('message', answerPing)
        resolve()
      } else {
        stop()
        reject(new Error(`bench: unexpected socket.io handshake packet ${text.slice(0, 200)}`))
      }
    }
    // Listening before the upgrade completes: the open packet may come in the same read as the 101.
    ws.on('message', onPacket)
    ws.on('error', onError)
    ws.on('close', onClose)
  })
}

/** Opens a WebSocket (no compression) to a variant's server; resolves once it can carry envelopes. */
export async function connect (port: number, protocol: Protocol): Promise<WebSocket> {
  const ws = new WebSocket(socketUrl(port, protocol), { perMessageDeflate: false })
  if (protocol === 'socketio') {
    await socketIoHandshake(ws)
  } else {
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => { ws.off('error', reject); resolve() })
      ws.once('error', reject)
    })
  }
  return ws
}

/**
 * bench/echo-server.ts and lib/ as plain JavaScript, for servers that must run without the
 * TypeScript loader: in Node 20 the loader's hooks run on a thread of their own, whose heap (the
 * TypeScript compiler) shrinks on its own schedule, some seconds after start, by tens of MiB: too
 * much noise for an RSS difference. `script` is another server of bench/ to transpile instead
 * (bench/scale.ts's); `libRoot` a folder with another lib/ to serve it with (a before/after run).
 * Each file is transpiled alone (as the loader does with TS_NODE_TRANSPILE_ONLY) into a folder of
 * this process under node_modules/.cache, where the packages still resolve, removed on exit.
 * Resolves with the path of the server script.
 */
let builds = 0
export async function plainEchoServer (script = 'bench/echo-server.ts', libRoot?: string): Promise<string> {
  // Loaded here, not at the top: the echo bench's load generator has no use for the compiler.
  const { default: ts } = await import('typescript')
  const root = new URL('..', import.meta.url).pathname
  const out = join(root, 'node_modules', '.cache', 'fastify-realtime-bench', `${process.pid}-${builds++}`)
  rmSync(out, { recursive: true, force: true })
  process.once('exit', () => { rmSync(out, { recursive: true, force: true }) })
  const lib = libRoot ?? root
  const sources = [script, ...readdirSync(join(lib, 'lib'), { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.ts') && !file.endsWith('.d.ts')).map((file) => join('lib', file))]
  for (const source of sources) {
    const { outputText } = ts.transpileModule(readFileSync(join(source === script ? root : lib, source), 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
      fileName: source
    })
    const target = join(out, source.replace(/\.ts$/, '.js'))
    mkdirSync(dirname(target), { recursive: true })
    writeFileSync(target, outputText)
  }
  // Below node_modules, Node does not look further up for the package's "type": module.
  writeFileSync(join(out, 'package.json'), '{ "type": "module", "private": true }\n')
  return join(out, script.replace(/\.ts$/, '.js'))
}

/**
 * Opens `count` connections with `open`, CONNECT_BATCH at a time, each batch within the harness's
 * wait. Each goes into `into` as it opens, so that the caller can close them if one fails.
 */
export async function openInBatches<T> (harness: Harness, into: T[], count: number, open: () => Promise<T>, what: string): Promise<void> {
  for (let start = 0; start < count; start += CONNECT_BATCH) {
    const batch = Array.from({ length: Math.min(CONNECT_BATCH, count - start) }, async () => { into.push(await open()) })
    await harness.withTimeout(Promise.all(batch), `${what}: connecting ${start + 1}-${start + batch.length}`)
  }
}
