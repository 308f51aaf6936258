import t, { type Test } from 'tap'
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import net from 'node:net'
import { RealtimeSocket } from '../lib/connection/socket.js'
import { build, client } from './support/helpers.js'

// A heartbeat with a pong window (250 ms) that a client in another process answers well within,
// even on a loaded machine, and stalls longer than that window.
const HEARTBEAT = 500
const STALL = 400
const CLIENTS = 10

function stall (): void {
  const end = Date.now() + STALL
  while (Date.now() < end) { /* blocks the event loop on purpose */ }
}

/** Clients in a process of their own (test/support/fixtures/pong-clients.ts), so the stalls here do not stall them. */
class PongClients {
  readonly closes: number[] = []
  private readonly child: ChildProcess

  constructor (t: Test, url: string, count: number) {
    this.child = fork(new URL('./support/fixtures/pong-clients.ts', import.meta.url).pathname, [url, String(count)], { execArgv: process.execArgv })
    this.child.on('message', (message: { type: string, code?: number }) => { if (message.type === 'closed') this.closes.push(message.code as number) })
    t.teardown(() => { this.child.kill('SIGKILL') })
  }

  /** Resolves on the next message of `type`, or on the first close of a client (a broken test fails instead of hanging). */
  async next (type: string): Promise<void> {
    await new Promise<void>((resolve) => {
      const listener = (message: { type: string }): void => {
        if (message.type !== type && message.type !== 'closed') return
        this.child.off('message', listener)
        resolve()
      }
      this.child.on('message', listener)
    })
  }

  /** Resolves once every client has had `n` more pings (or one has closed). */
  async pings (n: number): Promise<void> {
    // A closed client gets no more pings: the test fails on its close instead of waiting for them.
    if (this.closes.length > 0) return
    const pinged = this.next('pinged')
    this.child.send({ type: 'pings', n })
    await pinged
  }
}

/** Calls `hook` right after the server's next ping, once (the ping is on its way: the turn's frames go out first). */
function afterNextPing (t: Test): (hook: () => void) => void {
  const ping = RealtimeSocket.prototype.ping
  let next: (() => void) | null = null
  RealtimeSocket.prototype.ping = function (this: RealtimeSocket, ...args: Parameters<RealtimeSocket['ping']>) {
    ping.apply(this, args)
    const hook = next
    next = null
    hook?.()
  }
  t.teardown(() => { RealtimeSocket.prototype.ping = ping })
  return (hook) => { next = hook }
}

/** A stall in an I/O callback (the poll phase): a byte on a loopback connection whose reader stalls. */
async function pollPhaseStaller (t: Test): Promise<() => void> {
  const server = net.createServer((socket) => { socket.on('data', stall) })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const socket = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
  await once(socket, 'connect')
  t.teardown(() => { socket.destroy(); server.close() })
  return () => { socket.write('x') }
}

t.test('a stall longer than the pong window, right after a ping, kills no connection whose client answered it, in any phase of the event loop', async (t) => {
  const onNextPing = afterNextPing(t)
  const pollStall = await pollPhaseStaller(t)
  const { url, app } = await build(t, (app) => {
    app.get('/', { realtime: { heartbeat: HEARTBEAT } }, async (conn) => { await conn.whenClosed() })
  })
  const clients = new PongClients(t, url, CLIENTS)
  await clients.next('open')
  await clients.pings(1)
  const phases: Record<string, () => void> = {
    // The ping is corked: it leaves at the end of the turn, after the stall, and its window starts then.
    'the same turn, before the ping is written': stall,
    'the same turn, after the ping is written': () => { process.nextTick(stall) },
    timers: () => { setTimeout(stall, 0) },
    check: () => { setImmediate(stall) },
    poll: pollStall
  }
  for (const [phase, start] of Object.entries(phases)) {
    onNextPing(start)
    // Two pings each after the stall: every pong that was pending during it has been judged by then.
    await clients.pings(2)
    t.same(clients.closes, [], `no client closed through a stall in ${phase}`)
  }
  t.equal(app.realtime.metrics.heartbeatKills, 0)
})

t.test('a silent peer is still dropped on time through a stall', async (t) => {
  const onNextPing = afterNextPing(t)
  const { url, app } = await build(t, (app) => {
    app.get('/', { realtime: { heartbeat: HEARTBEAT } }, async (conn) => { await conn.whenClosed() })
  })
  const silent = await client(t, url, undefined, { autoPong: false })
  const opened = Date.now()
  onNextPing(() => { setImmediate(stall) })
  const { code } = await silent.closed
  const dropped = Date.now() - opened
  t.equal(code, 1006)
  t.equal(app.realtime.metrics.heartbeatKills, 1)
  // Due 1.5 heartbeats after its last byte (the handshake); the stall can only push that back by its length.
  t.ok(dropped >= HEARTBEAT * 1.5 - 50, `not before the pong window ran out (${dropped} ms)`)
  t.ok(dropped <= HEARTBEAT * 1.5 + STALL + 400, `not much after (${dropped} ms)`)
})
