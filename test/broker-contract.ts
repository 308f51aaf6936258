import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import {
  roomEnvelope, type Broker, type BrokerEvents, type HistoryLimits, type Position, type PresenceEntry, type RoomMessage
} from '../lib/hub/broker.js'

/** What a contract test gets: a broker, and for brokers that span instances, a way to make another on the same backend. */
export interface BrokerUnderTest {
  broker: Broker
  /** Another instance sharing `broker`'s rooms (same Redis and key prefix); the suite closes it. */
  second?: () => Promise<Broker>
}

/** Makes a fresh broker with empty rooms and these history limits; the suite attaches and closes it. */
export type MakeBroker = (limits: HistoryLimits) => Promise<BrokerUnderTest>

/** How long a test waits for a delivery before it fails instead of hanging. */
const deliveryTimeoutMs = 5_000

/** Records what a broker delivers; `until()` waits for a count, with a deadline. */
export class Recorder implements BrokerEvents {
  readonly messages: RoomMessage[] = []
  readonly losses: Array<{ room: string, position: Position }> = []
  private check: (() => void) | null = null
  /** Called with each message as it is delivered, after it is recorded. */
  onMessage: ((message: RoomMessage) => void) | null = null

  message (message: RoomMessage): void {
    this.messages.push(message)
    this.onMessage?.(message)
    this.check?.()
  }

  lost (room: string, position: Position): void {
    this.losses.push({ room, position })
    this.check?.()
  }

  /** Resolves once `count` messages (or, with `losses`, that many losses) were delivered in all. */
  async until (count: number, what: 'messages' | 'losses' = 'messages'): Promise<void> {
    const done = (): boolean => (what === 'messages' ? this.messages.length : this.losses.length) >= count
    if (done()) return
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.check = null
        reject(new Error(`${count} ${what} not delivered within ${deliveryTimeoutMs} ms; got ${this.messages.length} messages, ${this.losses.length} losses`))
      }, deliveryTimeoutMs)
      this.check = () => {
        if (!done()) return
        clearTimeout(timer)
        this.check = null
        resolve()
      }
    })
  }
}

export const body = (n: number): string => JSON.stringify({ type: 'chat', data: { n } })

/** A presence entry for tests. */
export function entry (connectionId: string, userId: string | null = null, meta: unknown = null): PresenceEntry {
  return { connectionId, userId, meta, joinedAt: 1_700_000_000_000 }
}

const byConnection = (a: PresenceEntry, b: PresenceEntry): number => a.connectionId.localeCompare(b.connectionId)

const offsets = (messages: readonly RoomMessage[]): number[] => messages.map((message) => message.offset)

/**
 * The behaviour every broker has: run with `brokerContract(t, 'MemoryBroker', make)`. Small limits
 * (size 3) keep bounds visible; the age test waits 1.2 times its ttl of 500 ms.
 */
export function brokerContract (t: Test, name: string, make: MakeBroker): void {
  const small: HistoryLimits = { size: 3, ttlMs: 60_000 }

  async function setup (t: Test, limits: HistoryLimits = small): Promise<{ broker: Broker, events: Recorder, second?: () => Promise<Broker> }> {
    const made = await make(limits)
    const events = new Recorder()
    made.broker.attach(events)
    t.teardown(() => made.broker.close())
    const second = made.second
    if (second === undefined) return { broker: made.broker, events }
    return {
      broker: made.broker,
      events,
      second: async () => {
        const other = await second()
        t.teardown(() => other.close())
        return other
      }
    }
  }

  t.test(`${name}: publish returns increasing offsets and the room envelope text`, async (t) => {
    const { broker } = await setup(t)
    const room = 'a "quoted" room ☃ \\ \n </script>'
    const start = await broker.position(room)
    t.equal(start.offset, 0, 'a new room is at offset 0')
    t.type(start.epoch, 'string')
    t.ok(start.epoch.length > 0, 'and has an epoch')
    const before = Date.now()
    const published: RoomMessage[] = []
    for (let n = 1; n <= 3; n++) published.push(await broker.publish(room, body(n)))
    const after = Date.now()
    t.same(offsets(published), [1, 2, 3], 'offsets increase by one')
    for (const message of published) {
      t.equal(message.room, room)
      t.equal(message.epoch, start.epoch, 'the epoch the position showed')
      t.equal(message.text, roomEnvelope(body(message.offset), room, message.epoch, message.offset), 'the text is roomEnvelope()')
      t.same(JSON.parse(message.text), { type: 'chat', data: { n: message.offset }, room, epoch: start.epoch, offset: message.offset })
      // Redis stamps messages with its own clock: the same machine's, give or take a millisecond.
      t.ok(message.time >= before - 5 && message.time <= after + 5, `time ${message.time} is between ${before} and ${after}`)
    }
    t.same(await broker.position(room), { epoch: start.epoch, offset: 3 })
  })

  t.test(`${name}: subscribe delivers the messages of subscribed rooms only, in order`, async (t) => {
    const { broker, events } = await setup(t)
    await broker.subscribe('a')
    const published = [
      await broker.publish('a', body(1)),
      await broker.publish('b', body(1)),
      await broker.publish('a', body(2)),
      await broker.publish('a', body(3))
    ]
    await events.until(3)
    t.same(events.messages, published.filter((message) => message.room === 'a'), 'as publish() returned them')
    t.same(events.losses, [])
  })

  t.test(`${name}: unsubscribe stops the delivery`, async (t) => {
    const { broker, events } = await setup(t)
    await broker.subscribe('a')
    await broker.subscribe('c')
    const a1 = await broker.publish('a', body(1))
    await events.until(1)
    await broker.unsubscribe('a')
    await broker.unsubscribe('never-subscribed')
    await broker.publish('a', body(2))
    // 'c' is still subscribed: once its message is here, the earlier one of 'a' would have been too.
    const c1 = await broker.publish('c', body(1))
    await events.until(2)
    t.same(events.messages, [a1, c1])
  })

  t.test(`${name}: subscribing twice delivers once`, async (t) => {
    const { broker, events } = await setup(t)
    await Promise.all([broker.subscribe('a'), broker.subscribe('a')])
    await broker.subscribe('a')
    const published = [await broker.publish('a', body(1)), await broker.publish('a', body(2))]
    await events.until(2)
    const sentinel = await broker.publish('a', body(3))
    await events.until(3)
    t.same(events.messages, [...published, sentinel])
  })

  t.test(`${name}: position is stable until a message is published`, async (t) => {
    const { broker } = await setup(t)
    const first = await broker.position('p')
    t.same(await broker.position('p'), first, 'the same epoch on a second look')
    t.same((await broker.history('p')).position, first, 'and after a history read of the empty room')
    t.same((await broker.recover('p', first.epoch, 0)).position, first, 'and after a recovery read')
    const message = await broker.publish('p', body(1))
    t.equal(message.epoch, first.epoch, 'the first message keeps the epoch a client may already hold')
    t.same(await broker.position('p'), { epoch: first.epoch, offset: 1 })
  })

  t.test(`${name}: history since and limit, the oldest first`, async (t) => {
    const { broker } = await setup(t)
    const published = [await broker.publish('h', body(1)), await broker.publish('h', body(2)), await broker.publish('h', body(3))]
    const position = { epoch: published[0]!.epoch, offset: 3 }
    t.same(await broker.history('h'), { position, messages: published })
    t.same((await broker.history('h', { since: 1 })).messages, published.slice(1))
    t.same((await broker.history('h', { limit: 1 })).messages, published.slice(0, 1))
    t.same((await broker.history('h', { since: 1, limit: 1 })).messages, published.slice(1, 2))
    t.same((await broker.history('h', { since: 3 })).messages, [], 'nothing after the last')
    t.same((await broker.history('h', { since: 7 })).messages, [], 'nothing after a future offset')
    t.same((await broker.history('h', { since: -5 })).messages, published, 'a negative since is 0')
    t.same((await broker.history('h', { since: 1.5 })).messages, published.slice(1), 'a fraction selects the offsets above it')
    t.same((await broker.history('h', { limit: 0 })).messages, [])
    t.match(await broker.history('empty'), { position: { offset: 0 }, messages: [] })
  })

  t.test(`${name}: history keeps at most size messages`, async (t) => {
    const { broker } = await setup(t)
    const published: RoomMessage[] = []
    for (let n = 1; n <= 5; n++) published.push(await broker.publish('s', body(n)))
    const page = await broker.history('s')
    t.same(page.messages, published.slice(2), 'the newest 3')
    t.equal(page.position.offset, 5)
    t.same((await broker.history('s', { since: 1 })).messages, published.slice(2))
  })

  t.test(`${name}: history drops messages older than ttlMs`, async (t) => {
    // m1 is 1.2 ttl old when history is read, m2 0.6: a stall of up to 0.4 ttl (200 ms) cannot make it flaky.
    const ttlMs = 500
    const { broker } = await setup(t, { size: 10, ttlMs })
    const m1 = await broker.publish('t', body(1))
    await sleep(ttlMs * 0.6)
    const m2 = await broker.publish('t', body(2))
    await sleep(ttlMs * 0.6)
    const page = await broker.history('t')
    t.ok(Date.now() - m1.time > ttlMs, 'm1 is past the ttl')
    t.same(page.position, { epoch: m1.epoch, offset: 2 }, 'the room lives on: m2 is younger than the ttl')
    t.same(page.messages, [m2], 'only m2 is kept')
    t.same(await broker.recover('t', m1.epoch, 0), { recovered: false, position: page.position, messages: [] }, 'm1 cannot be recovered')
    t.same(await broker.recover('t', m1.epoch, 1), { recovered: true, position: page.position, messages: [m2] })
  })

  t.test(`${name}: a room idle past ttlMs comes back with a new epoch`, async (t) => {
    const ttlMs = 100
    const { broker } = await setup(t, { size: 10, ttlMs })
    const old = await broker.publish('idle', body(1))
    await sleep(ttlMs * 1.5)
    const position = await broker.position('idle')
    t.not(position.epoch, old.epoch, 'a new epoch tells clients the history is gone')
    t.equal(position.offset, 0)
    t.match(await broker.recover('idle', old.epoch, 1), { recovered: false, messages: [] })
  })

  t.test(`${name}: recover returns every missed message`, async (t) => {
    const { broker } = await setup(t)
    const published = [await broker.publish('r', body(1)), await broker.publish('r', body(2)), await broker.publish('r', body(3))]
    const position = { epoch: published[0]!.epoch, offset: 3 }
    t.same(await broker.recover('r', position.epoch, 1), { recovered: true, position, messages: published.slice(1) })
    t.same(await broker.recover('r', position.epoch, 0), { recovered: true, position, messages: published })
    t.same(await broker.recover('r', position.epoch, 3), { recovered: true, position, messages: [] }, 'nothing missed')
  })

  t.test(`${name}: recover never replays partly`, async (t) => {
    const { broker } = await setup(t)
    const published: RoomMessage[] = []
    for (let n = 1; n <= 5; n++) published.push(await broker.publish('r', body(n)))
    const position = { epoch: published[0]!.epoch, offset: 5 }
    t.same(await broker.recover('r', position.epoch, 1), { recovered: false, position, messages: [] }, 'offset 2 is gone: nothing')
    t.same(await broker.recover('r', position.epoch, 2), { recovered: true, position, messages: published.slice(2) })
  })

  t.test(`${name}: recover with a wrong epoch or a garbage offset`, async (t) => {
    const { broker } = await setup(t)
    await broker.publish('g', body(1))
    const position = await broker.publish('g', body(2)).then((message) => ({ epoch: message.epoch, offset: message.offset }))
    const cases: Array<[string, unknown, unknown]> = [
      ['another epoch', 'not-the-epoch', 1],
      ['an empty epoch', '', 1],
      ['an epoch that is not a string', 42, 1],
      ['a negative offset', position.epoch, -1],
      ['a fraction', position.epoch, 0.5],
      ['NaN', position.epoch, Number.NaN],
      ['Infinity', position.epoch, Number.POSITIVE_INFINITY],
      ['an offset beyond the last', position.epoch, 3],
      ['an offset that is not a number', position.epoch, '1'],
      ['an unsafe integer', position.epoch, 2 ** 60]
    ]
    for (const [what, epoch, offset] of cases) {
      t.same(await broker.recover('g', epoch as string, offset as number), { recovered: false, position, messages: [] }, what)
    }
    t.match(await broker.recover('unknown', position.epoch, 0), { recovered: false, position: { offset: 0 }, messages: [] }, 'an epoch of another room')
  })

  t.test(`${name}: messages published with history: false are delivered, not stored, and take no offset`, async (t) => {
    const { broker, events } = await setup(t, { size: 10, ttlMs: 60_000 })
    await broker.subscribe('n')
    const notice = await broker.publish('n', body(0), { history: false })
    t.same(notice, { room: 'n', epoch: notice.epoch, offset: 0, time: notice.time, text: roomEnvelope(body(0), 'n', notice.epoch, 0), history: false },
      'before any message it carries offset 0')
    const published = [
      notice,
      await broker.publish('n', body(1)),
      await broker.publish('n', body(2), { history: false }),
      await broker.publish('n', body(3), { history: true }),
      await broker.publish('n', body(4))
    ]
    await events.until(5)
    t.same(events.messages, published, 'all delivered, in order')
    t.same(offsets(published), [0, 1, 1, 2, 3], 'an unstored message carries the offset of the last stored one')
    t.same(published.map((message) => message.history), [false, undefined, false, undefined, undefined])
    const stored = [published[1], published[3], published[4]]
    const position = { epoch: notice.epoch, offset: 3 }
    t.same(await broker.history('n'), { position, messages: stored })
    t.same(await broker.recover('n', position.epoch, 0), { recovered: true, position, messages: stored }, 'no gap to fail a recovery')
    t.same(await broker.recover('n', position.epoch, 1), { recovered: true, position, messages: stored.slice(1) })
  })

  t.test(`${name}: except reaches subscribers, not the history`, async (t) => {
    const { broker, events } = await setup(t)
    await broker.subscribe('x')
    const m1 = await broker.publish('x', body(1), { except: 'c1' })
    const m2 = await broker.publish('x', body(2), { except: 'ç|2 ☃', history: false })
    const m3 = await broker.publish('x', body(3))
    t.equal(m1.except, undefined, 'publish() returns the message as stored')
    await events.until(3)
    t.same(events.messages, [{ ...m1, except: 'c1' }, { ...m2, except: 'ç|2 ☃' }, m3])
    t.same((await broker.history('x')).messages, [m1, m3])
    t.same((await broker.recover('x', m1.epoch, 1)).messages, [m3])
  })

  t.test(`${name}: presence add, remove, list and count`, async (t) => {
    const { broker } = await setup(t)
    t.same(await broker.presence('lobby'), [])
    t.equal(await broker.presenceCount('lobby'), 0)
    const alice = entry('c1', 'alice', { status: 'here', tags: ['x'] })
    const anonymous = entry('c2', null, null)
    await broker.presenceAdd('lobby', alice)
    await broker.presenceAdd('lobby', anonymous)
    t.same((await broker.presence('lobby')).sort(byConnection), [alice, anonymous])
    t.equal(await broker.presenceCount('lobby'), 2)
    const away = entry('c1', 'alice', { status: 'away' })
    await broker.presenceAdd('lobby', away)
    t.same((await broker.presence('lobby')).sort(byConnection), [away, anonymous], 'adding again replaces the entry')
    t.equal(await broker.presenceCount('lobby'), 2)
    t.same(await broker.presence('other'), [], 'rooms are separate')
    await broker.presenceRemove('lobby', 'c1')
    await broker.presenceRemove('lobby', 'not-there')
    await broker.presenceRemove('no-room', 'c1')
    t.same(await broker.presence('lobby'), [anonymous])
    t.equal(await broker.presenceCount('lobby'), 1)
    await broker.presenceRemove('lobby', 'c2')
    t.same(await broker.presence('lobby'), [])
    t.equal(await broker.presenceCount('lobby'), 0)
  })

  t.test(`${name}: close resolves, and again`, async (t) => {
    const { broker } = await make(small)
    broker.attach(new Recorder())
    await broker.subscribe('a')
    await broker.presenceAdd('a', entry('c1'))
    await broker.close()
    await broker.close()
    t.pass('closed twice')
  })

  t.test(`${name}: a second instance shares rooms, history and presence`, async (t) => {
    const { broker, events, second } = await setup(t)
    if (second === undefined) {
      t.equal(second, undefined, `${name} lives in one process: there is no second instance to share with`)
      return
    }
    const other = await second()
    const otherEvents = new Recorder()
    other.attach(otherEvents)
    await other.subscribe('x')
    await broker.subscribe('x')
    const published = [await broker.publish('x', body(1)), await other.publish('x', body(2), { except: 'c2' })]
    await otherEvents.until(2)
    await events.until(2)
    const delivered = [published[0], { ...published[1], except: 'c2' }]
    t.same(otherEvents.messages, delivered, 'the other instance gets both, with except')
    t.same(events.messages, delivered, 'and so does the first')
    t.same(await other.history('x'), await broker.history('x'))
    t.same(await other.recover('x', published[0]!.epoch, 0), { recovered: true, position: { epoch: published[0]!.epoch, offset: 2 }, messages: published })
    await broker.presenceAdd('x', entry('c1'))
    await other.presenceAdd('x', entry('c2'))
    t.same((await other.presence('x')).sort(byConnection), [entry('c1'), entry('c2')])
    t.equal(await broker.presenceCount('x'), 2)
  })
}
