/**
 * The fuzzer behind test/reliability/fuzz.test.ts (a short run) and bench/fuzz.ts (a long one).
 *
 * One app on 127.0.0.1 serves two kinds of route, and seeded cases are thrown at them in batches:
 *
 * - frame cases: raw TCP after a valid handshake to an echoing raw route, with random and mutated
 *   frames (bad opcodes, RSV bits, missing masks, lying 16/64-bit lengths, fragment orders,
 *   interleaved control frames, invalid UTF-8, bad close payloads, garbage, truncation). A case
 *   with a single known defect has an oracle: the close code RFC 6455 (and ws) give it.
 * - JSON cases: a `ws` client on a contract route with rooms, sending random JSON (any type and
 *   nesting, long strings, unicode, `__proto__`/`constructor` keys, ids of every type, `$join`,
 *   `$leave`, `$ping`), then a `$ping` probe that must be answered in order.
 *
 * Every connection must end within a bound, the server must still echo for a fresh client after
 * each batch, and the heap is sampled after each batch. Nothing here asserts: `runFuzz` returns a
 * summary with every failure listed, and the caller (tap or the bench script) judges it.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import { once } from 'node:events'
import net, { type AddressInfo } from 'node:net'
import { runInNewContext } from 'node:vm'
import { setFlagsFromString } from 'node:v8'
import { Type } from '@sinclair/typebox'
import WebSocket from 'ws'
import realtime, { contractHandler, defineContract, MessageError, type RealtimeConnection } from '../../lib/index.js'
import { FrameReader, type ServerFrame } from './frames.js'
import { handshake } from './helpers.js'

// ---- seeded randomness ----

/** mulberry32: small, fast, and the same sequence for the same seed on every machine. */
export class Random {
  private state: number

  constructor (seed: number) {
    this.state = seed >>> 0
  }

  /** A float in [0, 1). */
  next (): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0
    let z = this.state
    z = Math.imul(z ^ (z >>> 15), z | 1)
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61)
    return ((z ^ (z >>> 14)) >>> 0) / 4294967296
  }

  /** An integer in [min, max]. */
  int (min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1))
  }

  bool (p = 0.5): boolean {
    return this.next() < p
  }

  pick<T> (items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)] as T
  }

  bytes (length: number): Buffer {
    const buffer = Buffer.alloc(length)
    for (let i = 0; i < length; i++) buffer[i] = Math.floor(this.next() * 256)
    return buffer
  }

  /** `items` in a random order (Fisher-Yates, in place). */
  shuffle<T> (items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(0, i)
      const swap = items[i] as T
      items[i] = items[j] as T
      items[j] = swap
    }
    return items
  }

  /** A length skewed towards small values, up to `max`. */
  size (max: number): number {
    const r = this.next()
    if (r < 0.5) return this.int(0, Math.min(max, 16))
    if (r < 0.8) return this.int(0, Math.min(max, 200))
    if (r < 0.95) return this.int(0, Math.min(max, 4000))
    return this.int(0, max)
  }
}

// ---- the app under test ----

/** Limits of the fuzzed routes: small, so every case ends quickly. */
export const LIMITS = {
  maxMsgSize: 32 * 1024,
  heartbeat: 400,
  closeTimeout: 500
} as const

const contract = defineContract({
  client: {
    say: Type.Object({ text: Type.String({ maxLength: 2000 }) }),
    add: { data: Type.Object({ a: Type.Number(), b: Type.Number() }), reply: Type.Object({ sum: Type.Number() }) },
    echo: { data: Type.Unknown(), reply: Type.Unknown() },
    tag: { data: Type.Object({ tags: Type.Array(Type.String({ maxLength: 20 }), { maxItems: 10 }), meta: Type.Optional(Type.Record(Type.String(), Type.Integer())) }), reply: Type.Object({ count: Type.Integer() }) },
    publish: Type.Object({ room: Type.String(), text: Type.String() }),
    refuse: { data: Type.Null(), reply: Type.Null() }
  },
  server: {
    message: Type.Object({ text: Type.String() })
  }
})

const handlers = {
  say: async () => {},
  add: async (data: { a: number, b: number }) => ({ sum: data.a + data.b }),
  echo: async (data: unknown) => data,
  tag: async (data: { tags: string[] }) => ({ count: data.tags.length }),
  publish: async (data: { room: string, text: string }, ctx: { rooms: { publish: (room: string, type: 'message', data: { text: string }) => Promise<void> } }) => {
    await ctx.rooms.publish(data.room, 'message', { text: data.text })
  },
  refuse: async () => { throw new MessageError('REFUSED', 'refused on purpose') }
}

/** How the server saw its connections end: `closeCode/exception code` → count. */
export type Tally = Record<string, number>

function count (tally: Tally, key: string): void {
  tally[key] = (tally[key] ?? 0) + 1
}

export interface FuzzServer {
  app: FastifyInstance
  port: number
  /** Connections whose handler has not finished. */
  open: Set<RealtimeConnection>
  /** How the server saw the connections end. */
  endings: Tally
  /** Log lines at error level or above (handler failures the plugin logged). */
  errorLogs: Tally
}

/**
 * Builds the app: `/echo` (raw, echoes), `/contract` (replies to bad input) and `/strict`
 * (closes with 1007 on bad input), both contract routes with rooms.
 */
export async function startServer (): Promise<FuzzServer> {
  const errorLogs: Tally = {}
  const stream = {
    write (line: string): void {
      try {
        const entry = JSON.parse(line) as { level?: number, msg?: string, err?: { code?: string } }
        if ((entry.level ?? 0) >= 50) count(errorLogs, `${entry.msg ?? ''}${entry.err?.code === undefined ? '' : ` (${entry.err.code})`}`)
      } catch {
        count(errorLogs, 'unparsable log line')
      }
    }
  }
  const app = Fastify({ logger: { level: 'error', stream } })
  await app.register(realtime, { ...LIMITS, history: { size: 10, ttlMs: 2000 } })
  const open = new Set<RealtimeConnection>()
  const endings: Tally = {}
  const tracked = (run: (conn: RealtimeConnection) => Promise<void>) => async (conn: RealtimeConnection): Promise<void> => {
    open.add(conn)
    try {
      await run(conn)
    } finally {
      // The handler's return starts close(); record once the connection is really gone.
      void conn.whenClosed().then(() => {
        open.delete(conn)
        count(endings, `${String(conn.closeCode)}${conn.exception === null ? '' : ` ${(conn.exception as Error & { code?: string }).code ?? conn.exception.name}`}`)
      })
    }
  }
  app.get('/echo', { realtime: true }, tracked(async (conn) => {
    for await (const message of conn) {
      if (message.type === 'text') await conn.sendText(message.data)
      else if (message.type === 'binary') await conn.sendBinary(message.data)
    }
  }))
  const rooms = {
    // Deterministic in the name, so both answers are fuzzed; 'throw…' rooms make authorize fail.
    authorize: (room: string) => {
      if (room.startsWith('throw')) throw new Error('authorize failed on purpose')
      if (room.startsWith('mthrow')) throw new MessageError('NOPE', 'not this room')
      return room.length % 5 !== 0
    },
    notices: (room: string) => room.startsWith('n')
  }
  const routeHandler = (onInvalid: 'reply' | 1007) => {
    const handler = contractHandler(contract, handlers as never, { rooms, onInvalid, userId: () => 'fuzz', requestTimeout: 2000 })
    return tracked(async (conn) => { await handler.call(app, conn, conn.request) })
  }
  app.get('/contract', { realtime: true }, routeHandler('reply'))
  app.get('/strict', { realtime: true }, routeHandler(1007))
  await app.listen({ host: '127.0.0.1', port: 0 })
  return { app, port: (app.server.address() as AddressInfo).port, open, endings, errorLogs }
}

// ---- frames ----

interface Frame {
  fin: boolean
  rsv: number
  opcode: number
  payload: Buffer
  /** null sends the frame unmasked. */
  mask: Buffer | null
  /** How the length is written: minimal, or forced to the 16- or 64-bit form; `declared` lies. */
  lengthForm?: 'minimal' | 16 | 64
  declared?: bigint
}

function encode (f: Frame): Buffer {
  const head = [(f.fin ? 0x80 : 0) | ((f.rsv & 7) << 4) | (f.opcode & 0x0f)]
  const length = f.declared ?? BigInt(f.payload.length)
  const maskBit = f.mask === null ? 0 : 0x80
  const form = f.lengthForm ?? 'minimal'
  const extra: Buffer[] = []
  if (form === 'minimal' && length < 126n) {
    head.push(maskBit | Number(length))
  } else if ((form === 'minimal' && length < 65536n) || (form === 16 && length < 65536n)) {
    head.push(maskBit | 126)
    const b = Buffer.alloc(2)
    b.writeUInt16BE(Number(length))
    extra.push(b)
  } else {
    head.push(maskBit | 127)
    const b = Buffer.alloc(8)
    b.writeBigUInt64BE(length)
    extra.push(b)
  }
  let body = f.payload
  if (f.mask !== null) {
    body = Buffer.from(f.payload)
    for (let i = 0; i < body.length; i++) body[i] = (body[i] as number) ^ (f.mask[i % 4] as number)
    extra.push(f.mask)
  }
  return Buffer.concat([Buffer.from(head), ...extra, body])
}

const UNICODE = ['a', 'é', '€', '𝄞', '中', ' ', '\n', '"', '\\', '\u0000', '\u2028', '🙂', 'ß', 'Ω']

function text (random: Random, length: number): string {
  let out = ''
  while (out.length < length) out += random.bool(0.7) ? String.fromCharCode(random.int(0x20, 0x7e)) : random.pick(UNICODE)
  return out
}

/** Byte sequences that are never valid UTF-8. */
const BAD_UTF8 = [
  [0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82], [0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xc3]
]

function invalidUtf8 (random: Random): Buffer {
  const before = Buffer.from(text(random, random.int(0, 20)))
  return Buffer.concat([before, Buffer.from(random.pick(BAD_UTF8)), Buffer.from(text(random, random.int(0, 5)))])
}

function maskKey (random: Random): Buffer {
  return random.bool(0.1) ? Buffer.alloc(4) : random.bytes(4)
}

const VALID_CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]
const INVALID_CLOSE_CODES = [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535]

/** What the server must do with a frame case. */
export type Expectation =
  /** A close frame with this code (and nothing of the case after it). */
  | { kind: 'code', code: number }
  /** No defect: the connection stays open until the finale. */
  | { kind: 'open' }
  /** Anything goes (garbage, lying lengths): only the bounds apply. */
  | { kind: 'any' }

export interface FrameCase {
  label: string[]
  chunks: Buffer[]
  expect: Expectation
  /** The valid complete messages in order: what the echo may send back (a prefix of it). */
  messages: Array<{ binary: boolean, data: Buffer }>
  finale: 'close' | 'end' | 'destroy' | 'silent'
}

/** A sequence of 1-8 steps; the first defect decides the expectation, chaos makes it 'any'. */
export function frameCase (random: Random): FrameCase {
  const label: string[] = []
  const bytes: Buffer[] = []
  const messages: FrameCase['messages'] = []
  let expect: Expectation = { kind: 'open' }
  // The fragmented message being sent: its type, bytes so far, and whether its text is broken.
  let fragment: { binary: boolean, parts: Buffer[] } | null = null
  let ended = false
  const decided = (): boolean => expect.kind !== 'open'
  const defect = (code: number, what: string): void => {
    label.push(what)
    if (!decided()) expect = { kind: 'code', code }
  }
  const chaos = (what: string): void => {
    label.push(what)
    if (!decided()) expect = { kind: 'any' }
  }
  const push = (f: Frame): void => { bytes.push(encode(f)) }
  const steps = random.int(1, 8)
  for (let i = 0; i < steps && !ended; i++) {
    const r = random.int(0, 24)
    const mask = maskKey(random)
    if (r <= 4) {
      // A valid complete data message.
      const binary = random.bool(0.3)
      const payload = binary ? random.bytes(random.size(3000)) : Buffer.from(text(random, random.size(3000)))
      if (payload.length > LIMITS.maxMsgSize) continue
      push({ fin: true, rsv: 0, opcode: binary ? 2 : 1, payload, mask, lengthForm: random.bool(0.1) ? random.pick([16, 64] as const) : 'minimal' })
      if (fragment === null) {
        label.push(binary ? 'binary' : 'text')
        if (!decided()) messages.push({ binary, data: payload })
      } else {
        defect(1002, 'data frame inside a fragmented message')
      }
    } else if (r <= 7) {
      // A fragment: a first one, or a continuation (fin or not).
      // Broken UTF-8 in one fragment may be mended by the next: only the whole message counts.
      const payload = random.bool(0.15) ? invalidUtf8(random) : Buffer.from(text(random, random.size(500)))
      if (fragment === null && random.bool(0.75)) {
        const binary = random.bool(0.3)
        push({ fin: false, rsv: 0, opcode: binary ? 2 : 1, payload, mask })
        label.push('first fragment')
        fragment = { binary, parts: [payload] }
      } else {
        const fin = random.bool(0.5)
        push({ fin, rsv: 0, opcode: 0, payload, mask })
        if (fragment === null) {
          defect(1002, 'continuation first')
        } else {
          label.push(fin ? 'last fragment' : 'continuation')
          fragment.parts.push(payload)
          if (fin) {
            const whole = Buffer.concat(fragment.parts)
            if (!fragment.binary && !whole.equals(Buffer.from(whole.toString('utf8')))) defect(1007, 'fragmented text not UTF-8')
            else if (!decided()) messages.push({ binary: fragment.binary, data: whole })
            fragment = null
          }
        }
      }
    } else if (r <= 9) {
      // Ping or pong, valid anywhere, interleaved in a fragmented message too.
      push({ fin: true, rsv: 0, opcode: random.bool() ? 9 : 10, payload: random.bytes(random.int(0, 125)), mask })
      label.push(fragment === null ? 'control' : 'interleaved control')
    } else if (r === 10) {
      push({ fin: true, rsv: 0, opcode: random.pick([3, 4, 5, 6, 7, 11, 12, 13, 14, 15]), payload: random.bytes(random.int(0, 20)), mask })
      defect(1002, 'reserved opcode')
    } else if (r === 11) {
      push({ fin: true, rsv: random.int(1, 7), opcode: random.pick([1, 2, 9]), payload: Buffer.from('rsv'), mask })
      defect(1002, 'RSV bits')
    } else if (r === 12) {
      push({ fin: true, rsv: 0, opcode: random.pick([1, 2, 9, 8]), payload: Buffer.from('unmasked'), mask: null })
      defect(1002, 'unmasked')
    } else if (r === 13) {
      push({ fin: true, rsv: 0, opcode: 1, payload: invalidUtf8(random), mask })
      defect(fragment === null ? 1007 : 1002, 'text not UTF-8')
    } else if (r === 14) {
      // Control frames: fragmented, or longer than 125 bytes.
      if (random.bool()) {
        push({ fin: false, rsv: 0, opcode: random.pick([8, 9, 10]), payload: Buffer.from('x'), mask })
        defect(1002, 'fragmented control frame')
      } else {
        push({ fin: true, rsv: 0, opcode: random.pick([8, 9, 10]), payload: random.bytes(random.int(126, 300)), mask })
        defect(1002, 'control frame over 125 bytes')
      }
    } else if (r === 15) {
      // A close frame: valid (code, reason), 1 byte, an invalid code, a reason that is not UTF-8.
      const kind = random.int(0, 4)
      if (kind === 0) {
        const code = random.pick(VALID_CLOSE_CODES)
        const payload = Buffer.concat([Buffer.from([code >> 8, code & 0xff]), Buffer.from(text(random, random.int(0, 30)))])
        if (payload.length > 125) continue
        push({ fin: true, rsv: 0, opcode: 8, payload, mask })
        label.push('close')
        if (!decided()) expect = { kind: 'code', code }
        ended = true
      } else if (kind === 1) {
        push({ fin: true, rsv: 0, opcode: 8, payload: Buffer.alloc(0), mask })
        label.push('empty close')
        if (!decided()) expect = { kind: 'code', code: 1005 }
        ended = true
      } else if (kind === 2) {
        push({ fin: true, rsv: 0, opcode: 8, payload: random.bytes(1), mask })
        defect(1002, 'close payload of 1 byte')
      } else if (kind === 3) {
        const code = random.pick(INVALID_CLOSE_CODES)
        push({ fin: true, rsv: 0, opcode: 8, payload: Buffer.from([code >> 8, code & 0xff]), mask })
        defect(1002, `invalid close code ${code}`)
      } else {
        const code = random.pick(VALID_CLOSE_CODES)
        push({ fin: true, rsv: 0, opcode: 8, payload: Buffer.concat([Buffer.from([code >> 8, code & 0xff]), invalidUtf8(random)]), mask })
        defect(1007, 'close reason not UTF-8')
      }
    } else if (r === 16) {
      // Lengths over maxMsgSize: in the 16-bit form, the 64-bit form, or past 2^53.
      const kind = random.int(0, 2)
      const declared = kind === 0 ? BigInt(random.int(LIMITS.maxMsgSize + 1, 65535)) : kind === 1 ? BigInt(random.int(LIMITS.maxMsgSize + 1, 2 ** 31)) : (2n ** 53n) + BigInt(random.int(0, 1000)) * 2n ** 32n
      push({ fin: true, rsv: 0, opcode: fragment === null ? random.pick([1, 2]) : 0, payload: random.bytes(random.int(0, 64)), mask, declared, lengthForm: kind === 0 ? 16 : 64 })
      defect(1009, `declared length ${declared}`)
      ended = true
    } else if (r === 17) {
      // A length that lies by a little: the rest of the stream is read out of step.
      const payload = random.bytes(random.int(1, 200))
      const declared = BigInt(Math.max(0, payload.length + random.pick([-3, -1, 1, 2, 40])))
      push({ fin: true, rsv: 0, opcode: random.pick([1, 2]), payload, mask, declared, lengthForm: random.pick(['minimal', 16, 64] as const) })
      chaos('lying length')
    } else if (r === 18) {
      bytes.push(random.bytes(random.int(1, 64)))
      chaos('garbage')
    } else if (r === 19) {
      // A fragmented message that grows past maxMsgSize.
      if (fragment === null) {
        push({ fin: false, rsv: 0, opcode: 2, payload: random.bytes(LIMITS.maxMsgSize - 10), mask })
        push({ fin: true, rsv: 0, opcode: 0, payload: random.bytes(11), mask })
        defect(1009, 'fragments past maxMsgSize')
        ended = true
      }
    } else if (r === 20) {
      // A data frame whose length is written in a longer form than needed: allowed.
      const payload = Buffer.from(text(random, random.int(0, 100)))
      push({ fin: true, rsv: 0, opcode: 1, payload, mask, lengthForm: 64 })
      if (fragment === null) {
        label.push('text, 64-bit length')
        if (!decided()) messages.push({ binary: false, data: payload })
      } else {
        defect(1002, 'data frame inside a fragmented message')
      }
    } else if (r === 21) {
      // A frame cut short: then only the finale, and the server never sees the rest.
      const payload = random.bytes(random.int(2, 300))
      const whole = encode({ fin: true, rsv: 0, opcode: random.pick([1, 2, 9]), payload, mask })
      bytes.push(whole.subarray(0, random.int(1, whole.length - 1)))
      label.push('truncated frame')
      if (!decided()) expect = { kind: 'any' }
      ended = true
    } else {
      // An empty message, text or binary.
      push({ fin: true, rsv: 0, opcode: r === 22 ? 1 : 2, payload: Buffer.alloc(0), mask })
      if (fragment === null) {
        label.push('empty message')
        if (!decided()) messages.push({ binary: r !== 22, data: Buffer.alloc(0) })
      } else {
        defect(1002, 'data frame inside a fragmented message')
      }
    }
  }
  const finale = label.includes('truncated frame') ? random.pick(['end', 'destroy', 'silent'] as const) : random.pick(['close', 'end', 'destroy', 'silent'] as const)
  // The stream is written in random pieces, down to single bytes, to exercise partial reads.
  const stream = Buffer.concat(bytes)
  const chunks: Buffer[] = []
  let at = 0
  while (at < stream.length) {
    const piece = random.bool(0.2) ? random.int(1, 3) : random.int(1, stream.length)
    chunks.push(stream.subarray(at, at + piece))
    at += piece
  }
  return { label, chunks, expect, messages, finale }
}

// ---- running a frame case ----

export interface CaseResult {
  failure: string | null
  /** How the client saw it end: the server's close code, or 'no close frame'. */
  outcome: string
}

function withDeadline<T> (promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<'timeout'>((resolve) => { timer = setTimeout(resolve, ms, 'timeout') })
  return Promise.race([promise, timeout]).finally(() => { clearTimeout(timer) })
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/** Opens a raw connection to `path`; the 101 and any frames after it go to a FrameReader. */
async function rawConnect (port: number, path: string): Promise<{ socket: net.Socket, frames: FrameReader, closed: Promise<void> }> {
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => {})
  // Not once(): it rejects on 'error', and a reset connection is a normal ending here.
  const closed = new Promise<void>((resolve) => { socket.once('close', () => { resolve() }) })
  await once(socket, 'connect')
  socket.write(handshake(path))
  let buffered = Buffer.alloc(0)
  const gone = closed.then(() => null)
  for (;;) {
    const chunk = await withDeadline(Promise.race([once(socket, 'data').then(([data]) => data as Buffer), gone]), 5000)
    if (chunk === null || chunk === 'timeout') {
      socket.destroy()
      throw new Error(`no handshake response (${chunk === null ? 'closed' : 'timed out'})`)
    }
    buffered = Buffer.concat([buffered, chunk])
    const end = buffered.indexOf('\r\n\r\n')
    if (end === -1) continue
    const head = buffered.subarray(0, end).toString('latin1')
    if (!head.startsWith('HTTP/1.1 101')) throw new Error(`handshake failed: ${head.split('\r\n')[0] ?? ''}`)
    return { socket, frames: new FrameReader(socket, buffered.subarray(end + 4)), closed }
  }
}

const CLOSE_1000 = encode({ fin: true, rsv: 0, opcode: 8, payload: Buffer.from([0x03, 0xe8]), mask: Buffer.from([1, 2, 3, 4]) })

export async function runFrameCase (port: number, fuzz: FrameCase, boundMs: number): Promise<CaseResult> {
  const { socket, frames, closed } = await rawConnect(port, '/echo')
  for (const chunk of fuzz.chunks) {
    if (socket.destroyed) break
    socket.write(chunk)
    if (chunk.length < 4) await tick()
  }
  if (!socket.destroyed) {
    if (fuzz.finale === 'close') socket.write(CLOSE_1000)
    else if (fuzz.finale === 'end') socket.end()
    else if (fuzz.finale === 'destroy') socket.destroy()
  }
  if (await withDeadline(closed, boundMs) === 'timeout') {
    socket.destroy()
    return { failure: `the connection was still open ${boundMs} ms after the last byte`, outcome: 'stuck' }
  }
  const got: ServerFrame[] = frames.frames
  const closeAt = got.findIndex((f) => f.opcode === 0x8)
  const closeFrame = closeAt === -1 ? null : got[closeAt] as ServerFrame
  const code = closeFrame === null ? null : closeFrame.payload.length >= 2 ? closeFrame.payload.readUInt16BE(0) : 1005
  const outcome = code === null ? 'no close frame' : String(code)
  const fail = (why: string): CaseResult => ({ failure: why, outcome })
  if (closeAt !== -1 && closeAt !== got.length - 1) return fail('the server sent frames after its close frame')
  // Echoes: a prefix of the valid messages sent, in order and intact.
  const echoes = got.filter((f) => f.opcode === 0x1 || f.opcode === 0x2)
  if (echoes.length !== got.filter((f) => f.opcode !== 0x8 && f.opcode !== 0x9 && f.opcode !== 0xa).length) return fail('the server sent a frame that is neither data, control nor close')
  for (const [i, echo] of echoes.entries()) {
    if (!echo.fin) return fail('the server fragmented an echo')
    const sent = fuzz.messages[i]
    // Past a lying length the server may well parse a frame out of the rest: not a message the case made.
    if (sent === undefined && fuzz.expect.kind === 'any') break
    if (sent === undefined) return fail(`echo ${i} was never sent as a valid message`)
    if ((echo.opcode === 0x2) !== sent.binary || !echo.payload.equals(sent.data)) return fail(`echo ${i} differs from message ${i}`)
  }
  if (fuzz.expect.kind === 'code' && fuzz.finale !== 'destroy' && code !== fuzz.expect.code) {
    return fail(`expected close code ${fuzz.expect.code}, got ${outcome}`)
  }
  if (fuzz.expect.kind === 'open' && code !== null && !(fuzz.finale === 'close' && code === 1000)) {
    return fail(`a valid stream was closed with ${code}`)
  }
  return { failure: null, outcome }
}

// ---- JSON cases ----

const KEYS = ['type', 'data', 'id', 'room', 'text', 'a', 'b', 'tags', 'meta', 'epoch', 'offset', '__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', '', 'é', '🙂', '$ref', 'valueOf']
const TYPES = ['say', 'add', 'echo', 'tag', 'publish', 'refuse', '$join', '$leave', '$ping', '$auth', '$pong', 'say:reply', 'error', '__proto__', 'constructor', 'toString', '', 'SAY', 'x'.repeat(300)]

function jsonString (random: Random, max: number): string {
  const r = random.int(0, 9)
  if (r === 0) return JSON.stringify(random.pick(KEYS))
  // Escapes JSON allows that make odd strings: a lone surrogate, NUL, the line separators.
  // eslint-disable-next-line no-control-regex -- control characters are what it strips
  if (r === 1) return `"${random.pick(['\\ud800', '\\udfff', '\\u0000', '\\u2028', '\\ud83d\\ude42', '\\\\', '\\"', '\\/'])}${text(random, random.int(0, 10)).replace(/[\\"\u0000-\u001f]/g, '')}"`
  return JSON.stringify(text(random, random.size(max)))
}

function jsonNumber (random: Random): string {
  return random.pick(['0', '-0', '1', '-1', '1.5', '1e308', '-1e308', '1e400', '-1e400', '5e-324', '9007199254740993', '123456789012345678901234567890', '0.1', '2', String(random.int(-1000, 1000))])
}

/** Random JSON text, up to `depth` levels of nesting; strings up to `max` characters. */
function jsonValue (random: Random, depth: number, max: number): string {
  const r = random.int(0, depth <= 0 ? 4 : 7)
  if (r === 0) return 'null'
  if (r === 1) return random.bool() ? 'true' : 'false'
  if (r === 2) return jsonNumber(random)
  if (r <= 4) return jsonString(random, max)
  if (r === 5) {
    const n = random.int(0, 6)
    return `[${Array.from({ length: n }, () => jsonValue(random, depth - 1, max >> 1)).join(',')}]`
  }
  const n = random.int(0, 6)
  return `{${Array.from({ length: n }, () => `${random.bool(0.7) ? JSON.stringify(random.pick(KEYS)) : jsonString(random, 20)}:${jsonValue(random, depth - 1, max >> 1)}`).join(',')}}`
}

/** A room name for a `$join`: valid, too long, reserved, with control characters, or one the fuzz routes' authorize refuses or throws for. */
export function roomName (random: Random): string {
  const r = random.int(0, 9)
  if (r === 0) return ''
  if (r === 1) return `$${text(random, 5)}`
  if (r === 2) return 'r'.repeat(random.int(120, 140))
  if (r === 3) return `ctl\u0001${random.int(0, 9)}`
  if (r === 4) return `throw${random.int(0, 3)}`
  if (r === 5) return `mthrow${random.int(0, 3)}`
  if (r === 6) return random.pick(['__proto__', 'constructor', 'toString', 'hasOwnProperty'])
  if (r === 7) return `n${text(random, random.int(1, 8))}`
  return `room${random.int(0, 20)}`
}

function idText (random: Random): string | null {
  const r = random.int(0, 11)
  if (r <= 2) return null
  if (r === 3) return String(random.int(0, 1e6))
  if (r === 4) return JSON.stringify(`id-${random.int(0, 1e6)}`)
  if (r === 5) return JSON.stringify('i'.repeat(random.pick([128, 129, 1000])))
  if (r === 6) return jsonNumber(random)
  if (r === 7) return random.pick(['true', 'false', 'null', '[]', '{}', '{"__proto__":1}', '[1,2]'])
  if (r === 8) return JSON.stringify(random.pick(['__proto__', 'constructor', '', '🙂']))
  return String(random.next())
}

function envelope (random: Random, type: string, data: string | null): string {
  const fields: string[] = [`"type":${JSON.stringify(type)}`]
  if (data !== null) fields.push(`"data":${data}`)
  const id = idText(random)
  if (id !== null) fields.push(`"id":${id}`)
  if (random.bool(0.1)) fields.push(`"__proto__":${jsonValue(random, 2, 20)}`)
  if (random.bool(0.05)) fields.push(`"type":${jsonValue(random, 0, 10)}`)
  return `{${random.shuffle(fields).join(',')}}`
}

/** Data close to a type's schema: right, nearly right, or anything. */
function dataFor (random: Random, type: string): string | null {
  if (random.bool(0.15)) return random.bool(0.3) ? null : jsonValue(random, 4, 200)
  const str = (): string => jsonString(random, 50)
  switch (type) {
    case 'say': return `{"text":${random.bool(0.1) ? JSON.stringify('t'.repeat(random.int(1990, 2010))) : str()}}`
    case 'add': return `{"a":${random.bool(0.8) ? jsonNumber(random) : str()},"b":${jsonNumber(random)}}`
    case 'echo': return jsonValue(random, random.int(0, 12), 3000)
    case 'tag': return `{"tags":[${Array.from({ length: random.int(0, 12) }, str).join(',')}]${random.bool() ? `,"meta":{"__proto__":${jsonNumber(random)},"constructor":${jsonNumber(random)},"x":1}` : ''}}`
    case 'publish': return `{"room":${JSON.stringify(roomName(random))},"text":${str()}}`
    case 'refuse': return 'null'
    case '$join': {
      const parts = [`"room":${JSON.stringify(roomName(random))}`]
      if (random.bool(0.3)) parts.push(`"epoch":${random.bool() ? str() : JSON.stringify('e'.repeat(random.int(60, 70)))}`)
      if (random.bool(0.3)) parts.push(`"offset":${jsonNumber(random)}`)
      if (random.bool(0.3)) parts.push(`"meta":${random.bool(0.2) ? JSON.stringify('m'.repeat(random.int(1000, 1100))) : jsonValue(random, 3, 100)}`)
      return `{${parts.join(',')}}`
    }
    case '$leave': return `{"room":${JSON.stringify(roomName(random))}}`
    default: return jsonValue(random, 3, 100)
  }
}

export interface JsonCase {
  path: '/contract' | '/strict'
  messages: Array<string | Buffer>
  /** A message over maxMsgSize was sent: the server closes with 1009. */
  oversized: boolean
  label: string[]
}

export function jsonCase (random: Random): JsonCase {
  const messages: Array<string | Buffer> = []
  const label: string[] = []
  let oversized = false
  const n = random.int(1, 12)
  for (let i = 0; i < n && !oversized; i++) {
    const r = random.int(0, 19)
    let message: string | Buffer
    if (r === 0) {
      message = jsonValue(random, random.int(0, 6), 500)
      label.push('any JSON')
    } else if (r === 1) {
      const valid = envelope(random, random.pick(TYPES), dataFor(random, 'echo'))
      message = valid.slice(0, random.int(0, valid.length - 1))
      label.push('cut JSON')
    } else if (r === 2) {
      message = random.bytes(random.size(500))
      label.push('binary')
    } else if (r === 3) {
      // Deep nesting, still under maxMsgSize.
      const depth = random.int(100, 5000)
      message = `{"type":"echo","data":${'['.repeat(depth)}${']'.repeat(depth)},"id":1}`
      label.push('deep nesting')
    } else if (r === 4) {
      // A long string: just under the limit, or (rarely) just over it.
      const over = random.bool(0.2)
      const room = LIMITS.maxMsgSize - 40
      message = `{"type":"echo","data":${JSON.stringify('s'.repeat(over ? room + 100 : room - random.int(0, 1000)))},"id":"big"}`
      label.push(over ? 'over maxMsgSize' : 'long string')
    } else {
      const type = random.pick(TYPES)
      message = envelope(random, type, dataFor(random, type))
      label.push(type.length > 20 ? 'long type' : type)
    }
    const size = typeof message === 'string' ? Buffer.byteLength(message) : message.length
    if (size > LIMITS.maxMsgSize) oversized = true
    messages.push(message)
  }
  return { path: random.bool(0.8) ? '/contract' : '/strict', messages, oversized, label }
}

function parseEnvelope (text: string): { type?: unknown, id?: unknown, data?: { code?: unknown } } | null {
  try {
    const value = JSON.parse(text) as unknown
    return typeof value === 'object' && value !== null ? value : null
  } catch {
    return null
  }
}

// Not once(): it rejects on 'error', which a fuzzed connection may well emit before it closes.
function closeOf (ws: WebSocket): Promise<[number, Buffer]> {
  return new Promise((resolve) => { ws.once('close', (code: number, reason: Buffer) => { resolve([code, reason]) }) })
}

function openOf (ws: WebSocket): Promise<void> {
  return new Promise((resolve) => { ws.once('open', () => { resolve() }) })
}

export async function runJsonCase (port: number, fuzz: JsonCase, boundMs: number, probe: number, replies: Tally): Promise<CaseResult> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}${fuzz.path}`)
  ws.on('error', () => {})
  const closed = closeOf(ws)
  let failure: string | null = null
  let ponged: (() => void) | null = null
  const probeId = `probe-${probe}`
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    const parsed = isBinary ? null : parseEnvelope(data.toString())
    if (parsed === null || typeof parsed.type !== 'string') {
      failure ??= `the server sent something that is not an envelope: ${data.toString().slice(0, 100)}`
      return
    }
    count(replies, parsed.type === 'error' ? `error ${String(parsed.data?.code)}` : parsed.type)
    if (parsed.type === '$pong' && parsed.id === probeId) ponged?.()
  })
  const opened = await withDeadline(Promise.race([openOf(ws), closed]), boundMs)
  if (opened === 'timeout' || ws.readyState !== WebSocket.OPEN) {
    ws.terminate()
    return { failure: `could not open ${fuzz.path}`, outcome: 'no open' }
  }
  const answered = new Promise<void>((resolve) => { ponged = resolve })
  for (const message of fuzz.messages) ws.send(message)
  ws.send(JSON.stringify({ type: '$ping', data: null, id: probeId }))
  const outcome = await withDeadline(Promise.race([answered.then(() => 'pong' as const), closed.then(() => 'closed' as const)]), boundMs)
  if (outcome === 'timeout') failure ??= 'the $ping probe was not answered in time'
  if (outcome === 'closed' && fuzz.path === '/contract' && !fuzz.oversized) failure ??= 'closed before the $ping probe was answered'
  if (ws.readyState === WebSocket.OPEN) ws.close(1000)
  const ended = await withDeadline(closed, boundMs)
  if (ended === 'timeout') {
    ws.terminate()
    return { failure: failure ?? 'the connection did not close in time', outcome: 'stuck' }
  }
  const [code] = ended
  const allowed = fuzz.oversized ? [1000, 1009, 1007] : fuzz.path === '/strict' ? [1000, 1007] : [1000]
  if (!allowed.includes(code)) failure ??= `closed with ${code}, expected one of ${allowed.join(', ')}`
  return { failure, outcome: String(code) }
}

// ---- the run ----

export interface FuzzOptions {
  seed: number
  /** Cases in all, frame and JSON cases mixed. */
  iterations: number
  /** Cases per batch; a batch runs `concurrency` cases at a time. */
  batchSize?: number
  concurrency?: number
  /** How long a connection may stay open after the case sent its last byte. */
  boundMs?: number
  /** Stop early past this many ms (the summary says how far it got). */
  maxDurationMs?: number
  onBatch?: (batch: BatchReport) => void
}

export interface BatchReport {
  index: number
  cases: number
  heapUsed: number
  rss: number
  echoed: boolean
  elapsedMs: number
}

export interface Failure {
  case: number
  kind: 'frames' | 'json'
  label: string
  why: string
}

export interface FuzzSummary {
  seed: number
  iterations: number
  ran: number
  frameCases: number
  jsonCases: number
  failures: Failure[]
  /** Client-side endings of frame cases and JSON cases, by close code. */
  frameOutcomes: Tally
  jsonOutcomes: Tally
  /** What the server sent on the contract routes, by type (errors by code). */
  replies: Tally
  /** How the server saw the connections end. */
  serverEndings: Tally
  errorLogs: Tally
  batches: BatchReport[]
  /** Connections the server still had open after a batch, past the bound. */
  leftOpen: number
  gcForced: boolean
  durationMs: number
}

/** A real GC if there is one: `--expose-gc`, or V8's flag set at run time. */
export function garbageCollector (): (() => void) | null {
  const exposed = (globalThis as { gc?: () => void }).gc
  if (typeof exposed === 'function') return exposed
  try {
    setFlagsFromString('--expose-gc')
    return runInNewContext('gc') as () => void
  } catch {
    return null
  }
}

/** A fresh, well-behaved client: opens /echo, gets its message back, closes with 1000. */
export async function echoes (port: number): Promise<boolean> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/echo`)
  ws.on('error', () => {})
  const closed = closeOf(ws)
  try {
    if (await withDeadline(Promise.race([openOf(ws), closed]), 5000) === 'timeout' || ws.readyState !== WebSocket.OPEN) return false
    const text = `well-behaved ${Math.random()}`
    const reply = new Promise<Buffer>((resolve) => { ws.once('message', resolve) })
    ws.send(text)
    const got = await withDeadline(reply, 5000)
    ws.close(1000)
    const ended = await withDeadline(closed, 5000)
    return got !== 'timeout' && got.toString() === text && ended !== 'timeout' && ended[0] === 1000
  } finally {
    ws.terminate()
  }
}

export async function runFuzz (options: FuzzOptions): Promise<FuzzSummary> {
  const started = Date.now()
  const batchSize = options.batchSize ?? 50
  const concurrency = options.concurrency ?? 10
  const boundMs = options.boundMs ?? 4000
  const random = new Random(options.seed)
  const gc = garbageCollector()
  const server = await startServer()
  const summary: FuzzSummary = {
    seed: options.seed,
    iterations: options.iterations,
    ran: 0,
    frameCases: 0,
    jsonCases: 0,
    failures: [],
    frameOutcomes: {},
    jsonOutcomes: {},
    replies: {},
    serverEndings: server.endings,
    errorLogs: server.errorLogs,
    batches: [],
    leftOpen: 0,
    gcForced: gc !== null,
    durationMs: 0
  }
  try {
    for (let first = 0; first < options.iterations; first += batchSize) {
      if (options.maxDurationMs !== undefined && Date.now() - started > options.maxDurationMs) break
      const batchStart = Date.now()
      // Cases are generated up front, in order, so a seed gives the same cases at any concurrency.
      const cases = Array.from({ length: Math.min(batchSize, options.iterations - first) }, (_, i) => {
        const index = first + i
        return random.bool(0.6) ? { index, kind: 'frames' as const, fuzz: frameCase(random) } : { index, kind: 'json' as const, fuzz: jsonCase(random) }
      })
      let next = 0
      const worker = async (): Promise<void> => {
        while (next < cases.length) {
          const item = cases[next++] as (typeof cases)[number]
          let result: CaseResult
          try {
            result = item.kind === 'frames'
              ? await runFrameCase(server.port, item.fuzz, boundMs)
              : await runJsonCase(server.port, item.fuzz, boundMs, item.index, summary.replies)
          } catch (error) {
            result = { failure: `the case threw: ${(error as Error).message}`, outcome: 'threw' }
          }
          if (item.kind === 'frames') {
            summary.frameCases++
            count(summary.frameOutcomes, result.outcome)
          } else {
            summary.jsonCases++
            count(summary.jsonOutcomes, result.outcome)
          }
          summary.ran++
          if (result.failure !== null) {
            summary.failures.push({ case: item.index, kind: item.kind, label: item.fuzz.label.join(', ') + (item.kind === 'frames' ? ` / finale ${item.fuzz.finale}` : ` on ${item.fuzz.path}`), why: result.failure })
          }
        }
      }
      await Promise.all(Array.from({ length: concurrency }, worker))
      // Every connection of the batch must be gone on the server side too.
      const deadline = Date.now() + boundMs
      while (server.open.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
      summary.leftOpen += server.open.size
      for (const conn of server.open) {
        summary.failures.push({ case: -1, kind: 'frames', label: `batch ${summary.batches.length}`, why: `the server still had a connection to ${conn.request.url} open ${boundMs} ms after the batch` })
        conn.terminate()
      }
      const echoed = await echoes(server.port)
      if (!echoed) summary.failures.push({ case: -1, kind: 'frames', label: `batch ${summary.batches.length}`, why: 'a well-behaved client got no echo after the batch' })
      gc?.()
      const memory = process.memoryUsage()
      const report: BatchReport = { index: summary.batches.length, cases: cases.length, heapUsed: memory.heapUsed, rss: memory.rss, echoed, elapsedMs: Date.now() - batchStart }
      summary.batches.push(report)
      options.onBatch?.(report)
    }
  } finally {
    await server.app.close()
    summary.durationMs = Date.now() - started
  }
  return summary
}

/** The seed and iteration count from FUZZ_SEED and FUZZ_ITERATIONS, or a fresh seed and `iterations`. */
export function fuzzSettings (iterations: number): { seed: number, iterations: number } {
  const seed = process.env.FUZZ_SEED === undefined || process.env.FUZZ_SEED === '' ? Math.floor(Math.random() * 2 ** 32) : Number(process.env.FUZZ_SEED) >>> 0
  const n = process.env.FUZZ_ITERATIONS === undefined || process.env.FUZZ_ITERATIONS === '' ? iterations : Number(process.env.FUZZ_ITERATIONS)
  if (!Number.isInteger(n) || n < 1) throw new TypeError(`FUZZ_ITERATIONS must be a positive integer, got ${String(process.env.FUZZ_ITERATIONS)}`)
  return { seed, iterations: n }
}
