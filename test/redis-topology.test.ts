import { EventEmitter, once } from 'node:events'
import type { Cluster } from 'ioredis'
import t from 'tap'
import { clusterOptions, subscribing, type AnyRedis } from '../lib/hub/redis/cluster-client.js'
import { roomOfChannel, roomKeys } from '../lib/hub/redis/keys.js'
import { roomSlot } from '../lib/hub/redis/key-tags.js'
import { TopologyWatch } from '../lib/hub/redis/topology.js'
import './support/process-guard.js'

// The pieces of the Redis Cluster support that need no Redis: the topology watch over a stand-in
// cluster (a slot map and its events, as ioredis's Cluster has them), the room tags, the options of
// a Cluster made from URLs. test/redis-cluster.test.ts runs them on a real cluster.

/** A stand-in for an ioredis Cluster: a slot map, and a refresh that emits `refresh`. */
class FakeCluster extends EventEmitter {
  readonly slots: string[][] = []
  reads = 0
  refreshSlotsCache (): void {
    this.reads++
    this.emit('refresh')
  }
}

function watch (sharded: boolean, moved: (rooms: string[]) => Promise<void>) {
  // The watch's timers are unref()ed: this one keeps the test's process up while it waits on them.
  const alive = setInterval(() => {}, 60_000)
  t.teardown(() => { clearInterval(alive) })
  const cluster = new FakeCluster()
  const rooms = new Set<string>()
  const errors: Error[] = []
  const topology = new TopologyWatch(cluster as unknown as Cluster, sharded, { rooms: () => rooms, moved, onError: (error) => { errors.push(error) } }, 60_000)
  t.teardown(() => { topology.close() })
  return { cluster, rooms, errors, topology }
}

t.test('a room whose slot has a new master is resubscribed; a failed resubscription is retried at the next read', async (t) => {
  const calls: string[][] = []
  let fail = false
  const { cluster, rooms, errors, topology } = watch(true, async (moved) => {
    calls.push(moved)
    if (fail) throw new Error('not yet')
  })
  cluster.slots[roomSlot('a')] = ['127.0.0.1:1']
  cluster.slots[roomSlot('b')] = ['127.0.0.1:2']
  rooms.add('a').add('b').add('unmapped')
  topology.note('a')
  topology.note('b')
  topology.note('unmapped')
  cluster.refreshSlotsCache()
  t.same(calls, [], 'nothing moved')
  cluster.slots[roomSlot('a')] = ['127.0.0.1:3']
  fail = true
  cluster.emit('nodeError', new Error('sunsubscribe'))
  t.equal(cluster.reads, 2, 'a node error reads the slot map at once')
  t.same(calls, [['a']], 'the room whose master changed')
  cluster.emit('nodeError', new Error('again'))
  cluster.emit('nodeError', new Error('and again'))
  t.equal(cluster.reads, 2, 'events right after a read wait')
  await once(cluster, 'refresh')
  t.equal(cluster.reads, 3, 'then one read for all of them')
  await new Promise(setImmediate)
  t.same(errors.map((e) => e.message), ['not yet', 'not yet'], 'each failure is reported')
  fail = false
  cluster.refreshSlotsCache()
  t.same(calls, [['a'], ['a'], ['a']], 'retried at each read until it works')
  await new Promise(setImmediate)
  cluster.refreshSlotsCache()
  t.same(calls.length, 3, 'and not again once it worked')
  topology.forget('a')
  rooms.delete('a')
  const read = once(cluster, 'refresh')
  cluster.emit('-node')
  await read
  t.same(calls.length, 3, 'sharded: a node leaving moves only rooms whose master changed')
  cluster.emit('nodeError', new Error('held back'))
  topology.close()
  cluster.slots[roomSlot('b')] = ['127.0.0.1:4']
  cluster.emit('refresh')
  t.same(calls.length, 3, 'closed: nothing more')
})

t.test('classic pub/sub: a node leaving resubscribes every room (the one subscriber connection may have gone with it)', async (t) => {
  const calls: string[][] = []
  const { cluster, rooms, topology } = watch(false, async (moved) => { calls.push(moved) })
  cluster.slots[roomSlot('a')] = ['127.0.0.1:1']
  cluster.slots[roomSlot('b')] = ['127.0.0.1:2']
  rooms.add('a').add('b')
  topology.note('a')
  topology.note('b')
  const read = once(cluster, 'refresh')
  cluster.emit('-node')
  await read
  t.same(calls, [['a', 'b']])
})

t.test('room tags: every name maps to one tag and back, braces and percent signs escaped', async (t) => {
  for (const room of ['', '%', '}', '{', '%7D', 'a{b}c', 'lobby']) {
    const channel = roomKeys('p:', room).channel
    t.equal(roomOfChannel('p:', channel), room, `${JSON.stringify(room)} → ${channel}`)
    t.equal(channel.indexOf('}'), channel.length - 1, 'one closing brace, at the end')
  }
  t.equal(roomKeys('p:', '').channel, 'p:room:{%}', 'the empty name gets a tag of its own')
  t.equal(roomKeys('p:', 'lobby').channel, 'p:room:{lobby}', 'names without braces or % keep their keys')
})

t.test('a Cluster made from URLs gives every node the first URL\'s credentials and TLS', async (t) => {
  t.same(clusterOptions([{ host: '127.0.0.1', port: 7000 }], true), { shardedSubscribers: true })
  t.same(clusterOptions(['redis://127.0.0.1:7000'], false), { shardedSubscribers: false, redisOptions: {} })
  t.same(clusterOptions([{ host: 'a', port: 1 }, 'rediss://us%40er:p%3Ass@127.0.0.1:7000'], true), {
    shardedSubscribers: true, redisOptions: { username: 'us@er', password: 'p:ss', tls: {} }
  })
})

t.test('a (un)subscribe on a Cluster is tried up to 3 times; on one Redis once', async (t) => {
  const failing = (times: number) => {
    let calls = 0
    return { run: async () => { if (++calls <= times) throw new Error(`attempt ${calls}`) }, calls: () => calls }
  }
  const cluster = { isCluster: true } as unknown as AnyRedis
  const single = {} as unknown as AnyRedis
  const twice = failing(2)
  await subscribing(cluster, twice.run)
  t.equal(twice.calls(), 3, 'the third attempt works')
  const always = failing(5)
  await t.rejects(subscribing(cluster, always.run), { message: 'attempt 3' })
  t.equal(always.calls(), 3, 'no fourth')
  const once = failing(1)
  await t.rejects(subscribing(single, once.run), { message: 'attempt 1' })
  t.equal(once.calls(), 1, 'one Redis: no retry')
})
