import t, { type Test } from 'tap'
import { Type } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import { contractHandler, defineContract, MessageError, type MessageHandlers, type ContractOptions } from '../lib/index.js'
import { build, client, deferred, type Client } from './support/helpers.js'

const chat = defineContract({
  client: {
    join: { data: Type.Object({ room: Type.String({ minLength: 1, maxLength: 20 }) }), reply: Type.Object({ members: Type.Array(Type.String()) }) },
    say: Type.Object({ text: Type.String({ maxLength: 100 }) }),
    slow: Type.Object({ ms: Type.Integer({ minimum: 0 }) }),
    boom: Type.Null(),
    refuse: Type.Null()
  },
  server: {
    message: Type.Object({ text: Type.String() }),
    joined: Type.Object({ room: Type.String() })
  }
})

const handlers: MessageHandlers<typeof chat> = {
  async join (data, ctx) {
    await ctx.send('joined', { room: data.room })
    return { members: ['ada', data.room] }
  },
  async say (data, ctx) {
    await ctx.send('message', { text: data.text })
  },
  async slow (data) {
    await new Promise((resolve) => setTimeout(resolve, data.ms))
    return { done: data.ms }
  },
  boom () {
    throw new Error('secret detail')
  },
  refuse () {
    throw new MessageError('ROOM_FULL', 'The room is full', { limit: 2 })
  }
}

async function chatApp (t: Test, options: ContractOptions<typeof chat> = {}, extra: Partial<MessageHandlers<typeof chat>> = {}, setup?: (app: FastifyInstance) => void) {
  return await build(t, (app) => {
    app.get('/chat', { realtime: true }, contractHandler(chat, { ...handlers, ...extra }, { validateOutgoing: true, ...options }))
    setup?.(app)
  })
}

async function json (c: Client): Promise<Record<string, unknown>> {
  return JSON.parse(await c.text()) as Record<string, unknown>
}

/** Sends a valid event and checks it is still dispatched: the connection survived. */
async function stillDispatches (t: Test, c: Client): Promise<void> {
  c.ws.send(JSON.stringify({ type: 'say', data: { text: 'still here' } }))
  t.same(await json(c), { type: 'message', data: { text: 'still here' } }, 'the next valid message is still dispatched')
}

t.test('events are dispatched to their handler with validated data', async (t) => {
  const { url } = await chatApp(t)
  const c = await client(t, `${url}/chat`)
  c.ws.send(JSON.stringify({ type: 'say', data: { text: 'hi' } }))
  t.same(await json(c), { type: 'message', data: { text: 'hi' } })
})

const badInputs: Array<{ title: string, send: string, code: string, id?: string | number, errors?: unknown[] }> = [
  { title: 'text that is not JSON', send: '{oops', code: 'FST_RT_MESSAGE_NOT_JSON' },
  { title: 'JSON that is not an object', send: '[1,2]', code: 'FST_RT_MESSAGE_NOT_ENVELOPE' },
  { title: 'JSON null', send: 'null', code: 'FST_RT_MESSAGE_NOT_ENVELOPE' },
  { title: 'a JSON string', send: '"say"', code: 'FST_RT_MESSAGE_NOT_ENVELOPE' },
  { title: 'a message without a type', send: '{"data":{}}', code: 'FST_RT_MESSAGE_NOT_ENVELOPE' },
  { title: 'a message whose type is not a string', send: '{"type":7,"data":{},"id":"r1"}', code: 'FST_RT_MESSAGE_NOT_ENVELOPE', id: 'r1' },
  { title: 'an id that is neither string nor number', send: '{"type":"say","data":{"text":"x"},"id":{"a":1}}', code: 'FST_RT_MESSAGE_NOT_ENVELOPE' },
  { title: 'an id that is too long', send: JSON.stringify({ type: 'say', data: { text: 'x' }, id: 'i'.repeat(129) }), code: 'FST_RT_MESSAGE_NOT_ENVELOPE' },
  { title: 'an unknown type', send: '{"type":"dance","data":{},"id":5}', code: 'FST_RT_UNKNOWN_MESSAGE_TYPE', id: 5 },
  { title: 'a reserved lifecycle name as type', send: '{"type":"open","data":{}}', code: 'FST_RT_UNKNOWN_MESSAGE_TYPE' },
  {
    title: 'data failing its schema',
    send: JSON.stringify({ type: 'say', data: { text: 'x'.repeat(101) }, id: 'q' }),
    code: 'FST_RT_INVALID_MESSAGE_DATA',
    id: 'q',
    errors: [{ path: '/text', message: 'Expected string length less or equal to 100' }]
  },
  { title: 'missing data', send: '{"type":"say"}', code: 'FST_RT_INVALID_MESSAGE_DATA', errors: [{ path: '/', message: 'Expected object' }] }
]

for (const bad of badInputs) {
  t.test(`${bad.title} gets a ${bad.code} error envelope and the connection stays usable`, async (t) => {
    const { url } = await chatApp(t)
    const c = await client(t, `${url}/chat`)
    c.ws.send(bad.send)
    const reply = await json(c)
    t.equal(reply.type, 'error')
    t.equal(reply.id, bad.id)
    const data = reply.data as { code: string, message: string, errors: unknown[] }
    t.equal(data.code, bad.code)
    t.type(data.message, 'string')
    if (bad.errors !== undefined) t.same(data.errors, bad.errors)
    t.notOk(JSON.stringify(reply).includes('x'.repeat(101)), 'the bad value is not echoed back')
    await stillDispatches(t, c)
  })
}

t.test('validation errors are capped and name each path', async (t) => {
  const wide = defineContract({
    client: { form: Type.Object(Object.fromEntries(Array.from({ length: 15 }, (_, i) => [`f${i}`, Type.String()]))) },
    server: {}
  })
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, contractHandler(wide, { form () {} }, { maxErrors: 3 }))
  })
  const c = await client(t, url)
  c.ws.send(JSON.stringify({ type: 'form', data: {} }))
  const data = (await json(c)).data as { errors: Array<{ path: string }> }
  t.same(data.errors.map((error) => error.path), ['/f0', '/f1', '/f2'])
})

t.test('a request gets its reply, typed by the reply schema, with the same id', async (t) => {
  const { url } = await chatApp(t)
  const c = await client(t, `${url}/chat`)
  c.ws.send(JSON.stringify({ type: 'join', data: { room: 'lobby' }, id: 'r-1' }))
  t.same(await json(c), { type: 'joined', data: { room: 'lobby' } }, 'the handler\'s own send comes first')
  t.same(await json(c), { type: 'join:reply', id: 'r-1', data: { members: ['ada', 'lobby'] } })
  c.ws.send(JSON.stringify({ type: 'say', data: { text: 'numeric id' }, id: 7 }))
  t.same(await json(c), { type: 'message', data: { text: 'numeric id' } })
  t.same(await json(c), { type: 'say:reply', id: 7, data: null }, 'a handler that returns nothing replies null')
})

t.test('a handler that throws gets a generic error reply, the details only in the log, and repeated failures are no crash', async (t) => {
  const lines: Array<Record<string, unknown>> = []
  const errorsSeen: string[] = []
  const { url } = await build(t, (app) => {
    app.get('/chat', { realtime: true }, contractHandler(chat, { ...handlers, error (_ctx, error) { errorsSeen.push(error.message) } }))
  }, {}, { logger: { level: 'error', stream: { write (line: string) { lines.push(JSON.parse(line)) } } } })
  const c = await client(t, `${url}/chat`)
  for (let i = 0; i < 3; i++) {
    c.ws.send(JSON.stringify({ type: 'boom', data: null, id: i }))
    const reply = await json(c)
    t.same(reply, { type: 'error', id: i, data: { code: 'FST_RT_HANDLER_FAILED', message: 'Internal error while handling message type "boom"', errors: [] } })
  }
  c.ws.send(JSON.stringify({ type: 'boom', data: null }))
  t.equal(((await json(c)).data as { code: string }).code, 'FST_RT_HANDLER_FAILED', 'an event without id gets the error too')
  t.equal(lines.filter((line) => line.msg === 'realtime: message handler failed').length, 4)
  t.match(lines[0], { reqId: String, messageType: 'boom', err: { message: 'secret detail' } })
  t.same(errorsSeen, ['secret detail', 'secret detail', 'secret detail', 'secret detail'])
  await stillDispatches(t, c)
})

t.test('a MessageError reaches the client with its own code, message and details', async (t) => {
  const { url } = await chatApp(t)
  const c = await client(t, `${url}/chat`)
  c.ws.send(JSON.stringify({ type: 'refuse', data: null, id: 'x' }))
  t.same(await json(c), { type: 'error', id: 'x', data: { code: 'ROOM_FULL', message: 'The room is full', errors: [], details: { limit: 2 } } })
  await stillDispatches(t, c)
})

t.test('a request that takes too long gets a timeout error, and its late result is dropped', async (t) => {
  const { url } = await chatApp(t, { requestTimeout: 30 })
  const c = await client(t, `${url}/chat`)
  c.ws.send(JSON.stringify({ type: 'slow', data: { ms: 80 }, id: 'late' }))
  t.same(await json(c), {
    type: 'error',
    id: 'late',
    data: { code: 'FST_RT_REQUEST_TIMEOUT', message: 'The request of type "slow" was not answered within 30 ms', errors: [] }
  })
  c.ws.send(JSON.stringify({ type: 'slow', data: { ms: 0 }, id: 'quick' }))
  t.same(await json(c), { type: 'slow:reply', id: 'quick', data: { done: 0 } }, 'the next reply is the quick one, not the late one')
})

t.test('requests run concurrently: a quick one is answered while a slow one runs', async (t) => {
  const { url } = await chatApp(t)
  const c = await client(t, `${url}/chat`)
  c.ws.send(JSON.stringify({ type: 'slow', data: { ms: 60 }, id: 'slow' }))
  c.ws.send(JSON.stringify({ type: 'slow', data: { ms: 0 }, id: 'fast' }))
  t.equal((await json(c)).id, 'fast')
  t.equal((await json(c)).id, 'slow')
})

t.test('maxInFlight bounds the handlers running at once', async (t) => {
  let running = 0
  let peak = 0
  const { url } = await chatApp(t, { maxInFlight: 2 }, {
    async slow (data) {
      running++
      peak = Math.max(peak, running)
      await new Promise((resolve) => setTimeout(resolve, data.ms))
      running--
      return { done: data.ms }
    }
  })
  const c = await client(t, `${url}/chat`)
  for (let i = 0; i < 6; i++) c.ws.send(JSON.stringify({ type: 'slow', data: { ms: 10 }, id: i }))
  const ids = new Set<unknown>()
  for (let i = 0; i < 6; i++) ids.add((await json(c)).id)
  t.equal(ids.size, 6, 'every request is answered')
  t.equal(peak, 2)
})

t.test('binary messages go to the binary handler when the route declares one', async (t) => {
  const { url } = await chatApp(t, {}, {
    async binary (data, ctx) { await ctx.send('message', { text: `got ${data.length} bytes` }) }
  })
  const c = await client(t, `${url}/chat`)
  c.ws.send(Buffer.from([1, 2, 3]))
  t.same(await json(c), { type: 'message', data: { text: 'got 3 bytes' } })
})

t.test('binary messages are refused with an error envelope on a route without a binary handler', async (t) => {
  const { url } = await chatApp(t)
  const c = await client(t, `${url}/chat`)
  c.ws.send(Buffer.from([1]))
  t.same(await json(c), { type: 'error', data: { code: 'FST_RT_BINARY_NOT_ACCEPTED', message: 'This route does not accept binary messages', errors: [] } })
  await stillDispatches(t, c)
})

for (const code of [1007, 1008] as const) {
  t.test(`onInvalid ${code} closes the connection with ${code} instead of replying`, async (t) => {
    const { url } = await chatApp(t, { onInvalid: code })
    const c = await client(t, `${url}/chat`)
    c.ws.send('{"type":"nope","data":1}')
    const closed = await c.closed
    t.equal(closed.code, code)
    t.match(closed.reason, /Unknown message type "nope"/)
    const next = await client(t, `${url}/chat`)
    await stillDispatches(t, next)
  })
}

t.test('with validateOutgoing, a send or reply that breaks its schema throws and is not sent', async (t) => {
  const outcome = deferred<string[]>()
  const bad = defineContract({
    client: { go: { data: Type.Null(), reply: Type.Object({ n: Type.Number() }) } },
    server: { note: Type.Object({ text: Type.String() }) }
  })
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, contractHandler(bad, {
      async go (_data, ctx) {
        const codes: string[] = []
        await ctx.send('note', { text: 5 } as unknown as { text: string }).catch((error: Error & { code: string }) => { codes.push(error.code) })
        await ctx.send('nothing' as 'note', { text: 'x' }).catch((error: Error & { code: string }) => { codes.push(error.code) })
        outcome.resolve(codes)
        return { n: 'not a number' } as unknown as { n: number }
      }
    }, { validateOutgoing: true }))
  })
  const c = await client(t, url)
  c.ws.send(JSON.stringify({ type: 'go', data: null, id: 1 }))
  t.same(await outcome.promise, ['FST_RT_INVALID_OUTGOING', 'FST_RT_UNKNOWN_OUTGOING_TYPE'])
  t.same(await json(c), { type: 'error', id: 1, data: { code: 'FST_RT_HANDLER_FAILED', message: 'Internal error while handling message type "go"', errors: [] } })
})

t.test('without validateOutgoing, sends are not checked at run time (serialization follows the schema)', async (t) => {
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, contractHandler(chat, {
      ...handlers,
      async say (_data, ctx) { await ctx.send('message', { text: 'ok', extra: 'dropped' } as unknown as { text: string }) }
    }))
  })
  const c = await client(t, url)
  c.ws.send(JSON.stringify({ type: 'say', data: { text: 'x' } }))
  t.same(await json(c), { type: 'message', data: { text: 'ok' } }, 'properties outside the schema are not serialized')
})

t.test('lifecycle handlers: open before any message, close with the code and reason', async (t) => {
  const closed = deferred<{ code: number | null, reason: string }>()
  const { url } = await chatApp(t, {}, {
    async open (ctx) { await ctx.send('message', { text: 'welcome' }) },
    close (_ctx, code, reason) { closed.resolve({ code, reason }) }
  })
  const c = await client(t, `${url}/chat`)
  t.same(await json(c), { type: 'message', data: { text: 'welcome' } })
  c.ws.close(4001, 'bye')
  t.same(await closed.promise, { code: 4001, reason: 'bye' })
})

t.test('an open handler that throws fails the connection with 1011', async (t) => {
  const { url } = await chatApp(t, {}, { open () { throw new Error('no') } })
  const c = await client(t, `${url}/chat`)
  t.equal((await c.closed).code, 1011)
})

t.test('a failing close or error handler is logged and does not crash anything', async (t) => {
  const lines: string[] = []
  const closed = deferred()
  const { url } = await build(t, (app) => {
    app.get('/chat', { realtime: true }, contractHandler(chat, {
      ...handlers,
      error () { throw new Error('error handler broke') },
      close () { closed.resolve(); throw new Error('close handler broke') }
    }))
  }, {}, { logger: { level: 'error', stream: { write (line: string) { lines.push(JSON.parse(line).msg as string) } } } })
  const c = await client(t, `${url}/chat`)
  c.ws.send(JSON.stringify({ type: 'boom', data: null }))
  await json(c)
  c.ws.close()
  await closed.promise
  await c.closed
  t.ok(lines.includes('realtime: error handler failed'))
  t.ok(lines.filter((msg) => msg === 'realtime: message handler failed').length >= 2, 'the handler and close failures are logged')
})

t.test('a connection error reaches the error handler', async (t) => {
  const seen = deferred<string>()
  const { port } = await chatApp(t, {}, { error (_ctx, error) { seen.resolve((error as Error & { code: string }).code) } })
  const { rawClient, frame } = await import('./support/frames.js')
  const raw = await rawClient(port, '/chat')
  raw.send(frame(0x1, Buffer.from([0xff])))
  t.equal(await seen.promise, 'FST_RT_PROTOCOL_ERROR')
})

t.test('a reply to a client that already left is dropped quietly', async (t) => {
  const started = deferred()
  const done = deferred()
  const { url } = await chatApp(t, {}, {
    async slow (data) {
      started.resolve()
      await new Promise((resolve) => setTimeout(resolve, data.ms))
      done.resolve()
      return { done: data.ms }
    }
  })
  const c = await client(t, `${url}/chat`)
  c.ws.send(JSON.stringify({ type: 'slow', data: { ms: 30 }, id: 1 }))
  await started.promise
  c.ws.terminate()
  await done.promise
  t.pass('no error escaped')
})

t.test('a contract that cannot work is refused at registration with FST_RT_INVALID_CONTRACT', async (t) => {
  const cases: Array<[title: string, contract: unknown, message: RegExp]> = [
    ['not an object', null, /expected \{ client, server \}/],
    ['client map missing', { server: {} }, /"client" must be an object/],
    ['server map an array', { client: {}, server: [] }, /"server" must be an object/],
    ['a plain JSON schema', { client: { say: { type: 'object' } }, server: {} }, /client\.say must be a TypeBox schema/],
    ['a plain JSON schema as data', { client: { say: { data: { type: 'string' } } }, server: {} }, /client\.say must be a TypeBox schema/],
    ['a non-TypeBox reply', { client: { say: { data: Type.Null(), reply: { type: 'string' } } }, server: {} }, /client\.say\.reply must be a TypeBox schema/],
    ['a server schema that is not TypeBox', { client: {}, server: { note: 'string' } }, /server\.note must be a TypeBox schema/],
    ['a lifecycle name as client type', { client: { close: Type.Null() }, server: {} }, /"close" is reserved for a lifecycle handler/],
    ['"error" as server type', { client: {}, server: { error: Type.Null() } }, /"error" is reserved for error envelopes/],
    ['a reply name as server type', { client: {}, server: { 'say:reply': Type.Null() } }, /"say:reply" is reserved for replies/]
  ]
  for (const [title, contract, message] of cases) {
    t.throws(() => contractHandler(contract as never, {} as never), { code: 'FST_RT_INVALID_CONTRACT', message }, title)
  }
})

t.test('handlers that do not match the contract are refused at registration with FST_RT_INVALID_HANDLERS', async (t) => {
  const small = defineContract({ client: { say: Type.Null() }, server: {} })
  t.throws(() => contractHandler(small, null as never), { code: 'FST_RT_INVALID_HANDLERS', message: /expected an object/ })
  t.throws(() => contractHandler(small, { say: 'not a function' } as never), { code: 'FST_RT_INVALID_HANDLERS', message: /"say" must be a function/ })
  t.throws(() => contractHandler(small, { say () {}, shout () {} } as never), { code: 'FST_RT_INVALID_HANDLERS', message: /"shout" has no schema/ })
  t.throws(() => contractHandler(small, { open () {} } as never), { code: 'FST_RT_INVALID_HANDLERS', message: /"say" has no handler/ })
})

t.test('invalid contract options are refused at registration with FST_RT_INVALID_OPTION', async (t) => {
  const small = defineContract({ client: { say: Type.Null() }, server: {} })
  const bad: Array<[ContractOptions<typeof small>, RegExp]> = [
    [{ onInvalid: 1000 as never }, /"onInvalid".*got 1000/],
    [{ requestTimeout: 0 }, /"requestTimeout".*got 0/],
    [{ maxErrors: 1.5 }, /"maxErrors".*got 1\.5/],
    [{ maxInFlight: 2 ** 31 }, /"maxInFlight"/],
    [{ validateOutgoing: 'yes' as never }, /"validateOutgoing".*got yes/]
  ]
  for (const [options, message] of bad) {
    t.throws(() => contractHandler(small, { say () {} }, options), { code: 'FST_RT_INVALID_OPTION', message })
  }
})

t.test('with onInvalid set, a binary message on a route without a binary handler closes too', async (t) => {
  const { url } = await chatApp(t, { onInvalid: 1008 })
  const c = await client(t, `${url}/chat`)
  c.ws.send(Buffer.from([1]))
  t.same(await c.closed, { code: 1008, reason: 'This route does not accept binary messages' })
})

t.test('long types and long close reasons are cut short', async (t) => {
  const { url } = await chatApp(t)
  const c = await client(t, `${url}/chat`)
  c.ws.send(JSON.stringify({ type: 't'.repeat(100), data: null }))
  const message = ((await json(c)).data as { message: string }).message
  t.equal(message, `Unknown message type "${'t'.repeat(64)}..."`, 'cut at maxEchoLength (64)')
  const short = await chatApp(t, { maxEchoLength: 5 })
  const d = await client(t, `${short.url}/chat`)
  // A surrogate pair is never split: the cut keeps whole characters.
  d.ws.send(JSON.stringify({ type: 'tttt🙂🙂', data: null }))
  t.equal(((await json(d)).data as { message: string }).message, 'Unknown message type "tttt..."')
  const strict = await chatApp(t, { onInvalid: 1007 })
  const s = await client(t, `${strict.url}/chat`)
  s.ws.send(JSON.stringify({ type: 'say', data: { text: 'x' }, id: [] }))
  const closed = await s.closed
  t.equal(closed.code, 1007)
  t.equal(Buffer.byteLength(closed.reason), 123, 'the reason fills a close frame')
  t.ok(closed.reason.endsWith('...'))
})

t.test('a close reason with multibyte characters is cut to 123 bytes, so the connection does close; others are served', async (t) => {
  for (const character of ['€', '🙂', 'é', '\ud800']) {
    const strict = await chatApp(t, { onInvalid: 1008 })
    const s = await client(t, `${strict.url}/chat`)
    s.ws.send(JSON.stringify({ type: character.repeat(64), data: null }))
    const closed = await s.closed
    t.equal(closed.code, 1008, `closed for a type of ${JSON.stringify(character)}`)
    t.ok(Buffer.byteLength(closed.reason) <= 123 && closed.reason.startsWith('Unknown message type') && closed.reason.endsWith('...'), `with a reason of ${Buffer.byteLength(closed.reason)} bytes`)
    const other = await client(t, `${strict.url}/chat`)
    await stillDispatches(t, other)
  }
})

t.test('an outgoing validation error names the first three failing paths', async (t) => {
  const outcome = deferred<string[]>()
  const strict = defineContract({
    client: { go: Type.Null() },
    server: { card: Type.Object({ a: Type.String(), b: Type.String(), c: Type.String(), d: Type.String() }), flag: Type.Boolean() }
  })
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, contractHandler(strict, {
      async go (_data, ctx) {
        const messages: string[] = []
        await ctx.send('card', {} as never).catch((error: Error) => { messages.push(error.message) })
        await ctx.send('flag', null as never).catch((error: Error) => { messages.push(error.message) })
        outcome.resolve(messages)
      }
    }, { validateOutgoing: true }))
  })
  const c = await client(t, url)
  c.ws.send(JSON.stringify({ type: 'go', data: null }))
  const [card, flag] = await outcome.promise
  t.match(card, /^Outgoing message "card" does not match its schema: \/a .*; \/b .*; \/c [^;]*$/)
  t.match(flag, /^Outgoing message "flag" does not match its schema: \/ Expected boolean$/)
})

t.test('a request handler that returns nothing where a reply is due gets an error reply, not broken data', async (t) => {
  const { url } = await chatApp(t, { validateOutgoing: false }, {
    join: (() => undefined) as unknown as MessageHandlers<typeof chat>['join']
  })
  const c = await client(t, `${url}/chat`)
  c.ws.send(JSON.stringify({ type: 'join', data: { room: 'lobby' }, id: 1 }))
  t.same(await json(c), { type: 'error', id: 1, data: { code: 'FST_RT_HANDLER_FAILED', message: 'Internal error while handling message type "join"', errors: [] } })
})

t.test('send() rejects, never throws, when unchecked data cannot be serialized by its schema', async (t) => {
  const outcome = deferred<string>()
  const { url } = await chatApp(t, { validateOutgoing: false }, {
    async say (_data, ctx) {
      let result: Promise<void> | undefined
      try {
        result = ctx.send('message', {} as unknown as { text: string })
      } catch {
        outcome.resolve('threw synchronously')
        return
      }
      outcome.resolve(await result.then(() => 'sent', (error: Error & { code: string }) => error.code))
    }
  })
  const c = await client(t, `${url}/chat`)
  c.ws.send(JSON.stringify({ type: 'say', data: { text: 'x' } }))
  t.equal(await outcome.promise, 'FST_RT_INVALID_OUTGOING')
})

t.test('a request handler that fails after its timeout is still logged and reported', async (t) => {
  const lines: string[] = []
  const reported = deferred<string>()
  const { url } = await build(t, (app) => {
    app.get('/chat', { realtime: true }, contractHandler(chat, {
      ...handlers,
      async slow (data) {
        await new Promise((resolve) => setTimeout(resolve, data.ms))
        throw new Error('too late and broken')
      },
      error (_ctx, error) { reported.resolve(error.message) }
    }, { requestTimeout: 20 }))
  }, {}, { logger: { level: 'error', stream: { write (line: string) { lines.push(JSON.parse(line).msg as string) } } } })
  const c = await client(t, `${url}/chat`)
  c.ws.send(JSON.stringify({ type: 'slow', data: { ms: 60 }, id: 'r' }))
  t.equal(((await json(c)).data as { code: string }).code, 'FST_RT_REQUEST_TIMEOUT')
  t.equal(await reported.promise, 'too late and broken')
  t.ok(lines.includes('realtime: message handler failed after its request timed out'))
})

t.test('a request followed by a protocol error in the same TCP chunk neither crashes the process nor logs an error', async (t) => {
  const rejections: unknown[] = []
  const onRejection = (reason: unknown): void => { rejections.push(reason) }
  process.on('unhandledRejection', onRejection)
  t.teardown(() => { process.off('unhandledRejection', onRejection) })
  const lines: string[] = []
  const adder = defineContract({ client: { add: { data: Type.Object({ a: Type.Number(), b: Type.Number() }), reply: Type.Number() } }, server: {} })
  const finished = deferred()
  const handler = contractHandler(adder, { add: async ({ a, b }) => a + b })
  const { port } = await build(t, (app) => {
    app.get('/', { realtime: true }, async function (conn, request) {
      await handler.call(this, conn, request)
      finished.resolve()
    })
  }, {}, { logger: { level: 'error', stream: { write (line: string) { lines.push(line) } } } })
  const { rawClient, frame } = await import('./support/frames.js')
  const raw = await rawClient(port, '/')
  raw.send(Buffer.concat([frame(0x1, JSON.stringify({ type: 'add', data: { a: 1, b: 2 }, id: 1 })), frame(0x3, 'reserved opcode')]))
  await raw.closed
  await finished.promise
  // The reply task settles within the turn the handler ends in; give its rejection (if any) a turn to surface.
  await new Promise((resolve) => setImmediate(resolve))
  t.same(rejections, [], 'no unhandled rejection')
  t.same(lines.filter((line) => line.includes('handler failed') || line.includes('task failed')), [], 'a reply to a client that is gone is not an error')
})

t.test('a MessageError whose details are not JSON is logged and answered FST_RT_HANDLER_FAILED; the connection goes on', async (t) => {
  const lines: string[] = []
  const loop: Record<string, unknown> = {}
  loop.self = loop
  const odd = defineContract({ client: { bad: Type.Null(), good: { data: Type.Null(), reply: Type.String() } }, server: {} })
  const { url } = await build(t, (app) => {
    app.get('/', { realtime: true }, contractHandler(odd, {
      bad () { throw new MessageError('ODD', 'details cannot be serialized', loop) },
      good: () => 'still here'
    }))
  }, {}, { logger: { level: 'error', stream: { write (line: string) { lines.push(line) } } } })
  const c = await client(t, url)
  c.ws.send(JSON.stringify({ type: 'bad', data: null, id: 1 }))
  c.ws.send(JSON.stringify({ type: 'good', data: null, id: 2 }))
  t.match(JSON.parse(await c.text()), { type: 'error', data: { code: 'FST_RT_HANDLER_FAILED' }, id: 1 })
  t.same(JSON.parse(await c.text()), { type: 'good:reply', data: 'still here', id: 2 })
  t.ok(lines.some((line) => line.includes('realtime: a MessageError could not be sent: its details are not JSON') && line.includes('"code":"ODD"')))
})
