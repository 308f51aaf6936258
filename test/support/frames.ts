import { once } from 'node:events'
import net from 'node:net'
import type { Test } from 'tap'
import { handshake } from './helpers.js'

export interface FrameOptions {
  fin?: boolean
  rsv?: number
  mask?: boolean
  /** Length to declare instead of the payload's (for lying headers). */
  declaredLength?: number
}

/** Encodes one client frame (masked unless told otherwise). */
export function frame (opcode: number, payload: Buffer | string = Buffer.alloc(0), options: FrameOptions = {}): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload
  const masked = options.mask ?? true
  const length = options.declaredLength ?? data.length
  const head: number[] = [((options.fin ?? true) ? 0x80 : 0) | ((options.rsv ?? 0) << 4) | opcode]
  const maskBit = masked ? 0x80 : 0
  if (length < 126) head.push(maskBit | length)
  else if (length < 65536) head.push(maskBit | 126, length >> 8, length & 0xff)
  else {
    head.push(maskBit | 127, 0, 0, 0, 0)
    head.push((length >>> 24) & 0xff, (length >>> 16) & 0xff, (length >>> 8) & 0xff, length & 0xff)
  }
  if (!masked) return Buffer.concat([Buffer.from(head), data])
  const key = Buffer.from([0x12, 0x34, 0x56, 0x78])
  const body = Buffer.from(data)
  for (let i = 0; i < body.length; i++) body[i] = (body[i] as number) ^ (key[i % 4] as number)
  return Buffer.concat([Buffer.from(head), key, body])
}

/** A close frame payload: code and reason. */
export function closePayload (code: number, reason = ''): Buffer {
  const buffer = Buffer.alloc(2 + Buffer.byteLength(reason))
  buffer.writeUInt16BE(code, 0)
  buffer.write(reason, 2)
  return buffer
}

/** One frame as the server sent it (server frames are unmasked). */
export interface ServerFrame {
  fin: boolean
  rsv1: boolean
  opcode: number
  payload: Buffer
}

/** Parses the frames the server writes to `socket`, from `initial` bytes on; `next()` awaits the next one. */
export class FrameReader {
  readonly frames: ServerFrame[] = []
  private buffered: Buffer
  private read = 0
  private waiting: (() => void) | null = null
  private ended = false

  constructor (socket: net.Socket, initial: Buffer = Buffer.alloc(0)) {
    this.buffered = initial
    socket.on('data', (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk])
      this.parse()
    })
    socket.on('close', () => {
      this.ended = true
      this.wake()
    })
    this.parse()
  }

  private wake (): void {
    const waiting = this.waiting
    this.waiting = null
    waiting?.()
  }

  private parse (): void {
    for (;;) {
      const b = this.buffered
      if (b.length < 2) break
      let length = (b[1] as number) & 0x7f
      let offset = 2
      if (length === 126) {
        if (b.length < 4) break
        length = b.readUInt16BE(2)
        offset = 4
      } else if (length === 127) {
        if (b.length < 10) break
        length = Number(b.readBigUInt64BE(2))
        offset = 10
      }
      if (b.length < offset + length) break
      const first = b[0] as number
      this.frames.push({ fin: (first & 0x80) !== 0, rsv1: (first & 0x40) !== 0, opcode: first & 0x0f, payload: b.subarray(offset, offset + length) })
      this.buffered = b.subarray(offset + length)
    }
    if (this.read < this.frames.length) this.wake()
  }

  /** The next frame; rejects once the socket closed with no frame left. */
  async next (): Promise<ServerFrame> {
    while (this.read >= this.frames.length) {
      if (this.ended) throw new Error('the socket closed')
      await new Promise<void>((resolve) => { this.waiting = resolve })
    }
    return this.frames[this.read++] as ServerFrame
  }
}

/** A raw TCP client that completed the handshake; reads server frames one by one. */
export class RawClient {
  readonly socket: net.Socket
  private readonly reader: FrameReader
  readonly closed: Promise<void>

  constructor (socket: net.Socket, rest: Buffer) {
    this.socket = socket
    this.closed = once(socket, 'close').then(() => undefined)
    this.reader = new FrameReader(socket, rest)
  }

  /** The next frame from the server, or null once the TCP connection closed. */
  next (): Promise<ServerFrame | null> {
    return this.reader.next().catch(() => null)
  }

  send (data: Buffer): void {
    this.socket.write(data)
  }
}

/** Opens a raw WebSocket connection to `path` (the 101 must come back). */
export async function rawClient (port: number, path: string, headers: Record<string, string | null> = {}): Promise<RawClient> {
  const socket = net.connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write(handshake(path, headers))
  let buffered = Buffer.alloc(0)
  for (;;) {
    const [chunk] = await once(socket, 'data') as [Buffer]
    buffered = Buffer.concat([buffered, chunk])
    const end = buffered.indexOf('\r\n\r\n')
    if (end === -1) continue
    const head = buffered.subarray(0, end).toString('latin1')
    if (!head.startsWith('HTTP/1.1 101')) throw new Error(`handshake failed: ${head.split('\r\n')[0] ?? ''}`)
    return new RawClient(socket, buffered.subarray(end + 4))
  }
}

export function closeCodeOfFrame (frame: ServerFrame | null): number | null {
  if (frame === null || frame.opcode !== 0x8) return null
  return frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : 1005
}

/**
 * Sends a handshake over raw TCP and resolves once the response head is in: status, lowercased
 * headers, the socket (still open, destroyed on teardown) and a reader for the frames that follow.
 */
export async function rawUpgrade (t: Test, port: number, request: string): Promise<{ status: number, headers: Record<string, string>, socket: net.Socket, frames: FrameReader }> {
  const socket = net.connect(port, '127.0.0.1')
  t.teardown(() => { socket.destroy() })
  await once(socket, 'connect')
  socket.write(request)
  let buffered = Buffer.alloc(0)
  let end = -1
  while (end === -1) {
    const [chunk] = await once(socket, 'data') as [Buffer]
    buffered = Buffer.concat([buffered, chunk])
    end = buffered.indexOf('\r\n\r\n')
  }
  const [statusLine = '', ...lines] = buffered.subarray(0, end).toString('latin1').split('\r\n')
  const headers: Record<string, string> = {}
  for (const line of lines) {
    const colon = line.indexOf(':')
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
  }
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine)?.[1])
  return { status, headers, socket, frames: new FrameReader(socket, buffered.subarray(end + 4)) }
}
