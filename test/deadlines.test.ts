import t, { type Test } from 'tap'
import { once } from 'node:events'
import net, { type Socket } from 'node:net'
import { Type } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import { contractHandler, defineContract } from '../lib/index.js'
import { build, client, connect, deferred, handshake } from './support/helpers.js'

// Every kind of deadline, on real sockets: each fires no earlier than it is due and within a bounded
// lateness, with several of a kind set one after another in an order that goes both ways (each
// next one earlier, then later, than the one before) on the same clock. Which moment a deadline
// starts from is known to lie between two readings of the clock (`from` and `to`); it is due its
// duration after that. A trigger (below) makes the clock move a deadline far away during a pass
// while the ones under test wait. Requests run on the same clock, the plugin instance's; the
// DeadlineClock's own tests (timers.test.ts) check it with many more deadlines in every order.

/** Generous for a loaded machine; a missed re-arm of the clock costs a whole far deadline. */
const LATE_MS = 400
const DURATIONS = [240, 40, 200, 80, 160, 120]
/** A deadline on the same clock that must never delay the others (the clock's timer is armed for the earliest). */
const FAR_MS = 10_000

/**
 * A route whose connection has a receive timeout of 5 ms and a far heartbeat: opened after the
 * deadlines under test are set, it is woken first and moves its own deadline far away during that
 * pass, which must not keep the clock from waking the ones already waiting.
 */
function addTrigger (app: FastifyInstance): void {
  app.get('/trigger', { realtime: { heartbeat: FAR_MS } }, async (conn) => {
    await conn.receive({ timeout: 5 }).catch(() => {})
    await conn.whenClosed()
  })
}

interface Fired {
  what: string
  duration: number
  /** The deadline started at or after `from` and at or before `to`. */
  from: number
  to: number
  /** When it was seen to fire: always at or after it fired. */
  at: number
}

function checkFired (t: Test, fired: Fired[], count: number): void {
  t.equal(fired.length, count, 'every deadline fired')
  const early = fired.filter((f) => f.at < f.from + f.duration).map((f) => `${f.what} ${f.duration}: ${f.at - f.from} ms`)
  const late = fired.filter((f) => f.at > f.to + f.duration + LATE_MS).map((f) => `${f.what} ${f.duration}: ${f.at - f.to} ms`)
  t.same(early, [], 'none fired before it was due')
  t.same(late, [], `none fired more than ${LATE_MS} ms late`)
}

t.test('heartbeat pings and the drops of silent peers come at their times, for heartbeats set in any order', async (t) => {
  const started = new Map<string, number>()
  const { url } = await build(t, (app) => {
    for (const heartbeat of [...DURATIONS, FAR_MS]) {
      app.get(`/${heartbeat}`, { realtime: { heartbeat } }, async (conn) => {
        started.set(String(heartbeat), Date.now())
        await conn.whenClosed()
      })
    }
    addTrigger(app)
  })
  const fired: Fired[] = []
  const far = await client(t, `${url}/${FAR_MS}`, undefined, { autoPong: false })
  const closes: Array<Promise<unknown>> = []
  for (const heartbeat of DURATIONS) {
    const from = Date.now()
    // Silent: answers no ping, so it is pinged `heartbeat` after its last byte (the handshake) and dropped half of it later.
    const c = await client(t, `${url}/${heartbeat}`, undefined, { autoPong: false })
    c.ws.once('ping', () => { fired.push({ what: 'ping', duration: heartbeat, from, to: started.get(String(heartbeat)) as number, at: Date.now() }) })
    closes.push(c.closed.then(() => { fired.push({ what: 'drop', duration: heartbeat * 1.5, from, to: started.get(String(heartbeat)) as number, at: Date.now() }) }))
  }
  await client(t, `${url}/trigger`)
  await Promise.all(closes)
  checkFired(t, fired, DURATIONS.length * 2)
  far.ws.terminate()
})

t.test('receive timeouts fire at their times, set in any order', async (t) => {
  const fired: Fired[] = []
  const done = deferred()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, async (conn, request) => {
      const timeout = Number((request.query as { ms: string }).ms)
      const from = Date.now()
      const error = await conn.receive({ timeout }).then(() => null, (error: Error & { code: string }) => error)
      fired.push({ what: `receive (${String(error?.code)})`, duration: timeout, from, to: from, at: Date.now() })
      if (fired.length === DURATIONS.length) done.resolve()
      await conn.whenClosed()
    })
    addTrigger(app)
  })
  const far = await client(t, `${url}/?ms=${FAR_MS}`)
  for (const ms of DURATIONS) await client(t, `${url}/?ms=${ms}`)
  await client(t, `${url}/trigger`)
  await done.promise
  checkFired(t, fired, DURATIONS.length)
  t.same(new Set(fired.map((f) => f.what)), new Set(['receive (FST_RT_RECEIVE_TIMEOUT)']))
  far.ws.terminate()
})

t.test('close timeouts fire at their times, for peers that never answer the close, set in any order', async (t) => {
  const fired: Fired[] = []
  const done = deferred()
  const closing = deferred()
  let started = 0
  const { url } = await build(t, (app) => {
    for (const closeTimeout of [...DURATIONS, FAR_MS]) {
      app.get(`/${closeTimeout}`, { realtime: { closeTimeout } }, async (conn) => {
        await conn.receive()
        const from = Date.now()
        const closed = conn.close()
        if (++started === DURATIONS.length + 1) closing.resolve()
        await closed
        // By our deadline, not ws's own backstop timer (twice as long, a lost connection).
        const reason = (conn.exception as (Error & { code: string }) | null)?.code
        fired.push({ what: `close (${String(conn.closeCode)} ${String(reason)})`, duration: closeTimeout, from, to: from, at: Date.now() })
        if (fired.length === DURATIONS.length) done.resolve()
      })
    }
    addTrigger(app)
  })
  /** A client that reads nothing once open: it never sees the server's close frame, so never answers it. */
  async function deaf (path: string): Promise<void> {
    const ws = await connect(t, `${url}${path}`)
    ;(ws as unknown as { _socket: Socket })._socket.pause()
    ws.send('go')
  }
  await deaf(`/${FAR_MS}`)
  for (const ms of DURATIONS) await deaf(`/${ms}`)
  await closing.promise
  await client(t, `${url}/trigger`)
  await done.promise
  checkFired(t, fired, DURATIONS.length)
  t.same(new Set(fired.map((f) => f.what)), new Set(['close (1006 FST_RT_CLOSE_TIMEOUT)']))
})

t.test('handshake deadlines fire at their times, started one after another on the clock the connections share', async (t) => {
  const HANDSHAKE_MS = 150
  const count = 6
  const held: number[] = []
  const release = deferred()
  t.teardown(() => { release.resolve() })
  const { url, port } = await build(t, (app) => {
    app.get('/', {
      realtime: true,
      preHandler: async (request) => {
        if (request.headers['x-hold'] === undefined) return
        held.push(Date.now())
        await release.promise
      }
    }, async (conn) => { await conn.whenClosed() })
    addTrigger(app)
  }, { handshakeTimeout: HANDSHAKE_MS })
  const fired: Fired[] = []
  const closes: Array<Promise<void>> = []
  for (let i = 0; i < count; i++) {
    const from = Date.now()
    const { socket } = await rawRequestHeld(port, handshake('/', { 'X-Hold': '1' }), held, i)
    closes.push(once(socket, 'close').then(() => { fired.push({ what: 'handshake', duration: HANDSHAKE_MS, from, to: held[i] as number, at: Date.now() }) }))
  }
  await client(t, `${url}/trigger`)
  await Promise.all(closes)
  checkFired(t, fired, count)
})

/** Sends a handshake that a hook holds, and resolves once the hook has it (`held[index]` is then set). */
async function rawRequestHeld (port: number, request: string, held: number[], index: number): Promise<{ socket: Socket }> {
  const socket = net.connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write(request)
  while (held.length <= index) await new Promise((resolve) => setImmediate(resolve))
  return { socket }
}

t.test('request deadlines fire at their times, for timeouts set in any order', async (t) => {
  const contract = defineContract({ client: { wait: { data: Type.Null(), reply: Type.Null() } }, server: {} })
  const started = new Map<number, number>()
  const never = new Promise<null>(() => {})
  const { url } = await build(t, (app) => {
    for (const requestTimeout of [...DURATIONS, FAR_MS]) {
      app.get(`/${requestTimeout}`, { realtime: true }, contractHandler(contract, {
        async wait () {
          started.set(requestTimeout, Date.now())
          return await never
        }
      }, { requestTimeout }))
    }
  })
  const fired: Fired[] = []
  const replies: Array<Promise<void>> = []
  const far = await client(t, `${url}/${FAR_MS}`)
  far.ws.send(JSON.stringify({ type: 'wait', data: null, id: 1 }))
  for (const ms of DURATIONS) {
    const c = await client(t, `${url}/${ms}`)
    const from = Date.now()
    c.ws.send(JSON.stringify({ type: 'wait', data: null, id: 1 }))
    replies.push(c.text().then((text) => {
      const { data } = JSON.parse(text) as { data: { code: string } }
      fired.push({ what: `request (${data.code})`, duration: ms, from, to: started.get(ms) as number, at: Date.now() })
    }))
  }
  await Promise.all(replies)
  checkFired(t, fired, DURATIONS.length)
  t.same(new Set(fired.map((f) => f.what)), new Set(['request (FST_RT_REQUEST_TIMEOUT)']))
  far.ws.terminate()
})

t.test("a request's deadline runs on the clock of the plugin instance its connection came through", async (t) => {
  const contract = defineContract({
    client: { wait: { data: Type.Null(), reply: Type.Null() }, waiting: { data: Type.Null(), reply: Type.Number() } },
    server: {}
  })
  const never = new Promise<null>(() => {})
  const clocks: Array<{ readonly size: number }> = []
  const route = (app: FastifyInstance): void => {
    app.get('/', { realtime: true }, contractHandler(contract, {
      async wait () { return await never },
      // Owners waiting on this connection's clock.
      waiting: (_data, context) => context.connection.plugin.clock.size,
      open (context) { clocks.push(context.connection.plugin.clock) }
    }, { requestTimeout: 150 }))
  }
  const first = await build(t, route)
  const second = await build(t, route)
  const other = await client(t, second.url)
  const c = await client(t, first.url)
  const ask = async (id: number): Promise<unknown> => {
    c.ws.send(JSON.stringify({ type: 'waiting', data: null, id }))
    return (JSON.parse(await c.text()) as { data: unknown }).data
  }
  const before = await ask(1) as number
  c.ws.send(JSON.stringify({ type: 'wait', data: null, id: 2 }))
  t.equal(await ask(3), before + 1, "the pending request waits on its plugin's clock")
  t.equal(clocks.length, 2)
  t.not(clocks[0], clocks[1], 'each plugin instance has its own clock')
  t.equal((JSON.parse(await c.text()) as { data: { code: string } }).data.code, 'FST_RT_REQUEST_TIMEOUT')
  t.equal(await ask(4), before, 'and leaves it once answered')
  other.ws.terminate()
})
