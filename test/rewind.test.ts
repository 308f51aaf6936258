import t from 'tap'
import type { RoomMessage } from '../lib/hub/broker.js'
import { RewindWatch } from '../lib/hub/redis/rewind.js'
import './support/process-guard.js'

// The rewind checks alone (lib/hub/redis/rewind.ts); test/redis-rewind.test.ts runs them on Redis.

function message (offset: number, time: number, text = `m${offset}@${time}`, epoch = 'e1'): RoomMessage {
  return { room: 'r', epoch, offset, time, text }
}

t.test('live messages: a late copy is not a rewind, another message at a seen offset is', async (t) => {
  const watch = new RewindWatch()
  t.equal(watch.message(message(1, 10)), false, 'a room not followed is not watched')
  watch.follow('r')
  watch.follow('r')
  for (const m of [message(1, 10), message(2, 11), message(3, 12)]) t.equal(watch.message(m), false, 'in order')
  t.equal(watch.message(message(3, 12)), false, 'a copy of the newest')
  t.equal(watch.message(message(2, 11)), false, 'a late copy of an older one')
  t.equal(watch.message({ ...message(3, 50), history: false }), false, 'an unstored message carries the current offset')
  t.equal(watch.message(message(3, 12, 'other')), true, 'another text at the newest offset')
  t.equal(watch.message(message(2, 13)), true, 'an older offset published after the newest')
  t.equal(watch.message(message(1, 5, 'x', 'e2')), false, 'another epoch starts over')
  t.equal(watch.message(message(1, 9, 'y', 'e2')), true)
  watch.forget('r')
  t.equal(watch.message(message(1, 9, 'y', 'e2')), false, 'forgotten')
})

t.test('pages: a position below the offset seen when the read was sent is a rewind', async (t) => {
  const watch = new RewindWatch()
  t.equal(watch.reading('r')({ position: { epoch: 'e1', offset: 0 }, messages: [] }), false, 'not followed')
  watch.follow('r')
  t.equal(watch.reading('r')({ position: { epoch: 'e1', offset: 4 }, messages: [] }), false, 'a first position')
  t.equal(watch.message(message(4, 20)), false, 'a copy at a position whose message is unknown cannot be told from a rewind')
  const before = watch.reading('r')
  t.equal(watch.message(message(5, 21)), false)
  t.equal(before({ position: { epoch: 'e1', offset: 4 }, messages: [] }), false, 'a read sent before a message was seen may be older')
  t.equal(watch.reading('r')({ position: { epoch: 'e1', offset: 4 }, messages: [] }), true, 'a read sent after it may not')
  t.equal(watch.reading('r')({ position: { epoch: 'e1', offset: 5 }, messages: [] }), false, 'the same position')
  t.equal(watch.reading('r')({ position: { epoch: 'e1', offset: 7 }, messages: [message(6, 22), message(7, 23)] }), false, 'a newer page')
  t.equal(watch.message(message(7, 23)), false, 'its newest message is noted: a copy of it is no rewind')
  t.equal(watch.message(message(7, 24, 'other')), true, 'another message at its offset is')
  t.equal(watch.reading('r')({ position: { epoch: 'e2', offset: 2 }, messages: [message(1, 30, 'a', 'e2')] }), false, 'a new epoch; the page ends before the position')
  t.equal(watch.reading('r')({ position: { epoch: 'e2', offset: 1 }, messages: [] }), true, 'its position is noted')
  watch.clear()
  t.equal(watch.reading('r')({ position: { epoch: 'e2', offset: 1 }, messages: [] }), false, 'cleared')
})
