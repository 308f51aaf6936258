import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import type { AddressInfo } from 'node:net'
import { setImmediate as turn } from 'node:timers/promises'
import { Type } from '@sinclair/typebox'
import WebSocket from 'ws'
import realtime, { contractHandler, defineContract } from '../../lib/index.js'
import { deferred } from '../support/helpers.js'

const CLIENTS = 50
/** Upper bounds of every stream, in messages and ms, so a broken close cannot spin forever. */
const MAX_MESSAGES = 20_000
const MAX_MS = 10_000
/** The stream is cut once the first client has this many messages: the close lands mid-stream. */
const CLOSE_AFTER = 300

const contract = defineContract({
  client: {},
  server: { n: Type.Object({ seq: Type.Integer() }) }
})

interface Received {
  seqs: number[]
  close: Promise<{ code: number, reason: string }>
}

/** A client that records every number it gets, parsed by `parse`, and how it was closed. */
function receiver (url: string, parse: (text: string) => number, onMessage: () => void): { ws: WebSocket, received: Received, opened: Promise<void> } {
  const ws = new WebSocket(url)
  const seqs: number[] = []
  ws.on('message', (data: Buffer) => {
    const seq = parse(data.toString())
    if (seq > 0) {
      seqs.push(seq)
      onMessage()
    }
  })
  const close = new Promise<{ code: number, reason: string }>((resolve) => {
    ws.once('close', (code: number, reason: Buffer) => { resolve({ code, reason: reason.toString() }) })
  })
  const opened = new Promise<void>((resolve, reject) => {
    ws.once('open', () => { resolve() })
    ws.once('error', reject)
  })
  return { ws, received: { seqs, close }, opened }
}

/** Where the received numbers stop being 1, 2, 3, ... (their length when they never do). */
function contiguousUntil (seqs: number[]): number {
  let i = 0
  while (i < seqs.length && seqs[i] === i + 1) i++
  return i
}

async function listen (app: FastifyInstance): Promise<number> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  return (app.server.address() as AddressInfo).port
}

t.test('room members streamed to during app.close() get every message published before it, in order, then 1001', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(realtime)
  app.get('/stream', { realtime: true }, contractHandler(contract, {}, { rooms: { authorize: () => true } }))
  const port = await listen(app)

  let firstClientCount = 0
  const cut = deferred()
  const clients = Array.from({ length: CLIENTS }, (_, i) => receiver(`ws://127.0.0.1:${port}/stream`, (text) => {
    const message = JSON.parse(text) as { type: string, data: { seq?: number } }
    return message.type === 'n' ? message.data.seq as number : 0
  }, () => { if (i === 0 && ++firstClientCount === CLOSE_AFTER) cut.resolve() }))
  await Promise.all(clients.map((c) => c.opened))
  await Promise.all(clients.map(async ({ ws }) => {
    const joined = new Promise<string>((resolve) => { ws.once('message', (data: Buffer) => { resolve(data.toString()) }) })
    ws.send(JSON.stringify({ type: '$join', data: { room: 'stream' }, id: 1 }))
    t.match(JSON.parse(await joined), { type: '$join:reply', id: 1 })
  }))

  let published = 0
  let stop = false
  void cut.promise.then(() => { stop = true })
  const started = Date.now()
  // eslint-disable-next-line no-unmodified-loop-condition -- set when the cut happens
  while (!stop && published < MAX_MESSAGES && Date.now() - started < MAX_MS) {
    await app.realtime.publish(contract, 'stream', 'n', { seq: published + 1 })
    published++
    // Let the clients read now and then, so the close comes while messages are on the wire.
    if (published % 50 === 0) await turn()
  }
  t.ok(stop, `the first client had ${CLOSE_AFTER} messages before the cut (published ${published})`)
  const beforeClose = published
  const closing = app.close()
  // One more after close() was called: it may be delivered or not, and may reject; it must not crash.
  let after: 'delivered-or-not' | 'rejected' = 'delivered-or-not'
  await app.realtime.publish(contract, 'stream', 'n', { seq: beforeClose + 1 }).catch(() => { after = 'rejected' })
  t.comment(`published ${beforeClose} before close(); the publish after it: ${after}`)
  await closing

  for (const [i, { received }] of clients.entries()) {
    const { seqs } = received
    const until = contiguousUntil(seqs)
    t.ok(until >= beforeClose, `client ${i} got 1..${beforeClose} in order with no gap (contiguous up to ${until})`)
    t.equal(until, seqs.length, `client ${i} got nothing out of order after that`)
    t.ok(seqs.length <= beforeClose + 1, `client ${i} got nothing that was never published`)
    t.same(await received.close, { code: 1001, reason: 'Server shutting down' }, `client ${i} then got 1001`)
  }
})

t.test('a raw route streaming with sendText during app.close(): every message sent before the close arrives, in order, then 1001', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(realtime)
  // What each handler sent successfully: the numbers whose sendText resolved.
  const sent: number[] = []
  const cut = deferred()
  let firstClientCount = 0
  app.get('/stream', { realtime: true }, async (conn) => {
    const index = sent.length
    sent.push(0)
    const started = Date.now()
    for (let seq = 1; seq <= MAX_MESSAGES && Date.now() - started < MAX_MS; seq++) {
      try {
        await conn.sendText(String(seq))
      } catch {
        break
      }
      sent[index] = seq
      if (seq % 50 === 0) await turn()
    }
    await conn.whenClosed()
  })
  const port = await listen(app)
  const clients = Array.from({ length: CLIENTS }, (_, i) => receiver(`ws://127.0.0.1:${port}/stream`, Number, () => {
    if (i === 0 && ++firstClientCount === CLOSE_AFTER) cut.resolve()
  }))
  await Promise.all(clients.map((c) => c.opened))
  await cut.promise
  const sentBeforeClose = [...sent]
  await app.close()

  t.equal(sent.length, CLIENTS, 'every client had a handler')
  // Which handler served which client is not known, so compare the multisets of stream lengths.
  const lengths = clients.map(({ received }) => received.seqs.length).sort((a, b) => a - b)
  t.same(lengths, [...sent].sort((a, b) => a - b), 'each client got exactly as many messages as its handler sent successfully')
  t.ok(Math.min(...sent) >= Math.min(...sentBeforeClose), 'no handler had sent fewer when the stream ended than when close() was called')
  t.ok(Math.max(...sent) < MAX_MESSAGES, 'the close, not the bound, ended the streams')
  for (const [i, { received }] of clients.entries()) {
    t.equal(contiguousUntil(received.seqs), received.seqs.length, `client ${i} got 1..${received.seqs.length} in order with no gap`)
    t.same(await received.close, { code: 1001, reason: 'Server shutting down' }, `client ${i} then got 1001`)
  }
})
