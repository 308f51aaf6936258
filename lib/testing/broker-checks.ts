import { setTimeout as sleep } from 'node:timers/promises'
import { roomEnvelope, type Broker, type HistoryLimits, type RoomMessage } from '../hub/broker.js'
import { recover } from '../hub/recovery.js'
import { expect, same } from './expect.js'
import { Recorder } from './recorder.js'
import type { BrokerRule } from './rules.js'

/** One named check of the suite: `run()` resolves if the broker keeps `rule`, and rejects with FST_RT_BROKER_RULE naming it if not. */
export interface BrokerCheck {
  /** What is checked, as a sentence (prefixed with the options' `name`). */
  readonly name: string
  /** The rule it checks (see Broker's TSDoc and brokerRules). */
  readonly rule: BrokerRule
  run (): Promise<void>
}

export interface BrokerConformanceOptions {
  /** Put before each check's name. @default 'broker' */
  name?: string
  /** A new broker with empty rooms and these history bounds. Each check attaches and closes the brokers it makes. */
  create (limits: HistoryLimits): Broker | Promise<Broker>
  /**
   * For a broker that spans instances: another instance on the same backend as `broker` (the same
   * server and key prefix), with the same limits. Without it, shared-rooms is not checked.
   */
  peer? (broker: Broker, limits: HistoryLimits): Broker | Promise<Broker>
  /** Runs after each check, passed or failed, once its brokers are closed (drop keys, stop a server). */
  cleanup? (): void | Promise<void>
  /** How long a check waits for a delivery before it fails. @default 5000 */
  deliveryTimeoutMs?: number
}

/** The brokers of one check, closed when it ends. */
class Session {
  private readonly opened: Broker[] = []

  constructor (private readonly options: BrokerConformanceOptions) {}

  async broker (limits: HistoryLimits = small): Promise<{ broker: Broker, events: Recorder }> {
    return this.track(await this.options.create(limits))
  }

  /** Another instance sharing `broker`'s rooms, or null when the options have no peer. */
  async peer (broker: Broker): Promise<{ broker: Broker, events: Recorder } | null> {
    if (this.options.peer === undefined) return null
    return this.track(await this.options.peer(broker, small))
  }

  private track (broker: Broker): { broker: Broker, events: Recorder } {
    const events = new Recorder(this.options.deliveryTimeoutMs)
    broker.attach(events)
    this.opened.push(broker)
    return { broker, events }
  }

  async close (): Promise<void> {
    for (const broker of this.opened) await broker.close()
  }
}

/** Small bounds keep the size bound visible. */
const small: HistoryLimits = { size: 3, ttlMs: 60_000 }

const body = (n: number): string => JSON.stringify({ type: 'chat', data: { n } })
const offsets = (messages: readonly RoomMessage[]): number[] => messages.map((message) => message.offset)
const stripped = (message: RoomMessage): RoomMessage => ({ room: message.room, epoch: message.epoch, offset: message.offset, time: message.time, text: message.text, ...(message.history === false ? { history: false } : {}) })

type Definition = [name: string, rule: BrokerRule, run: (session: Session) => Promise<void>]

const definitions: Definition[] = [
  ['publish gives offsets 1, 2, 3, with no gap also when published at once, and position() follows', 'dense-offsets', async (session) => {
    const { broker } = await session.broker({ size: 100, ttlMs: 60_000 })
    same('dense-offsets', (await broker.position('d')).offset, 0, 'a new room is at offset 0')
    const one = await Promise.all([broker.publish('d', body(1)), broker.publish('d', body(2)), broker.publish('d', body(3))])
    same('dense-offsets', offsets(one).sort((a, b) => a - b), [1, 2, 3], 'three publishes take offsets 1, 2 and 3')
    same('dense-offsets', (await broker.position('d')).offset, 3, 'position() is at the last offset')
    const many = await Promise.all(Array.from({ length: 20 }, (_, n) => broker.publish('d', body(n + 4))))
    same('dense-offsets', offsets(many).sort((a, b) => a - b), Array.from({ length: 20 }, (_, n) => n + 4), '20 publishes at once take the next 20 offsets')
    same('dense-offsets', (await broker.position('d')).offset, 23, 'position() is at the last offset')
  }],

  ['publish returns the message as stored, its text the room envelope', 'envelope', async (session) => {
    const { broker } = await session.broker()
    const room = 'a "quoted" room ☃ \\ \n </script>'
    const start = await broker.position(room)
    expect('epoch', typeof start.epoch === 'string' && start.epoch.length > 0, `a room has a non-empty string epoch, got ${JSON.stringify(start.epoch)}`)
    const before = Date.now()
    const published: RoomMessage[] = []
    for (let n = 1; n <= 3; n++) published.push(await broker.publish(room, body(n)))
    const after = Date.now()
    published.forEach((message, index) => {
      const n = index + 1
      same('envelope', message, { room, epoch: start.epoch, offset: message.offset, time: message.time, text: roomEnvelope(body(n), room, start.epoch, message.offset) }, `message ${n} as stored`)
      same('envelope', JSON.parse(message.text), { type: 'chat', data: { n }, room, epoch: start.epoch, offset: message.offset }, `message ${n}'s text parsed`)
      // A backend may stamp with its own clock: the same machine's, give or take a few ms.
      expect('envelope', message.time >= before - 5 && message.time <= after + 5, `time ${message.time} is between ${before} and ${after}`)
    })
  }],

  ['a subscribed room delivers its messages in order, other rooms none', 'live-delivery', async (session) => {
    const { broker, events } = await session.broker()
    await broker.subscribe('a')
    const published = [
      await broker.publish('a', body(1)),
      await broker.publish('b', body(1)),
      await broker.publish('a', body(2)),
      await broker.publish('a', body(3))
    ]
    await events.until(3)
    // Once 'a' 3 is here, the message of 'b' would have been too.
    same('live-delivery', events.messages, published.filter((message) => message.room === 'a'), 'the messages of room a, as publish() returned them')
    same('live-delivery', events.losses, [], 'no loss')
  }],

  ['unsubscribe stops the delivery', 'live-delivery', async (session) => {
    const { broker, events } = await session.broker()
    await broker.subscribe('a')
    await broker.subscribe('c')
    const a1 = await broker.publish('a', body(1))
    await events.until(1)
    await broker.unsubscribe('a')
    await broker.publish('a', body(2))
    // 'c' is still subscribed: once its message is here, the earlier one of 'a' would have been too.
    const c1 = await broker.publish('c', body(1))
    await events.until(2)
    same('live-delivery', events.messages, [a1, c1], 'nothing of room a after unsubscribe()')
  }],

  ['subscribing twice delivers once', 'live-delivery', async (session) => {
    const { broker, events } = await session.broker()
    await Promise.all([broker.subscribe('a'), broker.subscribe('a')])
    await broker.subscribe('a')
    const published = [await broker.publish('a', body(1)), await broker.publish('a', body(2))]
    await events.until(2)
    const sentinel = await broker.publish('a', body(3))
    await events.until(3)
    same('live-delivery', events.messages, [...published, sentinel], 'each message once')
  }],

  ['except reaches subscribers, not the history', 'live-delivery', async (session) => {
    const { broker, events } = await session.broker()
    await broker.subscribe('x')
    const m1 = await broker.publish('x', body(1), { except: 'c1' })
    const m2 = await broker.publish('x', body(2), { except: 'ç|2 ☃', history: false })
    const m3 = await broker.publish('x', body(3))
    same('envelope', [m1, m2], [stripped(m1), stripped(m2)], 'publish() returns the message as stored, without except')
    await events.until(3)
    same('live-delivery', events.messages, [{ ...m1, except: 'c1' }, { ...m2, except: 'ç|2 ☃' }, m3], 'delivered with their except')
    same('history-order', (await broker.history('x')).messages, [m1, m3], 'the history has no except')
  }],

  ['the epoch stays until the history is gone: reading does not change it, the first message keeps it', 'epoch', async (session) => {
    const { broker } = await session.broker()
    const first = await broker.position('p')
    same('epoch', await broker.position('p'), first, 'the same position on a second look')
    same('epoch', (await broker.history('p')).position, first, 'and after a history read of the empty room')
    const message = await broker.publish('p', body(1))
    same('epoch', message.epoch, first.epoch, 'the first message keeps the epoch a client may already hold')
    same('epoch', await broker.position('p'), { epoch: first.epoch, offset: 1 }, 'the position after it')
  }],

  ['a room idle past ttlMs comes back with a new epoch', 'epoch', async (session) => {
    const ttlMs = 100
    const { broker } = await session.broker({ size: 10, ttlMs })
    const old = await broker.publish('idle', body(1))
    await sleep(ttlMs * 1.5)
    const position = await broker.position('idle')
    expect('epoch', position.epoch !== old.epoch, 'a new epoch tells clients the history is gone')
    same('epoch', position.offset, 0, 'and offsets count from 0 again')
    same('epoch', await recover(broker, 'idle', old.epoch, 1), { recovered: false, position, messages: [] }, 'the old epoch cannot be recovered')
  }],

  ['a published message is in the history and the position once publish() resolves, also under load', 'atomic-publish', async (session) => {
    const { broker } = await session.broker({ size: 100, ttlMs: 60_000 })
    for (let n = 1; n <= 3; n++) {
      const message = await broker.publish('t', body(n))
      const page = await broker.history('t', { since: message.offset - 1 })
      same('atomic-publish', page.messages[0] ?? {}, message, `message ${n} is in the history read right after its publish`)
      expect('atomic-publish', page.position.offset >= message.offset, `the position (${page.position.offset}) is at or past it (${message.offset})`)
    }
    // Reads among publishes: each page is the run of the kept messages up to its position, never one without the other.
    const reads = await Promise.all(Array.from({ length: 20 }, async (_, n) => {
      if (n % 2 === 0) await broker.publish('t', body(n))
      return await broker.history('t')
    }))
    for (const page of reads) {
      same('atomic-publish', offsets(page.messages), Array.from({ length: page.position.offset }, (_, i) => i + 1), `a page at offset ${page.position.offset} holds every message up to it`)
    }
  }],

  ['history() honours since and limit, the oldest first', 'history-order', async (session) => {
    const { broker } = await session.broker()
    const published = [await broker.publish('h', body(1)), await broker.publish('h', body(2)), await broker.publish('h', body(3))]
    const position = { epoch: published[0]!.epoch, offset: 3 }
    same('history-order', await broker.history('h'), { position, messages: published }, 'everything kept')
    same('history-order', (await broker.history('h', { since: 1 })).messages, published.slice(1), 'since 1')
    same('history-order', (await broker.history('h', { limit: 1 })).messages, published.slice(0, 1), 'limit 1: the oldest')
    same('history-order', (await broker.history('h', { since: 1, limit: 1 })).messages, published.slice(1, 2), 'since 1, limit 1')
    same('history-order', (await broker.history('h', { since: 3 })).messages, [], 'nothing after the last')
    same('history-order', (await broker.history('h', { since: 7 })).messages, [], 'nothing after a future offset')
    same('history-order', (await broker.history('h', { since: -5 })).messages, published, 'a negative since is 0')
    same('history-order', (await broker.history('h', { since: 1.5 })).messages, published.slice(1), 'a fraction selects the offsets above it')
    same('history-order', await broker.history('h', { limit: 0 }), { position, messages: [] }, 'limit 0: the position only')
    same('history-order', (await broker.history('empty')).messages, [], 'an empty room has none')
    same('history-order', (await broker.history('empty')).position.offset, 0, 'and is at offset 0')
  }],

  ['history() keeps at most size messages', 'history-bounds', async (session) => {
    const { broker } = await session.broker()
    const published: RoomMessage[] = []
    for (let n = 1; n <= 5; n++) published.push(await broker.publish('s', body(n)))
    const page = await broker.history('s')
    same('history-bounds', page.messages, published.slice(2), 'the newest 3')
    same('history-bounds', page.position.offset, 5, 'at the position of the last')
    same('history-bounds', (await broker.history('s', { since: 1 })).messages, published.slice(2), 'since an offset no longer kept')
  }],

  ['history() drops messages older than ttlMs', 'history-bounds', async (session) => {
    // m1 is 1.2 ttl old when history is read, m2 0.6: a stall of up to 0.4 ttl (200 ms) cannot make it flaky.
    const ttlMs = 500
    const { broker } = await session.broker({ size: 10, ttlMs })
    const m1 = await broker.publish('t', body(1))
    await sleep(ttlMs * 0.6)
    const m2 = await broker.publish('t', body(2))
    await sleep(ttlMs * 0.6)
    const page = await broker.history('t')
    same('history-bounds', page.position, { epoch: m1.epoch, offset: 2 }, 'the room lives on: m2 is younger than the ttl')
    same('history-bounds', page.messages, [m2], 'only m2 is kept')
    same('no-partial-recovery', await recover(broker, 't', m1.epoch, 0), { recovered: false, position: page.position, messages: [] }, 'm1 cannot be recovered')
    same('no-partial-recovery', await recover(broker, 't', m1.epoch, 1), { recovered: true, position: page.position, messages: [m2] }, 'after m1 can')
  }],

  ['a recovery replays every missed message', 'no-partial-recovery', async (session) => {
    const { broker } = await session.broker()
    const published = [await broker.publish('r', body(1)), await broker.publish('r', body(2)), await broker.publish('r', body(3))]
    const position = { epoch: published[0]!.epoch, offset: 3 }
    same('no-partial-recovery', await recover(broker, 'r', position.epoch, 1), { recovered: true, position, messages: published.slice(1) }, 'from offset 1')
    same('no-partial-recovery', await recover(broker, 'r', position.epoch, 0), { recovered: true, position, messages: published }, 'from offset 0')
    same('no-partial-recovery', await recover(broker, 'r', position.epoch, 3), { recovered: true, position, messages: [] }, 'nothing missed')
  }],

  ['a recovery never replays partly', 'no-partial-recovery', async (session) => {
    const { broker } = await session.broker()
    const published: RoomMessage[] = []
    for (let n = 1; n <= 5; n++) published.push(await broker.publish('r', body(n)))
    const position = { epoch: published[0]!.epoch, offset: 5 }
    same('no-partial-recovery', await recover(broker, 'r', position.epoch, 1), { recovered: false, position, messages: [] }, 'offset 2 is gone: nothing')
    same('no-partial-recovery', await recover(broker, 'r', position.epoch, 2), { recovered: true, position, messages: published.slice(2) }, 'from offset 2')
  }],

  ['a recovery with a wrong epoch or a garbage offset recovers nothing', 'no-partial-recovery', async (session) => {
    const { broker } = await session.broker()
    await broker.publish('g', body(1))
    const last = await broker.publish('g', body(2))
    const position = { epoch: last.epoch, offset: last.offset }
    const cases: Array<[string, unknown, unknown]> = [
      ['another epoch', 'not-the-epoch', 1],
      ['an empty epoch', '', 1],
      ['an epoch that is not a string', 42, 1],
      ['a negative offset', position.epoch, -1],
      ['a fraction', position.epoch, 0.5],
      ['NaN', position.epoch, Number.NaN],
      ['Infinity', position.epoch, Number.POSITIVE_INFINITY],
      ['an offset that is not a number', position.epoch, '1'],
      ['an unsafe integer', position.epoch, 2 ** 60]
    ]
    for (const [what, epoch, offset] of cases) {
      same('no-partial-recovery', await recover(broker, 'g', epoch, offset), { recovered: false, position, messages: [] }, what)
    }
    const other = await recover(broker, 'unknown', position.epoch, 0)
    expect('no-partial-recovery', !other.recovered && other.position.offset === 0, 'the epoch of another room')
    // Last: a broker with rewound() takes such an offset as proof its history went backwards.
    const beyond = await recover(broker, 'g', position.epoch, 3)
    if (broker.rewound === undefined) {
      same('no-partial-recovery', beyond, { recovered: false, position, messages: [] }, 'an offset beyond the last')
    } else {
      expect('no-partial-recovery', !beyond.recovered && beyond.messages.length === 0 && beyond.position.epoch !== position.epoch,
        'an offset beyond the last: recovers nothing, and a broker with rewound() starts a new epoch')
    }
  }],

  ['messages published with history: false are delivered, not kept, and take no offset', 'unstored', async (session) => {
    const { broker, events } = await session.broker({ size: 10, ttlMs: 60_000 })
    await broker.subscribe('n')
    const notice = await broker.publish('n', body(0), { history: false })
    same('unstored', notice, { room: 'n', epoch: notice.epoch, offset: 0, time: notice.time, text: roomEnvelope(body(0), 'n', notice.epoch, 0), history: false },
      'before any message it carries offset 0')
    const published = [
      notice,
      await broker.publish('n', body(1)),
      await broker.publish('n', body(2), { history: false }),
      await broker.publish('n', body(3), { history: true }),
      await broker.publish('n', body(4))
    ]
    await events.until(5)
    same('live-delivery', events.messages, published, 'all delivered, in order')
    same('unstored', offsets(published), [0, 1, 1, 2, 3], 'an unstored message carries the offset of the last stored one')
    same('unstored', published.map((message) => message.history ?? 'stored'), [false, 'stored', false, 'stored', 'stored'], 'history: false on the unstored ones only')
    const stored = [published[1]!, published[3]!, published[4]!]
    const position = { epoch: notice.epoch, offset: 3 }
    same('unstored', await broker.history('n'), { position, messages: stored }, 'the history holds the stored ones')
    same('no-partial-recovery', await recover(broker, 'n', position.epoch, 0), { recovered: true, position, messages: stored }, 'no gap to fail a recovery')
  }],

  ['close() resolves, and again; unsubscribing a room never subscribed resolves', 'errors', async (session) => {
    const { broker } = await session.broker()
    await broker.subscribe('a')
    await broker.unsubscribe('never-subscribed')
    await broker.close()
    await broker.close()
  }],

  ['a second instance shares positions, history and live messages', 'shared-rooms', async (session) => {
    const { broker, events } = await session.broker()
    const peer = await session.peer(broker)
    // A broker of one process has nothing to share.
    if (peer === null) return
    const { broker: other, events: otherEvents } = peer
    await other.subscribe('x')
    await broker.subscribe('x')
    const published = [await broker.publish('x', body(1)), await other.publish('x', body(2), { except: 'c2' })]
    await otherEvents.until(2)
    await events.until(2)
    const delivered = [published[0]!, { ...published[1]!, except: 'c2' }]
    same('shared-rooms', otherEvents.messages, delivered, 'the other instance gets both, with except')
    same('shared-rooms', events.messages, delivered, 'and so does the first')
    same('shared-rooms', await other.history('x'), await broker.history('x'), 'one history')
    same('shared-rooms', await other.position('x'), { epoch: published[0]!.epoch, offset: 2 }, 'one position')
  }]
]

/**
 * The checks a broker must pass, in a list a test runner can iterate (see brokerConformance in
 * ./index.ts for one line per runner). Each makes its own brokers, closes them, then runs
 * `cleanup`. A failed check rejects with FST_RT_BROKER_RULE, its `rule` the rule broken.
 */
export function brokerChecks (options: BrokerConformanceOptions): BrokerCheck[] {
  const prefix = options.name ?? 'broker'
  return definitions.map(([name, rule, run]) => ({
    name: `${prefix}: ${name}`,
    rule,
    async run () {
      const session = new Session(options)
      try {
        await run(session)
      } finally {
        try {
          await session.close()
        } finally {
          await options.cleanup?.()
        }
      }
    }
  }))
}
