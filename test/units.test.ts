import t from 'tap'
import { isSendableCloseCode } from '../lib/close-codes.js'
import { MessageQueue } from '../lib/connection/message-queue.js'
import type { WSMessage } from '../lib/connection/messages.js'
import { closeCodeOf } from '../lib/errors.js'
import './support/process-guard.js'

const text = (data: string): WSMessage => ({ type: 'text', data, extra: null })

t.test('the message queue keeps order and its byte count through compaction', async (t) => {
  const queue = new MessageQueue()
  t.equal(queue.shift(), undefined)
  for (let i = 0; i < 300; i++) queue.push(text(String(i)), 10)
  t.equal(queue.length, 300)
  t.equal(queue.bytes, 3000)
  for (let i = 0; i < 200; i++) t.equal((queue.shift() as { data: string }).data, String(i))
  t.equal(queue.length, 100)
  t.equal(queue.bytes, 1000)
  queue.push(text('tail'), 4)
  const rest: string[] = []
  for (let message = queue.shift(); message !== undefined; message = queue.shift()) rest.push(message.data as string)
  t.equal(rest.length, 101)
  t.equal(rest[100], 'tail')
  t.equal(queue.bytes, 0)
})

t.test('dropping data keeps close and error notices only', async (t) => {
  const queue = new MessageQueue()
  queue.push(text('a'), 1)
  queue.push({ type: 'close', data: 1000, extra: '' }, 0)
  queue.push({ type: 'binary', data: Buffer.alloc(2), extra: null }, 2)
  queue.push({ type: 'error', data: new Error('x'), extra: null }, 0)
  queue.shift()
  queue.dropData()
  t.same([queue.shift()?.type, queue.shift()?.type, queue.shift()], ['close', 'error', undefined])
  t.equal(queue.bytes, 0)
})

t.test('sendable close codes follow RFC 6455 §7.4', async (t) => {
  for (const code of [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999]) t.ok(isSendableCloseCode(code), String(code))
  for (const code of [999, 1004, 1005, 1006, 1015, 2000, 5000, 1000.5, Number.NaN]) t.notOk(isSendableCloseCode(code), String(code))
})

t.test('connection failure codes are paired with the close code 1006', async (t) => {
  t.equal(closeCodeOf('FST_RT_HEARTBEAT_TIMEOUT'), 1006)
  t.equal(closeCodeOf('FST_RT_PROTOCOL_ERROR'), 1002)
  t.equal(closeCodeOf('FST_RT_CONCURRENT_RECEIVE'), undefined)
})

t.test('the memory broker and presence ignore leaving rooms they never had', async (t) => {
  const { MemoryBroker } = await import('../lib/hub/memory.js')
  const { MemoryPresence } = await import('../lib/hub/presence.js')
  const broker = new MemoryBroker()
  broker.attach({ message () {}, lost () {} })
  await broker.unsubscribe('never-seen')
  const presence = new MemoryPresence()
  await presence.remove('never-seen', 'x')
  t.equal(await presence.count('never-seen'), 0)
  t.same(await presence.list('never-seen'), [])
})

t.test('shouldReconnect follows the close-code contract', async (t) => {
  const { shouldReconnect } = await import('../lib/close-codes.js')
  for (const code of [1001, 1005, 1006, 1011, 1012, 1013, 4000, 4008, 4401, 4499]) t.ok(shouldReconnect(code), `${code} reconnects`)
  for (const code of [1000, 1002, 1003, 1007, 1008, 1009, 1010, 3000, 3999, 4500, 4501, 4999]) t.notOk(shouldReconnect(code), `${code} does not`)
})
