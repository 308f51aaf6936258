import t, { type Test } from 'tap'
import { Type } from '@sinclair/typebox'
import { contractHandler, defineContract, roomHistoryRoute } from '../lib/index.js'
import { build } from './support/helpers.js'

const news = defineContract({ client: { noop: Type.Null() }, server: { item: Type.Object({ n: Type.Integer() }) } })

async function app (t: Test) {
  return await build(t, (app) => {
    app.get('/ws', { realtime: true }, contractHandler(news, { noop () {} }))
    app.register(async (scope) => {
      // The app's own auth runs first, as for any route.
      scope.addHook('onRequest', async (request, reply) => {
        if (request.headers.authorization !== 'Bearer ok') await reply.code(401).send({ error: 'unauthorized' })
      })
      scope.get('/history', roomHistoryRoute({ authorize: (room) => room !== 'private', maxLimit: 3 }))
    })
  })
}

t.test('the history route returns a page of a room as clients receive it live', async (t) => {
  const { app: fastify } = await app(t)
  for (let n = 1; n <= 5; n++) await fastify.realtime.publish(news, 'feed', 'item', { n })
  const response = await fastify.inject({ url: '/history?room=feed&since=1', headers: { authorization: 'Bearer ok' } })
  t.equal(response.statusCode, 200)
  const body = response.json()
  t.match(body, { room: 'feed', epoch: String, offset: 5 })
  t.same(body.messages.map((message: { offset: number }) => message.offset), [2, 3, 4], 'since is exclusive and maxLimit caps the page')
  t.same(body.messages[0], { type: 'item', data: { n: 2 }, room: 'feed', epoch: body.epoch, offset: 2 })
  const small = await fastify.inject({ url: '/history?room=feed&limit=1', headers: { authorization: 'Bearer ok' } })
  t.same(small.json().messages.map((message: { offset: number }) => message.offset), [1])
})

t.test('the history route sits behind the app hooks and refuses bad or forbidden rooms', async (t) => {
  const { app: fastify } = await app(t)
  const ok = { authorization: 'Bearer ok' }
  t.equal((await fastify.inject({ url: '/history?room=feed' })).statusCode, 401, 'the app hook ran first')
  const forbidden = await fastify.inject({ url: '/history?room=private', headers: ok })
  t.equal(forbidden.statusCode, 403)
  t.equal(forbidden.json().code, 'FST_RT_JOIN_FORBIDDEN')
  const reserved = await fastify.inject({ url: '/history?room=%24user%3Aada', headers: ok })
  t.equal(reserved.statusCode, 400)
  t.equal(reserved.json().code, 'FST_RT_INVALID_ROOM')
  const garbage = await fastify.inject({ url: '/history?room=feed&since=-4', headers: ok })
  t.equal(garbage.statusCode, 400, 'the querystring schema refuses a negative offset')
  t.equal((await fastify.inject({ url: '/history?room=feed', headers: ok })).statusCode, 200, 'still serving')
})

t.test('history route options are checked when it is built', async (t) => {
  t.throws(() => roomHistoryRoute({} as never), { code: 'FST_RT_INVALID_OPTION', message: /"authorize"/ })
  t.throws(() => roomHistoryRoute(undefined as never), { code: 'FST_RT_INVALID_OPTION', message: /"authorize"/ })
  t.throws(() => roomHistoryRoute({ authorize: () => true, maxLimit: 0 }), { code: 'FST_RT_INVALID_OPTION', message: /"maxLimit"/ })
})

t.test('without maxLimit a page holds at most 100 messages', async (t) => {
  const { app: fastify } = await build(t, (app) => {
    app.get('/ws', { realtime: true }, contractHandler(news, { noop () {} }))
    app.get('/history', roomHistoryRoute({ authorize: () => true }))
  }, { history: { size: 150 } })
  for (let n = 1; n <= 120; n++) await fastify.realtime.publish(news, 'feed', 'item', { n })
  const body = (await fastify.inject({ url: '/history?room=feed&limit=500' })).json()
  t.equal(body.messages.length, 100)
})
