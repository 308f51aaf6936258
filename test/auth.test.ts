import t from 'tap'
import { Type } from '@sinclair/typebox'
import { once } from 'node:events'
import WebSocket from 'ws'
import { contractHandler, defineContract } from '../lib/index.js'
import { build, client, deferred } from './support/helpers.js'

const small = defineContract({ client: { hi: { data: Type.Null(), reply: Type.String() } }, server: {} })

t.test('auth options are checked at registration', async (t) => {
  t.throws(() => contractHandler(small, { hi: () => 'x' }, { auth: {} as never }), { code: 'FST_RT_INVALID_OPTION', message: /"auth"/ })
  t.throws(() => contractHandler(small, { hi: () => 'x' }, { auth: { verify: () => 'u' }, userId: () => 'u' }), { code: 'FST_RT_INVALID_OPTION', message: /"userId"/ })
  t.throws(() => contractHandler(small, { hi: () => 'x' }, { auth: { verify: () => 'u', timeoutMs: 0 } }), { code: 'FST_RT_INVALID_OPTION', message: /"auth.timeoutMs"/ })
})

t.test('a verify that throws refuses the token (4501), logs the failure but never the token', async (t) => {
  const lines: string[] = []
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, contractHandler(small, { hi: () => 'x' }, { auth: { verify () { throw new Error('token store down') } } }))
  }, {}, { logger: { level: 'info', stream: { write (line: string) { lines.push(line) } } } })
  const ws = new WebSocket(url)
  t.teardown(() => ws.terminate())
  await once(ws, 'open')
  ws.send(JSON.stringify({ type: '$auth', data: 'secret-token-123' }))
  const [code] = await once(ws, 'close') as [number]
  t.equal(code, 4501)
  t.ok(lines.some((line) => line.includes('realtime: auth.verify failed') && line.includes('token store down')))
  t.notOk(lines.some((line) => line.includes('secret-token-123')), 'the token is in no log line')
})

t.test('a binary first message is refused; a peer that leaves before authenticating ends quietly', async (t) => {
  const ended = deferred()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, async function (conn, request) {
      await contractHandler(small, { hi: () => 'x' }, { auth: { verify: () => 'u' } }).call(this, conn, request)
      ended.resolve()
    })
  })
  const binary = new WebSocket(url)
  t.teardown(() => binary.terminate())
  await once(binary, 'open')
  binary.send(Buffer.from([1]))
  t.equal((await once(binary, 'close') as [number])[0], 4501)
  await ended.promise
  const leaving = new WebSocket(url)
  t.teardown(() => leaving.terminate())
  await once(leaving, 'open')
  const second = deferred()
  void ended.promise.then(() => second.resolve())
  leaving.close(1000)
  await once(leaving, 'close')
  t.pass('the handler ended without dispatching anything')
})

t.test('after $auth the reply carries the user id and the request id, and messages flow', async (t) => {
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, contractHandler(small, { hi: (_data, ctx) => `hi ${ctx.userId ?? ''}` }, { auth: { verify: (token) => token === 'good' ? 'ada' : null } }))
  })
  const c = await client(t, url)
  c.ws.send(JSON.stringify({ type: '$auth', data: 'good', id: 1 }))
  c.ws.send(JSON.stringify({ type: 'hi', data: null, id: 'h1' }))
  t.same(JSON.parse(await c.text()), { type: '$auth:reply', data: { userId: 'ada' }, id: 1 })
  t.same(JSON.parse(await c.text()), { type: 'hi:reply', data: 'hi ada', id: 'h1' }, 'a message sent during verification waited, then was dispatched')
})

t.test('a first message that is not JSON, or is null, is refused; $auth without an id is answered without one', async (t) => {
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, contractHandler(small, { hi: () => 'x' }, { auth: { verify: () => 'ada' } }))
  })
  for (const first of ['{oops', 'null']) {
    const ws = new WebSocket(url)
    t.teardown(() => ws.terminate())
    await once(ws, 'open')
    ws.send(first)
    t.equal((await once(ws, 'close') as [number])[0], 4501, `${first} is refused`)
  }
  const c = await client(t, url)
  c.ws.send(JSON.stringify({ type: '$auth', data: 'any' }))
  t.same(JSON.parse(await c.text()), { type: '$auth:reply', data: { userId: 'ada' } })
})
