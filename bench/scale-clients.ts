/**
 * The clients of bench/scale.ts, in a child process of its own (forked with IPC, started with a
 * raised open-file limit), so that one process holds at most some 20,000 sockets.
 *
 *   scale-clients.ts idle <port> <count> <addresses>   `count` ws connections to /idle, from the
 *                                                       comma-separated loopback addresses in turn
 *                                                       (one address has ~28k ports); ws answers pings
 *   scale-clients.ts storm <port> <count>              `count` RealtimeClients (lib/client) on /room,
 *                                                       each joined to the room `storm`
 *
 * Messages to the parent: `{ opened }` once every connection is open (or joined), `{ error }` if
 * one fails. From the parent: `report` (answered with what was seen), `stop` (exits).
 */
import WebSocket from 'ws'
import { RealtimeClient } from '../lib/client/index.js'
import { defineContract } from '../lib/index.js'
import { Type } from '@sinclair/typebox'

const BATCH = 100
const [mode, portText, countText, addressList] = process.argv.slice(2)
const port = Number(portText)
const count = Number(countText)

function send (message: object): void {
  (process.send as (message: object) => void)(message)
}

/** Opens `count` things `open(i)` at a time of BATCH. */
async function inBatches (open: (i: number) => Promise<void>): Promise<void> {
  for (let start = 0; start < count; start += BATCH) {
    await Promise.all(Array.from({ length: Math.min(BATCH, count - start) }, async (_, i) => { await open(start + i) }))
  }
}

// ---- idle ----

let closed = 0
const closeCodes: Record<string, number> = {}
const sockets: WebSocket[] = []

async function openIdle (i: number, addresses: string[]): Promise<void> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/idle`, { perMessageDeflate: false, localAddress: addresses[i % addresses.length] })
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => { ws.off('error', reject); resolve() })
    ws.once('error', reject)
  })
  ws.on('error', () => {})
  ws.on('close', (code: number) => {
    closed++
    closeCodes[code] = (closeCodes[code] ?? 0) + 1
  })
  sockets.push(ws)
}

// ---- storm ----

// The server's contract (bench/scale-server.ts), for the client's types.
export const stormContract = defineContract({ client: {}, server: { tick: Type.Object({ seq: Type.Integer() }) } })
type StormContract = typeof stormContract
const ROOM = 'storm'

/** What one client went through after the server went away: ms since `stormAt` (the parent's clock, Date.now()). */
interface Trace {
  droppedAt: number
  /** The first attempt to connect again (the backoff's jittered delay after the drop). */
  firstAttemptAt: number
  reopenedAt: number
  rejoinedAt: number
  recovered: boolean | undefined
  /** Sockets opened after the drop (each attempt). */
  attempts: number
  lastSeq: number
}
const clients: Array<RealtimeClient<StormContract>> = []
const traces: Trace[] = []
let stormAt = 0

async function openStormClient (i: number): Promise<void> {
  const trace: Trace = { droppedAt: -1, firstAttemptAt: -1, reopenedAt: -1, rejoinedAt: -1, recovered: undefined, attempts: 0, lastSeq: 0 }
  traces[i] = trace
  // Called with `new` by the client for every attempt: a constructor that returns ws's socket.
  function CountingSocket (url: string, protocols?: string | string[]): WebSocket {
    if (stormAt !== 0) {
      if (trace.firstAttemptAt < 0) trace.firstAttemptAt = Date.now() - stormAt
      trace.attempts++
    }
    return new WebSocket(url, protocols, { perMessageDeflate: false })
  }
  const client = new RealtimeClient<StormContract>({
    url: `ws://127.0.0.1:${port}/room`,
    WebSocket: CountingSocket as unknown as NonNullable<ConstructorParameters<typeof RealtimeClient>[0]['WebSocket']>
  })
  clients[i] = client
  client.on('tick', (data) => { trace.lastSeq = Math.max(trace.lastSeq, data.seq) })
  client.onState((state) => {
    if (stormAt === 0) return
    const now = Date.now() - stormAt
    if (state === 'reconnecting' && trace.droppedAt < 0) trace.droppedAt = now
    if (state === 'open' && trace.reopenedAt < 0 && trace.droppedAt >= 0) trace.reopenedAt = now
  })
  client.onJoin((outcome) => {
    if (stormAt === 0 || trace.droppedAt < 0 || trace.rejoinedAt >= 0) return
    trace.rejoinedAt = Date.now() - stormAt
    trace.recovered = outcome.recovered
  })
  await client.join(ROOM, { timeoutMs: 60_000 })
}

process.on('message', (message: { type: string, at?: number }) => {
  if (message.type === 'storm') {
    stormAt = message.at as number
  } else if (message.type === 'report') {
    if (mode === 'idle') {
      send({ type: 'report', open: sockets.filter((ws) => ws.readyState === WebSocket.OPEN).length, closed, closeCodes })
    } else {
      send({ type: 'report', traces })
    }
  } else if (message.type === 'stop') {
    for (const ws of sockets) ws.terminate()
    for (const client of clients) client.close()
    process.exit(0)
  }
})

try {
  if (mode === 'idle') {
    const addresses = (addressList ?? '127.0.0.1').split(',')
    await inBatches(async (i) => { await openIdle(i, addresses) })
  } else {
    await inBatches(openStormClient)
  }
  send({ type: 'opened', opened: count })
} catch (error) {
  send({ type: 'error', error: String(error) })
}
