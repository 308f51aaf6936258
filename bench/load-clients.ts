/**
 * One client process of bench/load.ts, forked with IPC. On `{ cmd: 'connect', port, count, first }`
 * it opens `count` ws clients to /load (100 handshakes at a time); each sends `$auth`, then `$join`s
 * room `room-<i % 10>`, and answers the server's pings (ws does that by itself). It then reports
 * counts on `{ cmd: 'report' }`, and on `{ cmd: 'close' }` closes every client with 1000.
 */
import WebSocket from 'ws'

const BATCH = 100
const STEP_MS = 30_000
const ROOMS = 10

interface Command { cmd: 'connect' | 'report' | 'close', port?: number, count?: number, first?: number }

const sockets: WebSocket[] = []
let connected = 0
let failed = 0
let received = 0
let maxDelayMs = 0
let closingOnPurpose = false
/** Closes that came from the server side while this process had not asked for any: code → count. */
const unexpectedCloses: Record<string, number> = {}
const failures: Record<string, number> = {}

// Event-loop lag of this client process: a late pong is the client's fault, not the server's.
let maxLagMs = 0
let expected = Date.now() + 100
const lag = setInterval(() => {
  maxLagMs = Math.max(maxLagMs, Date.now() - expected)
  expected = Date.now() + 100
}, 100)

function send (message: unknown): void {
  process.send?.(message)
}

async function open (port: number, index: number): Promise<void> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/load`)
  sockets.push(ws)
  let step = 'open'
  const done = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`${step} timed out`)) }, STEP_MS)
    ws.on('error', (error) => { clearTimeout(timer); reject(error) })
    ws.on('open', () => {
      step = 'auth'
      ws.send(JSON.stringify({ type: '$auth', data: `user-${index}`, id: 'a' }))
    })
    ws.on('message', (data: Buffer) => {
      const message = JSON.parse(data.toString()) as { type: string, data: { at?: number } }
      if (message.type === '$auth:reply') {
        step = 'join'
        ws.send(JSON.stringify({ type: '$join', data: { room: `room-${index % ROOMS}` }, id: 'j' }))
      } else if (message.type === '$join:reply') {
        clearTimeout(timer)
        resolve()
      } else if (message.type === 'tick') {
        received++
        maxDelayMs = Math.max(maxDelayMs, Date.now() - (message.data.at as number))
      }
    })
    ws.on('close', (code: number) => {
      clearTimeout(timer)
      if (!closingOnPurpose) unexpectedCloses[String(code)] = (unexpectedCloses[String(code)] ?? 0) + 1
      reject(new Error(`closed with ${code} during ${step}`))
    })
  })
  try {
    await done
    connected++
  } catch (error) {
    failed++
    const key = (error as Error).message
    failures[key] = (failures[key] ?? 0) + 1
  }
}

function report (): Record<string, unknown> {
  return { connected, failed, failures, received, unexpectedCloses, open: sockets.filter((ws) => ws.readyState === WebSocket.OPEN).length, maxLagMs, maxDelayMs }
}

process.on('message', (command: Command) => {
  void (async () => {
    if (command.cmd === 'connect') {
      const { port = 0, count = 0, first = 0 } = command
      for (let start = 0; start < count; start += BATCH) {
        const batch: Array<Promise<void>> = []
        for (let i = start; i < Math.min(count, start + BATCH); i++) batch.push(open(port, first + i))
        await Promise.all(batch)
      }
      maxLagMs = 0
      send({ cmd: 'connected', ...report() })
    } else if (command.cmd === 'report') {
      send({ cmd: 'report', ...report() })
    } else {
      closingOnPurpose = true
      const closes = sockets.filter((ws) => ws.readyState === WebSocket.OPEN).map((ws) => new Promise<void>((resolve) => {
        ws.once('close', () => { resolve() })
        ws.close(1000)
        setTimeout(() => { ws.terminate(); resolve() }, 10_000).unref()
      }))
      await Promise.all(closes)
      clearInterval(lag)
      send({ cmd: 'closed', ...report() })
    }
  })()
})
