/**
 * The structured fuzzer, beside the frame fuzzer of test/support/fuzz.ts: seeded envelopes of every client
 * message type, the plugin's own ($auth, $ping, $join, $leave) included, in hostile shapes (deep
 * nesting, wide objects, huge keys and strings, `__proto__` and `constructor`, numbers beyond double
 * range, duplicate keys, lone surrogates), on every route kind (raw, contract, strict, rate-limited,
 * contract with rooms and auth) and on both brokers (memory, Redis).
 *
 * The server runs in a child process (test/support/fixtures/envelope-fuzz-server.ts): a crash is a crash,
 * and its memory is measured alone. Oracles, per connection: every reply is an envelope; an error
 * envelope is at most twice the largest message sent plus 2 KiB and echoes no path longer than
 * maxEchoLength; the connection ends only with a code its route documents for what was sent (never
 * 1011 or 1006); a `$ping` probe after the messages is answered in order unless the route closed
 * the connection for a documented reason. Server side: no handler gets data its schema forbids, no
 * uncaught exception or unhandled rejection, no 1011, no connection left open.
 *
 * test/reliability/envelope-fuzz.test.ts runs a short share of it; `npm run fuzz` a long one.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import WebSocket from 'ws'
import { Random, roomName as fuzzRoomName } from './fuzz.js'
import { hostileKey, invalidValue, NoValue, validValue } from './schema-gen.js'
import { contractTypes, publishSpec, specs } from './envelope-fuzz-contract.js'
import type { ServerReport } from './fixtures/envelope-fuzz-server.js'

export type Tally = Record<string, number>
const count = (tally: Tally, key: string): void => { tally[key] = (tally[key] ?? 0) + 1 }

/** The server's message size limit in the fuzz: big enough for hostile shapes, small enough to go fast. */
export const MAX_MSG_SIZE = 256 * 1024
const MAX_ECHO = 64

// ---- hostile JSON, as text: duplicate keys and numbers beyond double range cannot be built as values ----

const NUMBERS = ['1e400', '-1e400', '1e-400', '123456789012345678901234567890', '-0', '0.1e1', '1E+2', '9007199254740993', '-9223372036854775808', '5e-324']
const STRINGS = ['"\\ud800"', '"\\udfff\\ud800"', '"\\u0000"', '"\\"\\\\/"', '"\\u2028\\u2029"', '"🙂"', '""', '"\\ud83d\\ude42"']

const ESCAPES = ['\\ud800', '\\u0000', '\\"', '\\\\', '~', '/', 'é', '\\n', '\\udfff']

/** A JSON string of about `length` characters, with escapes, lone surrogates and pointer characters among plain ones. */
function jsonString (random: Random, length: number): string {
  const parts: string[] = []
  let size = 0
  while (size < length) {
    const plain = 'abcdefghij'.repeat(Math.ceil(random.int(1, Math.max(1, length >> 3)) / 10))
    const piece = `${plain}${random.pick(ESCAPES)}`
    parts.push(piece)
    size += piece.length
  }
  return `"${parts.join('')}"`
}

function deep (random: Random, depth: number): string {
  const open: string[] = []
  const close: string[] = []
  for (let i = 0; i < depth; i++) {
    if (random.bool(0.7)) {
      open.push('[')
      close.push(']')
    } else {
      open.push('{"a":')
      close.push('}')
    }
  }
  return `${open.join('')}${random.pick(['1', 'null', '"x"', '{}', '[]'])}${close.reverse().join('')}`
}

/** A hostile JSON value, as text. */
export function hostileJson (random: Random): string {
  const r = random.int(0, 11)
  if (r === 0) return deep(random, random.pick([2, 30, 63, 64, 65, 66, 100, 1000, 5000]))
  if (r === 1) return `{${Array.from({ length: random.int(100, 3000) }, (_, i) => `"k${i}":${i}`).join(',')}}`
  if (r === 2) return jsonString(random, random.pick([1000, 10_000, 100_000]))
  if (r === 3) return `{${jsonString(random, random.pick([1000, 20_000, 60_000]))}:${random.pick(['1', '[null,null,null]', '{"x":{}}'])}}`
  if (r === 4) return random.pick(NUMBERS)
  if (r === 5) return `{"a":1,"a":{"b":2},"a":"x","${random.pick(['__proto__', 'constructor'])}":{}}`
  if (r === 6) return '{"__proto__":{"polluted":true,"type":"say"},"constructor":{"prototype":{"polluted":true}},"toString":1,"hasOwnProperty":null}'
  if (r === 7) return `{${random.pick(STRINGS)}:${random.pick(STRINGS)},"${'~/'.repeat(random.int(1, 500))}":[${random.pick(NUMBERS)}]}`
  if (r === 8) return `[${Array.from({ length: random.int(100, 5000) }, () => random.pick(['null', '1', '"x"', '{}'])).join(',')}]`
  if (r === 9) return random.pick(STRINGS)
  if (r === 10) return `{"next":${deep(random, random.int(10, 80))},"tag":${random.pick(['1', '2', '3'])}}`
  return random.pick(['null', 'true', '0', '{}', '[]', '""'])
}

// ---- envelopes ----

/** The frame fuzzer's room names, and a few more: ones the rooms route refuses, line breaks, lone surrogates. */
function roomName (random: Random): string {
  if (random.bool(0.6)) return fuzzRoomName(random)
  return random.pick([`no${random.int(0, 3)}`, '$route:/rooms', 'a\nb', '\ud800', '🙂', `room${random.int(20, 200)}`])
}

function idText (random: Random): string | null {
  const r = random.int(0, 9)
  if (r <= 3) return null
  if (r === 4) return String(random.int(0, 1e6))
  if (r === 5) return JSON.stringify(`id-${random.int(0, 1e6)}`)
  if (r === 6) return JSON.stringify('i'.repeat(random.pick([128, 129, 5000])))
  if (r === 7) return random.pick(NUMBERS)
  if (r === 8) return random.pick(['true', 'null', '[]', '{}', '{"__proto__":1}', '"\\ud800"'])
  return JSON.stringify(hostileKey(random))
}

/** JSON text of a value the generator built (lone surrogates escaped, `__proto__` as an own key). */
function text (value: unknown): string {
  return JSON.stringify(value) ?? 'null'
}

function dataFor (random: Random, type: string): string | null {
  if (random.bool(0.12)) return random.bool(0.1) ? null : hostileJson(random)
  const spec = type === 'publish' ? publishSpec : specs[type]
  if (spec !== undefined) {
    try {
      return text(random.bool(0.6) ? validValue(random, spec, 0, spec, random.pick([3, 8, 20])) : invalidValue(random, spec, random.pick([3, 8])))
    } catch (error) {
      if (!(error instanceof NoValue)) throw error
      return 'null'
    }
  }
  if (type === '$join') {
    const parts = [`"room":${text(roomName(random))}`]
    if (random.bool(0.3)) parts.push(`"epoch":${random.bool() ? jsonString(random, random.int(1, 70)) : random.pick(NUMBERS)}`)
    if (random.bool(0.3)) parts.push(`"offset":${random.bool() ? random.pick(NUMBERS) : String(random.int(0, 20))}`)
    if (random.bool(0.3)) parts.push(`"meta":${random.bool(0.7) ? hostileJson(random) : jsonString(random, random.int(900, 1100))}`)
    return `{${parts.join(',')}}`
  }
  if (type === '$leave') return `{"room":${text(roomName(random))}}`
  if (type === '$auth') return random.bool(0.8) ? text(`ok${random.int(0, 99)}`) : hostileJson(random)
  return hostileJson(random)
}

const SYSTEM = ['$ping', '$join', '$leave', '$auth']

function typeText (random: Random): { type: string, text: string } {
  const r = random.next()
  if (r < 0.6) {
    const type = random.pick(contractTypes)
    return { type, text: text(type) }
  }
  if (r < 0.88) {
    const type = random.pick(SYSTEM)
    return { type, text: text(type) }
  }
  if (r < 0.96) {
    const type = random.pick(['', 'unknown', 'x'.repeat(random.int(65, 3000)), '\ud800', 'say\u0000', '__proto__', 'constructor', 'error', 'say:reply', 'open'])
    return { type, text: text(type) }
  }
  return { type: '', text: random.pick(['1', 'null', '["say"]', '{"x":1}', 'true']) }
}

/** One message of a connection: an envelope most of the time, sometimes not JSON, not an object, or binary. */
export function hostileMessage (random: Random): string | Buffer {
  const r = random.next()
  if (r < 0.02) return random.bytes(random.int(0, 200))
  if (r < 0.05) return random.pick(['{"type":"say"', 'not json', '{"type":"say","data":}', '"\\ud800', '{"a":1}}'])
  if (r < 0.08) return hostileJson(random)
  const { type, text: typeJson } = typeText(random)
  const fields = [`"type":${typeJson}`]
  const data = dataFor(random, type)
  if (data !== null) fields.push(`"data":${data}`)
  const id = idText(random)
  if (id !== null) fields.push(`"id":${id}`)
  if (random.bool(0.08)) fields.push(`"__proto__":${hostileJson(random)}`)
  if (random.bool(0.04)) fields.push(`"type":${random.pick(['"say"', '1', 'null', '"$ping"'])}`)
  if (random.bool(0.04)) fields.push(`"${'k'.repeat(random.int(100, 5000))}":1`)
  return `{${random.shuffle(fields).join(',')}}`
}

// ---- connections ----

export type Route = '/raw' | '/contract' | '/strict' | '/limited' | '/rooms'

export interface ConnectionCase {
  index: number
  broker: string
  route: Route
  frames: Array<string | Buffer>
  /** A frame over MAX_MSG_SIZE: the server closes with 1009 when it comes. */
  oversized: boolean
}

const ROUTES: Array<[Route, number]> = [['/raw', 0.12], ['/contract', 0.38], ['/strict', 0.12], ['/limited', 0.1], ['/rooms', 0.28]]

function pickRoute (random: Random): Route {
  let r = random.next()
  for (const [route, share] of ROUTES) {
    if (r < share) return route
    r -= share
  }
  return '/contract'
}

/** The case of connection `index`: from its own seed, so a run gives the same cases at any concurrency. */
export function connectionCase (seed: number, index: number, brokers: readonly string[]): ConnectionCase {
  const random = new Random((seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0)
  const route = pickRoute(random)
  const frames: Array<string | Buffer> = []
  if (route === '/rooms' && random.bool(0.85)) frames.push(`{"type":"$auth","data":${text(random.bool(0.85) ? `ok${random.int(0, 999)}` : hostileKey(random))}${random.bool(0.3) ? `,"id":${idText(random) ?? '1'}` : ''}}`)
  const n = random.int(1, 60)
  for (let i = 0; i < n; i++) frames.push(hostileMessage(random))
  const oversized = frames.some((frame) => (typeof frame === 'string' ? Buffer.byteLength(frame) : frame.length) > MAX_MSG_SIZE)
  return { index, broker: random.pick(brokers), route, frames, oversized }
}

export interface ConnectionResult {
  failure: string | null
  /** The close code the client saw, or 'timeout'. */
  outcome: string
  /** Messages sent, the probe included. */
  sent: number
}

function closeOf (ws: WebSocket): Promise<number> {
  return new Promise((resolve) => { ws.once('close', (code: number) => { resolve(code) }) })
}

function within<T> (promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([promise, new Promise<'timeout'>((resolve) => { timer = setTimeout(() => { resolve('timeout') }, ms) })]).finally(() => { clearTimeout(timer) })
}

/** The close codes a route may end a connection with, for what this case sent (besides the client's own 1000). */
function allowedCloses (fuzz: ConnectionCase): number[] {
  const allowed = [1000]
  if (fuzz.oversized) allowed.push(1009)
  if (fuzz.route === '/strict') allowed.push(1007)
  if (fuzz.route === '/limited') allowed.push(1008)
  if (fuzz.route === '/rooms') allowed.push(4501, 4401)
  return allowed
}

export async function runConnection (port: number, fuzz: ConnectionCase, boundMs: number, replies: Tally): Promise<ConnectionResult> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}${fuzz.route}`, { maxPayload: 0 })
  ws.on('error', () => {})
  const closed = closeOf(ws)
  let failure: string | null = null
  let largest = 0
  let ponged: () => void = () => {}
  const answered = new Promise<void>((resolve) => { ponged = resolve })
  const probeId = `probe-${fuzz.index}`
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (isBinary) {
      failure ??= 'the server sent a binary message'
      return
    }
    type Reply = { type?: unknown, id?: unknown, data?: { code?: unknown, errors?: Array<{ path?: unknown }> } }
    let parsed: unknown = null
    try {
      parsed = JSON.parse(data.toString())
    } catch {}
    const message = parsed as Reply | null
    if (message === null || typeof message !== 'object' || typeof message.type !== 'string') {
      failure ??= `the server sent something that is not an envelope: ${data.toString().slice(0, 100)}`
      return
    }
    if (message.type === 'error') {
      const code = String(message.data?.code)
      count(replies, `error ${code}`)
      // The documented bound: twice the message answered plus 2 KiB, and no echo past maxEchoLength.
      if (data.length > 2 * largest + 2048) failure ??= `an error envelope of ${data.length} bytes answers messages of at most ${largest} bytes (${code})`
      if (!Array.isArray(message.data?.errors)) failure ??= `an error envelope without its errors list (${code})`
      else if (message.data.errors.some((error) => typeof error.path !== 'string' || error.path.length > MAX_ECHO + 3)) failure ??= `an error path longer than maxEchoLength (${code})`
    } else {
      count(replies, message.type)
    }
    if (message.type === '$pong' && message.id === probeId) ponged()
  })
  const opened = await within(Promise.race([new Promise<void>((resolve) => { ws.once('open', () => { resolve() }) }), closed.then(() => {})]), boundMs)
  if (opened === 'timeout' || ws.readyState !== WebSocket.OPEN) {
    ws.terminate()
    return { failure: 'could not open a connection', outcome: 'no open', sent: 0 }
  }
  let sent = 0
  for (const frame of fuzz.frames) {
    if (ws.readyState !== WebSocket.OPEN) break
    largest = Math.max(largest, typeof frame === 'string' ? Buffer.byteLength(frame) : frame.length)
    ws.send(frame)
    sent++
  }
  if (ws.readyState === WebSocket.OPEN) {
    ws.send(`{"type":"$ping","data":null,"id":"${probeId}"}`)
    sent++
  }
  const allowed = allowedCloses(fuzz)
  // A rate-limited route may drop the probe: it gets a short wait, and no answer is no failure there.
  const outcome = await within(Promise.race([answered.then(() => 'pong' as const), closed.then((code) => code)]), fuzz.route === '/limited' ? Math.min(boundMs, 150) : boundMs)
  if (outcome === 'timeout' && fuzz.route !== '/limited') failure ??= 'the $ping probe was not answered in time'
  if (typeof outcome === 'number' && (outcome === 1000 || !allowed.includes(outcome))) failure ??= `closed with ${outcome} before the probe was answered`
  if (ws.readyState === WebSocket.OPEN) ws.close(1000)
  const code = await within(closed, boundMs)
  if (code === 'timeout') {
    ws.terminate()
    return { failure: failure ?? 'the connection did not close in time', outcome: 'stuck', sent }
  }
  if (!allowed.includes(code)) failure ??= `closed with ${code}, expected one of ${allowed.join(', ')}`
  return { failure, outcome: String(code), sent }
}

// ---- the server process ----

export interface FuzzServer {
  ports: Record<string, number>
  report (gc?: boolean): Promise<ServerReport>
  close (): Promise<void>
  /** Set when the process ended on its own: a crash. */
  exit: { code: number | null, signal: string | null } | null
}

export async function startFuzzServer (redisUrl: string | null, keyPrefix: string): Promise<FuzzServer> {
  const script = new URL('./fixtures/envelope-fuzz-server.ts', import.meta.url).pathname
  const child: ChildProcess = spawn(process.execPath, [...process.execArgv, '--expose-gc', script], {
    env: { ...process.env, REDIS_URL: redisUrl ?? '', KEY_PREFIX: keyPrefix, FUZZ_MAX_MSG_SIZE: String(MAX_MSG_SIZE) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  })
  const server: FuzzServer = {
    ports: {},
    exit: null,
    async report (gc = false) {
      return await ask<ServerReport>(child, gc ? 'gc' : 'report', 'report')
    },
    async close () {
      if (server.exit === null) {
        await ask(child, 'close', 'closed').catch(() => {})
        child.kill('SIGTERM')
      }
    }
  }
  child.once('exit', (code, signal) => { server.exit = { code, signal } })
  server.ports = await new Promise<Record<string, number>>((resolve, reject) => {
    child.once('message', (message: { ready?: Record<string, number> }) => { if (message.ready !== undefined) resolve(message.ready) })
    child.once('exit', (code) => { reject(new Error(`the fuzz server exited with ${String(code)} before it listened`)) })
  })
  return server
}

function ask<T> (child: ChildProcess, cmd: string, key: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: Record<string, unknown>): void => {
      if (!(key in message)) return
      child.off('message', onMessage)
      child.off('exit', onExit)
      resolve(message[key] as T)
    }
    const onExit = (): void => { reject(new Error('the fuzz server exited')) }
    child.on('message', onMessage)
    child.once('exit', onExit)
    child.send({ cmd })
  })
}

// ---- the run ----

export interface EnvelopeFuzzOptions {
  seed: number
  /** Messages to send in all (each connection sends 2-62). */
  messages: number
  /** Connections at a time. @default 24 */
  concurrency?: number
  /** A Redis to run the Redis broker's app against, or null for the memory broker only. */
  redisUrl: string | null
  /** How long any one wait of a connection may take. @default 10000 */
  boundMs?: number
  /** Stop early past this many ms (the summary says how far it got). */
  maxDurationMs?: number
  /** After the run, wait this long and measure the server again: what timers still held is let go by then. @default 0 */
  idleMs?: number
  onProgress?: (progress: { messages: number, connections: number, elapsedMs: number, failures: number }) => void
}

export interface EnvelopeFuzzSummary {
  seed: number
  messages: number
  connections: number
  durationMs: number
  brokers: string[]
  failures: Array<{ connection: number, route: string, broker: string, why: string }>
  /** Client-side endings by route and close code. */
  closes: Tally
  /** What the server sent, by type (errors by code). */
  replies: Tally
  /** The server process: its own report at the end (after a forced GC), and at the start. */
  start: ServerReport
  end: ServerReport | null
  /** The server's report `idleMs` after the end (after a forced GC), when asked for. */
  idle: ServerReport | null
  /** The server process ended on its own (a crash), or null. */
  crashed: { code: number | null, signal: string | null } | null
}

export async function runEnvelopeFuzz (options: EnvelopeFuzzOptions): Promise<EnvelopeFuzzSummary> {
  const started = Date.now()
  const concurrency = options.concurrency ?? 24
  const boundMs = options.boundMs ?? 10_000
  const server = await startFuzzServer(options.redisUrl, `fuzz-${options.seed}-${process.pid}:`)
  const brokers = Object.keys(server.ports)
  const start = await server.report(true)
  const summary: EnvelopeFuzzSummary = {
    seed: options.seed, messages: 0, connections: 0, durationMs: 0, brokers, failures: [], closes: {}, replies: {}, start, end: null, idle: null, crashed: null
  }
  let next = 0
  let lastProgress = Date.now()
  const worker = async (): Promise<void> => {
    while (summary.messages < options.messages && server.exit === null) {
      if (options.maxDurationMs !== undefined && Date.now() - started > options.maxDurationMs) return
      const fuzz = connectionCase(options.seed, next++, brokers)
      let result: ConnectionResult
      try {
        result = await runConnection(server.ports[fuzz.broker] as number, fuzz, boundMs, summary.replies)
      } catch (error) {
        result = { failure: `the case threw: ${(error as Error).message}`, outcome: 'threw', sent: 0 }
      }
      summary.messages += result.sent
      summary.connections++
      count(summary.closes, `${fuzz.broker} ${fuzz.route} ${result.outcome}`)
      if (result.failure !== null) summary.failures.push({ connection: fuzz.index, route: fuzz.route, broker: fuzz.broker, why: result.failure })
      if (options.onProgress !== undefined && Date.now() - lastProgress > 10_000) {
        lastProgress = Date.now()
        options.onProgress({ messages: summary.messages, connections: summary.connections, elapsedMs: Date.now() - started, failures: summary.failures.length })
      }
    }
  }
  try {
    await Promise.all(Array.from({ length: concurrency }, worker))
    // Every connection the server had must end: give the last closes the bound to land.
    const deadline = Date.now() + boundMs
    let end = await server.report(true)
    while (end.open > 0 && Date.now() < deadline && server.exit === null) {
      await new Promise((resolve) => setTimeout(resolve, 50))
      end = await server.report(true)
    }
    summary.end = end
    if (options.idleMs !== undefined && options.idleMs > 0) {
      await new Promise((resolve) => setTimeout(resolve, options.idleMs))
      summary.idle = await server.report(true)
    }
  } catch (error) {
    summary.failures.push({ connection: -1, route: '', broker: '', why: `the server could not report: ${(error as Error).message}` })
  } finally {
    summary.crashed = server.exit
    await server.close()
    summary.durationMs = Date.now() - started
  }
  return summary
}

/** Everything wrong in a summary, as sentences: empty when the run is clean. */
export function problems (summary: EnvelopeFuzzSummary): string[] {
  const found: string[] = []
  if (summary.crashed !== null) found.push(`the server process ended: ${JSON.stringify(summary.crashed)}`)
  const end = summary.end
  if (end !== null) {
    if (end.faults > 0) found.push(`${end.faults} uncaught exceptions or unhandled rejections: ${end.faultSamples.join(' | ')}`)
    if (end.violations > 0) found.push(`${end.violations} messages reached a handler against their schema: ${end.violationSamples.join(' | ')}`)
    if (end.internalErrors > 0) found.push(`${end.internalErrors} connections closed with 1011`)
    if (end.open > 0) found.push(`${end.open} connections still open on the server after the run`)
    else if (end.presence > 0) found.push(`${end.presence} presence entries left behind by connections that are gone`)
  }
  const distinct = new Map<string, { count: number, first: EnvelopeFuzzSummary['failures'][number] }>()
  for (const failure of summary.failures) {
    const seen = distinct.get(failure.why)
    if (seen === undefined) distinct.set(failure.why, { count: 1, first: failure })
    else seen.count++
  }
  for (const [why, { count: n, first }] of distinct) found.push(`${n} × ${why} (first: connection ${first.connection}, ${first.broker} ${first.route})`)
  return found
}

/** The seed and message count from FUZZ_SEED and FUZZ_MESSAGES, or a fresh seed and `messages`. */
export function envelopeFuzzSettings (messages: number): { seed: number, messages: number } {
  const seed = process.env.FUZZ_SEED === undefined || process.env.FUZZ_SEED === '' ? Math.floor(Math.random() * 2 ** 32) : Number(process.env.FUZZ_SEED) >>> 0
  const n = process.env.FUZZ_MESSAGES === undefined || process.env.FUZZ_MESSAGES === '' ? messages : Number(process.env.FUZZ_MESSAGES)
  if (!Number.isInteger(n) || n < 1) throw new TypeError(`FUZZ_MESSAGES must be a positive integer, got ${String(process.env.FUZZ_MESSAGES)}`)
  return { seed, messages: n }
}
