import { Parser } from '@asyncapi/parser'
import { Type } from '@sinclair/typebox'
import Fastify from 'fastify'
import t, { type Test } from 'tap'
import { parse as parseYaml } from 'yaml'
import realtime, { contractHandler, defineContract, tokenAuth, type Contract, type RealtimeHubOptions } from '../lib/index.js'
import { asyncApiDocument } from '../lib/asyncapi/document.js'
import { pageAssets } from '../lib/asyncapi/serve.js'
import { constructs, everyConstruct } from './support/asyncapi-contracts.js'
import './support/process-guard.js'

// The demo's own contract, its import of the package by name ('fastify-realtime/contract', the
// built dist/) pointed at lib/, so this test covers lib/ only.
const { chat } = await t.mockImport<{ chat: Contract }>('../example/contract.js', {
  'fastify-realtime/contract': await import('../lib/messages/contract.js')
})

/** Handlers for every client type of `contract`, doing nothing. */
function noop (contract: Contract): Record<string, () => null> {
  return Object.fromEntries(Object.keys(contract.client).map((type) => [type, () => null]))
}

async function appWith (t: Test, routes: (app: ReturnType<typeof Fastify>) => void, options: RealtimeHubOptions = {}) {
  const app = Fastify({ logger: false })
  t.teardown(() => app.close())
  await app.register(realtime, options)
  routes(app)
  await app.ready()
  return app
}

/** The parser's diagnostics of `document` at error or warning level, and all of them. */
async function diagnose (document: unknown) {
  const { diagnostics } = await new Parser().parse(document as Parameters<Parser['parse']>[0])
  const all = diagnostics.map((item) => ({ severity: item.severity, code: String(item.code), message: item.message, path: item.path.join('.') }))
  // 0 error, 1 warning, 2 information, 3 hint.
  return { serious: all.filter((item) => item.severity <= 1), all }
}

t.test('the demo chat\'s document passes the AsyncAPI parser without an error or a warning', async (t) => {
  const app = await appWith(t, (app) => {
    app.get('/chat', { realtime: true }, contractHandler(chat, noop(chat) as never, {
      auth: { verify: () => 'u' }, rooms: { authorize: () => true, notices: true }
    }))
  })
  const document = app.realtime.asyncapi({ title: 'Demo chat', version: '0.1.0', description: 'The demo', servers: { local: { host: '127.0.0.1:3000', description: 'npm start' } } })
  const { serious, all } = await diagnose(document)
  t.comment(`parser diagnostics on the demo's document: ${JSON.stringify(all)}`)
  t.same(serious, [])
  t.equal(document.asyncapi, '3.0.0')
  t.same(document.info, { title: 'Demo chat', version: '0.1.0', description: 'The demo' })
  t.same(document.servers, { local: { host: '127.0.0.1:3000', protocol: 'ws', description: 'npm start' } })
  const channel = document.channels.chat as { address: string, messages: Record<string, unknown> }
  t.equal(channel.address, '/chat')
  t.same(Object.keys(channel.messages).sort(), [
    'message', 'say', 'system.auth', 'system.auth.reply', 'system.error', 'system.join', 'system.join.reply', 'system.leave',
    'system.leave.reply', 'system.lost', 'system.ping', 'system.pong', 'system.presence', 'typing', 'typing.server', 'who', 'who.reply'
  ])
  t.match(document.operations['chat.typing'], { action: 'receive' })
  t.match(document.operations['chat.typing.server'], { action: 'send', messages: [{ $ref: '#/channels/chat/messages/typing.server' }] })
  t.match(document.operations['chat.who'], {
    action: 'receive',
    channel: { $ref: '#/channels/chat' },
    messages: [{ $ref: '#/channels/chat/messages/who' }],
    reply: { channel: { $ref: '#/channels/chat' }, messages: [{ $ref: '#/channels/chat/messages/who.reply' }, { $ref: '#/channels/chat/messages/system.error' }] }
  })
  t.match(document.operations['chat.message'], { action: 'send' })
  t.equal(document.operations['chat.say']?.reply, undefined)
  t.match(document.components.messages['system.error'], { name: 'error', payload: { properties: { data: { properties: { code: { examples: ['FST_RT_MESSAGE_NOT_JSON'] } } } } } })
  t.same(document.components.securitySchemes?.firstMessage, { type: 'apiKey', in: 'user', description: document.components.securitySchemes?.firstMessage?.description })
})

t.test(`a contract of ${Object.keys(constructs).length} TypeBox constructs, on both sides, passes the parser`, async (t) => {
  const app = await appWith(t, (app) => {
    app.get('/all', { realtime: true }, contractHandler(everyConstruct, noop(everyConstruct) as never))
  })
  const document = app.realtime.asyncapi()
  const { serious } = await diagnose(document)
  t.same(serious, [])
  t.same(Object.keys(document.components.schemas).sort(), ['Item', 'Point', 'RequestId', 'Tag', 'TreeNode'])
  t.match(document.components.schemas.TreeNode, { properties: { children: { items: { $ref: '#/components/schemas/TreeNode' } } } })
  t.match(document.components.schemas.Tag, { properties: { parent: { $ref: '#/components/schemas/Tag' } } })
  t.notOk(JSON.stringify(document).includes('"$id"'), 'no $id is left in the document')
  t.equal(document.info.title, 'fastify-realtime API')
})

t.test('routes keep their prefix, their parameters, and their querystring and header schemas as ws bindings', async (t) => {
  const small = defineContract({ client: { hi: Type.Null() }, server: {} })
  const app = await appWith(t, (app) => {
    void app.register(async (scope: ReturnType<typeof Fastify>) => {
      scope.get('/rooms/:id', {
        realtime: true,
        schema: { querystring: Type.Object({ since: Type.Optional(Type.Integer()) }), headers: Type.Object({ 'x-client': Type.String() }) }
      }, contractHandler(small, noop(small) as never))
      scope.get('/', { realtime: true }, contractHandler(small, noop(small) as never))
      scope.get('/files/*', { realtime: true }, contractHandler(small, noop(small) as never))
    }, { prefix: '/v1' })
    app.get('/auth', { realtime: true, onRequest: tokenAuth({ verify: () => 'u', from: ['header', 'query', 'cookie', 'protocol'] }) }, contractHandler(small, noop(small) as never))
    // The same channel name as /auth: the key gets a number.
    app.get('/auth/', { realtime: true }, contractHandler(small, noop(small) as never))
    // A plain realtime route is no contract route: it is not in the document.
    app.get('/raw', { realtime: true }, async () => {})
  })
  const document = app.realtime.asyncapi()
  const { serious } = await diagnose(document)
  t.same(serious, [])
  t.same(Object.values(document.channels).map((channel) => channel.address), ['/auth', '/auth/', '/v1/rooms/{id}', '/v1', '/v1/files/{wildcard}'])
  t.same(Object.keys(document.channels), ['auth', 'auth_2', 'v1_rooms_id', 'v1', 'v1_files_wildcard'])
  t.match(document.channels.v1_rooms_id, {
    parameters: { id: {} },
    bindings: { ws: { method: 'GET', query: { properties: { since: { type: 'integer' } } }, headers: { required: ['x-client'] } } }
  })
  t.same(Object.keys(document.components.securitySchemes ?? {}).sort(), ['bearer', 'cookie.token', 'protocol.access_token', 'query.token'])
  t.same((document.operations['auth.hi']?.security as unknown[]).length, 4)
  t.equal(document.operations['v1.hi']?.security, undefined)
})

t.test('a contract the document cannot describe is refused with FST_RT_ASYNCAPI_UNSUPPORTED', async (t) => {
  const cases: Array<[string, Contract, RegExp]> = [
    ['Date', defineContract({ client: { at: Type.Date() }, server: {} }), /client\.at: Type\.Date\(\) has no JSON form/],
    ['Uint8Array', defineContract({ client: { up: Type.Object({ bytes: Type.Uint8Array() }) }, server: {} }), /client\.up: Type\.Uint8Array\(\)/],
    ['Undefined', defineContract({ client: { gone: Type.Undefined() }, server: {} }), /Type\.Undefined\(\)/],
    ['BigInt', defineContract({ client: { big: Type.BigInt() }, server: {} }), /Type\.BigInt\(\)/],
    ['two $ids with one key, then a clash', defineContract({ client: { a: Type.String({ $id: 'a/b' }), b: Type.Number({ $id: 'a_b' }), c: Type.Null({ $id: 'a_b' }) }, server: {} }), /client\.c: two different schemas have the \$id "a_b"/],
    ['a clash of $ids', defineContract({ client: { a: Type.String({ $id: 'Same' }), b: Type.Number({ $id: 'Same' }) }, server: {} }), /two different schemas have the \$id "Same"/]
  ]
  for (const [name, contract, message] of cases) {
    const app = await appWith(t, (app) => { app.get('/x', { realtime: true }, contractHandler(contract, noop(contract) as never)) })
    t.throws(() => app.realtime.asyncapi(), { code: 'FST_RT_ASYNCAPI_UNSUPPORTED', message }, name)
  }
  // A $ref to a schema that is nowhere (Fastify would refuse such a querystring first; the builder checks on its own).
  const route = { url: '/q', contract: chat, querystring: { type: 'object', properties: { a: { $ref: 'Missing' } } }, firstMessageAuth: false, clientRooms: false, tokenAuth: null }
  t.throws(() => asyncApiDocument([route]), { code: 'FST_RT_ASYNCAPI_UNSUPPORTED', message: /\/q querystring: it refers to "Missing"/ })
  t.equal(asyncApiDocument([{ ...route, url: '/', querystring: undefined }]).channels.root?.address, '/')
})

t.test('a served document that cannot be described fails ready()', async (t) => {
  const app = Fastify({ logger: false })
  t.teardown(() => app.close())
  await app.register(realtime, { asyncapi: { page: false } })
  const contract = defineContract({ client: { at: Type.Date() }, server: {} })
  app.get('/x', { realtime: true }, contractHandler(contract, { at () {} }))
  await t.rejects(async () => { await app.ready() }, { code: 'FST_RT_ASYNCAPI_UNSUPPORTED' })
})

t.test('the document is served as JSON, YAML and a page with its bundle and styles', async (t) => {
  const app = await appWith(t, (app) => {
    app.get('/chat', { realtime: true }, contractHandler(chat, noop(chat) as never))
  }, { asyncapi: { route: '/docs/api', title: 'Chat </script><b>' } })
  const json = await app.inject('/docs/api.json')
  t.equal(json.statusCode, 200)
  t.match(json.headers['content-type'], /^application\/json/)
  t.same(json.json(), app.realtime.asyncapi({ title: 'Chat </script><b>' }))
  const yaml = await app.inject('/docs/api.yaml')
  t.match(yaml.headers['content-type'], /^application\/yaml/)
  t.same(parseYaml(yaml.body), json.json())
  t.same((await diagnose(yaml.body)).serious, [])
  const page = await app.inject('/docs/api')
  t.match(page.headers['content-type'], /^text\/html/)
  t.match(page.body, '<title>Chat &#60;/script&#62;&#60;b&#62;</title>')
  t.match(page.body, '<script src="./api/standalone.js">')
  t.notMatch(page.body, 'Chat </script>', 'the inlined document cannot close the script')
  const script = await app.inject('/docs/api/standalone.js')
  t.equal(script.statusCode, 200)
  t.match(script.headers['content-type'], /^text\/javascript/)
  t.match(script.body, 'AsyncApiStandalone')
  const again = await app.inject('/docs/api/standalone.js')
  t.equal(again.body.length, script.body.length, 'read once, served again')
  const style = await app.inject('/docs/api/default.min.css')
  t.match(style.headers['content-type'], /^text\/css/)
})

t.test('asyncapi: true serves at /asyncapi; page: false serves no page', async (t) => {
  const on = await appWith(t, () => {}, { asyncapi: true })
  t.equal((await on.inject('/asyncapi')).statusCode, 200)
  t.equal((await on.inject('/asyncapi.json')).json().asyncapi, '3.0.0')
  const off = await appWith(t, () => {}, { asyncapi: { page: false } })
  t.equal((await off.inject('/asyncapi.yaml')).statusCode, 200)
  t.equal((await off.inject('/asyncapi')).statusCode, 404)
  const none = await appWith(t, () => {}, { asyncapi: false })
  t.equal((await none.inject('/asyncapi.json')).statusCode, 404)
})

t.test('the page without its optional peer is refused with FST_RT_ASYNCAPI_PAGE_PEER', async (t) => {
  t.throws(() => pageAssets(() => { throw new Error('Cannot find module \'@asyncapi/react-component\'\nRequire stack: ...') }), {
    code: 'FST_RT_ASYNCAPI_PAGE_PEER',
    message: /install it, or set asyncapi\.page to false \(Cannot find module '@asyncapi\/react-component'\)$/
  })
  t.match(pageAssets().style, /react-component[/\\]styles[/\\]default\.min\.css$/)
})

t.test('wrong asyncapi options are refused at registration', async (t) => {
  const bad: unknown[] = [
    'yes', { route: 'docs' }, { route: '/docs/' }, { page: 1 }, { title: 1 }, { extra: true }, { servers: null },
    { servers: { a: { host: 1 } } }, { servers: { a: { host: 'h', protocol: 'http' } } }, { servers: { a: { host: 'h', pathname: 1 } } },
    { servers: { a: { host: 'h', description: 1 } } }
  ]
  for (const asyncapi of bad) {
    const app = Fastify({ logger: false })
    await t.rejects(async () => { await app.register(realtime, { asyncapi } as never) }, { code: 'FST_RT_INVALID_OPTION' }, JSON.stringify(asyncapi))
  }
  const app = await appWith(t, () => {}, { asyncapi: { servers: { 'prod env': { host: 'h', protocol: 'wss', pathname: '/ws' } } } })
  t.same((await app.inject('/asyncapi.json')).json().servers, { prod_env: { host: 'h', protocol: 'wss', pathname: '/ws' } })
})
