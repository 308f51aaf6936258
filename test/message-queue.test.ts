import t from 'tap'
import { MessageQueue } from '../lib/connection/message-queue.js'
import type { WSMessage } from '../lib/connection/messages.js'
import './support/process-guard.js'

// The queue behind receive(): order, the byte count that pauses reading, and what a drop keeps.
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
