import t from 'tap'
import Fastify from 'fastify'
import realtime, {
  MemoryBroker, MemoryPresence, OrderedDelivery, roomEnvelope,
  type Broker, type BrokerEvents, type HistoryLimits, type HistoryPage, type HistoryQuery, type Position, type PublishOptions, type RoomMessage
} from '../lib/index.js'
import {
  brokerChecks, brokerConformance, brokerRules, presenceChecks, runChecks, type BrokerCheck, type BrokerRuleError, type CheckFailure
} from '../lib/testing/index.js'
import './support/process-guard.js'

// A broker written as someone outside the repository would: on the exported kit only, in memory,
// with a backend several instances share (as a Redis or a NATS server would be).

interface StoredRoom { epoch: string, offset: number, history: RoomMessage[], last: number }

class Backend {
  readonly rooms = new Map<string, StoredRoom>()
  readonly instances = new Set<ScratchBroker>()
  private epochs = 0
  newEpoch (): string { return `epoch-${++this.epochs}` }
}

/** The ways a broker can go wrong, one at a time. */
interface Faults {
  /** Offsets go 2, 4, 6: not dense. */
  skipOffsets?: boolean
  /** publish() resolves before the message is in the history. */
  storeLate?: boolean
  /** history() answers newest first. */
  newestFirst?: boolean
  /** A room idle past ttlMs keeps its epoch (its history is gone all the same). */
  keepEpoch?: boolean
}

class ScratchBroker implements Broker {
  private readonly delivery = new OrderedDelivery((room, query) => this.history(room, query))
  private readonly subscribed = new Set<string>()

  constructor (readonly backend: Backend, readonly limits: HistoryLimits, readonly faults: Faults = {}) {
    backend.instances.add(this)
  }

  attach (events: BrokerEvents): void {
    this.delivery.attach(events)
  }

  /** A room, forgotten (a new epoch) once idle past ttlMs, its history trimmed to the bounds. */
  private room (name: string): StoredRoom {
    const now = Date.now()
    let room = this.backend.rooms.get(name)
    if (room === undefined || (now - room.last > this.limits.ttlMs && this.faults.keepEpoch !== true)) {
      room = { epoch: this.backend.newEpoch(), offset: 0, history: [], last: now }
      this.backend.rooms.set(name, room)
    }
    room.history = room.history.filter((message) => now - message.time <= this.limits.ttlMs).slice(-this.limits.size)
    return room
  }

  async publish (name: string, body: string, options: PublishOptions = {}): Promise<RoomMessage> {
    const room = this.room(name)
    const stored = options.history !== false
    if (stored) room.offset += this.faults.skipOffsets === true ? 2 : 1
    room.last = Date.now()
    const text = roomEnvelope(body, name, room.epoch, room.offset)
    const message: RoomMessage = { room: name, epoch: room.epoch, offset: room.offset, time: room.last, text, ...(stored ? {} : { history: false as const }) }
    if (stored && this.faults.storeLate === true) setTimeout(() => { room.history.push(message) }, 20)
    else if (stored) room.history.push(message)
    const live = options.except === undefined ? message : { ...message, except: options.except }
    for (const instance of this.backend.instances) instance.receive(live)
    return message
  }

  private receive (message: RoomMessage): void {
    if (this.subscribed.has(message.room)) this.delivery.receive(message)
  }

  async subscribe (room: string): Promise<void> {
    this.subscribed.add(room)
    await this.delivery.follow(room, async () => {}, () => this.unsubscribe(room))
  }

  async unsubscribe (room: string): Promise<void> {
    this.subscribed.delete(room)
    this.delivery.unfollow(room)
  }

  async position (name: string): Promise<Position> {
    const room = this.room(name)
    return { epoch: room.epoch, offset: room.offset }
  }

  async history (name: string, query: HistoryQuery = {}): Promise<HistoryPage> {
    const room = this.room(name)
    const since = Math.max(0, Math.floor(query.since ?? 0))
    const limit = Math.max(0, Math.floor(query.limit ?? Number.MAX_SAFE_INTEGER))
    const messages = room.history.filter((message) => message.offset > since).slice(0, limit)
    if (this.faults.newestFirst === true) messages.reverse()
    return { position: { epoch: room.epoch, offset: room.offset }, messages }
  }

  async close (): Promise<void> {
    this.backend.instances.delete(this)
    this.delivery.clear()
  }
}

/** The suite's options for a scratch broker with these faults: instances of one backend share rooms. */
function scratch (faults: Faults = {}, name = 'ScratchBroker'): Parameters<typeof brokerChecks>[0] {
  return {
    name,
    create: (limits) => new ScratchBroker(new Backend(), limits, faults),
    peer: (broker, limits) => new ScratchBroker((broker as ScratchBroker).backend, limits, faults),
    // A broken broker would make the checks that wait for a delivery wait 5 s each.
    deliveryTimeoutMs: 300
  }
}

/** The failure of the check of `rule` named `name`, asserted to be FST_RT_BROKER_RULE for that rule. */
function failureOf (failures: CheckFailure[], name: string): BrokerRuleError {
  const failure = failures.find((failure) => failure.check.name.endsWith(name))
  if (failure === undefined) throw new Error(`the check "${name}" passed`)
  return failure.error as BrokerRuleError
}

t.test('an honest scratch broker passes every check, run through brokerConformance() as tap subtests', async (t) => {
  const names: string[] = []
  brokerConformance((name, fn) => {
    names.push(name)
    return t.test(name, fn)
  }, scratch(), { name: 'its presence', create: () => new MemoryPresence() })
  t.equal(names.length, brokerChecks(scratch()).length + presenceChecks({ create: () => new MemoryPresence() }).length, 'one test per check')
  t.ok(names.every((name) => name.startsWith('ScratchBroker: ') || name.startsWith('its presence: ')), 'each named after the broker')
})

t.test('the checks and the rules: every check names a rule with a description; each rule but order-after-gap is checked', async (t) => {
  const checks: BrokerCheck[] = [...brokerChecks(scratch()), ...presenceChecks({ create: () => new MemoryPresence() })]
  t.same(checks.filter((check) => !(check.rule in brokerRules)), [])
  const checked = new Set(checks.map((check) => check.rule))
  t.same(Object.keys(brokerRules).filter((rule) => !checked.has(rule as keyof typeof brokerRules)), ['order-after-gap'], 'order-after-gap is OrderedDelivery\'s: see ordered-delivery.test.ts')
  t.equal(new Set(checks.map((check) => check.name)).size, checks.length, 'names are unique')
  t.ok(brokerChecks({ create: () => new MemoryBroker() })[0]?.name.startsWith('broker: '), 'the default name')
  t.ok(presenceChecks({ create: () => new MemoryPresence() })[0]?.name.startsWith('presence: '))
})

t.test('a broker whose offsets skip fails dense-offsets, with the rule named in the error', async (t) => {
  const failures = await runChecks(brokerChecks(scratch({ skipOffsets: true })))
  const error = failureOf(failures, 'publish gives offsets 1, 2, 3, with no gap also when published at once, and position() follows')
  t.match(error, { code: 'FST_RT_BROKER_RULE', rule: 'dense-offsets', message: /^The broker breaks rule dense-offsets: three publishes take offsets 1, 2 and 3: expected \[1,2,3\], got \[2,4,6\]$/ })
  t.ok(error instanceof Error)
  t.ok(failures.length > 1, `its gaps break recovery and delivery too (${failures.length} checks failed)`)
  t.ok(failures.some((failure) => (failure.error as BrokerRuleError).rule === 'live-delivery'), 'a delivery that never comes fails live-delivery after the timeout')
})

t.test('a broker whose publish resolves before its history holds the message fails atomic-publish', async (t) => {
  const failures = await runChecks(brokerChecks(scratch({ storeLate: true })))
  const error = failureOf(failures, 'a published message is in the history and the position once publish() resolves, also under load')
  t.match(error, { code: 'FST_RT_BROKER_RULE', rule: 'atomic-publish', message: /atomic-publish: message 1 is in the history read right after its publish: expected \{.*\}, got \{\}/ })
  t.notOk(failures.some((failure) => failure.check.rule === 'dense-offsets'), 'its offsets are dense')
  await new Promise((resolve) => setTimeout(resolve, 40))
})

t.test('a broker whose history is newest first fails history-order, and recovers nothing from it', async (t) => {
  const failures = await runChecks(brokerChecks(scratch({ newestFirst: true })))
  t.match(failureOf(failures, 'history() honours since and limit, the oldest first'), { code: 'FST_RT_BROKER_RULE', rule: 'history-order' })
  t.match(failureOf(failures, 'a recovery replays every missed message'), { rule: 'no-partial-recovery', message: /from offset 1: expected \{"recovered":true/ })
})

t.test('a broker that keeps the epoch of a room whose history aged out fails epoch', async (t) => {
  const failures = await runChecks(brokerChecks(scratch({ keepEpoch: true })))
  t.match(failureOf(failures, 'a room idle past ttlMs comes back with a new epoch'), {
    code: 'FST_RT_BROKER_RULE', rule: 'epoch', message: 'The broker breaks rule epoch: a new epoch tells clients the history is gone'
  })
  t.same(failures.map((failure) => failure.check.rule), ['epoch'], 'the one rule it breaks')
})

t.test('runChecks reports what a check threw that is not a rule, and a failing close', async (t) => {
  const failing = { name: 'x', rule: 'errors' as const, run: async () => { throw new Error('boom') } }
  const failures = await runChecks([failing, { ...failing, run: async () => {} }])
  t.equal(failures.length, 1)
  t.equal(failures[0]?.check, failing)
  t.match(failures[0]?.error, { message: 'boom' })
  let cleaned = 0
  const closing = brokerChecks({
    create: () => Object.assign(new MemoryBroker(), { close: async () => { throw new Error('cannot close') } }),
    cleanup: () => { cleaned++ }
  })
  await t.rejects(closing[0]!.run(), { message: 'cannot close' }, 'a close that rejects fails the check')
  t.equal(cleaned, 1, 'and cleanup still runs')
})

t.test('the suite runs under node:test as a plain list of async functions, and against a presence store with no peer', async (t) => {
  // node:test's test(name, fn) calls fn with its context; the checks ignore it.
  const ran: Array<Promise<void>> = []
  const register = (_name: string, fn: (context?: unknown) => Promise<void>): void => { ran.push(fn({})) }
  brokerConformance(register, { name: 'solo', create: (limits) => new MemoryBroker({ history: limits }), deliveryTimeoutMs: 1000 })
  t.equal(ran.length, brokerChecks({ create: () => new MemoryBroker() }).length)
  await Promise.all(ran)
  t.pass('every check passed, run at once')
  const failures = await runChecks(presenceChecks({ create: () => new MemoryPresence() }))
  t.same(failures, [])
})

t.test('the presence option: a store of your own is used and closed with the app; a bad one is refused', async (t) => {
  let closed = 0
  class Counted extends MemoryPresence {
    override async close (): Promise<void> { closed++ }
  }
  const presence = new Counted()
  const app = Fastify()
  await app.register(realtime, { presence })
  await app.ready()
  await presence.add('lobby', { connectionId: 'c', userId: 'ada', meta: null, joinedAt: 0 })
  t.equal(await app.realtime.presenceCount('lobby'), 1, 'app.realtime reads the store given')
  await app.close()
  t.equal(closed, 1, 'closed with the app')
  for (const bad of [null, {}, { add () {}, remove () {}, list () {}, count () {} }, 'memory']) {
    const fastify = Fastify()
    await t.rejects(async () => { await fastify.register(realtime, { presence: bad as never }) }, { code: 'FST_RT_INVALID_OPTION', message: /"presence": expected a PresenceStore/ })
    await fastify.close().catch(() => {})
  }
})

t.test('the presence option defaults to the broker\'s own store, which the broker closes', async (t) => {
  let closed = 0
  const own = new (class extends MemoryPresence { override async close (): Promise<void> { closed++ } })()
  const broker = Object.assign(new MemoryBroker(), { presence: own })
  const app = Fastify()
  await app.register(realtime, { broker })
  await app.ready()
  await own.add('lobby', { connectionId: 'c', userId: null, meta: null, joinedAt: 0 })
  t.equal(await app.realtime.presenceCount('lobby'), 1)
  await app.close()
  t.equal(closed, 0, 'the plugin leaves the broker\'s store to the broker')
})
