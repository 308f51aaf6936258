import t from 'tap'
import { build, client } from './support/helpers.js'

t.test('echo works end to end', async (t) => {
  const { url } = await build(t, (app) => {
    app.get('/echo', { realtime: true }, async (conn) => {
      for await (const msg of conn) {
        if (msg.type === 'text') await conn.sendText(msg.data)
      }
    })
  })
  const c = await client(t, `${url}/echo`)
  c.ws.send('hello')
  t.equal(await c.text(), 'hello')
  c.ws.close(4000, 'bye')
  const closed = await c.closed
  t.equal(closed.code, 4000)
})
