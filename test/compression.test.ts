import type net from 'node:net'
import { constants, deflateRawSync, inflateRawSync } from 'node:zlib'
import t, { type Test } from 'tap'
import type { RealtimeConnection, RealtimeRouteOptions } from '../lib/index.js'
import WebSocket from 'ws'
import { assertEchoes, build, client, Client, echoHandler, handshake, once, rawResponse } from './support/helpers.js'
import { frame, FrameReader, rawUpgrade } from './support/frames.js'

const deflateClient = { perMessageDeflate: { threshold: 0 } }

/** The Sec-WebSocket-Extensions response of a route to `offer` (undefined when none was negotiated). */
async function negotiated (t: Test, port: number, path: string, offer: string): Promise<string | undefined> {
  const response = await rawResponse(port, handshake(path, { 'Sec-WebSocket-Extensions': offer }))
  t.equal(response.status, 101, `${path} upgrades with the offer ${offer}`)
  return response.headers['sec-websocket-extensions']
}

/** An app with one compressing echo route at `/ws` (route options `route`, plugin options `global`). */
async function deflateApp (t: Test, route: RealtimeRouteOptions | true = { compress: true }, global: RealtimeRouteOptions = {}) {
  return build(t, (app) => {
    app.get('/ws', { realtime: route }, echoHandler)
  }, global)
}

/** A ws client with deflate on, and the Sec-WebSocket-Extensions header the server answered it with. */
async function deflateClientWithHeader (t: Test, url: string): Promise<{ c: Client, extensions: string | undefined }> {
  const ws = new WebSocket(url, deflateClient)
  t.teardown(() => { ws.terminate() })
  let extensions: string | undefined
  ws.once('upgrade', (response) => { extensions = response.headers['sec-websocket-extensions'] })
  const c = new Client(ws)
  await once(ws, 'open')
  return { c, extensions }
}

/** Sends what the client asks for: `{ text, compress? }` → `conn.sendText(text, { compress })`. */
async function sender (conn: RealtimeConnection): Promise<void> {
  for await (const message of conn) {
    if (message.type !== 'text') continue
    const { text, compress } = JSON.parse(message.data) as { text: string, compress?: boolean }
    await conn.sendText(text, compress === undefined ? undefined : { compress })
  }
}

/** Watches the frames the server sends to a ws client (RSV1 is not visible through ws's API). */
function sniff (c: Client): FrameReader {
  return new FrameReader((c.ws as unknown as { _socket: net.Socket })._socket)
}

async function request (t: Test, c: Client, frames: FrameReader, text: string, compress?: boolean) {
  c.ws.send(JSON.stringify(compress === undefined ? { text } : { text, compress }))
  const frame = await frames.next()
  t.equal(await c.text(), text, 'the message arrives intact')
  return frame
}

// ---- negotiation: aiohttp's table (reference section 3.2) ----

const table: Array<[offer: string, response: string | undefined]> = [
  ['permessage-deflate', 'permessage-deflate'],
  ['permessage-deflate; client_max_window_bits', 'permessage-deflate'],
  ['permessage-deflate; server_max_window_bits=10', 'permessage-deflate; server_max_window_bits=10'],
  ['permessage-deflate; server_no_context_takeover', 'permessage-deflate; server_no_context_takeover'],
  ['permessage-deflate; server_max_window_bits=9; server_no_context_takeover', 'permessage-deflate; server_max_window_bits=9; server_no_context_takeover'],
  ['permessage-deflate; client_no_context_takeover', 'permessage-deflate'],
  ['permessage-deflate; server_max_window_bits=8', undefined],
  ['permessage-deflate; server_max_window_bits=8, permessage-deflate', 'permessage-deflate'],
  ['permessage-deflate; foo=1', undefined],
  ['x-webkit-deflate-frame', undefined],
  // RFC 7692 §7 (the project declines what aiohttp accepts, reference 3.4): a repeated parameter.
  ['permessage-deflate; server_no_context_takeover; server_no_context_takeover', undefined],
  ['permessage-deflate; server_max_window_bits=10; server_max_window_bits=10', undefined],
  // RFC 7692 §7.1.2.1: server_max_window_bits needs a value.
  ['permessage-deflate; server_max_window_bits', undefined],
  ['permessage-deflate; server_max_window_bits, permessage-deflate; server_no_context_takeover', 'permessage-deflate; server_no_context_takeover'],
  // RFC 7692 §5: a parameter value may be a quoted string.
  ['permessage-deflate; server_max_window_bits="10"', 'permessage-deflate; server_max_window_bits=10'],
  // Flags take no value, and window bits must be 8-15.
  ['permessage-deflate; server_no_context_takeover=1', undefined],
  ['permessage-deflate; client_max_window_bits=20', undefined]
]

for (const [offer, expected] of table) {
  const outcome = expected === undefined ? 'negotiates nothing' : `is answered with ${JSON.stringify(expected)}`
  t.test(`the offer ${JSON.stringify(offer)} ${outcome}`, async (t) => {
    const { port, url } = await deflateApp(t)
    t.equal(await negotiated(t, port, '/ws', offer), expected)
    await assertEchoes(t, `${url}/ws`, undefined, deflateClient)
  })
}

t.test('a route without compress never negotiates, even when another route compresses', async (t) => {
  const { port, url } = await build(t, (app) => {
    app.get('/plain', { realtime: true }, echoHandler)
    app.get('/deflate', { realtime: { compress: true } }, echoHandler)
  })
  t.equal(await negotiated(t, port, '/plain', 'permessage-deflate'), undefined)
  t.equal(await negotiated(t, port, '/deflate', 'permessage-deflate'), 'permessage-deflate')
  const plain = await client(t, `${url}/plain`, undefined, deflateClient)
  t.equal(plain.ws.extensions, '', 'the ws client sees no extension')
  const deflate = await deflateClientWithHeader(t, `${url}/deflate`)
  t.equal(deflate.extensions, 'permessage-deflate')
  t.equal(deflate.c.ws.extensions, 'permessage-deflate', 'the ws client uses deflate')
  await assertEchoes(t, `${url}/plain`, undefined, deflateClient)
})

t.test('compression is off by default', async (t) => {
  const { port, url } = await deflateApp(t, true)
  t.equal(await negotiated(t, port, '/ws', 'permessage-deflate'), undefined)
  await assertEchoes(t, `${url}/ws`, undefined, deflateClient)
})

t.test('a global compress: true applies to routes, and a route can turn it off', async (t) => {
  const { port, url } = await build(t, (app) => {
    app.get('/ws', { realtime: true }, echoHandler)
    app.get('/off', { realtime: { compress: false } }, echoHandler)
  }, { compress: true })
  t.equal(await negotiated(t, port, '/ws', 'permessage-deflate'), 'permessage-deflate')
  t.equal(await negotiated(t, port, '/off', 'permessage-deflate'), undefined)
  await assertEchoes(t, `${url}/ws`, undefined, deflateClient)
})

t.test('route options over global compress options are merged', async (t) => {
  const { port } = await build(t, (app) => {
    app.get('/inherit', { realtime: { compress: true } }, echoHandler)
    app.get('/merge', { realtime: { compress: { serverNoContextTakeover: true } } }, echoHandler)
  }, { compress: { serverMaxWindowBits: 11 } })
  t.equal(await negotiated(t, port, '/inherit', 'permessage-deflate'), 'permessage-deflate; server_max_window_bits=11')
  t.equal(await negotiated(t, port, '/merge', 'permessage-deflate'), 'permessage-deflate; server_max_window_bits=11; server_no_context_takeover')
})

t.test('a route\'s serverMaxWindowBits appears in the response and caps the client\'s request', async (t) => {
  const { port, url } = await deflateApp(t, { compress: { serverMaxWindowBits: 10 } })
  t.equal(await negotiated(t, port, '/ws', 'permessage-deflate'), 'permessage-deflate; server_max_window_bits=10')
  t.equal(await negotiated(t, port, '/ws', 'permessage-deflate; server_max_window_bits=12'), 'permessage-deflate; server_max_window_bits=10')
  t.equal(await negotiated(t, port, '/ws', 'permessage-deflate; server_max_window_bits=9'), 'permessage-deflate; server_max_window_bits=9')
  const { c, extensions } = await deflateClientWithHeader(t, `${url}/ws`)
  t.equal(extensions, 'permessage-deflate; server_max_window_bits=10', 'the ws client accepts the response')
  const big = 'window bits '.repeat(5000)
  c.ws.send(big)
  t.equal(await c.text(), big, 'a large message round-trips with the smaller window')
})

t.test('a route\'s clientMaxWindowBits is sent when the client offers client_max_window_bits, else the offer is declined', async (t) => {
  const { port, url } = await deflateApp(t, { compress: { clientMaxWindowBits: 12 } })
  t.equal(await negotiated(t, port, '/ws', 'permessage-deflate; client_max_window_bits'), 'permessage-deflate; client_max_window_bits=12')
  t.equal(await negotiated(t, port, '/ws', 'permessage-deflate; client_max_window_bits=10'), 'permessage-deflate; client_max_window_bits=10')
  t.equal(await negotiated(t, port, '/ws', 'permessage-deflate'), undefined, 'a client that cannot limit its window gets no compression')
  // The ws client offers client_max_window_bits by default.
  const { c, extensions } = await deflateClientWithHeader(t, `${url}/ws`)
  t.equal(extensions, 'permessage-deflate; client_max_window_bits=12', 'the ws client accepts the response')
  const big = 'client window '.repeat(5000)
  c.ws.send(big)
  t.equal(await c.text(), big)
})

t.test('a route\'s no_context_takeover options appear in the response and messages still round-trip', async (t) => {
  const { port, url } = await deflateApp(t, { compress: { serverNoContextTakeover: true, clientNoContextTakeover: true } })
  t.equal(await negotiated(t, port, '/ws', 'permessage-deflate'), 'permessage-deflate; server_no_context_takeover; client_no_context_takeover')
  const { c, extensions } = await deflateClientWithHeader(t, `${url}/ws`)
  t.equal(extensions, 'permessage-deflate; server_no_context_takeover; client_no_context_takeover', 'the ws client accepts the response')
  for (let i = 0; i < 3; i++) {
    const text = `message ${i} `.repeat(200)
    c.ws.send(text)
    t.equal(await c.text(), text, `message ${i} inflates without the previous context`)
  }
})

// ---- compressed messages on the wire ----

t.test('a large repetitive message round-trips compressed (RSV1 set, far fewer bytes)', async (t) => {
  const { url } = await deflateApp(t)
  const c = await client(t, `${url}/ws`, undefined, deflateClient)
  const frames = sniff(c)
  const big = 'all work and no play '.repeat(10_000)
  c.ws.send(big)
  const frame = await frames.next()
  t.equal(await c.text(), big)
  t.equal(frame.opcode, 1)
  t.equal(frame.rsv1, true, 'the server compressed the message')
  t.ok(frame.payload.length < big.length / 50, `${frame.payload.length} bytes on the wire for ${big.length}`)
})

t.test('every message is compressed by default, however small (threshold 0, as aiohttp)', async (t) => {
  const { url } = await build(t, (app) => {
    app.get('/ws', { realtime: { compress: true } }, sender)
  })
  const c = await client(t, `${url}/ws`, undefined, deflateClient)
  const frames = sniff(c)
  t.equal((await request(t, c, frames, 'hi')).rsv1, true)
  t.equal((await request(t, c, frames, 'x'.repeat(500))).rsv1, true)
})

t.test('threshold leaves messages below it uncompressed', async (t) => {
  const { url } = await build(t, (app) => {
    app.get('/ws', { realtime: { compress: { threshold: 100 } } }, sender)
  })
  const c = await client(t, `${url}/ws`, undefined, deflateClient)
  const frames = sniff(c)
  t.equal((await request(t, c, frames, 'x'.repeat(99))).rsv1, false, '99 bytes go uncompressed')
  t.equal((await request(t, c, frames, 'x'.repeat(100))).rsv1, true, '100 bytes are compressed')
  // 50 two-byte characters: the threshold counts bytes, not characters.
  t.equal((await request(t, c, frames, 'é'.repeat(50))).rsv1, true, '100 bytes of UTF-8 are compressed')
})

t.test('the compress option of sendText overrides the threshold', async (t) => {
  const { url } = await build(t, (app) => {
    app.get('/ws', { realtime: { compress: { threshold: 100 } } }, sender)
  })
  const c = await client(t, `${url}/ws`, undefined, deflateClient)
  const frames = sniff(c)
  t.equal((await request(t, c, frames, 'hi', true)).rsv1, true, 'a small message compressed on request')
  t.equal((await request(t, c, frames, 'x'.repeat(1000), false)).rsv1, false, 'a large message sent uncompressed on request')
  t.equal((await request(t, c, frames, 'x'.repeat(1000))).rsv1, true, 'the threshold applies again without the option')
})

t.test('sendText with compress: true sends uncompressed when deflate was not negotiated', async (t) => {
  const { url } = await build(t, (app) => {
    app.get('/plain', { realtime: true }, sender)
    app.get('/ws', { realtime: { compress: true } }, sender)
  })
  const plain = await client(t, `${url}/plain`, undefined, deflateClient)
  const plainFrames = sniff(plain)
  t.equal((await request(t, plain, plainFrames, 'x'.repeat(1000), true)).rsv1, false, 'no RSV1 on a route without compress')
  const offline = await client(t, `${url}/ws`, undefined, { perMessageDeflate: false })
  const offlineFrames = sniff(offline)
  t.equal((await request(t, offline, offlineFrames, 'x'.repeat(1000), true)).rsv1, false, 'no RSV1 when the client did not offer deflate')
})

// ---- maxMsgSize counts the inflated size ----

/** A permessage-deflate payload of `text` as a client sends it (RFC 7692 §7.2.1: the tail removed). */
function deflated (text: string): Buffer {
  const data = deflateRawSync(Buffer.from(text), { finishFlush: constants.Z_SYNC_FLUSH })
  return data.subarray(0, data.length - 4)
}

t.test('a small compressed message that inflates past maxMsgSize closes with 1009', async (t) => {
  const { port, url } = await deflateApp(t, { compress: true, maxMsgSize: 1000 })
  const { status, headers, socket, frames } = await rawUpgrade(t, port, handshake('/ws', { 'Sec-WebSocket-Extensions': 'permessage-deflate' }))
  t.equal(status, 101)
  t.equal(headers['sec-websocket-extensions'], 'permessage-deflate')
  const payload = deflated('a'.repeat(1001))
  t.ok(payload.length < 100, `the frame carries ${payload.length} bytes`)
  socket.write(frame(0x1, payload, { rsv: 4 }))
  const close = await frames.next()
  t.equal(close.opcode, 0x8)
  t.equal(close.payload.readUInt16BE(0), 1009)
  await assertEchoes(t, `${url}/ws`, undefined, deflateClient)
})

t.test('a compressed message inflating to exactly maxMsgSize passes', async (t) => {
  const { port, url } = await deflateApp(t, { compress: true, maxMsgSize: 1000 })
  const { status, socket, frames } = await rawUpgrade(t, port, handshake('/ws', { 'Sec-WebSocket-Extensions': 'permessage-deflate' }))
  t.equal(status, 101)
  const text = 'a'.repeat(1000)
  socket.write(frame(0x1, deflated(text), { rsv: 4 }))
  const echo = await frames.next()
  t.equal(echo.opcode, 0x1)
  t.equal(echo.rsv1, true)
  t.equal(inflateRawSync(Buffer.concat([echo.payload, Buffer.from([0, 0, 0xff, 0xff])]), { finishFlush: constants.Z_SYNC_FLUSH }).toString(), text, 'the echo inflates to the message')
  const c = await client(t, `${url}/ws`, undefined, deflateClient)
  c.ws.send(text)
  t.equal(await c.text(), text, 'the ws client gets the exact-limit message echoed too')
  const over = c.closed
  c.ws.send(`${text}a`)
  t.equal((await over).code, 1009, 'one byte more closes with 1009')
  await assertEchoes(t, `${url}/ws`, undefined, deflateClient)
})

t.test('threshold counts binary messages by their byte length', async (t) => {
  const { url } = await build(t, (app) => {
    app.get('/ws', { realtime: { compress: { threshold: 100 } } }, async (conn) => {
      for await (const message of conn) {
        if (message.type === 'text') await conn.sendBinary(Buffer.alloc(Number(message.data), 1))
      }
    })
  })
  const c = await client(t, `${url}/ws`, undefined, deflateClient)
  const frames = sniff(c)
  c.ws.send('99')
  t.equal((await frames.next()).rsv1, false, '99 bytes go uncompressed')
  t.equal((await c.next()).data.length, 99)
  c.ws.send('100')
  t.equal((await frames.next()).rsv1, true, '100 bytes are compressed')
  t.equal((await c.next()).data.length, 100)
})
