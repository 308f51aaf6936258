import t, { type Test } from 'tap'
import { Type } from '@sinclair/typebox'
import WebSocket from 'ws'
import { contractHandler, defineContract, MemoryBroker, roomSnapshotRoute, type BrokerEvents, type RoomSnapshot } from '../lib/index.js'
import { RealtimeClient, type SnapshotPosition } from '../lib/client/index.js'
import { MAX_HELD, RoomResync } from '../lib/client/resync.js'
import { build, deferred } from './support/helpers.js'

const feed = defineContract({
  client: { noop: Type.Null() },
  server: { item: Type.Object({ n: Type.Integer() }) }
})

/** A memory broker the test can make report a loss. */
class Lossy extends MemoryBroker {
  events: BrokerEvents | null = null
  override attach (events: BrokerEvents): void {
    this.events = events
    super.attach(events)
  }
}

async function app (t: Test, broker = new Lossy({ history: { size: 2000 } })) {
  const built = await build(t, (app) => {
    app.get('/ws', { realtime: true }, contractHandler(feed, { noop () {} }, { rooms: { authorize: () => true } }))
    app.get('/snapshot', roomSnapshotRoute({
      authorize: (room) => room !== 'private',
      // The app's state: here, the items up to the position, read after it.
      state: async (room, _request, position) => (await app.realtime.history(feed, room, { before: position.offset + 1, newest: true })).messages.map((message) => message.data.n)
    }))
  }, { broker })
  const publish = async (room: string, n: number): Promise<void> => { await built.app.realtime.publish(feed, room, 'item', { n }) }
  const load = async (room: string): Promise<RoomSnapshot<number[]>> => (await built.app.inject({ url: `/snapshot?room=${room}` })).json()
  return { ...built, broker, publish, load }
}

/** A client that records every item it gets, and waits for a count of them. */
function recorder (t: Test, url: string) {
  const client = new RealtimeClient<typeof feed>({ url: `${url.replace('http', 'ws')}/ws`, WebSocket })
  t.teardown(() => { client.close() })
  const items: number[] = []
  const errors: Error[] = []
  let waiting: { count: number, resolve: () => void } | null = null
  client.on('item', ({ n }) => {
    items.push(n)
    if (waiting !== null && items.length >= waiting.count) waiting.resolve()
  })
  client.onError((error) => { errors.push(error) })
  const itemsCount = async (count: number): Promise<void> => {
    if (items.length >= count) return
    await new Promise<void>((resolve) => { waiting = { count, resolve } })
  }
  return { client, items, errors, itemsCount }
}

t.test('the snapshot route reads the position first, then the app state; a client joins from exactly there', async (t) => {
  const { url, publish, load } = await app(t)
  for (let n = 1; n <= 3; n++) await publish('r', n)
  const snapshot = await load('r')
  t.match(snapshot, { room: 'r', epoch: String, offset: 3, state: [1, 2, 3] })
  await publish('r', 4)
  const { client, items, itemsCount } = recorder(t, url)
  const states: number[][] = []
  const outcome = await client.join('r', { snapshot: async () => { const s = await load('r'); states.push(s.state); return s } })
  t.match(outcome, { recovered: true, offset: 4 })
  await publish('r', 5)
  await itemsCount(1)
  t.same(states, [[1, 2, 3, 4]])
  t.same(items, [5], 'no message before the snapshot again, none after it missed')
})

t.test('a room that cannot be recovered is re-synced through the same loader, without a gap or a duplicate', async (t) => {
  const { url, publish, load } = await app(t)
  await publish('r', 1)
  const { client, items, itemsCount } = recorder(t, url)
  let calls = 0
  const reloaded = deferred()
  const loader = async (): Promise<SnapshotPosition> => {
    calls++
    const snapshot = await load('r')
    if (calls === 2) setImmediate(() => { reloaded.resolve() })
    // The first snapshot claims an epoch the room never had: the join cannot recover from it.
    return calls === 1 ? { epoch: 'gone', offset: snapshot.offset } : snapshot
  }
  const outcome = await client.join('r', { snapshot: loader })
  t.equal(outcome.recovered, false)
  await reloaded.promise
  await publish('r', 2)
  await itemsCount(1)
  t.equal(calls, 2, 'the loader ran again')
  t.same(items, [2])
})

t.test('a snapshot behind the live stream joins again from it, and the server replays the rest', async (t) => {
  const { url, publish, load } = await app(t)
  for (let n = 1; n <= 3; n++) await publish('r', n)
  const { client, items, itemsCount } = recorder(t, url)
  let calls = 0
  const loader = async (): Promise<SnapshotPosition> => {
    calls++
    const snapshot = await load('r')
    return calls === 1 ? { epoch: 'gone', offset: 0 } : { epoch: snapshot.epoch, offset: 1 }
  }
  await client.join('r', { snapshot: loader })
  await itemsCount(2)
  t.same(items, [2, 3], 'replayed from the stale snapshot by the new join')
})

t.test('a $lost notice re-syncs too: what came in while the app reloaded is in its state once, and the stream goes on after it', async (t) => {
  const { url, publish, load, broker } = await app(t)
  await publish('r', 1)
  const { client, items, itemsCount } = recorder(t, url)
  const gate = deferred()
  const reloaded = deferred()
  const states: number[][] = []
  await client.join('r', {
    snapshot: async () => {
      if (states.length === 1) await gate.promise
      const snapshot = await load('r')
      states.push(snapshot.state)
      if (states.length === 2) setImmediate(() => { reloaded.resolve() })
      return snapshot
    }
  })
  const lostSeen = new Promise<void>((resolve) => { client.onLost(() => { resolve() }) })
  broker.events?.lost('r', await broker.position('r'))
  await lostSeen
  await publish('r', 2)
  await publish('r', 3)
  gate.resolve()
  await reloaded.promise
  await publish('r', 4)
  await itemsCount(1)
  t.same(states, [[1], [1, 2, 3]], 'the reload holds what was published while it ran')
  t.same(items, [4], 'held messages already in the snapshot are dropped: nothing twice, nothing missed')
})

t.test('a message held while the app reloads and newer than the snapshot is delivered after it', async (t) => {
  const { url, publish, load, broker } = await app(t)
  const { client, items, itemsCount } = recorder(t, url)
  let calls = 0
  await client.join('r', {
    snapshot: async () => {
      const snapshot = await load('r')
      if (++calls === 2) {
        // Published after the snapshot was taken, and in the client (held) before the loader returns.
        await publish('r', 5)
        await client.request('noop', null)
      }
      return snapshot
    }
  })
  broker.events?.lost('r', await broker.position('r'))
  await itemsCount(1)
  t.same(items, [5])
})

t.test('a loader that fails on re-sync is reported and the held messages go through; one that keeps failing gives up', async (t) => {
  const { url, publish, load, broker } = await app(t)
  const { client, items, errors, itemsCount } = recorder(t, url)
  let calls = 0
  await client.join('r', {
    snapshot: async () => {
      calls++
      if (calls === 2) throw new Error('reload failed')
      return await load('r')
    }
  })
  broker.events?.lost('r', await broker.position('r'))
  await publish('r', 1)
  await itemsCount(1)
  t.match(errors, [{ message: 'reload failed' }])
  t.same(items, [1])

  const stubborn = recorder(t, url)
  let reloads = 0
  await stubborn.client.join('s', {
    snapshot: async () => {
      // From the second call on, a live message is held while it runs: the last one goes through when the client gives up.
      if (++reloads > 1) {
        await publish('s', 100 + reloads)
        await stubborn.client.request('noop', null)
      }
      return { epoch: 'never', offset: 0 }
    }
  }).catch(() => {})
  while (!stubborn.errors.some((error) => (error as { code?: string }).code === 'FST_RT_CLIENT_RESYNC_FAILED')) {
    await new Promise<void>((resolve) => { stubborn.client.onError(() => { resolve() }) })
  }
  const seen = stubborn.items.length
  t.ok(seen >= 1, 'what was held when it gave up went through')
  await publish('s', 7)
  await stubborn.itemsCount(seen + 1)
  t.equal(stubborn.items.at(-1), 7, 'the room stays joined live')
})

t.test('more live messages than the client holds while reloading: it joins again from the snapshot', async (t) => {
  const { url, publish, load, broker } = await app(t)
  const { client, items, itemsCount } = recorder(t, url)
  const gate = deferred()
  let calls = 0
  await client.join('r', {
    snapshot: async () => {
      if (++calls === 2) await gate.promise
      return await load('r')
    }
  })
  const lostSeen = new Promise<void>((resolve) => { client.onLost(() => { resolve() }) })
  broker.events?.lost('r', await broker.position('r'))
  await lostSeen
  for (let n = 1; n <= MAX_HELD + 5; n++) await publish('r', n)
  // Every message has reached the client (held, then let go) once a request sent after them is answered.
  await client.request('noop', null).catch(() => {})
  const rejoined = new Promise<unknown>((resolve) => { client.onJoin(resolve) })
  gate.resolve()
  t.match(await rejoined, { room: 'r', recovered: true, offset: MAX_HELD + 5 }, 'joined again from the snapshot, past every held message')
  await publish('r', 9999)
  await itemsCount(1)
  t.same(items, [9999], 'none of the let-go messages reached the app: the snapshot holds them')
})

t.test('a room left while the app reloads gets nothing of the reload, whether it succeeds or fails', async (t) => {
  const { url, publish, load, broker } = await app(t)
  const { client, items, errors, itemsCount } = recorder(t, url)
  for (const outcome of ['resolve', 'reject'] as const) {
    const room = `left-${outcome}`
    const gate = deferred()
    let calls = 0
    await client.join(room, {
      snapshot: async () => {
        if (++calls === 2) {
          await gate.promise
          if (outcome === 'reject') throw new Error('too late')
        }
        return await load(room)
      }
    })
    const lostSeen = new Promise<void>((resolve) => { const off = client.onLost(() => { off(); resolve() }) })
    broker.events?.lost(room, await broker.position(room))
    await lostSeen
    await publish(room, 1)
    await client.request('noop', null).catch(() => {})
    await client.leave(room)
    gate.resolve()
  }
  await client.join('after', {})
  await publish('after', 2)
  await itemsCount(1)
  t.same(items, [2], 'nothing held for the left rooms came through')
  t.match(errors, [{ message: 'too late' }])
})

t.test('bad snapshots and options are refused; the snapshot route checks rooms and options', async (t) => {
  const { url, load, app: server } = await app(t)
  const { client } = recorder(t, url)
  await t.rejects(client.join('r', { snapshot: async () => ({ epoch: '', offset: 1 }) }), { code: 'FST_RT_CLIENT_INVALID_OPTION' })
  await t.rejects(client.join('r', { snapshot: async () => ({ epoch: 'e', offset: -1 }) as never }), { code: 'FST_RT_CLIENT_INVALID_OPTION' })
  await t.rejects(client.join('r', { snapshot: async () => null as never }), { code: 'FST_RT_CLIENT_INVALID_OPTION' })
  await t.rejects(client.join('r', { snapshot: 'later' as never }), { code: 'FST_RT_CLIENT_INVALID_OPTION' })
  t.equal((await server.inject({ url: '/snapshot?room=private' })).statusCode, 403)
  t.equal((await server.inject({ url: '/snapshot?room=%24user%3Aa' })).statusCode, 400)
  t.equal((await server.inject({ url: '/snapshot' })).statusCode, 400)
  t.match(await load('fine'), { offset: 0, state: [] })
  t.throws(() => roomSnapshotRoute({ authorize: () => true } as never), { code: 'FST_RT_INVALID_OPTION', message: /state/ })
  t.throws(() => roomSnapshotRoute({ state: () => 1 } as never), { code: 'FST_RT_INVALID_OPTION', message: /authorize/ })
  t.throws(() => roomSnapshotRoute({ authorize: () => true, state: () => 1, extra: 1 } as never), { code: 'FST_RT_INVALID_OPTION', message: /extra/ })
  await t.rejects(server.realtime.snapshot('r', 'state' as never), { code: 'FST_RT_INVALID_OPTION' })
  await t.rejects(server.realtime.snapshot('$r', () => 1), { code: 'FST_RT_INVALID_ROOM' })
})

t.test('the held messages of a room are bounded', async (t) => {
  const resync = new RoomResync(async () => ({ epoch: 'e', offset: 0 }))
  const message = { type: 'item', data: null, room: 'r', epoch: 'e', offset: 1 }
  t.notOk(resync.hold(message), 'nothing held while no snapshot loads')
  resync.held = []
  for (let i = 0; i < MAX_HELD; i++) resync.hold(message)
  t.equal(resync.held.length, MAX_HELD)
  t.ok(resync.hold(message))
  t.ok(resync.overflowed)
  t.equal(resync.held.length, 0)
})
