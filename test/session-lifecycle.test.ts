import t from 'tap'
import { once } from 'node:events'
import { Type } from '@sinclair/typebox'
import { contractHandler, defineContract, type RealtimeConnection } from '../lib/index.js'
import { build, client, deferred } from './support/helpers.js'

// A contract route's session runs on callbacks (no promise held while open): these pin the paths
// around it that a plain open-message-close run does not take.

const who = defineContract({ client: { whoami: { data: Type.Null(), reply: Type.Union([Type.String(), Type.Null()]) } }, server: {} })

t.test('a userId that resolves later names the connection\'s user', async (t) => {
  const { url, app } = await build(t, (app) => {
    app.get('/', { realtime: true }, contractHandler(who, { whoami: (_data, ctx) => ctx.userId }, {
      userId: async (request) => await Promise.resolve((request.query as { user?: string }).user ?? null)
    }))
  })
  const c = await client(t, `${url}/?user=ada`)
  c.ws.send(JSON.stringify({ type: 'whoami', data: null, id: 1 }))
  t.same(JSON.parse(await c.text()), { type: 'whoami:reply', data: 'ada', id: 1 })
  t.same(app.realtime.connections().map((entry) => entry.userId), ['ada'])
  c.ws.close()
  await c.closed
})

t.test('a userId that throws closes that connection with 1011; the next one is served', async (t) => {
  let calls = 0
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, contractHandler(who, { whoami: (_data, ctx) => ctx.userId }, {
      userId: () => { if (++calls === 1) throw new Error('no user store'); return 'bob' }
    }))
  })
  const first = await client(t, `${url}/`)
  t.equal((await first.closed).code, 1011)
  const second = await client(t, `${url}/`)
  second.ws.send(JSON.stringify({ type: 'whoami', data: null, id: 1 }))
  t.same(JSON.parse(await second.text()), { type: 'whoami:reply', data: 'bob', id: 1 })
  second.ws.close()
  await second.closed
})

t.test('a connection that closes while its async open handler runs: the close handler runs once, and it leaves every room', async (t) => {
  const release = deferred()
  const closes: Array<number | null> = []
  const ended = deferred()
  const { url, app } = await build(t, (app) => {
    app.get('/', { realtime: true }, contractHandler(who, {
      whoami: () => null,
      async open () { await release.promise },
      close (_ctx, code) {
        closes.push(code)
        ended.resolve()
      }
    }))
  })
  const c = await client(t, `${url}/`)
  t.equal(app.realtime.connections().length, 1)
  c.ws.close(4000)
  await c.closed
  release.resolve()
  await ended.promise
  t.same(closes, [4000])
  t.same(app.realtime.connections(), [])
})

t.test('a contract handler called from a route handler of the app\'s own resolves once its connection ended, or rejects with the session\'s failure', async (t) => {
  const outcomes: string[] = []
  const chat = contractHandler(who, { whoami: () => 'x' })
  const failing = contractHandler(who, { whoami: () => 'x', open () { throw new Error('cannot open') } })
  const settled = deferred()
  const { url } = await build(t, (app) => {
    app.get('/wrapped', { realtime: true }, async (connection: RealtimeConnection, request) => {
      await connection.sendText('before the session')
      await chat(connection, request)
      outcomes.push(`done ${String(connection.closeCode)}`)
      settled.resolve()
    })
    app.get('/failing', { realtime: true }, async (connection: RealtimeConnection, request) => {
      await failing(connection, request).catch((error: Error) => { outcomes.push(`rejected ${error.message}`) })
      await connection.close({ code: 4001, reason: 'wrapped failure' })
    })
  })
  const bad = await client(t, `${url}/failing`)
  t.equal((await bad.closed).code, 4001, 'the route handler got the rejection and chose the close code')
  const c = await client(t, `${url}/wrapped`)
  t.equal(await c.text(), 'before the session')
  c.ws.send(JSON.stringify({ type: 'whoami', data: null, id: 1 }))
  t.same(JSON.parse(await c.text()), { type: 'whoami:reply', data: 'x', id: 1 })
  c.ws.close(1000)
  await c.closed
  await settled.promise
  t.same(outcomes, ['rejected cannot open', 'done 1000'])
})

t.test('first-message auth refused: the session never starts and the connection closes', async (t) => {
  const { url, app } = await build(t, (app) => {
    app.get('/', { realtime: true }, contractHandler(who, { whoami: (_data, ctx) => ctx.userId }, {
      auth: { verify: (token: string) => token === 'good' ? 'ada' : null }
    }))
  })
  const c = await client(t, `${url}/`)
  c.ws.send(JSON.stringify({ type: '$auth', data: { token: 'bad' }, id: 1 }))
  const [code] = await once(c.ws, 'close') as [number]
  t.not(code, 1011, 'a refusal is not an internal error')
  t.same(app.realtime.connections(), [])
})
