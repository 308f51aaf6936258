import t from 'tap'
import { roomEnvelope, type HistoryPage, type HistoryQuery, type Position, type RoomMessage } from '../lib/hub/broker.js'
import { OrderedDelivery } from '../lib/hub/ordered-delivery.js'
import { Recorder } from '../lib/testing/index.js'
import { deferred } from './support/helpers.js'

// OrderedDelivery on a transport the test drives by hand: which message arrives when, and what a
// catch-up reads, so every path of rule order-after-gap is walked without a Redis.

const message = (offset: number, epoch = 'e', extra: Partial<RoomMessage> = {}): RoomMessage =>
  ({ room: 'r', epoch, offset, time: 0, text: roomEnvelope('{"type":"m","data":null}', 'r', epoch, offset), ...extra })

/** A room's stored history the catch-ups read, and the reads made. */
class Store {
  position: Position = { epoch: 'e', offset: 0 }
  messages: RoomMessage[] = []
  readonly reads: HistoryQuery[] = []
  /** When set, the next read waits for it. */
  gate: Promise<void> | null = null
  /** When set, the next read fails with it. */
  failure: Error | null = null

  read = async (_room: string, query: HistoryQuery): Promise<HistoryPage> => {
    this.reads.push(query)
    const failure = this.failure
    this.failure = null
    if (failure !== null) throw failure
    const gate = this.gate
    this.gate = null
    if (gate !== null) await gate
    if (query.limit === 0) return { position: this.position, messages: [] }
    return { position: this.position, messages: this.messages.filter((m) => m.offset > (query.since ?? 0)) }
  }

  publish (m: RoomMessage): RoomMessage {
    if (m.history !== false) {
      this.messages.push(m)
      this.position = { epoch: m.epoch, offset: m.offset }
    }
    return m
  }
}

async function followed (): Promise<{ store: Store, delivery: OrderedDelivery, events: Recorder }> {
  const store = new Store()
  const delivery = new OrderedDelivery(store.read)
  const events = new Recorder(1000)
  delivery.attach(events)
  await delivery.follow('r', async () => {}, async () => {})
  return { store, delivery, events }
}

t.test('in order: each message once; a stored one already delivered is dropped, an unstored one carrying the last offset goes out', async (t) => {
  const { store, delivery, events } = await followed()
  t.same(store.reads, [{ limit: 0 }], 'following reads the position only')
  const m1 = store.publish(message(1))
  delivery.receive(m1)
  delivery.receive(m1)
  const notice = message(1, 'e', { history: false })
  delivery.receive(notice)
  delivery.receive({ ...message(9), room: 'other' })
  t.same(events.messages, [m1, notice])
})

t.test('a gap is filled from the history before the message that showed it, and what arrives meanwhile waits', async (t) => {
  const { store, delivery, events } = await followed()
  const [m1, m2, m3, m4] = [1, 2, 3, 4].map((n) => store.publish(message(n, 'e', n === 2 ? { except: 'c' } : {})))
  delivery.receive(m1!)
  const gate = deferred()
  store.gate = gate.promise
  delivery.receive(m3!)
  const notice = message(3, 'e', { history: false })
  delivery.receive(notice)
  delivery.receive(m4!)
  gate.resolve()
  await events.until(5)
  t.same(events.messages, [m1, m2, m3, notice, m4], 'the missed one with its except, then the rest in order')
  t.same(store.reads.at(-1), { since: 1 })
})

t.test('a gap the history no longer holds is reported lost, and delivery goes on after the position', async (t) => {
  const { store, delivery, events } = await followed()
  delivery.receive(store.publish(message(1)))
  for (const n of [2, 3, 4]) store.publish(message(n))
  store.messages = store.messages.filter((m) => m.offset >= 4)
  delivery.receive(store.messages[0]!)
  await events.until(1, 'losses')
  t.same(events.losses, [{ room: 'r', position: { epoch: 'e', offset: 4 } }])
  const m5 = store.publish(message(5))
  delivery.receive(m5)
  t.same(events.messages.map((m) => m.offset), [1, 5], 'offset 4 is covered by the loss')
})

t.test('a room that started again under a new epoch is followed at once; any other epoch change catches up', async (t) => {
  const { store, delivery, events } = await followed()
  const fresh = store.publish(message(1, 'e2'))
  delivery.receive(fresh)
  const notice = message(0, 'e3', { history: false })
  delivery.receive(notice)
  t.same(events.messages, [fresh, notice], 'offset 1 (or 0 for an unstored one) of a new epoch: nothing was missed')
  store.position = { epoch: 'e4', offset: 7 }
  store.messages = []
  delivery.receive(message(7, 'e4'))
  await events.until(1, 'losses')
  t.same(events.losses, [{ room: 'r', position: { epoch: 'e4', offset: 7 } }], 'a later offset of an unknown epoch: the history is read, and it is a loss')
})

t.test('a failed catch-up goes to events.error and is retried with the next message', async (t) => {
  const { store, delivery, events } = await followed()
  const [m1, m2, m3] = [1, 2, 3].map((n) => store.publish(message(n)))
  store.failure = new Error('read failed')
  delivery.receive(m2!)
  await new Promise((resolve) => setImmediate(resolve))
  t.match(events.errors, [{ message: 'read failed' }])
  t.same(events.messages, [], 'nothing delivered out of order')
  delivery.receive(m3!)
  await events.until(3)
  t.same(events.messages, [m1, m2, m3], 'the retry read from the same offset')
})

t.test('resume() marks every room stale, listens again, then catches each up', async (t) => {
  const { store, delivery, events } = await followed()
  const listened: string[][] = []
  const m1 = store.publish(message(1))
  delivery.receive(m1)
  const missed = store.publish(message(2))
  const gate = deferred()
  const resumed = delivery.resume(async (rooms) => { listened.push(rooms); await gate.promise })
  const m3 = store.publish(message(3))
  delivery.receive(m3)
  t.same(events.messages, [m1], 'a message after the reconnect waits for the catch-up')
  gate.resolve()
  await resumed
  await events.until(3)
  t.same(listened, [['r']])
  t.same(events.messages, [m1, missed, m3])
  delivery.clear()
  await delivery.resume(async (rooms) => { listened.push(rooms) })
  t.same(listened, [['r']], 'no room: nothing to listen to')
})

t.test('follow(): joined by a second call; a failure undoes the subscription unless unfollowed first; a catch-up after unfollow() delivers nothing', async (t) => {
  const store = new Store()
  const delivery = new OrderedDelivery(store.read)
  const undone: string[] = []
  const first = delivery.follow('r', async () => {}, async () => { undone.push('r') })
  t.equal(delivery.follow('r', async () => { throw new Error('not called') }, async () => {}), first)
  await first
  await t.rejects(delivery.follow('a', async () => { throw new Error('cannot listen') }, async () => { undone.push('a') }), { message: 'cannot listen' })
  const late = delivery.follow('b', async () => { throw new Error('cannot listen') }, async () => { undone.push('b') })
  t.ok(delivery.unfollow('b'))
  await t.rejects(late, { message: 'cannot listen' })
  t.same(undone, ['a'], 'only the room still followed was undone')
  t.notOk(delivery.unfollow('b'), 'not followed any more')
  // Before attach(): delivered nowhere, without failing; a catch-up cut short by unfollow() delivers nothing.
  delivery.receive(store.publish(message(1)))
  const gate = deferred()
  store.gate = gate.promise
  delivery.receive(store.publish(message(3)))
  delivery.unfollow('r')
  gate.resolve()
  await new Promise((resolve) => setImmediate(resolve))
  const events = new Recorder()
  delivery.attach({ message: (m) => { events.message(m) }, lost: (room, position) => { events.lost(room, position) } })
  store.failure = new Error('no error handler')
  await delivery.follow('c', async () => {}, async () => {}).catch(() => {})
  await delivery.follow('d', async () => {}, async () => {})
  store.failure = new Error('ignored without events.error')
  delivery.receive({ ...message(5), room: 'd' })
  await new Promise((resolve) => setImmediate(resolve))
  t.same(events.messages, [])
})
