// Every option the plugin, its helpers and the client take is checked: a wrong value or an unknown
// key throws the coded error naming it. One case per option that was once accepted unchecked.
import { readFile } from 'node:fs/promises'
import Fastify from 'fastify'
import t from 'tap'
import { Type } from '@sinclair/typebox'
import './support/process-guard.js'
import realtime, { contractHandler, defineContract, MemoryBroker, roomHistoryRoute, tokenAuth } from '../lib/index.js'
import { RealtimeClient } from '../lib/client/index.js'
import { defaultContractOptions } from '../lib/options/contract.js'
import { pluginKeys } from '../lib/options/plugin.js'

t.test('register() refuses a bad history with FST_RT_INVALID_OPTION naming it, with or without a broker', async (t) => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ history: { size: -5, ttlMs: 'x' } }, /"history\.size".*got -5/],
    [{ history: { ttlMs: 'x' } }, /"history\.ttlMs".*got "x"/],
    [{ history: { ttlMs: 0 } }, /"history\.ttlMs"/],
    [{ history: 5 }, /"history": expected an object/],
    [{ history: { sizes: 1 } }, /"history\.sizes".*unknown option/],
    [{ history: { size: -1 }, broker: new MemoryBroker() }, /"history\.size"/]
  ]
  for (const [options, message] of cases) {
    const app = Fastify()
    await t.rejects(async () => { await app.register(realtime, options) }, { code: 'FST_RT_INVALID_OPTION', message }, message.source)
    await app.close().catch(() => {})
  }
})

t.test('register() still takes a history within bounds, and a size of 0', async (t) => {
  const app = Fastify()
  await app.register(realtime, { history: { size: 0, ttlMs: 1000 } })
  await app.ready()
  await app.close()
})

t.test('MemoryBroker refuses a bad history', async (t) => {
  t.throws(() => new MemoryBroker({ history: { size: 1.5 } }), { code: 'FST_RT_INVALID_OPTION', message: /"history\.size"/ })
  t.throws(() => new MemoryBroker({ history: { ttlMs: -1 } }), { code: 'FST_RT_INVALID_OPTION', message: /"history\.ttlMs"/ })
})

t.test('every register() key belongs to one row of the plugin key table', async (t) => {
  const rows = Object.values(pluginKeys).flat()
  t.equal(new Set(rows).size, rows.length, 'no key in two rows')
})

const small = defineContract({ client: { go: Type.Null() }, server: {} })

t.test('contractHandler() refuses unknown keys and a bad rooms.notices', async (t) => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ requestTimout: 5 }, /"options\.requestTimout".*unknown option/],
    [{ rooms: { authorize: () => true, notices: 'yes' } }, /"rooms\.notices"/],
    [{ rooms: { authorize: () => true, notice: true } }, /"rooms\.notice".*unknown option/],
    [{ auth: { verify: () => 'u', timeout: 5 } }, /"auth\.timeout".*unknown option/],
    [{ rateLimit: { perSecond: 1, burst: 1, bytes: 5 } }, /"rateLimit\.bytes".*unknown option/],
    [5 as unknown as Record<string, unknown>, /"options": expected an object/]
  ]
  for (const [options, message] of cases) {
    t.throws(() => contractHandler(small, { go () {} }, options as never), { code: 'FST_RT_INVALID_OPTION', message }, message.source)
  }
  t.doesNotThrow(() => contractHandler(small, { go () {} }, { rooms: { authorize: () => true, notices: (room) => room === 'a' } }))
})

t.test('tokenAuth() checks its names and refuses unknown keys', async (t) => {
  const verify = (): string => 'u'
  t.throws(() => tokenAuth({ verify, queryParam: '' }), { code: 'FST_RT_INVALID_OPTION', message: /"queryParam"/ })
  t.throws(() => tokenAuth({ verify, cookieName: 'a b' }), { code: 'FST_RT_INVALID_OPTION', message: /"cookieName"/ })
  t.throws(() => tokenAuth({ verify, protocolMarker: 1 as never }), { code: 'FST_RT_INVALID_OPTION', message: /"protocolMarker"/ })
  t.throws(() => tokenAuth({ verify, param: 'x' } as never), { code: 'FST_RT_INVALID_OPTION', message: /"tokenAuth\.param"/ })
  t.doesNotThrow(() => tokenAuth({ verify, queryParam: 'access_token', cookieName: 'sid', protocolMarker: 'bearer' }))
})

t.test('roomHistoryRoute() refuses a fractional maxLimit and unknown keys', async (t) => {
  const authorize = (): boolean => true
  t.throws(() => roomHistoryRoute({ authorize, maxLimit: 1.5 }), { code: 'FST_RT_INVALID_OPTION', message: /"maxLimit"/ })
  t.throws(() => roomHistoryRoute({ authorize, max: 5 } as never), { code: 'FST_RT_INVALID_OPTION', message: /"roomHistoryRoute\.max"/ })
})

t.test('the client checks every option and refuses unknown keys', async (t) => {
  class FakeSocket { readyState = 0; onopen = null; onmessage = null; onclose = null; onerror = null; send (): void {} close (): void {} }
  const base = { url: 'ws://127.0.0.1:1', WebSocket: FakeSocket, autoConnect: false }
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ token: 5 }, /^token must be a string or a function, got 5$/],
    [{ protocols: [1] }, /^protocols must be/],
    [{ random: 'x' }, /^random must be a function/],
    [{ autoConnect: 'no' }, /^autoConnect must be a boolean/],
    [{ WebSocket: 5 }, /^WebSocket must be a WebSocket class/],
    [{ backoff: { base: 1 } }, /^backoff\.base must be one of/],
    [{ queue: { size: 1 } }, /^queue\.size must be one of/],
    [{ reconnect: true }, /^options\.reconnect must be one of/],
    [{ pingIntervalMs: -1 }, /^pingIntervalMs must be a positive number, got -1$/],
    [{ queue: { overflow: 'drop' } }, /^queue\.overflow must be one of "reject", "drop-oldest", got "drop"$/]
  ]
  for (const [options, message] of cases) {
    t.throws(() => new RealtimeClient({ ...base, ...options } as never), { code: 'FST_RT_CLIENT_INVALID_OPTION', message }, message.source)
  }
  const client = new RealtimeClient({ ...base, token: () => 't', protocols: ['a'], random: () => 0.5, backoff: { maxRetries: Infinity } })
  t.equal(client.state, 'closed')
})

/** The `| \`name\` | default | ... |` rows of the table after `intro` in `doc`. */
async function tableAfter (doc: string, intro: string): Promise<Map<string, string>> {
  const lines = (await readFile(new URL(`../${doc}`, import.meta.url), 'utf8')).split('\n')
  const rows = new Map<string, string>()
  for (const line of lines.slice(lines.indexOf(intro) + 1)) {
    if (line.startsWith('#')) break
    const cells = line.split(/(?<!\\)\|/).slice(1, -1).map((cell) => cell.trim())
    const name = /^`([A-Za-z.]+)`$/.exec(cells[0] ?? '')?.[1]
    if (name !== undefined) rows.set(name, cells[1] as string)
    else if (rows.size > 0 && !line.startsWith('|')) break
  }
  return rows
}

t.test("contractHandler()'s option tables (docs/contracts.md, docs/rooms.md) have every option with the default the code uses", async (t) => {
  const general = await tableAfter('docs/contracts.md', '`contractHandler(contract, handlers, options)` takes these options:')
  const rooms = await tableAfter('docs/rooms.md', "`contractHandler()`'s options for rooms:")
  const documented = [...general.keys(), ...rooms.keys()].filter((name) => !name.includes('.'))
  t.same(documented.sort(), Object.keys(defaultContractOptions).sort(), 'one row per option, no other')
  const written = (value: unknown): string => typeof value === 'string' ? `\`'${value}'\`` : `\`${String(value)}\``
  for (const [name, value] of Object.entries(defaultContractOptions)) {
    const cell = general.get(name) ?? rooms.get(name) ?? ''
    if (value === null) t.match(cell, /^(unset|`\(\) => null`)$/, `${name}: unset`)
    else if (typeof value === 'object') t.equal(cell, `\`{ ${Object.entries(value).map(([key, v]) => `${key}: ${String(v)}`).join(', ')} }\``, name)
    else t.equal(cell, written(value), `${name} defaults to ${written(value)}`)
  }
})
