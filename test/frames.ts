import { once } from 'node:events'
import net from 'node:net'
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

export interface ServerFrame {
  opcode: number
  payload: Buffer
}

/** A raw TCP client that completed the handshake; reads server frames one by one. */
export class RawClient {
  readonly socket: net.Socket
  private buffer = Buffer.alloc(0)
  private readonly frames: ServerFrame[] = []
  private waiting: ((frame: ServerFrame | null) => void) | null = null
  ended = false
  readonly closed: Promise<void>

  constructor (socket: net.Socket, rest: Buffer) {
    this.socket = socket
    this.closed = once(socket, 'close').then(() => undefined)
    socket.on('data', (chunk: Buffer) => { this.push(chunk) })
    socket.on('close', () => {
      this.ended = true
      this.waiting?.(null)
      this.waiting = null
    })
    this.push(rest)
  }

  private push (chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk])
    for (;;) {
      if (this.buffer.length < 2) return
      const opcode = (this.buffer[0] as number) & 0x0f
      let length = (this.buffer[1] as number) & 0x7f
      let offset = 2
      if (length === 126) {
        if (this.buffer.length < 4) return
        length = this.buffer.readUInt16BE(2)
        offset = 4
      } else if (length === 127) {
        if (this.buffer.length < 10) return
        length = Number(this.buffer.readBigUInt64BE(2))
        offset = 10
      }
      if (this.buffer.length < offset + length) return
      const parsed = { opcode, payload: this.buffer.subarray(offset, offset + length) }
      this.buffer = this.buffer.subarray(offset + length)
      if (this.waiting !== null) {
        const waiting = this.waiting
        this.waiting = null
        waiting(parsed)
      } else {
        this.frames.push(parsed)
      }
    }
  }

  /** The next frame from the server, or null once the TCP connection closed. */
  next (): Promise<ServerFrame | null> {
    const queued = this.frames.shift()
    if (queued !== undefined) return Promise.resolve(queued)
    if (this.ended) return Promise.resolve(null)
    return new Promise((resolve) => { this.waiting = resolve })
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
