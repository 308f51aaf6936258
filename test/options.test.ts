import Fastify from 'fastify'
import t, { type Test } from 'tap'
import realtime, { type RealtimeConnection } from '../lib/index.js'
import { defaultSettings, normalizeOptions } from '../lib/options/route.js'
import { assertEchoes, build, client, echoHandler, once } from './support/helpers.js'

interface Invalid {
  /** The option path the message names. */
  name: string
  /** The options object to pass. */
  options: Record<string, unknown>
  /** How the message shows the value. */
  shown: string
}

function invalid (name: string, values: Array<[value: unknown, shown: string]>): Invalid[] {
  return values.map(([value, shown]) => {
    const [top, sub] = name.split('.') as [string, string | undefined]
    return { name, options: { [top]: sub === undefined ? value : { [sub]: value } }, shown }
  })
}

const groups: Array<{ title: string, cases: Invalid[] }> = [
  { title: 'closeTimeout must be a positive finite duration', cases: invalid('closeTimeout', [[0, '0'], [-1, '-1'], ['x', '"x"'], [Infinity, 'Infinity'], [Number.NaN, 'NaN'], [null, 'null'], [2 ** 31, String(2 ** 31)]]) },
  { title: 'receiveTimeout must be null or a positive finite duration', cases: invalid('receiveTimeout', [[0, '0'], [-5, '-5'], ['10', '"10"'], [Infinity, 'Infinity'], [false, 'false']]) },
  { title: 'heartbeat must be null or a positive finite duration', cases: invalid('heartbeat', [[0, '0'], [-1, '-1'], ['30s', '"30s"'], [Infinity, 'Infinity'], [2 ** 31, String(2 ** 31)]]) },
  { title: 'autoClose and autoPing must be booleans', cases: [...invalid('autoClose', [['yes', '"yes"'], [1, '1'], [null, 'null']]), ...invalid('autoPing', [[0, '0'], ['false', '"false"']])] },
  { title: 'requireProtocol must be a boolean', cases: invalid('requireProtocol', [['true', '"true"']]) },
  {
    title: 'protocols must be an array of distinct subprotocol tokens',
    cases: invalid('protocols', [['chat', '"chat"'], [['chat', 'chat'], '["chat","chat"]'], [['a b'], '["a b"]'], [[''], '[""]'], [[1], '[1]'], [['chat', 'v1,v2'], '["chat","v1,v2"]']])
  },
  { title: 'compress must be a boolean or an object', cases: invalid('compress', [['yes', '"yes"'], [1, '1'], [null, 'null'], [[], '[]']]) },
  {
    title: 'compress rejects unknown keys and out-of-range parameters',
    cases: [
      ...invalid('compress.lvl', [[1, '1']]),
      ...invalid('compress.serverMaxWindowBits', [[8, '8'], [16, '16'], [10.5, '10.5'], ['10', '"10"']]),
      ...invalid('compress.clientMaxWindowBits', [[7, '7'], [16, '16']]),
      ...invalid('compress.level', [[-1, '-1'], [10, '10']]),
      ...invalid('compress.memLevel', [[0, '0'], [10, '10']]),
      ...invalid('compress.threshold', [[-1, '-1'], [1.5, '1.5'], [Infinity, 'Infinity']]),
      ...invalid('compress.serverNoContextTakeover', [['yes', '"yes"']]),
      ...invalid('compress.clientNoContextTakeover', [[1, '1']])
    ]
  },
  { title: 'maxMsgSize must be a non-negative integer', cases: invalid('maxMsgSize', [[-1, '-1'], [0.5, '0.5'], [1024.5, '1024.5'], ['4mb', '"4mb"']]) },
  {
    title: 'allowedOrigins must be rules or a function',
    cases: invalid('allowedOrigins', [[42, '42'], [[], '[]'], [[''], '[""]'], [['https://a.example', 42], '["https://a.example",42]'], [[/x/, {}], '[/x/,{}]'], [null, 'null']])
  },
  { title: 'readLimit must be at least 1 byte', cases: invalid('readLimit', [[0, '0'], [-1, '-1'], [1.5, '1.5']]) },
  { title: 'writeLimit must be a non-negative integer', cases: invalid('writeLimit', [[-1, '-1'], ['64k', '"64k"']]) },
  { title: 'an unknown option (a typo) is rejected', cases: [...invalid('hearbeat', [[1000, '1000']]), ...invalid('maxMessageSize', [[10, '10']])] }
]

function expectedError (bad: Invalid) {
  return {
    code: 'FST_RT_INVALID_OPTION',
    statusCode: 500,
    message: `Invalid fastify-realtime option "${bad.name}": expected`
  }
}

function assertNamed (t: Test, error: unknown, bad: Invalid): void {
  t.type(error, TypeError, 'a configuration error is a TypeError')
  const message = (error as Error).message
  t.ok(message.includes(`"${bad.name}"`), `the message names ${bad.name}: ${message}`)
  t.ok(message.endsWith(`got ${bad.shown}`), `the message shows the value ${bad.shown}: ${message}`)
}

/** Registers the plugin with `options` on a fresh app and returns the rejection. */
async function registerError (t: Test, options: Record<string, unknown>): Promise<unknown> {
  const app = Fastify({ logger: false })
  t.teardown(() => app.close().catch(() => {}))
  let caught: unknown
  await t.rejects(async () => {
    try {
      await app.register(realtime, options)
    } catch (error) {
      caught = error
      throw error
    }
  }, { code: 'FST_RT_INVALID_OPTION' })
  return caught
}

for (const group of groups) {
  t.test(`at registration: ${group.title}`, async (t) => {
    for (const bad of group.cases) {
      const error = await registerError(t, bad.options)
      t.match(error, expectedError(bad))
      assertNamed(t, error, bad)
    }
    // A valid registration afterwards serves clients.
    const { url } = await build(t, (app) => { app.get('/ws', { realtime: true }, echoHandler) })
    await assertEchoes(t, `${url}/ws`)
  })

  t.test(`per route: ${group.title}`, async (t) => {
    const { url } = await build(t, (app) => {
      let i = 0
      for (const bad of group.cases) {
        const error = t.throws(() => app.get(`/bad${i++}`, { realtime: bad.options }, echoHandler), expectedError(bad))
        assertNamed(t, error, bad)
      }
      app.get('/ws', { realtime: true }, echoHandler)
    })
    await assertEchoes(t, `${url}/ws`)
  })
}

t.test('a route whose realtime value is not an object or boolean is rejected', async (t) => {
  const { url } = await build(t, (app) => {
    t.throws(() => app.get('/bad', { realtime: 'yes' as never }, echoHandler), {
      code: 'FST_RT_INVALID_OPTION',
      message: 'Invalid fastify-realtime option "options": expected an object, got "yes"'
    })
    app.get('/ws', { realtime: true }, echoHandler)
  })
  await assertEchoes(t, `${url}/ws`)
})

t.test('an invalid route option inside a child plugin makes app.ready() reject', async (t) => {
  const app = Fastify({ logger: false })
  t.teardown(() => app.close().catch(() => {}))
  await app.register(realtime)
  app.register(async (child) => {
    child.get('/ws', { realtime: { heartbeat: -1 } }, echoHandler)
  })
  await t.rejects(async () => { await app.ready() }, { code: 'FST_RT_INVALID_OPTION', message: /"heartbeat".*got -1$/ })
})

t.test('the register-level keys prefix, logLevel and logSerializers are not rejected', async (t) => {
  const { url } = await build(t, (app) => {
    app.get('/ws', { realtime: true }, echoHandler)
  }, { prefix: '/ignored', logLevel: 'warn', logSerializers: {} } as never)
  await assertEchoes(t, `${url}/ws`)
})

t.test('valid options are accepted at registration and per route', async (t) => {
  const { url } = await build(t, (app) => {
    app.get('/ws', {
      realtime: {
        closeTimeout: 50,
        receiveTimeout: null,
        autoClose: true,
        autoPing: true,
        heartbeat: 60_000,
        protocols: ['chat.v2', 'chat'],
        requireProtocol: true,
        compress: { serverMaxWindowBits: 9, clientMaxWindowBits: 8, serverNoContextTakeover: true, clientNoContextTakeover: true, level: 9, memLevel: 9, threshold: 10 },
        maxMsgSize: 0,
        allowedOrigins: async () => true,
        readLimit: 1,
        writeLimit: 0
      }
    }, echoHandler)
    app.get('/edges', { realtime: { closeTimeout: 2 ** 31 - 1, maxMsgSize: 1, compress: { serverMaxWindowBits: 15, level: 0, memLevel: 1 }, allowedOrigins: ['*'] } }, echoHandler)
  }, {
    closeTimeout: 1000,
    receiveTimeout: 30_000,
    autoClose: false,
    autoPing: false,
    heartbeat: null,
    protocols: [],
    requireProtocol: false,
    compress: true,
    maxMsgSize: 1024,
    allowedOrigins: [/^https:\/\//, 'http://localhost:3000'],
    readLimit: 2048,
    writeLimit: 4096
  })
  await assertEchoes(t, `${url}/ws`, 'chat', { perMessageDeflate: true })
  const c = await client(t, `${url}/edges`)
  const closed = c.closed
  c.ws.send('ab')
  t.equal((await closed).code, 1009, 'maxMsgSize 1 is applied on /edges')
})

t.test('normalizeOptions: null resets heartbeat and receiveTimeout set globally', async (t) => {
  const global = normalizeOptions({ heartbeat: 30_000, receiveTimeout: 5000 })
  t.equal(global.heartbeat, 30_000)
  t.equal(global.receiveTimeout, 5000)
  const route = normalizeOptions({ heartbeat: null, receiveTimeout: null }, global)
  t.equal(route.heartbeat, null)
  t.equal(route.receiveTimeout, null)
  const inherited = normalizeOptions({ closeTimeout: 10 }, global)
  t.equal(inherited.heartbeat, 30_000, 'unset options inherit the global value')
  t.equal(inherited.closeTimeout, 10)
  t.ok(Object.isFrozen(route), 'settings are frozen')
  t.equal(normalizeOptions(true, global), global, 'realtime: true takes the global settings as they are')
  t.equal(normalizeOptions(undefined), defaultSettings)
})

async function receiveOnce (conn: RealtimeConnection): Promise<void> {
  try {
    const message = await conn.receive()
    await conn.sendText(`got ${message.type === 'text' ? message.data : message.type}`)
  } catch (error) {
    await conn.sendText((error as { code: string }).code)
  }
}

t.test('receiveTimeout: null on a route resets the global receiveTimeout', async (t) => {
  const { url } = await build(t, (app) => {
    app.get('/inherit', { realtime: true }, receiveOnce)
    app.get('/reset', { realtime: { receiveTimeout: null } }, receiveOnce)
  }, { receiveTimeout: 20 })
  // /reset connects first: had it kept the 20 ms timeout, it would expire before /inherit's.
  const reset = await client(t, `${url}/reset`)
  const inherit = await client(t, `${url}/inherit`)
  t.equal(await inherit.text(), 'FST_RT_RECEIVE_TIMEOUT', 'the global receiveTimeout applies to /inherit')
  reset.ws.send('late')
  t.equal(await reset.text(), 'got late', '/reset waited without a timeout')
})

t.test('heartbeat: null on a route resets the global heartbeat', async (t) => {
  const { url } = await build(t, (app) => {
    app.get('/inherit', { realtime: true }, echoHandler)
    app.get('/reset', { realtime: { heartbeat: null } }, echoHandler)
  }, { heartbeat: 20 })
  const reset = await client(t, `${url}/reset`)
  let resetPings = 0
  reset.ws.on('ping', () => { resetPings++ })
  const inherit = await client(t, `${url}/inherit`)
  await once(inherit.ws, 'ping')
  // Anything the server sent /reset before its echo arrives before the echo.
  reset.ws.send('flush')
  t.equal(await reset.text(), 'flush')
  t.equal(resetPings, 0, 'the server never pinged /reset')
})

t.test('values JSON cannot show are still named in the error', async (t) => {
  t.throws(() => normalizeOptions({ maxMsgSize: 10n }), { code: 'FST_RT_INVALID_OPTION', message: /"maxMsgSize".*got 10/ })
  t.throws(() => normalizeOptions({ heartbeat: Symbol('beat') }), { code: 'FST_RT_INVALID_OPTION', message: /"heartbeat".*got Symbol\(beat\)/ })
})

t.test('a value JSON cannot serialize at all is still described', async (t) => {
  const loop: Record<string, unknown> = {}
  loop.self = loop
  t.throws(() => normalizeOptions({ heartbeat: loop }), { code: 'FST_RT_INVALID_OPTION', message: /"heartbeat".*got \[object Object\]/ })
})

t.test('a function where a value belongs is named as such', async (t) => {
  t.throws(() => normalizeOptions({ closeTimeout: () => 1000 }), { code: 'FST_RT_INVALID_OPTION', message: /"closeTimeout".*got a function/ })
})
