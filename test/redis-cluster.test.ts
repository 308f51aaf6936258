import { randomUUID } from 'node:crypto'
import { Cluster } from 'ioredis'
import t, { type Test } from 'tap'
import type { RedisBroker as RedisBrokerClass, RedisBrokerOptions } from '../lib/hub/redis/index.js'
import { roomKeys } from '../lib/hub/redis/keys.js'
import { roomSlot } from '../lib/hub/redis/key-tags.js'
import { brokerConformance, entry, Recorder, type BrokerConformanceOptions } from '../lib/testing/index.js'
import { DeliveryAudit, reportLine } from './support/delivery-audit.js'
import { build, client, within } from './support/helpers.js'
import { clusterChat } from './support/fixtures/cluster-contract.js'
import { join, json } from './support/room-client.js'
import { contractHandler } from '../lib/index.js'
import { redisBrokers } from './support/redis-brokers.js'
import { lateCopies } from './support/late-copies.js'
import { clusterUnavailable, startRedisCluster, type RedisCluster } from './support/redis-cluster.js'
import './support/process-guard.js'

// The Redis broker on a Redis Cluster of its own (3 masters, 3 replicas on loopback ports), in both
// pub/sub modes: the conformance suite, keys, close(), late copies, and the fault table (a slot
// move of a busy room, a master killed). Skipped loudly without redis-server 7 and redis-cli.
const unavailable = await clusterUnavailable()
if (unavailable !== null) t.comment(unavailable)

/** The next `$presence` notice a client gets. */
async function nextNotice (c: Parameters<typeof json>[0]): Promise<Record<string, unknown>> {
  for (;;) {
    const message = await json(c)
    if (message.type === '$presence') return message
  }
}

const tapTest = (t: Test) => (name: string, fn: () => Promise<void>) => t.test(name, fn)
const body = (n: number): string => JSON.stringify({ type: 'chat', data: { n } })
/** How often the brokers read the slot map here: small, so a moved room stalls briefly. */
const topologyCheckMs = 200
/** The most a fault, or the publishes after it, may take before the test fails instead of hanging. */
const FAULT_MS = 30_000

// Two failovers of a few seconds each, on a machine that may be busy with the other test files.
t.setTimeout(120_000)

t.test('RedisBroker on a Redis Cluster', { skip: unavailable ?? false }, async (t) => {
  const { RedisBroker } = await import('../lib/hub/redis/index.js')
  const cluster = await startRedisCluster(t)
  clusterTests(t, RedisBroker, cluster)
})

function clusterTests (t: Test, RedisBroker: typeof RedisBrokerClass, cluster: RedisCluster): void {
  const newPrefix = (): string => `frt-cluster:${randomUUID()}:`
  const modes = [{ mode: 'classic pub/sub', extra: {} }, { mode: 'sharded pub/sub', extra: { shardedPubSub: true } }]

  /** A broker on the cluster, closed on teardown. */
  function broker (t: Test, options: RedisBrokerOptions): RedisBrokerClass {
    const made = new RedisBroker({ client: cluster.urls, topologyCheckMs, ...options })
    t.teardown(() => made.close())
    return made
  }

  /** Brokers on the cluster: each new one with a key prefix of its own, a peer with its broker's. */
  const onCluster = (name: string, extra: RedisBrokerOptions): BrokerConformanceOptions =>
    redisBrokers(RedisBroker, name, () => ({ client: cluster.urls, keyPrefix: newPrefix(), topologyCheckMs, ...extra }))
  for (const { mode, extra } of modes) brokerConformance(tapTest(t), onCluster(`RedisBroker on a cluster (${mode})`, extra))

  t.test('a room slot is the one Redis computes, whatever braces its name has', async (t) => {
    const node = cluster.node(Number(new URL(cluster.urls[0] as string).port))
    for (const room of ['lobby', '}', '}x', '{', 'a{b}c', '{}', '%7D', 'é日本', '']) {
      const keys = roomKeys('frt:', room)
      const slots = new Set<unknown>()
      for (const key of [keys.meta, keys.stream, keys.channel, keys.presence, keys.expiry]) slots.add(await node.cluster('KEYSLOT', key))
      t.same([...slots], [roomSlot(room)], `${JSON.stringify(room)}: every key and the channel in slot ${roomSlot(room)}`)
    }
  })

  for (const { mode, extra } of modes) {
    t.test(`${mode}: rooms whose names start with a brace publish, deliver and keep presence`, async (t) => {
      const keyPrefix = newPrefix()
      const one = broker(t, { keyPrefix, ...extra })
      const two = broker(t, { keyPrefix, ...extra })
      const events = new Recorder()
      two.attach(events)
      one.attach(new Recorder())
      const rooms = ['}x', '{y', '}{', 'a}b{c']
      for (const room of rooms) await two.subscribe(room)
      const sent = []
      for (const room of rooms) {
        sent.push(await one.publish(room, body(1)))
        await one.presence.add(room, entry(`c-${room}`))
      }
      await events.until(rooms.length)
      t.same(events.messages, sent, 'each delivered once, on the other instance')
      for (const room of rooms) {
        t.same((await two.presence.list(room)).map((e) => e.connectionId), [`c-${room}`])
        t.same((await two.history(room)).messages, [sent[rooms.indexOf(room)]])
      }
    })
  }

  t.test('close() removes presence in rooms on every master and leaves the client passed in open', async (t) => {
    const keyPrefix = newPrefix()
    const errors: Error[] = []
    const leaving = new RedisBroker({ client: cluster.urls, keyPrefix, onError: (error) => { errors.push(error) } })
    const staying = broker(t, { keyPrefix })
    // Rooms on at least two masters: one pipeline could not hold them.
    const rooms = Array.from({ length: 12 }, (_, i) => `presence-${i}`)
    const masters = new Set<number>()
    for (const room of rooms) masters.add((await cluster.masterOf(roomSlot(room))).port)
    t.ok(masters.size > 1, `the rooms are on ${masters.size} masters`)
    for (const room of rooms) await leaving.presence.add(room, entry(`gone-${room}`))
    await staying.presence.add(rooms[0] as string, entry('stays'))
    await leaving.close()
    t.same(errors, [], 'no error')
    for (const room of rooms) {
      t.same((await staying.presence.list(room)).map((e) => e.connectionId), room === rooms[0] ? ['stays'] : [], `${room}: the closed instance's entries are gone`)
    }
  })

  t.test('an app closing on a cluster sends its members\' leave notices and removes their presence', async (t) => {
    const keyPrefix = newPrefix()
    const app = async () => await build(t, (app) => {
      app.get('/chat', { realtime: true }, contractHandler(clusterChat, {
        async say () {},
        async dm () {}
      }, { rooms: { authorize: () => true, notices: true } }))
    }, { broker: broker(t, { keyPrefix, shardedPubSub: true }) })
    const [closing, staying] = [await app(), await app()]
    const observer = await client(t, `${staying.url}/chat`)
    await join(observer, 'lobby')
    const [me] = await staying.app.realtime.presence('lobby')
    for (const room of ['lobby', '}other', 'third']) await join(await client(t, `${closing.url}/chat`), room)
    const member = (await staying.app.realtime.presence('lobby')).find((entry) => entry.connectionId !== me?.connectionId)
    t.ok(member, 'the member on the closing app is in the lobby')
    await closing.app.close()
    for (;;) {
      const notice = await nextNotice(observer)
      if ((notice.data as { event: string }).event !== 'leave') continue
      t.match(notice, { data: { event: 'leave', connectionId: member?.connectionId } }, 'the leave notice')
      break
    }
    t.same((await staying.app.realtime.presence('lobby')).length, 1, 'only the observer is left')
    t.same(await staying.app.realtime.presence('}other'), [])
    t.same(await staying.app.realtime.presence('third'), [])
  })

  for (const { mode, extra } of modes) {
    t.test(`${mode}: a late copy of a message a member already has is not delivered to it again`, async (t) => {
      const keyPrefix = newPrefix()
      // Routed by slot: SPUBLISH goes to the master of the channel's slot.
      const node = new Cluster([...cluster.urls])
      t.teardown(() => { node.disconnect() })
      await lateCopies(t, {
        broker: () => broker(t, { keyPrefix, ...extra }),
        // A publisher whose pub/sub the instance never hears: the other mode's.
        silent: () => broker(t, { keyPrefix, shardedPubSub: !('shardedPubSub' in extra) }),
        rawPublish: async (channel, payload) => { await ('shardedPubSub' in extra ? node.spublish(channel, payload) : node.publish(channel, payload)) },
        keyPrefix
      })
    })
  }

  /**
   * Publishes to a busy room from one instance while three others follow it, runs `fault` after the
   * first 100 acknowledged messages, publishes 20 more after it (a tail no later message would reveal), and
   * reports what the followers got.
   */
  async function faultRun (t: Test, name: string, extra: RedisBrokerOptions, fault: (room: string) => Promise<void>, pick?: () => Promise<string>): Promise<void> {
    const keyPrefix = newPrefix()
    const room = await pick?.() ?? `busy-${randomUUID()}`
    const audit = new DeliveryAudit(room)
    // A history that holds the whole run: a follower that falls behind catches up rather than being told `$lost`.
    const history = { size: 10_000 }
    const publisher = broker(t, { keyPrefix, history, ...extra })
    publisher.attach(new Recorder())
    for (let i = 0; i < 3; i++) {
      const follower = broker(t, { keyPrefix, history, ...extra })
      audit.watch(follower)
      await follower.subscribe(room)
    }
    for (let n = 0; n < 100; n++) await audit.publish(publisher)
    const state = { faulted: false }
    const publishing = (async () => {
      let after = 0
      while (!state.faulted || after < 20) {
        await audit.publish(publisher)
        if (state.faulted) after++
      }
    })()
    const started = Date.now()
    await within(FAULT_MS, `${name}: the fault`, fault(room))
    const faultMs = Date.now() - started
    state.faulted = true
    await within(FAULT_MS, `${name}: the publishes after the fault`, publishing)
    const publishedMs = Date.now() - started
    await audit.settle(15_000)
    const report = audit.report()
    t.comment(`${reportLine(name, report)} (the fault took ${faultMs} ms, publishing until 20 after it ${publishedMs} ms)`)
    t.equal(report.silentlyLost, 0, 'nothing acknowledged is lost silently')
    t.equal(report.duplicated, 0, 'nothing is delivered twice')
    t.equal(report.reordered, 0, 'nothing is delivered out of order')
    t.equal(report.delivered + report.announcedLost, report.acknowledged * 3, 'every follower got every acknowledged message, or was told it is lost')
  }

  for (const { mode, extra } of modes) {
    t.test(`${mode}: a slot move of a busy room while publishing`, async (t) => {
      await faultRun(t, `slot move (${mode})`, extra, async (room) => {
        const slot = roomSlot(room)
        const from = await cluster.masterOf(slot)
        const to = (await cluster.nodes()).find((node) => node.master && node.id !== from.id)
        await cluster.moveSlot(slot, to!)
        t.equal((await cluster.masterOf(slot)).id, to!.id, 'the slot moved')
      })
    })
  }

  for (const { mode, extra } of modes) {
    t.test(`${mode}: the master of a busy room killed, its replica promoted`, async (t) => {
      await faultRun(t, `master killed (${mode})`, extra, async (room) => {
        await cluster.killMaster(await cluster.masterOf(roomSlot(room)))
      }, async () => {
        // A room whose master still has a replica (an earlier kill took one away).
        for (;;) {
          const room = `busy-${randomUUID()}`
          if (await cluster.hasReplica(await cluster.masterOf(roomSlot(room)))) return room
        }
      })
    })
  }
}
