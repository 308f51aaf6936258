import t, { type Test } from 'tap'
import { Type } from '@sinclair/typebox'
import Fastify from 'fastify'
import { once } from 'node:events'
import net from 'node:net'
import WebSocket from 'ws'
import realtime, { contractHandler, defineContract, tokenAuth } from '../lib/index.js'
import { attempt, deferred, echoHandler, handshake, rawResponse } from './support/helpers.js'

// A marker that is a valid query value, subprotocol token and JSON string.
const SECRET = 'Mk7-s3cret-f00d'

const contract = defineContract({
  client: {
    hi: { data: Type.String(), reply: Type.String() },
    boom: { data: Type.String() }
  },
  server: {}
})

function open (t: Test, url: string, protocols: string[] = [], headers: Record<string, string> = {}): ReturnType<typeof attempt> {
  return attempt(t, url, protocols, { headers })
}

async function nextText (ws: WebSocket): Promise<string> {
  const [data] = await once(ws, 'message') as [Buffer]
  return data.toString()
}

t.test('a secret in the query, a subprotocol or $auth reaches no log line, at level trace, on any path', async (t) => {
  const lines: string[] = []
  const app = Fastify({ trustProxy: true, logger: { level: 'trace', stream: { write (line: string) { lines.push(line) } } } })
  // One address may hold one connection, all of them three; each client says its address in X-Forwarded-For.
  await app.register(realtime, { maxConnectionsPerIp: 1, maxConnections: 3, handshakeTimeout: 500 })
  const heldHandshake = deferred()
  app.get('/ws', {
    realtime: { protocols: ['access_token'] },
    schema: { querystring: Type.Object({ room: Type.Optional(Type.String({ pattern: '^[a-z]+$' })) }) },
    onRequest: tokenAuth({ from: ['protocol'], verify: (token) => token === SECRET ? 'ada' : null })
  }, echoHandler)
  app.get('/open', { realtime: { protocols: ['chat'] } }, echoHandler)
  app.get('/fail', { realtime: true }, () => { throw new Error('the handler failed') })
  app.get('/slow', { realtime: true, preHandler: async () => { await heldHandshake.promise } }, echoHandler)
  app.get('/contract', { realtime: true }, contractHandler(contract, {
    hi: (name) => `hi ${name.length}`,
    boom: () => { throw new Error('the message handler failed') }
  }, {
    auth: {
      verify: (token) => {
        if (token === `${SECRET}-throw`) throw new Error('the token store is down')
        return token === SECRET ? 'ada' : null
      }
    }
  }))
  app.get('/plain', async () => 'plain')
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => { heldHandshake.resolve() })
  const { port } = app.server.address() as net.AddressInfo
  const base = `ws://127.0.0.1:${port}`
  const http = `http://127.0.0.1:${port}`
  const from = (ip: string): Record<string, string> => ({ 'x-forwarded-for': ip })
  /** Waits until the server counts `open` connections (each slot is given back before its gauge drops). */
  const settled = async (open: number): Promise<void> => {
    const count = (): number => Object.values(app.realtime.metrics.connections).reduce((sum, n) => sum + n, 0)
    while (count() !== open) await new Promise((resolve) => setImmediate(resolve))
  }
  const query = `token=${SECRET}&access_token=${SECRET}`

  // Accepted: the token as a subprotocol, and in the query too; messages and a close with the token as reason.
  const accepted = await open(t, `${base}/ws?room=lobby&${query}`, ['access_token', SECRET], from('10.0.0.1'))
  t.equal(accepted.status, 101)
  accepted.ws.send(`echo ${SECRET}`)
  t.equal(await nextText(accepted.ws), `echo ${SECRET}`)
  // 429: the same address again; 503: two more addresses fill the three, a fourth is refused.
  t.equal((await open(t, `${base}/ws?${query}`, ['access_token', SECRET], from('10.0.0.1'))).status, 429)
  const second = await open(t, `${base}/open?${query}`, [], from('10.0.0.2'))
  const third = await open(t, `${base}/open?${query}`, [], from('10.0.0.3'))
  t.same([second.status, third.status], [101, 101])
  t.equal((await open(t, `${base}/open?${query}`, [], from('10.0.0.4'))).status, 503)
  third.ws.close(4000, SECRET)
  second.ws.close()
  await settled(1)
  // 401 (no token where the hook looks, one in the query), 403 (a refused token, a foreign origin).
  t.equal((await open(t, `${base}/ws?${query}`, [], from('10.0.1.1'))).status, 401)
  t.equal((await open(t, `${base}/ws?${query}`, ['access_token', `${SECRET}x`], from('10.0.1.2'))).status, 403)
  t.equal((await rawResponse(port, handshake(`/ws?${query}`, { Origin: 'https://evil.example', 'Sec-WebSocket-Protocol': `access_token, ${SECRET}`, 'X-Forwarded-For': '10.0.1.3' }))).status, 403)
  // 400: a subprotocol header that is not a token list (base64 padding), and a query its schema refuses.
  t.equal((await rawResponse(port, handshake(`/ws?${query}`, { 'Sec-WebSocket-Protocol': `access_token, ${SECRET}==`, 'X-Forwarded-For': '10.0.1.4' }))).status, 400)
  t.equal((await open(t, `${base}/ws?room=BAD&${query}`, ['access_token', SECRET], from('10.0.1.5'))).status, 400)
  // 404: an unknown path; an upgrade to a route without a WebSocket handler.
  t.equal((await open(t, `${base}/nope?${query}`, [], from('10.0.1.6'))).status, 404)
  t.equal((await open(t, `${base}/plain?${query}`, [], from('10.0.1.7'))).status, 404)
  // 426: plain HTTP to a realtime route, GET and its automatic HEAD.
  t.equal((await fetch(`${http}/open?${query}`)).status, 426)
  t.equal((await fetch(`${http}/open?${query}`, { method: 'HEAD' })).status, 426)
  // Plain HTTP to the app's own routes is the app's: its request line is left as it is.
  t.equal(await (await fetch(`${http}/plain?room=lobby&token=not-a-secret`)).text(), 'plain')
  // No common subprotocol: upgraded with a warning (a ws client would then fail it on its side).
  t.equal((await rawResponse(port, handshake(`/open?${query}`, { 'Sec-WebSocket-Protocol': `x, ${SECRET}`, 'X-Forwarded-For': '10.0.1.8' }))).status, 101)
  // A handler that throws (1011) and a message handler that throws.
  const failing = await open(t, `${base}/fail?${query}`, [], from('10.0.2.1'))
  t.equal((await once(failing.ws, 'close') as [number])[0], 1011)
  const authed = await open(t, `${base}/contract?${query}`, [], from('10.0.2.2'))
  authed.ws.send(JSON.stringify({ type: '$auth', data: SECRET, id: SECRET }))
  t.match(JSON.parse(await nextText(authed.ws)), { type: '$auth:reply', data: { userId: 'ada' } })
  authed.ws.send(JSON.stringify({ type: 'boom', data: SECRET, id: 1 }))
  t.match(JSON.parse(await nextText(authed.ws)), { type: 'error', data: { code: 'FST_RT_HANDLER_FAILED' } })
  authed.ws.send(JSON.stringify({ type: 'hi', data: 7, id: SECRET }))
  t.match(JSON.parse(await nextText(authed.ws)), { type: 'error', data: { code: 'FST_RT_INVALID_MESSAGE_DATA' } })
  authed.ws.close(1000)
  await settled(1)
  // $auth refused, and a verify that throws: both 4501.
  for (const [i, token] of [`${SECRET}-no`, `${SECRET}-throw`].entries()) {
    const refused = await open(t, `${base}/contract?${query}`, [], from(`10.0.2.${3 + i}`))
    refused.ws.send(JSON.stringify({ type: '$auth', data: token }))
    t.equal((await once(refused.ws, 'close') as [number])[0], 4501)
  }
  // Too slow: half a request line, and a handshake held in its hooks past handshakeTimeout.
  const half = net.connect(port, '127.0.0.1')
  half.write(`GET /ws?${query}`)
  const slow = net.connect(port, '127.0.0.1')
  slow.write(handshake(`/slow?${query}`, { 'X-Forwarded-For': '10.0.3.1' }))
  await Promise.all([once(half, 'close'), once(slow, 'close')])
  // Shutdown: open connections get 1001; an upgrade while closing gets 503.
  const shutdownClose = once(accepted.ws, 'close')
  const closing = app.close()
  t.equal((await open(t, `${base}/ws?${query}`, ['access_token', SECRET], from('10.0.4.1'))).status, 503)
  t.equal((await shutdownClose as [number])[0], 1001)
  await closing

  const text = lines.join('')
  t.notOk(text.includes(SECRET), 'the marker is in no log line')
  t.ok(lines.length >= 40, `the log is populated (${lines.length} lines)`)
  t.comment(`${lines.length} log lines captured`)
  const logged = (pattern: RegExp): boolean => lines.some((line) => pattern.test(line))
  t.ok(logged(/"url":"\/ws\?room=lobby&token=\[redacted\]&access_token=\[redacted\]"/), 'an accepted request line, redacted')
  t.ok(logged(/"method":"HEAD","url":"\/open\?token=\[redacted\]/), 'the HEAD request line, redacted')
  t.ok(logged(/Route GET:\/nope\?token=\[redacted\]&access_token=\[redacted\] not found/), 'the 404 message, redacted')
  t.ok(logged(/"url":"\/plain\?token=\[redacted\]/) && logged(/FST_RT_NOT_WEBSOCKET_ROUTE/), 'the upgrade to a plain route, redacted and refused')
  t.ok(logged(/"url":"\/plain\?room=lobby&token=not-a-secret"/), 'a plain request to an app route, as it was')
  t.ok(logged(/no common subprotocol.*|"offered":2/), 'the subprotocol warning')
  t.ok(logged(/realtime: handler failed/) && logged(/realtime: message handler failed/), 'handler errors')
  t.ok(logged(/realtime: auth.verify failed/) && logged(/realtime: authentication refused/), '$auth failures')
  t.ok(logged(/no request head within handshakeTimeout/) && logged(/handshake took too long/), 'both deadline drops')
  t.ok(logged(/FST_RT_TOO_MANY_CONNECTIONS_FROM_IP/) && logged(/FST_RT_TOO_MANY_CONNECTIONS"/), '429 and 503')
  t.ok(logged(/refusing to accept new requests as server is closing/), 'the 503 while closing')
})
