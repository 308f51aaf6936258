import t, { type Test } from 'tap'
import { FormatRegistry, Type } from '@sinclair/typebox'
import WebSocket from 'ws'
import { once } from 'node:events'
import { contractHandler, defineContract, type ContractOptions } from '../lib/index.js'
import { build, client, deferred, type Client } from './support/helpers.js'

// A format whose check throws: the stand-in for any failure no rule foresaw (an app's format or
// TypeBox kind with a bug), raised while a client's message is handled.
FormatRegistry.Set('hostile-input-test-throws', (value) => {
  if (value === 'boom') throw new Error('a format check with a bug')
  // Not every throw is an Error.
  // eslint-disable-next-line no-throw-literal -- the point of this check
  if (value === 'thrown string') throw 'a string thrown by a format check'
  return true
})

const contract = defineContract({
  client: {
    say: Type.Object({ text: Type.String() }),
    ask: { data: Type.Object({ text: Type.String() }), reply: Type.String() },
    wait: { data: Type.Null(), reply: Type.String() },
    odd: { data: Type.String({ format: 'hostile-input-test-throws' }), reply: Type.String() },
    strict: Type.Object({ a: Type.Integer() }, { additionalProperties: false }),
    deep: { data: Type.Unknown(), reply: Type.Unknown() },
    tags: Type.Record(Type.String(), Type.Array(Type.Integer()))
  },
  server: { said: Type.Object({ text: Type.String() }) }
})

function route (t: Test, options: ContractOptions<typeof contract> = {}, gate = deferred()) {
  t.teardown(() => { gate.resolve() })
  const authorized: string[] = []
  const handler = contractHandler(contract, {
    async say ({ text }, ctx) { await ctx.send('said', { text }) },
    ask: ({ text }) => text,
    async wait () { await gate.promise; return 'released' },
    odd: (text) => text,
    strict () {},
    deep: (data) => data,
    tags () {}
  }, { rooms: { authorize (room) { authorized.push(room); return room !== 'closed' } }, ...options })
  return { handler, authorized, gate }
}

async function app (t: Test, options: ContractOptions<typeof contract> = {}, logLines?: string[]) {
  const built = route(t, options)
  const { url, app: fastify } = await build(t, (app) => { app.get('/', { realtime: true }, built.handler) }, {},
    logLines === undefined ? {} : { logger: { level: 'info', stream: { write (line: string) { logLines.push(line) } } } })
  return { url, app: fastify, ...built }
}

async function json (c: Client): Promise<{ type: string, data: Record<string, unknown>, id?: unknown }> {
  return JSON.parse(await c.text()) as { type: string, data: Record<string, unknown>, id?: unknown }
}

/** Another client gets its request answered: the server, and the other connections, are fine. */
async function othersServed (t: Test, url: string): Promise<void> {
  const other = await client(t, url)
  other.ws.send(JSON.stringify({ type: 'ask', data: { text: 'still there?' }, id: 'other' }))
  t.same(await json(other), { type: 'ask:reply', data: 'still there?', id: 'other' }, 'another client is still served')
}

const nested = (depth: number, leaf = '1'): string => '['.repeat(depth) + leaf + ']'.repeat(depth)

t.test('a $join whose meta nests thousands of levels gets FST_RT_MESSAGE_TOO_DEEP before authorize runs; nothing crashes', async (t) => {
  const { url, authorized } = await app(t)
  const c = await client(t, url)
  // About 10 KB: JSON.stringify of this meta threw RangeError straight out of the socket's message event.
  c.ws.send(`{"type":"$join","data":{"room":"lobby","meta":${nested(5000)}},"id":1}`)
  const reply = await json(c)
  t.same(reply, {
    type: 'error',
    data: { code: 'FST_RT_MESSAGE_TOO_DEEP', message: 'The message nests objects and arrays more than 64 levels deep in its data', errors: [] }
  }, 'refused before parsing, so without the id')
  t.same(authorized, [], 'authorize never ran')
  c.ws.send(JSON.stringify({ type: '$join', data: { room: 'lobby', meta: JSON.parse(nested(60)) as unknown }, id: 2 }))
  t.match(await json(c), { type: '$join:reply', data: { room: 'lobby' }, id: 2 }, 'meta within the depth joins')
  await othersServed(t, url)
})

t.test('maxDepth counts levels of data, brackets inside strings do not count, and it is an option', async (t) => {
  const { url } = await app(t, { maxDepth: 3 })
  const c = await client(t, url)
  c.ws.send(`{"type":"deep","data":${nested(3)},"id":1}`)
  t.same(await json(c), { type: 'deep:reply', data: [[[1]]], id: 1 }, 'three levels pass')
  c.ws.send('{"type":"deep","data":{"a":"[[[[[[\\"{{{{"},"id":2}')
  t.same(await json(c), { type: 'deep:reply', data: { a: '[[[[[["{{{{' }, id: 2 }, 'brackets and escaped quotes in strings do not count')
  c.ws.send('{"type":"deep","data":"an unterminated string [[[[[[')
  t.match(await json(c), { type: 'error', data: { code: 'FST_RT_MESSAGE_NOT_JSON' } }, 'text that is not JSON is left to JSON.parse')
  c.ws.send('{"type":"deep","data":[{"a":[{}]}],"id":3}')
  t.match(await json(c), { type: 'error', data: { code: 'FST_RT_MESSAGE_TOO_DEEP', message: /more than 3 levels/ } }, 'four levels are refused')
  const strict = await app(t, { maxDepth: 3, onInvalid: 1007 })
  const s = await client(t, strict.url)
  s.ws.send(`{"type":"deep","data":${nested(4)}}`)
  t.same(await s.closed, { code: 1007, reason: 'The message nests objects and arrays more than 3 levels deep in its data' })
  for (const bad of [0, 257, 1.5]) {
    t.throws(() => route(t, { maxDepth: bad }), { code: 'FST_RT_INVALID_OPTION', message: /"maxDepth"/ })
    t.throws(() => route(t, { maxEchoLength: bad === 257 ? 1025 : bad }), { code: 'FST_RT_INVALID_OPTION', message: /"maxEchoLength"/ })
  }
})

t.test('4 MiB of nested brackets is refused at once instead of blocking the event loop in JSON.parse', async (t) => {
  const { url } = await app(t)
  const c = await client(t, url)
  const half = 2 * 1024 * 1024 - 16
  const timed = async (text: string): Promise<{ code: unknown, ms: number }> => {
    const started = process.hrtime.bigint()
    c.ws.send(text)
    const reply = await json(c)
    return { code: reply.data.code, ms: Number(process.hrtime.bigint() - started) / 1e6 }
  }
  // The same size, flat: what sending, masking and reading 4 MiB cost on this machine right now.
  const flat = await timed(`{"data":"${'x'.repeat(2 * half)}"}`)
  const deep = await timed(`{"data":${'['.repeat(half)}${']'.repeat(half)}}`)
  t.same([flat.code, deep.code], ['FST_RT_MESSAGE_NOT_ENVELOPE', 'FST_RT_MESSAGE_TOO_DEEP'])
  // JSON.parse alone takes 0.6-3.5 s on these brackets; the scan stops at level 65.
  t.ok(deep.ms < flat.ms * 4 + 250, `answered in ${deep.ms.toFixed(0)} ms; the flat message in ${flat.ms.toFixed(0)} ms`)
  await othersServed(t, url)
})

/** A contract route whose `error` lifecycle handler reports what it hears. */
function reportingHandler (reported: { resolve: (error: Error) => void }): ReturnType<typeof contractHandler<typeof contract>> {
  return contractHandler(contract, {
    say () {},
    ask: ({ text }) => text,
    wait: () => 'x',
    odd: (text) => text,
    strict () {},
    deep: (data) => data,
    tags () {},
    error (_ctx, error) { reported.resolve(error) }
  })
}

t.test('an unexpected failure while a message is handled closes that connection with 1011, logged with the request id; the process and the other connections go on', async (t) => {
  const lines: string[] = []
  const reported = deferred<Error>()
  const built = route(t, {})
  const { url, app: fastify } = await build(t, (app) => {
    app.get('/', { realtime: true }, reportingHandler(reported))
    app.get('/other', { realtime: true }, built.handler)
  }, {}, { logger: { level: 'info', stream: { write (line: string) { lines.push(line) } } } })
  const bystander = await client(t, `${url}/other`)
  const c = await client(t, url)
  c.ws.send(JSON.stringify({ type: 'odd', data: 'fine', id: 1 }))
  t.same(await json(c), { type: 'odd:reply', data: 'fine', id: 1 })
  c.ws.send(JSON.stringify({ type: 'odd', data: 'boom', id: 2 }))
  t.same(await c.closed, { code: 1011, reason: 'Internal error' })
  t.equal((await reported.promise).message, 'a format check with a bug', 'the error handler hears of it')
  const line = lines.map((text) => JSON.parse(text) as { msg: string, reqId?: string, err?: { message: string } })
    .find((entry) => entry.msg === 'realtime: unexpected failure while handling a message; closing the connection with 1011')
  t.ok(line?.reqId !== undefined && line.err?.message === 'a format check with a bug', 'logged with the request id and the error')
  t.equal(fastify.realtime.metrics.internalErrors, 1, 'counted')
  bystander.ws.send(JSON.stringify({ type: 'ask', data: { text: 'bystander' }, id: 'b' }))
  t.same(await json(bystander), { type: 'ask:reply', data: 'bystander', id: 'b' }, 'a connection open all along is served')
  await othersServed(t, `${url}/other`)
})

t.test('a thrown value that is not an Error closes the connection with 1011 too, and reaches the error handler as an Error', async (t) => {
  const reported = deferred<unknown>()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, reportingHandler(reported))
  })
  const c = await client(t, url)
  c.ws.send(JSON.stringify({ type: 'odd', data: 'thrown string' }))
  t.same(await c.closed, { code: 1011, reason: 'Internal error' })
  const error = await reported.promise
  t.ok(error instanceof Error && error.message === 'a string thrown by a format check')
  await othersServed(t, url)
})

t.test('a message queued behind maxInFlight that fails unexpectedly closes the connection with 1011 instead of stalling it', async (t) => {
  const { url, gate } = await app(t, { maxInFlight: 1 })
  const c = await client(t, url)
  c.ws.send(JSON.stringify({ type: 'wait', data: null, id: 'w' }))
  // Queued while `wait` holds the only slot; dispatched when it settles.
  c.ws.send(JSON.stringify({ type: 'odd', data: 'boom', id: 'o' }))
  c.ws.send(JSON.stringify({ type: 'ask', data: { text: 'after' }, id: 'a' }))
  gate.resolve()
  t.same(await json(c), { type: 'wait:reply', data: 'released', id: 'w' })
  t.same(await c.closed, { code: 1011, reason: 'Internal error' }, 'closed, not left half-drained and silent')
  await othersServed(t, url)
})

t.test('an error path never echoes a name longer than maxEchoLength, and an error envelope stays within twice the message plus 2 KiB', async (t) => {
  const { url } = await app(t)
  const c = await client(t, url)
  const name = 'k'.repeat(3000)
  c.ws.send(`{"type":"strict","data":{"a":1,"${name}":1},"id":1}`)
  const reply = await json(c)
  t.same(reply.data.errors, [{ path: `/${'k'.repeat(63)}...`, message: 'Unexpected property' }], 'the 3,000-character name is cut')
  // Keys that JSON pointers and JSON strings both escape, in many errors: the list stops early.
  const keys = Array.from({ length: 200 }, (_, i) => `"${'~/'.repeat(40)}\\u0001${i}":1`)
  for (const message of [
    `{"type":"strict","data":{${keys.join(',')}},"id":2}`,
    `{"type":"strict","data":{"${'~'.repeat(2 * 1024 * 1024)}":1}}`,
    // One key of 1 MiB in the path of ten errors, each escaped to twice its size: 20 MiB before the cut.
    `{"type":"tags","data":{"${'/'.repeat(1024 * 1024)}":[${Array(10).fill('null').join(',')}]}}`,
    `{"type":"${'\\u0001'.repeat(100_000)}"}`,
    `{"type":"strict","data":{"a":"${'x'.repeat(10)}","${'/'.repeat(1000)}":[]}}`
  ]) {
    c.ws.send(message)
    const text = await c.text()
    const data = (JSON.parse(text) as { data: { code: string } }).data
    const bound = 2 * Buffer.byteLength(message) + 2048
    t.ok(Buffer.byteLength(text) <= bound, `${data.code}: ${Buffer.byteLength(text)} bytes answer ${Buffer.byteLength(message)}`)
  }
  const wide = await app(t, { maxErrors: 1000 })
  const w = await client(t, wide.url)
  const many = `{"type":"strict","data":{${Array.from({ length: 1000 }, (_, i) => `"${i}":1`).join(',')}}}`
  w.ws.send(many)
  const text = await w.text()
  const errors = (JSON.parse(text) as { data: { errors: unknown[] } }).data.errors
  t.ok(errors.length > 10 && errors.length < 1000, `${errors.length} of 1000 errors fit`)
  t.ok(Buffer.byteLength(text) <= 2 * many.length + 2048, 'within the bound with a high maxErrors too')
})

t.test('$auth: an id that is not a short string or a finite number is refused with 4501, never echoed', async (t) => {
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, contractHandler(contract, {
      say () {}, ask: ({ text }) => text, wait: () => 'x', odd: (text) => text, strict () {}, deep: (data) => data, tags () {}
    }, { auth: { verify: () => 'ada' } }))
  })
  for (const id of ['i'.repeat(200 * 1024), 'i'.repeat(129), { a: 1 }, [1]]) {
    const ws = new WebSocket(url)
    t.teardown(() => ws.terminate())
    await once(ws, 'open')
    const messages: string[] = []
    ws.on('message', (data: Buffer) => { messages.push(data.toString()) })
    ws.send(JSON.stringify({ type: '$auth', data: 'token', id }))
    const [code, reason] = await once(ws, 'close') as [number, Buffer]
    t.same([code, reason.toString()], [4501, 'The first message must be $auth'], `an id of ${JSON.stringify(id).length} characters`)
    t.same(messages, [], 'nothing is sent back')
  }
  const deep = new WebSocket(url)
  t.teardown(() => deep.terminate())
  await once(deep, 'open')
  deep.send(`{"type":"$auth","data":"token","x":${nested(100)}}`)
  t.equal((await once(deep, 'close') as [number])[0], 4501, 'a first message nested too deep is not parsed')
  const c = await client(t, url)
  c.ws.send(JSON.stringify({ type: '$auth', data: 'token', id: 'i'.repeat(128) }))
  t.same(await json(c), { type: '$auth:reply', data: { userId: 'ada' }, id: 'i'.repeat(128) }, 'an id of 128 characters is fine')
})

t.test('a client that leaves while its $auth token is checked leaves nothing behind and no error in the log', async (t) => {
  const lines: string[] = []
  const checking = deferred()
  const release = deferred<string | null>()
  const ended = deferred()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, async function (conn, request) {
      await contractHandler(contract, {
        say () {}, ask: ({ text }) => text, wait: () => 'x', odd: (text) => text, strict () {}, deep: (data) => data, tags () {}
      }, { auth: { async verify () { checking.resolve(); return await release.promise } } }).call(this, conn, request)
      ended.resolve()
    })
  }, {}, { logger: { level: 'info', stream: { write (line: string) { lines.push(line) } } } })
  const ws = new WebSocket(url)
  t.teardown(() => ws.terminate())
  await once(ws, 'open')
  ws.send(JSON.stringify({ type: '$auth', data: 'token' }))
  await checking.promise
  ws.close()
  await once(ws, 'close')
  release.resolve('ada')
  await ended.promise
  t.same(lines.filter((line) => (JSON.parse(line) as { level: number }).level >= 50), [], 'no error logged')
})

t.test('receiveJson() refuses text nested deeper than maxDepth (64) before parsing it, with FST_RT_INVALID_JSON; the connection stays usable', async (t) => {
  const outcomes: unknown[] = []
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, async (conn) => {
      for (const options of [undefined, undefined, { maxDepth: 2 }, { maxDepth: 2 }]) {
        outcomes.push(await conn.receiveJson(options).catch((error: Error & { code: string }) => `${error.code}: ${error.message}`))
      }
      await conn.sendJson(outcomes)
    })
  })
  const c = await client(t, url)
  c.ws.send(nested(4 * 1024 * 1024 / 2 - 8))
  c.ws.send(nested(64))
  c.ws.send('{"a":[1]}')
  c.ws.send('{"a":[{}]}')
  t.same(JSON.parse(await c.text()), [
    'FST_RT_INVALID_JSON: Received text is not valid JSON: arrays and objects nested more than 64 levels deep',
    JSON.parse(nested(64)),
    { a: [1] },
    'FST_RT_INVALID_JSON: Received text is not valid JSON: arrays and objects nested more than 2 levels deep'
  ])
})

t.test('a request still queued when its connection ends is dispatched, and no request deadline holds the session after the end', async (t) => {
  const gate = deferred()
  const ended = deferred()
  const answered = deferred<string>()
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, contractHandler(contract, {
      say () {},
      async ask ({ text }) {
        // Longer than requestTimeout: had a deadline been set for this session after its end, it fires first.
        await new Promise((resolve) => setTimeout(resolve, 30))
        answered.resolve(text)
        return text
      },
      async wait () { await gate.promise; return 'released' },
      odd: (text) => text,
      strict () {},
      deep: (data) => data,
      tags () {},
      close () { ended.resolve() }
    }, { maxInFlight: 1, requestTimeout: 5 }))
  })
  const c = await client(t, url)
  // An event (no deadline of its own) holds the only slot; the request waits behind it.
  c.ws.send(JSON.stringify({ type: 'wait', data: null }))
  c.ws.send(JSON.stringify({ type: 'ask', data: { text: 'sent before the close' }, id: 'late' }))
  c.ws.close()
  await c.closed
  await ended.promise
  gate.resolve()
  t.equal(await answered.promise, 'sent before the close', 'what the client sent before it closed is still handled')
})
